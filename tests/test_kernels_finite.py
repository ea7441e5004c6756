"""kernels.first_nonfinite (numba_finite.py): the first NaN or infinity of an array, the check by
threads."""

import re

import numba
import numpy as np
import pytest

from fastdp import kernels

CHUNK = 1 << 16  # sizes around a power of two: the threads' and the vector loops' tails
BIG = kernels.PARALLEL_CHECK_VALUES  # from this size on, the check runs on threads (numba_finite.py)


def want(a: np.ndarray) -> int:
    bad = np.flatnonzero(~np.isfinite(a))
    return int(bad[0]) if bad.size else -1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK + 1, BIG - 1, BIG, BIG + 7])
def test_first_nonfinite_finds_the_first_nan_or_infinity(size, dtype):
    rng = np.random.default_rng(size)
    a = rng.standard_normal(size).astype(dtype)
    assert kernels.first_nonfinite(a) == -1
    for value in (np.nan, np.inf, -np.inf):
        for spots in ([0], [size - 1], [size // 2, size // 3], [size - 1, CHUNK - 1, CHUNK]):
            spots = [s for s in spots if 0 <= s < size]
            if not spots:
                continue
            b = a.copy()
            b[spots] = value
            assert kernels.first_nonfinite(b) == want(b) == min(spots)


def test_the_largest_finite_values_are_finite():
    for dtype in (np.float32, np.float64):
        info = np.finfo(dtype)
        extremes = np.array([info.max, -info.max, info.tiny, info.smallest_subnormal, 0.0, -0.0], dtype)
        assert kernels.first_nonfinite(extremes) == -1
        assert kernels.first_nonfinite(np.resize(extremes, BIG)) == -1  # on threads


def test_a_2d_array_gives_the_position_in_c_order():
    X = np.zeros((50, 7))
    X[31, 4] = np.nan
    X[40, 0] = np.inf
    assert kernels.first_nonfinite(X) == 31 * 7 + 4


@pytest.mark.parametrize("threads", [1, 2])
def test_first_nonfinite_does_not_depend_on_the_thread_count(threads):
    a = np.zeros(BIG + 5 * CHUNK)
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        assert kernels.first_nonfinite(a) == -1
        for spot in (0, BIG // 2 + 9, a.size - 1):  # in either thread's half
            b = a.copy()
            b[[spot, a.size - 1]] = [np.inf, -np.inf]  # inf and -inf: no cancelling out
            assert kernels.first_nonfinite(b) == spot
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("a,message", [
    (np.zeros(3, np.int64), "a must be a C-contiguous float32 or float64 array, got int64 (3,)"),
    (np.zeros((3, 4)).T, "a must be a C-contiguous float32 or float64 array, got float64 (4, 3)"),
    ([1.0, 2.0], "a must be a C-contiguous float32 or float64 array, got list"),
])
def test_first_nonfinite_names_bad_input(a, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        kernels.first_nonfinite(a)
