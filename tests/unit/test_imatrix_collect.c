/* edgec imatrix against llama-imatrix: the golden .dat files (1001 chunks of
 * 128 tokens of the first 200 KiB of wiki.test.raw), and quantizing with the
 * computed matrix.
 *
 * The engine takes the golden build's AVX-512 operation order, so with the
 * AVX-512 F32 kernels stories-student-256's matrix is llama-imatrix's bit for
 * bit and quantizing with it reproduces every golden tensor; stories260K's
 * agrees within 1.4e-5 relative (its 172-wide FFN is reproduced only to the
 * last bits), which flips some K-quant scale choices. On other CPUs (8-lane
 * AVX2 sums) only the 1e-4 bound and the types are required. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "edgec/calib.h"
#include "edgec/engine.h"
#include "edgec/gguf.h"
#include "edgec/imatrix.h"
#include "edgec/io.h"
#include "edgec/quantize.h"
#include "edgec/sha256.h"
#include "edgec/tokenizer.h"

#if defined(__SANITIZE_ADDRESS__)
#define EC_SANITIZED 1
#else
#define EC_SANITIZED 0
#endif

/* First 204800 bytes of wiki.test.raw, as the golden's calibration text. */
static char *make_calib_text(const char *dir)
{
    char *wiki = ec_test_shared("data/wiki.test.raw");
    if (!wiki)
        return NULL;
    char *buf;
    size_t n;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_read_file(wiki, 1u << 24, &buf, &n, &d), EC_OK, "%s", d.msg);
    cr_assert_geq(n, 204800);
    char *path = ec_path_join(dir, "calib_wiki200k.txt");
    FILE *f = fopen(path, "wb");
    cr_assert(f && fwrite(buf, 1, 204800, f) == 204800 && fclose(f) == 0);
    free(buf);
    free(wiki);
    return path;
}

static void compute(const char *model_dir, const char *text, int64_t chunks,
                    struct ec_imatrix *im, struct ec_ppl_result *r)
{
    struct ec_model m;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_model_open(&m, model_dir, &d), EC_OK, "%s", d.msg);
    int32_t *tok;
    int64_t n;
    cr_assert_eq(ec_tokens_from_text_file(&m.vocab, text, &tok, &n, &d), EC_OK, "%s", d.msg);
    /* the full golden passes run on one thread: the bits do not depend on
     * it, and with other suites on the cores two threads' barriers spun
     * for minutes (the student's pass: 12 s alone, over 300 s so) */
    struct ec_imatrix_opts o = {.n_ctx = 128, .max_chunks = chunks, .n_threads = chunks ? 0 : 1,
                                .dataset = "calib"};
    cr_assert_eq(ec_imatrix_compute(&m, tok, n, &o, im, r, &d), EC_OK, "%s", d.msg);
    free(tok);
    ec_model_close(&m);
}

Test(imatrix_collect, a_short_pass_is_consistent_and_round_trips)
{
    char *model = ec_test_shared("models/stories260K");
    if (!model)
        return;
    char *dir = ec_test_tmpdir();
    char *text = make_calib_text(dir);
    struct ec_imatrix im, back;
    struct ec_ppl_result r;
    compute(model, text, 12, &im, &r);
    cr_assert_eq(im.n, 35, "5 layers x 7 weights, got %zu entries", im.n);
    cr_assert_eq(im.last_call, 12);
    for (size_t i = 0; i < im.n; i++) {
        cr_assert_eq(im.entries[i].ncall, 12, "%s", im.entries[i].name);
        cr_assert_eq(strncmp(im.entries[i].name, "blk.", 4), 0);
        for (uint32_t j = 0; j < im.entries[i].nval; j++)
            cr_assert(isfinite(im.entries[i].values[j]) && im.entries[i].values[j] >= 0);
    }
    /* q/k/v share one input, so their entries are equal */
    const struct ec_imatrix_entry *q = ec_imatrix_find(&im, "blk.2.attn_q.weight");
    const struct ec_imatrix_entry *v = ec_imatrix_find(&im, "blk.2.attn_v.weight");
    cr_assert(q && v && q->nval == v->nval);
    cr_assert_eq(memcmp(q->values, v->values, q->nval * sizeof(float)), 0);
    char *out = ec_path_join(dir, "x.imatrix");
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_imatrix_save(&im, out, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(ec_imatrix_load(&back, out, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(back.n, im.n);
    for (size_t i = 0; i < im.n; i++)
        cr_assert_eq(memcmp(back.entries[i].values, im.entries[i].values,
                            im.entries[i].nval * sizeof(float)),
                     0);
    ec_imatrix_release(&back);
    ec_imatrix_release(&im);
    unlink(out);
    unlink(text);
    rmdir(dir);
    free(out);
    free(text);
    free(dir);
    free(model);
}

/* The golden imatrix of one model: values within 1e-4 relative (bit for bit
 * where `exact`), the calibration PPL llama-imatrix printed, and quantizing
 * with edgec's matrix: at least min_same of the golden Q4_K_M-imat tensors
 * byte for byte. 1001 chunks take ~10-55 s in a release build; sanitizer
 * builds run the short test above instead. */
static void check_golden_imatrix(const char *model_name, double printed_ppl, int n_tensors,
                                 int min_same, bool exact)
{
    if (EC_SANITIZED) {
        cr_skip_test("full 1001-chunk golden pass runs in the release build only");
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "models/%s", model_name);
    char *model = ec_test_shared(path);
    snprintf(path, sizeof path, "golden/quantize/%s.imatrix.dat", model_name);
    char *golden_dat = ec_test_shared(path);
    snprintf(path, sizeof path, "golden/quantize/%s.json", model_name);
    char *golden_json = ec_test_shared(path);
    if (!model || !golden_dat || !golden_json)
        return;
    if (ec_matmul_set_isa(-1) != 2) {
        exact = false;
        min_same = 0;
    }
    char *dir = ec_test_tmpdir();
    char *text = make_calib_text(dir);
    struct ec_imatrix im, g;
    struct ec_ppl_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    compute(model, text, 0, &im, &r);
    cr_assert_eq(ec_imatrix_load(&g, golden_dat, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(im.n, g.n);
    cr_assert_eq(im.last_call, g.last_call);
    double worst = 0;
    int64_t n_same_val = 0, n_val = 0;
    for (size_t i = 0; i < g.n; i++) {
        const struct ec_imatrix_entry *ge = &g.entries[i];
        const struct ec_imatrix_entry *me = ec_imatrix_find(&im, ge->name);
        cr_assert_not_null(me, "entry %s missing", ge->name);
        cr_assert_eq(me->ncall, ge->ncall, "%s", ge->name);
        cr_assert_eq(me->nval, ge->nval, "%s", ge->name);
        for (uint32_t j = 0; j < ge->nval; j++) {
            double rel = fabs((double)me->values[j] - ge->values[j]) /
                         fmax(fabs((double)ge->values[j]), 1e-30);
            if (rel > worst)
                worst = rel;
            n_same_val += memcmp(&me->values[j], &ge->values[j], sizeof(float)) == 0;
            n_val++;
        }
    }
    cr_log_info("%s imatrix vs llama-imatrix: %lld of %lld values bit-identical, max relative "
                "difference %.3e; calibration PPL %.4f (llama-imatrix printed %.4f)",
                model_name, (long long)n_same_val, (long long)n_val, worst, r.ppl, printed_ppl);
    cr_assert_leq(worst, 1e-4, "max relative difference %.3e", worst);
    if (exact)
        cr_assert_eq(n_same_val, n_val, "%s: imatrix no longer llama-imatrix's bit for bit", model_name);
    cr_assert_leq(fabs(r.ppl - printed_ppl) / printed_ppl, 1e-3, "calibration PPL %.4f", r.ppl);

    /* quantize with it: the tensors of llama-quantize's Q4_K_M-imat run */
    char *dat = ec_path_join(dir, "ours.imatrix");
    char *gguf = ec_path_join(dir, "q.gguf");
    cr_assert_eq(ec_imatrix_save(&im, dat, &d), EC_OK, "%s", d.msg);
    struct ec_quantize_opts qo;
    memset(&qo, 0, sizeof qo);
    qo.input = model;
    qo.output = gguf;
    cr_assert(ec_ftype_from_name("Q4_K_M", &qo.ftype));
    qo.imatrix_file = dat;
    qo.output_tensor_type = EC_DTYPE_UNSET;
    qo.token_embedding_type = EC_DTYPE_UNSET;
    qo.no_recipe = true;
    struct ec_quantize_result qr;
    memset(&qr, 0, sizeof qr);
    cr_assert_eq(ec_quantize_run(&qo, &qr, &d), EC_OK, "%s", d.msg);
    ec_quantize_result_release(&qr);

    char *js;
    size_t jn;
    cr_assert_eq(ec_read_file(golden_json, 1u << 26, &js, &jn, &d), EC_OK);
    cJSON *root = cJSON_Parse(js);
    const cJSON *runs = cJSON_GetObjectItem(root, "runs"), *run = NULL, *it;
    cJSON_ArrayForEach(it, runs)
    {
        const cJSON *l = cJSON_GetObjectItem(it, "label");
        if (cJSON_IsString(l) && strcmp(l->valuestring, "Q4_K_M-imat") == 0)
            run = it;
    }
    cr_assert_not_null(run);
    struct ec_gguf out;
    cr_assert_eq(ec_gguf_open(&out, gguf, &d), EC_OK, "%s", d.msg);
    int same = 0, n = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(run, "tensors"))
    {
        const char *name = cJSON_GetObjectItem(it, "name")->valuestring;
        const struct ec_gguf_tensor_info *t = ec_gguf_find_tensor(&out, name);
        cr_assert_not_null(t, "%s missing", name);
        char hex[65];
        ec_sha256_hex(t->data, (size_t)t->n_bytes, hex);
        n++;
        const char *gtype = cJSON_GetObjectItem(it, "type")->valuestring;
        cr_assert_str_eq(ec_dtype_name(t->type), gtype, "%s: type", name);
        if (strcmp(hex, cJSON_GetObjectItem(it, "sha256")->valuestring) == 0)
            same++;
        else
            cr_log_info("tensor %s: bytes differ from llama-quantize's Q4_K_M-imat", name);
    }
    cr_log_info("%s Q4_K_M with edgec's imatrix: %d/%d tensors byte-identical to "
                "llama-quantize's Q4_K_M-imat",
                model_name, same, n);
    cr_assert_eq(n, n_tensors);
    cr_assert_geq(same, min_same, "%d/%d tensors identical (floor %d)", same, n, min_same);
    ec_gguf_close(&out);
    cJSON_Delete(root);
    free(js);
    ec_imatrix_release(&g);
    ec_imatrix_release(&im);
    unlink(dat);
    unlink(gguf);
    unlink(text);
    rmdir(dir);
    free(dat);
    free(gguf);
    free(text);
    free(dir);
    free(model);
    free(golden_dat);
    free(golden_json);
}

/* stories260K: its 172-wide FFN takes ggml paths the engine reproduces only
 * to the last bits, so values differ slightly (1.4e-5 measured) and some
 * K-quant scale choices flip: 39 of 47 tensors identical measured
 * 2026-12-06 (36 before the engine took ggml's attention order). */
Test(imatrix_collect, stories260K_matches_llama_imatrix_within_1e4, .timeout = EC_TIMEOUT(300))
{
    check_golden_imatrix("stories260K", 114.1411, 47, 39, false);
}

/* stories-student-256: the engine's F32 forward pass is llama.cpp's bit for
 * bit, so is the matrix, and quantizing with it gives every golden tensor. */
Test(imatrix_collect, stories_student_256_matches_llama_imatrix_bit_for_bit,
     .timeout = EC_TIMEOUT(300))
{
    check_golden_imatrix("stories-student-256", 107.7671, 56, 56, true);
}
