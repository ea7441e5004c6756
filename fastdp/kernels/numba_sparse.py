"""Fused loss-and-gradient sums over a CSR shard, in Numba (prange over row blocks).

The twin of csrc/sparse_loss.pyx, and the CSR form of numba_dense.py's plan: block b of
`block_rows` rows writes only out[b, :] (zeroed first, then used as the block's accumulator), the
caller sums blocks in block order, so the result does not depend on the thread count. Each row's
non-zeros are read once for the margin and once more, still in cache, for grad[indices] += d * data.
The accumulator is a dense row of n*K + K + 1 values, so CSR blocks are larger than dense ones
(fastdp.kernels.sparse_block_rows picks block_rows from the shard's shape).

Two kernels, one per loss family, sharing numba_dense's per-row losses: csr_block_sums (scalar-margin
losses, picked by code) and csr_softmax_block_sums (softmax cross-entropy over K classes).
Indices are int32 or int64 (one compiled version each), validated non-negative by the caller;
they are indexed as np.uintp, which spares Numba's negative-index wraparound (~10% here). Rows
without non-zeros are allowed (their margin is the intercept).
"""

import numpy as np
from numba import njit, prange

from .numba_dense import FASTMATH, pointwise, softmax_row


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def csr_block_sums(loss, data, indices, indptr, y, coef, intercept, out, block_rows):
    """Per-block sums of the loss and its gradient over a CSR shard.

    loss:       int, loss code of a scalar-margin loss (losses.LOSS_CODES)
    data:       (nnz,) float32 or float64, the non-zero values
    indices:    (nnz,) int32 or int64 column indices in 0..n-1
    indptr:     (m + 1,) same dtype as indices; row i is data[indptr[i]:indptr[i + 1]]
    y:          (m,) same dtype as data
    coef:       (n,) float64
    intercept:  float
    out:        (ceil(m / block_rows), n + 2) float64, OUT: row b <- [grad_coef (n), grad_intercept, loss]
    block_rows: int >= 1
    """
    m = indptr.shape[0] - 1
    n = coef.shape[0]
    for b in prange(out.shape[0]):
        acc = out[b]
        acc[:] = 0.0
        for i in range(b * block_rows, min(m, (b + 1) * block_rows)):
            lo, hi = indptr[i], indptr[i + 1]
            z = intercept
            for p in range(lo, hi):
                z += data[p] * coef[np.uintp(indices[p])]
            loss_i, d = pointwise(loss, z, y[i])
            if d != 0.0:  # hinge losses: rows past the margin add nothing
                for p in range(lo, hi):
                    acc[np.uintp(indices[p])] += d * data[p]
            acc[n] += d
            acc[n + 1] += loss_i


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def csr_softmax_block_sums(data, indices, indptr, y, coef, intercept, out, block_rows):
    """Per-block sums of the softmax cross-entropy and its gradient over a CSR shard.

    data:       (nnz,) float32 or float64, the non-zero values
    indices:    (nnz,) int32 or int64 column indices in 0..n-1
    indptr:     (m + 1,) same dtype as indices; row i is data[indptr[i]:indptr[i + 1]]
    y:          (m,) intp labels in 0..K-1
    coef:       (n, K) C-contiguous float64
    intercept:  (K,) float64
    out:        (ceil(m / block_rows), n*K + K + 1) float64, OUT: row b <- [grad_coef (n*K,
                row-major), grad_intercept (K), loss]
    block_rows: int >= 1
    """
    m = indptr.shape[0] - 1
    n, K = coef.shape
    nk = n * K
    for b in prange(out.shape[0]):
        acc = out[b]
        acc[:] = 0.0
        grad = acc[:nk].reshape((n, K))
        z = np.empty(K)
        for i in range(b * block_rows, min(m, (b + 1) * block_rows)):
            lo, hi = indptr[i], indptr[i + 1]
            z[:] = intercept
            for p in range(lo, hi):
                v = data[p]
                w = coef[np.uintp(indices[p])]
                for k in range(K):
                    z[k] += v * w[k]
            acc[nk + K] += softmax_row(z, y[i])
            for k in range(K):
                acc[nk + k] += z[k]
            for p in range(lo, hi):
                v = data[p]
                g = grad[np.uintp(indices[p])]
                for k in range(K):
                    g[k] += v * z[k]
