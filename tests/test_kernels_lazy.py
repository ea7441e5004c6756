"""kernels.numba_lazy: mini-batch SGD steps over CSR rows with the elastic net's decay kept as a
product and its L1 threshold as a sum.

Checked against the dense step they stand for: the batch's sums are numba_sparse.csr_block_sums'
over the same rows (up to rounding), and a step followed by a flush gives the dense update and
soft-threshold of every coefficient."""

import subprocess
import sys

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


def cols_of(q):
    """numba_lazy's per-column array for a scalar loss: [q, sum], with no sums."""
    return np.column_stack([q, np.zeros_like(q)])


def marks_of(cols):
    """No column marked: numba_lazy's bitmap for cols' columns."""
    return np.zeros((cols.shape[0] + 7) // 8, dtype=np.uint8)


def marked(marks, n):
    """The columns whose bit is set."""
    return np.flatnonzero(np.unpackbits(marks, bitorder="little")[:n])


def true_coef(cols, now, a=0.0):
    return np.copysign(now * np.maximum(np.abs(cols[:, 0]) - a, 0.0), cols[:, 0])


def batch_sums(loss, X, rows, y, cols, marks, intercept, now, a, touched, parts=1):
    """lazy_batch_sums for a scalar loss: (k, intercept's sum, loss sum, total)."""
    d_sum = np.empty(1)
    k, loss_sum, total = numba_lazy.lazy_batch_sums(
        LOSS_CODES[loss], X.data, X.indices, X.indptr, rows, y, cols, marks,
        np.array([intercept]), now, a, touched, np.empty((len(rows), 1)), d_sum,
        np.empty((len(rows), 2)), parts)
    return k, d_sum[0], loss_sum, total


def soft(w, cut):
    return np.copysign(np.maximum(np.abs(w) - cut, 0.0), w)


def steps(rows, count=12, batch=7, seed=3):
    """(the batch's rows (sorted int64), its rate 0.5 / (step + 1)) for `count` overlapping
    random batches."""
    rng = np.random.default_rng(seed)
    for step in range(count):
        yield np.sort(rng.choice(rows, batch, replace=False)).astype(np.int64), 0.5 / (step + 1)


def dense_sums(loss, X, y, rows, coef, intercept):
    """csr_block_sums over X[rows] at (coef, intercept): [grad_coef (n), grad_intercept, loss]."""
    B = X[rows]
    out = np.empty((1, X.shape[1] + 2))
    numba_sparse.csr_block_sums(LOSS_CODES[loss], B.data, B.indices, B.indptr, y[rows], coef,
                                intercept, out, 4096)
    return out[0]


@pytest.mark.parametrize("loss", SCALAR_LOSSES)
@pytest.mark.parametrize("dtype,index", [(np.float64, np.int32), (np.float32, np.int64)])
def test_batch_sums_are_the_csr_kernels_over_the_gathered_rows(loss, dtype, index):
    X, y, coef = problem(loss, dtype, index)
    rows = np.array([3, 7, 8, 20, 41, 59], dtype=np.int64)
    cols, touched = cols_of(coef), np.empty(X.shape[1] + 1, dtype=np.int64)
    marks = marks_of(cols)
    k, d_sum, loss_sum, total = batch_sums(loss, X, rows, y, cols, marks, 0.3, 1.0, 0.0, touched)
    B = X[rows]
    out = np.empty((1, X.shape[1] + 2))
    numba_sparse.csr_block_sums(LOSS_CODES[loss], B.data, B.indices, B.indptr, y[rows], coef,
                                0.3, out, 4096)
    listed = touched[:k]
    assert len(set(listed.tolist())) == k  # each column once
    sums = np.zeros(X.shape[1])
    sums[listed] = cols[listed, 1]
    np.testing.assert_allclose(sums, out[0, :-2], rtol=1e-12, atol=1e-13)
    assert d_sum == pytest.approx(out[0, -2], rel=1e-12, abs=1e-13)
    assert loss_sum == pytest.approx(out[0, -1], rel=1e-12)
    # the listed columns are those with a non-zero sum, or in a row whose derivative is not 0
    assert set(np.flatnonzero(sums).tolist()) <= set(listed.tolist()) <= set(B.indices.tolist())
    assert np.array_equal(marked(marks, X.shape[1]), np.sort(listed))
    assert np.all(np.delete(cols[:, 1], listed) == 0.0)
    assert np.array_equal(cols[:, 0], coef)  # the margins read the coefficients, never move them
    assert total == d_sum + loss_sum  # below SUMS_BOUND the columns' sums are not read again


def test_hinge_rows_past_the_margin_list_no_column():
    X = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]))
    cols, touched = cols_of(np.array([1.0, 1.0, 1.0])), np.empty(4, dtype=np.int64)
    marks = marks_of(cols)
    rows = np.array([0, 1])
    k, d_sum, loss_sum, _ = batch_sums(  # margins 3 and 3, y = 1: past it
        "hinge", X, rows, np.array([1.0, 1.0]), cols, marks, 0.0, 1.0, 0.0, touched)
    assert (k, d_sum, loss_sum) == (0, 0.0, 0.0) and np.all(cols[:, 1] == 0.0)
    assert not marks.any()
    k, d_sum, loss_sum, _ = batch_sums(  # row 1 with y = -1: slack 4, d = 1
        "hinge", X, rows, np.array([1.0, -1.0]), cols, marks, 0.0, 1.0, 0.0, touched)
    assert (k, touched[0], d_sum, loss_sum) == (1, 1, 1.0, 4.0)
    assert np.array_equal(cols[:, 1], [0.0, 3.0, 0.0]) and list(marked(marks, 3)) == [1]


@pytest.mark.parametrize("l2,l1", [(0.05, 0.0), (0.05, 0.3), (0.0, 0.5)])
@pytest.mark.parametrize("loss", SCALAR_LOSSES)
def test_steps_then_a_flush_are_the_dense_steps(loss, l2, l1):
    """Several lazy steps on overlapping batches, each with its own rate, flushed at the end:
    every coefficient as the dense update (sums / count + l2 * coef, over all n) and the
    soft-threshold by lr * l1 give it, the coefficients the threshold took to 0 included."""
    X, y, coef = problem(loss, seed=2)
    n, intercept = X.shape[1], 0.1
    dense = coef.copy()
    cols, touched = cols_of(coef), np.empty(n + 1, dtype=np.int64)
    marks = marks_of(cols)
    now, a = 1.0, 0.0
    for rows, lr in steps(X.shape[0]):
        sums = dense_sums(loss, X, y, rows, dense, intercept)
        dense = soft(dense - lr * (sums[:n] / len(rows) + l2 * dense), lr * l1)
        k, *_ = batch_sums(loss, X, rows, y, cols, marks, intercept, now, a, touched)
        after, a_after = numba_lazy.lazy_batch_step(touched, k, cols, marks, now, a, lr, l2, l1,
                                                    float(len(rows)))
        assert after == now * (1 - lr * l2) and a_after == a + lr * l1 / after
        now, a = after, a_after
        assert np.all(cols[:, 1] == 0.0) and not marks.any()  # sums cleared, unmarked
        np.testing.assert_allclose(true_coef(cols, now, a), dense, rtol=1e-12, atol=1e-15)
    if l1:  # the threshold took some coefficients to 0, exactly as the dense steps do
        assert np.array_equal(true_coef(cols, now, a) == 0.0, dense == 0.0)
        assert 0 < np.count_nonzero(dense == 0.0) < n
    assert numba_lazy.lazy_sum_squares(cols, now, a) == pytest.approx(dense @ dense, rel=1e-12)
    flushed = np.empty(n)
    numba_lazy.lazy_flush(cols, now, a, flushed.reshape(n, 1))
    np.testing.assert_allclose(flushed, dense, rtol=1e-12, atol=1e-15)
    assert np.array_equal(cols[:, 0], flushed) and np.all(cols[:, 1] == 0.0)


@pytest.mark.parametrize("a,coef", [(0.0, [1.0, 0.1875, -0.5]), (2.0, [0.75, 0.0, -0.25])])
def test_margins_read_the_decayed_and_shrunk_coefficients(a, coef):
    """Columns updated to 4 when the product was 0.5 (q = 8), to 0.1875 and to -0.5 at 0.125
    (q = 1.5, -4), all at threshold sum 0, read at product 0.125: the first decayed to a
    quarter, the others as they were; threshold sum a = 2 takes 2 off each |q|, and the second
    column to 0."""
    X = sp.csr_matrix(np.array([[2.0, 1.0, 4.0]]))
    cols, touched = cols_of(np.array([8.0, 1.5, -4.0])), np.empty(4, np.int64)
    _, d_sum, _, _ = batch_sums("squared", X, np.array([0]), np.array([0.0]), cols,
                                marks_of(cols), 0.0, 0.125, a, touched)
    assert np.array_equal(true_coef(cols, 0.125, a), coef)
    assert d_sum == pytest.approx(2.0 * coef[0] + 1.0 * coef[1] + 4.0 * coef[2], rel=1e-15)


def test_a_column_the_threshold_took_to_zero_stays_there_until_its_gradient_moves_it():
    """Column 0 is in every batch; column 1 (at 0.1) in none: the L1 threshold, 0.04 a step,
    takes it to 0 in the third step, and it stays 0 however many steps follow."""
    X = sp.csr_matrix(np.array([[1.0, 0.0]]))
    cols, touched = cols_of(np.array([1.0, 0.1])), np.empty(3, np.int64)
    marks = marks_of(cols)
    now, a = 1.0, 0.0
    for step in range(6):
        k, *_ = batch_sums("squared", X, np.array([0]), np.array([3.0]), cols, marks, 0.0, now,
                           a, touched)
        assert list(touched[:k]) == [0]
        now, a = numba_lazy.lazy_batch_step(touched, k, cols, marks, now, a, 0.4, 0.5, 0.1, 1.0)
        want = max(0.1 * 0.8 ** (step + 1) - 0.04 * sum(0.8 ** s for s in range(step + 1)), 0.0)
        assert true_coef(cols, now, a)[1] == pytest.approx(want, abs=1e-16)
    assert true_coef(cols, now, a)[1] == 0.0


def test_load_sets_coefficients_up_to_date_without_sums():
    cols = np.full((3, 2), np.nan)
    numba_lazy.lazy_load(np.array([[1.0], [-2.0], [3.0]]), cols)
    assert np.array_equal(cols, [[1.0, 0.0], [-2.0, 0.0], [3.0, 0.0]])


@pytest.mark.parametrize("K", [1, 3])
def test_flush_writes_the_true_coefficients_for_any_number_of_outputs(K):
    """K = 1 takes its own loop in lazy_load and lazy_flush; both give what the formula does."""
    coef = np.random.default_rng(K).standard_normal((50, K))
    cols = np.full((50, 2 * K), np.nan)
    numba_lazy.lazy_load(coef, cols)
    assert np.array_equal(cols, np.hstack([coef, np.zeros((50, K))]))
    flushed = np.full((50, K), np.nan)
    numba_lazy.lazy_flush(cols, 0.5, 0.25, flushed)
    want = np.sign(coef) * 0.5 * np.maximum(np.abs(coef) - 0.25, 0.0)
    assert np.array_equal(flushed, want) and np.array_equal(cols[:, :K], want)
    assert np.all(cols[:, K:] == 0.0)


def test_total_is_non_finite_when_a_sum_is():
    X = sp.csr_matrix(np.array([[1e308, 1e308]]))
    cols, touched = cols_of(np.array([1.0, 1.0])), np.empty(3, np.int64)
    _, _, loss_sum, total = batch_sums("squared", X, np.array([0]), np.array([0.0]), cols,
                                       marks_of(cols), 0.0, 1.0, 0.0, touched)
    assert not np.isfinite(loss_sum) and not np.isfinite(total)


def test_total_catches_a_column_sum_that_overflows_from_finite_terms():
    """Two rows add 1e308 each to column 0 (sum +inf) while every loss, derivative and product
    is finite: the rows' bound is past SUMS_BOUND, so total reads the columns' sums."""
    X = sp.csr_matrix(np.array([[1e154], [1e154]]))
    cols, touched = cols_of(np.array([1.0])), np.empty(3, np.int64)
    _, d_sum, loss_sum, total = batch_sums("squared", X, np.array([0, 1]), np.zeros(2), cols,
                                           marks_of(cols), 0.0, 1.0, 0.0, touched)
    assert np.isfinite(loss_sum) and np.isfinite(d_sum) and cols[0, 1] == np.inf
    assert total == np.inf


@pytest.mark.parametrize("scale", [1e-3, 1e151])
def test_total_adds_the_column_sums_only_past_the_bound(scale):
    """Below SUMS_BOUND, total is the loss sum plus the intercept's sum; past it (|d| |x| =
    1e302), the columns' sums as well: finite either way."""
    X = sp.csr_matrix(np.array([[scale, 2 * scale]]))
    cols, touched = cols_of(np.array([1.0, 0.0])), np.empty(3, np.int64)
    _, d_sum, loss_sum, total = batch_sums("squared", X, np.array([0]), np.zeros(1), cols,
                                           marks_of(cols), 0.0, 1.0, 0.0, touched)
    columns = cols[:, 1].sum() if scale * scale * 3 > numba_lazy.SUMS_BOUND else 0.0
    assert np.isfinite(total) and total == loss_sum + d_sum + columns


def test_batches_stop_before_a_batch_whose_sums_are_not_finite():
    X = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [0.0, 1e308, 1e308]]))
    y, order = np.array([1.0, 0.0]), np.array([0, 1], dtype=np.int64)
    args = (LOSS_CODES["squared"], X.data, X.indices, X.indptr, order, 1, y)

    def run(rates):
        cols, theta = cols_of(np.array([0.5, -0.5, 0.25])), np.array([0.5, -0.5, 0.25, 0.1])
        marks = marks_of(cols)
        done, now, a, weighted = numba_lazy.lazy_batches(
            *args, cols, marks, theta[:3].reshape(3, 1), theta[3:], True, rates, 0.1, 0.05, 1.0,
            0.0, 1e-150, np.empty(4, np.int64), np.empty((1, 1)), np.empty(1), np.empty((1, 2)),
            1)
        assert not marks.any()  # the bad batch left no column marked
        return done, now, a, weighted, cols, theta

    done, now, a, weighted, cols, theta = run(np.array([0.2, 0.2]))
    one = run(np.array([0.2]))
    assert (done, one[0]) == (1, 1) and now == one[1] == 1.0 - 0.2 * 0.1
    assert a == one[2] == 0.2 * 0.05 / now
    assert weighted == one[3] == 0.5 * (0.5 - 1.0 + 0.1 - 1.0) ** 2
    assert np.array_equal(cols, one[4]) and np.array_equal(theta, one[5])
    assert np.all(cols[:, 1] == 0.0)  # the bad batch left no sums


def test_softmax_batch_sums_are_the_csr_kernels_over_the_gathered_rows():
    """K = 4 classes: cols (n, 8) loaded from the coefficients (product 1, threshold sum 0),
    each listed column's K sums as csr_softmax_block_sums gives them."""
    X, _, _ = problem("logistic", seed=4)
    n, K = X.shape[1], 4
    rng = np.random.default_rng(5)
    y = rng.integers(0, K, X.shape[0])
    coef, intercept = rng.standard_normal((n, K)), rng.standard_normal(K)
    rows = np.array([0, 2, 9, 30, 44], dtype=np.int64)
    cols = np.full((n, 2 * K), np.nan)
    numba_lazy.lazy_load(coef, cols)
    assert np.array_equal(cols[:, :K], coef) and np.all(cols[:, K:] == 0.0)
    touched, d_sum, marks = np.empty(n + 1, np.int64), np.empty(K), marks_of(cols)
    k, loss_sum, total = numba_lazy.lazy_batch_sums(
        LOSS_CODES["softmax"], X.data, X.indices, X.indptr, rows, y, cols, marks, intercept, 1.0,
        0.0, touched, np.empty((len(rows), K)), d_sum, np.empty((len(rows), 2)), 1)
    sums = cols[:, K:]
    B = X[rows]
    out = np.empty((1, n * K + K + 1))
    numba_sparse.csr_softmax_block_sums(B.data, B.indices, B.indptr, y[rows], coef, intercept,
                                        out, 4096)
    listed = touched[:k]
    assert sorted(listed.tolist()) == sorted(set(B.indices.tolist()))  # every column of the rows
    np.testing.assert_allclose(sums, out[0, :n * K].reshape(n, K), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(d_sum, out[0, n * K:-1], rtol=1e-12, atol=1e-13)
    assert loss_sum == pytest.approx(out[0, -1], rel=1e-12)
    assert np.array_equal(cols[:, :K], coef)
    assert np.array_equal(marked(marks, n), np.sort(listed))
    assert total == pytest.approx(loss_sum + d_sum.sum() + sums.sum(), rel=1e-12, abs=1e-12)


def l2_margins(loss, X, rows, y, q, intercept, now, parts=1):
    """l2_batch_margins: (dz (b, K), intercept's sums, loss sum, total, bound)."""
    K = q.shape[1]
    dz, d_sum = np.full((len(rows), K), np.nan), np.empty(K)
    loss_sum, total, bound = numba_lazy.l2_batch_margins(
        LOSS_CODES[loss], X.data, X.indices, X.indptr, rows, y, q, np.atleast_1d(intercept), now,
        dz, d_sum, np.full((len(rows), 2), np.nan), parts)
    return dz, d_sum, loss_sum, total, bound


@pytest.mark.parametrize("loss", SCALAR_LOSSES + ["softmax"])
@pytest.mark.parametrize("dtype,index", [(np.float64, np.int32), (np.float32, np.int64)])
def test_l2_margins_and_added_rows_are_the_csr_kernels_over_the_gathered_rows(loss, dtype, index):
    """At q = coef / now, the rows' derivatives added up by add_rows (scale 1) are the gradient
    sums csr_block_sums (csr_softmax_block_sums) gives at coef, with the same loss and
    intercept's sums; bound is the sum over the rows of |dloss/dz| * |row|_1."""
    X, y, coef = problem("logistic" if loss == "softmax" else loss, dtype, index, seed=6)
    n, now = X.shape[1], 0.8
    rows = np.array([1, 4, 5, 18, 33, 50, 59], dtype=np.int64)
    B = X[rows]
    rng = np.random.default_rng(7)
    if loss == "softmax":
        K = 3
        y = rng.integers(0, K, X.shape[0])
        coef, intercept = rng.standard_normal((n, K)), rng.standard_normal(K)
        out = np.empty((1, n * K + K + 1))
        numba_sparse.csr_softmax_block_sums(B.data, B.indices, B.indptr, y[rows], coef,
                                            intercept, out, 4096)
    else:
        K, coef, intercept = 1, coef.reshape(n, 1), 0.3
        out = np.empty((1, n + 2))
        numba_sparse.csr_block_sums(LOSS_CODES[loss], B.data, B.indices, B.indptr, y[rows],
                                    coef[:, 0], intercept, out, 4096)
    q = coef / now
    dz, d_sum, loss_sum, total, bound = l2_margins(loss, X, rows, y, q, intercept, now)
    sums = np.zeros((n, K))
    numba_lazy.add_rows(X.data, X.indices, X.indptr, rows, dz, 1.0, sums)
    np.testing.assert_allclose(sums.ravel(), out[0, :n * K], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(d_sum, out[0, n * K:-1], rtol=1e-12, atol=1e-13)
    assert loss_sum == pytest.approx(out[0, -1], rel=1e-12)
    assert total == pytest.approx(loss_sum + d_sum.sum(), rel=1e-14, abs=1e-14)
    row_l1 = np.asarray(abs(B).astype(np.float64).sum(axis=1)).ravel()
    assert bound == pytest.approx(float(np.abs(dz).sum(axis=1) @ row_l1), rel=1e-12)
    assert np.array_equal(q, coef / now)  # read only


@pytest.mark.parametrize("loss", SCALAR_LOSSES + ["softmax"])
def test_l2_margins_are_the_same_bits_for_any_number_of_parts(loss):
    """The threads' parts (up to more parts than rows) change nothing: each row's values are
    formed alone and summed in row order after."""
    X, y, _ = problem("logistic" if loss == "softmax" else loss, seed=11)
    rng = np.random.default_rng(12)
    K = 3 if loss == "softmax" else 1
    if loss == "softmax":
        y = rng.integers(0, K, X.shape[0])
    q, intercept = rng.standard_normal((X.shape[1], K)), rng.standard_normal(K)
    rows = np.sort(rng.choice(X.shape[0], 9, replace=False)).astype(np.int64)
    serial = l2_margins(loss, X, rows, y, q, intercept, 0.7)
    assert np.all(np.isfinite(serial[0]))
    for parts in (2, 3, 4, 9, 13):
        threaded = l2_margins(loss, X, rows, y, q, intercept, 0.7, parts)
        assert np.array_equal(threaded[0], serial[0]) and np.array_equal(threaded[1], serial[1])
        assert threaded[2:] == serial[2:]


@pytest.mark.parametrize("loss", SCALAR_LOSSES)
def test_lazy_batch_sums_are_the_same_bits_for_any_number_of_parts(loss):
    """With L1's records: the threads' parts change neither the sums, the columns listed and
    marked, nor the loss and total."""
    X, y, coef = problem(loss, seed=15)
    n = X.shape[1]
    rows = np.sort(np.random.default_rng(16).choice(X.shape[0], 11, replace=False)).astype(np.int64)

    def run(parts):
        cols, marks = np.zeros((n, 2)), np.zeros((n + 7) // 8, dtype=np.uint8)
        cols[:, 0] = coef
        touched = np.full(n + 1, -1, dtype=np.int64)
        result = batch_sums(loss, X, rows, y, cols, marks, 0.2, 0.9, 0.01, touched, parts)
        return result, cols, marks, touched

    serial = run(1)
    for parts in (2, 3, 5, 11, 16):
        threaded = run(parts)
        assert threaded[0] == serial[0]
        for a, b in zip(threaded[1:], serial[1:]):
            assert np.array_equal(a, b)


def test_l2_batches_are_the_same_bits_for_any_number_of_parts():
    """Several epochs' worth of batches stepped with 1 to 4 parts: the same q, intercept,
    product and weighted loss."""
    X, y, coef = problem("logistic", rows=200, n=50, seed=13)
    order = np.random.default_rng(14).permutation(200).astype(np.int64)
    rates = np.linspace(0.5, 0.1, 200 // 16)

    def run(parts):
        q, theta = coef.reshape(-1, 1).copy(), np.empty((50, 1))
        intercept = np.array([0.2])
        result = numba_lazy.l2_batches(
            LOSS_CODES["logistic"], X.data, X.indices, X.indptr, order, 16, y, q, theta,
            intercept, True, rates, 0.01, 1.0, 1e-150, np.empty((16, 1)), np.empty(1),
            np.empty((16, 2)), parts)
        return result, q, intercept

    serial = run(1)
    assert serial[0][0] == len(rates)
    for parts in (2, 3, 4):
        threaded = run(parts)
        assert threaded[0] == serial[0]
        assert np.array_equal(threaded[1], serial[1]) and np.array_equal(threaded[2], serial[2])


@pytest.mark.parametrize("loss", SCALAR_LOSSES)
def test_l2_steps_then_a_flush_are_the_dense_steps(loss):
    """Several L2-only steps on overlapping batches, each with its own rate: every coefficient
    as the dense update (sums / count + l2 * coef over all n) gives it, and the intercept."""
    X, y, coef = problem(loss, seed=2)
    n, l2 = X.shape[1], 0.05
    dense, dense_b = coef.copy(), 0.1
    q, theta = coef.reshape(n, 1).copy(), np.empty((n, 1))
    intercept, now = np.array([0.1]), 1.0
    for rows, lr in steps(X.shape[0]):
        sums = dense_sums(loss, X, y, rows, dense, dense_b)
        dense = dense - lr * (sums[:n] / len(rows) + l2 * dense)
        dense_b -= lr * sums[n] / len(rows)
        dz, d_sum, *_ = l2_margins(loss, X, rows, y, q, intercept, now)
        after = numba_lazy.l2_step(X.data, X.indices, X.indptr, rows, dz, q, theta, intercept,
                                   True, d_sum, now, lr, l2, 1e-150)
        assert after == now * (1 - lr * l2)
        now = after
        np.testing.assert_allclose(q[:, 0] * now, dense, rtol=1e-12, atol=1e-15)
        assert intercept[0] == pytest.approx(dense_b, rel=1e-12)
    numba_lazy.lazy_flush(q, now, 0.0, theta)
    np.testing.assert_allclose(theta[:, 0], dense, rtol=1e-12, atol=1e-15)
    assert np.array_equal(q, theta)


def test_an_l2_step_folds_a_product_below_tiny_into_the_coefficients():
    X = sp.csr_matrix(np.array([[1.0, 0.0, 2.0]]))
    q, theta, intercept = np.array([[0.5], [-0.5], [0.25]]), np.full((3, 1), np.nan), np.zeros(1)
    dz, d_sum, *_ = l2_margins("squared", X, np.array([0]), np.array([1.0]), q, 0.0, 1e-3)
    after = numba_lazy.l2_step(X.data, X.indices, X.indptr, np.array([0]), dz, q, theta,
                               intercept, False, d_sum, 1e-3, 0.5, 1.0, 1e-3)
    assert after == 1.0 and intercept[0] == 0.0  # fit_intercept False: not moved
    expected = np.array([0.5, -0.5, 0.25]) * 1e-3 * 0.5 - 0.5 * dz[0, 0] * np.array([1, 0, 2])
    np.testing.assert_allclose(theta[:, 0], expected, rtol=1e-12)
    assert np.array_equal(q, theta)


@pytest.mark.parametrize("bad", ["overflow", "bound"])
def test_l2_batches_stop_before_a_batch_not_known_finite(bad):
    """The second batch's loss overflows, or (1e151 and 2e151 in one row) its total is finite
    but its bound, 3e302 * |d|, passes SUMS_BOUND: the loop stops before it, q and the
    intercept as one batch left them."""
    second = [0.0, 1e308, 1e308] if bad == "overflow" else [0.0, 1e151, 2e151]
    X = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], second]))
    y, order = np.array([1.0, 0.0]), np.array([0, 1], dtype=np.int64)

    def run(rates):
        q, theta = np.array([[0.5], [-0.5], [0.25]]), np.array([0.5, -0.5, 0.25, 0.1])
        done, now, weighted = numba_lazy.l2_batches(
            LOSS_CODES["squared"], X.data, X.indices, X.indptr, order, 1, y, q,
            theta[:3].reshape(3, 1), theta[3:], True, rates, 0.1, 1.0, 1e-150, np.empty((1, 1)),
            np.empty(1), np.empty((1, 2)), 1)
        return done, now, weighted, q, theta

    done, now, weighted, q, theta = run(np.array([0.2, 0.2]))
    one = run(np.array([0.2]))
    assert (done, one[0]) == (1, 1) and now == one[1] == 1.0 - 0.2 * 0.1
    assert weighted == one[2] == 0.5 * (0.5 - 1.0 + 0.1 - 1.0) ** 2
    assert np.array_equal(q, one[3]) and np.array_equal(theta, one[4])
    if bad == "bound":
        *_, total, bound = l2_margins("squared", X, np.array([1]), y, one[3], theta[3], now)
        assert np.isfinite(total) and bound > numba_lazy.SUMS_BOUND


def test_l2_grad_squares_is_the_squared_norm_of_the_mean_gradient():
    rng = np.random.default_rng(9)
    sums, q = rng.standard_normal(1001), rng.standard_normal(1001)
    sums[::3] = 0.0  # columns the batch does not touch: the penalty's part alone
    expected = np.sum((sums / 7.0 + 0.3 * q) ** 2)
    assert numba_lazy.l2_grad_squares(sums, q, 0.3, 7.0) == pytest.approx(expected, rel=1e-13)
    assert numba_lazy.l2_grad_squares(np.zeros(0), np.zeros(0), 0.3, 7.0) == 0.0


FIRST_CALL = """
import numpy as np, scipy.sparse as sp
from fastdp.kernels import LOSS_CODES, numba_lazy
X = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]]))
q = np.zeros((3, 1))
done, now, weighted = numba_lazy.l2_batches(
    LOSS_CODES["hinge"], X.data, X.indices, X.indptr, np.array([0, 1]), 1, np.array([1.0, -1.0]),
    q, np.empty((3, 1)), np.zeros(1), True, np.array([0.1, 0.1]), 0.1, 1.0, 1e-150,
    np.empty((1, 1)), np.empty(1), np.empty((1, 2)), 2)
print(done)
"""


def test_l2_batches_threads_start_when_it_is_a_process_first_numba_call():
    """l2_batches is a process's first compiled call, compiled then loaded from numba's cache
    (smoke test: when its parallel loop was in l2_batch_margins, which it called, some fresh
    processes crashed loading it from the cache, numba issue #8578; this test did not catch
    that every time)."""
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", FIRST_CALL], capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.split() == ["2"]
