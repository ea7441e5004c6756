"""kernels.sort_batches (numba_batches.py): an epoch's mini-batches, each in increasing order."""

import re

import numpy as np
import pytest

from fastdp import kernels


@pytest.mark.parametrize("m,batch_size", [(0, 1), (1, 1), (1, 5), (10, 1), (10, 3), (10, 10),
                                          (10, 11), (1_000, 7), (4_099, 256), (100_000, 4_096)])
def test_sort_batches_sorts_each_batch_of_the_permutation(m, batch_size):
    order = np.random.default_rng(m + batch_size).permutation(m)
    expected = np.concatenate([np.sort(order[s:s + batch_size]) for s in range(0, m, batch_size)]
                              or [np.empty(0, np.int64)])
    assert kernels.sort_batches(order, batch_size) is order
    np.testing.assert_array_equal(order, expected)


def test_sort_batches_keeps_a_sorted_permutation():
    order = np.arange(1_000)
    np.testing.assert_array_equal(kernels.sort_batches(order, 64), np.arange(1_000))


@pytest.mark.parametrize("order,batch_size,message", [
    (np.array([0, 2], np.int64), 1, "order has row 2 but only 2 rows (it must be a permutation of 0..1)"),
    (np.array([-1, 0], np.int64), 1, "order has row -1 but only 2 rows"),
    (np.array([1, 1, 0, 3], np.int64), 2, "order is not a permutation of 0..3: row 2 is missing"),
    (np.array([0, 1], np.int32), 1, "order must be a 1-D C-contiguous int64 array, got int32 (2,)"),
    (np.array([0.0, 1.0]), 1, "order must be a 1-D C-contiguous int64 array, got float64 (2,)"),
    (np.zeros((2, 2), np.int64), 1, "order must be a 1-D C-contiguous int64 array, got int64 (2, 2)"),
    (np.arange(6)[::2], 1, "order must be a 1-D C-contiguous int64 array"),
    ([0, 1], 1, "order must be a 1-D C-contiguous int64 array, got list"),
    (np.arange(3), 0, "batch_size must be an integer >= 1, got 0"),
    (np.arange(3), 2.0, "batch_size must be an integer >= 1, got 2.0"),
    (np.arange(3), True, "batch_size must be an integer >= 1, got True"),
])
def test_sort_batches_names_bad_input(order, batch_size, message):
    kept = np.array(order, copy=True)
    with pytest.raises(ValueError, match=re.escape(message)):
        kernels.sort_batches(order, batch_size)
    np.testing.assert_array_equal(order, kept)  # left as it was


def test_sort_batches_refuses_a_read_only_order():
    order = np.arange(4)
    order.flags.writeable = False
    with pytest.raises(ValueError, match="order is read-only"):
        kernels.sort_batches(order, 2)
