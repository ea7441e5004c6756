"""Data-parallel full-batch gradient descent: where data, kernels, communicator and update meet.

One step, identical on every rank:

    buf[:n+2] = kernel sums over this rank's rows      [grad_coef (n), grad_intercept, loss_sum]
    buf[n+2]  = this rank's row count
    Allreduce(SUM, buf)                                  one call, one flat float64 buffer
    grad      = buf[:n+1] / rows + [alpha * coef, 0]     the L2 term, added once, after the sum
    theta    -= learning_rate * grad

Because the kernels return sums and the reduction carries the global row count, N ranks take the
serial step whatever the shard sizes (up to the order of floating-point additions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import kernels, threads
from .comm import Comm, raise_if_any, world
from .validation import check_shard


@dataclass
class FitResult:
    """Outcome of a fit; identical on every rank."""

    coef: np.ndarray
    intercept: float
    n_iter: int
    converged: bool
    loss_history: np.ndarray = field(repr=False)
    grad_norm: float
    n_rows: int
    n_ranks: int
    threads: dict[str, int]
    seconds: float


def _param_error(loss: str, learning_rate: float, max_iter: int, tol: float, alpha: float,
                 backend: str) -> str | None:
    """What is wrong with the fit's parameters, or None."""
    if loss not in kernels.LOSS_CODES:
        return f"loss must be one of {sorted(kernels.LOSS_CODES)}, got {loss!r}"
    if backend not in kernels.BACKENDS:
        return f"backend must be one of {list(kernels.BACKENDS)}, got {backend!r}"
    if not np.isfinite(learning_rate) or learning_rate <= 0:
        return f"learning_rate must be a finite number > 0, got {learning_rate!r}"
    if int(max_iter) != max_iter or max_iter < 1:
        return f"max_iter must be an integer >= 1, got {max_iter!r}"
    if not tol >= 0:
        return f"tol must be >= 0, got {tol!r}"
    if not (np.isfinite(alpha) and alpha >= 0):
        return f"alpha must be a finite number >= 0, got {alpha!r}"
    return None


def fit_gd(X: Any, y: Any, *, loss: str = "squared", learning_rate: float = 0.1,
           max_iter: int = 1000, tol: float = 1e-6, alpha: float = 0.0,
           fit_intercept: bool = True, backend: str = "numba", comm: Comm | None = None,
           callback: Callable[[int, np.ndarray, float], None] | None = None) -> FitResult:
    """Fit a linear model by full-batch gradient descent on the rows this rank holds.

    Minimizes (1/rows) * sum over ALL ranks' rows of loss(x.coef + intercept, y) + alpha/2 * |coef|^2.

    X, y: this rank's rows, (m, n) and (m,); m may differ between ranks and may be 0.
    comm: the communicator (default fastdp.comm.world(): MPI under mpiexec, else serial).
    callback(step, theta, objective): called on every rank after each reduction, before the
        update; theta is [coef..., intercept] (read-only view).
    Stops after max_iter updates or when |gradient| < tol. Bad input raises ValueError on every rank.
    """
    comm = world() if comm is None else comm
    error = _param_error(loss, learning_rate, max_iter, tol, alpha, backend)
    if error is None:
        X, y, error = check_shard(X, y)
    raise_if_any(comm, error)
    shapes = comm.allgather_obj((X.shape[0], X.shape[1]))
    n = X.shape[1]
    if len({cols for _, cols in shapes}) > 1:
        raise ValueError("X has a different number of features on different ranks: "
                         + ", ".join(f"rank {r}: {cols}" for r, (_, cols) in enumerate(shapes)))
    n_rows = sum(rows for rows, _ in shapes)
    if n_rows == 0:
        raise ValueError("X has 0 rows on every rank: there is nothing to fit")
    used_threads = threads.configure(comm.local_size)

    theta = comm.bcast_(np.zeros(n + 1))
    coef = theta[:n]
    buf = np.empty(n + 3)
    grad = np.empty(n + 1)
    scratch = np.empty((kernels.n_blocks(X.shape[0]), n + 2))
    history = []
    start = time.perf_counter()
    for step in range(max_iter + 1):
        kernels.loss_grad_sums(loss, X, y, coef, theta[n], buf[:n + 2], backend=backend,
                               scratch=scratch)
        buf[n + 2] = X.shape[0]
        comm.allreduce_sum_(buf)
        np.divide(buf[:n + 1], buf[n + 2], out=grad)
        grad[:n] += alpha * coef
        if not fit_intercept:
            grad[n] = 0.0
        history.append(buf[n + 1] / buf[n + 2] + 0.5 * alpha * float(coef @ coef))
        grad_norm = float(np.linalg.norm(grad))
        if callback is not None:
            view = theta.view()
            view.flags.writeable = False
            callback(step, view, history[-1])
        if grad_norm < tol or step == max_iter:
            break
        grad *= learning_rate
        theta -= grad
    return FitResult(coef=coef.copy(), intercept=float(theta[n]), n_iter=step,
                     converged=grad_norm < tol, loss_history=np.array(history),
                     grad_norm=grad_norm, n_rows=n_rows, n_ranks=comm.size,
                     threads=used_threads, seconds=time.perf_counter() - start)
