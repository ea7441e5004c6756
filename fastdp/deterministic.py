"""Deterministic mode (`fit(..., deterministic=True)`): the same bits on any number of ranks and threads.

A normal step adds each rank's sums in the rank's own block order, then MPI adds the ranks' sums in
an order of its choosing: change the number of ranks and the additions happen in another order, so
the last bits of the model change. Here every addition of a step is fixed by the data alone:

- Leaves, each the sums [grad_coef, grad_intercept, loss_sum] over fixed rows, computed by one
  rank from the same rows in the same order whatever the partition:
  - full batch: the global blocks of BLOCK_ROWS rows (block g: rows g*BLOCK_ROWS ..
    (g+1)*BLOCK_ROWS, the last one shorter). `fit` first moves the rows (balance.redistribute) to
    a contiguous partition whose boundaries are multiples of BLOCK_ROWS (`aligned_partition`:
    near-equal numbers of blocks per rank), and the load balancer's proposals are rounded to such
    boundaries (`align`), so each block lies on one rank, and its leaf is one block of the
    compiled kernels (kernels.block_sums, blocks starting on the block's first row; the kernels'
    per-block sums do not depend on the thread count);
  - mini-batch: the batch's rows, one leaf per row, in increasing global row order (each row's
    sums on their own: kernels.block_sums with block_rows=1); any contiguous partition holds a
    run of consecutive leaves on each rank, so no rows need to move.
- A fixed tree. Leaves are added in the pairwise tree over their indices: node (l, k) covers
  leaves k*2**l .. (k+1)*2**l (clipped to the number of leaves) and is its left child plus its
  right child, or its left child alone when the right one lies past the last leaf. The tree
  depends on the number of leaves only (the rows, or the batch's size).
- Each rank adds up, locally, the maximal nodes that lie within its leaves (`cover`: at most
  about 2*log2(leaves) of them) and sends only those (MPI_Allgatherv, in rank order, which is
  position order); every rank then finishes the same tree from the gathered nodes with the same
  float64 additions (`reduce_tree`: compiled, no fastmath, no reordering), and gets the same bits
  as every other rank and as any other partition: a node's value is defined by the tree alone.
  The row count of a step is known to every rank (full batch: all rows; mini-batch: the global
  batch's size); the checkpoint signal (train.Objective) rides along as one extra row per rank.

Cost, compared with the one Allreduce of p + 3 values of a normal step (p = coef.size + K):
- communication: an Allgatherv in which each rank sends its cover nodes plus the signal row,
  each of p + 1 float64 (at most about 2*log2(leaves per rank) + 1 rows; on one rank, the root
  and the signal row), so every rank receives all P ranks' nodes, up to about
  P * (2*log2(leaves / P) + 2) rows, instead of reducing one buffer of p + 3; for dense data
  with a few dozen features that is a few KiB and the time is the latency, for wide rows (CSR
  with 2**18 features: 2 MiB a node) it is several times the Allreduce's volume;
- compute: full batch, the same kernel call (blocks of BLOCK_ROWS rows) plus leaves - 1 vector
  additions of p + 1 values (negligible next to the kernel unless p is huge); mini-batch, a
  per-row kernel call (no fused blocks of rows; an accumulator of p + 1 values per row, written
  then added in the tree): O(batch * p) per step instead of O(batch * nnz per row + p), small
  for dense rows, large for wide sparse ones;
- memory: per-leaf sums of at most SCRATCH_BYTES at once (bigger subtrees are added one half
  after the other);
- full batch: one redistribution of the rows at the start when the given shards are not
  block-aligned.
benchmarks/bench_deterministic.py measures the cost against deterministic=False in one run.
The results differ from deterministic=False in the last bits (another order of additions), and
depend on BLOCK_ROWS, which is therefore part of the definition of the results, not a tuning
knob. The numpy backend (the reference) is as deterministic as its BLAS on one thread (fit limits
BLAS to one thread in this mode); numba and cython are tested bitwise across ranks and threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba import njit

from . import partition
from .comm import Comm

BLOCK_ROWS = 4096  # rows per full-batch leaf: part of the definition of the deterministic results
SCRATCH_BYTES = 64 * 2**20  # bound on the leaves' sums held at once


def n_leaves(n_rows: int, block_rows: int = BLOCK_ROWS) -> int:
    """Global blocks (leaves) of n_rows rows."""
    return -(-int(n_rows) // block_rows)


def top_level(leaves: int) -> int:
    """Level of the tree's root: the smallest L with 2**L >= leaves (0 for one leaf)."""
    return max(0, int(leaves) - 1).bit_length()


def aligned_partition(n_rows: int, n_parts: int, block_rows: int = BLOCK_ROWS) -> list[range]:
    """Contiguous partition of n_rows rows whose boundaries are multiples of block_rows: the
    blocks split as partition.contiguous splits rows (counts differ by at most one block, the
    first parts get the extra ones; parts beyond the number of blocks are empty)."""
    blocks = partition.contiguous(n_leaves(n_rows, block_rows), n_parts)
    return [range(min(b.start * block_rows, n_rows), min(b.stop * block_rows, n_rows))
            for b in blocks]


def is_aligned(ranges: list[range], block_rows: int = BLOCK_ROWS) -> bool:
    """Does every part of this contiguous partition start on a multiple of block_rows?"""
    return all(r.start % block_rows == 0 or len(r) == 0 for r in ranges)


def align(ranges: list[range], block_rows: int = BLOCK_ROWS) -> list[range]:
    """The contiguous partition nearest `ranges`: each boundary between parts rounded to the
    nearest multiple of block_rows (half up), kept in order; the ends stay 0 and n_rows."""
    n_rows = ranges[-1].stop
    cuts = [0] + [min(n_rows, (r.stop + block_rows // 2) // block_rows * block_rows)
                  for r in ranges[:-1]] + [n_rows]
    cuts = np.maximum.accumulate(cuts)
    return [range(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


def block_range(rows: range, block_rows: int = BLOCK_ROWS) -> tuple[int, int]:
    """(first, end) global blocks of an aligned part's rows (first == end when it is empty)."""
    first = rows.start // block_rows
    return first, (-(-rows.stop // block_rows) if len(rows) else first)


def node_span(level: int, k: int, leaves: int) -> tuple[int, int]:
    """Leaves covered by node (level, k): k*2**level .. min((k+1)*2**level, leaves)."""
    return k << level, min((k + 1) << level, leaves)


def cover(lo: int, hi: int, leaves: int) -> list[tuple[int, int]]:
    """The maximal nodes (level, k) of the tree over `leaves` leaves that lie within leaves
    lo..hi, in order: the nodes a rank holding those leaves adds up locally and sends."""
    top = top_level(leaves)
    nodes = []
    pos = lo
    while pos < hi:
        level = top if pos == 0 else min(top, (pos & -pos).bit_length() - 1)
        while level > 0 and min(pos + (1 << level), leaves) > hi:
            level -= 1
        nodes.append((level, pos >> level))
        pos = min(pos + (1 << level), leaves)
    return nodes


def reduce_tree(levels: np.ndarray, ks: np.ndarray, vals: np.ndarray, leaves: int, lo: int,
                hi: int, top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add up nodes of the tree as far as they go within leaves lo..hi and levels <= top.

    levels, ks: (r,) the nodes given (disjoint, in position order); vals: (r, w) float64 their
    values, overwritten. Level by level, a node whose parent lies within lo..hi (and below top)
    is added to its sibling (left + right, elementwise) or, without a sibling, passed up
    unchanged; the others are the result: (levels, ks, values) of the maximal nodes reached, in
    position order.
    """
    level_of = np.array(levels, dtype=np.int64)
    k_of = np.array(ks, dtype=np.int64)
    done = np.zeros(len(k_of), dtype=np.bool_)
    _reduce_tree(level_of, k_of, vals, int(leaves), int(lo), int(hi), int(top), done)
    rows = np.flatnonzero(done)
    return level_of[rows], k_of[rows], vals[rows]


@njit(cache=True)
def _reduce_tree(level_of, k_of, vals, leaves, lo, hi, top, done):  # pragma: no cover (compiled)
    """reduce_tree's loop: level_of and k_of follow the nodes as they move up; done marks the
    result's rows. Plain float64 additions, no fastmath: the bits are IEEE's."""
    alive = np.ones(k_of.shape[0], dtype=np.bool_)
    for level in range(top + 1):
        last = -1  # the row last moved up from this level: maybe the left sibling of the next
        for i in range(k_of.shape[0]):
            if not alive[i] or level_of[i] != level:
                continue
            parent = k_of[i] >> 1
            if level == top or parent << (level + 1) < lo or \
                    min((parent + 1) << (level + 1), leaves) > hi:
                done[i] = True
                alive[i] = False
            elif last >= 0 and k_of[last] == parent and level_of[last] == level + 1:
                for j in range(vals.shape[1]):
                    vals[last, j] = vals[last, j] + vals[i, j]
                alive[i] = False
            else:
                k_of[i] = parent
                level_of[i] = level + 1
                last = i


def _cover_array(lo: int, hi: int, leaves: int) -> np.ndarray:
    """cover(lo, hi, leaves) as a (c, 2) int64 array [level, k]."""
    return np.array(cover(lo, hi, leaves), dtype=np.int64).reshape(-1, 2)


# kernel(out, block_rows, start, stop): kernels.block_sums over rows start..stop of this rank's
# rows (full batch) or of its batch's rows (mini-batch) into out, loss, data and parameters bound.
Kernel = Callable[[np.ndarray, int, int, int], np.ndarray]


@dataclass
class Part:
    """This rank's part of a step: every rank's cover nodes (covers[r]: (c, 2) [level, k]), the
    values of this rank's (nodes: (c, width)), and the number of leaves of the step's tree."""

    covers: list[np.ndarray]
    nodes: np.ndarray
    leaves: int


class TreeSum:
    """The deterministic sums of the steps of one fit (see the module docstring).

    n_rows: the global row count; width: values per leaf (coef.size + K + 1); block_rows: rows
    per full-batch leaf; scratch_bytes: bound on the leaves' sums held at once.
    """

    def __init__(self, comm: Comm, n_rows: int, width: int, block_rows: int = BLOCK_ROWS,
                 scratch_bytes: int = SCRATCH_BYTES) -> None:
        self.comm, self.n_rows, self.width = comm, int(n_rows), int(width)
        self.block_rows, self.scratch_bytes = block_rows, scratch_bytes
        self.leaves = n_leaves(n_rows, block_rows)
        self._key: tuple | None = None
        self._covers: list[np.ndarray] = []

    def full_batch(self, kernel: Kernel, ranges: list[range]) -> Part:
        """This rank's part of a full-batch step (leaves: the global blocks); ranges: every
        rank's rows, block-aligned; kernel: over this rank's rows. Local: no communication."""
        key = tuple((r.start, r.stop) for r in ranges)
        if key != self._key:
            if not is_aligned(ranges, self.block_rows):
                raise ValueError("deterministic mode needs a partition on multiples of "
                                 f"{self.block_rows} rows, got {[[r.start, r.stop] for r in ranges]}")
            self._covers = [_cover_array(*block_range(r, self.block_rows), self.leaves)
                            for r in ranges]
            self._key = key
        mine = ranges[self.comm.rank]
        lo, hi = block_range(mine, self.block_rows)
        nodes = self.nodes(kernel, lo, hi, self.leaves, self.block_rows, len(mine))
        return Part(self._covers, nodes, self.leaves)

    def mini_batch(self, kernel: Kernel, ranges: list[range], members: np.ndarray) -> Part:
        """This rank's part of a mini-batch step (leaves: the batch's rows). members: the global
        batch's rows, increasing; ranges: any contiguous partition; kernel: over this rank's rows
        of the batch, in increasing order. Local: no communication."""
        bounds = np.searchsorted(members, [r.start for r in ranges] + [ranges[-1].stop])
        covers = [_cover_array(int(a), int(b), len(members))
                  for a, b in zip(bounds[:-1], bounds[1:])]
        lo, hi = int(bounds[self.comm.rank]), int(bounds[self.comm.rank + 1])
        nodes = self.nodes(kernel, lo, hi, len(members), 1, hi - lo)
        return Part(covers, nodes, len(members))

    def nodes(self, kernel: Kernel, lo: int, hi: int, leaves: int, block_rows: int,
              rows: int) -> np.ndarray:
        """The values (c, width) of the cover nodes of leaves lo..hi (this rank's), leaf lo + b
        being the kernel's block b of block_rows of its `rows` rows: one kernel call for all
        of them, or, when their sums would pass scratch_bytes, one per cover node (or per
        subtree of one); the values are the same bits either way."""
        if hi == lo:
            return np.empty((0, self.width))
        if (hi - lo) * self.width * 8 <= self.scratch_bytes:
            sums = np.empty((hi - lo, self.width))
            kernel(sums, block_rows, 0, rows)
            _, _, values = reduce_tree(np.zeros(hi - lo, dtype=np.int64), np.arange(lo, hi), sums,
                                       leaves, lo, hi, top_level(leaves))
            return values
        nodes = cover(lo, hi, leaves)
        out = np.empty((len(nodes), self.width))
        for i, (level, k) in enumerate(nodes):
            out[i] = self._node(kernel, level, k, lo, leaves, block_rows, rows)
        return out

    def _node(self, kernel: Kernel, level: int, k: int, lo: int, leaves: int, block_rows: int,
              rows: int) -> np.ndarray:
        a, b = node_span(level, k, leaves)
        if level > 0 and (b - a) * self.width * 8 > self.scratch_bytes:
            left = self._node(kernel, level - 1, 2 * k, lo, leaves, block_rows, rows)
            if (2 * k + 1) << (level - 1) >= leaves:
                return left
            return left + self._node(kernel, level - 1, 2 * k + 1, lo, leaves, block_rows, rows)
        sums = np.empty((b - a, self.width))
        kernel(sums, block_rows, (a - lo) * block_rows, min((b - lo) * block_rows, rows))
        _, _, value = reduce_tree(np.zeros(b - a, dtype=np.int64), np.arange(a, b), sums, leaves,
                                  a, b, level)
        return value[0]

    def reduce(self, part: Part, signal: float) -> tuple[np.ndarray, float]:
        """Collective: (the step's sums over all ranks, (width,), and the sum of the ranks'
        signals). Every rank's cover nodes are gathered in rank order, which is position order,
        by one Allgatherv with one more row per rank for its signal; then every rank finishes
        the tree alike."""
        covers, nodes, leaves = part.covers, part.nodes, part.leaves
        counts = [len(c) + 1 for c in covers]
        if len(nodes) + 1 != counts[self.comm.rank]:
            raise RuntimeError(f"rank {self.comm.rank} has {len(nodes)} tree nodes, expected "
                               f"{counts[self.comm.rank] - 1}")
        send = np.zeros((len(nodes) + 1, self.width))
        send[:-1] = nodes
        send[-1, 0] = signal
        rows = self.comm.gather_rows(send, counts, root=None)
        ends = np.cumsum(counts)
        signals = float(sum(rows[e - 1, 0] for e in ends))
        keep = np.ones(len(rows), dtype=bool)
        keep[ends - 1] = False
        table = np.concatenate(covers)
        _, _, total = reduce_tree(table[:, 0], table[:, 1], rows[keep], leaves, 0, leaves,
                                  top_level(leaves))
        if len(total) != 1:
            raise RuntimeError(f"the tree ended with {len(total)} nodes instead of 1")
        return total[0], signals
