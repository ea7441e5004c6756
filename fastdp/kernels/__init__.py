"""Pure array kernels: the loss and gradient SUMS over one shard's rows.

    loss_grad("squared", X, y, coef, intercept, backend="numba") -> (loss_sum, grad_coef, grad_intercept)

Sums, never means: the global mean is the Allreduce of the sums divided by the global row count,
whatever the shard sizes. No regularization here (it is added once, after the reduction).

Backends share one contract: "numba" (fastdp/kernels/numba_dense.py), "cython"
(csrc/dense_loss.pyx, OpenMP) and "numpy" (reference.py, the ground truth in tests). The compiled
backends accumulate in float64 over fixed blocks of BLOCK_ROWS rows, summed in block order, so
their results do not depend on the number of threads.

This package imports nothing else of fastdp and knows nothing of MPI.
"""

import numba
import numpy as np

from . import _cython_dense, numba_dense, reference
from .losses import LOSS_CODES

BACKENDS: tuple[str, ...] = ("numba", "cython", "numpy")
BLOCK_ROWS = 4096
OPENMP: bool = _cython_dense.HAVE_OPENMP  # False when built without OpenMP: Cython runs on one thread

_BLOCK_KERNELS = {"numba": numba_dense.dense_block_sums, "cython": _cython_dense.dense_block_sums}


def n_blocks(n_rows: int) -> int:
    """Number of fixed row blocks the compiled kernels cut a shard of n_rows rows into."""
    return -(-n_rows // BLOCK_ROWS)


def _check(loss: str, X: np.ndarray, y: np.ndarray, coef: np.ndarray, backend: str) -> None:
    if loss not in LOSS_CODES:
        raise ValueError(f"loss must be one of {sorted(LOSS_CODES)}, got {loss!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (rows, features), got {X.ndim}-D with shape {X.shape}")
    if X.dtype not in (np.float32, np.float64) or not X.flags.c_contiguous:
        raise ValueError(f"X must be C-contiguous float32 or float64, got {X.dtype} "
                         f"(C-contiguous: {X.flags.c_contiguous}); see fastdp.validation.check_shard")
    if X.shape[1] == 0:
        raise ValueError("X has 0 features")
    if y.shape != (X.shape[0],):
        raise ValueError(f"X has {X.shape[0]} rows but y has shape {y.shape}")
    if coef.shape != (X.shape[1],):
        raise ValueError(f"X has {X.shape[1]} features but coef has shape {coef.shape}")


def loss_grad_sums(loss: str, X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float,
                   out: np.ndarray, *, backend: str = "numba",
                   scratch: np.ndarray | None = None) -> np.ndarray:
    """Write the shard's gradient and loss sums into `out`; the allocation-free form of loss_grad.

    X: (m, n) C-contiguous float32/float64; y: (m,) (cast to X's dtype); coef: (n,) (cast to float64).
    out: (n + 2,) float64, OUT <- [grad_coef (n), grad_intercept, loss_sum].
    scratch: optional (n_blocks(m), n + 2) float64 for the per-block sums (allocated when None).
    Returns out.
    """
    _check(loss, X, y, coef, backend)
    if out.shape != (X.shape[1] + 2,) or out.dtype != np.float64:
        raise ValueError(f"out must be float64 of shape ({X.shape[1] + 2},), got {out.dtype} {out.shape}")
    coef = np.ascontiguousarray(coef, dtype=np.float64)
    if backend == "numpy":
        return reference.dense_sums(loss, X, y, coef, float(intercept), out)
    y = np.ascontiguousarray(y, dtype=X.dtype)
    shape = (n_blocks(X.shape[0]), X.shape[1] + 2)
    if scratch is None:
        scratch = np.empty(shape)
    elif scratch.shape != shape or scratch.dtype != np.float64:
        raise ValueError(f"scratch must be float64 of shape {shape}, got {scratch.dtype} {scratch.shape}")
    _BLOCK_KERNELS[backend](LOSS_CODES[loss], X, y, coef, float(intercept), scratch, BLOCK_ROWS)
    return np.sum(scratch, axis=0, out=out)


def loss_grad(loss: str, X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float, *,
              backend: str = "numba") -> tuple[float, np.ndarray, float]:
    """Loss sum and gradient sums over the rows of one shard.

    X: (m, n) C-contiguous float32/float64; y: (m,); coef: (n,); intercept: float.
    Returns (loss_sum, grad_coef (n,) float64, grad_intercept). An empty shard (m = 0) gives zeros.
    """
    n = X.shape[1] if X.ndim == 2 else 0  # loss_grad_sums validates and names any bad argument
    out = loss_grad_sums(loss, X, y, coef, intercept, np.empty(n + 2), backend=backend)
    return float(out[n + 1]), out[:n], float(out[n])


def set_cython_threads(n: int) -> None:
    """OpenMP threads the Cython kernels use from now on in this process (n >= 1)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _cython_dense.set_num_threads(n)


def get_num_threads() -> dict[str, int]:
    """Threads each compiled backend will use: {'numba': ..., 'cython': ...}."""
    return {"numba": numba.get_num_threads(), "cython": _cython_dense.get_num_threads()}
