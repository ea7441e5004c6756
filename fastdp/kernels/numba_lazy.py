"""Mini-batch SGD steps over CSR rows in O(the batch's non-zeros), in Numba: the penalty, lazily.

A step of SGD with the elastic net (l2, l1) moves every coefficient, coef <- coef - lr * (g +
l2 * coef), then soft-thresholds it by lr * l1 (fastdp.optim.Penalty.prox), however few columns
its rows touch: on hashed text (2**18 to 2**20 columns, a few thousand of them in a batch) the
passes over coef cost more than the batch's rows. Here a column whose gradient sum is zero only
decays and shrinks, and both are kept as two running numbers instead of being applied. Step t
multiplies an untouched |coef| by f_t = 1 - lr_t * l2, then takes lr_t * l1 off (down to 0):
with P_t the product of the factors so far and A_t the sum of lr_s * l1 / P_(s+1) over the steps
before t, |coef| / P falls by exactly A's increase (while it stays above 0, where it then stays).
So each coefficient keeps one number q and a gradient sum, a column's side by side in one row
of `cols`, and each column a mark, one bit in `marks`:

    cols[j] = [q_0 .. q_(K-1), sum_0 .. sum_(K-1)]      (n, 2K)
    marks[j >> 3] bit (j & 7): 1 on the columns of the batch in progress
    true coef[j, c] = sign(q_c) * now * max(|q_c| - a, 0)

K is 1 for the scalar-margin losses and the number of classes for softmax. `now` and `a` are P
and A at the present step; a coefficient updated at step u to v holds q = sign(v) * (|v| / P_u
+ A_u). Without L1, a stays 0 and q = v / P_u. The sums are the batch's gradient sums (zero
between batches). The passes read columns at random, so a column's record is as small as it can
be: with K = 1, 16 bytes, four to a cache line, whose q and sum the margins and the sums read
together, and a bitmap small enough for L2 (128 KiB for 2**20 columns). A column's values in
one record instead of one array each made a batch of 256 rows 1.3x faster on 2**20 hashed
columns (three values then, against three arrays); the marks as bits instead of a third value
in each record (24 bytes) took `fastdp bench peers --skip dense csr ddp` (one SGD epoch on
200,000 x 2**20 hashed rows, hinge, batches of 256) from 638-645 to 479-554 ms in two
alternating rounds (on the fortunes corpus's 2**18 columns, whose 6 MB of records fit in L3
either way, within noise).

lazy_batch_sums computes the margins from the true coefficients and adds the gradient to the
sums, listing the columns it adds to; lazy_batch_step updates those columns with the dense
step's formulas and clears their sums (lazy_step: with the intercept, and a flush when the
product gets small); lazy_flush makes every q the true coefficient again (now = 1, a = 0),
lazy_load fills cols from coefficients, and lazy_batches takes the steps of consecutive batches
in one call (no Python between them).

Without L1 (l1 = 0, the L2 penalty alone) a step is linear in the batch's gradient sums: with
q = v / now, the dense step v <- v * (1 - lr * l2) - lr * sum / count is
q <- q - lr * sum / (count * now'), one term per non-zero. So the l2_* kernels keep q alone,
q (n, K) (8 MB for 2**20 columns and K = 1, where cols and marks take 16 MB and 128 KiB), with
no sums, marks or list of columns: l2_batch_margins forms a batch's margins and derivatives
(dz, a row each), then, once the batch is known finite, add_rows puts each non-zero's term
into q directly, as scikit-learn's SGD updates its coefficients after each row.
`fastdp bench peers --skip dense csr ddp` (one hinge epoch on 200,000 x 2**20 hashed rows,
batches of 256), two rounds on 2026-12-07 alternating with a worktree of 851356f: 195 and
233 ms against 403 and 430 ms (0.88x and 1.08x scikit-learn's SGDClassifier, against 0.37x and
0.54x). In an ad-hoc prototype, q as one column of 16-byte records instead took 243-272 ms
against 165-201 for q alone: the footprint is most of the gain. The coefficients differ from
the dense steps' in the last bits only, like lazy_batches's.

Threads: l2_batch_margins (and lazy_batch_sums, whose margins read only the records' q and
whose sums then go in on one thread) forms a batch's rows in `parts` runs of consecutive rows,
one per thread, each row's values written on their own and summed in row order afterwards, so
the bits do not depend on parts; the caller picks parts = 1 where a batch is too small to pay
for waking the threads (fastdp.lazy_steps.margin_parts). Its gathers from q at random are bound by how
many cache misses a core keeps in flight, and two cores keep twice as many: ad-hoc, 700
batches of 256 rows on 200,000 x 2**20 hashed rows took 125-134 ms of margins on one thread
and 56-58 ms on two. The other kernels are serial: add_rows's read-modify-writes at random did
not scale (a part of the columns per thread, every thread reading all the batch's terms and
writing those of its own columns: 122-124 ms against 143-150 on one thread, ad-hoc, and slower
than serial in whole epochs), nor did prefetching the columns a few terms ahead (within noise
at 16 to 64 terms, for the gathers and the updates); the L1 path's batches and the flushes are
small or one pass (numba_finite.py: waking threads costs more).
`fastdp bench peers --skip dense csr ddp`, two rounds on 2026-12-07 alternating with a
worktree of 006adcf (serial margins): 167 and 198 ms against 207 and 253 (1.36x and 1.16x
scikit-learn's SGDClassifier, against 0.98x and 1.01x).
"""

import numpy as np
from numba import njit, prange

from .losses import LOSS_CODES
from .numba_dense import FASTMATH, pointwise, softmax_row
from .numba_mean import SUM_FASTMATH

SOFTMAX = LOSS_CODES["softmax"]
SUMS_BOUND = 1e300  # lazy_batch_sums's bound on |column sums| under which none can overflow


@njit(inline="always", cache=True)
def true_coef(q, now, a):
    """The coefficient a column's q stands for at product `now` and threshold sum `a` (floats).
    Without L1 (a = 0: the test is the same for the whole loop that calls it) only a product."""
    return q * now if a == 0.0 else np.copysign(now * max(abs(q) - a, 0.0), q)


@njit(inline="always", cache=True)
def _mark(marks, j):
    """Set column j's bit in marks (uint8); 1 if it was clear, else 0 (branch-free)."""
    byte = marks[j >> 3]
    bit = np.uint8(1) << np.uint8(j & 7)
    marks[j >> 3] = byte | bit
    return (byte & bit) == 0


@njit(cache=True, fastmath=FASTMATH)
def _margin_rows(loss, data, indices, indptr, rows, y, q, records, intercept, now, a, dz, row_sums,
                 first, stop):
    """The margins of the rows rows[first:stop] at the true coefficients: each row's derivatives
    into dz[t], its loss and |dloss/dz| * |row|_1 (0 where dloss/dz is 0) into row_sums[t].
    records: True, q is lazy_batch_sums's cols (n, 2K), each coefficient true_coef(q, now, a),
    read alone (the sums beside it are not); False, q is the L2-only steps' (n, K), the sum over
    a row taken over q and multiplied by now once. A function of its own, called by the serial
    path and by each thread's part (not inlined: inlined into the four parallel kernels, it
    made their compilation take 12-15 s per signature)."""
    K = intercept.shape[0]
    for t in range(first, stop):
        i = rows[t]
        lo, hi = np.uintp(indptr[i]), np.uintp(indptr[i + 1])
        row_abs = 0.0
        if loss != SOFTMAX:  # K = 1, as plain scalars: the generic loops cost 20-30% here
            zi = intercept[0] if records else 0.0
            for p in range(lo, hi):
                j = np.uintp(indices[p])
                zi += data[p] * (true_coef(q[j, 0], now, a) if records else q[j, 0])
                row_abs += abs(data[p])
            if not records:
                zi = intercept[0] + now * zi
            loss_i, d = pointwise(loss, zi, np.float64(y[i]))
            dz[t, 0] = d
            row_sums[t, 0] = loss_i
            row_sums[t, 1] = abs(d) * row_abs if d != 0.0 else 0.0
            continue
        zt = dz[t]
        for c in range(K):  # loops, not array expressions: parallel=True makes those parfors,
            zt[c] = intercept[c] if records else 0.0  # each waking the threads
        for p in range(lo, hi):
            v = data[p]
            j = np.uintp(indices[p])
            for c in range(K):
                zt[c] += v * (true_coef(q[j, c], now, a) if records else q[j, c])
            row_abs += abs(v)
        if not records:
            for c in range(K):
                zt[c] = intercept[c] + now * zt[c]
        row_sums[t, 0] = softmax_row(zt, np.intp(y[i]))  # zt <- its derivatives
        d_abs = 0.0
        for c in range(K):
            d_abs += abs(zt[c])
        row_sums[t, 1] = d_abs * row_abs


@njit(inline="always", cache=True, fastmath=FASTMATH)
def _margins_in_parts(loss, data, indices, indptr, rows, y, q, records, intercept, now, a, dz,
                      row_sums, parts):
    """_margin_rows over all the rows: on this thread (parts <= 1), or in `parts` runs of
    consecutive rows by the threads. Inlined, so that the parallel loop lives in each kernel
    called from Python (_l2_margins says why)."""
    b = rows.shape[0]
    if parts <= 1:
        _margin_rows(loss, data, indices, indptr, rows, y, q, records, intercept, now, a, dz,
                     row_sums, 0, b)
    else:
        for part in prange(parts):
            _margin_rows(loss, data, indices, indptr, rows, y, q, records, intercept, now, a, dz,
                         row_sums, b * part // parts, b * (part + 1) // parts)


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def lazy_batch_sums(loss, data, indices, indptr, rows, y, cols, marks, intercept, now, a, touched,
                    dz, d_sum, row_sums, parts):
    """Sums of the loss and its gradient over the CSR rows `rows`, read in place: those of
    numba_sparse.csr_block_sums (csr_softmax_block_sums) over the rows gathered, at the true
    coefficients, up to rounding.

    loss:      int, loss code (losses.LOSS_CODES): a scalar-margin loss (K = 1) or softmax
    data:      (nnz,) float32 or float64, the non-zero values
    indices:   (nnz,) int32 or int64 column indices in 0..n-1
    indptr:    (m + 1,) same dtype as indices; row i is data[indptr[i]:indptr[i + 1]]
    rows:      (b,) int64 in 0..m-1, distinct: the batch's rows, in the order summed
    y:         (m,) targets: data's dtype (scalar losses) or intp labels in 0..K-1 (softmax)
    cols:      (n, 2K) float64 C-contiguous (module docstring), every sum 0; OUT: the gradient
               sums on the columns listed
    marks:     ((n + 7) // 8,) uint8, all 0; OUT: the bits of the columns listed
    intercept: (K,) float64
    now, a:    float, the product of the steps' factors so far (> 0) and the threshold sum
    touched:   (> the listed columns,) int64, OUT: the columns with a row whose derivative is
               not zero (hinge losses: rows inside the margin), first; entry k, the columns
               listed so far, is written at every non-zero of such a row
    dz:        (>= b, K) float64, OUT: dz[t] <- row rows[t]'s dloss/dz
    d_sum:     (K,) float64, OUT: the intercept's gradient sums
    row_sums:  (>= b, 2) float64, scratch: each row's loss and bound term
    parts:     int >= 1: the rows' margins are formed in this many runs of consecutive rows, by
               the threads (1: serial), as l2_batch_margins's; the sums are then added up on one
               thread in row order, so every output is the same bits for any parts
    Returns (k, loss sum, total): k columns in touched[:k]; total, NaN or +-inf when a sum is
    (numba_mean.mean_gradient's finiteness test): the loss sum plus the intercept's sums, plus
    the columns' sums only when their bound, the sum over the rows of |d| * |row|_1, exceeds
    SUMS_BOUND. Below it no column's sum can overflow, and their second read (25.6k random reads
    in a batch of 256 hashed rows) is left out: one hinge epoch on 100,000 x 2**20 took 2-18%
    less in an ad-hoc A/B, while `fastdp bench peers --skip dense csr ddp` (200,000 x 2**20)
    saw no change beyond its noise.
    """
    return _lazy_sums(loss, data, indices, indptr, rows, y, cols, marks, intercept, now, a,
                      touched, dz, d_sum, row_sums, parts)


@njit(inline="always", cache=True, fastmath=FASTMATH)
def _lazy_sums(loss, data, indices, indptr, rows, y, cols, marks, intercept, now, a, touched, dz,
               d_sum, row_sums, parts):
    """lazy_batch_sums's body, inlined into it and into lazy_batches (each then holds its own
    parallel loop: _l2_margins says why): the margins by _margins_in_parts, then on this
    thread, row after row, the gradient sums into cols, the columns listed and marked."""
    K = intercept.shape[0]
    b = rows.shape[0]
    _margins_in_parts(loss, data, indices, indptr, rows, y, cols, True, intercept, now, a, dz,
                      row_sums, parts)
    k = 0
    loss_sum = 0.0
    bound = 0.0  # >= every |column sum| (up to a relative 1e-12 of rounding)
    for c in range(K):
        d_sum[c] = 0.0
    for t in range(b):
        i = rows[t]
        lo, hi = np.uintp(indptr[i]), np.uintp(indptr[i + 1])
        loss_sum += row_sums[t, 0]
        if loss != SOFTMAX:
            d = dz[t, 0]
            if d != 0.0:  # hinge losses: rows past the margin add nothing
                bound += row_sums[t, 1]
                for p in range(lo, hi):
                    j = np.uintp(indices[p])
                    cols[j, 1] += d * data[p]
                    touched[k] = j  # branch-free: a column's first time here is unpredictable
                    k += _mark(marks, j)
                d_sum[0] += d
            continue
        bound += row_sums[t, 1]
        for p in range(lo, hi):
            v = data[p]
            j = np.uintp(indices[p])
            for c in range(K):
                cols[j, K + c] += v * dz[t, c]
            touched[k] = j
            k += _mark(marks, j)
        for c in range(K):
            d_sum[c] += dz[t, c]
    total = loss_sum
    for c in range(K):
        total += d_sum[c]
    if bound <= SUMS_BOUND:  # NaN too goes on
        return k, loss_sum, total
    for t in range(k):
        j = np.uintp(touched[t])
        for c in range(K):
            total += cols[j, K + c]
    return k, loss_sum, total


@njit(cache=True, fastmath=SUM_FASTMATH)
def lazy_batch_step(touched, k, cols, marks, now, a, lr, l2, l1, count):
    """The step on the columns lazy_batch_sums listed, and the running numbers after it: for j
    in touched[:k] and each output c, with v = the true coef[j, c] (module docstring),

        v <- v - lr * (sum_c / count + l2 * v);  v <- sign(v) * max(|v| - lr * l1, 0)
        q_c <- sign(v) * (|v| / now' + a');  sum_c <- 0;  mark <- 0

    where now' = now * (1 - lr * l2) and a' = a + lr * l1 / now' are the product and the
    threshold sum after the step, which it returns.

    touched:   (>= k,) int64, distinct columns in 0..n-1
    cols:      (n, 2K) float64, IN/OUT (module docstring)
    marks:     ((n + 7) // 8,) uint8, OUT: the listed columns' bits cleared
    now, a:    float, the product before this step (> 0) and the threshold sum
    lr:        float, the step's learning rate, with lr * l2 < 1
    l2, l1:    float >= 0, the penalty's L2 and L1 weights
    count:     float > 0, the batch's rows
    Returns (now', a').
    """
    K = cols.shape[1] // 2
    after = now * (1.0 - lr * l2)
    cut = lr * l1
    a_after = a + cut / after
    inv_after = 1.0 / after
    for t in range(k):
        j = np.uintp(touched[t])
        for c in range(K):
            v = true_coef(cols[j, c], now, a)
            v = v - lr * (cols[j, K + c] / count + l2 * v)
            v = np.copysign(max(abs(v) - cut, 0.0), v)
            cols[j, c] = np.copysign(abs(v) * inv_after + a_after, v)
            cols[j, K + c] = 0.0
        marks[j >> 3] = 0
    return after, a_after


@njit(cache=True, fastmath=FASTMATH)
def lazy_flush(cols, now, a, coef):
    """Make every q the true coefficient: coef <- the true coefficients -> q (the caller's
    product starts again from 1, its threshold sum from 0).

    cols:   (n, 2K) float64, IN/OUT
    now, a: float, the product (> 0) and the threshold sum
    coef:   (n, K) float64, OUT
    """
    if coef.shape[1] == 1:  # K = 1 compiled in as a constant (_flush_columns)
        _flush_columns(cols, now, a, coef, 1)
    else:
        _flush_columns(cols, now, a, coef, coef.shape[1])


@njit(inline="always", cache=True, fastmath=FASTMATH)
def _flush_columns(cols, now, a, coef, K):
    """lazy_flush's loop, inlined at each call, so that the call with K = 1 compiles a copy
    with the constant: the loop over a run-time K kept the loop over the columns from
    vectorizing."""
    for j in range(cols.shape[0]):
        for c in range(K):
            v = true_coef(cols[j, c], now, a)
            coef[j, c] = v
            cols[j, c] = v


@njit(cache=True)
def lazy_load(coef, cols):
    """cols[j] <- [coef[j], 0 ...]: the coefficients, up to date (product 1, threshold sum 0),
    with no sums.

    coef: (n, K) float64
    cols: (n, 2K) float64, OUT
    """
    if coef.shape[1] == 1:  # K = 1 compiled in as a constant (_flush_columns)
        _load_columns(coef, cols, 1)
    else:
        _load_columns(coef, cols, coef.shape[1])


@njit(inline="always", cache=True)
def _load_columns(coef, cols, K):
    """lazy_load's loop, inlined as _flush_columns is, for the same reason."""
    for j in range(coef.shape[0]):
        for c in range(K):
            cols[j, c] = coef[j, c]
            cols[j, K + c] = 0.0


@njit(cache=True, fastmath=FASTMATH)
def lazy_sum_squares(cols, now, a):
    """The sum of the squared true coefficients without moving them.

    cols:   (n, 2K) float64
    now, a: float, the product (> 0) and the threshold sum
    """
    if cols.shape[1] == 2:  # K = 1 compiled in as a constant (_flush_columns)
        return _sum_squares_columns(cols, now, a, 1)
    return _sum_squares_columns(cols, now, a, cols.shape[1] // 2)


@njit(inline="always", cache=True, fastmath=FASTMATH)
def _sum_squares_columns(cols, now, a, K):
    """lazy_sum_squares's loop, inlined as _flush_columns is, for the same reason."""
    total = 0.0
    for j in range(cols.shape[0]):
        for c in range(K):
            v = true_coef(cols[j, c], now, a)
            total += v * v
    return total


@njit(cache=True)
def lazy_step(touched, k, cols, marks, coef, intercept, fit_intercept, d_sum, count, now, a, lr,
              l2, l1, tiny):
    """A batch's whole step after lazy_batch_sums: its columns (lazy_batch_step), the intercept
    as the dense step moves it, and lazy_flush into coef if the product falls below `tiny`.
    Returns the product and the threshold sum after the step (1 and 0 after a flush).

    touched, k, cols, marks: as lazy_batch_step
    coef:          (n, K) float64, OUT: the true coefficients, written by a flush only
    intercept:     (K,) float64, IN/OUT: moved if fit_intercept
    d_sum, count:  (K,) float64 and float: the intercept's gradient sums, the batch's rows (> 0)
    now, a:        float, the product before the step (> 0) and the threshold sum
    lr, l2, l1:    float, the rate and the penalty's weights (lr * l2 < 1)
    tiny:          float > 0, the product's floor
    """
    after, a_after = lazy_batch_step(touched, k, cols, marks, now, a, lr, l2, l1, count)
    if fit_intercept:
        for c in range(intercept.shape[0]):
            intercept[c] -= lr * (d_sum[c] / count)
    if after < tiny:
        lazy_flush(cols, after, a_after, coef)
        return 1.0, 0.0
    return after, a_after


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def lazy_batches(loss, data, indices, indptr, order, batch_size, y, cols, marks, coef, intercept,
                 fit_intercept, rates, l2, l1, now, a, tiny, touched, dz, d_sum, row_sums, parts):
    """Lazy steps over consecutive batches in one call: batch b (0 <= b < len(rates)) is the rows
    order[b * batch_size:(b + 1) * batch_size], stepped at rate rates[b]; each as
    lazy_batch_sums then lazy_step. Stops before a batch whose sums are not all finite, leaving
    its columns as they were.

    loss, data, indices, indptr, y, cols, marks, intercept, touched, dz, d_sum, row_sums,
    parts:         as lazy_batch_sums (intercept also moved if fit_intercept; dz and row_sums
                   >= batch_size rows)
    order:         (>= len(rates) * batch_size,) int64, the rows, batch after batch
    batch_size:    int >= 1
    coef:          (n, K) float64, OUT: the true coefficients, written by a flush only
    rates:         (steps,) float64, the learning rates
    l2, l1:        float >= 0, the penalty's weights, with rates[b] * l2 < 1
    now, a:        float, the product before the first batch (> 0) and the threshold sum
    tiny:          float > 0, the product's floor
    Returns (batches stepped, the product and the threshold sum after them, the sum over them
    of loss sum / rows * rows: each batch's mean loss times its rows, as the training loop adds
    them). Compiled with lazy_batch_sums's fastmath flags, which its inlined body takes from here.
    """
    K = intercept.shape[0]
    weighted = 0.0
    for b in range(rates.shape[0]):
        rows = order[b * batch_size:(b + 1) * batch_size]
        k, loss_sum, total = _lazy_sums(loss, data, indices, indptr, rows, y, cols, marks,
                                        intercept, now, a, touched, dz, d_sum, row_sums, parts)
        if not np.isfinite(total):
            for t in range(k):
                j = touched[t]
                for c in range(K, 2 * K):
                    cols[j, c] = 0.0
                marks[j >> 3] = 0
            return b, now, a, weighted
        count = float(rows.shape[0])
        now, a = lazy_step(touched, k, cols, marks, coef, intercept, fit_intercept, d_sum, count,
                           now, a, rates[b], l2, l1, tiny)
        weighted += _mean_times_rows(loss_sum, count)
    return rates.shape[0], now, a, weighted


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def l2_batch_margins(loss, data, indices, indptr, rows, y, q, intercept, now, dz, d_sum,
                     row_sums, parts):
    """The loss and the derivatives of the CSR rows `rows` at the true coefficients q * now (the
    L2-only lazy steps, module docstring), read in place.

    loss:      int, loss code (losses.LOSS_CODES): a scalar-margin loss (K = 1) or softmax
    data, indices, indptr, rows, y: as lazy_batch_sums
    q:         (n, K) float64, the coefficients over `now`
    intercept: (K,) float64
    now:       float > 0, the product of the steps' factors so far
    dz:        (>= b, K) float64, OUT: dz[t] <- row rows[t]'s dloss/dz
    d_sum:     (K,) float64, OUT: the intercept's gradient sums
    row_sums:  (>= b, 2) float64, scratch: each row's loss and bound term
    parts:     int >= 1: the rows are cut into this many consecutive runs, formed by the threads
               (1: serial, no threads woken). The rows' values are summed afterwards in row
               order, so every output is the same bits for any parts.
    Returns (loss sum, total, bound): total, the loss sum plus the intercept's sums, NaN or
    +-inf when one of them is; bound, the sum over the rows of |dloss/dz| * |row|_1, which
    bounds every column's gradient sum (lazy_batch_sums's SUMS_BOUND test).
    """
    return _l2_margins(loss, data, indices, indptr, rows, y, q, intercept, now, dz, d_sum,
                       row_sums, parts)


@njit(inline="always", cache=True, fastmath=FASTMATH)
def _l2_margins(loss, data, indices, indptr, rows, y, q, intercept, now, dz, d_sum, row_sums,
                parts):
    """l2_batch_margins's body, inlined into each kernel called from Python (l2_batch_margins,
    l2_batches), so that each holds its own parallel loop: a cached caller without one that
    called l2_batch_margins crashed in some fresh processes (numba issue #8578: a nested
    parallel function's threading set-up is not run when its caller is loaded from the
    cache)."""
    K = intercept.shape[0]
    b = rows.shape[0]
    _margins_in_parts(loss, data, indices, indptr, rows, y, q, False, intercept, now, 0.0, dz,
                      row_sums, parts)
    loss_sum = 0.0
    bound = 0.0
    for c in range(K):
        d_sum[c] = 0.0
    for t in range(b):
        loss_sum += row_sums[t, 0]
        bound += row_sums[t, 1]
        for c in range(K):
            d_sum[c] += dz[t, c]
    total = loss_sum
    for c in range(K):
        total += d_sum[c]
    return loss_sum, total, bound


@njit(cache=True, fastmath=FASTMATH)
def add_rows(data, indices, indptr, rows, dz, scale, out):
    """out[j, c] += scale * dz[t, c] * x_(rows[t], j) over the non-zeros of the CSR rows `rows`,
    in row order: scale = 1 gives the batch's gradient sums (out zeroed), scale =
    -lr / (count * now') the L2-only step on q.

    data, indices, indptr, rows: as lazy_batch_sums
    dz:    (>= b, K) float64, the rows' derivatives (l2_batch_margins)
    scale: float
    out:   (n, K) float64, IN/OUT
    """
    K = out.shape[1]
    for t in range(rows.shape[0]):
        i = rows[t]
        lo, hi = np.uintp(indptr[i]), np.uintp(indptr[i + 1])
        if K == 1:
            f = scale * dz[t, 0]
            if f != 0.0:  # hinge losses: rows past the margin add nothing
                for p in range(lo, hi):
                    out[np.uintp(indices[p]), 0] += f * data[p]
            continue
        for p in range(lo, hi):
            v = scale * data[p]
            j = np.uintp(indices[p])
            for c in range(K):
                out[j, c] += v * dz[t, c]


@njit(cache=True)
def l2_step(data, indices, indptr, rows, dz, q, coef, intercept, fit_intercept, d_sum, now, lr,
            l2, tiny):
    """The L2-only step of the batch `rows` after l2_batch_margins: q by add_rows, the intercept
    as the dense step moves it, and lazy_flush into coef if the product falls below `tiny`.
    Returns the product after the step (1 after a flush).

    data, indices, indptr, rows, dz: as add_rows (dz from l2_batch_margins on the same rows)
    q:             (n, K) float64, IN/OUT: the coefficients over the product
    coef:          (n, K) float64, OUT: the true coefficients, written by a flush only
    intercept, fit_intercept, d_sum: as lazy_step
    now, lr, l2:   float: the product before the step (> 0), the rate, the L2 weight (lr * l2 < 1)
    tiny:          float > 0, the product's floor
    """
    count = float(rows.shape[0])
    after = now * (1.0 - lr * l2)
    add_rows(data, indices, indptr, rows, dz, -lr / (count * after), q)
    if fit_intercept:
        for c in range(intercept.shape[0]):
            intercept[c] -= lr * (d_sum[c] / count)
    if after < tiny:
        lazy_flush(q, after, 0.0, coef)
        return 1.0
    return after


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def l2_batches(loss, data, indices, indptr, order, batch_size, y, q, coef, intercept,
               fit_intercept, rates, l2, now, tiny, dz, d_sum, row_sums, parts):
    """L2-only lazy steps over consecutive batches in one call (lazy_batches's loop, for l1 = 0):
    each batch l2_batch_margins then l2_step. Stops before a batch whose total is not finite or
    whose bound exceeds SUMS_BOUND (its columns' sums may then overflow: the caller's per-batch
    path sums them), leaving q as it was.

    loss, data, indices, indptr, order, batch_size, y, coef, intercept, fit_intercept, rates,
    tiny, d_sum: as lazy_batches
    q:       (n, K) float64, IN/OUT: the coefficients over the product
    l2:      float >= 0, the penalty's weight, with rates[b] * l2 < 1
    now:     float, the product before the first batch (> 0)
    dz:      (>= batch_size, K) float64, scratch
    row_sums, parts: as l2_batch_margins (row_sums scratch, >= batch_size rows)
    Returns (batches stepped, the product after them, the sum of their mean losses times their
    rows). Compiled with l2_batch_margins's fastmath flags, which its inlined body takes from
    here: the margins are the same bits as the per-batch path's.
    """
    weighted = 0.0
    for b in range(rates.shape[0]):
        rows = order[b * batch_size:(b + 1) * batch_size]
        loss_sum, total, bound = _l2_margins(loss, data, indices, indptr, rows, y, q, intercept,
                                             now, dz, d_sum, row_sums, parts)
        if not (np.isfinite(total) and bound <= SUMS_BOUND):
            return b, now, weighted
        count = float(rows.shape[0])
        now = l2_step(data, indices, indptr, rows, dz, q, coef, intercept, fit_intercept, d_sum,
                      now, rates[b], l2, tiny)
        weighted += _mean_times_rows(loss_sum, count)
    return rates.shape[0], now, weighted


@njit(cache=True)
def _mean_times_rows(loss_sum, count):
    """(loss_sum / count) * count, as the per-batch path adds a batch's loss up: a function of
    its own, compiled without fastmath, which would cancel the two (and fuse the sum)."""
    return loss_sum / count * count


@njit(cache=True, fastmath=SUM_FASTMATH)
def l2_grad_squares(sums, q, scale, count):
    """The squared norm of the mean gradient with the L2 penalty's part, without forming it:
    the sum over i of (sums[i] / count + scale * q[i])**2 (scale = l2 * now: the L2-only lazy
    steps' q is the coefficients over the product).

    sums:  (p,) float64, the batch's gradient sums (zero on the columns it does not touch)
    q:     (p,) float64
    scale: float
    count: float > 0, the batch's rows
    """
    total = 0.0
    for i in range(sums.shape[0]):
        g = sums[i] / count + scale * q[i]
        total += g * g
    return total
