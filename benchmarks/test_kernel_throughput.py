"""Loss-gradient kernels on dense and CSR shards: fused Numba and Cython vs the NumPy/SciPy
two-pass reference (the cases of fastdp.bench.cases; `fastdp bench kernels` runs the same cases
with the bandwidth probe and the issue's targets).

Run:

    pytest benchmarks --benchmark-only
    pytest benchmarks --benchmark-only --benchmark-save=NAME    # keep a baseline in .benchmarks/
    pytest benchmarks --benchmark-only --benchmark-compare      # compare with the latest saved one
    pytest benchmarks --benchmark-only -k csr                   # only the CSR cases

Each kernel's result is checked against the reference once before it is timed, so a wrong kernel
fails instead of being benchmarked. extra_info records GB/s (bytes of X read per call / min time)
and rows/s.
"""

from typing import NamedTuple

import numpy as np
import pytest

from fastdp.bench.cases import CASES, CONTENDERS, Shard, assert_matches, bytes_of_x, make_kernel, \
    make_shard, reference

ROUNDS = 10


class Loaded(NamedTuple):
    case_id: str
    shard: Shard
    reference: np.ndarray


@pytest.fixture(scope="module")
def loaded() -> list[Loaded]:
    """The shard in use and its reference: one shard in memory at a time (the largest is 1 GB)."""
    return []


def load(case_id: str, loaded: list[Loaded]) -> Loaded:
    """The case's shard and reference, built on first use (tests run case by case)."""
    if not loaded or loaded[0].case_id != case_id:
        loaded.clear()
        shard = make_shard(CASES[case_id])
        loaded.append(Loaded(case_id, shard, reference(CASES[case_id], shard)))
    return loaded[0]


@pytest.mark.parametrize("name", CONTENDERS)
@pytest.mark.parametrize("case_id", list(CASES))
def test_loss_grad(benchmark, case_id: str, name: str, loaded: list[Loaded],
                   timings: dict[tuple[str, str], tuple[float, float]]) -> None:
    case = CASES[case_id]
    _, shard, ref = load(case_id, loaded)
    benchmark.group = case_id
    kernel = make_kernel(case, name, shard)
    assert_matches(case, kernel(), ref)
    benchmark.pedantic(kernel, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    if not benchmark.enabled:  # --benchmark-disable: checked and run once, no stats
        return
    min_s = benchmark.stats.stats.min
    gb_per_s = bytes_of_x(shard.X) / min_s / 1e9
    benchmark.extra_info["GB/s"] = gb_per_s
    benchmark.extra_info["rows/s"] = case.rows / min_s
    timings[case_id, name] = (min_s, gb_per_s)
