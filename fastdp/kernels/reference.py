"""NumPy/SciPy reference kernels: the slow, obviously correct twins of the compiled kernels.

Tests treat these as the ground truth. They compute in float64 whatever the input dtype, in two
passes over X (margins, then X.T @ dloss), exactly as textbook code does, for dense X and
scipy.sparse CSR X alike (both support `@` and `.T`).
"""

import numpy as np

from .losses import NUMPY_LOSSES


def sums(loss: str, X, y: np.ndarray, coef: np.ndarray, intercept, out: np.ndarray) -> np.ndarray:
    """Loss and gradient sums over a shard, any loss of losses.LOSS_CODES.

    X:         (m, n) float32/float64 ndarray or scipy.sparse CSR matrix/array
    y:         (m,) float targets (scalar losses) or integer labels 0..K-1 ("softmax")
    coef:      (n,) float64 (scalar losses) or (n, K) float64 ("softmax")
    intercept: float (scalar losses) or (K,) float64 ("softmax")
    out:       (coef.size + K + 1,) float64, OUT <- [grad_coef (coef.size, row-major),
               grad_intercept (K), loss_sum], K = 1 for the scalar losses
    Returns out.
    """
    # np.asarray: an np.matrix X would turn the margins into a (1, m) matrix
    X64 = np.asarray(X, dtype=np.float64) if isinstance(X, np.ndarray) else X.astype(np.float64, copy=False)
    z = np.asarray(X64 @ coef) + intercept
    target = y if coef.ndim == 2 else np.asarray(y, dtype=np.float64)
    loss_rows, dloss = NUMPY_LOSSES[loss](z, target)
    size = coef.size
    out[:size] = np.asarray(X64.T @ dloss).ravel()
    out[size:-1] = dloss.sum(axis=0)
    out[-1] = loss_rows.sum()
    return out
