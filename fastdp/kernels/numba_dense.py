"""Fused loss-and-gradient sums over a dense shard, in Numba (prange over fixed row blocks).

The twin of csrc/dense_loss.pyx, with the same plan: block b of `block_rows` rows writes only
out[b, :], so no accumulator is shared between threads (Numba races silently on `a[j] += ...` from
several threads); the caller sums blocks in block order, which makes the result independent of the
thread count. Each row is read from memory once.

Two kernels, one per loss family:
- dense_block_sums: the scalar-margin losses (squared, logistic, hinge, squared_hinge), the
  per-row loss picked by an integer code. A block goes a group of rows at a time (group_rows:
  16 float64 or 32 float32 rows of 32 features), in three steps:
  the group's margins (four rows at a time: four independent dot products), the per-row losses
  and derivatives over the group's margins (pointwise_rows: one plain loop of branch-free
  arithmetic that LLVM vectorizes, exp and log1p included), then the gradient (four rows at a
  time, re-read from L1). The rows 1 KiB ahead are prefetched into L2 while the margins are
  formed, so memory keeps streaming while the group's arithmetic runs. Margins, losses and derivatives
  are float64 (float32 X is widened in the dot products: float32 margins would be too coarse for
  the loss differences that finite-difference checks and line searches take); the group's
  gradient is summed in X's dtype (float32: MAX_GROUP_ROWS rows at most) and added to the block's
  float64 sums after each group. A group's rows depend on a row's bytes, by the rule of
  csrc/dense_loss.pyx (its group_rows, which tests check against this module's).
- dense_softmax_block_sums: softmax cross-entropy over K classes; a row's K margins are K dot
  products with the rows of coef.T, then the K derivatives d, then grad.T[k] += d_k * x (the
  inner loops run over the features, see the kernel).
The dot products may be reassociated (fastmath 'reassoc') so LLVM vectorizes them; NaN/inf
semantics are kept (inputs are validated before they get here). pointwise and softmax_row are
shared with the CSR kernels (numba_sparse.py).
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

SQUARED, LOGISTIC, HINGE, SQUARED_HINGE = 0, 1, 2, 3  # losses.LOSS_CODES
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
# the rows of a group of dense_block_sums (group_rows), as in csrc/dense_loss.pyx
NARROW_ROW_BYTES = 256  # rows up to this size go about NARROW_GROUP_BYTES a group
NARROW_GROUP_BYTES = 4096
WIDE_GROUP_BYTES = 32768  # about the bytes of a group of wider rows
MIN_GROUP_ROWS = 16
MAX_GROUP_ROWS = 64
GROUP_ROW_MULTIPLE = 8  # whole vectors in pointwise_rows
PREFETCH_BYTES = 1024  # how far ahead of the margins dense_block_sums prefetches X into L2

LOG2E = 1.4426950408889634
LN2_HI = 0.6931471803691238  # ln 2 = LN2_HI + LN2_LO, LN2_HI with 32 trailing zero bits
LN2_LO = 1.9082149292705877e-10
EXP_CLAMP = 750.0  # exp_neg(a) = exp_neg(min(a, EXP_CLAMP)): exp(-750) underflows to 0
# Polynomial coefficients, highest degree first, of exp(r) on |r| <= ln2/2 (degree 11) and of
# P(w) = atanh(sqrt(w)) / sqrt(w) on 0 <= w <= 1/9 (degree 10): near-minimax fits,
# mpmath.chebyfit(f, interval, degree + 1) at 40 digits, rounded to float64. Their relative errors
# on the interval are 1.7e-17 and 2.4e-18 (the Taylor series cost degree 13 and 17 for the same).
# csrc/pointwise.pxd carries the same numbers.
EXP_POLY = (
    2.5110037605963777e-08, 2.763263963904103e-07, 2.755724091857897e-06, 2.4801485482328494e-05,
    0.00019841269890047113, 0.0013888888952314775, 0.008333333333319601, 0.0416666666664881,
    0.1666666666666668, 0.5000000000000019, 1.0, 1.0,
)
ATANH_POLY = (
    0.08522081781390699, 0.0416225325593041, 0.06055084364034609, 0.06650187016337313,
    0.07693307021152004, 0.09090870416252403, 0.11111112040373837, 0.14285714272727057,
    0.20000000000092874, 0.33333333333333076, 1.0,
)


@intrinsic
def _int_bits_as_float(typingctx, bits):
    """The float64 whose IEEE bits are the int64 `bits` (a bit cast, no conversion)."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _fence(typingctx, x):
    """x, through llvm.arithmetic.fence: fast-math reassociation cannot regroup the computation of
    x with the expressions around it (the float64 twin of GCC's __builtin_assoc_barrier)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.DoubleType(), [ir.DoubleType()])
        fn = builder.module.declare_intrinsic("llvm.arithmetic.fence", [ir.DoubleType()], fnty)
        return builder.call(fn, [args[0]])

    return types.float64(types.float64), codegen


@intrinsic
def _prefetch(typingctx, arr, index):
    """Hint the CPU to bring arr's flat element `index` into L2 (llvm.prefetch, read, locality 2:
    prefetcht1 on x86; L1 was slower, see csrc/prefetch.h). Never faults and changes nothing, also
    at an index past the array's end."""
    if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
        address = builder.bitcast(builder.gep(data, [index]), i8p)
        builder.call(fn, [address, i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, index), codegen


@njit(inline="always", cache=True)
def exp_neg(a: float) -> float:
    """exp(-a) for a >= 0 (NaN for NaN), within 1 ulp of math.exp (subnormal results included).

    Branch-free arithmetic, so a loop of it vectorizes: -a = -k ln2 + r with |r| <= ln2/2, exp(r)
    by the polynomial EXP_POLY, times 2**-k as two factors formed from their IEEE bits (2**-k
    alone is subnormal beyond k = 1022).
    """
    ac = EXP_CLAMP if a > EXP_CLAMP else a  # NaN stays NaN
    k = np.floor(ac * LOG2E + 0.5)  # 0 .. 1083
    r = (k * LN2_HI - ac) + k * LN2_LO
    p = EXP_POLY[0]
    p = p * r + EXP_POLY[1]
    p = p * r + EXP_POLY[2]
    p = p * r + EXP_POLY[3]
    p = p * r + EXP_POLY[4]
    p = p * r + EXP_POLY[5]
    p = p * r + EXP_POLY[6]
    p = p * r + EXP_POLY[7]
    p = p * r + EXP_POLY[8]
    p = p * r + EXP_POLY[9]
    p = p * r + EXP_POLY[10]
    p = p * r + EXP_POLY[11]
    k = k if k <= 1083.0 else 1083.0  # NaN: any valid exponent (p is NaN), never an invalid cast
    k0 = np.int64(k)
    k1 = k0 >> 1
    return p * _int_bits_as_float((1023 - k1) << 52) * _int_bits_as_float((1023 - (k0 - k1)) << 52)


@njit(inline="always", cache=True)
def log1p_unit(e: float) -> float:
    """log1p(e) for 0 <= e <= 1, within 2 ulp of math.log1p; branch-free (vectorizes).

    log1p(e) = 2 atanh(s) with s = e / (2 + e) <= 1/3, as 2 s P(s**2), P the polynomial ATANH_POLY.
    """
    s = e / (2.0 + e)
    s2 = s * s
    p = ATANH_POLY[0]
    p = p * s2 + ATANH_POLY[1]
    p = p * s2 + ATANH_POLY[2]
    p = p * s2 + ATANH_POLY[3]
    p = p * s2 + ATANH_POLY[4]
    p = p * s2 + ATANH_POLY[5]
    p = p * s2 + ATANH_POLY[6]
    p = p * s2 + ATANH_POLY[7]
    p = p * s2 + ATANH_POLY[8]
    p = p * s2 + ATANH_POLY[9]
    p = p * s2 + ATANH_POLY[10]
    return 2.0 * s * p


@njit(inline="always", cache=True)
def pointwise(loss: int, z: float, y: float) -> tuple[float, float]:
    """(loss, dloss/dz) of one row at margin z with target y; codes as in losses.LOSS_CODES.

    logistic: softplus(t) = max(t, 0) + log1p(exp(-|t|)) at t = -y z, and -y * sigmoid(t) with
    sigmoid formed from the same exp(-|t|), so no margin overflows. Branch-free (selects only),
    so a loop over rows vectorizes.
    """
    if loss == SQUARED:
        r = z - y
        return 0.5 * r * r, r
    if loss == LOGISTIC:
        t = -y * z
        e = exp_neg(abs(t))
        num = 1.0 if t >= 0.0 else e
        return max(t, 0.0) + log1p_unit(e), -y * num / (1.0 + e)
    slack = 1.0 - y * z
    h = 0.0 if slack <= 0.0 else slack  # NaN stays NaN
    if loss == HINGE:
        return h, 0.0 if slack <= 0.0 else -y
    return h * h, -2.0 * y * h


@njit(inline="always", cache=True)
def _rows_of(loss, z, y, count, d):
    """pointwise_rows for one loss; inlined with loss a constant, the loop is branch-free."""
    total = 0.0
    dsum = 0.0
    for k in range(count):
        lk, dk = pointwise(loss, z[k], np.float64(y[k]))
        d[k] = dk
        total += lk
        dsum += dk
    return total, dsum


@njit(inline="always", cache=True)
def pointwise_rows(loss, z, y, count, d):
    """count rows: z (>= count,) float64 margins, y (>= count,) targets; d (>= count,), OUT:
    d[k] <- dloss/dz of row k (in d's dtype). Returns (loss sum, dloss/dz sum).

    The loss is picked once, outside the loop: each branch inlines _rows_of with a constant loss,
    so its loop is branch-free and vectorizes.
    """
    if loss == SQUARED:
        return _rows_of(SQUARED, z, y, count, d)
    if loss == LOGISTIC:
        return _rows_of(LOGISTIC, z, y, count, d)
    if loss == HINGE:
        return _rows_of(HINGE, z, y, count, d)
    return _rows_of(SQUARED_HINGE, z, y, count, d)


@njit(inline="always", cache=True)
def softmax_row(z, label: int) -> float:
    """Cross-entropy of one row: z (K,) float64 margins, IN/OUT <- dloss/dz = softmax(z) - onehot(label).

    Returns logsumexp(z) - z[label], with the maximum margin subtracted before exp (stable; exp is
    exp_neg, as in csrc/pointwise.pxd). The margins and zmax - z[label] go through _fence: under fastmath the compiler regrouped that
    difference with the sums that formed the margins and with the running loss sum, and a row whose
    margins were near 2**60 lost its loss (tests/test_fuzz_kernels.py).
    """
    for k in range(z.shape[0]):
        z[k] = _fence(z[k])
    zmax = z[0]
    for k in range(1, z.shape[0]):
        zmax = max(zmax, z[k])
    loss = _fence(zmax - z[label])
    s = 0.0
    for k in range(z.shape[0]):
        e = exp_neg(zmax - z[k])
        z[k] = e
        s += e
    inv = 1.0 / s
    for k in range(z.shape[0]):
        z[k] *= inv
    z[label] -= 1.0
    return loss + math.log(s)


@njit(cache=True)
def group_rows(row_bytes):
    """Rows per group of dense_block_sums for rows of row_bytes bytes (>= 1): about
    NARROW_GROUP_BYTES of rows up to NARROW_ROW_BYTES, about WIDE_GROUP_BYTES of wider ones,
    MIN_GROUP_ROWS to MAX_GROUP_ROWS rows, a multiple of GROUP_ROW_MULTIPLE."""
    target = NARROW_GROUP_BYTES if row_bytes <= NARROW_ROW_BYTES else WIDE_GROUP_BYTES
    rows = target // row_bytes // GROUP_ROW_MULTIPLE * GROUP_ROW_MULTIPLE
    return min(MAX_GROUP_ROWS, max(MIN_GROUP_ROWS, rows))


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def dense_block_sums(loss, X, y, coef, intercept, out, block_rows):
    """Per-block sums of the loss and its gradient over a dense shard.

    loss:       int, loss code of a scalar-margin loss (losses.LOSS_CODES)
    X:          (m, n) C-contiguous float32 or float64
    y:          (m,) same dtype as X
    coef:       (n,) float64
    intercept:  float
    out:        (ceil(m / block_rows), n + 2) float64, OUT: row b <- [grad_coef (n), grad_intercept, loss]
    block_rows: int >= 1

    Groups of group_rows(n * X.itemsize) rows (see the module's docstring); the group's gradient
    is summed in X's dtype, then added to the block's float64 sums.
    """
    m, n = X.shape
    zero = X.dtype.type(0)
    line = 64 // X.itemsize  # elements per cache line
    ahead = -(-PREFETCH_BYTES // (n * X.itemsize))  # rows
    group = group_rows(n * X.itemsize)
    for b in prange(out.shape[0]):
        acc = np.zeros(n + 2)
        gacc = np.zeros(n, X.dtype)  # the group's gradient
        z = np.empty(group)
        d = np.empty(group, X.dtype)
        start = b * block_rows
        stop = min(m, start + block_rows)
        for s in range(start, stop, group):
            count = min(group, stop - s)
            k = 0
            while k < count:
                i = s + k
                rows = min(4, count - k)
                p = (i + ahead) * n
                for q in range(p, p + rows * n, line):
                    _prefetch(X, q)
                if rows == 4:
                    r0, r1, r2, r3 = X[i], X[i + 1], X[i + 2], X[i + 3]
                    z0 = z1 = z2 = z3 = intercept
                    for j in range(n):
                        c = coef[j]
                        z0 += r0[j] * c
                        z1 += r1[j] * c
                        z2 += r2[j] * c
                        z3 += r3[j] * c
                    z[k] = z0
                    z[k + 1] = z1
                    z[k + 2] = z2
                    z[k + 3] = z3
                else:
                    for kk in range(k, k + rows):
                        r0 = X[s + kk]
                        z0 = intercept
                        for j in range(n):
                            z0 += r0[j] * coef[j]
                        z[kk] = z0
                k += rows
            total, dsum = pointwise_rows(loss, z, y[s:s + count], count, d)
            acc[n] += dsum
            acc[n + 1] += total
            k = 0
            while k + 4 <= count:
                i = s + k
                r0, r1, r2, r3 = X[i], X[i + 1], X[i + 2], X[i + 3]
                d0, d1, d2, d3 = d[k], d[k + 1], d[k + 2], d[k + 3]
                for j in range(n):
                    gacc[j] += (d0 * r0[j] + d1 * r1[j]) + (d2 * r2[j] + d3 * r3[j])
                k += 4
            while k < count:
                r0 = X[s + k]
                d0 = d[k]
                for j in range(n):
                    gacc[j] += d0 * r0[j]
                k += 1
            for j in range(n):
                acc[j] += gacc[j]
                gacc[j] = zero
        out[b] = acc


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def dense_softmax_block_sums(X, y, coef, intercept, out, block_rows):
    """Per-block sums of the softmax cross-entropy and its gradient over a dense shard.

    X:          (m, n) C-contiguous float32 or float64
    y:          (m,) intp labels in 0..K-1
    coef:       (n, K) C-contiguous float64
    intercept:  (K,) float64
    out:        (ceil(m / block_rows), n*K + K + 1) float64, OUT: row b <- [grad_coef (n*K,
                row-major), grad_intercept (K), loss]
    block_rows: int >= 1

    The work runs over coef transposed, (K, n): a row's K margins are K dot products of x with
    the rows of coef.T, its gradient K updates grad_t[k] += d_k * x of the block's (K, n)
    accumulator, both contiguous over the n features, so LLVM vectorizes over n (twice as fast
    as vectorizing over K at n = 64, K = 10). Each block writes grad_t back as (n, K) at its end.
    """
    m, n = X.shape
    K = coef.shape[1]
    nk = n * K
    coef_t = np.ascontiguousarray(coef.T)
    for b in prange(out.shape[0]):
        grad_t = np.zeros((K, n))
        tail = np.zeros(K + 1)  # [grad_intercept (K), loss]
        z = np.empty(K)
        for i in range(b * block_rows, min(m, (b + 1) * block_rows)):
            x = X[i]
            for k in range(K):
                w = coef_t[k]
                zk = intercept[k]
                for j in range(n):
                    zk += x[j] * w[j]
                z[k] = zk
            tail[K] += softmax_row(z, y[i])
            for k in range(K):
                d = z[k]
                g = grad_t[k]
                tail[k] += d
                for j in range(n):
                    g[j] += d * x[j]
        row = out[b]
        for j in range(n):
            for k in range(K):
                row[j * K + k] = grad_t[k, j]
        row[nk:] = tail
