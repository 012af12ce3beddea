/* Scalar IEEE half and bfloat16 conversions (see edgec/fp16.h).
 *
 * Written from the IEEE 754 binary16 definition: round to nearest, ties to
 * even, on the bit patterns, so results do not depend on the compiler or on
 * F16C being present. */
#include <string.h>

#include "edgec/fp16.h"

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t ec_fp32_to_fp16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t mant = x & 0x7fffffu;

    if (exp == 0xffu) /* Inf or NaN (NaN kept quiet, payload's top bits) */
        return (uint16_t)(sign | 0x7c00u | (mant ? (0x200u | (mant >> 13)) : 0));

    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f)
        return (uint16_t)(sign | 0x7c00u); /* overflow */
    if (e <= 0) {
        /* subnormal half (or zero): value = mant_full * 2^(exp-150) expressed
         * in units of 2^-24 */
        if (e < -10)
            return sign; /* below half of the smallest subnormal: rounds to 0 */
        uint32_t m = mant | 0x800000u;      /* implicit bit */
        uint32_t shift = (uint32_t)(14 - e); /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return (uint16_t)(sign | q); /* q may carry into the exponent: correct */
    }
    uint32_t q = ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1)))
        q++; /* may carry into exponent, up to Inf: correct */
    return (uint16_t)(sign | q);
}

float ec_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f)
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return bits_f32(sign);
        /* subnormal: mant * 2^-24, exact in binary32 */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t ec_fp32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 64u); /* NaN: force quiet */
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

float ec_bf16_to_fp32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

void ec_fp32_to_fp16_row(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = ec_fp32_to_fp16(x[i]);
}

void ec_fp16_to_fp32_row(const uint16_t *x, float *y, size_t n)
{
    ec_fp16_bytes_to_fp32_row(x, y, n);
}

/* The same values as ec_fp16_to_fp32, without branches, so that the loop
 * vectorizes: the exponent is rebiased by an addition; Inf/NaN get a second
 * rebias to 255; zeros and subnormals are built as 2^-14 * (1 + m/1024) and
 * the 2^-14 taken off again by a subtraction, which is exact. The tests
 * compare all 65536 inputs with the scalar function. */
void ec_fp16_bytes_to_fp32_row(const void *src, float *y, size_t n)
{
    const unsigned char *p = src;
    const float magic = bits_f32(113u << 23);
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        uint32_t o = (uint32_t)(h & 0x7fffu) << 13;
        const uint32_t e = o & 0x0f800000u;
        o += 112u << 23;
        o += e == 0x0f800000u ? 112u << 23 : 0u;
        const uint32_t sub = e == 0 ? 0xffffffffu : 0u;
        o += sub & (1u << 23);
        const float f = bits_f32(o);
        const float fs = f - magic;
        uint32_t u = (f32_bits(fs) & sub) | (o & ~sub);
        u |= (uint32_t)(h & 0x8000u) << 16;
        y[i] = bits_f32(u);
    }
}

void ec_fp32_to_bf16_row(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = ec_fp32_to_bf16(x[i]);
}

void ec_bf16_to_fp32_row(const uint16_t *x, float *y, size_t n)
{
    ec_bf16_bytes_to_fp32_row(x, y, n);
}

void ec_bf16_bytes_to_fp32_row(const void *src, float *y, size_t n)
{
    const unsigned char *p = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = bits_f32((uint32_t)h << 16);
    }
}
