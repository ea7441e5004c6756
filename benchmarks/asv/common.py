"""Helpers shared by the asv benchmarks (no benchmarks here): the kernel cases of
fastdp.bench.cases (the same data, contenders and reference checks as `fastdp bench kernels` and
the pytest-benchmark suite), and timing."""

from fastdp.bench.cases import Case, assert_matches, make_kernel, make_shard, reference
from fastdp.bench.timing import best_time

__all__ = ["Case", "assert_matches", "best_time", "checked_kernel", "make_kernel", "make_shard"]


def checked_kernel(case: Case, backend: str):
    """(shard, a no-argument kernel call) for the case, its result checked against the reference
    (a wrong kernel fails the benchmark instead of reporting a fast number)."""
    shard = make_shard(case)
    call = make_kernel(case, backend, shard)
    assert_matches(case, call(), reference(case, shard))
    return shard, call
