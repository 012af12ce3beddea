/* Quantization kernels against llama.cpp's golden blocks
 * (shared/golden/quant/blocks.safetensors, README section 1).
 *
 * Walks the traits table, so a type that gains kernels is checked
 * automatically; a type with kernels but no golden data fails unless it is
 * listed in not_in_golden[] below.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "edgec/dtype.h"
#include "edgec/fp16.h"
#include "edgec/quant.h"
#include "kernels/golden_blocks.h"

static const char *const sets[] = {"x_normal", "x_real", "x_outlier", "x_edge", "x_768"};
#define N_SETS (sizeof sets / sizeof sets[0])

/* Types with kernels that the golden file does not cover, and why. */
static const enum ec_dtype not_in_golden[] = {
    EC_F32, /* identity copy: nothing to compare against */
};

static bool is_not_in_golden(enum ec_dtype t)
{
    for (size_t k = 0; k < sizeof not_in_golden / sizeof not_in_golden[0]; k++)
        if (not_in_golden[k] == t)
            return true;
    return false;
}

static struct golden_file open_golden(void)
{
    struct golden_file g;
    char *path = ec_test_shared("golden/quant/blocks.safetensors");
    char err[512];
    int rc = golden_open(&g, path, err, sizeof err);
    free(path);
    cr_assert_eq(rc, 0, "%s", err);
    return g;
}

struct input_set {
    const float *x;
    int64_t rows, cols;
    const float *imatrix;
};

/* every row of the set through one kernel: row_imat (with the set's
 * importance weights) when given, else row; got is poisoned first */
static void quantize_set(const struct input_set *in, ec_from_f32_fn row,
                         ec_from_f32_imat_fn row_imat, uint8_t *got, size_t row_bytes,
                         uint8_t poison)
{
    memset(got, poison, row_bytes * (size_t)in->rows);
    for (int64_t r = 0; r < in->rows; r++) {
        const float *x = in->x + r * in->cols;
        uint8_t *y = got + (size_t)r * row_bytes;
        if (row_imat)
            row_imat(x, y, in->cols, in->imatrix);
        else
            row(x, y, in->cols);
    }
}

static struct input_set get_set(const struct golden_file *g, const char *name)
{
    struct golden_tensor t, im;
    cr_assert_eq(golden_get(g, name, &t), 0, "golden: tensor '%s' missing", name);
    cr_assert_str_eq(t.dtype, "F32");
    cr_assert_eq(t.ndim, 2);
    struct input_set s = {(const float *)t.data, t.shape[0], t.shape[1], NULL};
    char imname[64];
    snprintf(imname, sizeof imname, "imatrix_%lld", (long long)s.cols);
    cr_assert_eq(golden_get(g, imname, &im), 0, "golden: tensor '%s' missing", imname);
    cr_assert_eq(im.n_bytes, (size_t)s.cols * sizeof(float));
    s.imatrix = (const float *)im.data;
    return s;
}

/* Compare row by row; print the first difference of the first differing row.
 * Returns the number of differing rows. */
static int compare_rows(const char *set, const char *label, const uint8_t *got, const uint8_t *want,
                        int64_t rows, size_t row_bytes, size_t elem_bytes)
{
    int bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *a = got + (size_t)r * row_bytes, *b = want + (size_t)r * row_bytes;
        if (memcmp(a, b, row_bytes) == 0)
            continue;
        if (bad == 0) {
            size_t k = 0;
            while (a[k] == b[k])
                k++;
            if (elem_bytes == 4) {
                float fa, fb;
                memcpy(&fa, a + k / 4 * 4, 4);
                memcpy(&fb, b + k / 4 * 4, 4);
                fprintf(stderr,
                        "MISMATCH set %s %s row %lld: first differing element %zu: got %.9g want "
                        "%.9g\n",
                        set, label, (long long)r, k / 4, fa, fb);
            } else {
                fprintf(stderr,
                        "MISMATCH set %s %s row %lld: first differing byte %zu: got 0x%02x want "
                        "0x%02x\n",
                        set, label, (long long)r, k, a[k], b[k]);
            }
        }
        bad++;
    }
    return bad;
}

static int kernel_types(enum ec_dtype *out, int cap)
{
    int n = ec_dtype_traits_list(out, cap);
    cr_assert(n > 0 && n <= cap);
    return n;
}

Test(quant_golden, every_type_with_kernels_has_golden_data_or_is_listed)
{
    struct golden_file g = open_golden();
    enum ec_dtype types[64];
    int n = kernel_types(types, 64);
    int missing = 0;
    for (int k = 0; k < n; k++) {
        char name[64];
        struct golden_tensor t;
        snprintf(name, sizeof name, "x_normal.%s", ec_dtype_name(types[k]));
        bool have = golden_get(&g, name, &t) == 0;
        if (!have && !is_not_in_golden(types[k])) {
            fprintf(stderr, "type %s has kernels but no golden data and is not listed\n",
                    ec_dtype_name(types[k]));
            missing++;
        }
        /* a listed type that gained golden data should be un-listed */
        cr_expect(!(have && is_not_in_golden(types[k])), "type %s is listed but has golden data",
                  ec_dtype_name(types[k]));
    }
    golden_close(&g);
    cr_assert_eq(missing, 0);
}

/* imat = false: S.T, true: S.T.imat */
static void check_quantize(bool imat)
{
    struct golden_file g = open_golden();
    enum ec_dtype types[64];
    int n = kernel_types(types, 64);
    int total_bad = 0, checked = 0, fast_checked = 0;
    for (int k = 0; k < n; k++) {
        const enum ec_dtype t = types[k];
        const struct ec_dtype_traits *tr = ec_dtype_traits(t);
        const int fast_before = fast_checked;
        const char *tn = ec_dtype_name(t);
        if (is_not_in_golden(t))
            continue;
        bool plain = !ec_dtype_info(t)->is_quantized;
        if (plain && imat)
            continue; /* golden has no S.F16.imat: ggml ignores the imatrix for them */
        int type_bad = 0;
        for (size_t s = 0; s < N_SETS; s++) {
            struct input_set in = get_set(&g, sets[s]);
            char name[96];
            snprintf(name, sizeof name, "%s.%s%s", sets[s], tn, imat ? ".imat" : "");
            struct golden_tensor want;
            cr_assert_eq(golden_get(&g, name, &want), 0, "golden: '%s' missing", name);
            size_t row_bytes = ec_dtype_row_bytes(t, (uint64_t)in.cols);
            cr_assert_eq(want.n_bytes, row_bytes * (size_t)in.rows, "%s: size", name);
            uint8_t *got = malloc(want.n_bytes);
            /* poison 0xA5: every byte must be written */
            quantize_set(&in, imat ? NULL : tr->from_f32_ref, imat ? tr->from_f32_imat : NULL, got,
                         row_bytes, 0xA5);
            int bad = compare_rows(sets[s], name, got, want.data, in.rows, row_bytes, 1);
            /* the fast kernel, where there is one, must give the same bytes */
            const bool has_fast = imat ? tr->from_f32_imat_fast != NULL : tr->from_f32_fast != NULL;
            if (has_fast) {
                quantize_set(&in, imat ? NULL : tr->from_f32_fast,
                             imat ? tr->from_f32_imat_fast : NULL, got, row_bytes, 0x5A);
                bad += compare_rows(sets[s], name, got, want.data, in.rows, row_bytes, 1);
                fast_checked++;
            }
            type_bad += bad;
            checked++;
            free(got);
        }
        fprintf(stderr, "quantize%s %-7s: %s%s\n", imat ? " imat" : "     ", tn,
                type_bad ? "DIFFERS" : "bytes identical on all sets",
                fast_checked > fast_before ? " (reference and fast kernels)" : "");
        total_bad += type_bad;
    }
    golden_close(&g);
    cr_assert(checked > 0);
    cr_assert(fast_checked > 0, "no fast kernel was checked against the golden bytes");
    cr_assert_eq(total_bad, 0, "%d rows differ from llama.cpp", total_bad);
}

Test(quant_golden, quantize_without_imatrix_matches_llama_cpp)
{
    check_quantize(false);
}

Test(quant_golden, quantize_with_imatrix_matches_llama_cpp)
{
    check_quantize(true);
}

/* Dequantizes the golden bytes (not ours), so this checks to_f32 alone. */
Test(quant_golden, dequantize_matches_llama_cpp)
{
    struct golden_file g = open_golden();
    enum ec_dtype types[64];
    int n = kernel_types(types, 64);
    int total_bad = 0, checked = 0;
    for (int k = 0; k < n; k++) {
        const enum ec_dtype t = types[k];
        if (is_not_in_golden(t) || !ec_dtype_info(t)->is_quantized)
            continue;
        const struct ec_dtype_traits *tr = ec_dtype_traits(t);
        const char *tn = ec_dtype_name(t);
        int type_bad = 0;
        for (size_t s = 0; s < N_SETS; s++) {
            for (int imat = 0; imat < 2; imat++) {
                char qname[96], dname[112];
                snprintf(qname, sizeof qname, "%s.%s%s", sets[s], tn, imat ? ".imat" : "");
                snprintf(dname, sizeof dname, "%s.deq", qname);
                struct golden_tensor q, want;
                cr_assert_eq(golden_get(&g, qname, &q), 0, "golden: '%s' missing", qname);
                cr_assert_eq(golden_get(&g, dname, &want), 0, "golden: '%s' missing", dname);
                cr_assert_str_eq(want.dtype, "F32");
                const int64_t rows = want.shape[0], cols = want.shape[1];
                const size_t row_bytes = ec_dtype_row_bytes(t, (uint64_t)cols);
                cr_assert_eq(q.n_bytes, row_bytes * (size_t)rows);
                float *got = malloc(want.n_bytes);
                for (int64_t r = 0; r < rows; r++)
                    tr->to_f32(q.data + (size_t)r * row_bytes, got + r * cols, cols);
                type_bad += compare_rows(sets[s], dname, (const uint8_t *)got, want.data, rows,
                                         (size_t)cols * 4, 4);
                checked++;
                free(got);
            }
        }
        fprintf(stderr, "dequantize %-7s: %s\n", tn,
                type_bad ? "DIFFERS" : "floats identical on all sets (plain and imat)");
        total_bad += type_bad;
    }
    golden_close(&g);
    cr_assert(checked > 0);
    cr_assert_eq(total_bad, 0, "%d rows differ from llama.cpp", total_bad);
}

/* Plain types round-trip: to_f32 of the golden F16/BF16 bytes equals the
 * scalar converters (the bytes themselves are checked above). */
Test(quant_golden, f16_and_bf16_rows_decode_like_the_scalar_converters)
{
    struct golden_file g = open_golden();
    const enum ec_dtype plain[] = {EC_F16, EC_BF16};
    for (size_t k = 0; k < 2; k++) {
        const struct ec_dtype_traits *tr = ec_dtype_traits(plain[k]);
        cr_assert_not_null(tr);
        for (size_t s = 0; s < N_SETS; s++) {
            char name[96];
            snprintf(name, sizeof name, "%s.%s", sets[s], ec_dtype_name(plain[k]));
            struct golden_tensor q;
            cr_assert_eq(golden_get(&g, name, &q), 0, "golden: '%s' missing", name);
            const size_t n = q.n_bytes / 2;
            float *got = malloc(n * sizeof(float));
            tr->to_f32(q.data, got, (int64_t)n);
            for (size_t i = 0; i < n; i++) {
                uint16_t h;
                memcpy(&h, q.data + 2 * i, 2);
                float want = plain[k] == EC_F16 ? ec_fp16_to_fp32(h) : ec_bf16_to_fp32(h);
                cr_assert(memcmp(&got[i], &want, 4) == 0, "%s element %zu", name, i);
            }
            free(got);
        }
    }
    golden_close(&g);
}
