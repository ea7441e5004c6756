"""Mini-batch SGD steps over CSR rows in O(the batch's non-zeros), in Numba: the penalty, lazily.

A step of SGD with the elastic net (l2, l1) moves every coefficient, coef <- coef - lr * (g +
l2 * coef), then soft-thresholds it by lr * l1 (fastdp.optim.Penalty.prox), however few columns
its rows touch: on hashed text (2**18 to 2**20 columns, a few thousand of them in a batch) the
passes over coef cost more than the batch's rows. Here a column whose gradient sum is zero only
decays and shrinks, and both are kept as two running numbers instead of being applied. Step t
multiplies an untouched |coef| by f_t = 1 - lr_t * l2, then takes lr_t * l1 off (down to 0):
with P_t the product of the factors so far and A_t the sum of lr_s * l1 / P_(s+1) over the steps
before t, |coef| / P falls by exactly A's increase (while it stays above 0, where it then stays).
So each column j keeps one number q_j, side by side with its mark and its gradient sum in one
row of `cols` (n, 3), so that a column costs one cache line whichever of them a pass reads:

    cols[j] = [q, mark, sum]:   true coef[j] = sign(q) * now * max(|q| - a, 0)

`now` and `a` are P and A at the present step; a column updated at step u to c holds q =
sign(c) * (|c| / P_u + A_u). Without L1, a stays 0 and q = c / P_u. mark is 1, or -1 on the
columns of the batch in progress; sum is the batch's gradient sum (zero between batches).
lazy_batch_sums computes the margins from the true coefficients and adds the gradient to the
sums, listing the columns it adds to; lazy_batch_step updates those columns with the dense
step's formulas and clears their sums (lazy_step: with the intercept, and a flush when the
product gets small); lazy_flush makes every q the true coefficient again (now = 1, a = 0),
lazy_load starts from given coefficients, and lazy_batches takes the steps of consecutive
batches in one call (no Python between them). One array instead of three made a batch of 256
rows 1.3x faster on 2**20 hashed columns (a column's three values cost one cache miss, not
three).

Serial kernels: a batch's work is small, and waking threads costs more (numba_finite.py).
"""

import numpy as np
from numba import njit

from .numba_dense import FASTMATH, pointwise
from .numba_mean import SUM_FASTMATH


@njit(inline="always", cache=True)
def true_coef(q, now, a):
    """The coefficient a column's q stands for at product `now` and threshold sum `a` (floats).
    Without L1 (a = 0: the test is the same for the whole loop that calls it) only a product."""
    return q * now if a == 0.0 else np.copysign(now * max(abs(q) - a, 0.0), q)


@njit(cache=True, fastmath=FASTMATH)
def lazy_batch_sums(loss, data, indices, indptr, rows, y, cols, intercept, now, a, touched):
    """Sums of the loss and its gradient over the CSR rows `rows`, read in place: those of
    numba_sparse.csr_block_sums over the rows gathered, at the true coefficients, up to rounding.

    loss:      int, loss code of a scalar-margin loss (losses.LOSS_CODES)
    data:      (nnz,) float32 or float64, the non-zero values
    indices:   (nnz,) int32 or int64 column indices in 0..n-1
    indptr:    (m + 1,) same dtype as indices; row i is data[indptr[i]:indptr[i + 1]]
    rows:      (b,) int64 in 0..m-1, distinct: the batch's rows, in the order summed
    y:         (m,) same dtype as data
    cols:      (n, 3) float64 C-contiguous, [q, mark = 1, sum = 0] per column (module
               docstring); OUT: sum <- the gradient sum, mark <- -1, on the columns listed
    intercept: float
    now, a:    float, the product of the steps' factors so far (> 0) and the threshold sum
    touched:   (> the listed columns,) int64, OUT: the columns with a row whose derivative is
               not zero (hinge losses: rows inside the margin), first; entry k, the columns
               listed so far, is written at every non-zero of such a row
    Returns (k, intercept's gradient sum, loss sum, total): k columns in touched[:k]; total, the
    sum of the k + 2 sums: NaN or +-inf when one of them is (numba_mean.mean_gradient's
    finiteness test).
    """
    k = 0
    d_sum = 0.0
    loss_sum = 0.0
    for i in rows:
        lo, hi = np.uintp(indptr[i]), np.uintp(indptr[i + 1])
        z = intercept
        for p in range(lo, hi):
            j = np.uintp(indices[p])
            z += data[p] * true_coef(cols[j, 0], now, a)
        loss_i, d = pointwise(loss, z, y[i])
        if d != 0.0:  # hinge losses: rows past the margin add nothing
            for p in range(lo, hi):
                j = np.uintp(indices[p])
                cols[j, 2] += d * data[p]
                touched[k] = j  # branch-free: a column's first time here is unpredictable
                k += cols[j, 1] > 0.0
                cols[j, 1] = -1.0
        d_sum += d
        loss_sum += loss_i
    total = d_sum + loss_sum
    for q in range(k):
        total += cols[np.uintp(touched[q]), 2]
    return k, d_sum, loss_sum, total


@njit(cache=True, fastmath=SUM_FASTMATH)
def lazy_batch_step(touched, k, cols, now, a, lr, l2, l1, count):
    """The step on the columns lazy_batch_sums listed, and the running numbers after it: for j
    in touched[:k], with c = the true coef[j] (module docstring),

        c <- c - lr * (sum / count + l2 * c);  c <- sign(c) * max(|c| - lr * l1, 0)
        q <- sign(c) * (|c| / now' + a');  mark <- 1;  sum <- 0

    where now' = now * (1 - lr * l2) and a' = a + lr * l1 / now' are the product and the
    threshold sum after the step, which it returns.

    touched:   (>= k,) int64, distinct columns in 0..n-1
    cols:      (n, 3) float64, IN/OUT (module docstring)
    now, a:    float, the product before this step (> 0) and the threshold sum
    lr:        float, the step's learning rate, with lr * l2 < 1
    l2, l1:    float >= 0, the penalty's L2 and L1 weights
    count:     float > 0, the batch's rows
    Returns (now', a').
    """
    after = now * (1.0 - lr * l2)
    cut = lr * l1
    a_after = a + cut / after
    inv_after = 1.0 / after
    for q in range(k):
        j = np.uintp(touched[q])
        c = true_coef(cols[j, 0], now, a)
        c = c - lr * (cols[j, 2] / count + l2 * c)
        c = np.copysign(max(abs(c) - cut, 0.0), c)
        cols[j, 0] = np.copysign(abs(c) * inv_after + a_after, c)
        cols[j, 1] = 1.0
        cols[j, 2] = 0.0
    return after, a_after


@njit(cache=True, fastmath=FASTMATH)
def lazy_flush(cols, now, a, coef):
    """Make every q the true coefficient: coef[j] <- that coefficient -> q (the caller's product
    starts again from 1, its threshold sum from 0).

    cols:   (n, 3) float64, IN/OUT
    now, a: float, the product (> 0) and the threshold sum
    coef:   (n,) float64, OUT
    """
    for j in range(cols.shape[0]):
        c = true_coef(cols[j, 0], now, a)
        coef[j] = c
        cols[j, 0] = c


@njit(cache=True)
def lazy_load(coef, cols):
    """cols[j] <- [coef[j], 1, 0]: the coefficients, up to date (product 1, threshold sum 0),
    unmarked, with no sums.

    coef: (n,) float64
    cols: (n, 3) float64, OUT
    """
    for j in range(coef.shape[0]):
        cols[j, 0] = coef[j]
        cols[j, 1] = 1.0
        cols[j, 2] = 0.0


@njit(cache=True, fastmath=FASTMATH)
def lazy_sum_squares(cols, now, a):
    """The sum of the squared true coefficients without moving them.

    cols:   (n, 3) float64
    now, a: float, the product (> 0) and the threshold sum
    """
    total = 0.0
    for j in range(cols.shape[0]):
        c = true_coef(cols[j, 0], now, a)
        total += c * c
    return total


@njit(cache=True)
def lazy_step(touched, k, cols, theta, fit_intercept, d_sum, count, now, a, lr, l2, l1, tiny):
    """A batch's whole step after lazy_batch_sums: its columns (lazy_batch_step), the intercept
    as the dense step moves it, and lazy_flush if the product falls below `tiny`. Returns the
    product and the threshold sum after the step (1 and 0 after a flush).

    touched, k, cols: as lazy_batch_step
    theta:         (n + 1,) float64, IN/OUT: its intercept theta[n] moved if fit_intercept; its
                   coefficients written by a flush only
    d_sum, count:  float, the intercept's gradient sum and the batch's rows (> 0)
    now, a:        float, the product before the step (> 0) and the threshold sum
    lr, l2, l1:    float, the rate and the penalty's weights (lr * l2 < 1)
    tiny:          float > 0, the product's floor
    """
    n = cols.shape[0]
    after, a_after = lazy_batch_step(touched, k, cols, now, a, lr, l2, l1, count)
    if fit_intercept:
        theta[n] -= lr * (d_sum / count)
    if after < tiny:
        lazy_flush(cols, after, a_after, theta[:n])
        return 1.0, 0.0
    return after, a_after


@njit(cache=True)
def lazy_batches(loss, data, indices, indptr, order, batch_size, y, cols, theta, fit_intercept,
                 rates, l2, l1, now, a, tiny, touched):
    """Lazy steps over consecutive batches in one call: batch b (0 <= b < len(rates)) is the rows
    order[b * batch_size:(b + 1) * batch_size], stepped at rate rates[b]; each as
    lazy_batch_sums then lazy_step. Stops before a batch whose sums are not all finite, leaving
    its columns as they were.

    loss, data, indices, indptr, y, touched: as lazy_batch_sums
    order:         (>= len(rates) * batch_size,) int64, the rows, batch after batch
    batch_size:    int >= 1
    cols:          (n, 3) float64, IN/OUT (module docstring)
    theta:         (n + 1,) float64, IN/OUT: its intercept theta[n] (read by the margins, moved
                   if fit_intercept); its coefficients written by a flush only
    rates:         (steps,) float64, the learning rates
    l2, l1:        float >= 0, the penalty's weights, with rates[b] * l2 < 1
    now, a:        float, the product before the first batch (> 0) and the threshold sum
    tiny:          float > 0, the product's floor
    Returns (batches stepped, the product and the threshold sum after them, the sum over them
    of loss sum / rows * rows: each batch's mean loss times its rows, as the training loop adds
    them).
    """
    n = cols.shape[0]
    weighted = 0.0
    for b in range(rates.shape[0]):
        rows = order[b * batch_size:(b + 1) * batch_size]
        k, d_sum, loss_sum, total = lazy_batch_sums(loss, data, indices, indptr, rows, y, cols,
                                                    theta[n], now, a, touched)
        if not np.isfinite(total):
            for q in range(k):
                j = touched[q]
                cols[j, 1] = 1.0
                cols[j, 2] = 0.0
            return b, now, a, weighted
        count = float(rows.shape[0])
        now, a = lazy_step(touched, k, cols, theta, fit_intercept, d_sum, count, now, a,
                           rates[b], l2, l1, tiny)
        weighted += loss_sum / count * count
    return rates.shape[0], now, a, weighted
