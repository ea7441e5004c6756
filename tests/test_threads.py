import sys
import types

import pytest

from fastdp import kernels, threads


@pytest.mark.parametrize("ranks,cores,expected", [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 16, 8), (5, 16, 3)])
def test_threads_per_rank_never_oversubscribes(ranks, cores, expected):
    assert threads.threads_per_rank(ranks, cores) == expected
    assert ranks * expected <= max(cores, ranks)


def test_bad_rank_count():
    with pytest.raises(ValueError, match="ranks_on_node must be >= 1"):
        threads.threads_per_rank(0, 2)


def test_configure_sets_both_backends_and_respects_user_variables():
    try:
        assert threads.configure(2, environ={}) == {"numba": 1, "cython": 1}
        kept = threads.configure(1, environ={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
        assert kept == {"numba": 1, "cython": 1}  # user variables set: nothing changed
    finally:
        threads.configure(1, environ={})
    one_rank = threads.threads_per_rank(1)
    assert kernels.get_num_threads() == {"numba": one_rank, "cython": one_rank}


def openblas_threads() -> list[int]:
    from threadpoolctl import threadpool_info
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_blas_threads_limits_blas_inside_and_restores_it_after():
    before = openblas_threads()
    assert before  # NumPy's and SciPy's OpenBLAS
    with threads.blas_threads(1):
        assert openblas_threads() == [1] * len(before)
    assert openblas_threads() == before
    with threads.blas_threads(None):  # no limit: as they were
        assert openblas_threads() == before


def test_blas_threads_scans_the_libraries_again_only_after_an_import(monkeypatch):
    threads.blas_threads(1)
    kept = threads._blas[1]
    with threads.blas_threads(1):
        pass
    assert threads._blas[1] is kept  # nothing imported since: the same controller
    monkeypatch.setitem(sys.modules, "fastdp_test_new_module", types.ModuleType("fastdp_test_new_module"))
    with threads.blas_threads(1):
        assert openblas_threads() == [1] * len(openblas_threads())
    assert threads._blas[1] is not kept
