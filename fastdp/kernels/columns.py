"""A column-major (CSC) copy of a wide CSR shard, built once per fit, for the scalar losses.

Why: a CSR loss-gradient pass reads coef[j] and adds to grad[j] at every non-zero's column j.
With 2**20 features coef and grad are 8 MiB each, larger than a core's L2, and the one-pass
kernel keeps one such gradient per block of rows; its random read-modify-writes run at L3
latency, not at memory bandwidth. column_csr_sums takes two passes instead:
    margins:  z = X @ coef + b by rows of X itself (CSR), one random read of coef per non-zero,
              then each row's loss and derivative d_r into a dense (m,) array;
    gradient: grad[j] = sum over column j's non-zeros of x_rj * d_r, by columns of this copy,
              one random read of d (1.6 MB for 2e5 rows) per non-zero and one sequential write
              per column. No thread shares a gradient value and none is read back, so the pass
              needs no per-block accumulators and no reduction.
For the scalar losses this beats the column-tiled copy of tiles.py, which read X twice in (tile,
row) segments: on the benchmark's hashed text (2e5 x 2**20, 100 non-zeros a row, 2 threads,
`fastdp bench kernels`, 2026-12-07) the logistic call took 29.8 ms (Cython) and 32.6 ms (Numba)
where the tiles took 44.5-49.4 ms. Softmax keeps the tiles: a row's K derivatives and a column's
K coefficients make each random read K times wider, and with this layout its case (2e5 x 2**18,
K = 10) took 458-527 ms against 161-177 ms with tiles, whose K-wide rows are read tile by tile.

The copy is built in buckets of 2**shift consecutive columns, about BUCKET_ENTRIES non-zeros
each (1 MiB of values, rows and columns; 256 buckets on the benchmark's shard), in three
threaded passes: count each part of the rows' (one part per thread) non-zeros per bucket; write
each non-zero into its bucket, part after part in row order (one write stream per bucket, where
a non-zero straight to its column's place is a random write into 240 MB); then, bucket by
bucket, count its columns (colptr) and move its entries to their columns in the same order,
within a region the size of L2. Each column's entries come out in row order whatever the parts.
Ad-hoc, on the benchmark's shard (2e5 x 2**20, 2e7 non-zeros, 2 threads, 2026-12-07, two
rounds of five alternating with a worktree of 86855ec, whose serial pass wrote each non-zero
to its column's place and counted the columns twice with np.bincount): tile_csr took
133-236 ms against 675-1,106 ms, for a gradient call of ~30 ms.

Layout (ColumnCSR), for a shard of m rows, n features and nnz non-zeros:
    data:    (nnz,) X's dtype, the non-zeros column by column (column 0's in row order, ...)
    rows:    (nnz,) X's index dtype, their row indices
    colptr:  (n + 1,) int64; column j is data[colptr[j] : colptr[j + 1]]
    bounds:  (T + 1,) int64 column bounds of the tiles, bounds[0] = 0 and bounds[T] = n
The tiles are the gradient pass's units of work, taken by the threads one at a time: at most
tile_cols wide, ceil(n / tile_cols) of them when the non-zeros are spread evenly, cut earlier
where one would hold more than its share (tiles.tile_bounds). Every sum runs in an order fixed by
X (a row's non-zeros in X's order, a column's in row order, the margin pass's chunks in chunk
order), never by the thread count, so the kernels' sums do not depend on it. The copy costs X's
data and indices again, plus 8 bytes per column.

kernels.loss_grad_sums(..., tiles=kernels.tile_csr(X)) uses it for the scalar losses on the
compiled backends: numba_sparse.column_csr_sums and its twin in csrc/sparse_loss.pyx.
"""

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from .tiles import ColumnTiles, bounds_of, row_parts

TILE_COLS = 2**14  # widest tile: 64 tiles over 2**20 features, for the threads to share evenly
CHUNK_ROWS = 512  # rows per chunk of the margin pass: the threads' unit of work there


@dataclass(frozen=True, eq=False)
class ColumnCSR(ColumnTiles):
    """A column-major copy of a CSR shard (layout in the module docstring), with the scratch the
    kernels use: work (m + 2 * n_chunks,) float64, first the rows' derivatives (m,), then per
    chunk of chunk_rows rows its [grad_intercept, loss] sums. One kernel call at a time per
    ColumnCSR."""

    shape: tuple[int, int]
    data: np.ndarray
    rows: np.ndarray
    colptr: np.ndarray
    bounds: np.ndarray
    chunk_rows: int
    work: np.ndarray

    n_outputs = 1  # the margins per row of the losses it serves (the scalar ones)

    @property
    def n_chunks(self) -> int:
        """Number of row chunks of the margin pass."""
        return -(-self.shape[0] // self.chunk_rows)


BUCKET_ENTRIES = 1 << 16  # the copy's non-zeros per bucket of columns, about: 1 MiB at 16 bytes


def _bucket_shift(n: int, nnz: int) -> int:
    """log2 of the columns per bucket: buckets of about BUCKET_ENTRIES non-zeros (if the
    non-zeros spread evenly), a power of two columns each, at most n."""
    buckets = max(1, nnz // BUCKET_ENTRIES)
    return max(0, (-(-n // buckets) - 1).bit_length())


@njit(parallel=True, cache=True)
def _count(indices, indptr, starts, shift, counts):
    """counts (P, buckets) int64, zeroed, OUT: counts[c, b] <- the non-zeros of rows
    starts[c]..starts[c + 1] in columns b << shift .. (b + 1) << shift."""
    for c in prange(starts.shape[0] - 1):
        for p in range(indptr[starts[c]], indptr[starts[c + 1]]):
            counts[c, indices[p] >> shift] += 1


@njit(parallel=True, cache=True)
def _bucket(data, indices, indptr, starts, shift, offsets, out_data, out_rows, out_cols):
    """Each non-zero into its bucket of columns, in row order: part c (rows starts[c] ..
    starts[c + 1]) writes bucket b's entries from offsets[c, b] on (out_cols: their columns)."""
    for c in prange(starts.shape[0] - 1):
        free = offsets[c].copy()
        for r in range(starts[c], starts[c + 1]):
            for p in range(indptr[r], indptr[r + 1]):
                j = indices[p]
                q = free[j >> shift]
                free[j >> shift] = q + 1
                out_data[q] = data[p]
                out_rows[q] = r
                out_cols[q] = j


@njit(parallel=True, cache=True)
def _sort_buckets(edges, shift, out_data, out_rows, out_cols, colptr):
    """Within each bucket of columns (bucket b: the entries edges[b]..edges[b + 1], in row
    order), the entries into column order, stably: the bucket's column counts give colptr
    (n + 1,) int64 for its columns (colptr[0] is the caller's), then a copy of the bucket, and
    each entry to its column's next free place."""
    n = colptr.shape[0] - 1
    for b in prange(edges.shape[0] - 1):
        lo, hi = b << shift, min(n, (b + 1) << shift)
        a, z = edges[b], edges[b + 1]
        free = np.zeros(hi - lo, np.int64)
        for i in range(a, z):
            free[out_cols[i] - lo] += 1
        start = a
        for k in range(hi - lo):
            count = free[k]
            free[k] = start
            start += count
            colptr[lo + k + 1] = start
        values, rows, cols = out_data[a:z].copy(), out_rows[a:z].copy(), out_cols[a:z].copy()
        for i in range(z - a):
            q = free[cols[i] - lo]
            free[cols[i] - lo] = q + 1
            out_data[q] = values[i]
            out_rows[q] = rows[i]


def column_csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n: int,
               chunk_rows: int = CHUNK_ROWS, tile_cols: int = TILE_COLS) -> ColumnCSR:
    """The column-major copy of a CSR shard (arrays already validated by the caller).

    data:       (nnz,) float32 or float64
    indices:    (nnz,) int32 or int64 column indices in 0..n-1 (any order within a row)
    indptr:     (m + 1,) same dtype as indices
    n:          number of features
    chunk_rows: rows per chunk of the margin pass, >= 1
    tile_cols:  widest tile, >= 1
    Built in buckets of columns (module docstring), the rows cut into one part per Numba
    thread; the copy does not depend on the cut.
    """
    m = indptr.size - 1
    shift = _bucket_shift(n, indices.size)
    starts = row_parts(m)
    counts = np.zeros((starts.size - 1, (n + (1 << shift) - 1) >> shift), dtype=np.int64)
    _count(indices, indptr, starts, shift, counts)
    edges = np.zeros(counts.shape[1] + 1, dtype=np.int64)
    np.cumsum(counts.sum(axis=0), out=edges[1:])
    offsets = edges[:-1] + np.cumsum(counts, axis=0) - counts
    out_data, out_rows, out_cols = np.empty_like(data), np.empty_like(indices), np.empty_like(indices)
    _bucket(data, indices, indptr, starts, shift, offsets, out_data, out_rows, out_cols)
    colptr = np.zeros(n + 1, dtype=np.int64)
    _sort_buckets(edges, shift, out_data, out_rows, out_cols, colptr)
    return ColumnCSR((m, n), out_data, out_rows, colptr, bounds_of(colptr[1:], tile_cols),
                     chunk_rows, np.empty(m + 2 * -(-m // chunk_rows)))
