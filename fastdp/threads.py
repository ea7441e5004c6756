"""Threads per rank: ranks x threads must never oversubscribe a node's cores.

Unless the user set NUMBA_NUM_THREADS (Numba) or OMP_NUM_THREADS (OpenMP, the Cython kernels),
each rank uses (cores available to the process) // (ranks on the node) threads, at least one.
"""

from __future__ import annotations

import os

import numba

from . import kernels


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_per_rank(ranks_on_node: int, cores: int | None = None) -> int:
    """cores // ranks_on_node, at least 1."""
    if ranks_on_node < 1:
        raise ValueError(f"ranks_on_node must be >= 1, got {ranks_on_node}")
    cores = available_cores() if cores is None else cores
    return max(1, cores // ranks_on_node)


def configure(ranks_on_node: int, environ: dict[str, str] | None = None) -> dict[str, int]:
    """Set the kernels' threads for a rank sharing its node with ranks_on_node - 1 others.

    A backend whose variable (NUMBA_NUM_THREADS, OMP_NUM_THREADS) is set keeps the user's choice.
    Returns the threads each backend now uses, e.g. {'numba': 1, 'cython': 1}.
    """
    environ = os.environ if environ is None else environ
    n = threads_per_rank(ranks_on_node)
    if "NUMBA_NUM_THREADS" not in environ:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if "OMP_NUM_THREADS" not in environ:
        kernels.set_cython_threads(n)
    return kernels.get_num_threads()
