/* quantizers/vec8.h: eight-lane float / int32 vectors (GCC vector
 * extensions) and the lane-wise helpers the fast quantization kernels share
 * (k_search_v8.c, q8_fast.c). Every helper is force-inlined, so it takes the
 * ISA of the function it lands in: the kernels compile their bodies once for
 * the baseline ISA (SSE2 halves) and once under target("avx2"). */
#ifndef EDGEC_QUANTIZERS_VEC8_H
#define EDGEC_QUANTIZERS_VEC8_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#pragma GCC diagnostic ignored "-Wpsabi"
typedef float vf __attribute__((vector_size(32)));
typedef int32_t vi __attribute__((vector_size(32)));
#define BODY static inline __attribute__((always_inline))

BODY vf ld(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Broadcasts. Written as vector + scalar so that GCC emits one broadcast
 * instead of lane-by-lane inserts; callers still hoist them out of loops. */
BODY vf splat(float s)
{
    const vf z = {0};
    return z + s;
}

BODY vi isplat(int32_t s)
{
    const vi z = {0};
    return z + s;
}

/* m ? a : b, lane by lane (m is all ones or all zeros per lane) */
BODY vf fsel(vi m, vf a, vf b)
{
    vi ai, bi, r;
    memcpy(&ai, &a, sizeof ai);
    memcpy(&bi, &b, sizeof bi);
    r = (ai & m) | (bi & ~m);
    vf out;
    memcpy(&out, &r, sizeof out);
    return out;
}

BODY vi isel(vi m, vi a, vi b)
{
    return (a & m) | (b & ~m);
}

BODY vf vabs(vf a)
{
    vi ai;
    memcpy(&ai, &a, sizeof ai);
    ai &= isplat(0x7fffffff);
    memcpy(&a, &ai, sizeof a);
    return a;
}

/* any lane of the mask set */
BODY bool any(vi m)
{
    int32_t a[8];
    memcpy(a, &m, sizeof a);
    int32_t o = 0;
    for (int k = 0; k < 8; k++)
        o |= a[k];
    return o != 0;
}

#endif
