/* quantizers/k_search_v8.c: the K-quant scale searches, eight groups at a time.
 *
 * The scalar searches in k_quants.c (ggml's make_qkx2/qkx3_quants and, for
 * rmse_type 1, make_qx_quants) are sequential within a group: each candidate
 * scale's running sums are accumulated element by element, and an improvement
 * changes the state the next candidates start from. Different groups, though,
 * are independent. So these kernels run eight groups (the eight 32-element
 * sub-blocks of a Q4_K super-block, or eight of Q6_K's sixteen) in the eight
 * lanes of a vector, each lane performing exactly the scalar operations of its
 * group in exactly the scalar order: the same multiplications and additions
 * (no FMA: the file is built with -ffp-contract=off), the same round-to-nearest
 * trick, the same strict comparisons, with branches turned into per-lane
 * selects. The results are therefore bit-identical to the scalar kernels, which
 * tests/unit/test_quantize.c checks on random and adversarial groups.
 *
 * Layout: element i of group j is at [i * 8 + j] (transposed), so a vector
 * load fetches element i of all eight groups.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "edgec/quant.h"
#include "quantizers/quant_internal.h"
#include "quantizers/vec8.h"
#include "src/core/cpu.h"

#define NL EC_SEARCH_LANES
#define MAXN 32

/* Each kernel body is compiled twice: for the baseline ISA (SSE2 halves of
 * the 8-lane vectors) and for AVX2, chosen at run time. Both do the same
 * arithmetic; the tests run both against the scalar kernels. */
#if defined(__x86_64__) && defined(__GNUC__)
#define EC_SEARCH_X86 1
#endif

static int simd_mode = -1; /* 0 baseline, 1 avx2 */

static int get_mode(void)
{
    int m = __atomic_load_n(&simd_mode, __ATOMIC_RELAXED);
    if (m >= 0)
        return m;
    m = 0;
#ifdef EC_SEARCH_X86
    if (ec_cpu_has(EC_CPU_AVX2))
        m = 1;
#endif
    __atomic_store_n(&simd_mode, m, __ATOMIC_RELAXED);
    return m;
}

bool ec_quant_simd_avx2(void)
{
    return get_mode() == 1;
}

void ec_quant_simd_allow_avx2(bool allow)
{
    __atomic_store_n(&simd_mode, -1, __ATOMIC_RELAXED);
    if (!allow && get_mode() == 1)
        __atomic_store_n(&simd_mode, 0, __ATOMIC_RELAXED);
}

/* ec_nearest_int, lane by lane */
BODY vi vnearest(vf v)
{
    vf t = v + splat(12582912.0f);
    vi i;
    memcpy(&i, &t, sizeof i);
    return (i & isplat(0x007fffff)) - isplat(0x00400000);
}

/* ec_iclamp, lane by lane */
BODY vi vclamp(vi v, vi lo, vi hi)
{
    v = isel(v < lo, lo, v);
    return isel(v > hi, hi, v);
}

BODY vf vfloat(vi v)
{
    return __builtin_convertvector(v, vf);
}

BODY void qkx_body(int n, int nmax, const float *xt, const float *wt, float rmin, float rdelta,
                   int nstep, bool use_mad, uint8_t *Lt, float *scale_out, float *min_out)
{
    vf x[MAXN], w[MAXN];
    vi L[MAXN], Laux[MAXN];
    if (n < 1 || n > MAXN)
        return;
    const vi vlo = isplat(0), vhi = isplat(nmax);
    for (int i = 0; i < n; i++) {
        x[i] = ld(xt + i * NL);
        w[i] = ld(wt + i * NL);
    }
    const vf zero = splat(0.0f);
    vf min = x[0], max = x[0];
    vf sum_w = w[0];
    vf sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        min = fsel(x[i] < min, x[i], min);
        max = fsel(x[i] > max, x[i], max);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    min = fsel(min > zero, zero, min);
    const vi flat = max == min; /* the scalar search returns early here */
    const vf min_flat = min;
    vf iscale = splat((float)nmax) / (max - min);
    vf scale = splat(1.0f) / iscale;
    vf best_error = zero;
    for (int i = 0; i < n; i++) {
        L[i] = vclamp(vnearest(iscale * (x[i] - min)), vlo, vhi);
        vf diff = scale * vfloat(L[i]) + min - x[i];
        diff = use_mad ? vabs(diff) : diff * diff;
        best_error += w[i] * diff;
    }
    for (int is = 0; nstep >= 1 && is <= nstep; is++) {
        const float num = rmin + rdelta * (float)is + (float)nmax;
        iscale = splat(num) / (max - min);
        vf sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; i++) {
            Laux[i] = vclamp(vnearest(iscale * (x[i] - min)), vlo, vhi);
            const vf l = vfloat(Laux[i]);
            const vf wl = w[i] * l;
            sum_l += wl;
            sum_l2 += wl * l;
            sum_xl += wl * x[i];
        }
        const vf D = sum_w * sum_l2 - sum_l * sum_l;
        const vi ok = D > zero;
        if (!any(ok))
            continue;
        vf this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        vf this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        const vi pos = this_min > zero;
        this_min = fsel(pos, zero, this_min);
        this_scale = fsel(pos, sum_xl / sum_l2, this_scale);
        vf cur_error = zero;
        for (int i = 0; i < n; i++) {
            vf diff = this_scale * vfloat(Laux[i]) + this_min - x[i];
            diff = use_mad ? vabs(diff) : diff * diff;
            cur_error += w[i] * diff;
        }
        const vi upd = ok & (cur_error < best_error);
        if (!any(upd))
            continue;
        for (int i = 0; i < n; i++)
            L[i] = isel(upd, Laux[i], L[i]);
        best_error = fsel(upd, cur_error, best_error);
        scale = fsel(upd, this_scale, scale);
        min = fsel(upd, this_min, min);
    }
    scale = fsel(flat, zero, scale);
    min = fsel(flat, min_flat, min);
    const vf neg = -min;
    memcpy(scale_out, &scale, sizeof scale);
    memcpy(min_out, &neg, sizeof neg);
    for (int i = 0; i < n; i++) {
        int32_t l[NL];
        const vi li = isel(flat, isplat(0), L[i]);
        memcpy(l, &li, sizeof l);
        for (int k = 0; k < NL; k++)
            Lt[i * NL + k] = (uint8_t)l[k];
    }
}

BODY void qx_body(int n, int nmax, const float *xt, const float *wt, int8_t *Lt, float *scale_out)
{
    vf x[MAXN], w[MAXN];
    vi L[MAXN], Laux[MAXN];
    if (n < 1 || n > MAXN)
        return;
    const vi vlo = isplat(-nmax), vhi = isplat(nmax - 1), voff = isplat(nmax);
    const vf zero = splat(0.0f);
    vf amax = zero, max = zero;
    for (int i = 0; i < n; i++) {
        x[i] = ld(xt + i * NL);
        w[i] = wt ? ld(wt + i * NL) : x[i] * x[i];
        const vf ax = vabs(x[i]);
        const vi m = ax > amax;
        amax = fsel(m, ax, amax);
        max = fsel(m, x[i], max);
    }
    const vi flat = amax < splat(EC_GROUP_EPS);
    vf iscale = splat((float)-nmax) / max;
    vf sumlx = zero, suml2 = zero;
    for (int i = 0; i < n; i++) {
        const vi l = vclamp(vnearest(iscale * x[i]), vlo, vhi);
        L[i] = l + voff;
        const vf lf = vfloat(l);
        sumlx += w[i] * x[i] * lf;
        suml2 += w[i] * lf * lf;
    }
    vf scale = fsel(suml2 != zero, sumlx / suml2, zero);
    vf best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        const float num = -((float)nmax + 0.1f * (float)is);
        iscale = splat(num) / max;
        sumlx = suml2 = zero;
        for (int i = 0; i < n; i++) {
            const vi l = vclamp(vnearest(iscale * x[i]), vlo, vhi);
            Laux[i] = l;
            const vf lf = vfloat(l);
            sumlx += w[i] * x[i] * lf;
            suml2 += w[i] * lf * lf;
        }
        const vi upd = (suml2 > zero) & (sumlx * sumlx > best * suml2);
        if (!any(upd))
            continue;
        for (int i = 0; i < n; i++)
            L[i] = isel(upd, Laux[i] + voff, L[i]);
        scale = fsel(upd, sumlx / suml2, scale);
        best = fsel(upd, scale * sumlx, best);
    }
    scale = fsel(flat, zero, scale);
    memcpy(scale_out, &scale, sizeof scale);
    for (int i = 0; i < n; i++) {
        int32_t l[NL];
        const vi li = isel(flat, isplat(0), L[i]);
        memcpy(l, &li, sizeof l);
        for (int k = 0; k < NL; k++)
            Lt[i * NL + k] = (int8_t)l[k];
    }
}

static void qkx_base(int n, int nmax, const float *xt, const float *wt, float rmin, float rdelta,
                     int nstep, bool use_mad, uint8_t *Lt, float *scale, float *the_min)
{
    qkx_body(n, nmax, xt, wt, rmin, rdelta, nstep, use_mad, Lt, scale, the_min);
}

static void qx_base(int n, int nmax, const float *xt, const float *wt, int8_t *Lt, float *scale)
{
    qx_body(n, nmax, xt, wt, Lt, scale);
}

#ifdef EC_SEARCH_X86
__attribute__((target("avx2"))) static void qkx_avx2(int n, int nmax, const float *xt,
                                                     const float *wt, float rmin, float rdelta,
                                                     int nstep, bool use_mad, uint8_t *Lt,
                                                     float *scale, float *the_min)
{
    qkx_body(n, nmax, xt, wt, rmin, rdelta, nstep, use_mad, Lt, scale, the_min);
}

__attribute__((target("avx2"))) static void qx_avx2(int n, int nmax, const float *xt,
                                                    const float *wt, int8_t *Lt, float *scale)
{
    qx_body(n, nmax, xt, wt, Lt, scale);
}
#endif

void ec_qkx_search_v8(int n, int nmax, const float *xt, const float *wt, float rmin, float rdelta,
                      int nstep, bool use_mad, uint8_t *Lt, float *scale, float *the_min)
{
#ifdef EC_SEARCH_X86
    if (get_mode() == 1) {
        qkx_avx2(n, nmax, xt, wt, rmin, rdelta, nstep, use_mad, Lt, scale, the_min);
        return;
    }
#endif
    qkx_base(n, nmax, xt, wt, rmin, rdelta, nstep, use_mad, Lt, scale, the_min);
}

void ec_qx_search_v8(int n, int nmax, const float *xt, const float *wt, int8_t *Lt, float *scale)
{
#ifdef EC_SEARCH_X86
    if (get_mode() == 1) {
        qx_avx2(n, nmax, xt, wt, Lt, scale);
        return;
    }
#endif
    qx_base(n, nmax, xt, wt, Lt, scale);
}
