"""The alpha-beta cost model of an Allreduce, fitted to measured times, and what it predicts for
data-parallel training on many nodes. Pure functions: no MPI.

The model (Rabenseifner's reduce-scatter + allgather, MPICH's algorithm for long messages, with
the latency term of recursive halving/doubling), for a buffer of n bytes on p ranks:

    T(n, p) = 2 * ceil(log2 p) * alpha + 2 * (p - 1) / p * n * beta

alpha: latency, seconds per message step; beta: inverse bandwidth, seconds per byte (the
reduction's arithmetic is folded into it). For p = 1 the model degenerates to T = 0: one rank
communicates nothing. `fit` with ranks=1 therefore fits a local copy instead,
T(n) = alpha + n * beta.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import nnls

FLOAT64_BYTES = 8
NODES: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024)
PARAMS: tuple[int, ...] = (10, 1_000, 100_000, 10_000_000)
SCALINGS = ("strong", "weak")

ASSUMPTIONS: tuple[str, ...] = (
    "homogeneous nodes: every node computes at the measured per-node rate",
    "rows divide evenly over the nodes (strong scaling: rows/nodes rows each)",
    "the compute time per row does not depend on the parameter count (rows with the measured "
    "number of values, e.g. sparse rows for large models); only the Allreduce grows with it",
    "one Allreduce per step of a flat buffer of params + 2 float64 values "
    "(gradient, loss sum, row count), and no other communication",
    "no overlap of compute and communication: step = compute + Allreduce",
    "Allreduce time T(n, p) = 2*ceil(log2 p)*alpha + 2*(p-1)/p*n*beta with one rank per node",
    "alpha and beta measured with this machine's shared-memory MPI and extrapolated to a network: "
    "a real interconnect has a larger alpha (about 1-5 us) and a beta set by its link bandwidth",
    "the optimizer update and other per-step work are left out",
)


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def coefficients(ranks: int) -> tuple[float, float]:
    """(latency steps, bytes moved per buffer byte) of the model on ranks ranks:
    (2 * ceil(log2 p), 2 * (p - 1) / p); (0, 0) for one rank."""
    _check_count("ranks", ranks)
    return 2.0 * math.ceil(math.log2(ranks)), 2.0 * (ranks - 1) / ranks


def allreduce_seconds(n_bytes: float, ranks: int, alpha: float, beta: float) -> float:
    """The model's time of an Allreduce of n_bytes bytes on ranks ranks (0 for one rank)."""
    steps, volume = coefficients(ranks)
    return steps * alpha + volume * n_bytes * beta


def fit(sizes_bytes: Sequence[float], seconds: Sequence[float], ranks: int) -> tuple[float, float]:
    """(alpha, beta): the model's latency (s) and inverse bandwidth (s/byte) fitted to Allreduce
    times measured on ranks ranks, by non-negative least squares on RELATIVE residuals
    (each time counts by its ratio to the model, so microsecond and millisecond messages weigh
    alike). With ranks=1 the model is T(n) = alpha + n * beta, a local copy (see the module).

    sizes_bytes: message sizes (>= 0), at least two distinct; seconds: their times (> 0).
    """
    _check_count("ranks", ranks)
    sizes = np.asarray(sizes_bytes, dtype=np.float64)
    times = np.asarray(seconds, dtype=np.float64)
    if sizes.ndim != 1 or times.ndim != 1:
        raise ValueError(f"sizes_bytes and seconds must be 1-d, got shapes {sizes.shape} and "
                         f"{times.shape}")
    if len(sizes) != len(times):
        raise ValueError(f"sizes_bytes and seconds must have the same length, got {len(sizes)} "
                         f"and {len(times)}")
    if not (np.isfinite(sizes).all() and (sizes >= 0).all()):
        raise ValueError(f"sizes_bytes must be finite and >= 0, got {sizes.tolist()}")
    if not (np.isfinite(times).all() and (times > 0).all()):
        raise ValueError(f"seconds must be finite and > 0, got {times.tolist()}")
    if len(np.unique(sizes)) < 2:
        raise ValueError("sizes_bytes must hold at least 2 distinct sizes to separate alpha from "
                         f"beta, got {np.unique(sizes).tolist()}")
    steps, volume = coefficients(ranks) if ranks > 1 else (1.0, 1.0)
    design = np.column_stack([np.full(len(sizes), steps), volume * sizes]) / times[:, None]
    (alpha, beta), _ = nnls(design, np.ones(len(times)))
    return float(alpha), float(beta)


def predict_step(params: int, rows: int, nodes: int, rows_per_s: float, alpha: float,
                 beta: float, *, scaling: str = "strong") -> dict[str, Any]:
    """Predicted step of data-parallel full-batch training on nodes nodes, and its efficiency.

    step = compute + Allreduce: compute is rows_per_node / rows_per_s (rows_per_s: one node's
    measured rate); the Allreduce is the model's (module docstring) for a buffer of params + 2
    float64 values on nodes ranks, none on one node.
    scaling "strong": rows is the total, rows_per_node = rows / nodes,
        speedup = T(1) / T(nodes), efficiency = T(1) / (nodes * T(nodes));
    scaling "weak": rows is per node, speedup = nodes * T(1) / T(nodes) (scaled speedup),
        efficiency = T(1) / T(nodes).
    Both efficiencies are <= 1. The assumptions are listed in ASSUMPTIONS.

    Returns {"nodes", "params", "buffer_bytes", "rows_per_node", "compute_s", "comm_s", "step_s",
    "speedup", "efficiency"}.
    """
    for name, value in (("params", params), ("rows", rows), ("nodes", nodes)):
        _check_count(name, value)
    if not (math.isfinite(rows_per_s) and rows_per_s > 0):
        raise ValueError(f"rows_per_s must be a finite number > 0, got {rows_per_s!r}")
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {list(SCALINGS)}, got {scaling!r}")
    rows_per_node = rows / nodes if scaling == "strong" else float(rows)
    one_node = (rows if scaling == "strong" else rows_per_node) / rows_per_s
    buffer_bytes = (params + 2) * FLOAT64_BYTES
    compute = rows_per_node / rows_per_s
    comm = allreduce_seconds(buffer_bytes, nodes, alpha, beta)
    step = compute + comm
    speedup = one_node / step * (1 if scaling == "strong" else nodes)
    return {"nodes": nodes, "params": params, "buffer_bytes": buffer_bytes,
            "rows_per_node": rows_per_node, "compute_s": compute, "comm_s": comm, "step_s": step,
            "speedup": speedup, "efficiency": speedup / nodes}


def model_table(rows: int, rows_per_s: float, alpha: float, beta: float, *,
                scaling: str = "strong", nodes: Sequence[int] = NODES,
                params: Sequence[int] = PARAMS) -> list[dict[str, Any]]:
    """`predict_step` for every parameter count in params and node count in nodes (in that
    order: params outer), as a list of its dicts."""
    return [predict_step(p, rows, n, rows_per_s, alpha, beta, scaling=scaling)
            for p in params for n in nodes]
