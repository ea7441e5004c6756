"""Mini-batch SGD over dense rows on one rank: an epoch's steps in one compiled loop.

A step of SGD on a small dense batch is microseconds of arithmetic, and the training loop's Python
around each step (the kernel call, the mean gradient, the update rule, the guard) cost about 9 us
of it: an epoch of 32-row batches over 1,000,000 x 32 rows took 275-332 ms, as long as
scikit-learn's SGDRegressor updating after every row. When nothing happens between two steps but
the learning rate's change (fastdp.lazy_steps.alone: one rank, SGD, with or without momentum
and an L1 part, no callback, checkpoint, ...), the loss is a scalar-margin one, and a batch's
work is small enough for one thread (batch_size * n_features <= SERIAL_VALUES, else the
threaded kernels win), fastdp.train's mini-batch loop hands an epoch's
batches but its last to DenseSteps.run: kernels.numba_steps.dense_batches, one call per chunk of
rows gathered by threads (kernels.take_rows; chunks as fastdp.train.Batches sizes them, about
512 KiB). The last batch takes the
loop's own step (its gradient is fit's grad_norm), and so does a batch whose sums are not finite
(the loop's guard then raises). The compiled loop is Numba's for either compiled backend
(backend "numpy" keeps the loop's steps). Its sums are added row by row, not in the compiled
kernels' groups of rows: the model equals the loop's steps' up to rounding.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .kernels import LOSS_CODES, numba_steps, take_rows
from .lazy_steps import alone
from .optim import SGD

if TYPE_CHECKING:  # only for the annotations: train imports this module
    from .train import Objective

SERIAL_VALUES = 1 << 15  # batch_size * n_features up to which one thread steps faster


class DenseSteps:
    """The compiled loop's buffers for one fit (its update rule's velocity is the rule's own): a
    chunk of gathered rows and their targets (rows read in place, one at a time, wait on memory:
    gathered by threads first, a 32-row step took half as long), a batch's sums and its mean
    gradient."""

    def __init__(self, objective: Objective, rule: SGD, batch_size: int, per_chunk: int) -> None:
        """per_chunk: batches gathered at once (fastdp.train.Batches.batches_per_chunk)."""
        self.objective, self.rule = objective, rule
        self.code = LOSS_CODES[objective.loss]
        X, y = objective.X, objective.y
        self.per_chunk = per_chunk
        rows = min(self.per_chunk * batch_size, X.shape[0])
        self.X, self.y = np.empty((rows, X.shape[1]), X.dtype), np.empty(rows, y.dtype)
        self.where = np.arange(rows)  # the gathered rows, in order
        self.sums = np.empty(objective.size + 1)
        self.grad = np.empty(objective.size)

    def run(self, theta: np.ndarray, order: np.ndarray, batch_size: int,
            rates: np.ndarray) -> tuple[int, float]:
        """Steps over consecutive batches (numba_steps.dense_batches): the shard's rows
        order[b * batch_size:(b + 1) * batch_size] at rate rates[b], gathered a chunk of batches
        at a time (kernels.take_rows). Stops before a batch whose sums are not finite. Returns
        (batches stepped, the sum of their mean losses times their rows)."""
        start = time.perf_counter()
        objective, rule = self.objective, self.rule
        penalty = objective.penalty
        done, weighted = 0, 0.0
        for first in range(0, len(rates), self.per_chunk):
            chunk = rates[first:first + self.per_chunk]
            rows = order[first * batch_size:(first + len(chunk)) * batch_size]
            X, y = self.X[:len(rows)], self.y[:len(rows)]
            take_rows(objective.X, rows, X, y=objective.y, y_out=y, validate=False)
            stepped, weighted = numba_steps.dense_batches(
                self.code, X, y, self.where[:len(rows)], batch_size, theta, self.sums,
                self.grad, objective.fit_intercept, chunk, penalty.l2, penalty.l1,
                rule.momentum, rule.nesterov, rule.velocity, weighted)
            done += stepped
            if stepped < len(chunk):
                break
        objective.evaluations += done
        objective.compute_seconds += time.perf_counter() - start
        return done, weighted


def applies(objective: Objective, rule: Any, batch_size: int, *, callback: Any,
            checkpointing: bool) -> bool:
    """Does fastdp.train's mini-batch loop hand its steps to DenseSteps (module docstring)?"""
    return (alone(objective, rule, callback=callback, checkpointing=checkpointing)
            and objective.K == 1 and isinstance(objective.X, np.ndarray)
            and objective.backend != "numpy"
            and batch_size * objective.n_features <= SERIAL_VALUES)
