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
they, and the positions p of the non-zeros, are indexed as np.uintp, which spares Numba's
negative-index wraparound (~10% on the plain kernels, 20% on the tiled ones here). Rows without
non-zeros are allowed (their margin is the intercept).
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
            lo, hi = np.uintp(indptr[i]), np.uintp(indptr[i + 1])
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
            lo, hi = np.uintp(indptr[i]), np.uintp(indptr[i + 1])
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


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def tile_gradients(data, indices, seg, bounds, work, chunk_rows, grad, K):
    """The gradient pass of the tiled kernels, one thread per tile: grad[tile] <- the sum over
    rows r, in row order, of the outer product of row r's segment in the tile with its K
    derivatives (work[r // chunk_rows, (r % chunk_rows) * K:][:K], as the margin pass left them).

    data, indices, seg, bounds: a tiled CSR shard of m rows (tiles.py; m = seg.size // T)
    work:       (ceil(m / chunk_rows), chunk_rows*K + K + 1) float64, the margin pass's output
    chunk_rows: int >= 1
    grad:       (n*K,) float64, OUT: the gradient (n, K) row-major
    K:          int >= 1, the margins per row (1: the scalar losses)
    """
    T = bounds.shape[0] - 1
    m = (seg.shape[0] - 1) // T
    rows_of_grad = grad.reshape((grad.shape[0] // K, K))
    for t in prange(T):
        grad[bounds[t] * K:bounds[t + 1] * K] = 0.0
        first = seg[t * m:(t + 1) * m + 1]
        for c in range(work.shape[0]):
            r0 = c * chunk_rows
            rows = min(m, r0 + chunk_rows) - r0
            d = work[c, :rows * K].reshape((rows, K))
            for r in range(r0, r0 + rows):
                dr = d[r - r0]
                if K == 1:  # the scalar losses: a plain loop (a K-loop of one costs ~20% here)
                    d0 = dr[0]
                    if d0 != 0.0:  # hinge losses: rows past the margin add nothing
                        for p in range(np.uintp(first[r]), np.uintp(first[r + 1])):
                            grad[np.uintp(indices[p])] += d0 * data[p]
                    continue
                for p in range(np.uintp(first[r]), np.uintp(first[r + 1])):
                    v = data[p]
                    g = rows_of_grad[np.uintp(indices[p])]
                    for k in range(K):
                        g[k] += v * dr[k]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def tiled_csr_sums(loss, data, indices, seg, bounds, y, coef, intercept, out, work, chunk_rows):
    """Sums of a scalar-margin loss and its gradient over a column-tiled CSR shard (tiles.py).

    loss:       int, loss code of a scalar-margin loss (losses.LOSS_CODES)
    data:       (nnz,) float32 or float64, the non-zeros in tile-major order
    indices:    (nnz,) int32 or int64, their column indices in 0..n-1
    seg:        (T*m + 1,) int64; segment (t, r) of tile t and row r is [seg[t*m + r], seg[t*m + r + 1])
    bounds:     (T + 1,) int64 column bounds of the tiles, 0 .. n
    y:          (m,) same dtype as data
    coef:       (n,) float64
    intercept:  float
    out:        (n + 2,) float64, OUT <- [grad_coef (n), grad_intercept, loss]
    work:       (ceil(m / chunk_rows), chunk_rows + 2) float64 scratch: row c <- the derivatives
                of chunk c's rows, then the chunk's [grad_intercept, loss] sums
    chunk_rows: int >= 1, rows per chunk of the margin pass

    Two passes. Margins: one thread per chunk of rows, tile after tile (the tile's coef stays in
    L2), each row's margin the intercept plus its tile segments' dot products in tile order; then
    the chunk's losses and derivatives. Gradient: one thread per tile, out[tile] <- the sum over
    rows in row order of d_r * (row r's segment in the tile). Every sum's order is fixed by the
    shape, so the result does not depend on the thread count.
    """
    m = y.shape[0]
    n = coef.shape[0]
    T = bounds.shape[0] - 1
    for c in prange(work.shape[0]):
        r0 = c * chunk_rows
        r1 = min(m, r0 + chunk_rows)
        z = work[c]
        z[:r1 - r0] = intercept
        for t in range(T):
            first = seg[t * m:(t + 1) * m + 1]
            for r in range(np.uintp(r0), np.uintp(r1)):
                s = 0.0
                for p in range(np.uintp(first[r]), np.uintp(first[r + 1])):
                    s += data[p] * coef[np.uintp(indices[p])]
                z[r - np.uintp(r0)] += s
        grad_b = 0.0
        total = 0.0
        for r in range(r0, r1):
            loss_r, d = pointwise(loss, z[r - r0], y[r])
            z[r - r0] = d
            grad_b += d
            total += loss_r
        z[chunk_rows] = grad_b
        z[chunk_rows + 1] = total
    tile_gradients(data, indices, seg, bounds, work, chunk_rows, out[:n], 1)
    out[n] = 0.0
    out[n + 1] = 0.0
    for c in range(work.shape[0]):
        out[n] += work[c, chunk_rows]
        out[n + 1] += work[c, chunk_rows + 1]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def tiled_csr_softmax_sums(data, indices, seg, bounds, y, coef, intercept, out, work, chunk_rows):
    """Sums of the softmax cross-entropy and its gradient over a column-tiled CSR shard (tiles.py),
    the plan of tiled_csr_sums with K margins per row.

    data:       (nnz,) float32 or float64, the non-zeros in tile-major order
    indices:    (nnz,) int32 or int64, their column indices in 0..n-1
    seg:        (T*m + 1,) int64; segment (t, r) of tile t and row r is [seg[t*m + r], seg[t*m + r + 1])
    bounds:     (T + 1,) int64 column bounds of the tiles, 0 .. n
    y:          (m,) intp labels in 0..K-1
    coef:       (n, K) C-contiguous float64
    intercept:  (K,) float64
    out:        (n*K + K + 1,) float64, OUT <- [grad_coef (n*K, row-major), grad_intercept (K), loss]
    work:       (ceil(m / chunk_rows), chunk_rows*K + K + 1) float64 scratch: row c <- chunk c's
                rows' dloss/dz (chunk_rows, K), then the chunk's [grad_intercept (K), loss] sums
    chunk_rows: int >= 1, rows per chunk of the margin pass
    """
    m = y.shape[0]
    n, K = coef.shape
    nk = n * K
    T = bounds.shape[0] - 1
    tail = chunk_rows * K
    for c in prange(work.shape[0]):
        r0 = c * chunk_rows
        r1 = min(m, r0 + chunk_rows)
        z = work[c, :(r1 - r0) * K].reshape((r1 - r0, K))
        for r in range(r1 - r0):
            z[r] = intercept
        for t in range(T):
            first = seg[t * m:(t + 1) * m + 1]
            for r in range(np.uintp(r0), np.uintp(r1)):
                zr = z[r - np.uintp(r0)]
                for p in range(np.uintp(first[r]), np.uintp(first[r + 1])):
                    v = data[p]
                    w = coef[np.uintp(indices[p])]
                    for k in range(K):
                        zr[k] += v * w[k]
        sums = work[c, tail:tail + K + 1]
        sums[:] = 0.0
        for r in range(r1 - r0):
            sums[K] += softmax_row(z[r], y[r0 + r])
            for k in range(K):
                sums[k] += z[r, k]
    tile_gradients(data, indices, seg, bounds, work, chunk_rows, out[:nk], K)
    out[nk:] = 0.0
    for c in range(work.shape[0]):
        for k in range(K + 1):
            out[nk + k] += work[c, tail + k]
