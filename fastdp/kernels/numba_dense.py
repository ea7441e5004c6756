"""Fused loss-and-gradient sums over a dense shard, in Numba (prange over fixed row blocks).

The twin of csrc/dense_loss.pyx, with the same plan: block b of `block_rows` rows writes only
out[b, :], so no accumulator is shared between threads (Numba races silently on `a[j] += ...` from
several threads); the caller sums blocks in block order, which makes the result independent of the
thread count. Each row is read once: margin, per-row loss and derivative, then grad += d * x.

Two kernels, one per loss family:
- dense_block_sums: the scalar-margin losses (squared, logistic, hinge, squared_hinge), the
  per-row loss picked by an integer code (pointwise). Rows go four at a time (four independent dot products, one pass over the block's accumulator for all four).
- dense_softmax_block_sums: softmax cross-entropy over K classes; a row's K margins are K dot
  products with the rows of coef.T, then the K derivatives d, then grad.T[k] += d_k * x (the
  inner loops run over the features, see the kernel).
The dot products may be reassociated (fastmath 'reassoc') so LLVM vectorizes them; NaN/inf
semantics are kept (inputs are validated before they get here). pointwise and softmax_row are
shared with the CSR kernels (numba_sparse.py).
"""

import math

import numpy as np
from numba import njit, prange

SQUARED, LOGISTIC, HINGE, SQUARED_HINGE = 0, 1, 2, 3  # losses.LOSS_CODES
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@njit(inline="always", cache=True)
def pointwise(loss: int, z: float, y: float) -> tuple[float, float]:
    """(loss, dloss/dz) of one row at margin z with target y; codes as in losses.LOSS_CODES.

    logistic: softplus(t) = max(t, 0) + log1p(exp(-|t|)) at t = -y z, and -y * sigmoid(t) with
    sigmoid formed from the same exp(-|t|), so no margin overflows.
    """
    if loss == SQUARED:
        r = z - y
        return 0.5 * r * r, r
    if loss == LOGISTIC:
        t = -y * z
        e = math.exp(-abs(t))
        sigmoid = 1.0 / (1.0 + e) if t >= 0.0 else e / (1.0 + e)
        return max(t, 0.0) + math.log1p(e), -y * sigmoid
    slack = 1.0 - y * z
    if slack <= 0.0:
        return 0.0, 0.0
    if loss == HINGE:
        return slack, -y
    return slack * slack, -2.0 * y * slack


@njit(inline="always", cache=True)
def softmax_row(z, label: int) -> float:
    """Cross-entropy of one row: z (K,) float64 margins, IN/OUT <- dloss/dz = softmax(z) - onehot(label).

    Returns logsumexp(z) - z[label], with the maximum margin subtracted before exp (stable).
    """
    zmax = z[0]
    for k in range(1, z.shape[0]):
        zmax = max(zmax, z[k])
    loss = zmax - z[label]
    s = 0.0
    for k in range(z.shape[0]):
        e = math.exp(z[k] - zmax)
        z[k] = e
        s += e
    inv = 1.0 / s
    for k in range(z.shape[0]):
        z[k] *= inv
    z[label] -= 1.0
    return loss + math.log(s)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def dense_block_sums(loss, X, y, coef, intercept, out, block_rows):
    """Per-block sums of the loss and its gradient over a dense shard.

    loss:       int, loss code of a scalar-margin loss (losses.LOSS_CODES)
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


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def dense_softmax_block_sums(X, y, coef, intercept, out, block_rows):
    """Per-block sums of the softmax cross-entropy and its gradient over a dense shard.

    X:          (m, n) C-contiguous float32 or float64
    y:          (m,) intp labels in 0..K-1
    coef:       (n, K) C-contiguous float64
    intercept:  (K,) float64
    out:        (ceil(m / block_rows), n*K + K + 1) float64, OUT: row b <- [grad_coef (n*K,
                row-major), grad_intercept (K), loss]
    block_rows: int >= 1

    The work runs over coef transposed, (K, n): a row's K margins are K dot products of x with
    the rows of coef.T, its gradient K updates grad_t[k] += d_k * x of the block's (K, n)
    accumulator, both contiguous over the n features, so LLVM vectorizes over n (twice as fast
    as vectorizing over K at n = 64, K = 10). Each block writes grad_t back as (n, K) at its end.
    """
    m, n = X.shape
    K = coef.shape[1]
    nk = n * K
    coef_t = np.ascontiguousarray(coef.T)
    for b in prange(out.shape[0]):
        grad_t = np.zeros((K, n))
        tail = np.zeros(K + 1)  # [grad_intercept (K), loss]
        z = np.empty(K)
        for i in range(b * block_rows, min(m, (b + 1) * block_rows)):
            x = X[i]
            for k in range(K):
                w = coef_t[k]
                zk = intercept[k]
                for j in range(n):
                    zk += x[j] * w[j]
                z[k] = zk
            tail[K] += softmax_row(z, y[i])
            for k in range(K):
                d = z[k]
                g = grad_t[k]
                tail[k] += d
                for j in range(n):
                    g[j] += d * x[j]
        row = out[b]
        for j in range(n):
            for k in range(K):
                row[j * K + k] = grad_t[k, j]
        row[nk:] = tail
