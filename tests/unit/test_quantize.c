/* tests/unit/test_quantize.c: edgec quantize against llama-quantize.
 *
 * For each model with a golden (golden/quantize/<M>.json) and each of its
 * runs (14 types + 2 imatrix runs, llama-quantize on the F32 GGUF of the HF
 * folder), quantize the HF folder models/<M> with the library, read the
 * output back with the GGUF reader and compare every tensor (name, order,
 * type, ne, sha256 of its bytes) and every kv llama-quantize wrote (key,
 * order, type, value; arrays through sha256 of their raw payload). edgec's
 * own keys (edgec.quantize.*) follow llama-quantize's. Runs llama-quantize
 * refused (stories260K with 32-block types) must succeed in edgec with F16
 * for the refused tensors and the mix type elsewhere.
 *
 * A table model x run -> identical / different (first differing tensor) is
 * printed to stderr.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "edgec/gguf.h"
#include "edgec/io.h"
#include "edgec/quantize.h"
#include "edgec/sha256.h"
#include "quantizers/quantize_kernels.h"

static cJSON *load_json(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_read_file(path, 64u << 20, &text, &len, &d), EC_OK, "%s", d.msg);
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    cr_assert_not_null(j, "%s: malformed JSON", path);
    return j;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsString(v), "golden: key '%s' is not a string", k);
    return v->valuestring;
}

/* One kv against its golden entry; writes a reason into why on a difference. */
static bool kv_matches(const struct ec_gguf_kv *kv, const cJSON *gk, char *why, size_t cap)
{
    const char *key = jstr(gk, "key");
    const char *type = jstr(gk, "type");
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(gk, "value");
    if (strcmp(kv->key, key) != 0) {
        snprintf(why, cap, "kv key '%s', golden '%s'", kv->key, key);
        return false;
    }
    if (strcmp(ec_gguf_type_name(kv->type), type) != 0) {
        snprintf(why, cap, "kv '%s' type %s, golden %s", key, ec_gguf_type_name(kv->type), type);
        return false;
    }
    switch (kv->type) {
    case EC_GGUF_STRING:
        if (!cJSON_IsString(val) || strlen(val->valuestring) != kv->v.str.len ||
            memcmp(val->valuestring, kv->v.str.data, kv->v.str.len) != 0) {
            snprintf(why, cap, "kv '%s' = '%.*s', golden '%s'", key, (int)kv->v.str.len,
                     kv->v.str.data, cJSON_IsString(val) ? val->valuestring : "?");
            return false;
        }
        return true;
    case EC_GGUF_BOOL:
        if ((kv->v.u64 != 0) != (bool)cJSON_IsTrue(val)) {
            snprintf(why, cap, "kv '%s' bool differs", key);
            return false;
        }
        return true;
    case EC_GGUF_F32: {
        float f = (float)kv->v.f64;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        char hex[16];
        snprintf(hex, sizeof hex, "0x%08x", bits);
        if (strcmp(hex, jstr(gk, "bits")) != 0) {
            snprintf(why, cap, "kv '%s' bits %s, golden %s", key, hex, jstr(gk, "bits"));
            return false;
        }
        return true;
    }
    case EC_GGUF_ARRAY: {
        const cJSON *raw = cJSON_GetObjectItemCaseSensitive(gk, "sha256_raw");
        if (!cJSON_IsString(raw)) {
            snprintf(why, cap, "kv '%s': short arrays are not compared by this test", key);
            return false;
        }
        char hex[65];
        ec_sha256_hex(kv->arr_data, (size_t)kv->arr_bytes, hex);
        if (strcmp(hex, raw->valuestring) != 0) {
            snprintf(why, cap, "kv '%s' payload differs", key);
            return false;
        }
        return true;
    }
    default: {
        bool is_signed = kv->type == EC_GGUF_I8 || kv->type == EC_GGUF_I16 ||
                         kv->type == EC_GGUF_I32 || kv->type == EC_GGUF_I64;
        double v = is_signed ? (double)kv->v.i64 : (double)kv->v.u64;
        if (!cJSON_IsNumber(val) || v != val->valuedouble) {
            snprintf(why, cap, "kv '%s' = %.0f, golden %.0f", key, v,
                     cJSON_IsNumber(val) ? val->valuedouble : -1.0);
            return false;
        }
        return true;
    }
    }
}

struct row {
    char label[32];
    char verdict[200];
    bool ok;
};

/* Quantize one golden run and compare; fills r. */
static void check_run(const char *model, const char *model_dir, const cJSON *run,
                      const char *tmp, struct row *rw)
{
    const char *label = jstr(run, "label");
    snprintf(rw->label, sizeof rw->label, "%s", label);
    struct ec_quantize_opts o = {.output_tensor_type = EC_DTYPE_UNSET,
                                 .token_embedding_type = EC_DTYPE_UNSET};
    cr_assert(ec_ftype_from_name(jstr(run, "ftype"), &o.ftype), "%s: ftype", label);
    char out[4096], imat_rel[512];
    snprintf(out, sizeof out, "%s/%s-%s.gguf", tmp, model, label);
    o.input = model_dir;
    o.output = out;
    o.no_recipe = true; /* so that the whole file can equal llama-quantize's */
    if (cJSON_IsTrue(cJSON_GetObjectItem(run, "imatrix"))) {
        /* the path exactly as llama-quantize was given it (quantize.imatrix.file) */
        snprintf(imat_rel, sizeof imat_rel, "work/%s/%s.imatrix.dat", model, model);
        o.imatrix_file = imat_rel;
    }
    struct ec_quantize_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    enum ec_status st = ec_quantize_run(&o, &r, &d);
    cr_assert_eq(st, EC_OK, "%s %s: %s", model, label, d.msg);

    struct ec_gguf g;
    cr_assert_eq(ec_gguf_open(&g, out, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(g.n_tensors, r.plan.n);
    /* what the reader sees is what the driver hashed */
    for (size_t i = 0; i < g.n_tensors; i++) {
        char hex[65];
        ec_sha256_hex(g.tensors[i].data, (size_t)g.tensors[i].n_bytes, hex);
        cr_assert_str_eq(hex, r.tensors[i].sha256, "%s %s: '%s'", model, label,
                         g.tensors[i].name);
    }

    rw->ok = true;
    snprintf(rw->verdict, sizeof rw->verdict, "identical");
    if (cJSON_GetObjectItem(run, "exit_code")->valueint != 0) {
        /* llama-quantize refused; edgec writes F16 where no 32-block fits */
        size_t n_f16 = 0;
        for (size_t i = 0; i < g.n_tensors; i++) {
            const struct ec_gguf_tensor_info *t = &g.tensors[i];
            if (t->n_dims >= 2 && t->ne[0] % 32 != 0) {
                cr_assert_eq(t->type, EC_F16, "%s %s: '%s'", model, label, t->name);
                n_f16++;
            }
        }
        cr_assert(r.plan.llama_refuses);
        cr_assert_gt(n_f16, 0);
        snprintf(rw->verdict, sizeof rw->verdict,
                 "llama-quantize refused; edgec wrote %zu F16 fallback tensors", n_f16);
        goto out;
    }

    const cJSON *gts = cJSON_GetObjectItem(run, "tensors");
    if ((size_t)cJSON_GetArraySize(gts) != g.n_tensors) {
        rw->ok = false;
        snprintf(rw->verdict, sizeof rw->verdict, "%llu tensors, golden %d",
                 (unsigned long long)g.n_tensors, cJSON_GetArraySize(gts));
        goto out;
    }
    for (size_t i = 0; i < g.n_tensors && rw->ok; i++) {
        const struct ec_gguf_tensor_info *t = &g.tensors[i];
        const cJSON *gt = cJSON_GetArrayItem(gts, (int)i);
        char hex[65];
        ec_sha256_hex(t->data, (size_t)t->n_bytes, hex);
        if (strcmp(t->name, jstr(gt, "name")) != 0) {
            rw->ok = false;
            snprintf(rw->verdict, sizeof rw->verdict, "tensor #%zu is '%s', golden '%s'", i,
                     t->name, jstr(gt, "name"));
        } else if (strcmp(ec_dtype_name(t->type), jstr(gt, "type")) != 0) {
            rw->ok = false;
            snprintf(rw->verdict, sizeof rw->verdict, "'%s' type %s, golden %s", t->name,
                     ec_dtype_name(t->type), jstr(gt, "type"));
        } else if (strcmp(hex, jstr(gt, "sha256")) != 0) {
            rw->ok = false;
            snprintf(rw->verdict, sizeof rw->verdict, "'%s' (%s) bytes differ", t->name,
                     ec_dtype_name(t->type));
        }
    }
    if (!rw->ok)
        goto out;

    /* llama-quantize's kvs, in order, then only edgec's recipe keys */
    const cJSON *gkv = cJSON_GetObjectItem(run, "kv");
    size_t n_gkv = (size_t)cJSON_GetArraySize(gkv);
    if (g.n_kv < n_gkv) {
        rw->ok = false;
        snprintf(rw->verdict, sizeof rw->verdict, "tensors identical; %llu kvs, golden %zu",
                 (unsigned long long)g.n_kv, n_gkv);
        goto out;
    }
    for (size_t i = 0; i < n_gkv; i++) {
        char why[160];
        if (!kv_matches(&g.kv[i], cJSON_GetArrayItem(gkv, (int)i), why, sizeof why)) {
            rw->ok = false;
            snprintf(rw->verdict, sizeof rw->verdict, "tensors identical; %s", why);
            goto out;
        }
    }
    if (g.n_kv != n_gkv) {
        rw->ok = false;
        snprintf(rw->verdict, sizeof rw->verdict, "tensors identical; extra key '%s'",
                 g.kv[n_gkv].key);
        goto out;
    }
    /* and the whole file, byte for byte */
    char fhex[65];
    ec_sha256_hex(g.file.data, (size_t)g.file.size_bytes, fhex);
    if (strcmp(fhex, jstr(run, "file_sha256")) != 0) {
        rw->ok = false;
        snprintf(rw->verdict, sizeof rw->verdict,
                 "tensors and kvs identical; file sha256 differs (%llu bytes, golden %.0f)",
                 (unsigned long long)g.file.size_bytes,
                 cJSON_GetObjectItem(run, "file_size")->valuedouble);
        goto out;
    }
    snprintf(rw->verdict, sizeof rw->verdict,
             "identical file (%llu tensors, %zu kvs, %llu bytes)", (unsigned long long)g.n_tensors,
             n_gkv, (unsigned long long)g.file.size_bytes);
out:
    ec_gguf_close(&g);
    ec_quantize_result_release(&r);
    remove(out);
}

static void check_model(const char *model, const char *only)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/quantize/%s.json", model);
    char *jpath = ec_test_shared(rel);
    snprintf(rel, sizeof rel, "models/%s", model);
    char *mdir = ec_test_shared(rel);
    snprintf(rel, sizeof rel, "golden/quantize/%s.imatrix.dat", model);
    char *dat = ec_test_shared(rel);
    if (!ec_qk_can_quantize(EC_Q4_K) || !ec_qk_can_quantize(EC_Q8_0))
        cr_skip_test("block kernels are not built into this tree yet");
    cJSON *j = load_json(jpath);

    /* work/<M>/<M>.imatrix.dat -> the golden file, so that the relative path
     * given to edgec is the one llama-quantize was given */
    char *tmp = ec_test_tmpdir();
    char buf[4096];
    cr_assert_eq(chdir(tmp), 0);
    cr_assert_eq(mkdir("work", 0755), 0);
    snprintf(buf, sizeof buf, "work/%s", model);
    cr_assert_eq(mkdir(buf, 0755), 0);
    snprintf(buf, sizeof buf, "work/%s/%s.imatrix.dat", model, model);
    cr_assert_eq(symlink(dat, buf), 0);

    struct row rows[32];
    size_t n = 0;
    const cJSON *run;
    cJSON_ArrayForEach(run, cJSON_GetObjectItem(j, "runs"))
    {
        const char *label = jstr(run, "label");
        const char *group = strstr(label, "-imat") ? "imat" : strstr(label, "_K") ? "kquant" : "legacy";
        if (only && strcmp(only, group) != 0)
            continue;
        cr_assert_lt(n, 32);
        check_run(model, mdir, run, tmp, &rows[n++]);
    }
    size_t n_bad = 0;
    for (size_t i = 0; i < n; i++) {
        fprintf(stderr, "quantize %-20s %-12s %s\n", model, rows[i].label, rows[i].verdict);
        n_bad += !rows[i].ok;
    }
    cr_assert_gt(n, 0);
    cr_assert_eq(n_bad, 0, "%s: %zu of %zu runs differ from llama-quantize (table on stderr)",
                 model, n_bad, n);

    unlink(buf);
    snprintf(buf, sizeof buf, "work/%s", model);
    rmdir(buf);
    rmdir("work");
    rmdir(tmp);
    free(tmp);
    cJSON_Delete(j);
    free(jpath);
    free(mdir);
    free(dat);
}

Test(quantize, stories_student_256_legacy_types_match_llama_quantize, .timeout = EC_TIMEOUT(60))
{
    check_model("stories-student-256", "legacy");
}

Test(quantize, stories_student_256_k_mixes_match_llama_quantize, .timeout = EC_TIMEOUT(60))
{
    check_model("stories-student-256", "kquant");
}

Test(quantize, stories_student_256_imatrix_runs_match_llama_quantize, .timeout = EC_TIMEOUT(60))
{
    check_model("stories-student-256", "imat");
}

Test(quantize, stories260K_every_run_matches_llama_quantize_or_falls_back, .timeout = EC_TIMEOUT(60))
{
    check_model("stories260K", NULL);
}

/* F16/BF16 need no block kernel: every tensor must equal the converter's
 * F16/BF16 GGUF (llama-quantize F16 of the F32 GGUF rounds the same way). */
static void check_plain(const char *model, const char *type)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/convert/%s.json", model);
    char *jpath = ec_test_shared(rel);
    snprintf(rel, sizeof rel, "models/%s", model);
    char *mdir = ec_test_shared(rel);
    cJSON *j = load_json(jpath);
    const cJSON *gf = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "files"), type);
    const cJSON *gts = cJSON_GetObjectItem(gf, "tensors");
    char *tmp = ec_test_tmpdir();
    char out[4096];
    snprintf(out, sizeof out, "%s/q.gguf", tmp);
    struct ec_quantize_opts o = {.input = mdir,
                                 .output = out,
                                 .output_tensor_type = EC_DTYPE_UNSET,
                                 .token_embedding_type = EC_DTYPE_UNSET};
    cr_assert(ec_ftype_from_name(type, &o.ftype));
    struct ec_quantize_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_quantize_run(&o, &r, &d), EC_OK, "%s", d.msg);
    struct ec_gguf g;
    cr_assert_eq(ec_gguf_open(&g, out, &d), EC_OK, "%s", d.msg);
    cr_assert_eq((int)g.n_tensors, cJSON_GetArraySize(gts));
    uint64_t ft = 99;
    cr_assert(ec_gguf_get_u64(&g, "general.file_type", &ft));
    cr_assert_eq(ft, (uint64_t)o.ftype);
    /* the recipe follows llama-quantize's keys */
    char *rtype = ec_gguf_get_str(&g, "edgec.quantize.type");
    cr_assert_not_null(rtype);
    cr_assert_str_eq(rtype, type);
    free(rtype);
    cr_assert_str_eq(g.kv[g.n_kv - 1].key, "edgec.quantize.type");
    cr_assert_not_null(ec_gguf_find_kv(&g, "edgec.quantize.version"));
    const cJSON *gt;
    cJSON_ArrayForEach(gt, gts)
    {
        const struct ec_gguf_tensor_info *t = ec_gguf_find_tensor(&g, jstr(gt, "name"));
        cr_assert_not_null(t, "%s %s: no '%s'", model, type, jstr(gt, "name"));
        cr_assert_str_eq(ec_dtype_name(t->type), jstr(gt, "type"), "%s", t->name);
        char hex[65];
        ec_sha256_hex(t->data, (size_t)t->n_bytes, hex);
        cr_assert_str_eq(hex, jstr(gt, "sha256"), "%s %s: '%s' bytes differ", model, type,
                         t->name);
    }
    ec_gguf_close(&g);
    ec_quantize_result_release(&r);
    remove(out);
    rmdir(tmp);
    free(tmp);
    cJSON_Delete(j);
    free(jpath);
    free(mdir);
}

Test(quantize, f16_and_bf16_match_the_converter_tensor_for_tensor)
{
    check_plain("stories260K", "F16");
    check_plain("stories260K", "BF16");
    check_plain("stories-student-256", "F16");
}

Test(quantize, dry_run_writes_nothing_and_reports_sizes)
{
    char *mdir = ec_test_shared("models/stories260K");
    char *tmp = ec_test_tmpdir();
    char out[4096];
    snprintf(out, sizeof out, "%s/never.gguf", tmp);
    struct ec_quantize_opts o = {.input = mdir,
                                 .output = out,
                                 .ftype = EC_FTYPE_MOSTLY_Q8_0,
                                 .dry_run = true,
                                 .output_tensor_type = EC_DTYPE_UNSET,
                                 .token_embedding_type = EC_DTYPE_UNSET};
    struct ec_quantize_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_quantize_run(&o, &r, &d), EC_OK, "%s", d.msg);
    cr_assert_not(ec_path_exists(out));
    cr_assert_eq(r.plan.n, 47);
    cr_assert(r.plan.llama_refuses);
    cr_assert_eq(r.plan.n_fallback, 5);
    cr_assert_lt(r.plan.dst_bytes_total, r.plan.src_bytes_total);
    ec_quantize_result_release(&r);

    /* an imatrix entry of the wrong length is an error naming it */
    o.imatrix_file = "/nonexistent/x.dat";
    cr_assert_eq(ec_quantize_run(&o, &r, &d), EC_ERR_IO);
    ec_quantize_result_release(&r);
    rmdir(tmp);
    free(tmp);
    free(mdir);
}

Test(quantize, imatrix_of_another_model_is_refused_with_the_entry_named)
{
    char *mdir = ec_test_shared("models/stories260K");
    char *dat = ec_test_shared("golden/quantize/stories-student-256.imatrix.dat");
    struct ec_quantize_opts o = {.input = mdir,
                                 .ftype = EC_FTYPE_MOSTLY_Q4_K_M,
                                 .dry_run = true,
                                 .imatrix_file = dat,
                                 .output_tensor_type = EC_DTYPE_UNSET,
                                 .token_embedding_type = EC_DTYPE_UNSET};
    struct ec_quantize_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_quantize_run(&o, &r, &d), EC_ERR_FORMAT);
    cr_assert(strstr(d.msg, "stories-student-256.imatrix.dat: entry 'blk."), "%s", d.msg);
    cr_assert(strstr(d.msg, "values, but the tensor needs"), "%s", d.msg);
    ec_quantize_result_release(&r);
    free(mdir);
    free(dat);
}

static void file_hex(const char *path, char hex[65])
{
    struct ec_mapped_file f;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_mapped_file_open(&f, path, &d), EC_OK, "%s", d.msg);
    ec_sha256_hex(f.data, (size_t)f.size_bytes, hex);
    ec_mapped_file_close(&f);
}

Test(quantize, gguf_input_requantizes_only_when_allowed, .timeout = EC_TIMEOUT(60))
{
    char *mdir = ec_test_shared("models/stories260K");
    if (!ec_qk_can_quantize(EC_Q8_0))
        cr_skip_test("block kernels are not built into this tree yet");
    char *tmp = ec_test_tmpdir();
    char q8[4096], q8b[4096], q4[4096];
    snprintf(q8, sizeof q8, "%s/q8.gguf", tmp);
    snprintf(q8b, sizeof q8b, "%s/q8b.gguf", tmp);
    snprintf(q4, sizeof q4, "%s/q4.gguf", tmp);
    struct ec_quantize_opts o = {.input = mdir,
                                 .output = q8,
                                 .ftype = EC_FTYPE_MOSTLY_Q8_0,
                                 .no_recipe = true,
                                 .n_threads = 1,
                                 .output_tensor_type = EC_DTYPE_UNSET,
                                 .token_embedding_type = EC_DTYPE_UNSET};
    struct ec_quantize_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_quantize_run(&o, &r, &d), EC_OK, "%s", d.msg);
    ec_quantize_result_release(&r);

    /* the same type again is a plain copy and needs no permission */
    o.input = q8;
    o.output = q8b;
    o.n_threads = 2;
    cr_assert_eq(ec_quantize_run(&o, &r, &d), EC_OK, "%s", d.msg);
    ec_quantize_result_release(&r);
    char h1[65], h2[65];
    file_hex(q8, h1);
    file_hex(q8b, h2);
    cr_assert_str_eq(h1, h2, "Q8_0 -> Q8_0 must reproduce the file");

    /* another type needs --allow-requantize */
    o.output = q4;
    o.ftype = EC_FTYPE_MOSTLY_Q4_K_M;
    ec_diag_clear(&d);
    cr_assert_eq(ec_quantize_run(&o, &r, &d), EC_ERR_UNSUPPORTED);
    cr_assert(strstr(d.msg, "q8.gguf: tensor '") && strstr(d.msg, "requantizing from Q8_0"), "%s",
              d.msg);
    cr_assert_not(ec_path_exists(q4));
    ec_quantize_result_release(&r);
    o.allow_requantize = true;
    ec_diag_clear(&d);
    cr_assert_eq(ec_quantize_run(&o, &r, &d), EC_OK, "%s", d.msg);
    size_t n_q = 0;
    for (size_t i = 0; i < r.plan.n; i++)
        n_q += (r.plan.entries[i].flags & EC_PLAN_QUANTIZE) != 0;
    cr_assert_gt(n_q, 0);
    ec_quantize_result_release(&r);

    remove(q8);
    remove(q8b);
    remove(q4);
    rmdir(tmp);
    free(tmp);
    free(mdir);
}

Test(quantize, output_does_not_depend_on_the_thread_count, .timeout = EC_TIMEOUT(60))
{
    char *mdir = ec_test_shared("models/stories-student-256");
    char *dat = ec_test_shared("golden/quantize/stories-student-256.imatrix.dat");
    if (!ec_qk_can_quantize(EC_Q4_K))
        cr_skip_test("block kernels are not built into this tree yet");
    char *tmp = ec_test_tmpdir();
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/a.gguf", tmp);
    snprintf(b, sizeof b, "%s/b.gguf", tmp);
    const struct ec_type_override ov[] = {{"ffn_up", EC_IQ4_XS}, {"attn_k", EC_IQ4_NL}};
    struct ec_quantize_opts o = {.input = mdir,
                                 .output = a,
                                 .ftype = EC_FTYPE_MOSTLY_Q3_K_M,
                                 .imatrix_file = dat,
                                 .n_overrides = 2,
                                 .overrides = ov,
                                 .n_threads = 1,
                                 .output_tensor_type = EC_DTYPE_UNSET,
                                 .token_embedding_type = EC_Q8_0};
    struct ec_quantize_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_quantize_run(&o, &r, &d), EC_OK, "%s", d.msg);
    ec_quantize_result_release(&r);
    o.output = b;
    o.n_threads = 2;
    cr_assert_eq(ec_quantize_run(&o, &r, &d), EC_OK, "%s", d.msg);
    ec_quantize_result_release(&r);
    char h1[65], h2[65];
    file_hex(a, h1);
    file_hex(b, h2);
    cr_assert_str_eq(h1, h2);
    struct ec_gguf g;
    cr_assert_eq(ec_gguf_open(&g, a, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(ec_gguf_find_tensor(&g, "blk.3.ffn_up.weight")->type, EC_IQ4_XS);
    cr_assert_eq(ec_gguf_find_tensor(&g, "blk.3.attn_k.weight")->type, EC_IQ4_NL);
    cr_assert_eq(ec_gguf_find_tensor(&g, "token_embd.weight")->type, EC_Q8_0);
    const struct ec_gguf_kv *kv = ec_gguf_find_kv(&g, "edgec.quantize.overrides");
    cr_assert_not_null(kv);
    cr_assert_eq(kv->arr_n, 3);
    ec_gguf_close(&g);
    remove(a);
    remove(b);
    rmdir(tmp);
    free(tmp);
    free(mdir);
    free(dat);
}

/* The CLI's exit codes: usage 2, bad input 3, I/O 4 (stderr discarded). */
static int run_cli(const char *args)
{
    const char *bin = getenv("EDGEC_BIN");
    if (!bin || !*bin)
        cr_skip_test("EDGEC_BIN not set (run through meson test)");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' quantize %s >/dev/null 2>&1", bin, args);
    int st = system(cmd);
    cr_assert(WIFEXITED(st), "%s", cmd);
    return WEXITSTATUS(st);
}

Test(quantize, cli_exit_codes)
{
    char *mdir = ec_test_shared("models/stories260K");
    char *dat = ec_test_shared("golden/quantize/stories260K.imatrix.dat");
    char *tmp = ec_test_tmpdir();
    char args[8192];
    cr_assert_eq(run_cli("--help"), 0);
    snprintf(args, sizeof args, "'%s' --type Q4_K_M --dry-run", mdir);
    cr_assert_eq(run_cli(args), 0);
    snprintf(args, sizeof args, "'%s' --type Q4_K_M --dry-run --json", mdir);
    cr_assert_eq(run_cli(args), 0);
    snprintf(args, sizeof args, "'%s' --type Q9_K --dry-run", mdir);
    cr_assert_eq(run_cli(args), 2);
    snprintf(args, sizeof args, "'%s' --type Q4_K_M", mdir); /* no -o */
    cr_assert_eq(run_cli(args), 2);
    snprintf(args, sizeof args, "'%s' --type Q4_K_M -n --tensor-type 'a(=Q8_0'", mdir);
    cr_assert_eq(run_cli(args), 2);
    snprintf(args, sizeof args, "'%s' --type Q4_K_M -n --tensor-type attn_v", mdir);
    cr_assert_eq(run_cli(args), 2);
    snprintf(args, sizeof args, "'%s' --type Q4_K_M -n --exclude-weights ffn", mdir);
    cr_assert_eq(run_cli(args), 2);
    snprintf(args, sizeof args, "'%s' --type Q4_K_M -n --imatrix '%s/config.json'", mdir, mdir);
    cr_assert_eq(run_cli(args), 3, "a malformed imatrix is bad input");
    snprintf(args, sizeof args, "'%s' --type Q4_K_M -n --imatrix '%s'", mdir, dat);
    cr_assert_eq(run_cli(args), 0);
    snprintf(args, sizeof args, "'%s' --type Q4_K_M -n --imatrix '%s/none.dat'", mdir, tmp);
    cr_assert_eq(run_cli(args), 4);
    snprintf(args, sizeof args, "'%s' --type F16 -o '%s/no/such/dir/x.gguf'", mdir, tmp);
    cr_assert_eq(run_cli(args), 4);
    snprintf(args, sizeof args, "'%s' --type Q8_0 -q -o '%s/x.gguf'", mdir, tmp);
    cr_assert_eq(run_cli(args), 0);
    char out[4096];
    snprintf(out, sizeof out, "%s/x.gguf", tmp);
    cr_assert(ec_path_exists(out));
    remove(out);
    rmdir(tmp);
    free(tmp);
    free(mdir);
    free(dat);
}
