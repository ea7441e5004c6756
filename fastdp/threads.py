"""Threads per rank: ranks x threads must never oversubscribe a node's cores.

Unless the user set NUMBA_NUM_THREADS (Numba) or OMP_NUM_THREADS (OpenMP, the Cython kernels),
each rank uses (cores available to the process) // (ranks on the node) threads, at least one.
While the compiled kernels own the cores, BLAS is held to one thread (`blas_threads`).
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager

import numba
from threadpoolctl import ThreadpoolController

from . import kernels

_blas: tuple[int, ThreadpoolController] | None = None  # (modules imported when made, controller)


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


def blas_threads(limit: int | None) -> AbstractContextManager:
    """A context in which the BLAS libraries loaded in this process run at most `limit` threads
    (None: as many as they had), restored when it ends; threadpoolctl's limit.

    threadpoolctl finds the libraries by scanning the process's memory map: about 2 ms, most of a
    small fit's time, when it was done at every fit. One controller is kept instead, and made
    again only when a module was imported since (it may have loaded another BLAS).
    """
    global _blas
    if _blas is None or _blas[0] != len(sys.modules):
        controller = ThreadpoolController()
        _blas = (len(sys.modules), controller)
    return _blas[1].limit(limits=limit, user_api="blas")
