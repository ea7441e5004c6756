"""The table of per-row losses: names, the integer codes the compiled kernels switch on, and the
NumPy form of each loss used by the reference kernel.

A loss here is a function of the margin z = x . coef + intercept and the target y; the kernels need
its value and its derivative dloss/dz. Codes must match `cdef enum` in csrc/dense_loss.pyx and the
branches of `pointwise` in numba_dense.py.
"""

import numpy as np

LOSS_CODES: dict[str, int] = {"squared": 0}


def squared(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared loss 0.5 * (z - y)**2 of each row, and its derivative z - y. z, y: (m,) float64."""
    r = z - y
    return 0.5 * r * r, r


NUMPY_LOSSES = {"squared": squared}
