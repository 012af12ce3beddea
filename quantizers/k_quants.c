/* quantizers/k_quants.c: Q2_K, Q3_K, Q4_K, Q5_K and Q6_K reference kernels.
 *
 * Super-blocks of 256 elements split into sub-blocks of 16 or 32. Each
 * sub-block gets its own scale (and minimum for Q2_K/Q4_K/Q5_K) from a small
 * least-squares search; those are then quantized against one fp16 super-block
 * scale (and fp16 "dmin"), and finally every element is re-quantized against
 * the scale the decoder will actually see (fp16 round trip included).
 *
 * The searches below follow llama.cpp's make_*_quants functions step by step:
 * the same candidate grids, the same accumulation order and the same strict
 * comparisons, since a single ulp in a running sum can flip a choice.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "edgec/quant.h"
#include "quantizers/quant_internal.h"
#include "src/core/clones.h"

#define QK_K EC_QK_K
#define GROUP_EPS EC_GROUP_EPS /* below this a group counts as all zero */
#define NL EC_SEARCH_LANES

/* ---- scale searches -------------------------------------------------------- */

static float rmse_weight(int rmse_type, const float *qw, const float *x, int i)
{
    if (qw)
        return qw[i];
    switch (rmse_type) {
    case 1:
        return x[i] * x[i];
    case 2:
        return 1.0f;
    case 3:
        return fabsf(x[i]);
    default:
        return sqrtf(fabsf(x[i]));
    }
}

float ec_make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw)
{
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    /* the extreme element lands on level -nmax */
    float iscale = (float)-nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; i++)
            L[i] = (int8_t)(nmax + ec_iclamp(ec_nearest_int(iscale * x[i]), -nmax, nmax - 1));
        return 1.0f / iscale;
    }
    bool return_early = false;
    if (rmse_type < 0) {
        rmse_type = -rmse_type;
        return_early = true;
    }
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = ec_iclamp(ec_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = rmse_weight(rmse_type, qw, x, i);
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    if (return_early)
        return suml2 > 0.0f ? 0.5f * (scale + 1.0f / iscale) : 1.0f / iscale;
    /* maximising sumlx^2 / suml2 minimises the weighted error at the optimal scale */
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = ec_iclamp(ec_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = rmse_weight(rmse_type, qw, x, i);
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + ec_iclamp(ec_nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Symmetric 3-bit search with coordinate-descent refinement (Q3_K, no imatrix). */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L, bool do_rmse)
{
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = (float)-nmax / max;
    if (!do_rmse) {
        for (int i = 0; i < n; i++)
            L[i] = (int8_t)(ec_iclamp(ec_nearest_int(iscale * x[i]), -nmax, nmax - 1) + nmax);
        return 1.0f / iscale;
    }
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = ec_iclamp(ec_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    /* up to 5 sweeps: move one level at a time when it improves sumlx^2/suml2 */
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0.0f) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int new_l = ec_iclamp(ec_nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Shared body of the asymmetric searches. The grid walks inverse scales
 * (rmin + rdelta*is + nmax) / (max - min); each candidate's levels get a
 * closed-form weighted least-squares (scale, min) fit, clamped to min <= 0,
 * and the one with the smallest weighted error wins. Note that `min` (and
 * so max - min) follows the best fit found so far, as in ggml. */
static float make_qkx_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                             float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                             bool use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights ? weights[0] : x[0] * x[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        float w = weights ? weights[i] : x[i] * x[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0.0f)
        min = 0.0f;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)ec_iclamp(ec_nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        float w = weights ? weights[i] : x[i] * x[i];
        best_error += w * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = ec_iclamp(ec_nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            float w = weights ? weights[i] : x[i] * x[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0.0f;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                float w = weights ? weights[i] : x[i] * x[i];
                cur_error += w * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* ggml's make_qkx2_quants: weights required. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              bool use_mad)
{
    return make_qkx_quants(n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad);
}

/* ggml's make_qkx3_quants: weights may be NULL (x^2). */
float ec_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          bool use_mad)
{
    return make_qkx_quants(n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad);
}

/* Positive-level search for the sub-block scales themselves (imatrix paths):
 * scan 8 inverse scales around nmax/max, then refine levels one at a time. */
static float make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw)
{
    float max = 0.0f;
    for (int i = 0; i < n; i++)
        max = max > x[i] ? max : x[i];
    /* exactly zero only: unlike the other searches, ggml applies no epsilon here
     * (the golden x_edge row of 1e-30 values depends on it) */
    if (max == 0.0f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)nmax / max;
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)ec_nearest_int(iscale * x[i]);
    const float scale = 1.0f / iscale;
    float best_mse = 0.0f;
    for (int i = 0; i < n; i++) {
        float diff = x[i] - scale * (float)L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0)
            continue;
        float iscale_is = (0.1f * (float)is + (float)nmax) / max;
        float scale_is = 1.0f / iscale_is;
        float mse = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = ec_imin(nmax, ec_nearest_int(iscale_is * x[i]));
            float diff = x[i] - scale_is * (float)l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = ec_imin(nmax, ec_nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * (float)l;
        suml2 += qw[i] * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = qw[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            float sl2 = suml2 - w * (float)L[i] * (float)L[i];
            if (slx > 0.0f && sl2 > 0.0f) {
                int new_l = ec_imin(nmax, ec_nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    /* No guard against suml2 == 0 at the golden commit: all-zero weights (x^2
     * underflowing, e.g. values near 1e-30) give 0/0 = NaN, stored as fp16 0xfe00,
     * and the golden bytes contain exactly that. */
    return sumlx / suml2;
}

/* ---- eight groups at a time ------------------------------------------------- */

/* The _fast kernels run the sub-block searches of a super-block through the
 * vector kernels of k_search_v8.c, eight sub-blocks per call, and everything
 * else exactly as the _ref kernels do; the bytes are identical. */

/* Element i of group j (stride elements apart) to [i * NL + j]. */
static void to_lanes(const float *src, int n, int stride, float *dst)
{
    for (int j = 0; j < NL; j++)
        for (int i = 0; i < n; i++)
            dst[i * NL + j] = src[j * stride + i];
}

/* 8 asymmetric searches of n elements (groups n apart in x and w). */
static void qkx_groups8(int n, int nmax, const float *x, const float *w, float rmin, float rdelta,
                        int nstep, bool use_mad, uint8_t *L, float *scales, float *mins)
{
    float xt[32 * NL], wt[32 * NL];
    uint8_t Lt[32 * NL];
    to_lanes(x, n, n, xt);
    to_lanes(w, n, n, wt);
    ec_qkx_search_v8(n, nmax, xt, wt, rmin, rdelta, nstep, use_mad, Lt, scales, mins);
    for (int j = 0; j < NL; j++)
        for (int i = 0; i < n; i++)
            L[j * n + i] = Lt[i * NL + j];
}

/* 8 symmetric (rmse_type 1) searches of n elements; w NULL: x^2. */
static void qx_groups8(int n, int nmax, const float *x, const float *w, int8_t *L, float *scales)
{
    float xt[32 * NL], wt[32 * NL];
    int8_t Lt[32 * NL];
    to_lanes(x, n, n, xt);
    if (w)
        to_lanes(w, n, n, wt);
    ec_qx_search_v8(n, nmax, xt, w ? wt : NULL, Lt, scales);
    for (int j = 0; j < NL; j++)
        for (int i = 0; i < n; i++)
            L[j * n + i] = Lt[i * NL + j];
}

/* ---- packing helpers --------------------------------------------------------- */

/* 2-bit levels of 256 elements: byte l of each 32-byte half holds elements
 * l, l+32, l+64, l+96 of that half's 128, lowest bits first. */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int h = 0; h < QK_K; h += 128)
        for (int l = 0; l < 32; l++)
            qs[h / 4 + l] = (uint8_t)(L[h + l] | (L[h + l + 32] << 2) | (L[h + l + 64] << 4) |
                                      (L[h + l + 96] << 6));
}

/* 6-bit scale and min of sub-block j (0..7) in the 12-byte K-quant layout. */
static void put_scale_min_k4(uint8_t *s, int j, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        s[j] = ls;
        s[j + 4] = lm;
    } else {
        s[j + 4] = (uint8_t)((ls & 15) | ((lm & 15) << 4));
        s[j - 4] |= (uint8_t)((ls >> 4) << 6);
        s[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

static void get_scale_min_k4(const uint8_t *s, int j, uint8_t *ls, uint8_t *lm)
{
    if (j < 4) {
        *ls = s[j] & 63;
        *lm = s[j + 4] & 63;
    } else {
        *ls = (uint8_t)((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4));
        *lm = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* 6-bit Q3_K scale j (0..15), stored biased by 32. */
static void put_scale_q3(uint8_t *s, int j, int l)
{
    if (j < 8)
        s[j] = (uint8_t)(l & 15);
    else
        s[j - 8] |= (uint8_t)((l & 15) << 4);
    s[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
}

static int get_scale_q3(const uint8_t *s, int j)
{
    int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Requantize with the decoder's effective sub-block scale and min (Q4_K/Q5_K). */
static void requant_k4(const float *x, const uint8_t *scales, uint16_t hd, uint16_t hdmin, int nmax,
                       uint8_t *L)
{
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        get_scale_min_k4(scales, j, &sc, &m);
        const float d = ec_f(hd) * (float)sc;
        if (d == 0.0f)
            continue;
        const float dm = ec_f(hdmin) * (float)m;
        for (int ii = 0; ii < 32; ii++)
            L[32 * j + ii] = (uint8_t)ec_iclamp(ec_nearest_int((x[32 * j + ii] + dm) / d), 0, nmax);
    }
}

static void requant_q2(const float *x, const struct ec_block_q2_k *y, uint8_t *L)
{
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = ec_f(y->d) * (float)(y->scales[j] & 15);
        if (d == 0.0f)
            continue;
        const float dm = ec_f(y->dmin) * (float)(y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ii++)
            L[16 * j + ii] = (uint8_t)ec_iclamp(ec_nearest_int((x[16 * j + ii] + dm) / d), 0, 3);
    }
}

/* Requantize Q3_K with the stored scales, then split off the high bits. */
static void finish_q3(const float *x, struct ec_block_q3_k *y, int8_t *L)
{
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = ec_f(y->d) * (float)get_scale_q3(y->scales, j);
        if (d == 0.0f)
            continue;
        for (int ii = 0; ii < 16; ii++)
            L[16 * j + ii] = (int8_t)(ec_iclamp(ec_nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    /* high bit of element j goes to hmask[j % 32], bit j / 32 */
    memset(y->hmask, 0, sizeof y->hmask);
    uint8_t Lu[QK_K];
    for (int j = 0; j < QK_K; j++) {
        int l = L[j];
        if (l > 3) {
            y->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
            l -= 4;
        }
        Lu[j] = (uint8_t)l;
    }
    pack_2bit(Lu, y->qs);
}

static void pack_q5_k(const uint8_t *L, struct ec_block_q5_k *y)
{
    memset(y->qh, 0, sizeof y->qh);
    uint8_t *ql = y->qs;
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QK_K; n += 64) {
        for (int j = 0; j < 32; j++) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                y->qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                y->qh[j] |= m2;
            }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
        m1 = (uint8_t)(m1 << 2);
        m2 = (uint8_t)(m2 << 2);
        ql += 32;
    }
}

static void pack_q4_k(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < QK_K; j += 64)
        for (int l = 0; l < 32; l++)
            qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

static float super_sigma2(const float *x, float factor)
{
    float s = 0.0f;
    for (int l = 0; l < QK_K; l++)
        s += x[l] * x[l];
    return factor * s / QK_K;
}

/* ---- Q2_K ---- */

static void q2_k_row(const float *x, void *vy, int64_t n, bool v8)
{
    assert(n % QK_K == 0);
    struct ec_block_q2_k *y = vy;
    uint8_t L[QK_K], Laux[16];
    float weights[QK_K], mins[QK_K / 16], scales[QK_K / 16];
    const float q4scale = 15.0f;

    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0.0f, max_min = 0.0f;
        for (int l = 0; l < QK_K; l++)
            weights[l] = fabsf(x[l]);
        if (v8) {
            for (int j = 0; j < QK_K / 16; j += NL)
                qkx_groups8(16, 3, x + 16 * j, weights + 16 * j, -0.5f, 0.1f, 15, true,
                            L + 16 * j, scales + j, mins + j);
        } else {
            for (int j = 0; j < QK_K / 16; j++)
                scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights + 16 * j, L + 16 * j,
                                             &mins[j], Laux, -0.5f, 0.1f, 15, true);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        if (max_scale > 0.0f) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] = (uint8_t)ec_nearest_int(iscale * scales[j]);
            y[i].d = ec_h(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = ec_h(0.0f);
        }
        if (max_min > 0.0f) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] |= (uint8_t)((unsigned)ec_nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = ec_h(max_min / q4scale);
        } else {
            y[i].dmin = ec_h(0.0f);
        }
        requant_q2(x, &y[i], L);
        pack_2bit(L, y[i].qs);
    }
}

static void q2_k_row_imat(const float *x, void *vy, int64_t n, const float *w, bool v8)
{
    struct ec_block_q2_k *y = vy;
    uint8_t L[QK_K], Laux[16], Ls[QK_K / 16], Lm[QK_K / 16];
    float mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16], weight[QK_K];

    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float sigma2 = super_sigma2(x, 1.0f);
        for (int j = 0; j < QK_K / 16; j++) {
            const float *qw = w + QK_K * i + 16 * j;
            float *wj = weight + 16 * j;
            for (int l = 0; l < 16; l++)
                wj[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            sw[j] = 0.0f;
            for (int l = 0; l < 16; l++)
                sw[j] += wj[l];
            if (!v8)
                scales[j] = ec_make_qkx3_quants(16, 3, x + 16 * j, wj, L + 16 * j, &mins[j], Laux,
                                                -0.9f, 0.05f, 36, false);
        }
        if (v8)
            for (int j = 0; j < QK_K / 16; j += NL)
                qkx_groups8(16, 3, x + 16 * j, weight + 16 * j, -0.9f, 0.05f, 36, false,
                            L + 16 * j, scales + j, mins + j);
        const float dm = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
        const float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
        y[i].d = ec_h(dm);
        y[i].dmin = ec_h(mm);
        for (int j = 0; j < QK_K / 16; j++)
            y[i].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        requant_q2(x, &y[i], L);
        pack_2bit(L, y[i].qs);
    }
}

void ec_q2_k_quantize_row_ref(const float *x, void *vy, int64_t n)
{
    q2_k_row(x, vy, n, false);
}

void ec_q2_k_quantize_row_fast(const float *x, void *vy, int64_t n)
{
    q2_k_row(x, vy, n, true);
}

void ec_q2_k_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *w)
{
    if (w)
        q2_k_row_imat(x, vy, n, w, false);
    else
        q2_k_row(x, vy, n, false);
}

void ec_q2_k_quantize_row_imat_fast(const float *x, void *vy, int64_t n, const float *w)
{
    if (w)
        q2_k_row_imat(x, vy, n, w, true);
    else
        q2_k_row(x, vy, n, true);
}

void ec_q2_k_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
    const struct ec_block_q2_k *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = ec_f(x[i].d);
        const float dmin = ec_f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int h = 0; h < QK_K; h += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; part++) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (float)(sc & 15);
                    const float ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++)
                        *y++ = dl * (float)((q[16 * part + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/* ---- Q3_K ---- */

void ec_q3_k_quantize_row_ref(const float *x, void *vy, int64_t n)
{
    assert(n % QK_K == 0);
    struct ec_block_q3_k *y = vy;
    int8_t L[QK_K];
    float scales[QK_K / 16];

    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0.0f, amax = 0.0f;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                /* ggml keeps this level in an int8 before clamping */
                int l = (int8_t)ec_nearest_int(iscale * scales[j]);
                put_scale_q3(y[i].scales, j, ec_iclamp(l, -32, 31) + 32);
            }
            y[i].d = ec_h(1.0f / iscale);
        } else {
            y[i].d = ec_h(0.0f);
        }
        finish_q3(x, &y[i], L);
    }
}

static void q3_k_row_imat(const float *x, void *vy, int64_t n, const float *w, bool v8)
{
    struct ec_block_q3_k *y = vy;
    int8_t L[QK_K], Ls[QK_K / 16];
    float scales[QK_K / 16], weight[QK_K], sw[QK_K / 16];

    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float sigma2 = super_sigma2(x, 2.0f);
        for (int j = 0; j < QK_K / 16; j++) {
            const float *qw = w + QK_K * i + 16 * j;
            float *wj = weight + 16 * j;
            for (int l = 0; l < 16; l++)
                wj[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            float sumw = 0.0f;
            for (int l = 0; l < 16; l++)
                sumw += wj[l];
            sw[j] = sumw;
            if (!v8)
                scales[j] = ec_make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, wj);
        }
        if (v8)
            for (int j = 0; j < QK_K / 16; j += NL)
                qx_groups8(16, 4, x + 16 * j, weight + 16 * j, L + 16 * j, scales + j);
        memset(y[i].scales, 0, sizeof y[i].scales);
        const float d_block = ec_make_qx_quants(QK_K / 16, 32, scales, Ls, 1, sw);
        for (int j = 0; j < QK_K / 16; j++)
            put_scale_q3(y[i].scales, j, Ls[j]);
        y[i].d = ec_h(d_block);
        finish_q3(x, &y[i], L);
    }
}

void ec_q3_k_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *w)
{
    if (w)
        q3_k_row_imat(x, vy, n, w, false);
    else
        ec_q3_k_quantize_row_ref(x, vy, n);
}

/* Without weights Q3_K runs make_q3_quants, which is not vectorised: the
 * fast kernel is the reference there. */
void ec_q3_k_quantize_row_imat_fast(const float *x, void *vy, int64_t n, const float *w)
{
    if (w)
        q3_k_row_imat(x, vy, n, w, true);
    else
        ec_q3_k_quantize_row_ref(x, vy, n);
}

void ec_q3_k_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
    const struct ec_block_q3_k *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d_all = ec_f(x[i].d);
        const uint8_t *q = x[i].qs;
        uint8_t m = 1;
        int is = 0;
        for (int h = 0; h < QK_K; h += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1)) {
                for (int part = 0; part < 2; part++) {
                    const float dl = d_all * (float)get_scale_q3(x[i].scales, is++);
                    for (int l = 0; l < 16; l++) {
                        const int k = 16 * part + l;
                        int v = ((q[k] >> shift) & 3) - ((x[i].hmask[k] & m) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* ---- Q4_K ---- */

/* The no-imatrix sub-block search of Q4_K and Q5_K. */
static void k4_ref_block(const float *x, int nmax, float rmin, float rdelta, int nstep, uint8_t *L,
                         uint8_t scales_out[12], uint16_t *hd, uint16_t *hdmin, bool v8)
{
    uint8_t Laux[32];
    float weights[QK_K], mins[QK_K / 32], scales[QK_K / 32];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < QK_K / 32; j++) {
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        float *wj = weights + 32 * j;
        for (int l = 0; l < 32; l++)
            wj[l] = av_x + fabsf(x[32 * j + l]);
        if (!v8)
            scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, wj, L + 32 * j, &mins[j], Laux,
                                         rmin, rdelta, nstep, false);
    }
    if (v8)
        qkx_groups8(32, nmax, x, weights, rmin, rdelta, nstep, false, L, scales, mins);
    for (int j = 0; j < QK_K / 32; j++) {
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < QK_K / 32; j++) {
        /* uint8 truncation first, then the clamp, as in ggml */
        uint8_t ls = (uint8_t)ec_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)ec_nearest_int(inv_min * mins[j]);
        put_scale_min_k4(scales_out, j, ls < 63 ? ls : 63, lm < 63 ? lm : 63);
    }
    *hd = ec_h(max_scale / 63.0f);
    *hdmin = ec_h(max_min / 63.0f);
    requant_k4(x, scales_out, *hd, *hdmin, nmax, L);
}

/* The imatrix search of Q4_K and Q5_K; w == NULL uses ggml's no-imatrix weights
 * of the _impl variant (only reachable through this helper). */
static void k4_imat_block(const float *x, const float *w, int nmax, bool clamp63, uint8_t *L,
                          uint8_t scales_out[12], uint16_t *hd, uint16_t *hdmin, bool v8)
{
    uint8_t Laux[32], Ls[QK_K / 32], Lm[QK_K / 32];
    float weights[QK_K], sw[QK_K / 32], mins[QK_K / 32], scales[QK_K / 32];
    const float sigma2 = super_sigma2(x, 2.0f);
    const float av_x = sqrtf(sigma2);
    for (int j = 0; j < QK_K / 32; j++) {
        float *wj = weights + 32 * j;
        if (w) {
            const float *qw = w + 32 * j;
            for (int l = 0; l < 32; l++)
                wj[l] = qw[l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        } else {
            for (int l = 0; l < 32; l++)
                wj[l] = av_x + fabsf(x[32 * j + l]);
        }
        float sumw = 0.0f;
        for (int l = 0; l < 32; l++)
            sumw += wj[l];
        sw[j] = sumw;
        if (!v8)
            scales[j] = ec_make_qkx3_quants(32, nmax, x + 32 * j, wj, L + 32 * j, &mins[j], Laux,
                                            -0.9f, 0.05f, 36, false);
    }
    if (v8)
        qkx_groups8(32, nmax, x, weights, -0.9f, 0.05f, 36, false, L, scales, mins);
    const float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
    const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
    memset(scales_out, 0, 12);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t ls = Ls[j], lm = Lm[j];
        if (clamp63) { /* Q5_K clamps, Q4_K does not */
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
        }
        put_scale_min_k4(scales_out, j, ls, lm);
    }
    *hd = ec_h(d_block);
    *hdmin = ec_h(m_block);
    requant_k4(x, scales_out, *hd, *hdmin, nmax, L);
}

/* w NULL: the reference search (no importance weights). */
static void q4_k_row(const float *x, void *vy, int64_t n, const float *w, bool v8)
{
    assert(n % QK_K == 0);
    struct ec_block_q4_k *y = vy;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        if (w) {
            k4_imat_block(x, w + QK_K * i, 15, false, L, y[i].scales, &y[i].d, &y[i].dmin, v8);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            k4_ref_block(x, 15, -1.0f, 0.1f, 20, L, y[i].scales, &y[i].d, &y[i].dmin, v8);
        }
        pack_q4_k(L, y[i].qs);
    }
}

void ec_q4_k_quantize_row_ref(const float *x, void *vy, int64_t n)
{
    q4_k_row(x, vy, n, NULL, false);
}

void ec_q4_k_quantize_row_fast(const float *x, void *vy, int64_t n)
{
    q4_k_row(x, vy, n, NULL, true);
}

void ec_q4_k_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *w)
{
    q4_k_row(x, vy, n, w, false);
}

void ec_q4_k_quantize_row_imat_fast(const float *x, void *vy, int64_t n, const float *w)
{
    q4_k_row(x, vy, n, w, true);
}

EC_AVX2_CLONES
void ec_q4_k_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
    const struct ec_block_q4_k *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = ec_f(x[i].d);
        const float dmin = ec_f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0; j < QK_K / 64; j++, q += 32) {
            uint8_t sc, m;
            get_scale_min_k4(x[i].scales, 2 * j, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            get_scale_min_k4(x[i].scales, 2 * j + 1, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)(q[l] & 15) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* ---- Q5_K ---- */

static void q5_k_row(const float *x, void *vy, int64_t n, const float *w, bool v8)
{
    assert(n % QK_K == 0);
    struct ec_block_q5_k *y = vy;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        if (w) {
            k4_imat_block(x, w + QK_K * i, 31, true, L, y[i].scales, &y[i].d, &y[i].dmin, v8);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            k4_ref_block(x, 31, -0.5f, 0.1f, 15, L, y[i].scales, &y[i].d, &y[i].dmin, v8);
        }
        pack_q5_k(L, &y[i]);
    }
}

void ec_q5_k_quantize_row_ref(const float *x, void *vy, int64_t n)
{
    q5_k_row(x, vy, n, NULL, false);
}

void ec_q5_k_quantize_row_fast(const float *x, void *vy, int64_t n)
{
    q5_k_row(x, vy, n, NULL, true);
}

void ec_q5_k_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *w)
{
    q5_k_row(x, vy, n, w, false);
}

void ec_q5_k_quantize_row_imat_fast(const float *x, void *vy, int64_t n, const float *w)
{
    q5_k_row(x, vy, n, w, true);
}

void ec_q5_k_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
    const struct ec_block_q5_k *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = ec_f(x[i].d);
        const float dmin = ec_f(x[i].dmin);
        const uint8_t *ql = x[i].qs;
        const uint8_t *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K / 64; j++, ql += 32) {
            uint8_t sc, m;
            get_scale_min_k4(x[i].scales, 2 * j, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            get_scale_min_k4(x[i].scales, 2 * j + 1, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((ql[l] & 15) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

/* ---- Q6_K ---- */

/* qw == NULL: weights x^2 (the reference); else the imatrix as given. ggml's
 * Q6_K does not mix sigma^2 into the weights. */
static void q6_k_row(const float *x, struct ec_block_q6_k *y, int64_t n, const float *w, bool v8)
{
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0.0f, max_abs_scale = 0.0f;
        if (v8) {
            for (int ib = 0; ib < QK_K / 16; ib += NL)
                qx_groups8(16, 32, x + 16 * ib, w ? w + QK_K * i + 16 * ib : NULL, L + 16 * ib,
                           scales + ib);
        } else {
            for (int ib = 0; ib < QK_K / 16; ib++) {
                const float *qw = w ? w + QK_K * i + 16 * ib : NULL;
                scales[ib] = ec_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, qw);
            }
        }
        for (int ib = 0; ib < QK_K / 16; ib++) {
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        y[i].d = ec_h(1.0f / iscale);
        for (int ib = 0; ib < QK_K / 16; ib++)
            y[i].scales[ib] = (int8_t)ec_imin(127, ec_nearest_int(iscale * scales[ib]));
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = ec_f(y[i].d) * (float)y[i].scales[j];
            if (d == 0.0f)
                continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] =
                    (int8_t)(ec_iclamp(ec_nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
        }
        uint8_t *ql = y[i].ql;
        uint8_t *qh = y[i].qh;
        for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const int a = L[j + l], b = L[j + l + 32], c = L[j + l + 64], e = L[j + l + 96];
                ql[l] = (uint8_t)((a & 15) | ((c & 15) << 4));
                ql[l + 32] = (uint8_t)((b & 15) | ((e & 15) << 4));
                qh[l] = (uint8_t)((a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6));
            }
        }
    }
}

void ec_q6_k_quantize_row_ref(const float *x, void *vy, int64_t n)
{
    assert(n % QK_K == 0);
    q6_k_row(x, vy, n, NULL, false);
}

void ec_q6_k_quantize_row_fast(const float *x, void *vy, int64_t n)
{
    assert(n % QK_K == 0);
    q6_k_row(x, vy, n, NULL, true);
}

void ec_q6_k_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *w)
{
    q6_k_row(x, vy, n, w, false);
}

void ec_q6_k_quantize_row_imat_fast(const float *x, void *vy, int64_t n, const float *w)
{
    q6_k_row(x, vy, n, w, true);
}

EC_AVX2_CLONES
void ec_q6_k_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
    const struct ec_block_q6_k *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = ec_f(x[i].d);
        const uint8_t *ql = x[i].ql;
        const uint8_t *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int h = 0; h < QK_K; h += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}
