"""The machine's read bandwidth, measured the way the kernels read: a parallel reduction over a
large array on every thread the kernels use (the roofline a memory-bound kernel is held to)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numba
import numpy as np

DEFAULT_BYTES = 1 << 30
PROBE = "read"  # the probe's name among the runs a suite times beside it
Probe = tuple[Callable[[], float], int]  # bandwidth_probe's (run, bytes)


@numba.njit(parallel=True, fastmath=True, cache=True)
def _parallel_sum(a: np.ndarray) -> float:
    """Sum of a (n,) float64 array: each thread streams its part once. Pure."""
    total = 0.0
    for i in numba.prange(a.size):
        total += a[i]
    return total


def bandwidth_probe(n_bytes: int = DEFAULT_BYTES) -> Probe:
    """(run, bytes): run() streams once over an n_bytes float64 array of ones (a parallel sum), for
    a caller that times it alongside other work (`fastdp bench kernels` times it in every case's
    rounds). The first call (compilation, page faults) is made and its sum checked here."""
    if n_bytes < 8:
        raise ValueError(f"n_bytes must be >= 8, got {n_bytes}")
    a = np.ones(n_bytes // 8)
    if _parallel_sum(a) != a.size:
        raise RuntimeError("the bandwidth probe's sum is wrong")
    return (lambda: _parallel_sum(a)), a.nbytes


def read_bandwidth(n_bytes: int = DEFAULT_BYTES, repeats: int = 10) -> float:
    """Best GB/s (1e9 bytes/s) of `repeats` runs of bandwidth_probe(n_bytes)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    run, size = bandwidth_probe(n_bytes)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return size / best / 1e9
