# cython: language_level=3
"""Per-row losses shared by the Cython kernels (dense_loss.pyx, sparse_loss.pyx): inline C, no module.

The codes are fastdp.kernels.losses.LOSS_CODES; numba_dense.py holds the Numba twins (exp_neg,
log1p_unit, pointwise, pointwise_rows, softmax_row), with the same formulas. softmax_rows, many
rows of softmax_row at once, has no twin (Numba's dense softmax goes a row at a time).

exp_neg and log1p_unit are branch-free arithmetic (no libm call), so a loop over rows of
pointwise_rows vectorizes: the logistic loss of a row costs a few vector instructions instead of
two scalar libm calls and an unpredictable branch.
"""

cimport cython
from cython cimport floating
from libc.math cimport floor, fma, log
from libc.stdint cimport int64_t

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* The double whose IEEE bits are `bits` (a bit cast: compilers vectorize it). */
    static inline double fastdp_bits_as_double(int64_t bits) {
        double r;
        memcpy(&r, &bits, sizeof r);
        return r;
    }
    #define FASTDP_LOG2E 1.4426950408889634
    #define FASTDP_LN2_HI 0.6931471803691238   /* ln 2 = LN2_HI + LN2_LO, LN2_HI with 32 trailing zero bits */
    #define FASTDP_LN2_LO 1.9082149292705877e-10
    #define FASTDP_EXP_CLAMP 750.0  /* exp_neg(a) = exp_neg(min(a, EXP_CLAMP)): exp(-750) underflows to 0 */
    /* x, with -fassociative-math forbidden to regroup its computation with the expressions around
       it: GCC's __builtin_assoc_barrier (GCC 12), else an empty asm statement that makes x's value
       opaque (older GCC, clang), else a volatile round trip. */
    static inline double fastdp_fence(double x) {
    #if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
        return __builtin_assoc_barrier(x);
    #elif defined(__GNUC__) || defined(__clang__)
        __asm__("" : "+m"(x));
        return x;
    #else
        volatile double v = x;
        return v;
    #endif
    }
    """
    double fastdp_fence(double x) noexcept nogil
    double fastdp_bits_as_double(int64_t bits) noexcept nogil
    const double LOG2E "FASTDP_LOG2E"
    const double LN2_HI "FASTDP_LN2_HI"
    const double LN2_LO "FASTDP_LN2_LO"
    const double EXP_CLAMP "FASTDP_EXP_CLAMP"

cdef enum:
    SQUARED = 0
    LOGISTIC = 1
    HINGE = 2
    SQUARED_HINGE = 3


@cython.cdivision(True)
cdef inline double exp_neg(double a) noexcept nogil:
    """exp(-a) for a >= 0 (NaN for NaN), within 1 ulp of exp (subnormal results included).

    -a = -k ln2 + r with |r| <= ln2/2, exp(r) by a polynomial of degree 11 (relative error
    < 2e-17, EXP_POLY in fastdp/kernels/numba_dense.py says how it was fitted), times 2**-k as
    two factors formed from their IEEE bits (2**-k alone is subnormal beyond 1022).
    """
    cdef double ac = EXP_CLAMP if a > EXP_CLAMP else a  # NaN stays NaN
    cdef double k = floor(ac * LOG2E + 0.5)  # 0 .. 1083
    cdef double r = fma(k, LN2_LO, fma(k, LN2_HI, -ac))  # fma: -fassociative-math cannot merge the parts
    cdef double p = 2.5110037605963777e-08
    cdef int64_t k0, k1
    p = p * r + 2.763263963904103e-07
    p = p * r + 2.755724091857897e-06
    p = p * r + 2.4801485482328494e-05
    p = p * r + 0.00019841269890047113
    p = p * r + 0.0013888888952314775
    p = p * r + 0.008333333333319601
    p = p * r + 0.0416666666664881
    p = p * r + 0.1666666666666668
    p = p * r + 0.5000000000000019
    p = p * r + 1.0
    p = p * r + 1.0
    k0 = <int64_t> (k if k <= 1083.0 else 1083.0)  # NaN: any valid exponent (p is NaN)
    k1 = k0 >> 1
    return p * fastdp_bits_as_double((1023 - k1) << 52) * fastdp_bits_as_double((1023 - (k0 - k1)) << 52)


@cython.cdivision(True)
cdef inline double log1p_unit(double e) noexcept nogil:
    """log1p(e) for 0 <= e <= 1, within 3 ulp of log1p: 2 atanh(s) with s = e / (2 + e) <= 1/3,
    as 2 s P(s**2) with P of degree 10 (relative error < 3e-18, ATANH_POLY in
    fastdp/kernels/numba_dense.py)."""
    cdef double s = e / (2.0 + e)
    cdef double s2 = s * s
    cdef double p = 0.08522081781390699
    p = p * s2 + 0.0416225325593041
    p = p * s2 + 0.06055084364034609
    p = p * s2 + 0.06650187016337313
    p = p * s2 + 0.07693307021152004
    p = p * s2 + 0.09090870416252403
    p = p * s2 + 0.11111112040373837
    p = p * s2 + 0.14285714272727057
    p = p * s2 + 0.20000000000092874
    p = p * s2 + 0.33333333333333076
    p = p * s2 + 1.0
    return 2.0 * s * p


@cython.cdivision(True)
cdef inline double pointwise(int loss, double z, double y, double* dloss) noexcept nogil:
    """Loss of one row at margin z with target y (scalar-margin losses); writes dloss/dz to dloss[0].

    logistic: softplus(t) = max(t, 0) + log1p(exp(-|t|)) at t = -y z, and -y * sigmoid(t) with
    sigmoid formed from the same exp(-|t|), so no margin overflows. Branch-free (selects only), so
    a loop over rows vectorizes; NaN margins give NaN.
    """
    cdef double t, e, h
    if loss == SQUARED:
        t = z - y
        dloss[0] = t
        return 0.5 * t * t
    if loss == LOGISTIC:
        t = -y * z
        e = exp_neg(-t if t < 0.0 else t)
        dloss[0] = -y * (1.0 if t >= 0.0 else e) / (1.0 + e)
        return (t if t > 0.0 else 0.0) + log1p_unit(e)
    t = 1.0 - y * z  # the slack
    h = 0.0 if t <= 0.0 else t  # NaN stays NaN
    if loss == HINGE:
        dloss[0] = 0.0 if t <= 0.0 else -y
        return h
    dloss[0] = -2.0 * y * h
    return h * h


cdef inline void _rows_of(int loss, const double* z, const floating* y, Py_ssize_t count,
                          double* d, double* sums) noexcept nogil:
    """pointwise_rows for one loss; inlined with loss a constant, the loop is branch-free."""
    cdef Py_ssize_t k
    cdef double total = 0.0, dsum = 0.0, dk
    for k in range(count):
        total += pointwise(loss, z[k], y[k], &dk)
        d[k] = dk
        dsum += dk
    sums[0] = dsum
    sums[1] = total


cdef inline void pointwise_rows(int loss, const double* z, const floating* y, Py_ssize_t count,
                                double* d, double* sums) noexcept nogil:
    """count rows: margins z, targets y (float32 or float64); d (count,), OUT: d[k] <- dloss/dz
    of row k; sums (2,), OUT <- [sum of d, sum of the losses]. The loss is picked once, outside
    the loop: each branch inlines _rows_of with a constant loss, so its loop is branch-free and
    vectorizes."""
    if loss == SQUARED:
        _rows_of(SQUARED, z, y, count, d, sums)
    elif loss == LOGISTIC:
        _rows_of(LOGISTIC, z, y, count, d, sums)
    elif loss == HINGE:
        _rows_of(HINGE, z, y, count, d, sums)
    else:
        _rows_of(SQUARED_HINGE, z, y, count, d, sums)


@cython.cdivision(True)
cdef inline double softmax_row(Py_ssize_t K, double* z, Py_ssize_t label) noexcept nogil:
    """Cross-entropy of one row: z (K,) margins, IN/OUT <- dloss/dz = softmax(z) - onehot(label).

    Returns logsumexp(z) - z[label], with the maximum margin subtracted before exp (stable; exp
    is exp_neg, so the loop over the classes vectorizes: libm's exp was a call per class). The
    margins and zmax - z[label] go through fastdp_fence: under -fassociative-math the compiler
    regrouped that difference with the sums that formed the margins and with the running loss
    sum, and a row whose margins were near 2**60 lost its loss (tests/test_fuzz_kernels.py).
    """
    cdef Py_ssize_t k
    cdef double zmax, loss, s = 0.0, inv
    for k in range(K):
        z[k] = fastdp_fence(z[k])
    zmax = z[0]
    for k in range(1, K):
        if z[k] > zmax:
            zmax = z[k]
    loss = fastdp_fence(zmax - z[label])
    for k in range(K):
        z[k] = exp_neg(zmax - z[k])
        s += z[k]
    inv = 1.0 / s
    for k in range(K):
        z[k] *= inv
    z[label] -= 1.0
    return loss + log(s)


@cython.cdivision(True)
cdef inline double softmax_rows(Py_ssize_t K, double* z, Py_ssize_t stride, Py_ssize_t count,
                                const Py_ssize_t* labels, floating* d, double* scratch,
                                double* dsum) noexcept nogil:
    """softmax_row of count rows at once, class-major, so that every loop runs over the rows
    and vectorizes (exp_neg on a vector of rows, not on one row's K classes).

    z:       (K, stride) float64, column r < count: row r's margins; clobbered
    labels:  (count,) class labels in 0..K-1
    d:       (K, stride) float32 or float64, OUT: column r <- softmax(z_r) - onehot(labels[r])
    scratch: (3, stride) float64
    dsum:    (K,) float64, IN/OUT: dsum[k] += the sum over the rows of d[k]
    Returns the sum over the rows of logsumexp(z_r) - z_r[labels[r]], each row's loss formed as
    softmax_row forms it (the same maximum, fences, NaN propagation and libm log).
    """
    cdef Py_ssize_t k, r
    cdef double v, e, part, loss = 0.0
    cdef double* zk
    cdef floating* dk
    cdef double* zmax = scratch
    cdef double* total = scratch + stride
    cdef double* own = scratch + 2 * stride  # zmax - z[label]
    for r in range(count):
        zmax[r] = fastdp_fence(z[r])
    for k in range(1, K):
        zk = z + k * stride
        for r in range(count):
            v = fastdp_fence(zk[r])
            zmax[r] = v if v > zmax[r] else zmax[r]
    for r in range(count):
        own[r] = fastdp_fence(zmax[r] - fastdp_fence(z[labels[r] * stride + r]))
        total[r] = 0.0
    for k in range(K):
        zk = z + k * stride
        for r in range(count):
            e = exp_neg(zmax[r] - zk[r])
            zk[r] = e
            total[r] += e
    for r in range(count):
        loss += own[r] + log(total[r])
        total[r] = 1.0 / total[r]
    for k in range(K):
        zk = z + k * stride
        for r in range(count):
            zk[r] *= total[r]
    for r in range(count):
        z[labels[r] * stride + r] -= 1.0
    for k in range(K):
        zk = z + k * stride
        dk = d + k * stride
        part = 0.0
        for r in range(count):
            dk[r] = <floating> zk[r]
            part += zk[r]
        dsum[k] += part
    return loss
