import numpy as np
import pytest

from fastdp import partition, synthetic


def test_rank_slices_equal_the_serial_rows():
    n_rows = 3 * synthetic.CHUNK_ROWS + 17
    X, y = synthetic.linear_regression(n_rows, 4, seed=3)
    for n_parts in (1, 2, 3, 5):
        parts = [synthetic.linear_regression(n_rows, 4, rows, seed=3)
                 for rows in partition.contiguous(n_rows, n_parts)]
        assert np.array_equal(np.concatenate([p[0] for p in parts]), X)
        assert np.array_equal(np.concatenate([p[1] for p in parts]), y)


def test_model_is_y_equals_2x0_plus_3():
    X, y = synthetic.linear_regression(50_000, 3, noise=0.0)
    np.testing.assert_allclose(y, 2 * X[:, 0] + 3)
    assert X.dtype == np.float64 and X.flags.c_contiguous


def test_float32_and_empty():
    X, y = synthetic.linear_regression(10, 2, range(4, 4), dtype=np.float32)
    assert X.shape == (0, 2) and y.shape == (0,) and X.dtype == np.float32


def test_bad_rows():
    with pytest.raises(ValueError, match="rows must be a contiguous sub-range"):
        synthetic.linear_regression(10, 2, range(5, 11))
