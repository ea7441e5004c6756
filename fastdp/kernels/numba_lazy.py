"""Mini-batch SGD steps over CSR rows in O(the batch's non-zeros), in Numba: the L2 decay, lazily.

A step of SGD with the L2 penalty l2 moves every coefficient, coef <- coef - lr * (g + l2 * coef),
however few columns its rows touch: on hashed text (2**18 to 2**20 columns, a few thousand of them
in a batch) the passes over coef cost more than the batch's rows. Here a column whose gradient
sum is zero only decays, by the factor f = 1 - lr * l2 of each step, and that decay is kept as a
product instead of being applied. Each column j has three values, side by side in one row of
`cols` (n, 3), so that a column costs one cache line whichever of them a pass reads:

    cols[j] = [stored, inv, sum]:   true coef[j] = stored * now * |inv|

`now` is the product of the factors of all steps so far, inv the reciprocal of that product when
the column was last updated (its sign marks the columns of the batch in progress), sum the
batch's gradient sum (zero between batches). lazy_batch_sums computes the margins from the true
coefficients and adds the gradient to the sums, listing the columns it adds to;
lazy_batch_step updates those columns with the dense step's formula and clears their sums
(lazy_step: with the intercept, and a flush when the product gets small); lazy_flush makes every
stored value true again, lazy_load starts from given coefficients, and lazy_batches takes the
steps of consecutive batches in one call (no Python between them). One
array instead of three made a batch of 256 rows 1.3x faster on 2**20 hashed columns (a column's
three values cost one cache miss, not three).

Serial kernels: a batch's work is small, and waking threads costs more (numba_finite.py).
"""

import numpy as np
from numba import njit

from .numba_dense import FASTMATH, pointwise
from .numba_mean import SUM_FASTMATH


@njit(cache=True, fastmath=FASTMATH)
def lazy_batch_sums(loss, data, indices, indptr, rows, y, cols, intercept, now, touched):
    """Sums of the loss and its gradient over the CSR rows `rows`, read in place: those of
    numba_sparse.csr_block_sums over the rows gathered, at the true coefficients, up to rounding.

    loss:      int, loss code of a scalar-margin loss (losses.LOSS_CODES)
    data:      (nnz,) float32 or float64, the non-zero values
    indices:   (nnz,) int32 or int64 column indices in 0..n-1
    indptr:    (m + 1,) same dtype as indices; row i is data[indptr[i]:indptr[i + 1]]
    rows:      (b,) int64 in 0..m-1, distinct: the batch's rows, in the order summed
    y:         (m,) same dtype as data
    cols:      (n, 3) float64 C-contiguous, [stored, inv > 0, sum = 0] per column (module
               docstring); OUT: sum <- the gradient sum, inv <- -inv, on the columns listed
    intercept: float
    now:       float > 0, the product of the steps' factors so far
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
            z += data[p] * (cols[j, 0] * (now * abs(cols[j, 1])))
        loss_i, d = pointwise(loss, z, y[i])
        if d != 0.0:  # hinge losses: rows past the margin add nothing
            for p in range(lo, hi):
                j = np.uintp(indices[p])
                cols[j, 2] += d * data[p]
                inv = cols[j, 1]
                touched[k] = j  # branch-free: a column's first time here is unpredictable
                k += inv > 0.0
                cols[j, 1] = -abs(inv)
        d_sum += d
        loss_sum += loss_i
    total = d_sum + loss_sum
    for q in range(k):
        total += cols[np.uintp(touched[q]), 2]
    return k, d_sum, loss_sum, total


@njit(cache=True, fastmath=SUM_FASTMATH)
def lazy_batch_step(touched, k, cols, now, inv_after, lr, l2, count):
    """The step on the columns lazy_batch_sums listed: for j in touched[:k], with c = the true
    coef[j] = stored * now * |inv|,

        stored <- c - lr * (sum / count + l2 * c);  inv <- inv_after;  sum <- 0

    touched:   (>= k,) int64, distinct columns in 0..n-1
    cols:      (n, 3) float64, IN/OUT (module docstring)
    now:       float > 0, the product of the factors before this step
    inv_after: float, 1 / (now * (1 - lr * l2)), the reciprocal of the product after it
    lr, l2:    float, the step's learning rate and the L2 penalty's weight
    count:     float > 0, the batch's rows
    """
    for q in range(k):
        j = np.uintp(touched[q])
        c = cols[j, 0] * (now * abs(cols[j, 1]))
        cols[j, 0] = c - lr * (cols[j, 2] / count + l2 * c)
        cols[j, 1] = inv_after
        cols[j, 2] = 0.0


@njit(cache=True, fastmath=FASTMATH)
def lazy_flush(cols, now, coef):
    """Make every stored value true: coef[j] <- stored * now * |inv| -> stored, inv <- 1 (the
    caller's product starts again from 1).

    cols: (n, 3) float64, IN/OUT
    now:  float > 0
    coef: (n,) float64, OUT
    """
    for j in range(cols.shape[0]):
        c = cols[j, 0] * (now * abs(cols[j, 1]))
        coef[j] = c
        cols[j, 0] = c
        cols[j, 1] = 1.0


@njit(cache=True)
def lazy_load(coef, cols):
    """cols[j] <- [coef[j], 1, 0]: the coefficients, up to date, with no sums.

    coef: (n,) float64
    cols: (n, 3) float64, OUT
    """
    for j in range(coef.shape[0]):
        cols[j, 0] = coef[j]
        cols[j, 1] = 1.0
        cols[j, 2] = 0.0


@njit(cache=True, fastmath=FASTMATH)
def lazy_sum_squares(cols, now):
    """The sum of the squared true coefficients, sum over j of (stored * now * |inv|)**2, without
    moving them (a batch in progress may have marked some).

    cols: (n, 3) float64
    now:  float > 0
    """
    total = 0.0
    for j in range(cols.shape[0]):
        c = cols[j, 0] * (now * abs(cols[j, 1]))
        total += c * c
    return total


@njit(cache=True)
def lazy_step(touched, k, cols, theta, fit_intercept, d_sum, count, now, lr, l2, tiny):
    """A batch's whole step after lazy_batch_sums: its columns (lazy_batch_step), the intercept
    as the dense step moves it, and lazy_flush if the product falls below `tiny`. Returns the
    product after the step (1 after a flush).

    touched, k, cols: as lazy_batch_step
    theta:         (n + 1,) float64, IN/OUT: its intercept theta[n] moved if fit_intercept; its
                   coefficients written by a flush only
    d_sum, count:  float, the intercept's gradient sum and the batch's rows (> 0)
    now, lr, l2:   float, the product before the step, the rate, the L2 weight (lr * l2 < 1)
    tiny:          float > 0, the product's floor
    """
    n = cols.shape[0]
    after = now * (1.0 - lr * l2)
    lazy_batch_step(touched, k, cols, now, 1.0 / after, lr, l2, count)
    if fit_intercept:
        theta[n] -= lr * (d_sum / count)
    if after < tiny:
        lazy_flush(cols, after, theta[:n])
        return 1.0
    return after


@njit(cache=True)
def lazy_batches(loss, data, indices, indptr, order, batch_size, y, cols, theta, fit_intercept,
                 rates, l2, now, tiny, touched):
    """Lazy steps over consecutive batches in one call: batch b (0 <= b < len(rates)) is the rows
    order[b * batch_size:(b + 1) * batch_size], stepped at rate rates[b]; each as
    lazy_batch_sums then lazy_batch_step, the intercept as the dense step moves it, and
    lazy_flush whenever the product falls below `tiny`. Stops before a batch whose sums are not
    all finite, leaving its columns as they were.

    loss, data, indices, indptr, y, touched: as lazy_batch_sums
    order:         (>= len(rates) * batch_size,) int64, the rows, batch after batch
    batch_size:    int >= 1
    cols:          (n, 3) float64, IN/OUT (module docstring)
    theta:         (n + 1,) float64, IN/OUT: its intercept theta[n] (read by the margins, moved
                   if fit_intercept); its coefficients written by a flush only
    rates:         (steps,) float64, the learning rates
    l2:            float, the L2 penalty's weight, with rates[b] * l2 < 1
    now, tiny:     float > 0, the product before the first batch, and its floor
    Returns (batches stepped, the product after them, the sum over them of loss sum / rows *
    rows: each batch's mean loss times its rows, as the training loop adds them).
    """
    n = cols.shape[0]
    weighted = 0.0
    for b in range(rates.shape[0]):
        rows = order[b * batch_size:(b + 1) * batch_size]
        k, d_sum, loss_sum, total = lazy_batch_sums(loss, data, indices, indptr, rows, y, cols,
                                                    theta[n], now, touched)
        if not np.isfinite(total):
            for q in range(k):
                j = touched[q]
                cols[j, 1] = abs(cols[j, 1])
                cols[j, 2] = 0.0
            return b, now, weighted
        count = float(rows.shape[0])
        now = lazy_step(touched, k, cols, theta, fit_intercept, d_sum, count, now, rates[b], l2,
                        tiny)
        weighted += loss_sum / count * count
    return rates.shape[0], now, weighted
