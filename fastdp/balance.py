"""Dynamic load balancing: move rows from slow ranks to fast ones, between steps, exactly.

Each rank times its own kernel work (train.Objective: compute time, not the time spent waiting
in the Allreduce). Every few full-batch evaluations the ranks share (rows, seconds); an
exponential moving average of each rank's rows per second is its capacity (restarted after each
move: ranks sharing memory bandwidth run at speeds that depend on the partition); `plan` proposes the
contiguous partition whose sizes follow the capacities (partition.weighted) and keeps it only when
the predicted step time, max over ranks of rows / rate, improves by more than `threshold`. Rows
then move between ranks with one Alltoallv (`redistribute`), keeping the global row order. The
step is a sum over all rows, so the parameters change by no more than the order of additions.

FASTDP_SLOWDOWN="1:2.0,3:1.5" (for tests and benchmarks) makes rank 1 do its kernel work twice
and rank 3 once and then sleep half the kernel's time: int(factor) runs of the kernel (the extra
ones into a throwaway buffer), then a sleep for the fraction left, as a node that much slower.
"""

from __future__ import annotations

import os
import numpy as np

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
    def propose(self, rows: int, seconds: float) -> list[range] | None:
        """Collective: share this rank's rows and compute seconds since the last call, update the
        averaged rates, and return the new partition every rank should move to, or None."""
        observed = self.comm.allgather_obj((rows, seconds))
        fresh = [m / s if m and s > 0 else None for m, s in observed]
        if self.rates is None or self.moved:
            known = [r for r in fresh if r is not None]
            self.rates = [r if r is not None else (max(known) if known else 1.0) for r in fresh]
        else:
            a = self.smoothing
            self.rates = [old if new is None else a * new + (1 - a) * old
                          for old, new in zip(self.rates, fresh)]
        proposal = plan([m for m, _ in observed], self.rates, self.threshold)
        self.moved = proposal is not None
        return proposal


def redistribute(comm: Comm, arrays: list[np.ndarray], old: list[range],
                 new: list[range]) -> list[np.ndarray]:
    """Move rows so that rank r holds global rows new[r], having held old[r] (both contiguous
    partitions of the same rows, in rank order). arrays: this rank's row arrays (X, y, ...), each
    with old[rank] rows; returns them with new[rank] rows, in global order. Collective."""
    mine = old[comm.rank]
    send = [len(range(max(mine.start, p.start), min(mine.stop, p.stop))) for p in new]
    target = new[comm.rank]
    recv = [len(range(max(q.start, target.start), min(q.stop, target.stop))) for q in old]
    return [comm.alltoall_rows(np.ascontiguousarray(a), send, recv) for a in arrays]


def describe(ranges: list[range]) -> list[list[int]]:
    """[[start, stop], ...] of a partition, for reports."""
    return [[p.start, p.stop] for p in ranges]

