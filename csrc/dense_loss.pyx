# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused loss-and-gradient sums over a dense shard, threaded with OpenMP.

Design (the Numba twin, fastdp/kernels/numba_dense.py, follows the same plan):
- The shard's rows are cut into fixed blocks of `block_rows` rows. Block b writes its sums to
  out[b, :] and nothing else, so threads never share an accumulator; the caller adds the blocks in
  block order. Fixed blocks make the result independent of the number of threads.
- Each row is read from memory once. dense_block_sums goes GROUP_ROWS rows at a time: their
  margins z = x.coef + intercept (float64), then their losses and derivatives d = dloss/dz in one
  branch-free loop that vectorizes (csrc/pointwise.pxd: exp and log1p as arithmetic, no libm
  call), then grad += d * x re-reading the group's rows from L1. X is prefetched a few KiB ahead of
  the margins so memory keeps streaming while a group's arithmetic runs.
- One kernel per loss family: dense_block_sums for the scalar-margin losses, the per-row loss
  chosen by an integer code (fastdp.kernels.losses.LOSS_CODES, csrc/pointwise.pxd), and
  dense_softmax_block_sums for softmax cross-entropy over K classes (K dot products with the rows
  of coef.T, then grad.T[k] += d_k * x: the inner loops run over the n features).
- float32 and float64 inputs come from one fused-type template. Margins, losses and the blocks'
  sums are float64; a float32 X's group gradient is summed in float32 (32 rows at most) before
  it is added to the block's float64 sums, so the inner loops read and multiply float32.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc

from pointwise cimport pointwise_rows, softmax_row

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

    /* fastdp_dot4(r, n, coef, z): z[0..3] <- the dot products of rows r, r + n, r + 2n, r + 3n
       (n values each, float or double) with coef (n doubles), in float64. With AVX-512 (the
       extension is built with -march=native): 8 lanes per row, float rows converted to double
       on load, the tail masked, and the four rows' lanes summed together by one shuffle tree
       (compilers sum each row's vector on its own, about twice the shuffles). Otherwise
       FASTDP_HAVE_DOT4 is 0 and the kernel uses its plain loop. */
    #if defined(__AVX512F__) && defined(__AVX512VL__)
    #include <immintrin.h>
    #define FASTDP_HAVE_DOT4 1
    static inline void fastdp_hsum4(__m512d a0, __m512d a1, __m512d a2, __m512d a3, double* z) {
        __m512d s01 = _mm512_add_pd(_mm512_unpacklo_pd(a0, a1), _mm512_unpackhi_pd(a0, a1));
        __m512d s23 = _mm512_add_pd(_mm512_unpacklo_pd(a2, a3), _mm512_unpackhi_pd(a2, a3));
        __m512d t = _mm512_add_pd(_mm512_shuffle_f64x2(s01, s23, 0x88),
                                  _mm512_shuffle_f64x2(s01, s23, 0xDD));
        __m512d u = _mm512_add_pd(t, _mm512_shuffle_f64x2(t, t, 0xB1));
        _mm_storeu_pd(z, _mm512_castpd512_pd128(u));
        _mm_storeu_pd(z + 2, _mm256_extractf128_pd(_mm512_extractf64x4_pd(u, 1), 0));
    }
    #define FASTDP_DOT4(NAME, T, LOAD, MASKED_LOAD)                                           \
    static inline void NAME(const T* r, Py_ssize_t n, const double* coef, double* z) {        \
        __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, c;                       \
        Py_ssize_t j = 0;                                                                     \
        for (; j + 8 <= n; j += 8) {                                                          \
            c = _mm512_loadu_pd(coef + j);                                                    \
            a0 = _mm512_fmadd_pd(LOAD(r + j), c, a0);                                         \
            a1 = _mm512_fmadd_pd(LOAD(r + n + j), c, a1);                                     \
            a2 = _mm512_fmadd_pd(LOAD(r + 2 * n + j), c, a2);                                 \
            a3 = _mm512_fmadd_pd(LOAD(r + 3 * n + j), c, a3);                                 \
        }                                                                                     \
        if (j < n) {                                                                          \
            __mmask8 k = (__mmask8) ((1u << (n - j)) - 1u);                                   \
            c = _mm512_maskz_loadu_pd(k, coef + j);                                           \
            a0 = _mm512_fmadd_pd(MASKED_LOAD(k, r + j), c, a0);                               \
            a1 = _mm512_fmadd_pd(MASKED_LOAD(k, r + n + j), c, a1);                           \
            a2 = _mm512_fmadd_pd(MASKED_LOAD(k, r + 2 * n + j), c, a2);                       \
            a3 = _mm512_fmadd_pd(MASKED_LOAD(k, r + 3 * n + j), c, a3);                       \
        }                                                                                     \
        fastdp_hsum4(a0, a1, a2, a3, z);                                                      \
    }
    #define FASTDP_LOAD_D(p) _mm512_loadu_pd(p)
    #define FASTDP_MASKED_LOAD_D(k, p) _mm512_maskz_loadu_pd((k), (p))
    #define FASTDP_LOAD_F(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))
    #define FASTDP_MASKED_LOAD_F(k, p) _mm512_cvtps_pd(_mm256_maskz_loadu_ps((k), (p)))
    FASTDP_DOT4(fastdp_dot4_d, double, FASTDP_LOAD_D, FASTDP_MASKED_LOAD_D)
    FASTDP_DOT4(fastdp_dot4_f, float, FASTDP_LOAD_F, FASTDP_MASKED_LOAD_F)
    #else
    #define FASTDP_HAVE_DOT4 0
    static inline void fastdp_dot4_d(const double* r, Py_ssize_t n, const double* coef, double* z) {
        (void) r; (void) n; (void) coef; (void) z;
    }
    static inline void fastdp_dot4_f(const float* r, Py_ssize_t n, const double* coef, double* z) {
        (void) r; (void) n; (void) coef; (void) z;
    }
    #endif
    """
    const size_t FASTDP_PAGE
    void* fastdp_page_aligned(void* raw) noexcept nogil
    const int FASTDP_HAVE_DOT4
    void fastdp_dot4_d(const double* r, Py_ssize_t n, const double* coef, double* z) noexcept nogil
    void fastdp_dot4_f(const float* r, Py_ssize_t n, const double* coef, double* z) noexcept nogil

cdef enum:
    GROUP_ROWS = 32  # rows per group of _block_sums (its margins, losses, then gradient)
    PREFETCH_BYTES = 2048  # how far ahead of the margins _block_sums prefetches X (measured best)


cdef int _block_sums(int loss, const floating* X, const floating* y, const double* coef,
                     double intercept, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t m,
                     Py_ssize_t n, double* acc) noexcept nogil:
    """Rows start..stop of X (m, n) row-major and y (m,); acc (n + 2,) <- [grad_coef, grad_b, loss].
    Returns 1 if the group's gradient could not be allocated (acc is then not written), else 0.

    GROUP_ROWS rows at a time: their margins (four rows at a time: four independent dot products,
    in float64; fastdp_dot4 with AVX-512), their losses and derivatives (pointwise_rows: one vectorized loop), then their
    gradient (four rows at a time, re-read from L1) summed in X's dtype into g, added to acc after
    each group. Rows PREFETCH_BYTES ahead are prefetched while the margins are formed, so memory
    keeps streaming while the group's arithmetic runs.
    """
    cdef Py_ssize_t s, i, j, k, p, count, rows, pf_end
    cdef Py_ssize_t line = 64 // sizeof(floating)
    cdef Py_ssize_t ahead = (PREFETCH_BYTES + n * sizeof(floating) - 1) // (n * sizeof(floating))
    cdef double z0, z1, z2, z3
    cdef floating d0, d1, d2, d3
    cdef double z[GROUP_ROWS]
    cdef double yv[GROUP_ROWS]
    cdef double d[GROUP_ROWS]
    cdef floating dx[GROUP_ROWS]
    cdef double sums[2]
    cdef const floating* r0
    cdef const floating* r1
    cdef const floating* r2
    cdef const floating* r3
    cdef void* raw = malloc(n * sizeof(floating) + FASTDP_PAGE)
    cdef floating* g = <floating*> fastdp_page_aligned(raw)
    if g == NULL:
        return 1
    for j in range(n):
        g[j] = 0
    for j in range(n + 2):
        acc[j] = 0.0
    s = start
    while s < stop:
        count = min(<Py_ssize_t> GROUP_ROWS, stop - s)
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
            if rows == 4 and FASTDP_HAVE_DOT4:
                if floating is double:
                    fastdp_dot4_d(r0, n, coef, z + k)
                else:
                    fastdp_dot4_f(r0, n, coef, z + k)
                z[k] += intercept
                z[k + 1] += intercept
                z[k + 2] += intercept
                z[k + 3] += intercept
            elif rows == 4:
                r1 = r0 + n
                r2 = r1 + n
                r3 = r2 + n
                z0 = intercept
                z1 = intercept
                z2 = intercept
                z3 = intercept
                for j in range(n):
                    z0 += r0[j] * coef[j]
                    z1 += r1[j] * coef[j]
                    z2 += r2[j] * coef[j]
                    z3 += r3[j] * coef[j]
                z[k] = z0
                z[k + 1] = z1
                z[k + 2] = z2
                z[k + 3] = z3
            else:
                for i in range(rows):
                    z0 = intercept
                    for j in range(n):
                        z0 += r0[j] * coef[j]
                    z[k + i] = z0
                    r0 += n
            k += rows
        for k in range(count):
            yv[k] = y[s + k]
        pointwise_rows(loss, z, yv, count, d, sums)
        acc[n] += sums[0]
        acc[n + 1] += sums[1]
        for k in range(count):
            dx[k] = <floating> d[k]
        k = 0
        r0 = X + s * n
        while k + 4 <= count:
            r1 = r0 + n
            r2 = r1 + n
            r3 = r2 + n
            d0 = dx[k]
            d1 = dx[k + 1]
            d2 = dx[k + 2]
            d3 = dx[k + 3]
            for j in range(n):
                g[j] += (d0 * r0[j] + d1 * r1[j]) + (d2 * r2[j] + d3 * r3[j])
            r0 = r3 + n
            k += 4
        while k < count:
            d0 = dx[k]
            for j in range(n):
                g[j] += d0 * r0[j]
            r0 += n
            k += 1
        for j in range(n):
            acc[j] += g[j]
            g[j] = 0
        s += count
    free(raw)
    return 0


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
    cdef int failed = 0
    if m == 0:
        return
    cdef const floating* Xp = &X[0, 0]
    cdef const floating* yp = &y[0]
    cdef const double* cp = &coef[0]
    cdef double* op = &out[0, 0]
    with nogil:
        for b in prange(n_blocks, schedule="static"):
            start = b * block_rows
            failed += _block_sums(loss, Xp, yp, cp, intercept, start, min(start + block_rows, m), m,
                                  n, op + b * (n + 2))
    if failed:
        raise MemoryError(f"could not allocate a ({n},) gradient in {failed} block(s)")


cdef int _softmax_block_sums(const floating* X, const Py_ssize_t* y, const double* coef_t,
                             const double* intercept, Py_ssize_t start, Py_ssize_t stop,
                             Py_ssize_t n, Py_ssize_t K, double* acc) noexcept nogil:
    """Rows start..stop of X (m, n) row-major, labels y (m,), coef_t = coef.T (K, n) row-major,
    intercept (K,); acc (n*K + K + 1,) <- [grad_coef (n*K, row-major (n, K)), grad_intercept (K),
    loss]. Returns 1 if the block's (K, n) gradient and K margins could not be allocated (acc is
    then not written), else 0.

    A row's K margins are K dot products of x with the rows of coef_t; its gradient is added as
    grad_t[k] += d_k * x; both loops run over the n contiguous features, so they vectorize over n.
    """
    cdef Py_ssize_t i, j, k, nk = n * K
    cdef double zk, d
    cdef const floating* x
    cdef const double* w
    cdef double* g
    cdef void* raw = malloc((nk + K) * sizeof(double) + FASTDP_PAGE)
    cdef double* grad_t = <double*> fastdp_page_aligned(raw)
    cdef double* z
    if grad_t == NULL:
        return 1
    z = grad_t + nk
    for j in range(nk):
        grad_t[j] = 0.0
    for k in range(K + 1):
        acc[nk + k] = 0.0
    for i in range(start, stop):
        x = X + i * n
        for k in range(K):
            w = coef_t + k * n
            zk = intercept[k]
            for j in range(n):
                zk += x[j] * w[j]
            z[k] = zk
        acc[nk + K] += softmax_row(K, z, y[i])
        for k in range(K):
            d = z[k]
            g = grad_t + k * n
            acc[nk + k] += d
            for j in range(n):
                g[j] += d * x[j]
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
        for b in prange(n_blocks, schedule="static"):
            start = b * block_rows
            failed += _softmax_block_sums(Xp, yp, coef_t, ip, start, min(start + block_rows, m), n, K, op + b * width)
    free(coef_t)
    if failed:
        raise MemoryError(f"could not allocate a ({K}, {n}) gradient in {failed} block(s)")
