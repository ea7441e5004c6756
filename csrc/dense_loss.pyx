# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused loss-and-gradient sums over a dense shard, threaded with OpenMP.

Design (the Numba twin, fastdp/kernels/numba_dense.py, follows the same plan):
- The shard's rows are cut into fixed blocks of `block_rows` rows. Block b writes its sums to
  out[b, :] and nothing else, so threads never share an accumulator; the caller adds the blocks in
  block order. Fixed blocks make the result independent of the number of threads.
- Each row is read from memory once. dense_block_sums goes a group of rows at a time: their
  margins z = x.coef + intercept (float64), then their losses and derivatives d = dloss/dz in one
  branch-free loop that vectorizes (csrc/pointwise.pxd: exp and log1p as arithmetic, no libm
  call), then grad += d @ x re-reading the group's rows from L1. The dot products and the
  gradient are AVX-512 intrinsics where the build has them (csrc/simd_rows.h: GCC's own
  vectorization of these short loops cost twice the instructions at n = 32). X is prefetched
  into L2 1 KiB ahead of the margins so memory keeps streaming while a group's arithmetic runs.
  A group's rows (group_rows) depend on a row's bytes: about NARROW_GROUP_BYTES of rows of up
  to NARROW_ROW_BYTES (64 rows of 8 float64 features, 16 float64 or 32 float32 rows of 32),
  about WIDE_GROUP_BYTES of wider rows (inside L1, from where the gradient re-reads them), and
  16 to 64 rows, a multiple of 8 (the loss loop's vector). The rule was fitted to a sweep over
  4 to 300 features on an Intel Xeon guest; against fixed 32-row groups the calls took 5% less
  time on 2 threads and 2% less on one (geometric means over 40 cases), and 6-12% less on
  4e6 x 32 float64 (README, "The same commands on an Intel Xeon guest"). The sweep did not
  explain the rule (no hardware counters in the guest).
- One kernel per loss family: dense_block_sums for the scalar-margin losses, the per-row loss
  chosen by an integer code (fastdp.kernels.losses.LOSS_CODES, csrc/pointwise.pxd), and
  dense_softmax_block_sums for softmax cross-entropy over K classes (K dot products with the rows
  of coef.T, four classes at a time; the derivatives of GROUP_ROWS rows at a time in loops over
  the rows (pointwise.pxd's softmax_rows); then grad.T[k] += d[:, k] @ rows: the inner loops run
  over the n features). Numba's twin goes a row at a time: the same groups there took 0.66x to
  1.25x its time (narrow rows gained, 300 features lost; ad-hoc, 2026-12-08).
- The threads take the blocks BLOCKS_PER_TASK at a time, dynamically: on a shared machine one
  thread can be slowed for a while (a hyperthread sibling busy, the vCPU descheduled), and a
  static split makes the whole call wait for it. The blocks are fixed, so the sums do not
  change. Against a static split of the same build, interleaved on 4e6 x 32 (2 threads), the
  median call was 4-21% shorter in 7 of 8 runs and 1% longer in the eighth.
- float32 and float64 inputs come from one fused-type template. Margins, losses and the blocks'
  sums are float64; a float32 X's group gradient is summed in float32 (MAX_GROUP_ROWS rows at
  most) before it is added to the block's float64 sums, so the gradient's inner loops read and
  multiply float32.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc

from pointwise cimport pointwise_rows, softmax_rows

cdef extern from "prefetch.h" nogil:
    void FASTDP_PREFETCH(const void* p)

cdef extern from "omp_compat.h" nogil:
    int FASTDP_HAVE_OPENMP
    void omp_set_num_threads(int n)
    int omp_get_max_threads()

HAVE_OPENMP = bool(FASTDP_HAVE_OPENMP)


def set_num_threads(int n):
    """Set the number of OpenMP threads the kernels of this module use (n >= 1)."""
    omp_set_num_threads(n)


def get_num_threads():
    """Number of OpenMP threads the next parallel region will use (1 without OpenMP)."""
    return omp_get_max_threads()


cdef extern from "simd_rows.h" nogil:
    int FASTDP_SIMD_ROWS
    void fastdp_dot4_d(const double* r, Py_ssize_t n, const double* coef, const double* b,
                       double* z)
    void fastdp_dot4_f(const float* r, Py_ssize_t n, const double* coef, const double* b,
                       double* z)
    void fastdp_rows_grad_d(const double* x, Py_ssize_t count, Py_ssize_t n, const double* d,
                            double* acc)
    void fastdp_rows_grad_f(const float* x, Py_ssize_t count, Py_ssize_t n, const float* d,
                            double* acc)

SIMD_ROWS = bool(FASTDP_SIMD_ROWS)  # the row arithmetic was built with AVX-512 (csrc/simd_rows.h)

cdef extern from *:
    """
    #include <stdint.h>
    /* A block's scratch starts on a page boundary: malloc's placement of it (which depends on
       the heap's history in each OpenMP thread) made the softmax kernel up to 1.8x slower in
       some processes (measured with two threads; the cause looked like 4K aliasing with X's
       rows). raw is what to free. */
    #define FASTDP_PAGE 4096
    static inline void* fastdp_page_aligned(void* raw) {
        return raw == NULL ? NULL : (void*) (((uintptr_t) raw + FASTDP_PAGE - 1) & ~(uintptr_t) (FASTDP_PAGE - 1));
    }
    """
    const size_t FASTDP_PAGE
    void* fastdp_page_aligned(void* raw) noexcept nogil

cdef enum:
    BLOCKS_PER_TASK = 4  # blocks a thread takes at a time (dynamic schedule)
    GROUP_ROWS = 32  # rows per group of _softmax_block_sums (margins, derivatives, then gradient)
    # the rows of a group of _block_sums (group_rows)
    NARROW_ROW_BYTES = 256  # rows up to this size go about NARROW_GROUP_BYTES a group
    NARROW_GROUP_BYTES = 4096
    WIDE_GROUP_BYTES = 32768  # about the bytes of a group of wider rows
    MIN_GROUP_ROWS = 16
    MAX_GROUP_ROWS = 64  # also the size of the group's scratch on the stack
    GROUP_ROW_MULTIPLE = 8  # a group is a multiple of 8 rows: whole vectors in pointwise_rows
    PREFETCH_BYTES = 1024  # how far ahead of the margins _block_sums prefetches X into L2 (csrc/prefetch.h)
    # one prefetch per PREFETCH_STRIDE bytes, every other 64-byte line (the L2 fetches its
    # neighbour): the margins loop is bound by load-port slots, prefetches included, where X is in
    # cache (README, "What limits each case": the squared and hinge calls on one thread with X in
    # cache took 3-17% less)
    PREFETCH_STRIDE = 128


cdef inline Py_ssize_t _group_rows(Py_ssize_t row_bytes) noexcept nogil:
    cdef Py_ssize_t target = (NARROW_GROUP_BYTES if row_bytes <= NARROW_ROW_BYTES
                              else WIDE_GROUP_BYTES)
    cdef Py_ssize_t rows = target // row_bytes // GROUP_ROW_MULTIPLE * GROUP_ROW_MULTIPLE
    return min(<Py_ssize_t> MAX_GROUP_ROWS, max(<Py_ssize_t> MIN_GROUP_ROWS, rows))


def group_rows(Py_ssize_t row_bytes) -> int:
    """Rows per group of dense_block_sums for rows of row_bytes bytes (>= 1): see the module's
    docstring."""
    if row_bytes < 1:
        raise ValueError(f"row_bytes must be >= 1, got {row_bytes}")
    return _group_rows(row_bytes)


cdef void _block_sums(int loss, const floating* X, const floating* y, const double* coef,
                      double intercept, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t m,
                      Py_ssize_t n, double* acc) noexcept nogil:
    """Rows start..stop of X (m, n) row-major and y (m,); acc (n + 2,) <- [grad_coef, grad_b, loss].

    A group of rows at a time (group_rows): their margins (four rows at a time: fastdp_dot4,
    four independent dot products in float64, the intercept added in the same vector), their
    losses and derivatives (pointwise_rows: one vectorized loop), then their gradient
    (fastdp_rows_grad: the group's rows re-read from L1, summed in X's dtype, added to acc).
    Rows PREFETCH_BYTES ahead are prefetched into L2 (one PREFETCH_STRIDE at a time) while the
    margins are formed.
    No allocation: the group's scratch is on the stack.
    """
    cdef Py_ssize_t s, i, j, k, p, count, rows, pf_end
    cdef Py_ssize_t line = PREFETCH_STRIDE // sizeof(floating)
    cdef Py_ssize_t ahead = (PREFETCH_BYTES + n * sizeof(floating) - 1) // (n * sizeof(floating))
    cdef double z0
    cdef double b4[4]
    cdef Py_ssize_t group = _group_rows(n * sizeof(floating))
    cdef double z[MAX_GROUP_ROWS]
    cdef double d[MAX_GROUP_ROWS]
    cdef float dx[MAX_GROUP_ROWS]
    cdef double sums[2]
    cdef const floating* r0
    for j in range(n + 2):
        acc[j] = 0.0
    for j in range(4):
        b4[j] = intercept
    s = start
    while s < stop:
        count = min(group, stop - s)
        k = 0
        while k < count:
            i = s + k
            rows = min(4, count - k)
            pf_end = min(i + ahead + rows, m) * n
            p = (i + ahead) * n
            while p < pf_end:
                FASTDP_PREFETCH(X + p)
                p += line
            r0 = X + i * n
            if rows == 4:
                if floating is double:
                    fastdp_dot4_d(r0, n, coef, b4, z + k)
                else:
                    fastdp_dot4_f(r0, n, coef, b4, z + k)
            else:
                for p in range(rows):
                    z0 = intercept
                    for j in range(n):
                        z0 += r0[j] * coef[j]
                    z[k + p] = z0
                    r0 += n
            k += rows
        pointwise_rows(loss, z, y + s, count, d, sums)
        acc[n] += sums[0]
        acc[n + 1] += sums[1]
        if floating is double:
            fastdp_rows_grad_d(X + s * n, count, n, d, acc)
        else:
            for k in range(count):
                dx[k] = <float> d[k]
            fastdp_rows_grad_f(X + s * n, count, n, dx, acc)
        s += count


def dense_block_sums(int loss, const floating[:, ::1] X, const floating[::1] y,
                     const double[::1] coef, double intercept, double[:, ::1] out,
                     Py_ssize_t block_rows):
    """Per-block sums of the loss and its gradient over a dense shard.

    loss:       integer code of a scalar-margin loss (fastdp.kernels.losses.LOSS_CODES)
    X:          (m, n) C-contiguous float32 or float64, n >= 1
    y:          (m,) same dtype as X
    coef:       (n,) float64
    intercept:  float
    out:        (ceil(m / block_rows), n + 2) float64, OUT: row b <- [grad_coef (n), grad_intercept, loss]
                summed over rows b*block_rows .. min((b+1)*block_rows, m)
    block_rows: rows per block, >= 1
    """
    cdef Py_ssize_t m = X.shape[0], n = X.shape[1], n_blocks = out.shape[0]
    cdef Py_ssize_t b, start
    if m == 0:
        return
    cdef const floating* Xp = &X[0, 0]
    cdef const floating* yp = &y[0]
    cdef const double* cp = &coef[0]
    cdef double* op = &out[0, 0]
    with nogil:
        if n_blocks == 1:  # a small mini-batch: no parallel region to start (about 1-2 us a call)
            _block_sums(loss, Xp, yp, cp, intercept, 0, m, m, n, op)
        else:
            for b in prange(n_blocks, schedule="dynamic", chunksize=BLOCKS_PER_TASK):
                start = b * block_rows
                _block_sums(loss, Xp, yp, cp, intercept, start, min(start + block_rows, m), m, n,
                            op + b * (n + 2))


cdef int _softmax_block_sums(const floating* X, const Py_ssize_t* y, const double* coef_t,
                             const double* intercept, Py_ssize_t start, Py_ssize_t stop,
                             Py_ssize_t n, Py_ssize_t K, double* acc) noexcept nogil:
    """Rows start..stop of X (m, n) row-major, labels y (m,), coef_t = coef.T (K, n) row-major,
    intercept (K,); acc (n*K + K + 1,) <- [grad_coef (n*K, row-major (n, K)), grad_intercept (K),
    loss]. Returns 1 if the block's scratch could not be allocated (acc is then not written),
    else 0.

    GROUP_ROWS rows at a time. A row's K margins are dot products of x with the rows of coef_t
    plus the intercepts, four classes at a time (fastdp_dot4 over classes k..k+3; with K > 4 the
    last four overlap the previous ones, which recomputes the same values). The group's margins,
    turned class-major, go to softmax_rows, which forms the derivatives d of all its rows in loops
    over the rows (vectorized; a row at a time, softmax_row's loops over K = 10 classes took a
    third of the kernel's time). The gradient goes class by class: grad_t[k] += d[:, k] @ rows
    (fastdp_rows_grad: the group's rows re-read from L1, summed in X's dtype), so the (K, n)
    accumulator is read and written once per group, not once per row.
    """
    cdef Py_ssize_t s, r, j, k, kk, count, nk = n * K
    cdef double zk
    cdef const floating* x
    cdef const double* xr
    cdef const double* w
    cdef double* zr
    cdef void* raw = malloc((nk + 2 * GROUP_ROWS * K + 3 * GROUP_ROWS + n) * sizeof(double)
                            + GROUP_ROWS * K * sizeof(floating) + FASTDP_PAGE)
    cdef double* grad_t = <double*> fastdp_page_aligned(raw)
    cdef double* z  # (GROUP_ROWS, K): the group's margins
    cdef double* zt  # (K, GROUP_ROWS): the margins class-major (softmax_rows clobbers them)
    cdef double* scratch  # (3, GROUP_ROWS): softmax_rows' scratch
    cdef double* xd  # (n,): a float32 row widened to float64 for the dot products
    cdef floating* dt  # (K, GROUP_ROWS): the derivatives, class-major, in X's dtype
    if grad_t == NULL:
        return 1
    z = grad_t + nk
    zt = z + GROUP_ROWS * K
    scratch = zt + GROUP_ROWS * K
    xd = scratch + 3 * GROUP_ROWS
    dt = <floating*> (xd + n)
    for j in range(nk):
        grad_t[j] = 0.0
    for k in range(K + 1):
        acc[nk + k] = 0.0
    s = start
    while s < stop:
        count = min(<Py_ssize_t> GROUP_ROWS, stop - s)
        for r in range(count):
            x = X + (s + r) * n
            if floating is double:
                xr = x
            else:
                for j in range(n):
                    xd[j] = x[j]
                xr = xd
            zr = z + r * K
            if K >= 4:
                k = 0
                while k < K:
                    kk = min(k, K - 4)
                    fastdp_dot4_d(coef_t + kk * n, n, xr, intercept + kk, zr + kk)
                    k += 4
            else:
                for k in range(K):
                    w = coef_t + k * n
                    zk = 0.0
                    for j in range(n):
                        zk += xr[j] * w[j]
                    zr[k] = zk + intercept[k]
        for k in range(K):
            for r in range(count):
                zt[k * GROUP_ROWS + r] = z[r * K + k]
        acc[nk + K] += softmax_rows(K, zt, GROUP_ROWS, count, y + s, dt, scratch, acc + nk)
        for k in range(K):
            if floating is double:
                fastdp_rows_grad_d(X + s * n, count, n, dt + k * GROUP_ROWS, grad_t + k * n)
            else:
                fastdp_rows_grad_f(X + s * n, count, n, dt + k * GROUP_ROWS, grad_t + k * n)
        s += count
    for j in range(n):
        for k in range(K):
            acc[j * K + k] = grad_t[k * n + j]
    free(raw)
    return 0


def dense_softmax_block_sums(const floating[:, ::1] X, const Py_ssize_t[::1] y,
                             const double[:, ::1] coef, const double[::1] intercept,
                             double[:, ::1] out, Py_ssize_t block_rows):
    """Per-block sums of the softmax cross-entropy and its gradient over a dense shard.

    X:          (m, n) C-contiguous float32 or float64, n >= 1
    y:          (m,) intp labels in 0..K-1
    coef:       (n, K) C-contiguous float64
    intercept:  (K,) float64
    out:        (ceil(m / block_rows), n*K + K + 1) float64, OUT: row b <- [grad_coef (n*K,
                row-major), grad_intercept (K), loss] summed over rows b*block_rows .. min((b+1)*block_rows, m)
    block_rows: rows per block, >= 1
    """
    cdef Py_ssize_t m = X.shape[0], n = X.shape[1], K = coef.shape[1], n_blocks = out.shape[0]
    cdef Py_ssize_t b, j, k, start, width = out.shape[1]
    cdef int failed = 0
    if m == 0:
        return
    cdef double* coef_t = <double*> malloc(n * K * sizeof(double))
    if coef_t == NULL:
        raise MemoryError(f"could not allocate coef.T ({K}, {n})")
    for j in range(n):
        for k in range(K):
            coef_t[k * n + j] = coef[j, k]
    cdef const floating* Xp = &X[0, 0]
    cdef const Py_ssize_t* yp = &y[0]
    cdef const double* ip = &intercept[0]
    cdef double* op = &out[0, 0]
    with nogil:
        for b in prange(n_blocks, schedule="dynamic", chunksize=BLOCKS_PER_TASK):
            start = b * block_rows
            failed += _softmax_block_sums(Xp, yp, coef_t, ip, start, min(start + block_rows, m), n, K, op + b * width)
    free(coef_t)
    if failed:
        raise MemoryError(f"could not allocate a ({K}, {n}) gradient in {failed} block(s)")
