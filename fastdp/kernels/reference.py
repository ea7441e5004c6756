"""NumPy reference kernels: the slow, obviously correct twins of the compiled kernels.

Tests treat these as the ground truth. They compute in float64 whatever the input dtype, in two
passes over X (margins, then X.T @ dloss), exactly as textbook code does.
"""

import numpy as np

from .losses import NUMPY_LOSSES


def dense_sums(loss: str, X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float,
               out: np.ndarray) -> np.ndarray:
    """Loss and gradient sums over a dense shard.

    X: (m, n) float32/float64; y: (m,); coef: (n,) float64; intercept: float.
    out: (n + 2,) float64, OUT <- [grad_coef (n), grad_intercept, loss_sum]. Returns out.
    """
    X64 = np.asarray(X, dtype=np.float64)
    z = X64 @ coef + intercept
    loss_rows, dloss = NUMPY_LOSSES[loss](z, np.asarray(y, dtype=np.float64))
    n = X64.shape[1]
    out[:n] = X64.T @ dloss
    out[n] = dloss.sum()
    out[n + 1] = loss_rows.sum()
    return out
