/* tests/kernels/test_round_away.c: ec_round_away_i32 (the Q8_0 fast rounding)
 * equals ec_trunc_i32(roundf(v)) for every float in the ranges quantizers hit,
 * ties, signed zeros, huge values, infinities and NaN. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <criterion/criterion.h>
#include "../../quantizers/quant_internal.h"

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

Test(round_away, matches_roundf_on_all_floats_below_2pow24)
{
    /* every float with |v| < 2^24 (exponent field < 151), both signs */
    uint64_t bad = 0;
    for (uint32_t u = 0; u < (151u << 23); u += 7) {
        for (int s = 0; s < 2; s++) {
            float v = from_bits(u | ((uint32_t)s << 31));
            if (ec_round_away_i32(v) != ec_trunc_i32(roundf(v)))
                bad++;
        }
    }
    cr_assert_eq(bad, 0, "%llu mismatches", (unsigned long long)bad);
}

Test(round_away, ties_and_specials)
{
    const float v[] = {0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 126.5f, -126.5f, 127.49999f,
                       0.49999997f, -0.49999997f, 8388607.5f, -8388607.5f, 8388608.0f,
                       3e9f, -3e9f, INFINITY, -INFINITY, NAN, 0.0f, -0.0f};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        cr_assert_eq(ec_round_away_i32(v[i]), ec_trunc_i32(roundf(v[i])), "v=%g", (double)v[i]);
    cr_assert_eq(ec_round_away_i32(2.5f), 3);
    cr_assert_eq(ec_round_away_i32(-2.5f), -3);
}
