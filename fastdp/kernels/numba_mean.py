"""A step's mean gradient from its reduced sums, in Numba: one pass over the parameters.

After the Allreduce every rank holds the sums over all ranks' rows; the step needs their mean plus
the L2 penalty's gradient, and the non-finite guard needs to know whether any sum is NaN or inf.
NumPy did that in four passes over the p values (divide, zero the unfitted intercepts, axpy of the
penalty, sum for the guard); mean_gradient reads each array once.

One thread, on purpose. A prange version (chunks of 2**14 on two threads) made epochs of
mini-batch SGD on 2e5 x 2**20 hashed text 1.15-1.33x faster in its good rounds, but on this
project's 2-vCPU VM about half of its rounds ran 2.5x slower (3.2-4.3 s against 1.3-1.7 s: the
pass then waited on the second vCPU at every step), while this loop gave 1.28-1.31x in every
round (interleaved A/Bs against the NumPy passes; figures in the commit that added this file).

Each grad[j] is a true division (no reciprocal), so grad is what np.divide gives. The returned
total is only a finiteness test: it may be summed in any order (so that it vectorizes), and it is
NaN or +-inf whenever a sum is, and finite otherwise unless adding the sums overflows (the caller
then looks at each sum).
"""

from numba import njit

# The finiteness total may be reassociated, so that it vectorizes; 'arcp' is left out, so the
# division stays a division.
SUM_FASTMATH = {"reassoc", "contract", "nsz"}


@njit(cache=True, fastmath=SUM_FASTMATH)
def mean_gradient(sums, count, theta, l2, n_coef, n_free, grad):
    """grad <- the mean gradient plus the L2 penalty's; returns the sum of all p + 1 sums.

    sums:   (p + 1,) float64, the reduced [gradient sums (p), loss sum]
    count:  float > 0, the number of rows summed
    theta:  (p,) float64, the parameters ([coef (n_coef), intercepts])
    l2:     float, the L2 penalty's weight: grad[j] = sums[j] / count + l2 * theta[j] for
            j < n_coef
    n_coef: int, 0 <= n_coef <= p
    n_free: int, n_coef <= n_free <= p: grad[j] = sums[j] / count for n_coef <= j < n_free,
            and 0 from n_free on (intercepts that are not fitted)
    grad:   (p,) float64, OUT
    """
    p = grad.shape[0]
    total = sums[p]
    for j in range(n_coef):
        total += sums[j]
        grad[j] = sums[j] / count + l2 * theta[j]
    for j in range(n_coef, n_free):
        total += sums[j]
        grad[j] = sums[j] / count
    for j in range(n_free, p):
        total += sums[j]
        grad[j] = 0.0
    return total
