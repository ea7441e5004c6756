"""SGD steps over dense rows, many batches in one call, in Numba: no Python between steps.

A step of mini-batch SGD on a few dense rows is a few microseconds of arithmetic (32 rows of 32
features: 2,048 multiply-adds and 33 updates), while the training loop's Python around it (the
kernel call, the mean gradient, the update, the guard) took about 9 us. dense_batches takes the
steps of consecutive batches in one call: each batch's sums (dense_batch_sums, its rows read
where they are, one row at a time: the caller gathers them first), then the mean gradient with the L2 penalty's part and its finiteness
total (numba_mean.mean_gradient, the training loop's own), then the update theta -= lr * grad.

Serial: the batches this is for are too small for threads to pay (numba_finite.py).
"""

import numpy as np
from numba import njit

from .numba_dense import FASTMATH, pointwise
from .numba_mean import mean_gradient


@njit(cache=True, fastmath=FASTMATH)
def dense_batch_sums(loss, X, y, rows, coef, intercept, sums):
    """Sums of the loss and its gradient over the dense rows `rows` of X, read in place: those of
    numba_dense.dense_block_sums over the rows gathered, up to rounding.

    loss:      int, loss code of a scalar-margin loss (losses.LOSS_CODES)
    X:         (m, n) C-contiguous float32 or float64
    y:         (m,) same dtype as X
    rows:      (b,) int64 in 0..m-1: the batch's rows, in the order summed
    coef:      (n,) float64
    intercept: float
    sums:      (n + 2,) float64, OUT: [grad_coef (n), grad_intercept, loss]
    """
    n = X.shape[1]
    sums[:] = 0.0
    for i in rows:
        x = X[i]
        z = intercept
        for j in range(n):
            z += x[j] * coef[j]
        loss_i, d = pointwise(loss, z, y[i])
        if d != 0.0:  # hinge losses: rows past the margin add nothing
            for j in range(n):
                sums[j] += d * x[j]
        sums[n] += d
        sums[n + 1] += loss_i


@njit(cache=True)
def dense_batches(loss, X, y, order, batch_size, theta, sums, grad, fit_intercept, rates, l2,
                  l1, momentum, nesterov, velocity, weighted):
    """SGD steps over consecutive batches in one call: batch b (0 <= b < len(rates)) is the rows
    order[b * batch_size:(b + 1) * batch_size] of X, stepped at rate lr = rates[b] as
    fastdp.optim.SGD and Penalty.prox step:

        grad = sums / rows + l2 * coef (intercept: sums / rows, or 0 if not fitted)
        theta -= lr * grad                                        (momentum 0)
        v = momentum * v + grad;  theta -= lr * (grad + momentum * v if nesterov else v)
        coef = sign(coef) * max(|coef| - lr * l1, 0)             (l1 > 0)

    Stops before a batch whose sums are not all finite, leaving theta and v as they were.

    loss, X, y:    as dense_batch_sums
    order:         (>= len(rates) * batch_size,) int64, the rows, batch after batch
    batch_size:    int >= 1
    theta:         (n + 1,) float64, IN/OUT: [coef (n), intercept]
    sums, grad:    (n + 2,) and (n + 1,) float64, scratch
    fit_intercept: bool
    rates:         (steps,) float64, the learning rates
    l2, l1:        float, the penalty's L2 and L1 weights
    momentum:      float in [0, 1); nesterov: bool
    velocity:      (n + 1,) float64, IN/OUT: v (untouched, of any size, when momentum is 0)
    weighted:      float, what the batches' losses are added to (a previous call's result)
    Returns (batches stepped, weighted + the sum over them of loss sum / rows * rows: each
    batch's mean loss times its rows, added one after another as the training loop adds them).
    """
    n = X.shape[1]
    for b in range(rates.shape[0]):
        rows = order[b * batch_size:(b + 1) * batch_size]
        dense_batch_sums(loss, X, y, rows, theta[:n], theta[n], sums)
        count = float(rows.shape[0])
        total = mean_gradient(sums, count, theta, l2, n, n + 1 if fit_intercept else n, grad)
        if not np.isfinite(total):
            return b, weighted
        lr = rates[b]
        if momentum == 0.0:
            for j in range(n + 1):
                theta[j] -= lr * grad[j]
        else:
            for j in range(n + 1):
                v = velocity[j] * momentum + grad[j]
                velocity[j] = v
                theta[j] -= lr * (grad[j] + momentum * v if nesterov else v)
        if l1 > 0.0:
            cut = lr * l1
            for j in range(n):
                theta[j] = np.copysign(max(abs(theta[j]) - cut, 0.0), theta[j])
        weighted += sums[n + 1] / count * count
    return rates.shape[0], weighted
