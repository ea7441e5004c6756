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
K = 10) took 458-527 ms against 161-177 ms with tiles, whose K-wide rows stay in L2.

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
from numba import njit

from .tiles import ColumnTiles, tile_bounds

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


@njit(cache=True)
def _fill(data, indices, indptr, colptr, out_data, out_rows):
    """Column-major copy of CSR (data, indices, indptr) of m rows into out_data and out_rows, row
    by row so that each column's entries come in row order; colptr (n + 1,) int64 the columns'
    starts."""
    next_free = colptr[:-1].copy()
    for r in range(indptr.shape[0] - 1):
        for p in range(indptr[r], indptr[r + 1]):
            q = next_free[indices[p]]
            next_free[indices[p]] += 1
            out_data[q] = data[p]
            out_rows[q] = r


def column_csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n: int,
               chunk_rows: int = CHUNK_ROWS, tile_cols: int = TILE_COLS) -> ColumnCSR:
    """The column-major copy of a CSR shard (arrays already validated by the caller).

    data:       (nnz,) float32 or float64
    indices:    (nnz,) int32 or int64 column indices in 0..n-1 (any order within a row)
    indptr:     (m + 1,) same dtype as indices
    n:          number of features
    chunk_rows: rows per chunk of the margin pass, >= 1
    tile_cols:  widest tile, >= 1
    """
    m = indptr.size - 1
    colptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(indices, minlength=n), out=colptr[1:])
    out_data, out_rows = np.empty_like(data), np.empty_like(indices)
    _fill(data, indices, indptr, colptr, out_data, out_rows)
    return ColumnCSR((m, n), out_data, out_rows, colptr, tile_bounds(indices, n, tile_cols),
                     chunk_rows, np.empty(m + 2 * -(-m // chunk_rows)))
