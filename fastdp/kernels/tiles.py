"""A column-tiled copy of a CSR shard, built once per fit, for the wide-data softmax kernels
(the scalar losses read a column-major copy instead: columns.py says why).

Why: a CSR loss-gradient pass reads coef[j] and adds to grad[j] at every non-zero's column j.
With 2**18 features and K = 10 classes coef and grad are 20 MiB each, far beyond a core's L2
(1 MiB here, 32 MiB of L3 shared), so each non-zero costs two round trips to L3 or memory.
Cutting the columns into tiles of at most TILE_COLS / K columns and visiting the non-zeros tile by
tile keeps each tile's coef and grad close (a tile's coef alone is 1 MiB). The pass then reads X
twice (margins, then gradient), but as two streams instead of 40 million random L3 accesses.
The width was measured, not derived: on the benchmark's case (2e5 x 2**18 hashed text, K = 10,
2 threads, ad-hoc sweep of tile_csr's tile_cols, 2026-12-07) tiles of 2**17 / K and 2**18 / K
took 134-152 ms, 2**16 / K 162-171, 2**15 / K 216-228 (more, shorter (tile, row) segments),
2**20 / K 224-236 (three tiles: too few for the gradient pass, one thread per tile).

The margin pass cuts the rows into chunks of CHUNK_ROWS, the unit of the loss and intercept sums,
and gives each thread a run of consecutive chunks, which it takes tile after tile: a tile's coef
is read by all of the run's rows before the next tile's, and the run's margins are streamed once
per tile. A row's margins are summed in tile order whatever the runs, and the chunks' sums are
added in chunk order, so the result does not depend on the thread count. (When the chunks were
the threads' units of work, 2e5 rows made 3 chunks of 66,667 for 2 threads, one thread did two:
171-200 ms a call against 139-150 ms now, `fastdp bench kernels --cases softmax10-csr-2e5x2^18`.)

Layout (TiledCSR), for a shard of m rows, n features and nnz non-zeros cut into T column tiles
[bounds[t], bounds[t+1]):
    data:     (nnz,) X's dtype, the non-zeros in tile-major order: tile 0's entries of row 0, of
              row 1, ..., of row m-1, then tile 1's, ...; within a (tile, row) segment, in the
              row's own order
    indices:  (nnz,) X's index dtype, their column indices (global, 0..n-1)
    seg:      (T*m + 1,) int64; segment (t, r) is data[seg[t*m + r] : seg[t*m + r + 1]]
    bounds:   (T + 1,) int64 column bounds, bounds[0] = 0 and bounds[T] = n
Tiles are at most tile_cols wide, ceil(n / tile_cols) of them when the non-zeros are spread
evenly; a tile is cut earlier where it would hold more than 1.25 times that many tiles' average
share of the non-zeros, so the gradient pass (one thread per tile) stays balanced when a few
columns hold most of the non-zeros. The tiles depend on X only, never on the thread count, so the
kernels' sums do not either; threads beyond the number of tiles idle in the gradient pass. The
copy costs X's data and indices again, plus 8 bytes per row and tile (2**18 features and 10
classes: 160 bytes per row). It is built in two threaded passes (_fill), the rows cut into one
part per thread: each part's non-zeros counted per tile, then written into their tiles in row
order (a write stream per tile), where the (tile, row) counts and a prefix sum over all T*m of
them made the copy of the softmax case take 215-260 ms against 144-176 now (ad-hoc, into reused
arrays, two rounds of seven alternating with a worktree of 86855ec).

kernels.loss_grad_sums(..., tiles=kernels.tile_csr(X, n_outputs=K)) uses it for softmax (K >= 2)
on the compiled backends: numba_sparse.tiled_csr_softmax_sums and its twin in csrc/sparse_loss.pyx.
"""

from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

TILE_COLS = 2**17  # widest tile, in coef values (columns x K): 1 MiB of float64 coef
MIN_FEATURES = 2 * TILE_COLS  # coef values (features x K) from which tiles_pay_off copies X: 2 MiB
CHUNK_ROWS = 512  # rows per chunk: the unit of the loss and intercept sums


class ColumnTiles:
    """What the wide-CSR copies (TiledCSR here, columns.ColumnCSR) have in common: their
    non-zeros `data` and the column `bounds` of their tiles."""

    data: np.ndarray
    bounds: np.ndarray

    @property
    def nnz(self) -> int:
        """Number of stored non-zeros."""
        return int(self.data.size)

    @property
    def n_tiles(self) -> int:
        """Number of column tiles."""
        return int(self.bounds.size - 1)


@dataclass(frozen=True, eq=False)
class TiledCSR(ColumnTiles):
    """A column-tiled copy of a CSR shard (layout in the module docstring) for a loss with
    n_outputs margins per row (K), with the scratch the tiled kernels use: work
    (n_chunks, chunk_rows*K + K + 1) float64, row c holding the derivatives of chunk c's rows
    (chunk_rows x K), then the chunk's [grad_intercept (K), loss] sums. One kernel call at a time
    per TiledCSR."""

    shape: tuple[int, int]
    n_outputs: int
    data: np.ndarray
    indices: np.ndarray
    seg: np.ndarray
    bounds: np.ndarray
    chunk_rows: int
    work: np.ndarray


def tile_bounds(indices: np.ndarray, n: int, tile_cols: int = TILE_COLS) -> np.ndarray:
    """Column bounds (T + 1,) int64 of the tiles: each at most tile_cols wide and holding at most
    1.25 * nnz / ceil(n / tile_cols) non-zeros unless it is one column wide (indices: (nnz,) in
    0..n-1)."""
    return bounds_of(np.cumsum(_column_counts(indices, n)), tile_cols)


@njit(cache=True)
def _column_counts(indices, n):
    """(n,) int64: the non-zeros in each column (np.bincount, which first copies int32 indices
    to int64, took 66-80 ms on 2e7 of them where this takes 24-40, ad-hoc)."""
    counts = np.zeros(n, np.int64)
    for p in range(indices.shape[0]):
        counts[indices[p]] += 1
    return counts


def bounds_of(cum: np.ndarray, tile_cols: int) -> np.ndarray:
    """tile_bounds from the columns' cumulative counts cum (n,): cum[j] non-zeros in columns
    0..j (a column-major copy's colptr[1:])."""
    n = cum.size
    nnz = int(cum[-1]) if n else 0
    limit = max(1, int(1.25 * nnz / -(-n // tile_cols)))
    bounds = [0]
    while bounds[-1] < n:
        start = bounds[-1]
        before = int(cum[start - 1]) if start else 0
        by_count = int(np.searchsorted(cum, before + limit, side="right"))
        bounds.append(max(start + 1, min(start + tile_cols, n, by_count)))
    return np.asarray(bounds, dtype=np.int64)


def row_parts(m: int) -> np.ndarray:
    """(P + 1,) int64 bounds of P near-equal parts of m rows, one per Numba thread (at least
    one part, at most m): the units of work of the copies' threaded passes."""
    parts = max(1, min(m, numba.get_num_threads()))
    return np.linspace(0, m, parts + 1).astype(np.int64)


@njit(parallel=True, cache=True)
def _fill(data, indices, indptr, bounds, starts, out_data, out_indices, seg):
    """Tile-major copy of CSR (data, indices, indptr) of m rows into out_data, out_indices and
    seg (T*m + 1,) int64 (layout in the module docstring); bounds (T + 1,) int64 column bounds;
    starts (P + 1,) int64 the rows' parts, one per thread.

    Two threaded passes: count each part's non-zeros per tile; then each part writes its rows'
    non-zeros into their tiles in row order, tile t's from where the parts before it end
    (T write streams a part), noting each row's segment starts. The copy does not depend on
    the parts."""
    m = indptr.shape[0] - 1
    T = bounds.shape[0] - 1
    P = starts.shape[0] - 1
    tile_of = np.empty(bounds[T], np.int64)  # a column's tile, looked up (not searched)
    for t in range(T):
        tile_of[bounds[t]:bounds[t + 1]] = t
    counts = np.zeros((P, T), np.int64)
    for c in prange(P):
        for p in range(indptr[starts[c]], indptr[starts[c + 1]]):
            counts[c, tile_of[indices[p]]] += 1
    free = np.empty((P, T), np.int64)  # where part c writes tile t's next non-zero
    total = 0
    for t in range(T):
        for c in range(P):
            free[c, t] = total
            total += counts[c, t]
    seg[T * m] = total
    for c in prange(P):
        mine = free[c]
        for r in range(starts[c], starts[c + 1]):
            for t in range(T):
                seg[t * m + r] = mine[t]
            for p in range(indptr[r], indptr[r + 1]):
                j = indices[p]
                q = mine[tile_of[j]]
                mine[tile_of[j]] = q + 1
                out_data[q] = data[p]
                out_indices[q] = j


def tile_csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n: int, chunk_rows: int,
             tile_cols: int = TILE_COLS, n_outputs: int = 1) -> TiledCSR:
    """The column-tiled copy of a CSR shard (arrays already validated by the caller).

    data:       (nnz,) float32 or float64
    indices:    (nnz,) int32 or int64 column indices in 0..n-1 (any order within a row)
    indptr:     (m + 1,) same dtype as indices
    n:          number of features
    chunk_rows: rows per chunk, the unit of the loss and intercept sums (fastdp.kernels passes
                CHUNK_ROWS)
    tile_cols:  widest tile, >= 1
    n_outputs:  K, the margins per row of the loss the copy serves (work's width depends on it)
    """
    m = indptr.size - 1
    bounds = tile_bounds(indices, n, tile_cols)
    out_data, out_indices = np.empty_like(data), np.empty_like(indices)
    seg = np.empty((bounds.size - 1) * m + 1, dtype=np.int64)
    _fill(data, indices, indptr, bounds, row_parts(m), out_data, out_indices, seg)
    chunks = max(1, -(-m // chunk_rows))
    return TiledCSR((m, n), n_outputs, out_data, out_indices, seg, bounds, chunk_rows,
                    np.empty((chunks, chunk_rows * n_outputs + n_outputs + 1)))
