/* src/engine/simd_sum.h: the horizontal sums of 8 and 16 float lanes in the
 * order of _mm512_reduce_add_ps (lane i + lane i+8, then i + i+4, then
 * (0 + 2) + (1 + 3)), which llamafile's tinyBLAS and ggml's softmax use. The
 * engine's F32 tiles and its attention, softmax and SiLU kernels all reduce
 * through these, so the order is written once. x86-64 with GCC only. */
#ifndef EDGEC_ENGINE_SIMD_SUM_H
#define EDGEC_ENGINE_SIMD_SUM_H

#include <immintrin.h>

/* 8 lanes: (0..3 + 4..7), then (0 + 2, 1 + 3), then the pair */
__attribute__((target("avx2,fma"), always_inline)) static inline float ec_hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* 16 lanes: the two 256-bit halves added, then ec_hsum256 */
__attribute__((target("avx512f,avx2,fma"), always_inline)) static inline float
ec_hsum512(__m512 v)
{
    const __m256 lo = _mm512_castps512_ps256(v);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return ec_hsum256(_mm256_add_ps(lo, hi));
}

#endif
