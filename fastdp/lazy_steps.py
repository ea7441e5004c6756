"""Mini-batch SGD over CSR rows on one rank, each step in O(its rows' non-zeros).

A dense step of SGD reads and writes all n + 1 parameters (the batch's sums, the mean gradient with
the L2 penalty's part, the update), however few columns the batch touches: on hashed text with
2**18 columns and batches of 256 documents, those passes took most of a step's 300 us (the mean
gradient and the update 135 us). Here a column whose gradient sum is zero only decays, and the
decay is kept as a running product (fastdp.kernels.numba_lazy): a step reads and writes its rows'
columns, the intercept and a few numbers.

fastdp.train's mini-batch loop takes these steps (`applies`) where the model is the dense steps'
up to rounding and nothing reads the parameters between steps: one rank (there is no reduction
to take part in), CSR rows, a scalar-margin loss on backend "numba", plain SGD (no momentum) with
no L1 part in the penalty and learning_rate * l2 < 1, and no callback, checkpoint, resume,
balancer, deterministic mode, overlap or FASTDP_SLOWDOWN. The last batch of every epoch takes the
dense step after a flush, so every epoch ends with all parameters up to date (its objective, the
convergence test) and fit's gradient norm is, as with dense steps, the last batch's gradient.
The model differs from the dense steps' in the last bits (a column's decay over the steps that
leave its gradient zero is one product instead of one rounding per step); it is the same from
run to run.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .kernels import LOSS_CODES, numba_lazy
from .optim import SGD

if TYPE_CHECKING:  # only for the annotations: train imports this module
    from .train import Objective

TINY = 1e-150  # the running product is folded into the parameters before it falls below this


class LazySteps:
    """The lazy steps of one fit: the columns' stored values, reciprocal products and sums
    (kernels.numba_lazy's `cols`), the running product of the steps' factors, and the columns
    of the batch summed last. Between flushes, theta's coefficients are stale and `cols` holds
    them; theta's intercept is always up to date."""

    def __init__(self, objective: Objective, batch_size: int) -> None:
        self.objective = objective
        n = objective.n_features
        self.code = LOSS_CODES[objective.loss]
        self.cols = np.empty((n, 3))
        self.now = 1.0
        self.loaded = False  # does cols hold theta's coefficients (since the last dense step)?
        # lazy_batch_sums writes entry k (the columns listed so far) at every non-zero
        indptr = objective.X.indptr
        longest = int(np.diff(indptr).max()) if indptr.size > 1 else 0
        self.touched = np.empty(min(n, batch_size * longest) + 1, dtype=np.int64)
        self.k = 0  # the batch summed last: its columns touched[:k], its rows
        self.count = 0

    def flush(self, theta: np.ndarray) -> None:
        """Bring theta's coefficients up to date (O(n)); the product starts again from 1."""
        if self.loaded:
            numba_lazy.lazy_flush(self.cols, self.now, theta[:self.objective.n_features])
            self.now = 1.0

    def gradient(self, theta: np.ndarray, rows: np.ndarray, last: bool) -> np.ndarray | None:
        """The sums over the shard's rows `rows` (int64, distinct: a batch), as Objective.gradient
        leaves them in objective.buf (batch_loss, sums_total, signals and the counters too),
        but for the gradient sums of the coefficients, which stay in cols. Returns None: take
        `step`. For the epoch's last batch (last=True) theta is brought up to date first, and the
        batch's dense mean gradient is returned: take the dense step (the update rule's)."""
        start = time.perf_counter()
        objective = self.objective
        n, size = objective.n_features, objective.size
        buf = objective.buf
        if last:
            self.flush(theta)
        if not self.loaded:  # the fit's start, or a dense step moved theta
            numba_lazy.lazy_load(theta[:n], self.cols)
            self.loaded = True
        X = objective.X
        self.k, buf[n], buf[size], objective.sums_total = numba_lazy.lazy_batch_sums(
            self.code, X.data, X.indices, X.indptr, rows, objective.y, self.cols, theta[n],
            self.now, self.touched)
        self.count = len(rows)
        buf[size + 1] = self.count
        buf[size + 2] = objective.signal
        objective.compute_seconds += time.perf_counter() - start
        if last or not math.isfinite(objective.sums_total):
            self._unload(buf[:n])  # the dense sums (objective.nonfinite reads them)
        if last:
            self.loaded = False
            return objective.finish(theta)
        objective.signals = objective.signal
        objective.batch_loss = buf[size] / self.count
        objective.evaluations += 1
        return None

    def _unload(self, sums: np.ndarray) -> None:
        """sums (n,) <- the listed columns' gradient sums, zero elsewhere."""
        listed = self.touched[:self.k]
        sums[:] = 0.0
        sums[listed] = self.cols[listed, 2]

    def step(self, theta: np.ndarray, lr: float) -> None:
        """The update of the batch `gradient` summed last: its columns and the intercept; every
        other coefficient decays by the product's change."""
        objective = self.objective
        n = objective.n_features
        l2 = objective.penalty.l2
        after = self.now * (1.0 - lr * l2)
        count = float(self.count)
        numba_lazy.lazy_batch_step(self.touched, self.k, self.cols, self.now, 1.0 / after, lr,
                                   l2, count)
        if objective.fit_intercept:
            theta[n] -= lr * (objective.buf[n] / count)
        self.now = after
        if after < TINY:
            self.flush(theta)


def applies(objective: Objective, rule: Any, learning_rate: float, *, callback: Any,
            checkpointing: bool, overlap: bool) -> bool:
    """Does fastdp.train's mini-batch loop take lazy steps (module docstring)? rule: the fit's
    update rule; learning_rate: the schedule's largest (first) rate; checkpointing: a checkpoint
    is written or resumed from."""
    X = objective.X
    return (objective.comm.size == 1 and not isinstance(X, np.ndarray) and X.format == "csr"
            and objective.K == 1 and objective.backend == "numba"
            and isinstance(rule, SGD) and rule.momentum == 0 and objective.penalty.l1 == 0
            and learning_rate * objective.penalty.l2 < 1 and callback is None
            and not checkpointing and objective.balancer is None and objective.tree is None
            and not overlap and objective.slowdown == 1.0)
