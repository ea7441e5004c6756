"""The machine's read bandwidth, measured the way the kernels read: a parallel reduction over a
large array on every thread the kernels use (the roofline a memory-bound kernel is held to)."""

from __future__ import annotations

import time

import numba
import numpy as np

DEFAULT_BYTES = 1 << 30


@numba.njit(parallel=True, fastmath=True, cache=True)
def _parallel_sum(a: np.ndarray) -> float:
    """Sum of a (n,) float64 array: each thread streams its part once. Pure."""
    total = 0.0
    for i in numba.prange(a.size):
        total += a[i]
    return total


def read_bandwidth(n_bytes: int = DEFAULT_BYTES, repeats: int = 10) -> float:
    """Best GB/s (1e9 bytes/s) of a parallel sum over an n_bytes float64 array, after a warm-up
    call (compilation, page faults); the array is filled with ones and the sum checked."""
    if n_bytes < 8 or repeats < 1:
        raise ValueError(f"n_bytes must be >= 8 and repeats >= 1, got {n_bytes} and {repeats}")
    a = np.ones(n_bytes // 8)
    if _parallel_sum(a) != a.size:
        raise RuntimeError("the bandwidth probe's sum is wrong")
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        _parallel_sum(a)
        best = min(best, time.perf_counter() - start)
    return a.nbytes / best / 1e9
