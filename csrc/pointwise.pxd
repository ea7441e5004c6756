# cython: language_level=3
"""Per-row losses shared by the Cython kernels (dense_loss.pyx, sparse_loss.pyx): inline C, no module.

The codes are fastdp.kernels.losses.LOSS_CODES; numba_dense.py holds the Numba twins (pointwise,
softmax_row).
"""

from libc.math cimport exp, fabs, log, log1p

cdef enum:
    SQUARED = 0
    LOGISTIC = 1
    HINGE = 2
    SQUARED_HINGE = 3


cdef inline double pointwise(int loss, double z, double y, double* dloss) noexcept nogil:
    """Loss of one row at margin z with target y (scalar-margin losses); writes dloss/dz to dloss[0].

    logistic: softplus(t) = max(t, 0) + log1p(exp(-|t|)) at t = -y z, and -y * sigmoid(t) with
    sigmoid formed from the same exp(-|t|), so no margin overflows.
    """
    cdef double t, e, slack
    if loss == SQUARED:
        t = z - y
        dloss[0] = t
        return 0.5 * t * t
    if loss == LOGISTIC:
        t = -y * z
        e = exp(-fabs(t))
        if t >= 0.0:
            dloss[0] = -y / (1.0 + e)
            return t + log1p(e)
        dloss[0] = -y * e / (1.0 + e)
        return log1p(e)
    slack = 1.0 - y * z
    if slack <= 0.0:
        dloss[0] = 0.0
        return 0.0
    if loss == HINGE:
        dloss[0] = -y
        return slack
    dloss[0] = -2.0 * y * slack
    return slack * slack


cdef inline double softmax_row(Py_ssize_t K, double* z, Py_ssize_t label) noexcept nogil:
    """Cross-entropy of one row: z (K,) margins, IN/OUT <- dloss/dz = softmax(z) - onehot(label).

    Returns logsumexp(z) - z[label], with the maximum margin subtracted before exp (stable).
    """
    cdef Py_ssize_t k
    cdef double zmax = z[0], loss, s = 0.0, inv
    for k in range(1, K):
        if z[k] > zmax:
            zmax = z[k]
    loss = zmax - z[label]
    for k in range(K):
        z[k] = exp(z[k] - zmax)
        s += z[k]
    inv = 1.0 / s
    for k in range(K):
        z[k] *= inv
    z[label] -= 1.0
    return loss + log(s)
