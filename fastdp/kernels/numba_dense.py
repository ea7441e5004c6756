"""Fused loss-and-gradient sums over a dense shard, in Numba (prange over fixed row blocks).

The twin of csrc/dense_loss.pyx, with the same plan: block b of `block_rows` rows writes only
out[b, :], so no accumulator is shared between threads (Numba races silently on `a[j] += ...` from
several threads); the caller sums blocks in block order, which makes the result independent of the
thread count. Each row is read once: margin, per-row loss and derivative, then grad += d * x; rows go four at
a time (four independent dot products, one pass over the block's accumulator for all four).
The dot product may be reassociated (fastmath 'reassoc') so LLVM vectorizes it; NaN/inf semantics
are kept (inputs are validated before they get here).
"""

import numpy as np
from numba import njit, prange

SQUARED = 0
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@njit(inline="always", cache=True)
def pointwise(loss: int, z: float, y: float) -> tuple[float, float]:
    """(loss, dloss/dz) of one row at margin z with target y; codes as in losses.LOSS_CODES."""
    if loss == SQUARED:
        r = z - y
        return 0.5 * r * r, r
    return 0.0, 0.0


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def dense_block_sums(loss, X, y, coef, intercept, out, block_rows):
    """Per-block sums of the loss and its gradient over a dense shard.

    loss:       int, loss code (losses.LOSS_CODES)
    X:          (m, n) C-contiguous float32 or float64
    y:          (m,) same dtype as X
    coef:       (n,) float64
    intercept:  float
    out:        (ceil(m / block_rows), n + 2) float64, OUT: row b <- [grad_coef (n), grad_intercept, loss]
    block_rows: int >= 1
    """
    m, n = X.shape
    for b in prange(out.shape[0]):
        acc = np.zeros(n + 2)  # a fresh array: LLVM knows it aliases neither X nor out
        i = b * block_rows
        stop = min(m, i + block_rows)
        while i + 4 <= stop:
            r0, r1, r2, r3 = X[i], X[i + 1], X[i + 2], X[i + 3]
            z0 = z1 = z2 = z3 = intercept
            for j in range(n):
                c = coef[j]
                z0 += r0[j] * c
                z1 += r1[j] * c
                z2 += r2[j] * c
                z3 += r3[j] * c
            l0, d0 = pointwise(loss, z0, y[i])
            l1, d1 = pointwise(loss, z1, y[i + 1])
            l2, d2 = pointwise(loss, z2, y[i + 2])
            l3, d3 = pointwise(loss, z3, y[i + 3])
            acc[n] += (d0 + d1) + (d2 + d3)
            acc[n + 1] += (l0 + l1) + (l2 + l3)
            for j in range(n):
                acc[j] += (d0 * r0[j] + d1 * r1[j]) + (d2 * r2[j] + d3 * r3[j])
            i += 4
        while i < stop:
            z0 = intercept
            for j in range(n):
                z0 += X[i, j] * coef[j]
            l0, d0 = pointwise(loss, z0, y[i])
            acc[n] += d0
            acc[n + 1] += l0
            for j in range(n):
                acc[j] += d0 * X[i, j]
            i += 1
        out[b] = acc
