"""kernels.take_rows (numba_rows.py): a mini-batch's rows (and their targets) gathered by threads."""

import re

import numba
import numpy as np
import pytest

from fastdp import kernels


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 7, 32])
@pytest.mark.parametrize("k", [0, 1, 63, 64, 65, 1000])
def test_take_rows_equals_numpy_take(k, n, dtype):
    rng = np.random.default_rng(k + n)
    X = rng.standard_normal((500, n)).astype(dtype)
    rows = rng.integers(0, 500, k)  # unsorted, with repeats
    out = np.full((k, n), np.nan, dtype=dtype)
    assert kernels.take_rows(X, rows, out) is out
    np.testing.assert_array_equal(out, np.take(X, rows, axis=0))


@pytest.mark.parametrize("y_dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("k", [0, 5, 64, 65, 700])
def test_take_rows_gathers_the_targets_in_the_same_pass(k, y_dtype):
    rng = np.random.default_rng(k)
    X = rng.standard_normal((900, 6)).astype(np.float32)
    y = rng.integers(-50, 50, 900).astype(y_dtype)
    rows = rng.integers(0, 900, k)
    out, y_out = np.empty((k, 6), np.float32), np.full(k, 99, y_dtype)
    assert kernels.take_rows(X, rows, out, y=y, y_out=y_out) is out
    np.testing.assert_array_equal(out, X[rows])
    np.testing.assert_array_equal(y_out, y[rows])


@pytest.mark.parametrize("threads", [1, 2])
def test_take_rows_fills_every_chunk_whatever_the_thread_count(threads):
    X = np.arange(3000.0).reshape(1000, 3)
    rows = np.arange(999, -1, -3, dtype=np.int32)  # 334 rows: 5 full chunks of 64 and a part
    out = np.empty((rows.size, 3))
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        kernels.take_rows(X, rows, out)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(out, X[rows])


X4 = np.zeros((4, 2))


@pytest.mark.parametrize("X,rows,out,message", [
    (X4, [0, 4], np.empty((2, 2)), "rows has row 4 but X has 4 rows"),
    (X4, [-1, 0], np.empty((2, 2)), "rows has row -1 but X has 4 rows"),
    (X4, [0.0, 1.0], np.empty((2, 2)), "rows must be a 1-D array of integers, got float64 (2,)"),
    (X4, [[0, 1]], np.empty((2, 2)), "rows must be a 1-D array of integers, got int64 (1, 2)"),
    (X4, [0, 1], np.empty((3, 2)), "out must be C-contiguous float64 of shape (2, 2), got float64 (3, 2)"),
    (X4, [0, 1], np.empty((2, 2), np.float32), "out must be C-contiguous float64 of shape (2, 2)"),
    (X4, [0, 1], np.empty((2, 2), order="F"), "out must be C-contiguous float64 of shape (2, 2)"),
    (np.zeros((2, 4)).T, [0, 1], np.empty((2, 2)), "X must be a 2-D C-contiguous float32 or float64"),
    (np.zeros((4, 2), np.int64), [0], np.empty((1, 2), np.int64), "X must be a 2-D C-contiguous"),
])
def test_take_rows_names_bad_input(X, rows, out, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        kernels.take_rows(X, rows, out)


Y4 = np.arange(4.0)


@pytest.mark.parametrize("y,y_out,message", [
    (Y4, None, "y and y_out go together: pass both or neither"),
    (None, np.empty(2), "y and y_out go together: pass both or neither"),
    (np.arange(5.0), np.empty(2), "y must be a numeric array of shape (4,) (X's rows), got float64 (5,)"),
    (np.array(["a"] * 4), np.empty(2), "y must be a numeric array of shape (4,) (X's rows), got <U1 (4,)"),
    ([0.0] * 4, np.empty(2), "y must be a numeric array of shape (4,) (X's rows), got list"),
    (Y4, np.empty(3), "y_out must be float64 of shape (2,), got float64 (3,)"),
    (Y4, np.empty(2, np.float32), "y_out must be float64 of shape (2,), got float32 (2,)"),
    (Y4, [0.0, 0.0], "y_out must be a NumPy array, got list"),
])
def test_take_rows_names_bad_targets(y, y_out, message):
    out = np.full((2, 2), 7.0)
    with pytest.raises(ValueError, match=re.escape(message)):
        kernels.take_rows(X4, [0, 1], out, y=y, y_out=y_out)
    assert (out == 7.0).all()  # nothing written


def test_take_rows_refuses_a_read_only_out():
    out = np.empty((1, 2))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        kernels.take_rows(X4, [0], out)
