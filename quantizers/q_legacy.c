/* quantizers/q_legacy.c: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 reference kernels.
 *
 * Blocks of 32 elements with one fp16 scale (and an fp16 minimum for the _1
 * types). Without importance weights the scale comes straight from the block's
 * extreme value; with weights, the scale is searched to minimise the weighted
 * squared error, the weights being imatrix * sqrt(sigma^2 + x^2) with sigma^2
 * the mean square of the whole row. Q8_0 has no weighted variant: llama.cpp
 * ignores the imatrix for it.
 */
#include <assert.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "edgec/quant.h"
#include "quantizers/quant_internal.h"
#include "src/core/clones.h"

#define QK EC_QK_LEGACY

/* The element of largest magnitude (first one on ties), 0 for an all-zero block. */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *mn, float *mx)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo)
            lo = x[j];
        if (x[j] > hi)
            hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

/* Mean square of a whole row: the sigma^2 of the weighted variants. */
static float row_sigma2(const float *x, int64_t n)
{
    float s = 0.0f;
    for (int64_t j = 0; j < n; j++)
        s += x[j] * x[j];
    return s / (float)n;
}

static void block_weights(const float *xb, const float *qw, float sigma2, float *w)
{
    for (int j = 0; j < QK; j++)
        w[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

/* Pack 32 five-bit levels: low nibbles as Q4_0, fifth bits into a LE u32. */
static void pack5(const uint8_t *L, uint8_t qs[16], uint8_t qh[4])
{
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((L[j] & 15) | ((L[j + 16] & 15) << 4));
        h |= (uint32_t)((L[j] >> 4) & 1) << j;
        h |= (uint32_t)((L[j + 16] >> 4) & 1) << (j + 16);
    }
    for (int k = 0; k < 4; k++)
        qh[k] = (uint8_t)(h >> (8 * k));
}

static uint32_t read_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- Q4_0 ---- */

void ec_q4_0_quantize_row_ref(const float *x, void *vy, int64_t n)
{
    assert(n % QK == 0);
    struct ec_block_q4_0 *y = vy;
    for (int64_t b = 0; b < n / QK; b++, x += QK) {
        /* the extreme value maps to level -8 exactly */
        const float d = signed_absmax(x, QK) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = ec_h(d);
        for (int j = 0; j < 16; j++) {
            /* ggml truncates x*id + 8.5 through an int8 cast */
            uint8_t lo = (uint8_t)ec_imin(15, (int8_t)ec_trunc_i32(x[j] * id + 8.5f));
            uint8_t hi = (uint8_t)ec_imin(15, (int8_t)ec_trunc_i32(x[j + 16] * id + 8.5f));
            y[b].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void ec_q4_0_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *w)
{
    if (!w) {
        ec_q4_0_quantize_row_ref(x, vy, n);
        return;
    }
    struct ec_block_q4_0 *y = vy;
    const float sigma2 = row_sigma2(x, n);
    float weight[QK];
    int8_t L[QK];
    for (int64_t b = 0; b < n / QK; b++) {
        const float *xb = x + QK * b;
        block_weights(xb, w + QK * b, sigma2, weight);
        y[b].d = ec_h(ec_make_qx_quants(QK, 8, xb, L, 1, weight));
        for (int j = 0; j < 16; j++)
            y[b].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

void ec_q4_0_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
    const struct ec_block_q4_0 *x = vx;
    for (int64_t b = 0; b < n / QK; b++, y += QK) {
        const float d = ec_f(x[b].d);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((x[b].qs[j] & 15) - 8) * d;
            y[j + 16] = (float)((x[b].qs[j] >> 4) - 8) * d;
        }
    }
}

/* ---- Q4_1 ---- */

void ec_q4_1_quantize_row_ref(const float *x, void *vy, int64_t n)
{
    assert(n % QK == 0);
    struct ec_block_q4_1 *y = vy;
    for (int64_t b = 0; b < n / QK; b++, x += QK) {
        float mn, mx;
        min_max(x, QK, &mn, &mx);
        const float d = (mx - mn) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = ec_h(d);
        y[b].m = ec_h(mn);
        for (int j = 0; j < 16; j++) {
            uint8_t lo = (uint8_t)ec_imin(15, (int8_t)ec_trunc_i32((x[j] - mn) * id + 0.5f));
            uint8_t hi = (uint8_t)ec_imin(15, (int8_t)ec_trunc_i32((x[j + 16] - mn) * id + 0.5f));
            y[b].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void ec_q4_1_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *w)
{
    if (!w) {
        ec_q4_1_quantize_row_ref(x, vy, n);
        return;
    }
    struct ec_block_q4_1 *y = vy;
    const float sigma2 = row_sigma2(x, n);
    float weight[QK];
    uint8_t L[QK], Laux[QK];
    for (int64_t b = 0; b < n / QK; b++) {
        const float *xb = x + QK * b;
        block_weights(xb, w + QK * b, sigma2, weight);
        float neg_min;
        const float d =
            ec_make_qkx3_quants(QK, 15, xb, weight, L, &neg_min, Laux, -0.9f, 0.05f, 36, false);
        y[b].d = ec_h(d);
        y[b].m = ec_h(-neg_min);
        for (int j = 0; j < 16; j++)
            y[b].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

void ec_q4_1_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
    const struct ec_block_q4_1 *x = vx;
    for (int64_t b = 0; b < n / QK; b++, y += QK) {
        const float d = ec_f(x[b].d);
        const float m = ec_f(x[b].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(x[b].qs[j] & 15) * d + m;
            y[j + 16] = (float)(x[b].qs[j] >> 4) * d + m;
        }
    }
}

/* ---- Q5_0 ---- */

void ec_q5_0_quantize_row_ref(const float *x, void *vy, int64_t n)
{
    assert(n % QK == 0);
    struct ec_block_q5_0 *y = vy;
    uint8_t L[QK];
    for (int64_t b = 0; b < n / QK; b++, x += QK) {
        const float d = signed_absmax(x, QK) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = ec_h(d);
        for (int j = 0; j < QK; j++)
            L[j] = (uint8_t)ec_imin(31, (int8_t)ec_trunc_i32(x[j] * id + 16.5f));
        pack5(L, y[b].qs, y[b].qh);
    }
}

void ec_q5_0_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *w)
{
    if (!w) {
        ec_q5_0_quantize_row_ref(x, vy, n);
        return;
    }
    struct ec_block_q5_0 *y = vy;
    const float sigma2 = row_sigma2(x, n);
    float weight[QK];
    int8_t L[QK];
    uint8_t U[QK];
    for (int64_t b = 0; b < n / QK; b++) {
        const float *xb = x + QK * b;
        block_weights(xb, w + QK * b, sigma2, weight);
        y[b].d = ec_h(ec_make_qx_quants(QK, 16, xb, L, 1, weight));
        for (int j = 0; j < QK; j++)
            U[j] = (uint8_t)L[j];
        pack5(U, y[b].qs, y[b].qh);
    }
}

void ec_q5_0_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
    const struct ec_block_q5_0 *x = vx;
    for (int64_t b = 0; b < n / QK; b++, y += QK) {
        const float d = ec_f(x[b].d);
        const uint32_t qh = read_u32(x[b].qh);
        for (int j = 0; j < 16; j++) {
            int q0 = (x[b].qs[j] & 15) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = (float)(q0 - 16) * d;
            y[j + 16] = (float)(q1 - 16) * d;
        }
    }
}

/* ---- Q5_1 ---- */

void ec_q5_1_quantize_row_ref(const float *x, void *vy, int64_t n)
{
    assert(n % QK == 0);
    struct ec_block_q5_1 *y = vy;
    uint8_t L[QK];
    for (int64_t b = 0; b < n / QK; b++, x += QK) {
        float mn, mx;
        min_max(x, QK, &mn, &mx);
        const float d = (mx - mn) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = ec_h(d);
        y[b].m = ec_h(mn);
        /* no clamp here in ggml: the cast to uint8 keeps the low byte */
        for (int j = 0; j < QK; j++)
            L[j] = (uint8_t)ec_trunc_i32((x[j] - mn) * id + 0.5f);
        pack5(L, y[b].qs, y[b].qh);
    }
}

void ec_q5_1_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *w)
{
    if (!w) {
        ec_q5_1_quantize_row_ref(x, vy, n);
        return;
    }
    struct ec_block_q5_1 *y = vy;
    const float sigma2 = row_sigma2(x, n);
    float weight[QK];
    uint8_t L[QK], Laux[QK];
    for (int64_t b = 0; b < n / QK; b++) {
        const float *xb = x + QK * b;
        block_weights(xb, w + QK * b, sigma2, weight);
        float neg_min;
        const float d =
            ec_make_qkx3_quants(QK, 31, xb, weight, L, &neg_min, Laux, -0.9f, 0.05f, 36, false);
        y[b].d = ec_h(d);
        y[b].m = ec_h(-neg_min);
        pack5(L, y[b].qs, y[b].qh);
    }
}

void ec_q5_1_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
    const struct ec_block_q5_1 *x = vx;
    for (int64_t b = 0; b < n / QK; b++, y += QK) {
        const float d = ec_f(x[b].d);
        const float m = ec_f(x[b].m);
        const uint32_t qh = read_u32(x[b].qh);
        for (int j = 0; j < 16; j++) {
            int q0 = (x[b].qs[j] & 15) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = (float)q0 * d + m;
            y[j + 16] = (float)q1 * d + m;
        }
    }
}

/* ---- Q8_0 ---- */

void ec_q8_0_quantize_row_ref(const float *x, void *vy, int64_t n)
{
    assert(n % QK == 0);
    struct ec_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / QK; b++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++)
            amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = ec_h(d);
        /* roundf: ties away from zero, unlike the K-quants' nearest_int */
        for (int j = 0; j < QK; j++)
            y[b].qs[j] = (int8_t)ec_round_away_i32(x[j] * id);
    }
}

/* llama.cpp's quantize_q8_0 ignores the importance weights. */
void ec_q8_0_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *w)
{
    (void)w;
    ec_q8_0_quantize_row_ref(x, vy, n);
}

EC_AVX2_CLONES
void ec_q8_0_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
    const struct ec_block_q8_0 *x = vx;
    for (int64_t b = 0; b < n / QK; b++, y += QK) {
        const float d = ec_f(x[b].d);
        for (int j = 0; j < QK; j++)
            y[j] = (float)x[b].qs[j] * d;
    }
}
