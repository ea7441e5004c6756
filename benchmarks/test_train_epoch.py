"""Training steps against the bare kernel: what the training loop adds around the kernels.

Run:

    pytest benchmarks/test_train_epoch.py --benchmark-only

Cases, dense 1,000,000 x 32 float64 (squared loss):
- "gd-step": one full-batch gradient-descent step of fastdp.train.fit (kernel, Allreduce of the
  flat buffer, update), timed as 20 steps / 20, against "kernel": one loss_grad_sums call on the
  same rows with preallocated buffers. fit's first call (compilation, checks) is outside the timing.
- "sgd-epoch": one epoch of mini-batch SGD with batches of 4096 rows (245 steps: row gathering,
  kernel, update per step) against "kernel": one full-shard kernel call, the same arithmetic.
- "sgd-epoch-32": the same with batches of 32 rows (31,250 steps), where a step's fixed cost
  outweighs its 32 rows: on one rank the epoch's steps run in one compiled loop
  (fastdp.dense_steps), with no Python between them.
- "sgd-epoch-32-peer": that epoch against scikit-learn's SGDRegressor, one epoch updating after
  every row (its loop is compiled Cython), the peer a user would otherwise take for small steps.
The summary table's "x ref" column is the kernel's time over the training step's: 1.00 means the
loop adds nothing; below 1, the share of a step spent outside the kernel ("sgd-epoch-32-peer":
scikit-learn's time over fastdp's, above 1 when fastdp is faster).
"""

import warnings

import numpy as np
import pytest

from fastdp import kernels, train
from fastdp.bench.cases import Case, make_shard

ROWS, FEATURES, STEPS, BATCH, SMALL_BATCH = 1_000_000, 32, 20, 4096, 32


@pytest.fixture(scope="module")
def shard():
    return make_shard(Case("squared", "dense", ROWS, FEATURES))


def bare_kernel(s):
    out = np.empty(FEATURES + 2)
    scratch = np.empty(kernels.scratch_shape("squared", s.X, s.coef))
    return lambda: kernels.loss_grad_sums("squared", *s, out, scratch=scratch, validate=False)


def sgd_epoch(s, batch_size):
    return lambda: train.fit(s.X, s.y, solver="sgd", batch_size=batch_size, max_iter=1, tol=0,
                             learning_rate=0.01)


def sklearn_epoch(s):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDRegressor

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=1 on purpose
            SGDRegressor(alpha=1e-4, learning_rate="constant", eta0=0.01, max_iter=1, tol=None,
                         random_state=0).fit(s.X, s.y)
    return run


CONTENDERS = {
    ("gd-step", "fit"): lambda s: lambda: train.fit(s.X, s.y, solver="gd", max_iter=STEPS, tol=0),
    ("gd-step", "kernel"): bare_kernel,
    ("sgd-epoch", "fit"): lambda s: sgd_epoch(s, BATCH),
    ("sgd-epoch", "kernel"): bare_kernel,
    ("sgd-epoch-32", "fit"): lambda s: sgd_epoch(s, SMALL_BATCH),
    ("sgd-epoch-32", "kernel"): bare_kernel,
    ("sgd-epoch-32-peer", "fit"): lambda s: sgd_epoch(s, SMALL_BATCH),
    ("sgd-epoch-32-peer", "sklearn"): sklearn_epoch,
}
PER_CALL = {("gd-step", "fit"): STEPS + 1}  # fit evaluates max_iter + 1 gradients


@pytest.mark.parametrize("case,name", list(CONTENDERS))
def test_training_loop_overhead(benchmark, shard, case, name, timings):
    run = CONTENDERS[case, name](shard)
    benchmark.group = case
    run()  # compile and check once
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    if not benchmark.enabled:
        return
    seconds = benchmark.stats.stats.min / PER_CALL.get((case, name), 1)
    benchmark.extra_info["seconds per step or epoch"] = seconds
    timings[case, name] = (seconds, None)
