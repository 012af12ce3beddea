/* quantizers/iq4.c: IQ4_NL and IQ4_XS reference kernels.
 *
 * Both map 4-bit indices through the same non-linear table of 16 levels.
 * IQ4_NL has one fp16 scale per 32 elements; IQ4_XS has one fp16 scale per
 * 256 and 6-bit sub-scales per 32. llama.cpp quantizes both with one routine
 * (quantize_row_iq4_nl_impl, ntry = 7): per 32-element block, start from the
 * scale that maps the extreme element onto the table's end, try 15 nearby
 * inverse scales and keep the best weighted least-squares scale. Without an
 * imatrix the weights are x^2; with one, imatrix * sqrt(sigma^2 + x^2) where
 * sigma^2 is twice the mean square of the (super-)block.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "edgec/quant.h"
#include "quantizers/quant_internal.h"

#define GROUP_EPS 1e-15f
#define NTRY 7

const int8_t ec_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};

/* Index of the table level nearest to v: bisection, then the closer of the
 * two neighbours (the upper one on a tie). NaN ends on the last level. */
static int best_index(const int8_t *val, float v)
{
    if (v <= val[0])
        return 0;
    if (v >= val[15])
        return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (v < val[mid])
            hi = mid;
        else
            lo = mid;
    }
    return v - val[hi - 1] < val[hi] - v ? hi - 1 : hi;
}

/* Output of one super-block: the fp16 scale, packed indices and (for more
 * than one sub-block) the 6-bit sub-scales. */
struct iq4_out {
    uint16_t *dh;
    uint8_t *q4;        /* n/2 bytes */
    uint16_t *scales_h; /* NULL when n == 32 */
    uint8_t *scales_l;  /* NULL when n == 32 */
};

/* n = 32 (IQ4_NL) or 256 (IQ4_XS); qw = imatrix slice for these n elements or NULL. */
static void iq4_quantize_super(int n, const float *x, const float *qw, struct iq4_out o)
{
    const int8_t *values = ec_iq4nl_values;
    float scales[EC_QK_K / 32], weight[32];
    uint8_t L[EC_QK_K];
    const int nsub = n / 32;

    float sigma2 = 0.0f;
    for (int j = 0; j < n; j++)
        sigma2 += x[j] * x[j];
    sigma2 *= 2.0f / (float)n;

    memset(o.q4, 0, (size_t)n / 2);
    *o.dh = ec_h(0.0f);

    float max_scale = 0.0f, amax_scale = 0.0f;
    for (int ib = 0; ib < nsub; ib++) {
        const float *xb = x + 32 * ib;
        uint8_t *Lb = L + 32 * ib;
        if (qw) {
            for (int j = 0; j < 32; j++)
                weight[j] = qw[32 * ib + j] * sqrtf(sigma2 + xb[j] * xb[j]);
        } else {
            for (int j = 0; j < 32; j++)
                weight[j] = xb[j] * xb[j];
        }
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        if (amax < GROUP_EPS) {
            scales[ib] = 0.0f;
            continue;
        }
        /* the extreme element lands on values[0] = -127 */
        float d = -max / values[0];
        float id = 1.0f / d;
        float sumqx = 0.0f, sumq2 = 0.0f;
        for (int j = 0; j < 32; j++) {
            int l = best_index(values, id * xb[j]);
            Lb[j] = (uint8_t)l;
            float q = values[l];
            sumqx += weight[j] * q * xb[j];
            sumq2 += weight[j] * q * q;
        }
        d = sumqx / sumq2;
        float best = d * sumqx;
        for (int itry = -NTRY; itry <= NTRY; itry++) {
            id = (float)(itry + values[0]) / max;
            sumqx = sumq2 = 0.0f;
            for (int j = 0; j < 32; j++) {
                float q = values[best_index(values, id * xb[j])];
                sumqx += weight[j] * q * xb[j];
                sumq2 += weight[j] * q * q;
            }
            if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if (fabsf(d) > amax_scale) {
            amax_scale = fabsf(d);
            max_scale = d;
        }
    }

    if (nsub > 1) {
        *o.scales_h = 0;
        const float d = -max_scale / 32;
        *o.dh = ec_h(d);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int ib = 0; ib < nsub; ib++) {
            int l = ec_iclamp(ec_nearest_int(id * scales[ib]), -32, 31);
            /* the indices follow the unrounded (fp32) super-block scale */
            const float dl = d * (float)l;
            const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
            for (int j = 0; j < 32; j++)
                L[32 * ib + j] = (uint8_t)best_index(values, idl * x[32 * ib + j]);
            l += 32;
            if (ib % 2 == 0)
                o.scales_l[ib / 2] = (uint8_t)(l & 15);
            else
                o.scales_l[ib / 2] |= (uint8_t)((l & 15) << 4);
            *o.scales_h |= (uint16_t)((l >> 4) << (2 * (ib % 8)));
        }
    } else {
        *o.dh = ec_h(scales[0]);
        const float id = scales[0] != 0.0f ? 1.0f / scales[0] : 0.0f;
        for (int j = 0; j < n; j++)
            L[j] = (uint8_t)best_index(values, id * x[j]);
    }

    for (int i = 0; i < n / 32; i++)
        for (int j = 0; j < 16; j++)
            o.q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

/* ---- IQ4_NL ---- */

void ec_iq4_nl_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *w)
{
    assert(n % 32 == 0);
    struct ec_block_iq4_nl *y = vy;
    for (int64_t b = 0; b < n / 32; b++) {
        struct iq4_out o = {.dh = &y[b].d, .q4 = y[b].qs};
        iq4_quantize_super(32, x + 32 * b, w ? w + 32 * b : NULL, o);
    }
}

void ec_iq4_nl_quantize_row_ref(const float *x, void *vy, int64_t n)
{
    ec_iq4_nl_quantize_row_imat_ref(x, vy, n, NULL);
}

void ec_iq4_nl_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
    const struct ec_block_iq4_nl *x = vx;
    for (int64_t b = 0; b < n / 32; b++, y += 32) {
        const float d = ec_f(x[b].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)ec_iq4nl_values[x[b].qs[j] & 15];
            y[j + 16] = d * (float)ec_iq4nl_values[x[b].qs[j] >> 4];
        }
    }
}

/* ---- IQ4_XS ---- */

void ec_iq4_xs_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *w)
{
    assert(n % EC_QK_K == 0);
    struct ec_block_iq4_xs *y = vy;
    for (int64_t b = 0; b < n / EC_QK_K; b++) {
        struct iq4_out o = {
            .dh = &y[b].d, .q4 = y[b].qs, .scales_h = &y[b].scales_h, .scales_l = y[b].scales_l};
        iq4_quantize_super(EC_QK_K, x + EC_QK_K * b, w ? w + EC_QK_K * b : NULL, o);
    }
}

void ec_iq4_xs_quantize_row_ref(const float *x, void *vy, int64_t n)
{
    ec_iq4_xs_quantize_row_imat_ref(x, vy, n, NULL);
}

void ec_iq4_xs_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
    const struct ec_block_iq4_xs *x = vx;
    for (int64_t b = 0; b < n / EC_QK_K; b++) {
        const float d = ec_f(x[b].d);
        const uint8_t *qs = x[b].qs;
        for (int ib = 0; ib < EC_QK_K / 32; ib++, y += 32, qs += 16) {
            const int ls = ((x[b].scales_l[ib / 2] >> (4 * (ib % 2))) & 15) |
                           (((x[b].scales_h >> (2 * ib)) & 3) << 4);
            const float dl = d * (float)(ls - 32);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)ec_iq4nl_values[qs[j] & 15];
                y[j + 16] = dl * (float)ec_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}
