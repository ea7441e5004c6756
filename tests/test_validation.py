import numpy as np
import pytest
import scipy.sparse as sp

from fastdp.validation import check_features, check_shard, check_targets


def test_valid_input_passes_and_is_contiguous():
    X = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]  # a strided view
    X2, y2, error = check_shard(X, [1, 2, 3])
    assert error is None
    assert X2.flags.c_contiguous and np.array_equal(X2, X)
    assert y2.dtype == np.float64


def test_float32_is_kept_and_y_follows():
    X, y, error = check_shard(np.ones((2, 2), np.float32), np.ones(2, np.float64))
    assert error is None and X.dtype == np.float32 and y.dtype == np.float32


def test_integers_become_float64():
    X, _, error = check_shard(np.ones((2, 2), np.int32), np.ones(2, bool))
    assert error is None and X.dtype == np.float64


@pytest.mark.parametrize("X,y,message", [
    (np.ones((3, 2)), np.ones(4), "X has 3 rows but y has 4"),
    (np.ones(3), np.ones(3), "X must be 2-D"),
    (np.ones((3, 2, 1)), np.ones(3), "X must be 2-D"),
    (np.ones((3, 0)), np.ones(3), "X has 0 features"),
    (np.ones((3, 2)), np.ones((3, 1)), "y must be 1-D"),
    (np.array([[1.0, np.nan]]), np.ones(1), r"X contains NaN \(first at row 0, column 1\)"),
    (np.ones((2, 2)), np.array([1.0, np.inf]), r"y contains inf \(first at row 1\)"),
    (np.array([["a", "b"]]), np.ones(1), "X must be numeric"),
    (np.ones((1, 2)), np.array([None], dtype=object), "y must be numeric"),
    (np.ones((1, 2), complex), np.ones(1), "X must be numeric"),
])
def test_bad_input_is_named(X, y, message):
    X2, y2, error = check_shard(X, y)
    assert X2 is None and y2 is None
    assert error is not None
    import re
    assert re.search(message, error), error


def test_check_features_and_check_targets_are_check_shard_in_two():
    """X's checks alone (what one-vs-rest fits share), then y's against the checked X."""
    X = sp.csr_matrix((np.ones(3), np.array([2, 0, 1]), np.array([0, 2, 3])), shape=(2, 3))
    assert check_features(X) == (None, "X (CSR) indices are not sorted in row 0; sort them with "
                                       "X.sort_indices()")
    X.sort_indices()
    checked, error = check_features(X.astype(np.int64))
    assert error is None and checked.dtype == np.float64
    assert check_targets(checked, [1, -1], "hinge")[0].tolist() == [1.0, -1.0]
    assert check_targets(checked, [1, 0], "hinge") == (
        None, "y must be -1 or +1 for loss 'hinge', got 0.0 at row 1")
    assert check_targets(checked, [0, 3], "softmax", 3) == (
        None, "y has label 3 but coef has 3 classes (labels must be 0..2)")
    assert check_targets(checked, [1.0], "squared") == (None, "X has 2 rows but y has 1")
