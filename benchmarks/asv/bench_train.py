"""Training (fastdp.train.fit) in this process, and strong scaling over 2 MPI ranks.

Fit: squared loss on fastdp.synthetic.linear_regression(200,000 x 32), full-batch gradient descent
for 10 steps ("gd") or one epoch of mini-batch SGD with batches of 256 rows ("sgd", 782 steps) or
of 32 rows ("sgd-32", 6,250 steps; both one rank's compiled steps, fastdp.dense_steps), Numba and
Cython backends. Setup checks the model against the same fit with the NumPy backend.

SmallFit: 10 gradient-descent steps on 1,000 x 10 rows: fit's fixed cost.

WideSgdEpoch: one epoch of hinge-loss SGD on hashed text with 2**20 features, L2 or elastic net,
where a dense step costs passes over its parameters more than its rows; checked against the NumPy
backend too.

StrongScaling: the same gd fit (400,000 x 32 rows, 20 steps) launched with `mpiexec -n 1` and
`mpiexec -n 2`, one kernel thread per rank (NUMBA_NUM_THREADS = OMP_NUM_THREADS = 1), so two ranks
use twice the cores of one; each rank generates only its own contiguous rows. Reports the
efficiency T1 / (2 * T2) (1.0: perfect; the 2 ranks' model must equal the 1 rank's).
"""

import json
import os
import subprocess
import sys

import numpy as np

from fastdp import demo, synthetic, train
from fastdp.bench.cases import Case, make_shard

FIT_ROWS, FIT_FEATURES = 200_000, 32
WIDE_ROWS, WIDE_FEATURES = 50_000, 2**20
FIT_ARGS = {"gd": {"solver": "gd", "max_iter": 10, "tol": 0.0},
            "sgd": {"solver": "sgd", "max_iter": 1, "tol": 0.0, "batch_size": 256},
            "sgd-32": {"solver": "sgd", "max_iter": 1, "tol": 0.0, "batch_size": 32}}


class Fit:
    params = (["gd", "sgd", "sgd-32"], ["numba", "cython"])
    param_names = ["solver", "backend"]
    timeout = 180

    def setup(self, solver, backend):
        self.X, self.y = synthetic.linear_regression(FIT_ROWS, FIT_FEATURES)
        ref = train.fit(self.X, self.y, backend="numpy", **FIT_ARGS[solver])
        got = self.fit(solver, backend)  # also compiles / warms up the kernels
        np.testing.assert_allclose(got.coef, ref.coef, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.intercept, ref.intercept, rtol=1e-9)

    def fit(self, solver, backend):
        return train.fit(self.X, self.y, backend=backend, **FIT_ARGS[solver])

    def time_fit(self, solver, backend):
        self.fit(solver, backend)


class SmallFit:
    """fit's fixed cost: 10 gradient-descent steps on 1,000 x 10 rows, where the arithmetic takes
    microseconds and the checks, set-up and thread limits around it are most of the time (what a
    grid search of many small fits pays)."""

    def setup(self):
        self.X, self.y = synthetic.linear_regression(1_000, 10)
        train.fit(self.X, self.y, solver="gd", max_iter=10, tol=0.0)  # compiles the kernels

    def time_fit(self):
        train.fit(self.X, self.y, solver="gd", max_iter=10, tol=0.0)


class WideSgdEpoch:
    """One epoch of hinge-loss mini-batch SGD (batches of 256 rows, alpha 1e-4, the default backend)
    on hashed text, 50,000 rows x 2**20 features, with l1_ratio 0 (L2) or 0.15 (elastic net):
    one rank, so its 196 steps are lazy (fastdp.lazy_steps: each reads and writes its rows'
    columns, about 25,600 of the 2**20), where every step of the reference fit on backend
    "numpy", which setup checks it against, is dense; this tracks a lazy step's per-non-zero
    cost."""

    params = [0.0, 0.15]
    param_names = ["l1_ratio"]
    timeout = 180

    def setup(self, l1_ratio):
        shard = make_shard(Case("hinge", "csr", WIDE_ROWS, WIDE_FEATURES))
        self.X, self.y = shard.X, shard.y
        ref = self.fit(l1_ratio, backend="numpy")
        got = self.fit(l1_ratio)  # also compiles / warms up the kernels
        np.testing.assert_allclose(got.coef, ref.coef, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.intercept, ref.intercept, rtol=1e-9, atol=1e-12)

    def fit(self, l1_ratio, backend="auto"):
        return train.fit(self.X, self.y, loss="hinge", solver="sgd", batch_size=256, max_iter=1,
                         alpha=1e-4, l1_ratio=l1_ratio, tol=0.0, backend=backend)

    def time_epoch(self, l1_ratio):
        self.fit(l1_ratio)


SCALING_SCRIPT = """
import json, sys, time
from fastdp import comm as fcomm, partition, synthetic, train
n_rows, n_features, steps, repeat = map(int, sys.argv[1:5])
comm = fcomm.world()
X, y = synthetic.linear_regression(n_rows, n_features,
                                   partition.contiguous_range(n_rows, comm.size, comm.rank))
train.fit(X, y, solver="gd", max_iter=2, tol=0, comm=comm)  # warm-up: JIT cache, first touch
best = float("inf")
for _ in range(repeat):
    comm.barrier()
    t0 = time.perf_counter()
    result = train.fit(X, y, solver="gd", max_iter=steps, tol=0, comm=comm)
    best = min(best, time.perf_counter() - t0)
seconds = max(comm.allgather_obj(best))  # the slowest rank's best
if comm.rank == 0:
    print(json.dumps({"ranks": comm.size, "seconds": seconds, "threads": result.threads,
                      "coef": result.coef.tolist(), "intercept": float(result.intercept)}))
"""


class StrongScaling:
    rows, features, steps, repeat = 400_000, 32, 20, 3
    timeout = 600

    def setup(self):
        self.mpiexec = demo.find_mpiexec()
        if self.mpiexec is None:
            raise NotImplementedError("no mpiexec (pip install mpich)")  # asv: skipped

    def run(self, ranks: int) -> dict:
        env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
        cmd = [self.mpiexec, "-n", str(ranks), sys.executable, "-c", SCALING_SCRIPT,
               *map(str, (self.rows, self.features, self.steps, self.repeat))]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def track_efficiency_2_ranks(self):
        one, two = self.run(1), self.run(2)
        np.testing.assert_allclose(two["coef"], one["coef"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(two["intercept"], one["intercept"], rtol=1e-10)
        return one["seconds"] / (2 * two["seconds"])
    track_efficiency_2_ranks.unit = "T1/(2*T2)"
