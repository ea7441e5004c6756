/* Sparse dot products of the wide-CSR kernels (csrc/sparse_loss.pyx), written with AVX-512
   gathers where the extension is built with them (-march=native on an AVX-512 machine), with a
   plain loop otherwise.

   fastdp_gather_dot_{d,f}{32,64}(v, idx, count, x) -> double:
       v (count,) T (d: double, f: float), idx (count,) int32_t or int64_t, x (*) double:
       the sum over p of v[p] * x[idx[p]], in float64.
       With AVX-512: 8 products per step, one gather of x, v converted to double on load, the
       tail masked; the 8 lanes are summed once at the end. Used for a CSR row's margin (x is
       coef, 8 MiB at 2**20 features) and for a column's gradient (x is the rows' derivatives).
       A scratch C version of the two passes (2e5 x 2**20 hashed text, 100 non-zeros a row, 2
       threads, interleaved rounds, 2026-12-07) took 15.5-15.8 ms for the margins with gathers
       against 17.8-18.7 ms with a scalar loop, and 12.9-13.4 ms for the gradient against
       15.8 ms; software prefetches of the next rows' coef made both slower (22-23 and 21 ms).

   The order of every sum is fixed by count, so results do not depend on the thread count. */
#ifndef FASTDP_SIMD_GATHER_H
#define FASTDP_SIMD_GATHER_H

#include <stddef.h>
#include <stdint.h>

#if defined(__AVX512F__) && defined(__AVX512VL__)
#include <immintrin.h>

#define FASTDP_LOAD_D(k, p) _mm512_maskz_loadu_pd((k), (p))
#define FASTDP_LOAD_F(k, p) _mm512_cvtps_pd(_mm256_maskz_loadu_ps((k), (p)))
#define FASTDP_GATHER_32(k, i, x)                                                             \
    _mm512_mask_i32gather_pd(_mm512_setzero_pd(), (k), _mm256_maskz_loadu_epi32((k), (i)), (x), 8)
#define FASTDP_GATHER_64(k, i, x)                                                             \
    _mm512_mask_i64gather_pd(_mm512_setzero_pd(), (k), _mm512_maskz_loadu_epi64((k), (i)), (x), 8)

#define FASTDP_GATHER_DOT(NAME, T, I, LOAD, GATHER)                                           \
static inline double NAME(const T* v, const I* idx, ptrdiff_t count, const double* x) {       \
    __m512d a = _mm512_setzero_pd();                                                          \
    ptrdiff_t p = 0;                                                                          \
    for (; p + 8 <= count; p += 8)                                                            \
        a = _mm512_fmadd_pd(LOAD(0xFF, v + p), GATHER(0xFF, idx + p, x), a);                  \
    if (p < count) {                                                                          \
        __mmask8 k = (__mmask8) ((1u << (count - p)) - 1u);                                   \
        a = _mm512_fmadd_pd(LOAD(k, v + p), GATHER(k, idx + p, x), a);                        \
    }                                                                                         \
    return _mm512_reduce_add_pd(a);                                                           \
}

#else

#define FASTDP_GATHER_DOT(NAME, T, I, LOAD, GATHER)                                           \
static inline double NAME(const T* v, const I* idx, ptrdiff_t count, const double* x) {       \
    double s = 0.0;                                                                           \
    for (ptrdiff_t p = 0; p < count; p++)                                                     \
        s += (double) v[p] * x[idx[p]];                                                       \
    return s;                                                                                 \
}

#endif

FASTDP_GATHER_DOT(fastdp_gather_dot_d32, double, int32_t, FASTDP_LOAD_D, FASTDP_GATHER_32)
FASTDP_GATHER_DOT(fastdp_gather_dot_d64, double, int64_t, FASTDP_LOAD_D, FASTDP_GATHER_64)
FASTDP_GATHER_DOT(fastdp_gather_dot_f32, float, int32_t, FASTDP_LOAD_F, FASTDP_GATHER_32)
FASTDP_GATHER_DOT(fastdp_gather_dot_f64, float, int64_t, FASTDP_LOAD_F, FASTDP_GATHER_64)

#endif
