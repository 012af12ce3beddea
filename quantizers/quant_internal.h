/* quantizers/quant_internal.h: numeric helpers shared by the reference kernels.
 *
 * Private to quantizers/. Each helper reproduces, bit for bit, what llama.cpp's
 * reference quantizers compute on x86-64 (the golden build), including the
 * cases where C leaves the result undefined, so that our bytes match and the
 * sanitizers stay quiet.
 */
#ifndef EDGEC_QUANT_INTERNAL_H
#define EDGEC_QUANT_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "edgec/fp16.h"

/* Round to nearest, ties to even, by adding 1.5 * 2^23: the sum's low mantissa
 * bits then hold the integer offset by 2^22. Exact for |v| <= 2^22 - 1; for
 * other inputs (huge, Inf, NaN) it still returns the same bits ggml's
 * nearest_int does, which is what the golden bytes contain. */
static inline int ec_nearest_int(float v)
{
    float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* float -> int32 truncation as the x86 cvttss2si instruction does it: values
 * outside the int32 range and NaN give INT32_MIN ("integer indefinite").
 * ggml casts floats straight to (u)int8; on x86 that is cvttss2si followed by
 * keeping the low byte, which callers get by converting the result. */
static inline int32_t ec_trunc_i32(float v)
{
    if (v > -2147483904.0f && v < 2147483648.0f)
        return (int32_t)v;
    return INT32_MIN;
}

/* ec_trunc_i32(roundf(v)) without the libm call (roundf was ~10% of Q8_0 time):
 * v - trunc(v) is exact for every float, so the tie test matches roundf's
 * half-away-from-zero; |v| >= 2^23 is already integral and NaN goes the slow way. */
static inline int32_t ec_round_away_i32(float v)
{
    if (!(v > -8388608.0f && v < 8388608.0f))
        return ec_trunc_i32(roundf(v));
    int32_t i = (int32_t)v;
    float f = v - (float)i;
    return i + (f >= 0.5f) - (f <= -0.5f);
}

/* Store a float as fp16 bits and read it back as ggml's table lookup does. */
static inline uint16_t ec_h(float f)
{
    return ec_fp32_to_fp16(f);
}

static inline float ec_f(uint16_t h)
{
    return ec_fp16_to_fp32(h);
}

static inline int ec_imin(int a, int b)
{
    return a < b ? a : b;
}

static inline int ec_imax(int a, int b)
{
    return a > b ? a : b;
}

static inline int ec_iclamp(int v, int lo, int hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Shared scale searches (k_quants.c), also used by the legacy imatrix paths. */

/* Symmetric search: levels l in [-nmax, nmax-1] stored as l + nmax in L;
 * returns the scale. qw may be NULL (weights from rmse_type). */
float ec_make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw);

/* Asymmetric search with a non-positive minimum, weighted least squares with
 * a grid of nstep+1 candidate inverse scales. weights may be NULL (x^2).
 * Writes -min to *the_min and returns the scale. */
float ec_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          bool use_mad);

/* ---- eight groups at a time (k_search_v8.c) ---- */

/* Groups searched per call; element i of group j is at [i * EC_SEARCH_LANES + j]. */
#define EC_SEARCH_LANES 8
/* Below this absolute maximum a symmetric group counts as all zero. */
#define EC_GROUP_EPS 1e-15f

/* ec_make_qkx3_quants (= make_qkx2) on 8 groups of n <= 32 elements with
 * weights wt (required): bit-identical to 8 scalar calls. Writes the levels
 * to Lt, the scales to scale[8] and -min to the_min[8]. */
void ec_qkx_search_v8(int n, int nmax, const float *xt, const float *wt, float rmin, float rdelta,
                      int nstep, bool use_mad, uint8_t *Lt, float *scale, float *the_min);

/* ec_make_qx_quants(n, nmax, x, L, 1, qw) on 8 groups of n <= 32 elements;
 * wt NULL: weights x^2. Bit-identical to 8 scalar calls. */
void ec_qx_search_v8(int n, int nmax, const float *xt, const float *wt, int8_t *Lt, float *scale);

#endif
