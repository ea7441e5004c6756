"""The table of per-row losses: names, the integer codes the compiled kernels switch on, and the
NumPy form of each loss used by the reference kernel.

Two families:
- scalar-margin losses: z = x . coef + intercept is one number per row; the kernels need the loss
  and its derivative dloss/dz. "squared" is a regression loss (any real y); "logistic", "hinge" and
  "squared_hinge" are binary classification losses with y in {-1, +1}.
- "softmax": K margins per row, z = x @ coef + intercept with coef (n, K); y is an integer class
  label 0..K-1; the kernels need the loss and its gradient dloss/dz (K values).

Codes must match the enum in csrc/pointwise.pxd and the branches of `pointwise` in numba_dense.py.
"""

import numpy as np
from scipy.special import expit

LOSS_CODES: dict[str, int] = {"squared": 0, "logistic": 1, "hinge": 2, "squared_hinge": 3, "softmax": 4}
BINARY_LOSSES = frozenset({"logistic", "hinge", "squared_hinge"})  # y must be -1 or +1
MULTICLASS_LOSSES = frozenset({"softmax"})  # coef (n, K), intercept (K,), integer y


def squared(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared loss 0.5 * (z - y)**2 of each row, and its derivative z - y. z, y: (m,) float64."""
    r = z - y
    return 0.5 * r * r, r


def logistic(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log(1 + exp(-y z)) of each row, and its derivative -y * sigmoid(-y z); stable at any margin.

    z: (m,) float64; y: (m,) float64 in {-1, +1}.
    """
    t = -y * z
    return np.logaddexp(0.0, t), -y * expit(t)


def hinge(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max(0, 1 - y z) of each row, and its derivative: -y where y z < 1, else 0.

    z: (m,) float64; y: (m,) float64 in {-1, +1}. A NaN margin (e.g. inf - inf from overflowing
    products) gives a NaN loss and the derivative -y, as in the compiled kernels, so the
    non-finite guard sees it (a loss of 0 there would be silently wrong).
    """
    slack = 1.0 - y * z
    inactive = slack <= 0  # False for a NaN slack
    return np.where(inactive, 0.0, slack), np.where(inactive, 0.0, -y)


def squared_hinge(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max(0, 1 - y z)**2 of each row (scikit-learn's LinearSVC loss; no 0.5), and its derivative
    -2 y max(0, 1 - y z). z: (m,) float64; y: (m,) float64 in {-1, +1}.
    """
    h = np.maximum(0.0, 1.0 - y * z)
    return h * h, -2.0 * y * h


def softmax(Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropy logsumexp(z) - z[y] of each row, and its gradient softmax(z) - onehot(y).

    Z: (m, K) float64 margins; y: (m,) integer labels in 0..K-1. Returns ((m,), (m, K)) float64.
    The log-sum-exp subtracts each row's maximum first, so no margin overflows.
    """
    rows = np.arange(Z.shape[0])
    shifted = Z - Z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1)
    P = e / s[:, None]
    P[rows, y] -= 1.0
    return np.log(s) - shifted[rows, y], P


NUMPY_LOSSES = {"squared": squared, "logistic": logistic, "hinge": hinge,
                "squared_hinge": squared_hinge, "softmax": softmax}
