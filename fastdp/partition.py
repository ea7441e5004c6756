"""Who owns which rows: pure, deterministic functions, no MPI.

    partition(n_rows, n_parts, strategy, costs=None, capacities=None) -> [rows of part 0, ...]

Every strategy returns n_parts `range`s that together hold each row 0..n_rows-1 exactly once;
parts may be empty (more parts than rows), and empty parts still take part in every collective.

- contiguous: consecutive rows, sizes differ by at most one (the first n_rows % n_parts parts
  get the extra row).
- strided: round robin, part p holds rows p, p + n_parts, p + 2*n_parts, ...
- balanced: consecutive rows of near-equal total cost, given each row's cost (CSR non-zeros,
  token counts): each cut is placed at the row boundary nearest its target, so a part's cost is
  within one row's cost of its share and max/mean <= 1 + max row cost / mean part cost.
- weighted: consecutive rows, sizes proportional to each part's capacity (e.g. measured rows/s);
  with costs, total costs proportional to capacity.
"""

from __future__ import annotations

import numpy as np

STRATEGIES = ("contiguous", "strided", "balanced", "weighted")


def _check(n_rows: int, n_parts: int) -> None:
    if int(n_rows) != n_rows or n_rows < 0:
        raise ValueError(f"n_rows must be a non-negative integer, got {n_rows!r}")
    if int(n_parts) != n_parts or n_parts < 1:
        raise ValueError(f"n_parts must be a positive integer, got {n_parts!r}")


def contiguous_range(n_rows: int, n_parts: int, part: int) -> range:
    """Rows of `part` (0 <= part < n_parts) in the contiguous partition of n_rows rows."""
    _check(n_rows, n_parts)
    if not 0 <= part < n_parts:
        raise ValueError(f"part must be in [0, {n_parts}), got {part}")
    base, extra = divmod(n_rows, n_parts)
    start = part * base + min(part, extra)
    return range(start, start + base + (part < extra))


def contiguous(n_rows: int, n_parts: int) -> list[range]:
    """Every part's rows in the contiguous partition: n_parts ranges covering 0..n_rows once."""
    _check(n_rows, n_parts)
    return [contiguous_range(n_rows, n_parts, p) for p in range(n_parts)]


def strided(n_rows: int, n_parts: int) -> list[range]:
    """Round robin: part p holds rows p, p + n_parts, ...; sizes differ by at most one."""
    _check(n_rows, n_parts)
    return [range(p, n_rows, n_parts) for p in range(n_parts)]


def _as_costs(costs: object) -> np.ndarray:
    costs = np.asarray(costs, dtype=np.float64)
    if costs.ndim != 1:
        raise ValueError(f"costs must be 1-D (one cost per row), got shape {costs.shape}")
    bad = np.flatnonzero(~(np.isfinite(costs) & (costs >= 0)))
    if bad.size:
        raise ValueError(f"costs must be finite and >= 0, got {float(costs[bad[0]])} at row {bad[0]}")
    return costs


def _as_capacities(capacities: object, n_parts: int) -> np.ndarray:
    capacities = np.asarray(capacities, dtype=np.float64)
    if capacities.shape != (n_parts,):
        raise ValueError(f"capacities must have one value per part ({n_parts}), "
                         f"got shape {capacities.shape}")
    bad = np.flatnonzero(~(np.isfinite(capacities) & (capacities > 0)))
    if bad.size:
        raise ValueError(f"capacities must be finite and > 0, got {float(capacities[bad[0]])} "
                         f"for part {bad[0]}")
    return capacities


def _cut(costs: np.ndarray, shares: np.ndarray) -> list[range]:
    """Consecutive ranges whose total costs follow `shares` (n_parts fractions summing to 1): cut
    p goes to the row boundary whose cumulative cost is nearest cumulative share p of the total
    (ties to the earlier boundary), never before the previous cut."""
    boundaries = np.concatenate([[0.0], np.cumsum(costs)])  # cost before row i, i = 0..n_rows
    targets = boundaries[-1] * np.cumsum(shares)[:-1]
    after = np.searchsorted(boundaries, targets, side="left").clip(1, len(costs))
    nearer_before = targets - boundaries[after - 1] <= boundaries[after] - targets
    cuts = np.where(nearer_before, after - 1, after) if len(costs) else np.zeros(len(targets), int)
    cuts = np.maximum.accumulate(np.concatenate([[0], cuts, [len(costs)]]))
    return [range(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


def balanced(costs: object, n_parts: int, capacities: object | None = None) -> list[range]:
    """Consecutive rows of near-equal total cost (or cost proportional to `capacities`).

    costs: (n_rows,) finite, >= 0; capacities: (n_parts,) finite, > 0 (default: all equal).
    Each part's total cost is within one row's cost of its share of the whole.
    """
    costs = _as_costs(costs)
    _check(len(costs), n_parts)
    shares = np.full(n_parts, 1.0 / n_parts) if capacities is None \
        else _as_capacities(capacities, n_parts) / np.sum(capacities)
    if not costs.sum() > 0:  # no cost information: share the rows themselves
        costs = np.ones_like(costs)
    return _cut(costs, shares)


def weighted(n_rows: int, capacities: object) -> list[range]:
    """Consecutive rows, part p getting a share of n_rows proportional to capacities[p] (within
    one row of it). capacities: (n_parts,) finite, > 0."""
    _check(n_rows, 1)
    capacities = np.atleast_1d(np.asarray(capacities, dtype=np.float64))
    return balanced(np.ones(int(n_rows)), capacities.size, capacities)


def partition(n_rows: int, n_parts: int, strategy: str = "contiguous", *,
              costs: object | None = None, capacities: object | None = None) -> list[range]:
    """Every part's rows under `strategy` (see the module docstring); the one entry point.

    costs (n_rows,) is used by "balanced" (and by "weighted" when given); capacities (n_parts,)
    by "weighted" (and by "balanced" when given).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    _check(n_rows, n_parts)
    if costs is not None and np.shape(costs) != (n_rows,):
        raise ValueError(f"costs must have one value per row ({n_rows}), got shape {np.shape(costs)}")
    if strategy == "contiguous":
        return contiguous(n_rows, n_parts)
    if strategy == "strided":
        return strided(n_rows, n_parts)
    if strategy == "balanced" and costs is None:
        raise ValueError("strategy 'balanced' needs costs (one per row)")
    if strategy == "weighted" and capacities is None:
        raise ValueError("strategy 'weighted' needs capacities (one per part)")
    return balanced(np.ones(n_rows) if costs is None else costs, n_parts, capacities)
