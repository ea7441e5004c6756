"""Mini-batch SGD over CSR rows on one rank, each step in O(its rows' non-zeros).

A dense step of SGD reads and writes all n K + K parameters (K outputs: 1, or softmax's classes;
the batch's sums, the mean gradient with the L2 penalty's part, the update), however few columns
the batch touches: on hashed text with 2**18 columns and batches of 256 documents (K = 1), those
passes took most of a step's 300 us (the mean gradient and the update 135 us). Here a column
whose gradient sum is zero only decays (L2) and shrinks towards 0 (L1), and both are kept as two
running numbers, a product and a sum (fastdp.kernels.numba_lazy): a step reads and writes its
rows' columns, the intercept and a few numbers.

fastdp.train's mini-batch loop takes these steps (`applies`) where the model is the dense steps'
up to rounding and nothing reads the parameters between steps: one rank (there is no reduction
to take part in), CSR rows on backend "numba", any loss (a scalar-margin one or softmax), plain
SGD (no momentum) with learning_rate * l2 < 1, and no callback, checkpoint, resume, balancer,
deterministic mode or FASTDP_SLOWDOWN (`alone`). Nothing then happens between two steps but
the learning rate's change, so an epoch's batches but its last are stepped in one compiled
loop (`run`: no Python between steps); the last batch (`gradient`, `step`) also gives fit's
gradient norm, as with dense steps that of the last batch's mean gradient, and every epoch ends
with a flush (all parameters up to date for its objective and the convergence test).
The model differs from the dense steps' in the last bits (a column's decay and shrinkage over
the steps that leave its gradient zero are one product and one sum instead of roundings at every
step); it is the same from run to run. Without L1 (l1 = 0) the steps are linear in the gradient
and each non-zero's term goes into the coefficients directly (numba_lazy's l2_* kernels: no
gradient sums, marks or list of columns, half the memory read at random). Either way a batch
of PARALLEL_TERMS terms or more has its margins formed by the threads (the same bits:
numba_lazy).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from .kernels import LOSS_CODES, numba_lazy
from .optim import SGD

if TYPE_CHECKING:  # only for the annotations: train imports this module
    from .train import Objective

TINY = 1e-150  # the running product is folded into the parameters before it falls below this
# A batch's margins are formed by the threads when it holds about this many
# non-zero terms (rows x mean non-zeros per row x K) or more (margin_parts). Ad-hoc, 3-epoch
# hinge fits on the fortunes corpus (2**18 columns, 22 non-zeros a row, q in cache) with
# batches of 128 to 1024 rows (2,800 to 22,000 terms) were within noise threaded or not; on
# 2**20 columns, 256 rows of 100 non-zeros (25,600 terms), threads made the epoch 1.2x faster.
PARALLEL_TERMS = 1 << 14


class LazySteps:
    """The lazy steps of one fit: each column's coefficients over the running product (q) and
    the running product of the steps' factors. With L1 (l1 > 0), kernels.numba_lazy's `cols`,
    (n, 2K): q and the gradient sums side by side, a mark per column (a bit of `marks`), the sum
    of the L1 thresholds and the columns of the batch summed last; without, `cols` is q alone,
    (n, K), in theta's own coefficients (no copy: nothing reads them between two flushes), and
    `dz` the derivatives of the batch's rows. `cols` holds the coefficients; theta's are up to
    date after a `flush` only (its intercept always is)."""

    def __init__(self, objective: Objective, batch_size: int, theta: np.ndarray) -> None:
        self.objective = objective
        n, K = objective.n_features, objective.K
        self.code = LOSS_CODES[objective.loss]
        self.l2_only = objective.penalty.l1 == 0.0
        self.now, self.a = 1.0, 0.0  # the product, the threshold sum (0 without L1)
        self.d_sum = np.zeros(K)  # the intercept's gradient sums
        self.rows = np.empty(0, dtype=np.int64)  # the batch summed last
        self.dz = np.empty((batch_size, K))  # the batch's rows' derivatives
        self.row_sums = np.empty((batch_size, 2))  # and their losses and bound terms
        self.parts = margin_parts(objective.X, batch_size, K)
        if self.l2_only:
            self.cols = self._coef(theta)  # q = coef / now, now = 1
        else:
            self.cols = np.empty((n, 2 * K))
            numba_lazy.lazy_load(self._coef(theta), self.cols)
            self.marks = np.zeros((n + 7) // 8, dtype=np.uint8)
            # lazy_batch_sums writes entry k (the columns listed so far) at every non-zero
            indptr = objective.X.indptr
            longest = int(np.diff(indptr).max()) if indptr.size > 1 else 0
            self.touched = np.empty(min(n, batch_size * longest) + 1, dtype=np.int64)
            self.k = 0  # the batch summed last: its columns touched[:k]
        self.grad_norm = math.nan  # |mean gradient| of the last epoch's last batch

    def _coef(self, theta: np.ndarray) -> np.ndarray:
        """theta's (or a buffer's) coefficients as an (n, K) view."""
        objective = self.objective
        return theta[:objective.n_coef].reshape(objective.n_features, objective.K)

    def flush(self, theta: np.ndarray) -> None:
        """Bring theta's coefficients up to date (O(n K)); the product starts again from 1, the
        threshold sum from 0."""
        numba_lazy.lazy_flush(self.cols, self.now, self.a, self._coef(theta))
        self.now, self.a = 1.0, 0.0

    def run(self, theta: np.ndarray, order: np.ndarray, batch_size: int,
            rates: np.ndarray) -> tuple[int, float]:
        """Steps over consecutive batches in one compiled loop (numba_lazy.lazy_batches, or
        l2_batches without L1): the shard's rows order[b * batch_size:(b + 1) * batch_size] at
        rate rates[b]. Stops before a batch whose sums are not known finite (its step, taken by
        `gradient` and `step`, then raises in the training loop's guard or goes on). Returns
        (batches stepped, the sum of their mean losses times their rows)."""
        start = time.perf_counter()
        objective = self.objective
        X, penalty = objective.X, objective.penalty
        coef, intercept = self._coef(theta), theta[objective.n_coef:]
        if self.l2_only:
            done, self.now, weighted = numba_lazy.l2_batches(
                self.code, X.data, X.indices, X.indptr, order, batch_size, objective.y, self.cols,
                coef, intercept, objective.fit_intercept, rates, penalty.l2, self.now, TINY,
                self.dz, self.d_sum, self.row_sums, self.parts)
        else:
            done, self.now, self.a, weighted = numba_lazy.lazy_batches(
                self.code, X.data, X.indices, X.indptr, order, batch_size, objective.y, self.cols,
                self.marks, coef, intercept, objective.fit_intercept, rates, penalty.l2,
                penalty.l1, self.now, self.a, TINY, self.touched, self.dz, self.d_sum,
                self.row_sums, self.parts)
        objective.evaluations += done
        objective.compute_seconds += time.perf_counter() - start
        return done, weighted

    def gradient(self, theta: np.ndarray, rows: np.ndarray, last: bool) -> None:
        """The sums over the shard's rows `rows` (int64, distinct: a batch), as Objective.gradient
        leaves them in objective.buf (batch_loss, sums_total, signals and the counters too),
        but for the gradient sums of the coefficients, which stay in `cols` (with L1) or are
        never formed (without: `dz` holds the rows' derivatives), except where buf needs them:
        when a sum is not finite (objective.nonfinite reads them) and, without L1, for the
        epoch's last batch (last=True), whose grad_norm is the norm of the mean gradient the
        dense step would take, penalty included (one more read of all coefficients)."""
        start = time.perf_counter()
        objective = self.objective
        n_coef, size = objective.n_coef, objective.size
        buf = objective.buf
        X = objective.X
        self.rows = rows
        if self.l2_only:
            buf[size], total, bound = numba_lazy.l2_batch_margins(
                self.code, X.data, X.indices, X.indptr, rows, objective.y, self.cols,
                theta[n_coef:], self.now, self.dz, self.d_sum, self.row_sums, self.parts)
            if last or bound > numba_lazy.SUMS_BOUND or not math.isfinite(total):
                buf[:n_coef] = 0.0
                numba_lazy.add_rows(X.data, X.indices, X.indptr, rows, self.dz, 1.0,
                                    self._coef(buf))
                if bound > numba_lazy.SUMS_BOUND:  # a column's sum may have overflowed
                    total += float(np.sum(buf[:n_coef]))
            objective.sums_total = total
        else:
            self.k, buf[size], objective.sums_total = numba_lazy.lazy_batch_sums(
                self.code, X.data, X.indices, X.indptr, rows, objective.y, self.cols, self.marks,
                theta[n_coef:], self.now, self.a, self.touched, self.dz, self.d_sum,
                self.row_sums, self.parts)
        buf[n_coef:size] = self.d_sum
        count = len(rows)
        buf[size + 1] = count
        objective.signals = buf[size + 2] = objective.signal
        objective.batch_loss = buf[size] / count
        objective.evaluations += 1
        if not math.isfinite(objective.sums_total):  # objective.nonfinite reads the dense sums
            if not self.l2_only:
                listed = self.touched[:self.k]
                buf[:n_coef] = 0.0
                self._coef(buf)[listed] = self.cols[listed, objective.K:]
        elif last:
            self.grad_norm = self._grad_norm()
        objective.compute_seconds += time.perf_counter() - start

    def _grad_norm(self) -> float:
        """|sums / count + l2 * coef| over the coefficients (sums zero but on the batch's
        columns: without L1, `gradient` left them all in objective.buf), and the intercept's
        sums / count if it is fitted: as kernels.mean_gradient."""
        objective = self.objective
        l2 = objective.penalty.l2
        K = objective.K
        count = len(self.rows)
        if self.l2_only:
            total = numba_lazy.l2_grad_squares(objective.buf[:objective.n_coef], self.cols.ravel(),
                                               l2 * self.now, float(count))
        else:
            listed = self.touched[:self.k]
            q = self.cols[listed, :K]
            coef = np.copysign(self.now * np.maximum(np.abs(q) - self.a, 0.0), q)
            grad = self.cols[listed, K:] / count + l2 * coef
            listed_squares = float(np.sum(coef * coef))
            unlisted = numba_lazy.lazy_sum_squares(self.cols, self.now, self.a) - listed_squares
            total = l2 * l2 * max(unlisted, 0.0) + float(np.sum(grad * grad))
        if objective.fit_intercept:
            total += float(np.sum((self.d_sum / count) ** 2))
        return math.sqrt(total)

    def step(self, theta: np.ndarray, lr: float) -> None:
        """The update of the batch `gradient` summed last: its columns and the intercept; every
        other coefficient decays and shrinks by the running numbers' change."""
        objective = self.objective
        penalty = objective.penalty
        X = objective.X
        coef, intercept = self._coef(theta), theta[objective.n_coef:]
        if self.l2_only:
            self.now = numba_lazy.l2_step(
                X.data, X.indices, X.indptr, self.rows, self.dz, self.cols, coef, intercept,
                objective.fit_intercept, self.d_sum, self.now, lr, penalty.l2, TINY)
        else:
            self.now, self.a = numba_lazy.lazy_step(
                self.touched, self.k, self.cols, self.marks, coef, intercept,
                objective.fit_intercept, self.d_sum, float(len(self.rows)), self.now, self.a, lr,
                penalty.l2, penalty.l1, TINY)


def margin_parts(X: Any, batch_size: int, K: int) -> int:
    """How many threads form a batch's margins (numba_lazy.l2_batch_margins, lazy_batch_sums:
    the same bits for any number): numba's thread count when a batch of batch_size rows of CSR X
    holds PARALLEL_TERMS terms or more on average, else 1 (a batch too small to pay for waking
    them)."""
    rows = max(X.shape[0], 1)
    terms = min(batch_size, rows) * X.nnz / rows * K
    return numba.get_num_threads() if terms >= PARALLEL_TERMS else 1


def alone(objective: Objective, rule: Any, *, callback: Any, checkpointing: bool) -> bool:
    """Nothing but the steps' arithmetic between two steps of SGD: one rank (no reduction, so
    overlap=True has nothing to overlap either), the SGD rule, and no callback, checkpoint or
    resume (checkpointing), balancer, deterministic mode or FASTDP_SLOWDOWN. Lazy steps
    (`applies`) and fastdp.dense_steps's compiled loop take over the training loop's steps only
    then."""
    return (objective.comm.size == 1 and isinstance(rule, SGD)
            and callback is None and not checkpointing and objective.balancer is None
            and objective.tree is None and objective.slowdown == 1.0)


def applies(objective: Objective, rule: Any, learning_rate: float, *, callback: Any,
            checkpointing: bool) -> bool:
    """Does fastdp.train's mini-batch loop take lazy steps (module docstring)? `alone`, no
    momentum (its velocity moves every parameter), CSR rows, backend "numba" and
    learning_rate * l2 < 1; any loss. rule: the fit's update rule; learning_rate: the
    schedule's largest (first) rate; checkpointing: a checkpoint is written or resumed from."""
    X = objective.X
    return (alone(objective, rule, callback=callback, checkpointing=checkpointing)
            and rule.momentum == 0
            and not isinstance(X, np.ndarray) and X.format == "csr"
            and objective.backend == "numba" and learning_rate * objective.penalty.l2 < 1)
