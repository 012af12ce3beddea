/* Quantized matmuls in llama.cpp's order: activations quantized to Q8_0 or
 * Q8_K blocks (int8 + scale), integer block dot products, and the float
 * steps ggml-cpu's x86 AVX2 kernels take (vec_dot_q*_q8_* and llamafile's
 * tinyBLAS_Q0 share them):
 *
 *   per block b and lane m < 8: isum[b][m] = sum of the integer products of
 *   the elements whose position within their 32-element group is 4m..4m+3
 *   (scaled by the sub-block scale for K-quants), then
 *   acc[m] = fmaf(d_b, (float)isum[b][m], acc[m]) in block order, and
 *   result = ((acc0+acc4) + (acc2+acc6)) + ((acc1+acc5) + (acc3+acc7)).
 *
 * The integer sums are exact in any order, so only this float part fixes
 * the bits. The K-quants' mins (dmin x min x the activations' sub-block
 * sums, per block) enter where ggml's kernel puts them:
 *   Q4_K  four more lanes (ggml's acc_m), (m0+m2)+(m1+m3) added after hsum;
 *   Q5_K  one float, summs = fmaf(dmin, (float)sum_j min_j bsum_j, summs)
 *         (ggml writes summs += dmin * int; gcc contracts it to that fma),
 *         added after hsum;
 *   Q2_K  the same eight lanes, before d x isum: lane m gets dmin x
 *         (min_2m bsum_2m + min_2m+1 bsum_2m+1) over 16-element groups;
 *   Q3_K, Q6_K  none (signed values).
 * Weights: Q4_0, Q5_0, Q8_0 (with Q8_0 activations), Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K (Q8_K). The scalar kernels are the definition; the AVX2
 * kernels (rows unpacked once, four tokens per weight load) compute the
 * same integer lanes with maddubs/madd and the same float steps, and so do
 * the AVX-512 VNNI tiles (below), so every level gives the same bits
 * (test_engine checks this per type). No maddubs pair can saturate int16:
 * with Q8_K values within -127..127 the largest is Q6_K's 2 x 32 x 255 at
 * level 2 (activations as q + 128); Q2_K 0..3, Q3_K -4..3 and Q5_K 0..31
 * stay further below. Each (row, token) output is computed by one thread,
 * so results do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "edgec/engine.h"
#include "edgec/fp16.h"
#include "edgec/quant.h"
#include "src/core/clones.h"
#include "src/core/cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define EC_QDOT_X86 1
#include <immintrin.h>
#endif

/* 64-byte aligned blocks: the kernels load 32 or 64 bytes at a time, and
 * loads across a cache line cost double */
static void *qd_alloc64(size_t bytes)
{
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

bool ec_qdot_supported(enum ec_dtype t, int64_t n_in)
{
    switch (t) {
    case EC_Q4_0:
    case EC_Q5_0:
    case EC_Q8_0:
        return n_in > 0 && n_in % 32 == 0;
    case EC_Q2_K:
    case EC_Q3_K:
    case EC_Q4_K:
    case EC_Q5_K:
    case EC_Q6_K:
        return n_in > 0 && n_in % 256 == 0;
    default:
        return false;
    }
}

/* ---- activations ---- */

/* a rounded value as int8 without undefined behaviour: NaN (from NaN or
 * infinite activations) becomes 0, the rest saturates as ggml's packs do */
static inline int8_t to_i8(float v)
{
    if (!(v == v))
        return 0;
    return (int8_t)(v >= 127.0f ? 127.0f : v <= -128.0f ? -128.0f : v);
}

/* Q8_0 as ggml-cpu's x86 quantize_row_q8_0: id = 127 / amax, q = round
 * half to even (x * id), d stored as fp16. (The AVX2 clones round with
 * vroundps instead of a libm call; same values.) */
EC_AVX2_CLONES
static void act_q8_0(const float *x, int64_t n, int8_t *q, float *d)
{
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float ax = fabsf(xb[j]);
            amax = ax > amax ? ax : amax;
        }
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        d[b] = ec_fp16_to_fp32(ec_fp32_to_fp16(amax / 127.0f));
        for (int j = 0; j < 32; j++)
            q[b * 32 + j] = to_i8(rintf(xb[j] * id));
    }
}

/* Q8_K as quantize_row_q8_K_ref: iscale = -127 / (value of largest
 * magnitude), q = nearest(iscale x) capped at 127, d = 1 / iscale */
EC_AVX2_CLONES
static void act_q8_k(const float *x, int64_t n, int8_t *q, float *d)
{
    for (int64_t b = 0; b < n / 256; b++) {
        const float *xb = x + b * 256;
        float amax = 0.0f, mx = 0.0f;
        for (int j = 0; j < 256; j++) {
            const float ax = fabsf(xb[j]);
            if (ax > amax) {
                amax = ax;
                mx = xb[j];
            }
        }
        if (amax == 0.0f) {
            d[b] = 0.0f;
            memset(q + b * 256, 0, 256);
            continue;
        }
        const float iscale = -127.0f / mx;
        d[b] = 1.0f / iscale;
        for (int j = 0; j < 256; j++) {
            q[b * 256 + j] = to_i8(rintf(iscale * xb[j])); /* capped at 127 as ggml */
        }
    }
}

/* ---- the float steps ---- */

static inline float hsum8(const float *a)
{
    const float r0 = a[4] + a[0], r1 = a[5] + a[1], r2 = a[6] + a[2], r3 = a[7] + a[3];
    return (r0 + r2) + (r1 + r3);
}

static inline void lanes_fma(float *acc, float d, const int32_t *isum)
{
    for (int m = 0; m < 8; m++)
        acc[m] = fmaf(d, (float)isum[m], acc[m]);
}

/* ---- weights unpacked to signed int8, one 32-element block ---- */

static void unpack_legacy(enum ec_dtype t, const uint8_t *blk, int8_t *w, float *dw)
{
    switch (t) {
    case EC_Q4_0: {
        const struct ec_block_q4_0 *b = (const void *)blk;
        *dw = ec_fp16_to_fp32(b->d);
        for (int j = 0; j < 16; j++) {
            w[j] = (int8_t)((b->qs[j] & 15) - 8);
            w[j + 16] = (int8_t)((b->qs[j] >> 4) - 8);
        }
        return;
    }
    case EC_Q5_0: {
        const struct ec_block_q5_0 *b = (const void *)blk;
        *dw = ec_fp16_to_fp32(b->d);
        const uint32_t qh = (uint32_t)b->qh[0] | (uint32_t)b->qh[1] << 8 |
                            (uint32_t)b->qh[2] << 16 | (uint32_t)b->qh[3] << 24;
        for (int j = 0; j < 16; j++) {
            w[j] = (int8_t)(((b->qs[j] & 15) | ((qh >> j) & 1) << 4) - 16);
            w[j + 16] = (int8_t)(((b->qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16);
        }
        return;
    }
    default: { /* EC_Q8_0 */
        const struct ec_block_q8_0 *b = (const void *)blk;
        *dw = ec_fp16_to_fp32(b->d);
        memcpy(w, b->qs, 32);
        return;
    }
    }
}

/* one row of a Q4_0 / Q5_0 / Q8_0 weight against a Q8_0 activation row */
static float dot_legacy(enum ec_dtype t, const uint8_t *row, size_t blk_bytes, const int8_t *q,
                        const float *dq, int64_t n_blocks)
{
    float acc[8] = {0};
    for (int64_t b = 0; b < n_blocks; b++) {
        int8_t w[32];
        float dw;
        unpack_legacy(t, row + (size_t)b * blk_bytes, w, &dw);
        int32_t isum[8];
        for (int m = 0; m < 8; m++) {
            int32_t s = 0;
            for (int e = 4 * m; e < 4 * m + 4; e++)
                s += (int32_t)w[e] * q[b * 32 + e];
            isum[m] = s;
        }
        lanes_fma(acc, dw * dq[b], isum);
    }
    return hsum8(acc);
}

/* Q4_K's 6-bit scales and mins of sub-block j */
static void q4k_scale_min(const uint8_t *s, int j, int *sc, int *mn)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static float dot_q4_k(const uint8_t *row, const int8_t *q, const float *dq, int64_t n_blocks)
{
    float acc[8] = {0}, acc_m[4] = {0};
    for (int64_t b = 0; b < n_blocks; b++) {
        const struct ec_block_q4_k *x = (const void *)(row + (size_t)b * sizeof *x);
        const int8_t *qb = q + b * 256;
        const float d = dq[b] * ec_fp16_to_fp32(x->d);
        const float dmin = -dq[b] * ec_fp16_to_fp32(x->dmin);
        int sc[8], mn[8];
        for (int j = 0; j < 8; j++)
            q4k_scale_min(x->scales, j, &sc[j], &mn[j]);
        /* mins: lane i pairs sub-blocks 2i and 2i+1 with their q8 sums */
        int32_t s8[8];
        for (int j = 0; j < 8; j++) {
            int32_t s = 0;
            for (int e = 0; e < 32; e++)
                s += qb[32 * j + e];
            s8[j] = s;
        }
        for (int i = 0; i < 4; i++)
            acc_m[i] = fmaf(dmin, (float)(mn[2 * i] * s8[2 * i] + mn[2 * i + 1] * s8[2 * i + 1]),
                            acc_m[i]);
        int32_t isum[8] = {0};
        for (int j = 0; j < 4; j++) {
            const uint8_t *qs = x->qs + 32 * j;
            for (int m = 0; m < 8; m++) {
                int32_t lo = 0, hi = 0;
                for (int e = 4 * m; e < 4 * m + 4; e++) {
                    lo += (qs[e] & 15) * qb[64 * j + e];
                    hi += (qs[e] >> 4) * qb[64 * j + 32 + e];
                }
                isum[m] += sc[2 * j] * lo + sc[2 * j + 1] * hi;
            }
        }
        lanes_fma(acc, d, isum);
    }
    const float m = (acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]);
    return hsum8(acc) + m;
}

/* The quant value of element e (0..255) of a Q2_K / Q3_K / Q5_K block, as
 * the dequantizers read it. Q2_K and Q3_K: per 128-element half h, byte k of
 * the half's 32 bytes holds elements 128 h + 32 s + k in its 2-bit fields s;
 * Q3_K's third bit is bit 4 h + s of hmask[k] (clear: minus 4). Q5_K: as
 * Q4_K, plus bit j of qh[l] as the fifth bit of element 32 j + l. */
static inline int q2k_value(const struct ec_block_q2_k *x, int e)
{
    const int h = e / 128, s = e % 128 / 32, k = e % 32;
    return (x->qs[32 * h + k] >> (2 * s)) & 3;
}

static inline int q3k_value(const struct ec_block_q3_k *x, int e)
{
    const int h = e / 128, s = e % 128 / 32, k = e % 32;
    const int lo = (x->qs[32 * h + k] >> (2 * s)) & 3;
    return (x->hmask[k] >> (4 * h + s)) & 1 ? lo : lo - 4;
}

/* Q3_K's scale of 16-element group j: 4 low bits from bytes 0..7 (low
 * nibbles for j < 8, high ones after), 2 high bits from bytes 8..11; the
 * 6-bit value minus 32 */
static inline int q3k_scale(const uint8_t *s, int j)
{
    const int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | hi << 4) - 32;
}

static inline int q5k_value(const struct ec_block_q5_k *x, int e)
{
    const int j = e / 32, l = e % 32;
    const int lo = (x->qs[32 * (j / 2) + l] >> (4 * (j & 1))) & 15;
    return lo | ((x->qh[l] >> j) & 1) << 4;
}

/* Q2_K: the mins go into the SAME eight lanes as the scaled products, first:
 * lane m gets dmin x (min_2m bsum_2m + min_2m+1 bsum_2m+1), where bsum_g is
 * the sum of the activations of 16-element group g, then d x isum[m]. */
static float dot_q2_k(const uint8_t *row, const int8_t *q, const float *dq, int64_t n_blocks)
{
    float acc[8] = {0};
    for (int64_t b = 0; b < n_blocks; b++) {
        const struct ec_block_q2_k *x = (const void *)(row + (size_t)b * sizeof *x);
        const int8_t *qb = q + b * 256;
        const float d = dq[b] * ec_fp16_to_fp32(x->d);
        const float dmin = -dq[b] * ec_fp16_to_fp32(x->dmin);
        int32_t mins[8];
        for (int m = 0; m < 8; m++) {
            int32_t s = 0;
            for (int g = 2 * m; g < 2 * m + 2; g++) {
                int32_t bsum = 0;
                for (int e = 16 * g; e < 16 * g + 16; e++)
                    bsum += qb[e];
                s += (x->scales[g] >> 4) * bsum;
            }
            mins[m] = s;
        }
        lanes_fma(acc, dmin, mins);
        int32_t isum[8] = {0};
        for (int e = 0; e < 256; e++)
            isum[e % 32 / 4] += (x->scales[e / 16] & 15) * q2k_value(x, e) * qb[e];
        lanes_fma(acc, d, isum);
    }
    return hsum8(acc);
}

/* Q3_K: no mins; the signed scales and values in the eight lanes */
static float dot_q3_k(const uint8_t *row, const int8_t *q, const float *dq, int64_t n_blocks)
{
    float acc[8] = {0};
    for (int64_t b = 0; b < n_blocks; b++) {
        const struct ec_block_q3_k *x = (const void *)(row + (size_t)b * sizeof *x);
        const int8_t *qb = q + b * 256;
        const float d = dq[b] * ec_fp16_to_fp32(x->d);
        int sc[16];
        for (int j = 0; j < 16; j++)
            sc[j] = q3k_scale(x->scales, j);
        int32_t isum[8] = {0};
        for (int e = 0; e < 256; e++)
            isum[e % 32 / 4] += sc[e / 16] * q3k_value(x, e) * qb[e];
        lanes_fma(acc, d, isum);
    }
    return hsum8(acc);
}

/* Q5_K: the mins in ONE float, fused per block (dmin x the block's integer
 * sum over sub-blocks of min_j x sum of their activations) and added after
 * the horizontal sum */
static float dot_q5_k(const uint8_t *row, const int8_t *q, const float *dq, int64_t n_blocks)
{
    float acc[8] = {0}, summs = 0.0f;
    for (int64_t b = 0; b < n_blocks; b++) {
        const struct ec_block_q5_k *x = (const void *)(row + (size_t)b * sizeof *x);
        const int8_t *qb = q + b * 256;
        const float d = dq[b] * ec_fp16_to_fp32(x->d);
        const float dmin = -dq[b] * ec_fp16_to_fp32(x->dmin);
        int sc[8], mn[8];
        for (int j = 0; j < 8; j++)
            q4k_scale_min(x->scales, j, &sc[j], &mn[j]);
        int32_t msum = 0;
        for (int j = 0; j < 8; j++) {
            int32_t s = 0;
            for (int e = 32 * j; e < 32 * j + 32; e++)
                s += qb[e];
            msum += mn[j] * s;
        }
        summs = fmaf(dmin, (float)msum, summs);
        int32_t isum[8] = {0};
        for (int e = 0; e < 256; e++)
            isum[e % 32 / 4] += sc[e / 32] * q5k_value(x, e) * qb[e];
        lanes_fma(acc, d, isum);
    }
    return hsum8(acc) + summs;
}

static float dot_q6_k(const uint8_t *row, const int8_t *q, const float *dq, int64_t n_blocks)
{
    float acc[8] = {0};
    for (int64_t b = 0; b < n_blocks; b++) {
        const struct ec_block_q6_k *x = (const void *)(row + (size_t)b * sizeof *x);
        const int8_t *qb = q + b * 256;
        const float d = dq[b] * ec_fp16_to_fp32(x->d);
        int32_t isum[8] = {0};
        for (int h = 0; h < 2; h++) { /* 128-element halves */
            const uint8_t *ql = x->ql + 64 * h, *qh = x->qh + 32 * h;
            for (int v = 0; v < 4; v++) { /* 32-element vectors */
                for (int m = 0; m < 8; m++) {
                    for (int e = 4 * m; e < 4 * m + 4; e++) {
                        const int l = e; /* position in the vector */
                        int w;
                        switch (v) {
                        case 0: w = (ql[l] & 15) | ((qh[l] & 3) << 4); break;
                        case 1: w = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4); break;
                        case 2: w = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4); break;
                        default: w = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4); break;
                        }
                        const int elem = 128 * h + 32 * v + l;
                        isum[m] += x->scales[elem / 16] * (w - 32) * qb[elem];
                    }
                }
            }
        }
        lanes_fma(acc, d, isum);
    }
    return hsum8(acc);
}

/* ---- AVX2 versions: the integer lane sums computed with maddubs / madd
 * (bytes 4m..4m+3 of each 32-byte vector land in 32-bit lane m, as in the
 * scalar loops), then the same float steps ---- */

#ifdef EC_QDOT_X86
#define QD_AVX2 __attribute__((target("avx2,fma")))
#define QD_AVX2_IN __attribute__((target("avx2,fma"), always_inline)) static inline

QD_AVX2 static inline float hsum8_avx2(__m256 acc)
{
    float a[8];
    _mm256_storeu_ps(a, acc);
    return hsum8(a);
}

/* 8 int32 lanes: lane m = sum over bytes 4m..4m+3 of w * q (w, q signed) */
QD_AVX2 static inline __m256i dot_i8_lanes(__m256i w, __m256i q)
{
    const __m256i ax = _mm256_sign_epi8(w, w);
    const __m256i sy = _mm256_sign_epi8(q, w);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

QD_AVX2 static inline __m256i legacy_w_avx2(enum ec_dtype t, const uint8_t *blk, float *dw)
{
    if (t == EC_Q8_0) {
        const struct ec_block_q8_0 *b = (const void *)blk;
        *dw = ec_fp16_to_fp32(b->d);
        return _mm256_loadu_si256((const __m256i *)(const void *)b->qs);
    }
    const uint8_t *qs;
    uint32_t qh = 0;
    if (t == EC_Q4_0) {
        const struct ec_block_q4_0 *b = (const void *)blk;
        *dw = ec_fp16_to_fp32(b->d);
        qs = b->qs;
    } else {
        const struct ec_block_q5_0 *b = (const void *)blk;
        *dw = ec_fp16_to_fp32(b->d);
        qs = b->qs;
        qh = (uint32_t)b->qh[0] | (uint32_t)b->qh[1] << 8 | (uint32_t)b->qh[2] << 16 |
             (uint32_t)b->qh[3] << 24;
    }
    const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)qs);
    const __m128i m4 = _mm_set1_epi8(15);
    __m256i v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
    if (t == EC_Q4_0)
        return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
    /* fifth bits: byte j gets bit j of qh */
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i h = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    h = _mm256_cmpeq_epi8(_mm256_and_si256(h, bits), bits); /* 0xFF where set */
    v = _mm256_or_si256(v, _mm256_and_si256(h, _mm256_set1_epi8(16)));
    return _mm256_sub_epi8(v, _mm256_set1_epi8(16));
}

/* a Q4_0 / Q5_0 / Q8_0 row unpacked once: signed values, fp16 scales */
QD_AVX2 static void legacy_unpack_row(enum ec_dtype t, const uint8_t *row, size_t blk_bytes,
                                      int64_t n_blocks, int8_t *w, float *dw)
{
    for (int64_t b = 0; b < n_blocks; b++)
        _mm256_storeu_si256((__m256i *)(void *)(w + 32 * b),
                            legacy_w_avx2(t, row + (size_t)b * blk_bytes, &dw[b]));
}

/* four tokens at once (ldq apart): each weight vector is loaded once */
QD_AVX2 static void dot4_legacy_avx2(const int8_t *w, const float *dw, const int8_t *q,
                                     int64_t ldq, const float *dq, int64_t lddq, int64_t n_blocks,
                                     float *out)
{
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int64_t b = 0; b < n_blocks; b++) {
        const __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + b * 32));
        const __m256i ax = _mm256_sign_epi8(wv, wv);
        for (int u = 0; u < 4; u++) {
            const __m256i qv =
                _mm256_loadu_si256((const __m256i *)(const void *)(q + u * ldq + b * 32));
            const __m256i sy = _mm256_sign_epi8(qv, wv);
            const __m256i l =
                _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
            acc[u] = _mm256_fmadd_ps(_mm256_set1_ps(dw[b] * dq[u * lddq + b]),
                                     _mm256_cvtepi32_ps(l), acc[u]);
        }
    }
    for (int u = 0; u < 4; u++)
        out[u] = hsum8_avx2(acc[u]);
}

QD_AVX2 static float dot_legacy_avx2(const int8_t *w, const float *dw, const int8_t *q,
                                     const float *dq, int64_t n_blocks)
{
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b++) {
        const __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + b * 32));
        const __m256i qv = _mm256_loadu_si256((const __m256i *)(const void *)(q + b * 32));
        const __m256 f = _mm256_cvtepi32_ps(dot_i8_lanes(wv, qv));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw[b] * dq[b]), f, acc);
    }
    return hsum8_avx2(acc);
}

/* K-quant rows are unpacked once per row (values, scales, mins, fp16
 * scales as float) and the activations' 32-element sums once per token, so
 * the per-(row, token) work is the integer products and the float steps. */
struct kq_row {
    uint8_t *w;   /* [n] quant values, element order: Q2_K 0..3, Q3_K -4..3
                     (as int8), Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 */
    int16_t *sc;  /* [nb][16]: Q4_K 8 scales + 8 mins, Q6_K 16 scales; Q2_K
                     16 mins, Q5_K 8 mins */
    int16_t *scv; /* Q2_K, Q3_K, Q5_K: [n / 32][16], each 32-element chunk's
                     scale of each int16 pair (a madd operand) */
    float *dw;    /* [nb][2]: fp16 d and dmin as floats */
};

static void kq_unpack_row(enum ec_dtype t, const uint8_t *row, int64_t nb, struct kq_row *k)
{
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *w = k->w + b * 256;
        int16_t *sc = k->sc + b * 16;
        if (t == EC_Q4_K) {
            const struct ec_block_q4_k *x = (const void *)(row + (size_t)b * sizeof *x);
            k->dw[2 * b] = ec_fp16_to_fp32(x->d);
            k->dw[2 * b + 1] = ec_fp16_to_fp32(x->dmin);
            for (int j = 0; j < 8; j++) {
                int s_, m_;
                q4k_scale_min(x->scales, j, &s_, &m_);
                sc[j] = (int16_t)s_;
                sc[8 + j] = (int16_t)m_;
            }
            for (int j = 0; j < 4; j++)
                for (int e = 0; e < 32; e++) {
                    w[64 * j + e] = x->qs[32 * j + e] & 15;
                    w[64 * j + 32 + e] = x->qs[32 * j + e] >> 4;
                }
        } else {
            const struct ec_block_q6_k *x = (const void *)(row + (size_t)b * sizeof *x);
            k->dw[2 * b] = ec_fp16_to_fp32(x->d);
            for (int j = 0; j < 16; j++)
                sc[j] = x->scales[j];
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = x->ql + 64 * h, *qh = x->qh + 32 * h;
                for (int l = 0; l < 32; l++) {
                    uint8_t *o = w + 128 * h + l;
                    o[0] = (uint8_t)((ql[l] & 15) | ((qh[l] & 3) << 4));
                    o[32] = (uint8_t)((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4));
                    o[64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                    o[96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
                }
            }
        }
    }
}

/* One Q2_K / Q3_K / Q5_K block (both levels unpack through this): its eight
 * 32-element chunks as values (Q2_K 0..3, Q3_K -4..3, Q5_K 0..31), each
 * chunk's scales per int16 pair as a madd operand (Q2_K, Q3_K one per 16
 * elements, so two per chunk; Q5_K one per chunk), the mins (Q2_K 16, Q5_K
 * 8, Q3_K none) and the fp16 d and dmin as floats. The bit fields are split
 * with a 16-bit shift and a byte mask, which keeps each byte's own bits. */
QD_AVX2_IN void k235_block(enum ec_dtype t, const uint8_t *blk, __m256i v[8], __m256i scv[8],
                           int16_t mins[16], float *d, float *dmin)
{
    const __m256i m3 = _mm256_set1_epi8(3), m15 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    if (t == EC_Q5_K) {
        const struct ec_block_q5_k *x = (const void *)blk;
        *d = ec_fp16_to_fp32(x->d);
        *dmin = ec_fp16_to_fp32(x->dmin);
        for (int j = 0; j < 8; j++) {
            int s_, m_;
            q4k_scale_min(x->scales, j, &s_, &m_);
            scv[j] = _mm256_set1_epi16((short)s_);
            mins[j] = (int16_t)m_;
        }
        const __m256i hb = _mm256_loadu_si256((const __m256i *)(const void *)x->qh);
        for (int j = 0; j < 4; j++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(x->qs + 32 * j));
            const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * j), one);
            const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * j + 1), one);
            v[2 * j] = _mm256_or_si256(_mm256_and_si256(raw, m15), _mm256_slli_epi16(h0, 4));
            v[2 * j + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m15),
                                           _mm256_slli_epi16(h1, 4));
        }
        return;
    }
    int s16[16];
    const uint8_t *qs;
    __m256i hb = _mm256_setzero_si256();
    if (t == EC_Q2_K) {
        const struct ec_block_q2_k *x = (const void *)blk;
        *d = ec_fp16_to_fp32(x->d);
        *dmin = ec_fp16_to_fp32(x->dmin);
        for (int g = 0; g < 16; g++) {
            s16[g] = x->scales[g] & 15;
            mins[g] = (int16_t)(x->scales[g] >> 4);
        }
        qs = x->qs;
    } else { /* Q3_K */
        const struct ec_block_q3_k *x = (const void *)blk;
        *d = ec_fp16_to_fp32(x->d);
        *dmin = 0.0f;
        for (int g = 0; g < 16; g++)
            s16[g] = q3k_scale(x->scales, g);
        qs = x->qs;
        hb = _mm256_loadu_si256((const __m256i *)(const void *)x->hmask);
    }
    for (int c = 0; c < 8; c++)
        scv[c] = _mm256_set_m128i(_mm_set1_epi16((short)s16[2 * c + 1]),
                                  _mm_set1_epi16((short)s16[2 * c]));
    for (int h = 0; h < 2; h++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * h));
        for (int f = 0; f < 4; f++) {
            __m256i x = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * f), m3);
            if (t == EC_Q3_K) { /* third bit clear: minus 4 */
                const __m256i bit = _mm256_and_si256(_mm256_srli_epi16(hb, 4 * h + f), one);
                x = _mm256_sub_epi8(_mm256_or_si256(x, _mm256_slli_epi16(bit, 2)),
                                    _mm256_set1_epi8(4));
            }
            v[4 * h + f] = x;
        }
    }
}

/* level 1: a Q2_K / Q3_K / Q5_K row unpacked once */
QD_AVX2 static void kq_unpack_row_235(enum ec_dtype t, const uint8_t *row, size_t blk_bytes,
                                      int64_t nb, struct kq_row *k)
{
    for (int64_t b = 0; b < nb; b++) {
        __m256i v[8], scv[8];
        k235_block(t, row + (size_t)b * blk_bytes, v, scv, k->sc + b * 16, &k->dw[2 * b],
                   &k->dw[2 * b + 1]);
        for (int c = 0; c < 8; c++) {
            _mm256_storeu_si256((__m256i *)(void *)(k->w + b * 256 + 32 * c), v[c]);
            _mm256_storeu_si256((__m256i *)(void *)(k->scv + (b * 8 + c) * 16), scv[c]);
        }
    }
}

/* s8[b * 8 + j] = sum of the activations of sub-block j (32 elements) */
static void kq_token_sums(const int8_t *q, int64_t nb, int32_t *s8)
{
    for (int64_t i = 0; i < nb * 8; i++) {
        int32_t s = 0;
        for (int e = 0; e < 32; e++)
            s += q[32 * i + e];
        s8[i] = s;
    }
}

/* Q2_K: bs[b * 16 + g] = sum of the activations of 16-element group g
 * (Q8_K's bsums; within +-2032, so int16) */
static void kq_token_sums16(const int8_t *q, int64_t nb, int16_t *bs)
{
    for (int64_t i = 0; i < nb * 16; i++) {
        int32_t s = 0;
        for (int e = 0; e < 16; e++)
            s += q[16 * i + e];
        bs[i] = (int16_t)s;
    }
}

QD_AVX2 static float dot_q4_k_avx2(const struct kq_row *k, const int8_t *q, const float *dq,
                                   const int32_t *s8, int64_t nb)
{
    __m256 acc = _mm256_setzero_ps();
    float acc_m[4] = {0};
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *w = k->w + b * 256;
        const int8_t *qb = q + b * 256;
        const int16_t *sc = k->sc + b * 16, *mn = sc + 8;
        const int32_t *sb = s8 + b * 8;
        const float d = dq[b] * k->dw[2 * b];
        const float dmin = -dq[b] * k->dw[2 * b + 1];
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i lo = _mm256_loadu_si256((const __m256i *)(const void *)(w + 64 * j));
            const __m256i hi = _mm256_loadu_si256((const __m256i *)(const void *)(w + 64 * j + 32));
            const __m256i ql = _mm256_loadu_si256((const __m256i *)(const void *)(qb + 64 * j));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(qb + 64 * j + 32));
            const __m256i pl = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * j]),
                                                 _mm256_maddubs_epi16(lo, ql));
            const __m256i ph = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * j + 1]),
                                                 _mm256_maddubs_epi16(hi, qh));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        for (int i = 0; i < 4; i++)
            acc_m[i] = fmaf(dmin, (float)(mn[2 * i] * sb[2 * i] + mn[2 * i + 1] * sb[2 * i + 1]),
                            acc_m[i]);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    const float m = (acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]);
    return hsum8_avx2(acc) + m;
}

/* four tokens at once (activations ldq apart, scales lddq, sums lds) */
QD_AVX2 static void dot4_q4_k_avx2(const struct kq_row *k, const int8_t *q, int64_t ldq,
                                   const float *dq, int64_t lddq, const int32_t *s8, int64_t lds,
                                   int64_t nb, float *out)
{
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    float acc_m[4][4] = {{0}};
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *w = k->w + b * 256;
        const int16_t *sc = k->sc + b * 16, *mn = sc + 8;
        __m256i sumi[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                           _mm256_setzero_si256()};
        for (int j = 0; j < 4; j++) {
            const __m256i lo = _mm256_loadu_si256((const __m256i *)(const void *)(w + 64 * j));
            const __m256i hi = _mm256_loadu_si256((const __m256i *)(const void *)(w + 64 * j + 32));
            const __m256i sl = _mm256_set1_epi16(sc[2 * j]), sh = _mm256_set1_epi16(sc[2 * j + 1]);
            for (int u = 0; u < 4; u++) {
                const int8_t *qb = q + u * ldq + b * 256 + 64 * j;
                const __m256i ql = _mm256_loadu_si256((const __m256i *)(const void *)qb);
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(qb + 32));
                sumi[u] = _mm256_add_epi32(
                    sumi[u], _mm256_add_epi32(_mm256_madd_epi16(sl, _mm256_maddubs_epi16(lo, ql)),
                                              _mm256_madd_epi16(sh, _mm256_maddubs_epi16(hi, qh))));
            }
        }
        for (int u = 0; u < 4; u++) {
            const float dqu = dq[u * lddq + b];
            const int32_t *sb = s8 + u * lds + b * 8;
            const float dmin = -dqu * k->dw[2 * b + 1];
            for (int i = 0; i < 4; i++)
                acc_m[u][i] = fmaf(dmin,
                                   (float)(mn[2 * i] * sb[2 * i] + mn[2 * i + 1] * sb[2 * i + 1]),
                                   acc_m[u][i]);
            acc[u] = _mm256_fmadd_ps(_mm256_set1_ps(dqu * k->dw[2 * b]),
                                     _mm256_cvtepi32_ps(sumi[u]), acc[u]);
        }
    }
    for (int u = 0; u < 4; u++)
        out[u] = hsum8_avx2(acc[u]) + ((acc_m[u][0] + acc_m[u][2]) + (acc_m[u][1] + acc_m[u][3]));
}

QD_AVX2 static void dot4_q6_k_avx2(const struct kq_row *k, const int8_t *q, int64_t ldq,
                                   const float *dq, int64_t lddq, int64_t nb, float *out)
{
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    const __m256i m32 = _mm256_set1_epi8(32);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *w = k->w + b * 256;
        const int16_t *sc = k->sc + b * 16;
        __m256i sumi[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                           _mm256_setzero_si256()};
        for (int v = 0; v < 8; v++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + 32 * v));
            const __m256i scl =
                _mm256_set_m128i(_mm_set1_epi16(sc[2 * v + 1]), _mm_set1_epi16(sc[2 * v]));
            for (int u = 0; u < 4; u++) {
                const __m256i qv = _mm256_loadu_si256(
                    (const __m256i *)(const void *)(q + u * ldq + b * 256 + 32 * v));
                const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(wv, qv),
                                                     _mm256_maddubs_epi16(m32, qv));
                sumi[u] = _mm256_add_epi32(sumi[u], _mm256_madd_epi16(scl, p16));
            }
        }
        for (int u = 0; u < 4; u++)
            acc[u] = _mm256_fmadd_ps(_mm256_set1_ps(dq[u * lddq + b] * k->dw[2 * b]),
                                     _mm256_cvtepi32_ps(sumi[u]), acc[u]);
    }
    for (int u = 0; u < 4; u++)
        out[u] = hsum8_avx2(acc[u]);
}

QD_AVX2 static float dot_q6_k_avx2(const struct kq_row *k, const int8_t *q, const float *dq,
                                   int64_t nb)
{
    __m256 acc = _mm256_setzero_ps();
    const __m256i m32 = _mm256_set1_epi8(32);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *w = k->w + b * 256;
        const int8_t *qb = q + b * 256;
        const int16_t *sc = k->sc + b * 16;
        __m256i sumi = _mm256_setzero_si256();
        for (int v = 0; v < 8; v++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + 32 * v));
            const __m256i qv = _mm256_loadu_si256((const __m256i *)(const void *)(qb + 32 * v));
            const __m256i p16 =
                _mm256_sub_epi16(_mm256_maddubs_epi16(wv, qv), _mm256_maddubs_epi16(m32, qv));
            const __m256i scl =
                _mm256_set_m128i(_mm_set1_epi16(sc[2 * v + 1]), _mm_set1_epi16(sc[2 * v]));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scl, p16));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dq[b] * k->dw[2 * b]), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum8_avx2(acc);
}

/* Q2_K, Q3_K and Q5_K for NT (1 or 4) tokens, activations ldq apart, their
 * scales lddq, their sums lds; each weight vector is loaded once for the NT
 * tokens. The maddubs pairs cannot saturate int16: Q2_K 2 x 3 x 127, Q3_K
 * (|w| <= 4 against sign-adjusted activations) 2 x 4 x 127, Q5_K 2 x 31 x
 * 127, all below 32767 (Q8_K values are within -127..127: the block's
 * largest magnitude maps to 127, NaN to 0). */
QD_AVX2_IN void dotn_q2_k(const struct kq_row *k, const int8_t *q, int64_t ldq, const float *dq,
                          int64_t lddq, const int16_t *bs, int64_t lds, int64_t nb, const int NT,
                          float *out)
{
    __m256 acc[4];
    for (int u = 0; u < NT; u++)
        acc[u] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *w = k->w + b * 256;
        const int16_t *scv = k->scv + b * 128;
        __m256i sumi[4];
        for (int u = 0; u < NT; u++)
            sumi[u] = _mm256_setzero_si256();
        for (int c = 0; c < 8; c++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + 32 * c));
            const __m256i sv = _mm256_loadu_si256((const __m256i *)(const void *)(scv + 16 * c));
            for (int u = 0; u < NT; u++) {
                const __m256i qv = _mm256_loadu_si256(
                    (const __m256i *)(const void *)(q + u * ldq + b * 256 + 32 * c));
                sumi[u] = _mm256_add_epi32(sumi[u],
                                           _mm256_madd_epi16(sv, _mm256_maddubs_epi16(wv, qv)));
            }
        }
        const __m256i mins = _mm256_loadu_si256((const __m256i *)(const void *)(k->sc + b * 16));
        for (int u = 0; u < NT; u++) {
            const float dqu = dq[u * lddq + b];
            const __m256i bsv =
                _mm256_loadu_si256((const __m256i *)(const void *)(bs + u * lds + b * 16));
            acc[u] = _mm256_fmadd_ps(_mm256_set1_ps(-dqu * k->dw[2 * b + 1]),
                                     _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bsv)), acc[u]);
            acc[u] = _mm256_fmadd_ps(_mm256_set1_ps(dqu * k->dw[2 * b]),
                                     _mm256_cvtepi32_ps(sumi[u]), acc[u]);
        }
    }
    for (int u = 0; u < NT; u++)
        out[u] = hsum8_avx2(acc[u]);
}

QD_AVX2_IN void dotn_q3_k(const struct kq_row *k, const int8_t *q, int64_t ldq, const float *dq,
                          int64_t lddq, int64_t nb, const int NT, float *out)
{
    __m256 acc[4];
    for (int u = 0; u < NT; u++)
        acc[u] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *w = (const int8_t *)k->w + b * 256;
        const int16_t *scv = k->scv + b * 128;
        __m256i sumi[4];
        for (int u = 0; u < NT; u++)
            sumi[u] = _mm256_setzero_si256();
        for (int c = 0; c < 8; c++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + 32 * c));
            const __m256i ax = _mm256_sign_epi8(wv, wv);
            const __m256i sv = _mm256_loadu_si256((const __m256i *)(const void *)(scv + 16 * c));
            for (int u = 0; u < NT; u++) {
                const __m256i qv = _mm256_loadu_si256(
                    (const __m256i *)(const void *)(q + u * ldq + b * 256 + 32 * c));
                const __m256i p16 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(qv, wv));
                sumi[u] = _mm256_add_epi32(sumi[u], _mm256_madd_epi16(sv, p16));
            }
        }
        for (int u = 0; u < NT; u++)
            acc[u] = _mm256_fmadd_ps(_mm256_set1_ps(dq[u * lddq + b] * k->dw[2 * b]),
                                     _mm256_cvtepi32_ps(sumi[u]), acc[u]);
    }
    for (int u = 0; u < NT; u++)
        out[u] = hsum8_avx2(acc[u]);
}

QD_AVX2_IN void dotn_q5_k(const struct kq_row *k, const int8_t *q, int64_t ldq, const float *dq,
                          int64_t lddq, const int32_t *s8, int64_t lds, int64_t nb, const int NT,
                          float *out)
{
    __m256 acc[4];
    float summs[4];
    for (int u = 0; u < NT; u++) {
        acc[u] = _mm256_setzero_ps();
        summs[u] = 0.0f;
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *w = k->w + b * 256;
        const int16_t *scv = k->scv + b * 128, *mn = k->sc + b * 16;
        __m256i sumi[4];
        for (int u = 0; u < NT; u++)
            sumi[u] = _mm256_setzero_si256();
        for (int c = 0; c < 8; c++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + 32 * c));
            const __m256i sv = _mm256_loadu_si256((const __m256i *)(const void *)(scv + 16 * c));
            for (int u = 0; u < NT; u++) {
                const __m256i qv = _mm256_loadu_si256(
                    (const __m256i *)(const void *)(q + u * ldq + b * 256 + 32 * c));
                sumi[u] = _mm256_add_epi32(sumi[u],
                                           _mm256_madd_epi16(sv, _mm256_maddubs_epi16(wv, qv)));
            }
        }
        for (int u = 0; u < NT; u++) {
            const float dqu = dq[u * lddq + b];
            const int32_t *sb = s8 + u * lds + b * 8;
            int32_t msum = 0;
            for (int j = 0; j < 8; j++)
                msum += mn[j] * sb[j];
            summs[u] = fmaf(-dqu * k->dw[2 * b + 1], (float)msum, summs[u]);
            acc[u] = _mm256_fmadd_ps(_mm256_set1_ps(dqu * k->dw[2 * b]),
                                     _mm256_cvtepi32_ps(sumi[u]), acc[u]);
        }
    }
    for (int u = 0; u < NT; u++)
        out[u] = hsum8_avx2(acc[u]) + summs[u];
}

/* the single-token and four-token instances */
QD_AVX2 static void dot4_q2_k_avx2(const struct kq_row *k, const int8_t *q, int64_t ldq,
                                   const float *dq, int64_t lddq, const int16_t *bs, int64_t lds,
                                   int64_t nb, float *out)
{
    dotn_q2_k(k, q, ldq, dq, lddq, bs, lds, nb, 4, out);
}

QD_AVX2 static float dot_q2_k_avx2(const struct kq_row *k, const int8_t *q, const float *dq,
                                   const int16_t *bs, int64_t nb)
{
    float o;
    dotn_q2_k(k, q, 0, dq, 0, bs, 0, nb, 1, &o);
    return o;
}

QD_AVX2 static void dot4_q3_k_avx2(const struct kq_row *k, const int8_t *q, int64_t ldq,
                                   const float *dq, int64_t lddq, int64_t nb, float *out)
{
    dotn_q3_k(k, q, ldq, dq, lddq, nb, 4, out);
}

QD_AVX2 static float dot_q3_k_avx2(const struct kq_row *k, const int8_t *q, const float *dq,
                                   int64_t nb)
{
    float o;
    dotn_q3_k(k, q, 0, dq, 0, nb, 1, &o);
    return o;
}

QD_AVX2 static void dot4_q5_k_avx2(const struct kq_row *k, const int8_t *q, int64_t ldq,
                                   const float *dq, int64_t lddq, const int32_t *s8, int64_t lds,
                                   int64_t nb, float *out)
{
    dotn_q5_k(k, q, ldq, dq, lddq, s8, lds, nb, 4, out);
}

QD_AVX2 static float dot_q5_k_avx2(const struct kq_row *k, const int8_t *q, const float *dq,
                                   const int32_t *s8, int64_t nb)
{
    float o;
    dotn_q5_k(k, q, 0, dq, 0, s8, 0, nb, 1, &o);
    return o;
}
#endif

/* ---- AVX-512 VNNI versions: two weight rows per 512-bit vector ----
 *
 * A row pair is packed once: per 32-element chunk, row r's 32 values in the
 * low half and row r+1's in the high half, the fp16 scales as floats in the
 * same halves. The activations are stored offset to unsigned bytes
 * (q + 128), so one vpdpbusd (or vpmaddubsw + vpdpwssd for the K-quants'
 * sub-block scales) gives, per 32-bit lane, the sum over 4 neighbouring
 * elements of (q + 128) w; the 128 x sum(w) part depends on the weights only
 * and is subtracted by starting each block's sums at -128 x sum(w) (packed
 * with the row). The integer lane sums are then exactly those of the scalar
 * kernels, and the float steps are the same per half, so the bits are too.
 * Two pairs (four rows) x four tokens per tile: each activation load serves
 * four rows, each weight load four tokens. */
#ifdef EC_QDOT_X86
#define QD_512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#define QD_512_IN __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma"), \
                                 always_inline)) static inline

/* Activations for level 2, the values of act_q8_0 / act_q8_k written as
 * q + 128 (unsigned). The same steps per element: the block maximum is
 * exact in any order, q = round half to even (x * id) in float, NaN -> 0,
 * saturation to int8; fp16 scales through F16C, which rounds to nearest
 * even like ec_fp32_to_fp16. */
#define QD_512F __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
QD_512F static inline __m512i qd_round_i32(__m512 v)
{
    v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_cvtps_epi32(_mm512_maskz_mov_ps((__mmask16)~nan, v));
}

/* 16 int32 (already in -128..127 or saturated) to q + 128 bytes */
QD_512F static inline void qd_store_u8(uint8_t *dst, __m512i i32)
{
    const __m128i b = _mm512_cvtsepi32_epi8(i32);
    _mm_storeu_si128((__m128i *)(void *)dst, _mm_xor_si128(b, _mm_set1_epi8((char)0x80)));
}

QD_512F static float qd_amax(const float *x, int64_t n)
{
    __m512 m = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) /* max_ps keeps the second operand on NaN */
        m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i)), m);
    return _mm512_reduce_max_ps(m);
}

QD_512F static void act_q8_0_512(const float *x, int64_t n, uint8_t *qu, float *d)
{
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        const float amax = qd_amax(xb, 32);
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        d[b] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph(_mm_set_ss(amax / 127.0f),
                                                       _MM_FROUND_TO_NEAREST_INT)));
        const __m512 vid = _mm512_set1_ps(id);
        for (int h = 0; h < 2; h++)
            qd_store_u8(qu + b * 32 + 16 * h,
                        qd_round_i32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * h), vid)));
    }
}

/* s16[b * 8 + j]: the sum of the (signed) values of 32-element group j;
 * with by16 (Q2_K) s16[b * 16 + g], that of 16-element group g */
QD_512F static void act_q8_k_512(const float *x, int64_t n, uint8_t *qu, float *d, int16_t *s16,
                                 bool by16)
{
    const int spb = by16 ? 16 : 8;
    for (int64_t b = 0; b < n / 256; b++) {
        const float *xb = x + b * 256;
        const float amax = qd_amax(xb, 256);
        if (amax == 0.0f) {
            d[b] = 0.0f;
            memset(qu + b * 256, 0x80, 256);
            for (int j = 0; s16 && j < spb; j++)
                s16[b * spb + j] = 0;
            continue;
        }
        float mx = amax; /* the first element of that magnitude, with its sign */
        for (int i = 0; i < 256; i += 16) {
            const __mmask16 k = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(xb + i)),
                                                   _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (k) {
                mx = xb[i + __builtin_ctz(k)];
                break;
            }
        }
        const float iscale = -127.0f / mx;
        d[b] = 1.0f / iscale;
        const __m512 vs = _mm512_set1_ps(iscale);
        for (int j = 0; j < 8; j++) {
            const __m512i a = qd_round_i32(_mm512_mul_ps(_mm512_loadu_ps(xb + 32 * j), vs));
            const __m512i c = qd_round_i32(_mm512_mul_ps(_mm512_loadu_ps(xb + 32 * j + 16), vs));
            /* the values are within -127..127 here (|iscale x| <= 127), so the
             * int32 sum is the sum of the stored bytes */
            if (s16 && by16) {
                s16[b * 16 + 2 * j] = (int16_t)_mm512_reduce_add_epi32(a);
                s16[b * 16 + 2 * j + 1] = (int16_t)_mm512_reduce_add_epi32(c);
            } else if (s16) {
                s16[b * 8 + j] = (int16_t)_mm512_reduce_add_epi32(_mm512_add_epi32(a, c));
            }
            qd_store_u8(qu + b * 256 + 32 * j, a);
            qd_store_u8(qu + b * 256 + 32 * j + 16, c);
        }
    }
}

/* one packed row pair; n_blocks blocks of qk elements */
struct qd_pair {
    int8_t *w;     /* [n / 32][64]: 32 values of each row per chunk (K: 0..15 or -32..31) */
    int16_t *sc;   /* K-quants: [n / 32][32]: the scale of each int16 pair, per half */
    int32_t *corr; /* [nb][16]: -128 x the lane sums of w (times the scales) */
    float *dw;     /* [nb][16]: d of each row, 8 copies per half */
    float *dmin;   /* [nb][16]: dmin of each row; Q4_K, Q5_K 4 copies per half in
                      the first 8, Q2_K 8 copies per half */
    int16_t *mn;   /* [nb][32]: the mins of each row; Q4_K, Q5_K 8 per row in the
                      first 16, Q2_K 16 per row */
};

static bool qd_pair_alloc(struct qd_pair *p, int64_t n, int64_t nb)
{
    /* 64-byte aligned: the tiles load these 64 bytes at a time */
    p->w = qd_alloc64((size_t)(2 * n));
    p->sc = qd_alloc64(sizeof(int16_t) * (size_t)(2 * n));
    p->corr = qd_alloc64(sizeof(int32_t) * 16 * (size_t)nb);
    p->dw = qd_alloc64(sizeof(float) * 16 * (size_t)nb);
    p->dmin = qd_alloc64(sizeof(float) * 16 * (size_t)nb);
    p->mn = qd_alloc64(sizeof(int16_t) * 32 * (size_t)nb);
    return p->w && p->sc && p->corr && p->dw && p->dmin && p->mn;
}

static void qd_pair_free(struct qd_pair *p)
{
    free(p->w);
    free(p->sc);
    free(p->corr);
    free(p->dw);
    free(p->dmin);
    free(p->mn);
}

/* Pack rows r0 and r1 (r1 may equal r0) straight from their blocks. */
QD_512 static void qd_pack_pair(enum ec_dtype t, const uint8_t *row0, const uint8_t *row1,
                                size_t blk_bytes, int64_t nb, struct qd_pair *p)
{
    const bool kq = t == EC_Q2_K || t == EC_Q3_K || t == EC_Q4_K || t == EC_Q5_K || t == EC_Q6_K;
    for (int h = 0; h < 2; h++) {
        const uint8_t *row = h ? row1 : row0;
        if (!kq) { /* legacy: values, lane sums and scale straight from the block */
            for (int64_t b = 0; b < nb; b++) {
                float dwb;
                const __m256i wv = legacy_w_avx2(t, row + (size_t)b * blk_bytes, &dwb);
                _mm256_storeu_si256((__m256i *)(void *)(p->w + 64 * b + 32 * h), wv);
                const __m256i lane = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(_mm256_set1_epi8(1), wv), _mm256_set1_epi16(1));
                _mm256_storeu_si256((__m256i *)(void *)(p->corr + 16 * b + 8 * h),
                                    _mm256_mullo_epi32(lane, _mm256_set1_epi32(-128)));
                _mm256_storeu_ps(p->dw + 16 * b + 8 * h, _mm256_set1_ps(dwb));
            }
            continue;
        }
        for (int64_t b = 0; b < nb; b++) {
            __m256i v[8];      /* the block's eight 32-element chunks */
            __m256i scv[8];    /* each chunk's scale per int16 pair */
            float d;
            if (t == EC_Q2_K || t == EC_Q3_K || t == EC_Q5_K) {
                int16_t mins[16];
                float dmin;
                k235_block(t, row + (size_t)b * blk_bytes, v, scv, mins, &d, &dmin);
                const int nm = t == EC_Q2_K ? 16 : t == EC_Q5_K ? 8 : 0;
                for (int g = 0; g < nm; g++)
                    p->mn[32 * b + nm * h + g] = mins[g];
                for (int m = 0; m < nm / 2; m++)
                    p->dmin[16 * b + nm / 2 * h + m] = dmin;
            } else if (t == EC_Q4_K) {
                const struct ec_block_q4_k *x = (const void *)(row + (size_t)b * sizeof *x);
                d = ec_fp16_to_fp32(x->d);
                for (int m = 0; m < 4; m++)
                    p->dmin[16 * b + 4 * h + m] = ec_fp16_to_fp32(x->dmin);
                const __m256i m4 = _mm256_set1_epi8(15);
                for (int j = 0; j < 4; j++) {
                    const __m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(x->qs + 32 * j));
                    v[2 * j] = _mm256_and_si256(raw, m4);
                    v[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                }
                for (int j = 0; j < 8; j++) {
                    int sc_, mn_;
                    q4k_scale_min(x->scales, j, &sc_, &mn_);
                    scv[j] = _mm256_set1_epi16((short)sc_);
                    p->mn[32 * b + 8 * h + j] = (int16_t)mn_;
                }
            } else { /* Q6_K: 4 + 2 bits, minus 32; a scale per 16 elements */
                const struct ec_block_q6_k *x = (const void *)(row + (size_t)b * sizeof *x);
                d = ec_fp16_to_fp32(x->d);
                const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
                const __m256i m32 = _mm256_set1_epi8(32);
                for (int h2 = 0; h2 < 2; h2++) {
                    const __m256i A = _mm256_loadu_si256((const __m256i *)(const void *)(x->ql + 64 * h2));
                    const __m256i B = _mm256_loadu_si256((const __m256i *)(const void *)(x->ql + 64 * h2 + 32));
                    const __m256i H = _mm256_loadu_si256((const __m256i *)(const void *)(x->qh + 32 * h2));
                    __m256i *o = v + 4 * h2;
                    o[0] = _mm256_or_si256(_mm256_and_si256(A, m4),
                                           _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
                    o[1] = _mm256_or_si256(_mm256_and_si256(B, m4),
                                           _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
                    o[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4),
                                           _mm256_and_si256(H, m30));
                    o[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                                           _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
                    for (int k = 0; k < 4; k++)
                        o[k] = _mm256_sub_epi8(o[k], m32);
                }
                for (int c = 0; c < 8; c++)
                    scv[c] = _mm256_set_m128i(_mm_set1_epi16(x->scales[2 * c + 1]),
                                              _mm_set1_epi16(x->scales[2 * c]));
            }
            /* corr = -128 x sum over chunks of scale x (sum of 4 neighbours) */
            __m256i lane = _mm256_setzero_si256();
            for (int c = 0; c < 8; c++) {
                const int64_t ch = b * 8 + c;
                _mm256_storeu_si256((__m256i *)(void *)(p->w + 64 * ch + 32 * h), v[c]);
                _mm256_storeu_si256((__m256i *)(void *)(p->sc + 32 * ch + 16 * h), scv[c]);
                lane = _mm256_add_epi32(
                    lane, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v[c]), scv[c]));
            }
            _mm256_storeu_si256((__m256i *)(void *)(p->corr + 16 * b + 8 * h),
                                _mm256_mullo_epi32(lane, _mm256_set1_epi32(-128)));
            _mm256_storeu_ps(p->dw + 16 * b + 8 * h, _mm256_set1_ps(d));
        }
    }
}

/* the two rows' results from a 16-lane accumulator: hsum8 of each half */
QD_512_IN void qd_pair_out(__m512 acc, float *o0, float *o1)
{
    /* per half: lanes l and l + 4, then 0 + 2 and 1 + 3, then the two:
     * hsum8's additions, done in all lanes at once */
    const __m512 t = _mm512_add_ps(acc, _mm512_shuffle_f32x4(acc, acc, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m512 u = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));
    const __m512 w = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(2, 3, 0, 1)));
    *o0 = _mm512_cvtss_f32(w);
    *o1 = _mm_cvtss_f32(_mm512_extractf32x4_ps(w, 2));
}

/* Q4_K's mins of the two rows: (m0 + m2) + (m1 + m3) per 4-lane half */
QD_512_IN void qd_mins_out(__m256 m, float *o0, float *o1)
{
    const __m256 p = _mm256_add_ps(m, _mm256_permute_ps(m, _MM_SHUFFLE(1, 0, 3, 2)));
    const __m256 q = _mm256_add_ps(p, _mm256_permute_ps(p, _MM_SHUFFLE(2, 3, 0, 1)));
    *o0 += _mm256_cvtss_f32(q);
    *o1 += _mm_cvtss_f32(_mm256_extractf128_ps(q, 1));
}

QD_512_IN __m512i qd_bcast32(const uint8_t *p)
{
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)p));
}

/* out[u][2 * i + h]: token u, row h of pair i; NP pairs x NT tokens */
QD_512_IN void qd_tile_legacy(const struct qd_pair *const *P, const int NP, const uint8_t *qu,
                              int64_t ldq, const float *dq, int64_t lddq, const int NT, int64_t nb,
                              float out[4][4])
{
    __m512 acc[2][4];
    for (int i = 0; i < NP; i++)
        for (int u = 0; u < NT; u++)
            acc[i][u] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i w[2], c[2];
        __m512 dw[2];
        for (int i = 0; i < NP; i++) {
            w[i] = _mm512_loadu_si512(P[i]->w + 64 * b);
            c[i] = _mm512_loadu_si512(P[i]->corr + 16 * b);
            dw[i] = _mm512_loadu_ps(P[i]->dw + 16 * b);
        }
        for (int u = 0; u < NT; u++) {
            const __m512i q = qd_bcast32(qu + u * ldq + 32 * b);
            const __m512 d = _mm512_set1_ps(dq[u * lddq + b]);
            for (int i = 0; i < NP; i++) {
                const __m512i s = _mm512_dpbusd_epi32(c[i], q, w[i]);
                acc[i][u] = _mm512_fmadd_ps(_mm512_mul_ps(dw[i], d), _mm512_cvtepi32_ps(s),
                                            acc[i][u]);
            }
        }
    }
    for (int i = 0; i < NP; i++)
        for (int u = 0; u < NT; u++)
            qd_pair_out(acc[i][u], &out[u][2 * i], &out[u][2 * i + 1]);
}

/* How a K-quant's mins enter (the activations' sub-block sums s16, lds
 * apart per token): QD_MINS_NONE Q3_K, Q6_K; QD_MINS_LANES4 Q4_K's four
 * lanes per row; QD_MINS_SCALAR Q5_K's one float per row (kept in all four
 * lanes of its half), added after the horizontal sum; QD_MINS_FIRST Q2_K's
 * eight lanes per row, the accumulator's own, before d x the sums. */
enum { QD_MINS_NONE, QD_MINS_LANES4, QD_MINS_SCALAR, QD_MINS_FIRST };

QD_512_IN void qd_tile_k(const struct qd_pair *const *P, const int NP, const int mins,
                         const uint8_t *qu, int64_t ldq, const float *dq, int64_t lddq,
                         const int16_t *s16, int64_t lds, const int NT, int64_t nb, float out[4][4])
{
    const bool m4 = mins == QD_MINS_LANES4 || mins == QD_MINS_SCALAR;
    __m512 acc[2][4];
    __m256 accm[2][4];
    for (int i = 0; i < NP; i++)
        for (int u = 0; u < NT; u++) {
            acc[i][u] = _mm512_setzero_ps();
            accm[i][u] = _mm256_setzero_ps();
        }
    for (int64_t b = 0; b < nb; b++) {
        __m512i s[2][4];
        for (int i = 0; i < NP; i++) {
            const __m512i c = _mm512_loadu_si512(P[i]->corr + 16 * b);
            for (int u = 0; u < NT; u++)
                s[i][u] = c;
        }
        for (int j = 0; j < 8; j++) {
            const int64_t ch = 8 * b + j;
            __m512i w[2], sc[2];
            for (int i = 0; i < NP; i++) {
                w[i] = _mm512_loadu_si512(P[i]->w + 64 * ch);
                sc[i] = _mm512_loadu_si512(P[i]->sc + 32 * ch);
            }
            for (int u = 0; u < NT; u++) {
                const __m512i q = qd_bcast32(qu + u * ldq + 32 * ch);
                for (int i = 0; i < NP; i++)
                    s[i][u] = _mm512_dpwssd_epi32(s[i][u], _mm512_maddubs_epi16(q, w[i]), sc[i]);
            }
        }
        for (int u = 0; u < NT; u++) {
            const float dqu = dq[u * lddq + b];
            const __m512 d = _mm512_set1_ps(dqu);
            __m256i sb = _mm256_setzero_si256();
            __m512i sb16 = _mm512_setzero_si512();
            if (m4) /* the 8 sums, for both rows */
                sb = _mm256_broadcastsi128_si256(
                    _mm_loadu_si128((const __m128i *)(const void *)(s16 + u * lds + 8 * b)));
            if (mins == QD_MINS_FIRST) /* the 16 sums, for both rows */
                sb16 = qd_bcast32((const uint8_t *)(s16 + u * lds + 16 * b));
            for (int i = 0; i < NP; i++) {
                if (mins == QD_MINS_FIRST) {
                    const __m512i mn = _mm512_loadu_si512(P[i]->mn + 32 * b);
                    const __m512 dm =
                        _mm512_mul_ps(_mm512_set1_ps(-dqu), _mm512_loadu_ps(P[i]->dmin + 16 * b));
                    acc[i][u] = _mm512_fmadd_ps(dm, _mm512_cvtepi32_ps(_mm512_madd_epi16(mn, sb16)),
                                                acc[i][u]);
                }
                acc[i][u] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(P[i]->dw + 16 * b), d),
                                            _mm512_cvtepi32_ps(s[i][u]), acc[i][u]);
                if (m4) {
                    const __m256i mn =
                        _mm256_loadu_si256((const __m256i *)(const void *)(P[i]->mn + 32 * b));
                    __m256i ms = _mm256_madd_epi16(mn, sb);
                    if (mins == QD_MINS_SCALAR) { /* the row's whole integer sum in its 4 lanes */
                        /* (immediates written out: clang wants constants here) */
                        ms = _mm256_add_epi32(ms, _mm256_shuffle_epi32(ms, _MM_SHUFFLE(2, 3, 0, 1)));
                        ms = _mm256_add_epi32(ms, _mm256_shuffle_epi32(ms, _MM_SHUFFLE(1, 0, 3, 2)));
                    }
                    const __m256 dm =
                        _mm256_mul_ps(_mm256_set1_ps(-dqu), _mm256_loadu_ps(P[i]->dmin + 16 * b));
                    accm[i][u] = _mm256_fmadd_ps(dm, _mm256_cvtepi32_ps(ms), accm[i][u]);
                }
            }
        }
    }
    for (int i = 0; i < NP; i++)
        for (int u = 0; u < NT; u++) {
            qd_pair_out(acc[i][u], &out[u][2 * i], &out[u][2 * i + 1]);
            if (mins == QD_MINS_LANES4)
                qd_mins_out(accm[i][u], &out[u][2 * i], &out[u][2 * i + 1]);
            if (mins == QD_MINS_SCALAR) {
                out[u][2 * i] += _mm256_cvtss_f32(accm[i][u]);
                out[u][2 * i + 1] += _mm_cvtss_f32(_mm256_extractf128_ps(accm[i][u], 1));
            }
        }
}

/* all tokens against NP packed pairs (rows r, r + 1, ...; nrows of them valid) */
QD_512 static void qd_rows_512(enum ec_dtype t, const struct qd_pair *const *P, int NP,
                               const uint8_t *qu, const float *dq, const int16_t *s16,
                               int64_t n_tokens, int64_t n, int64_t nb, float *y, int64_t ldo,
                               int nrows)
{
    for (int64_t t0 = 0; t0 < n_tokens; t0 += 4) {
        const int nt = n_tokens - t0 >= 4 ? 4 : (int)(n_tokens - t0);
        float out[4][4];
        const uint8_t *q = qu + t0 * n;
        const float *d = dq + t0 * nb;
        const int64_t spb = t == EC_Q2_K ? 16 : 8; /* sums per block */
        const int16_t *s = s16 ? s16 + t0 * nb * spb : NULL;
#define QD_CALL(NP_, NT_)                                                                    \
    do {                                                                                     \
        if (t == EC_Q4_K)                                                                    \
            qd_tile_k(P, NP_, QD_MINS_LANES4, q, n, d, nb, s, nb * 8, NT_, nb, out);         \
        else if (t == EC_Q5_K)                                                               \
            qd_tile_k(P, NP_, QD_MINS_SCALAR, q, n, d, nb, s, nb * 8, NT_, nb, out);         \
        else if (t == EC_Q2_K)                                                               \
            qd_tile_k(P, NP_, QD_MINS_FIRST, q, n, d, nb, s, nb * 16, NT_, nb, out);         \
        else if (t == EC_Q6_K || t == EC_Q3_K)                                               \
            qd_tile_k(P, NP_, QD_MINS_NONE, q, n, d, nb, s, 0, NT_, nb, out);                \
        else                                                                                 \
            qd_tile_legacy(P, NP_, q, n, d, nb, NT_, nb, out);                               \
    } while (0)
        if (NP == 2) {
            switch (nt) {
            case 4: QD_CALL(2, 4); break;
            case 3: QD_CALL(2, 3); break;
            case 2: QD_CALL(2, 2); break;
            default: QD_CALL(2, 1); break;
            }
        } else {
            switch (nt) {
            case 4: QD_CALL(1, 4); break;
            case 3: QD_CALL(1, 3); break;
            case 2: QD_CALL(1, 2); break;
            default: QD_CALL(1, 1); break;
            }
        }
#undef QD_CALL
        for (int u = 0; u < nt; u++)
            for (int r = 0; r < nrows; r++)
                y[(t0 + u) * ldo + r] = out[u][r];
    }
}
#endif

static int qdot_isa = -1; /* 0 scalar, 1 AVX2, 2 AVX-512 VNNI */

int ec_qdot_set_isa(int max_level)
{
    int best = 0;
#ifdef EC_QDOT_X86
    best = ec_cpu_has(EC_CPU_AVX2 | EC_CPU_FMA) ? 1 : 0;
    if (best && ec_cpu_has(EC_CPU_AVX512F | EC_CPU_AVX512BW | EC_CPU_AVX512VL | EC_CPU_AVX512VNNI))
        best = 2;
#endif
    const int lvl = max_level < 0 || max_level > best ? best : max_level;
    __atomic_store_n(&qdot_isa, lvl, __ATOMIC_RELAXED);
    return lvl;
}

/* ---- matmul ---- */

enum ec_status ec_matmul_qdot(const struct ec_linear_view *w, const float *x, int64_t n_tokens,
                              float *y, int n_threads, struct ec_diag *d)
{
    const int64_t n = w->n_in;
    if (!ec_qdot_supported(w->type, n))
        return ec_fail(d, EC_ERR_UNSUPPORTED, "matmul: no integer dot for %s with %lld inputs",
                       ec_dtype_name(w->type), (long long)n);
    const enum ec_dtype wt = w->type;
    const bool k_quant = wt == EC_Q2_K || wt == EC_Q3_K || wt == EC_Q4_K || wt == EC_Q5_K ||
                         wt == EC_Q6_K;
    const int64_t qk = k_quant ? 256 : 32, n_blocks = n / qk;
    if (n_tokens <= 0)
        return EC_OK;
    int8_t *q = qd_alloc64((size_t)(n_tokens * n));
    float *dq = malloc(sizeof(float) * (size_t)(n_tokens * n_blocks));
    if (!q || !dq) {
        free(q);
        free(dq);
        return ec_fail(d, EC_ERR_NOMEM, "matmul: cannot quantize %lld x %lld activations",
                       (long long)n_tokens, (long long)n);
    }
    int isa = __atomic_load_n(&qdot_isa, __ATOMIC_RELAXED);
    if (isa < 0)
        isa = ec_qdot_set_isa(-1);
    int nt = 1;
#ifdef _OPENMP
    nt = n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    (void)n_threads;
    (void)nt;
#endif
    /* the activations' sub-block sums for the mins: Q4_K, Q5_K 32-element
     * ones (int32 at level 1, int16 at level 2), Q2_K 16-element ones (int16) */
    void *sums = NULL;
#ifdef EC_QDOT_X86
    if (isa >= 1 && (wt == EC_Q4_K || wt == EC_Q5_K || wt == EC_Q2_K)) {
        sums = malloc(sizeof(int32_t) * (size_t)(n_tokens * n_blocks * 8));
        if (!sums) {
            free(q);
            free(dq);
            return ec_fail(d, EC_ERR_NOMEM, "matmul: no memory for activation sums");
        }
    }
#endif
#ifdef EC_QDOT_X86
    int32_t *const s8 = isa == 1 && wt != EC_Q2_K ? sums : NULL;
    int16_t *const bs16 = isa == 1 && wt == EC_Q2_K ? sums : NULL;
    int16_t *const s16 = isa == 2 ? sums : NULL;
#endif
    bool nomem = false;
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n_tokens; t++) {
#ifdef EC_QDOT_X86
            if (isa == 2) {
                if (k_quant)
                    act_q8_k_512(x + t * n, n, (uint8_t *)q + t * n, dq + t * n_blocks,
                                 s16 ? s16 + t * n_blocks * (wt == EC_Q2_K ? 16 : 8) : NULL,
                                 wt == EC_Q2_K);
                else
                    act_q8_0_512(x + t * n, n, (uint8_t *)q + t * n, dq + t * n_blocks);
                continue;
            }
#endif
            if (k_quant)
                act_q8_k(x + t * n, n, q + t * n, dq + t * n_blocks);
            else
                act_q8_0(x + t * n, n, q + t * n, dq + t * n_blocks);
#ifdef EC_QDOT_X86
            if (s8)
                kq_token_sums(q + t * n, n_blocks, s8 + t * n_blocks * 8);
            if (bs16)
                kq_token_sums16(q + t * n, n_blocks, bs16 + t * n_blocks * 16);
#endif
        }
        const size_t blk_bytes = (size_t)(w->row_bytes / (uint64_t)n_blocks);
#ifdef EC_QDOT_X86
        struct kq_row kr = {0};
        struct qd_pair pp[2] = {{0}};
        bool ok = true;
        if (isa == 1) { /* one unpacked row */
            kr.w = malloc((size_t)n);
            kr.sc = malloc(sizeof(int16_t) * 16 * (size_t)n_blocks);
            kr.scv = malloc(sizeof(int16_t) * 16 * (size_t)(n / 32));
            kr.dw = malloc(sizeof(float) * 2 * (size_t)n_blocks);
            ok = kr.w && kr.sc && kr.scv && kr.dw;
        } else if (isa == 2) { /* two packed row pairs */
            ok = qd_pair_alloc(&pp[0], n, n_blocks) && qd_pair_alloc(&pp[1], n, n_blocks);
        }
        if (!ok) {
#pragma omp atomic write
            nomem = true;
        }
#pragma omp barrier
#endif
        bool skip;
#pragma omp atomic read
        skip = nomem;
#ifdef EC_QDOT_X86
        if (isa == 2) {
            /* four rows (two packed pairs) per work item */
            const int64_t n_quads = (w->n_out + 3) / 4;
            const struct qd_pair *P[2] = {&pp[0], &pp[1]};
#pragma omp for schedule(static)
            for (int64_t g = 0; g < n_quads; g++) {
                if (skip)
                    continue;
                const int64_t r = 4 * g;
                const int nr = w->n_out - r >= 4 ? 4 : (int)(w->n_out - r);
                const uint8_t *rw[4];
                for (int i = 0; i < 4; i++)
                    rw[i] = w->data + (uint64_t)(r + (i < nr ? i : nr - 1)) * w->row_bytes;
                qd_pack_pair(w->type, rw[0], rw[1], blk_bytes, n_blocks, &pp[0]);
                if (nr > 2)
                    qd_pack_pair(w->type, rw[2], rw[3], blk_bytes, n_blocks, &pp[1]);
                qd_rows_512(w->type, P, nr > 2 ? 2 : 1, (const uint8_t *)q, dq, s16, n_tokens,
                            n, n_blocks, y + r, w->n_out, nr);
            }
        } else
#endif
        {
#pragma omp for schedule(static)
            for (int64_t r = 0; r < w->n_out; r++) {
                if (skip)
                    continue;
                const uint8_t *row = w->data + (uint64_t)r * w->row_bytes;
#ifdef EC_QDOT_X86
                if (isa == 1) {
                    if (wt == EC_Q2_K || wt == EC_Q3_K || wt == EC_Q5_K)
                        kq_unpack_row_235(wt, row, blk_bytes, n_blocks, &kr);
                    else if (k_quant)
                        kq_unpack_row(w->type, row, n_blocks, &kr);
                    else
                        legacy_unpack_row(w->type, row, blk_bytes, n_blocks, (int8_t *)kr.w, kr.dw);
                    int64_t t = 0;
                    for (; t + 4 <= n_tokens; t += 4) {
                        float o[4];
                        const int8_t *qt = q + t * n;
                        const float *dt = dq + t * n_blocks;
                        if (w->type == EC_Q4_K)
                            dot4_q4_k_avx2(&kr, qt, n, dt, n_blocks, s8 + t * n_blocks * 8,
                                           n_blocks * 8, n_blocks, o);
                        else if (w->type == EC_Q6_K)
                            dot4_q6_k_avx2(&kr, qt, n, dt, n_blocks, n_blocks, o);
                        else if (wt == EC_Q2_K)
                            dot4_q2_k_avx2(&kr, qt, n, dt, n_blocks, bs16 + t * n_blocks * 16,
                                           n_blocks * 16, n_blocks, o);
                        else if (wt == EC_Q3_K)
                            dot4_q3_k_avx2(&kr, qt, n, dt, n_blocks, n_blocks, o);
                        else if (wt == EC_Q5_K)
                            dot4_q5_k_avx2(&kr, qt, n, dt, n_blocks, s8 + t * n_blocks * 8,
                                           n_blocks * 8, n_blocks, o);
                        else
                            dot4_legacy_avx2((const int8_t *)kr.w, kr.dw, qt, n, dt, n_blocks,
                                             n_blocks, o);
                        for (int u = 0; u < 4; u++)
                            y[(t + u) * w->n_out + r] = o[u];
                    }
                    for (; t < n_tokens; t++) {
                        const int8_t *qt = q + t * n;
                        const float *dt = dq + t * n_blocks;
                        float s;
                        if (w->type == EC_Q4_K)
                            s = dot_q4_k_avx2(&kr, qt, dt, s8 + t * n_blocks * 8, n_blocks);
                        else if (w->type == EC_Q6_K)
                            s = dot_q6_k_avx2(&kr, qt, dt, n_blocks);
                        else if (wt == EC_Q2_K)
                            s = dot_q2_k_avx2(&kr, qt, dt, bs16 + t * n_blocks * 16, n_blocks);
                        else if (wt == EC_Q3_K)
                            s = dot_q3_k_avx2(&kr, qt, dt, n_blocks);
                        else if (wt == EC_Q5_K)
                            s = dot_q5_k_avx2(&kr, qt, dt, s8 + t * n_blocks * 8, n_blocks);
                        else
                            s = dot_legacy_avx2((const int8_t *)kr.w, kr.dw, qt, dt, n_blocks);
                        y[t * w->n_out + r] = s;
                    }
                    continue;
                }
#endif
                for (int64_t t = 0; t < n_tokens; t++) {
                    const int8_t *qt = q + t * n;
                    const float *dt = dq + t * n_blocks;
                    float s;
                    if (w->type == EC_Q4_K)
                        s = dot_q4_k(row, qt, dt, n_blocks);
                    else if (w->type == EC_Q6_K)
                        s = dot_q6_k(row, qt, dt, n_blocks);
                    else if (wt == EC_Q2_K)
                        s = dot_q2_k(row, qt, dt, n_blocks);
                    else if (wt == EC_Q3_K)
                        s = dot_q3_k(row, qt, dt, n_blocks);
                    else if (wt == EC_Q5_K)
                        s = dot_q5_k(row, qt, dt, n_blocks);
                    else
                        s = dot_legacy(w->type, row, blk_bytes, qt, dt, n_blocks);
                    y[t * w->n_out + r] = s;
                }
            }
        }
#ifdef EC_QDOT_X86
        free(kr.w);
        free(kr.sc);
        free(kr.scv);
        free(kr.dw);
        qd_pair_free(&pp[0]);
        qd_pair_free(&pp[1]);
#endif
    }
    free(sums);
    if (nomem) {
        free(q);
        free(dq);
        return ec_fail(d, EC_ERR_NOMEM, "matmul: no memory to unpack a row of %lld", (long long)n);
    }
    free(q);
    free(dq);
    return EC_OK;
}
