"""Dynamic load balancing: move rows from slow ranks to fast ones, between steps, exactly.

Each rank times its own kernel work (train.Objective: compute time, not the time spent waiting
in the Allreduce). Every few full-batch evaluations, or at the end of a mini-batch epoch, the ranks
share (rows held, rows processed, seconds); an
exponential moving average of each rank's rows per second is its capacity (restarted after each
move: ranks sharing memory bandwidth run at speeds that depend on the partition); `plan` proposes the
contiguous partition whose sizes follow the capacities (partition.weighted) and keeps it only when
the predicted step time, max over ranks of rows / rate, improves by more than `threshold`. Rows
then move between ranks with Alltoallv (`redistribute`: one for a dense array, three for a CSR
matrix), keeping the global row order. The step is a sum over all rows, so the parameters change
by no more than the order of additions.

FASTDP_SLOWDOWN="1:2.0,3:1.5" (for tests and benchmarks) makes rank 1 do its kernel work twice
and rank 3 once and then sleep half the kernel's time: int(factor) runs of the kernel (the extra
ones into a throwaway buffer), then a sleep for the fraction left, as a node that much slower.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.sparse as sp

from .comm import Comm
from .partition import weighted

SLOWDOWN_VARIABLE = "FASTDP_SLOWDOWN"


def slowdown_factor(rank: int, environ: dict[str, str] | None = None) -> float:
    """This rank's factor in FASTDP_SLOWDOWN ("rank:factor,..."; 1.0 when absent)."""
    text = (os.environ if environ is None else environ).get(SLOWDOWN_VARIABLE, "").strip()
    factors = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            r, f = item.split(":")
            factors[int(r)] = float(f)
        except ValueError:
            raise ValueError(f"{SLOWDOWN_VARIABLE} must look like '1:2.0,3:1.5', got {text!r}") from None
    factor = factors.get(rank, 1.0)
    if not (np.isfinite(factor) and factor >= 1.0):
        raise ValueError(f"{SLOWDOWN_VARIABLE}: the factor of rank {rank} must be >= 1, got {factor}")
    return factor


def plan(rows: list[int], rates: list[float], threshold: float) -> list[range] | None:
    """The contiguous partition with sizes proportional to `rates` (rows per second per rank),
    or None when its predicted step time, max(rows / rate), is not better than the current one by
    more than `threshold` (a fraction). Pure."""
    n_rows = sum(rows)
    if n_rows == 0 or not all(r > 0 for r in rates):
        return None
    proposal = weighted(n_rows, rates)
    now = max(m / r for m, r in zip(rows, rates))
    then = max(len(p) / r for p, r in zip(proposal, rates))
    return proposal if then < (1.0 - threshold) * now else None


class LoadBalancer:
    """Collective bookkeeping of the ranks' measured speeds (see the module docstring).

    threshold: the predicted improvement of the step time that justifies moving rows (0.05 = 5%).
    smoothing: weight of the newest measurement in the moving average of rows per second.
    """

    def __init__(self, comm: Comm, threshold: float = 0.05, smoothing: float = 0.5) -> None:
        if not 0 <= threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing!r}")
        self.comm, self.threshold, self.smoothing = comm, threshold, smoothing
        self.rates: list[float] | None = None
        self.moved = False  # rates measured before a move describe another partition: restart

    def propose(self, rows: int, processed: int, seconds: float) -> list[range] | None:
        """Collective: share the rows this rank holds, the rows it processed since the last call and
        the compute seconds that took, update the averaged rates, and return the new partition
        every rank should move to, or None."""
        observed = self.comm.allgather_obj((rows, processed, seconds))
        fresh = [p / s if p and s > 0 else None for _, p, s in observed]
        if all(rate is None for rate in fresh):  # nothing timed in this window: no evidence
            return None
        if self.rates is None or self.moved:
            known = [r for r in fresh if r is not None]
            self.rates = [r if r is not None else (max(known) if known else 1.0) for r in fresh]
        else:
            a = self.smoothing
            self.rates = [old if new is None else a * new + (1 - a) * old
                          for old, new in zip(self.rates, fresh)]
        proposal = plan([m for m, _, _ in observed], self.rates, self.threshold)
        self.moved = proposal is not None
        return proposal


def redistribute(comm: Comm, arrays: list[Any], old: list[range], new: list[range]) -> list[Any]:
    """Move rows so that rank r holds global rows new[r], having held old[r] (both contiguous
    partitions of the same rows, in rank order). arrays: this rank's row arrays (X, y, ...), each
    with old[rank] rows, numpy arrays or scipy.sparse CSR matrices; returns them with new[rank]
    rows, in global order, of the same kinds. Collective."""
    mine, target = old[comm.rank], new[comm.rank]
    send = [len(range(max(mine.start, p.start), min(mine.stop, p.stop))) for p in new]
    recv = [len(range(max(q.start, target.start), min(q.stop, target.stop))) for q in old]
    return [_move_csr(comm, a, send, recv) if sp.issparse(a)
            else comm.alltoall_rows(np.ascontiguousarray(a), send, recv) for a in arrays]


def _move_csr(comm: Comm, X: Any, send: list[int], recv: list[int]) -> sp.csr_matrix:
    """CSR rows exchanged as by comm.alltoall_rows: the rows' non-zero counts first, then their
    column indices and values, each a block of non-zeros per rank."""
    X = sp.csr_matrix(X)
    counts = comm.alltoall_rows(np.diff(X.indptr), send, recv)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(X.indptr.dtype)
    send_nnz, recv_nnz = _block_sums(X.indptr, send), _block_sums(indptr, recv)
    indices = comm.alltoall_rows(X.indices, send_nnz, recv_nnz)
    data = comm.alltoall_rows(X.data, send_nnz, recv_nnz)
    return sp.csr_matrix((data, indices, indptr), shape=(len(counts), X.shape[1]))


def _block_sums(indptr: np.ndarray, rows: list[int]) -> list[int]:
    """Non-zeros in each block of consecutive rows (rows[q] rows in block q), from a CSR indptr."""
    edges = np.cumsum([0] + list(rows))
    return [int(indptr[b] - indptr[a]) for a, b in zip(edges[:-1], edges[1:])]


def describe(ranges: list[range]) -> list[list[int]]:
    """[[start, stop], ...] of a partition, for reports."""
    return [[p.start, p.stop] for p in ranges]

