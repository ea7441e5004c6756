/* Row-block arithmetic of the dense kernels (csrc/dense_loss.pyx), written with AVX-512
   intrinsics where the extension is built with them (-march=native on an AVX-512 machine), with
   plain loops otherwise. T is the dtype of X: float or double.

   fastdp_dot4_{d,f}(r, n, coef, b, z):
       r (4, n) row-major T, coef (n,) double, b (4,) double, z (4,) double OUT <- r @ coef + b,
       in float64. 8 lanes per row (float rows converted to double on load), the tail masked,
       the four rows' lanes summed together by one shuffle tree (compilers sum each row's vector
       on its own, about twice the shuffles), and b added to the four sums in one vector, written
       with one store. (Adding b after the store, element by element, read each margin back
       from a store still in flight: the kernels took 4-7% longer per row, interleaved A/B with
       one thread and X in L2.)
   fastdp_rows_grad_{d,f}(x, count, n, d, acc):
       x (count, n) row-major T, d (count,) T, acc (n,) double IN/OUT: acc += d @ x. With
       AVX-512 the sum over the rows is formed in T (count is small: a group of rows re-read
       from L1) and added to acc in double; columns go 4 vectors at a time with the rows
       outermost, so a row's weight is broadcast once and each of its vectors costs one load and
       one FMA, and the last columns go one (masked) vector at a time over four interleaved row
       accumulators. The plain loops add each row's products to acc in double.

   FASTDP_SIMD_ROWS is 1 where the AVX-512 forms are built, else 0 (fastdp.kernels' "auto"
   backend reads it through _cython_dense.SIMD_ROWS).

   Results do not depend on the thread count either way: every summation order is fixed by count
   and n. */
#ifndef FASTDP_SIMD_ROWS_H
#define FASTDP_SIMD_ROWS_H

#include <stddef.h>

#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define FASTDP_SIMD_ROWS 1

/* z[0..4) <- the sums of a0..a3's lanes + b[0..4). */
static inline void fastdp_hsum4(__m512d a0, __m512d a1, __m512d a2, __m512d a3, const double* b,
                                double* z) {
    __m512d s01 = _mm512_add_pd(_mm512_unpacklo_pd(a0, a1), _mm512_unpackhi_pd(a0, a1));
    __m512d s23 = _mm512_add_pd(_mm512_unpacklo_pd(a2, a3), _mm512_unpackhi_pd(a2, a3));
    /* 128-bit lanes of s01: partial sums of (a0, a1); of s23: of (a2, a3) */
    __m512d t = _mm512_add_pd(_mm512_shuffle_f64x2(s01, s23, 0x88),
                              _mm512_shuffle_f64x2(s01, s23, 0xDD));
    __m512d u = _mm512_add_pd(t, _mm512_shuffle_f64x2(t, t, 0xB1));
    /* u's lane 0 holds (a0, a1)'s sums, lane 2 (a2, a3)'s */
    __m256d s = _mm512_castpd512_pd256(
        _mm512_permutexvar_pd(_mm512_setr_epi64(0, 1, 4, 5, 0, 1, 4, 5), u));
    _mm256_storeu_pd(z, _mm256_add_pd(s, _mm256_loadu_pd(b)));
}

#define FASTDP_DOT4(NAME, T, LOAD, MASKED_LOAD)                                               \
static inline void NAME(const T* r, ptrdiff_t n, const double* coef, const double* b,        \
                        double* z) {                                                          \
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, c;                           \
    ptrdiff_t j = 0;                                                                          \
    for (; j + 8 <= n; j += 8) {                                                              \
        c = _mm512_loadu_pd(coef + j);                                                        \
        a0 = _mm512_fmadd_pd(LOAD(r + j), c, a0);                                             \
        a1 = _mm512_fmadd_pd(LOAD(r + n + j), c, a1);                                         \
        a2 = _mm512_fmadd_pd(LOAD(r + 2 * n + j), c, a2);                                     \
        a3 = _mm512_fmadd_pd(LOAD(r + 3 * n + j), c, a3);                                     \
    }                                                                                         \
    if (j < n) {                                                                              \
        __mmask8 k = (__mmask8) ((1u << (n - j)) - 1u);                                       \
        c = _mm512_maskz_loadu_pd(k, coef + j);                                               \
        a0 = _mm512_fmadd_pd(MASKED_LOAD(k, r + j), c, a0);                                   \
        a1 = _mm512_fmadd_pd(MASKED_LOAD(k, r + n + j), c, a1);                               \
        a2 = _mm512_fmadd_pd(MASKED_LOAD(k, r + 2 * n + j), c, a2);                           \
        a3 = _mm512_fmadd_pd(MASKED_LOAD(k, r + 3 * n + j), c, a3);                           \
    }                                                                                         \
    fastdp_hsum4(a0, a1, a2, a3, b, z);                                                       \
}
#define FASTDP_CVT_LOAD_F(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))
#define FASTDP_CVT_MASKED_LOAD_F(k, p) _mm512_cvtps_pd(_mm256_maskz_loadu_ps((k), (p)))
FASTDP_DOT4(fastdp_dot4_d, double, _mm512_loadu_pd, _mm512_maskz_loadu_pd)
FASTDP_DOT4(fastdp_dot4_f, float, FASTDP_CVT_LOAD_F, FASTDP_CVT_MASKED_LOAD_F)

/* acc[0 .. lanes) += a, where fewer than all lanes may be valid (mask m). */
static inline void fastdp_acc_add_d(double* acc, __m512d a, __mmask8 m) {
    _mm512_mask_storeu_pd(acc, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, acc), a));
}
static inline void fastdp_acc_add_f(double* acc, __m512 a, __mmask16 m) {
    __mmask8 lo = (__mmask8) m, hi = (__mmask8) (m >> 8);
    fastdp_acc_add_d(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(a)), lo);
    fastdp_acc_add_d(acc + 8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1)), hi);
}

#define FASTDP_ROWS_GRAD(NAME, T, V, L, MASK_T, ZERO, SET1, LOAD, MASKED_LOAD, FMADD, ADD, ACC) \
static inline void NAME(const T* x, ptrdiff_t count, ptrdiff_t n, const T* d, double* acc) {   \
    const MASK_T all = (MASK_T) ~(MASK_T) 0;                                                   \
    ptrdiff_t j = 0, k;                                                                        \
    for (; j + 4 * L <= n; j += 4 * L) {                                                       \
        V a0 = ZERO(), a1 = a0, a2 = a0, a3 = a0, w;                                           \
        const T* r = x + j;                                                                    \
        for (k = 0; k < count; k++, r += n) {                                                  \
            w = SET1(d[k]);                                                                    \
            a0 = FMADD(w, LOAD(r), a0);                                                        \
            a1 = FMADD(w, LOAD(r + L), a1);                                                    \
            a2 = FMADD(w, LOAD(r + 2 * L), a2);                                                \
            a3 = FMADD(w, LOAD(r + 3 * L), a3);                                                \
        }                                                                                      \
        ACC(acc + j, a0, all);                                                                 \
        ACC(acc + j + L, a1, all);                                                             \
        ACC(acc + j + 2 * L, a2, all);                                                         \
        ACC(acc + j + 3 * L, a3, all);                                                         \
    }                                                                                          \
    for (; j < n; j += L) {                                                                    \
        MASK_T m = n - j >= L ? all : (MASK_T) ((1u << (n - j)) - 1u);                         \
        V a0 = ZERO(), a1 = a0, a2 = a0, a3 = a0;                                              \
        const T* r = x + j;                                                                    \
        for (k = 0; k + 4 <= count; k += 4, r += 4 * n) {                                      \
            a0 = FMADD(SET1(d[k]), MASKED_LOAD(m, r), a0);                                     \
            a1 = FMADD(SET1(d[k + 1]), MASKED_LOAD(m, r + n), a1);                             \
            a2 = FMADD(SET1(d[k + 2]), MASKED_LOAD(m, r + 2 * n), a2);                         \
            a3 = FMADD(SET1(d[k + 3]), MASKED_LOAD(m, r + 3 * n), a3);                         \
        }                                                                                      \
        for (; k < count; k++, r += n)                                                         \
            a0 = FMADD(SET1(d[k]), MASKED_LOAD(m, r), a0);                                     \
        ACC(acc + j, ADD(ADD(a0, a1), ADD(a2, a3)), m);                                        \
    }                                                                                          \
}
FASTDP_ROWS_GRAD(fastdp_rows_grad_d, double, __m512d, 8, __mmask8, _mm512_setzero_pd,
                 _mm512_set1_pd, _mm512_loadu_pd, _mm512_maskz_loadu_pd, _mm512_fmadd_pd,
                 _mm512_add_pd, fastdp_acc_add_d)
FASTDP_ROWS_GRAD(fastdp_rows_grad_f, float, __m512, 16, __mmask16, _mm512_setzero_ps,
                 _mm512_set1_ps, _mm512_loadu_ps, _mm512_maskz_loadu_ps, _mm512_fmadd_ps,
                 _mm512_add_ps, fastdp_acc_add_f)

#else
#define FASTDP_SIMD_ROWS 0

#define FASTDP_PLAIN_ROWS(T, DOT4, ROWS_GRAD)                                                 \
static inline void DOT4(const T* r, ptrdiff_t n, const double* coef, const double* b,        \
                        double* z) {                                                          \
    double z0 = 0.0, z1 = 0.0, z2 = 0.0, z3 = 0.0;                                            \
    for (ptrdiff_t j = 0; j < n; j++) {                                                       \
        z0 += r[j] * coef[j];                                                                 \
        z1 += r[n + j] * coef[j];                                                             \
        z2 += r[2 * n + j] * coef[j];                                                         \
        z3 += r[3 * n + j] * coef[j];                                                         \
    }                                                                                         \
    z[0] = z0 + b[0]; z[1] = z1 + b[1]; z[2] = z2 + b[2]; z[3] = z3 + b[3];                   \
}                                                                                             \
static inline void ROWS_GRAD(const T* x, ptrdiff_t count, ptrdiff_t n, const T* d,            \
                             double* acc) {                                                   \
    for (ptrdiff_t k = 0; k < count; k++, x += n)                                             \
        for (ptrdiff_t j = 0; j < n; j++)                                                     \
            acc[j] += (double) (d[k] * x[j]);                                                 \
}
FASTDP_PLAIN_ROWS(double, fastdp_dot4_d, fastdp_rows_grad_d)
FASTDP_PLAIN_ROWS(float, fastdp_dot4_f, fastdp_rows_grad_f)
#endif

#endif
