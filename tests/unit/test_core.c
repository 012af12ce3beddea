/* Core: fp16/bf16 conversion, dtype sizes, sha256, atomic output files. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "edgec/dtype.h"
#include "edgec/fp16.h"
#include "edgec/io.h"
#include "edgec/sha256.h"
#include "src/core/cpu.h"

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

Test(core, fp16_rounds_to_nearest_even_and_overflows_to_inf)
{
    cr_assert_eq(ec_fp32_to_fp16(1.0f), 0x3c00);
    cr_assert_eq(ec_fp32_to_fp16(-2.0f), 0xc000);
    cr_assert_eq(ec_fp32_to_fp16(65504.0f), 0x7bff);
    cr_assert_eq(ec_fp32_to_fp16(65519.0f), 0x7bff); /* below the halfway point */
    cr_assert_eq(ec_fp32_to_fp16(65520.0f), 0x7c00); /* tie rounds to even = Inf */
    cr_assert_eq(ec_fp32_to_fp16(1e5f), 0x7c00);
    cr_assert_eq(ec_fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00);     /* tie -> even (down) */
    cr_assert_eq(ec_fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02); /* tie -> even (up) */
    cr_assert_eq(ec_fp32_to_fp16(0x1p-24f), 0x0001);            /* smallest subnormal */
    cr_assert_eq(ec_fp32_to_fp16(0x1p-25f), 0x0000);            /* tie -> even (0) */
    cr_assert_eq(ec_fp32_to_fp16(0x1.8p-25f), 0x0001);
    cr_assert_eq(ec_fp32_to_fp16(-0.0f), 0x8000);
    cr_assert_eq(ec_fp32_to_fp16(INFINITY), 0x7c00);
    cr_assert(isnan(ec_fp16_to_fp32(ec_fp32_to_fp16(NAN))));
}

Test(core, fp16_roundtrips_every_half_value)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = ec_fp16_to_fp32((uint16_t)h);
        if (isnan(f))
            continue;
        cr_assert_eq(ec_fp32_to_fp16(f), h, "half 0x%04x -> %g -> 0x%04x", h, f,
                     ec_fp32_to_fp16(f));
    }
}

Test(core, row_conversions_equal_the_scalar_ones_on_every_value)
{
    /* all 65536 halves / bfloat16s, from an odd address (unaligned rows) */
    static unsigned char raw[2 * 0x10000 + 1];
    static float y[0x10000];
    for (uint32_t h = 0; h < 0x10000; h++)
        memcpy(raw + 1 + 2 * h, &(uint16_t){(uint16_t)h}, 2);
    ec_fp16_bytes_to_fp32_row(raw + 1, y, 0x10000);
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = ec_fp16_to_fp32((uint16_t)h);
        cr_assert(memcmp(&f, &y[h], 4) == 0, "half 0x%04x: row %a, scalar %a", h, y[h], f);
    }
    ec_bf16_bytes_to_fp32_row(raw + 1, y, 0x10000);
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = ec_bf16_to_fp32((uint16_t)h);
        cr_assert(memcmp(&f, &y[h], 4) == 0, "bf16 0x%04x: row %a, scalar %a", h, y[h], f);
    }
}

Test(core, bf16_matches_the_reference_formula)
{
    cr_assert_eq(ec_fp32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(ec_fp32_to_bf16(from_bits(0x3f808000)), 0x3f80); /* tie -> even */
    cr_assert_eq(ec_fp32_to_bf16(from_bits(0x3f818000)), 0x3f82);
    cr_assert_eq(ec_fp32_to_bf16(from_bits(0x00000001)), 0x0000); /* subnormal kept (rounds) */
    cr_assert_eq(ec_fp32_to_bf16(from_bits(0x00010000)), 0x0001);
    cr_assert_eq(ec_fp32_to_bf16(from_bits(0x7fc00001)), 0x7fc0 | 0x40);
    cr_assert_eq(ec_bf16_to_fp32(0x3f80), 1.0f);
}

Test(core, dtype_sizes_follow_the_block_layouts)
{
    uint64_t ne[2] = {512, 3}, b;
    cr_assert(ec_dtype_tensor_bytes(EC_Q4_K, 2, ne, &b));
    cr_assert_eq(b, 3 * 288);
    cr_assert_eq(ec_dtype_row_bytes(EC_Q8_0, 512), 544);
    cr_assert_eq(ec_dtype_row_bytes(EC_Q8_0, 172), 0);
    uint64_t huge[2] = {UINT64_MAX / 2, 4};
    cr_assert_not(ec_dtype_tensor_bytes(EC_F32, 2, huge, &b));
    enum ec_dtype t;
    cr_assert(ec_dtype_from_name("q6_k", &t));
    cr_assert_eq(t, EC_Q6_K);
    cr_assert_not(ec_dtype_from_name("Q4_2", &t));
}

Test(core, sha256_matches_fips_vectors)
{
    char hex[65];
    ec_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ec_sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ec_sha256_hex(m, strlen(m), hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

Test(core, outfile_appears_only_on_commit_and_abort_leaves_nothing)
{
    char *dir = ec_test_tmpdir();
    char *dest = ec_path_join(dir, "out.bin");
    struct ec_outfile o;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_outfile_open(&o, dest, NULL, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(ec_outfile_write(&o, "hello", 5, &d), EC_OK);
    cr_assert_not(ec_path_exists(dest));
    cr_assert(ec_path_exists(o.tmp_path));
    char *tmp = strdup(o.tmp_path);
    cr_assert_eq(ec_outfile_commit(&o, &d), EC_OK, "%s", d.msg);
    cr_assert(ec_path_exists(dest));
    cr_assert_not(ec_path_exists(tmp));
    free(tmp);

    /* abort removes the temporary file and leaves the old destination */
    cr_assert_eq(ec_outfile_open(&o, dest, NULL, &d), EC_OK);
    tmp = strdup(o.tmp_path);
    cr_assert_eq(ec_outfile_write(&o, "x", 1, &d), EC_OK);
    ec_outfile_abort(&o);
    cr_assert_not(ec_path_exists(tmp));
    char *buf;
    size_t n;
    cr_assert_eq(ec_read_file(dest, 1024, &buf, &n, &d), EC_OK);
    cr_assert_eq(n, 5);
    cr_assert_str_eq(buf, "hello");
    free(buf);

    /* an output naming an input is refused */
    const char *inputs[] = {dest, NULL};
    cr_assert_eq(ec_outfile_open(&o, dest, inputs, &d), EC_ERR_ARG);
    cr_assert(strstr(d.msg, "overwrite") != NULL, "%s", d.msg);
    unlink(dest);
    rmdir(dir);
    free(tmp);
    free(dest);
    free(dir);
}

/* The one CPU probe: stable across calls, and consistent (every AVX-512
 * extension implies AVX-512F, which implies AVX2 on any real x86-64 CPU). */
Test(core, cpu_features_are_stable_and_consistent)
{
    const unsigned f = ec_cpu_features();
    cr_expect_eq(ec_cpu_features(), f);
    const unsigned ext = EC_CPU_AVX512DQ | EC_CPU_AVX512BW | EC_CPU_AVX512VL | EC_CPU_AVX512VNNI;
    if (f & ext)
        cr_expect(f & EC_CPU_AVX512F, "AVX-512 extensions 0x%x without AVX-512F", f & ext);
    if (f & EC_CPU_AVX512F)
        cr_expect(f & EC_CPU_AVX2, "AVX-512F without AVX2");
    cr_expect_eq(ec_cpu_has(f), 1);
    fprintf(stderr, "[core] cpu features 0x%x (avx2 %d, fma %d, avx512f %d, vnni %d)\n", f,
            ec_cpu_has(EC_CPU_AVX2), ec_cpu_has(EC_CPU_FMA), ec_cpu_has(EC_CPU_AVX512F),
            ec_cpu_has(EC_CPU_AVX512VNNI));
}
