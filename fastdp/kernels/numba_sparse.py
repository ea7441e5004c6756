"""Fused loss-and-gradient sums over a CSR shard, in Numba (prange over row blocks).

The twin of csrc/sparse_loss.pyx, and the CSR form of numba_dense.py's plan: block b of
`block_rows` rows writes only out[b, :] (zeroed first, then used as the block's accumulator), the
caller sums blocks in block order, so the result does not depend on the thread count. Each row's
non-zeros are read once for the margin and once more, still in cache, for grad[indices] += d * data.
The accumulator is a dense row of n*K + K + 1 values, so CSR blocks are larger than dense ones
(fastdp.kernels.sparse_block_rows picks block_rows from the shard's shape).

Two kernels, one per loss family, sharing numba_dense's per-row losses: csr_block_sums (scalar-margin
losses, picked by code) and csr_softmax_block_sums (softmax cross-entropy over K classes). Wide
shards (fastdp.kernels.tiles_pay_off) have two more, each reading a copy of X built once:
column_csr_sums (scalar losses: margins by rows of X, gradient by columns of its column-major
copy, columns.py) and tiled_csr_softmax_sums (softmax: X in column tiles, tiles.py).
Indices are int32 or int64 (one compiled version each), validated non-negative by the caller;
they, and the positions p of the non-zeros, are indexed as np.uintp, which spares Numba's
negative-index wraparound (~10% on the plain kernels, 20% on the tiled ones here). Rows without
non-zeros are allowed (their margin is the intercept).
"""

import numpy as np
from numba import njit, prange

from .numba_dense import FASTMATH, pointwise, pointwise_rows, softmax_row

GROUP_ROWS = 32  # rows per group of column_csr_sums' margin pass (their margins, then their losses)


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
    """The gradient pass of tiled_csr_softmax_sums, one thread per tile: grad[tile] <- the sum over
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
                for p in range(np.uintp(first[r]), np.uintp(first[r + 1])):
                    v = data[p]
                    g = rows_of_grad[np.uintp(indices[p])]
                    for k in range(K):
                        g[k] += v * dr[k]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def tiled_csr_softmax_sums(data, indices, seg, bounds, y, coef, intercept, out, work, chunk_rows,
                           parts):
    """Sums of the softmax cross-entropy and its gradient over a column-tiled CSR shard (tiles.py).

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
    chunk_rows: int >= 1, rows per chunk (the unit of the loss and intercept sums)
    parts:      int >= 1, the margin pass's units of work: runs of consecutive chunks, one per
                thread (capped at the number of chunks)

    Two passes. Margins: each part takes its rows tile after tile, so that a tile's coef stays in
    cache while all of the part's rows read it; its chunks' margins (in work) are streamed once a
    tile. A row's margins are summed in tile order, whatever the parts, so the result does not
    depend on them (nor on the thread count). Gradient: tile_gradients.
    """
    m = y.shape[0]
    n, K = coef.shape
    nk = n * K
    T = bounds.shape[0] - 1
    tail = chunk_rows * K
    chunks = work.shape[0]
    parts = max(1, min(parts, chunks))
    for part in prange(parts):
        c0 = part * chunks // parts
        c1 = (part + 1) * chunks // parts
        for c in range(c0, c1):
            for r in range(min(m, (c + 1) * chunk_rows) - c * chunk_rows):
                work[c, r * K:(r + 1) * K] = intercept
        for t in range(T):
            first = seg[t * m:(t + 1) * m + 1]
            for c in range(c0, c1):
                r0 = c * chunk_rows
                z = work[c]
                for r in range(np.uintp(r0), np.uintp(min(m, r0 + chunk_rows))):
                    zr = z[(r - np.uintp(r0)) * K:]
                    for p in range(np.uintp(first[r]), np.uintp(first[r + 1])):
                        v = data[p]
                        w = coef[np.uintp(indices[p])]
                        for k in range(K):
                            zr[k] += v * w[k]
        for c in range(c0, c1):
            r0 = c * chunk_rows
            rows = min(m, r0 + chunk_rows) - r0
            z = work[c, :rows * K].reshape((rows, K))
            sums = work[c, tail:tail + K + 1]
            sums[:] = 0.0
            for r in range(rows):
                sums[K] += softmax_row(z[r], y[r0 + r])
                for k in range(K):
                    sums[k] += z[r, k]
    tile_gradients(data, indices, seg, bounds, work, chunk_rows, out[:nk], K)
    out[nk:] = 0.0
    for c in range(chunks):
        for k in range(K + 1):
            out[nk + k] += work[c, tail + k]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def column_gradients(data, rows, colptr, bounds, d, grad):
    """The gradient pass of column_csr_sums, one tile of columns at a time per thread:
    grad[j] <- the sum over column j's non-zeros, in row order, of x_rj * d[r].

    data, rows, colptr, bounds: a column-major copy of a CSR shard of m rows and n columns
                (columns.py)
    d:          (m,) float64, the rows' derivatives dloss/dz
    grad:       (n,) float64, OUT
    """
    for t in prange(bounds.shape[0] - 1):
        for j in range(bounds[t], bounds[t + 1]):
            s = 0.0
            for p in range(np.uintp(colptr[j]), np.uintp(colptr[j + 1])):
                s += data[p] * d[np.uintp(rows[p])]
            grad[j] = s


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def column_csr_sums(loss, data, indices, indptr, cdata, crows, colptr, bounds, y, coef, intercept,
                    out, work, chunk_rows):
    """Sums of a scalar-margin loss and its gradient over a CSR shard and its column-major copy
    (columns.py).

    loss:       int, loss code of a scalar-margin loss (losses.LOSS_CODES)
    data:       (nnz,) float32 or float64, X's non-zeros (CSR)
    indices:    (nnz,) int32 or int64, their column indices in 0..n-1
    indptr:     (m + 1,) same dtype as indices; row r is data[indptr[r]:indptr[r + 1]]
    cdata:      (nnz,) same dtype as data, the copy's non-zeros column by column
    crows:      (nnz,) same dtype as indices, their row indices
    colptr:     (n + 1,) int64; column j is cdata[colptr[j]:colptr[j + 1]]
    bounds:     (T + 1,) int64 column bounds of the copy's tiles, 0 .. n
    y:          (m,) same dtype as data
    coef:       (n,) float64
    intercept:  float
    out:        (n + 2,) float64, OUT <- [grad_coef (n), grad_intercept, loss]
    work:       (m + 2 * ceil(m / chunk_rows),) float64 scratch <- the rows' derivatives (m,), then
                per chunk its [grad_intercept, loss] sums
    chunk_rows: int >= 1, rows per chunk of the margin pass

    Two passes. Margins: one thread per chunk of rows, each row's margin the intercept plus its
    dot product with coef in X's order; GROUP_ROWS rows' margins, then their losses and
    derivatives in one loop (pointwise_rows, which vectorizes). Gradient: column_gradients.
    Every sum's order is fixed by X, so the result does not depend on the thread count.
    """
    m = y.shape[0]
    n = coef.shape[0]
    chunks = (m + chunk_rows - 1) // chunk_rows
    d = work[:m]
    sums = work[m:m + 2 * chunks].reshape((chunks, 2))
    for c in prange(chunks):
        z = np.empty(GROUP_ROWS)
        sums[c] = 0.0
        stop = min(m, (c + 1) * chunk_rows)
        for s in range(c * chunk_rows, stop, GROUP_ROWS):
            count = min(GROUP_ROWS, stop - s)
            for r in range(count):
                z_r = intercept
                for p in range(np.uintp(indptr[s + r]), np.uintp(indptr[s + r + 1])):
                    z_r += data[p] * coef[np.uintp(indices[p])]
                z[r] = z_r
            total, grad_b = pointwise_rows(loss, z, y[s:], count, d[s:])
            sums[c, 0] += grad_b
            sums[c, 1] += total
    column_gradients(cdata, crows, colptr, bounds, d, out[:n])
    out[n] = 0.0
    out[n + 1] = 0.0
    for c in range(chunks):
        out[n] += sums[c, 0]
        out[n + 1] += sums[c, 1]
