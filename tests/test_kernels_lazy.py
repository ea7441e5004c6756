"""kernels.numba_lazy: mini-batch SGD steps over CSR rows with the L2 decay kept as a product.

Checked against the dense step they stand for: the batch's sums are numba_sparse.csr_block_sums'
over the same rows (up to rounding), and a step followed by a flush gives the dense
update of every coefficient, decay included."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastdp.kernels import LOSS_CODES, numba_lazy, numba_sparse

SCALAR_LOSSES = ["squared", "logistic", "hinge", "squared_hinge"]


def problem(loss, dtype=np.float64, index=np.int32, rows=60, n=40, seed=0):
    """CSR rows (some empty), targets for the loss, and coefficients."""
    rng = np.random.default_rng(seed)
    X = sp.random(rows, n, density=0.15, format="csr", random_state=rng, dtype=dtype)
    X.indices, X.indptr = X.indices.astype(index), X.indptr.astype(index)
    y = rng.standard_normal(rows) if loss == "squared" else rng.choice([-1.0, 1.0], rows)
    return X, y.astype(dtype), rng.standard_normal(n)


def cols_of(coef, inv=None):
    """numba_lazy's per-column array: [stored, inv, sum]."""
    return np.column_stack([coef, np.ones_like(coef) if inv is None else inv, np.zeros_like(coef)])


def true_coef(cols, now):
    return cols[:, 0] * now * np.abs(cols[:, 1])


@pytest.mark.parametrize("loss", SCALAR_LOSSES)
@pytest.mark.parametrize("dtype,index", [(np.float64, np.int32), (np.float32, np.int64)])
def test_batch_sums_are_the_csr_kernels_over_the_gathered_rows(loss, dtype, index):
    X, y, coef = problem(loss, dtype, index)
    rows = np.array([3, 7, 8, 20, 41, 59], dtype=np.int64)
    cols, touched = cols_of(coef), np.empty(X.shape[1] + 1, dtype=np.int64)
    k, d_sum, loss_sum, total = numba_lazy.lazy_batch_sums(
        LOSS_CODES[loss], X.data, X.indices, X.indptr, rows, y, cols, 0.3, 1.0, touched)
    B = X[rows]
    out = np.empty((1, X.shape[1] + 2))
    numba_sparse.csr_block_sums(LOSS_CODES[loss], B.data, B.indices, B.indptr, y[rows], coef,
                                0.3, out, 4096)
    listed = touched[:k]
    assert len(set(listed.tolist())) == k  # each column once
    sums = np.zeros(X.shape[1])
    sums[listed] = cols[listed, 2]
    np.testing.assert_allclose(sums, out[0, :-2], rtol=1e-12, atol=1e-13)
    assert d_sum == pytest.approx(out[0, -2], rel=1e-12, abs=1e-13)
    assert loss_sum == pytest.approx(out[0, -1], rel=1e-12)
    # the listed columns are those with a non-zero sum, or in a row whose derivative is not 0
    assert set(np.flatnonzero(sums).tolist()) <= set(listed.tolist()) <= set(B.indices.tolist())
    assert np.all(cols[listed, 1] == -1.0) and np.all(np.delete(cols[:, 1], listed) == 1.0)
    assert np.array_equal(cols[:, 0], coef)  # the margins read the coefficients, never move them
    assert total == pytest.approx(d_sum + loss_sum + sums.sum(), rel=1e-12)


def test_hinge_rows_past_the_margin_list_no_column():
    X = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]))
    cols, touched = cols_of(np.array([1.0, 1.0, 1.0])), np.empty(4, dtype=np.int64)
    rows = np.array([0, 1])
    k, d_sum, loss_sum, _ = numba_lazy.lazy_batch_sums(  # margins 3 and 3, y = 1: past it
        LOSS_CODES["hinge"], X.data, X.indices, X.indptr, rows, np.array([1.0, 1.0]), cols, 0.0,
        1.0, touched)
    assert (k, d_sum, loss_sum) == (0, 0.0, 0.0) and np.all(cols[:, 1:] == [1.0, 0.0])
    k, d_sum, loss_sum, _ = numba_lazy.lazy_batch_sums(  # row 1 with y = -1: slack 4, d = 1
        LOSS_CODES["hinge"], X.data, X.indices, X.indptr, rows, np.array([1.0, -1.0]), cols,
        0.0, 1.0, touched)
    assert (k, touched[0], d_sum, loss_sum) == (1, 1, 1.0, 4.0)
    assert np.array_equal(cols[:, 2], [0.0, 3.0, 0.0]) and np.array_equal(cols[:, 1], [1, -1, 1])


@pytest.mark.parametrize("loss", SCALAR_LOSSES)
def test_steps_then_a_flush_are_the_dense_steps(loss):
    """Several lazy steps on overlapping batches, each with its own rate, flushed at the end:
    every coefficient as the dense update (sums / count + l2 * coef, over all n) gives it."""
    X, y, coef = problem(loss, seed=2)
    n, l2, intercept = X.shape[1], 0.05, 0.1
    dense = coef.copy()
    cols, touched = cols_of(coef), np.empty(n + 1, dtype=np.int64)
    now = 1.0
    rng = np.random.default_rng(3)
    for step in range(12):
        rows = np.sort(rng.choice(X.shape[0], 7, replace=False)).astype(np.int64)
        lr = 0.5 / (step + 1)
        B = X[rows]
        out = np.empty((1, n + 2))
        numba_sparse.csr_block_sums(LOSS_CODES[loss], B.data, B.indices, B.indptr, y[rows],
                                    dense, intercept, out, 4096)
        dense -= lr * (out[0, :n] / len(rows) + l2 * dense)
        k, *_ = numba_lazy.lazy_batch_sums(LOSS_CODES[loss], X.data, X.indices, X.indptr, rows,
                                           y, cols, intercept, now, touched)
        after = now * (1 - lr * l2)
        numba_lazy.lazy_batch_step(touched, k, cols, now, 1 / after, lr, l2, float(len(rows)))
        now = after
        assert np.all(cols[:, 2] == 0.0) and np.all(cols[:, 1] > 0)  # sums cleared, unmarked
        np.testing.assert_allclose(true_coef(cols, now), dense, rtol=1e-12, atol=1e-15)
    assert numba_lazy.lazy_sum_squares(cols, now) == pytest.approx(dense @ dense, rel=1e-12)
    flushed = np.empty(n)
    numba_lazy.lazy_flush(cols, now, flushed)
    np.testing.assert_allclose(flushed, dense, rtol=1e-12, atol=1e-15)
    assert np.array_equal(cols[:, 0], flushed) and np.all(cols[:, 1] == 1.0)


def test_margins_read_the_decayed_coefficients():
    """A column last updated when the product was 0.5 and now is 0.125 counts a quarter."""
    X = sp.csr_matrix(np.array([[2.0, 1.0]]))
    cols, touched = cols_of(np.array([4.0, 1.0]), inv=np.array([2.0, 8.0])), np.empty(3, np.int64)
    _, d_sum, _, _ = numba_lazy.lazy_batch_sums(LOSS_CODES["squared"], X.data, X.indices,
                                                X.indptr, np.array([0]), np.array([0.0]), cols,
                                                0.0, 0.125, touched)
    assert d_sum == 2.0 * 4.0 * 0.25 + 1.0 * 1.0 * 1.0  # z - y with coef (1, 1)


def test_load_sets_coefficients_up_to_date_without_sums():
    cols = np.full((3, 3), np.nan)
    numba_lazy.lazy_load(np.array([1.0, -2.0, 3.0]), cols)
    assert np.array_equal(cols, [[1.0, 1.0, 0.0], [-2.0, 1.0, 0.0], [3.0, 1.0, 0.0]])


def test_total_is_non_finite_when_a_sum_is():
    X = sp.csr_matrix(np.array([[1e308, 1e308]]))
    cols, touched = cols_of(np.array([1.0, 1.0])), np.empty(3, np.int64)
    _, _, loss_sum, total = numba_lazy.lazy_batch_sums(
        LOSS_CODES["squared"], X.data, X.indices, X.indptr, np.array([0]), np.array([0.0]), cols,
        0.0, 1.0, touched)
    assert not np.isfinite(loss_sum) and not np.isfinite(total)


def test_batches_stop_before_a_batch_whose_sums_are_not_finite():
    X = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [0.0, 1e308, 1e308]]))
    y, order = np.array([1.0, 0.0]), np.array([0, 1], dtype=np.int64)
    args = (LOSS_CODES["squared"], X.data, X.indices, X.indptr, order, 1, y)

    def run(rates):
        cols, theta = cols_of(np.array([0.5, -0.5, 0.25])), np.array([0.5, -0.5, 0.25, 0.1])
        done, now, weighted = numba_lazy.lazy_batches(*args, cols, theta, True, rates, 0.1, 1.0,
                                                       1e-150, np.empty(4, np.int64))
        return done, now, weighted, cols, theta

    done, now, weighted, cols, theta = run(np.array([0.2, 0.2]))
    one = run(np.array([0.2]))
    assert (done, one[0]) == (1, 1) and now == one[1] == 1.0 - 0.2 * 0.1
    assert weighted == one[2] == 0.5 * (0.5 - 1.0 + 0.1 - 1.0) ** 2
    assert np.array_equal(cols, one[3]) and np.array_equal(theta, one[4])
    assert np.all(cols[:, 1] > 0) and np.all(cols[:, 2] == 0.0)  # the bad batch left no trace
