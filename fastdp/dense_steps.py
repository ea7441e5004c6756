"""Mini-batch SGD over dense rows on one rank: an epoch's steps in one compiled loop.

A step of SGD on a small dense batch is microseconds of arithmetic, and the training loop's Python
around each step (the kernel call, the mean gradient, the update rule, the guard) cost about 9 us
of it: an epoch of 32-row batches over 1,000,000 x 32 rows took 275-332 ms, as long as
scikit-learn's SGDRegressor updating after every row. When nothing happens between two steps but
the learning rate's change (fastdp.lazy_steps.alone: one rank, plain SGD, no L1, no callback,
checkpoint, ...) and a batch's work is small enough for one thread (batch_size * n_features <=
SERIAL_VALUES, else the threaded kernels win), fastdp.train's mini-batch loop hands an epoch's
batches but its last to kernels.numba_steps.dense_batches in one call. The last batch takes the
loop's own step (its gradient is fit's grad_norm), and so does a batch whose sums are not finite
(the loop's guard then raises). The compiled loop is Numba's for either compiled backend
(backend "numpy" keeps the loop's steps). Its sums are added row by row, not in the compiled
kernels' groups of rows: the model equals the loop's steps' up to rounding.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .kernels import LOSS_CODES, numba_steps
from .lazy_steps import alone

if TYPE_CHECKING:  # only for the annotations: train imports this module
    from .train import Objective

SERIAL_VALUES = 1 << 15  # batch_size * n_features up to which one thread steps faster


class DenseSteps:
    """The compiled loop's scratch for one fit: a batch's sums and its mean gradient."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self.code = LOSS_CODES[objective.loss]
        self.sums = np.empty(objective.size + 1)
        self.grad = np.empty(objective.size)

    def run(self, theta: np.ndarray, order: np.ndarray, batch_size: int,
            rates: np.ndarray) -> tuple[int, float]:
        """Steps over consecutive batches (numba_steps.dense_batches): the shard's rows
        order[b * batch_size:(b + 1) * batch_size] at rate rates[b]. Stops before a batch whose
        sums are not finite. Returns (batches stepped, the sum of their mean losses times their
        rows)."""
        start = time.perf_counter()
        objective = self.objective
        done, weighted = numba_steps.dense_batches(
            self.code, objective.X, objective.y, order, batch_size, theta, self.sums, self.grad,
            objective.fit_intercept, rates, objective.penalty.l2)
        objective.evaluations += done
        objective.compute_seconds += time.perf_counter() - start
        return done, weighted


def applies(objective: Objective, rule: Any, batch_size: int, *, callback: Any,
            checkpointing: bool) -> bool:
    """Does fastdp.train's mini-batch loop hand its steps to DenseSteps (module docstring)?"""
    return (alone(objective, rule, callback=callback, checkpointing=checkpointing)
            and isinstance(objective.X, np.ndarray) and objective.backend != "numpy"
            and batch_size * objective.n_features <= SERIAL_VALUES)
