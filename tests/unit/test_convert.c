/* tests/unit/test_convert.c: edgec convert against llama.cpp's converter.
 *
 * For each model with a golden (golden/convert/<M>.json, written from the
 * GGUFs convert_hf_to_gguf.py made) and each output type, convert with the
 * library, read the result back with the GGUF reader and compare every
 * tensor (name, type, ne, offset, sha256 of its bytes), every kv (key, type,
 * value; arrays through sha256 of their raw payload), the tensor data offset
 * and the whole-file sha256.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "edgec/convert.h"
#include "edgec/gguf.h"
#include "edgec/io.h"
#include "edgec/model.h"
#include "edgec/safetensors.h"
#include "edgec/sha256.h"

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

static void hex_of(const void *data, size_t n, char hex[65])
{
    ec_sha256_hex(data, n, hex);
}

static void file_sha(const char *path, char hex[65])
{
    struct ec_mapped_file f;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_mapped_file_open(&f, path, &d), EC_OK, "%s", d.msg);
    hex_of(f.data, (size_t)f.size_bytes, hex);
    ec_mapped_file_close(&f);
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsString(v), "golden: key '%s' is not a string", k);
    return v->valuestring;
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(v), "golden: key '%s' is not a number", k);
    return v->valuedouble;
}

/* Compare one kv with its golden entry; returns false (after logging) on a difference. */
static bool kv_matches(const struct ec_gguf_kv *kv, const cJSON *gk, const char *label)
{
    const char *key = jstr(gk, "key");
    const char *type = jstr(gk, "type");
    if (strcmp(kv->key, key) != 0) {
        cr_log_error("%s: kv key '%s', golden '%s'", label, kv->key, key);
        return false;
    }
    if (strcmp(ec_gguf_type_name(kv->type), type) != 0) {
        cr_log_error("%s: kv '%s' type %s, golden %s", label, key, ec_gguf_type_name(kv->type), type);
        return false;
    }
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(gk, "value");
    switch (kv->type) {
    case EC_GGUF_STRING:
        if (!cJSON_IsString(val) || strlen(val->valuestring) != kv->v.str.len ||
            memcmp(val->valuestring, kv->v.str.data, kv->v.str.len) != 0) {
            cr_log_error("%s: kv '%s' string differs", label, key);
            return false;
        }
        return true;
    case EC_GGUF_BOOL:
        if (!cJSON_IsBool(val) || (kv->v.u64 != 0) != (bool)cJSON_IsTrue(val)) {
            cr_log_error("%s: kv '%s' bool differs", label, key);
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
            cr_log_error("%s: kv '%s' bits %s, golden %s", label, key, hex, jstr(gk, "bits"));
            return false;
        }
        return true;
    }
    case EC_GGUF_ARRAY: {
        if (strcmp(ec_gguf_type_name(kv->arr_type), jstr(gk, "element_type")) != 0 ||
            kv->arr_n != (uint64_t)jnum(gk, "length")) {
            cr_log_error("%s: kv '%s' array element type/length differs", label, key);
            return false;
        }
        const cJSON *raw = cJSON_GetObjectItemCaseSensitive(gk, "sha256_raw");
        if (cJSON_IsString(raw)) {
            char hex[65];
            hex_of(kv->arr_data, (size_t)kv->arr_bytes, hex);
            if (strcmp(hex, raw->valuestring) != 0) {
                cr_log_error("%s: kv '%s' payload sha256 %s, golden %s", label, key, hex,
                             raw->valuestring);
                return false;
            }
            return true;
        }
        cr_log_error("%s: kv '%s': short arrays are not compared by this test", label, key);
        return false;
    }
    default:
        if (!cJSON_IsNumber(val)) {
            cr_log_error("%s: kv '%s' golden value is not a number", label, key);
            return false;
        }
        if (kv->type == EC_GGUF_I8 || kv->type == EC_GGUF_I16 || kv->type == EC_GGUF_I32 ||
            kv->type == EC_GGUF_I64 ? (double)kv->v.i64 != val->valuedouble
                                    : (double)kv->v.u64 != val->valuedouble) {
            cr_log_error("%s: kv '%s' integer differs", label, key);
            return false;
        }
        return true;
    }
}

static void check_against_golden(const char *model, const char *outtype, const char *golden_type)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", model);
    char *model_dir = ec_test_shared(rel);
    snprintf(rel, sizeof rel, "golden/convert/%s.json", model);
    char *golden_path = ec_test_shared(rel);
    cJSON *golden = load_json(golden_path);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(golden, "files");
    const cJSON *gf = cJSON_GetObjectItemCaseSensitive(files, golden_type);
    cr_assert_not_null(gf, "golden has no files.%s", golden_type);

    char *tmp = ec_test_tmpdir();
    char out[4096];
    snprintf(out, sizeof out, "%s/%s-%s.gguf", tmp, model, golden_type);
    enum ec_dtype type;
    cr_assert(ec_dtype_from_name(outtype, &type));
    struct ec_convert_opts o = {.input = model_dir, .output = out, .outtype = type};
    struct ec_convert_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_convert_run(&o, &r, &d), EC_OK, "convert %s %s: %s", model, outtype, d.msg);

    struct ec_gguf g;
    cr_assert_eq(ec_gguf_open(&g, out, &d), EC_OK, "%s", d.msg);
    char label[128];
    snprintf(label, sizeof label, "%s %s", model, golden_type);

    /* tensors */
    const cJSON *gts = cJSON_GetObjectItemCaseSensitive(gf, "tensors");
    int n_gt = cJSON_GetArraySize(gts);
    cr_expect_eq(g.n_tensors, (uint64_t)n_gt, "%s: %llu tensors, golden %d", label,
                 (unsigned long long)g.n_tensors, n_gt);
    int n_tensor_ok = 0;
    for (int i = 0; i < n_gt && (uint64_t)i < g.n_tensors; i++) {
        const cJSON *gt = cJSON_GetArrayItem(gts, i);
        const struct ec_gguf_tensor_info *t = &g.tensors[i];
        bool ok = strcmp(t->name, jstr(gt, "name")) == 0 &&
                  strcmp(ec_dtype_name(t->type), jstr(gt, "type")) == 0 &&
                  t->offset == (uint64_t)jnum(gt, "offset") &&
                  t->n_bytes == (uint64_t)jnum(gt, "n_bytes");
        const cJSON *ne = cJSON_GetObjectItemCaseSensitive(gt, "ne");
        ok = ok && (int)t->n_dims == cJSON_GetArraySize(ne);
        for (uint32_t k = 0; ok && k < t->n_dims; k++)
            ok = t->ne[k] == (uint64_t)cJSON_GetArrayItem(ne, (int)k)->valuedouble;
        char hex[65];
        hex_of(t->data, (size_t)t->n_bytes, hex);
        ok = ok && strcmp(hex, jstr(gt, "sha256")) == 0;
        cr_expect(ok, "%s: tensor %d '%s' (%s) differs from golden '%s' (%s)", label, i, t->name,
                  ec_dtype_name(t->type), jstr(gt, "name"), jstr(gt, "type"));
        n_tensor_ok += ok;
    }

    /* kvs */
    const cJSON *gkv = cJSON_GetObjectItemCaseSensitive(gf, "kv");
    int n_gkv = cJSON_GetArraySize(gkv);
    cr_expect_eq(g.n_kv, (uint64_t)n_gkv, "%s: %llu kvs, golden %d", label,
                 (unsigned long long)g.n_kv, n_gkv);
    int n_kv_ok = 0;
    for (int i = 0; i < n_gkv && (uint64_t)i < g.n_kv; i++) {
        bool ok = kv_matches(&g.kv[i], cJSON_GetArrayItem(gkv, i), label);
        cr_expect(ok, "%s: kv %d '%s' differs", label, i, g.kv[i].key);
        n_kv_ok += ok;
    }

    cr_expect_eq(g.data_offset, (uint64_t)jnum(gf, "tensor_data_offset"),
                 "%s: tensor data at %llu, golden %.0f", label, (unsigned long long)g.data_offset,
                 jnum(gf, "tensor_data_offset"));
    cr_expect_eq(g.alignment, (uint32_t)jnum(gf, "alignment"));
    cr_expect_eq(g.version, (uint32_t)jnum(gf, "gguf_version"));
    cr_expect_eq(r.file_bytes, (uint64_t)jnum(gf, "file_size"));
    char hex[65];
    file_sha(out, hex);
    bool same_file = strcmp(hex, jstr(gf, "file_sha256")) == 0;
    cr_expect(same_file, "%s: file sha256 %s, golden %s", label, hex, jstr(gf, "file_sha256"));
    cr_log_info("%s: tensors %d/%d identical, kv %d/%d identical, whole file %s", label,
                n_tensor_ok, n_gt, n_kv_ok, n_gkv, same_file ? "identical" : "DIFFERENT");

    ec_gguf_close(&g);
    unlink(out);
    rmdir(tmp);
    free(tmp);
    cJSON_Delete(golden);
    free(golden_path);
    free(model_dir);
}

Test(convert, stories260K_f32_matches_llama_cpp) { check_against_golden("stories260K", "f32", "F32"); }
Test(convert, stories260K_f16_matches_llama_cpp) { check_against_golden("stories260K", "f16", "F16"); }
Test(convert, stories260K_bf16_matches_llama_cpp) { check_against_golden("stories260K", "bf16", "BF16"); }
Test(convert, student_f32_matches_llama_cpp) { check_against_golden("stories-student-256", "f32", "F32"); }
Test(convert, student_f16_matches_llama_cpp) { check_against_golden("stories-student-256", "f16", "F16"); }
Test(convert, student_bf16_matches_llama_cpp) { check_against_golden("stories-student-256", "bf16", "BF16"); }

/* Run the binary; returns its exit status, stdout captured into *out (heap). */
static int run_edgec(char *const args[], char **out)
{
    const char *bin = getenv("EDGEC_BIN");
    if (!bin || !*bin) {
        cr_skip_test("EDGEC_BIN not set (run through meson test)");
        return -1;
    }
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        close(pipefd[1]);
        char *argv[16];
        argv[0] = (char *)bin;
        int i = 0;
        for (; args[i] && i < 14; i++)
            argv[i + 1] = args[i];
        argv[i + 1] = NULL;
        execv(bin, argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t k;
    while ((k = read(pipefd[0], buf + len, cap - len - 1)) > 0) {
        len += (size_t)k;
        if (cap - len < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    buf[len] = '\0';
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* tinystories-656K stores only lm_head.weight (embed_tokens is an alias): no
 * llama.cpp golden exists (its converter fails), so check what it means. */
Test(convert, tied_lm_head_only_checkpoint_gets_token_embd)
{
    char *dir = ec_test_shared("models/tinystories-656K");
    char *tmp = ec_test_tmpdir();
    char out[4096];
    snprintf(out, sizeof out, "%s/t656k.gguf", tmp);
    char *stdout_text = NULL;
    char *args[] = {"convert", dir, "-o", out, "--outtype", "f32", "--json", NULL};
    int rc = run_edgec(args, &stdout_text);
    cr_assert_eq(rc, 0, "edgec convert exit %d: %s", rc, stdout_text);
    cJSON *j = cJSON_Parse(stdout_text);
    cr_assert_not_null(j, "--json output is not JSON: %s", stdout_text);
    cr_expect_eq(jnum(j, "tensors"), 20.0);
    cr_expect_eq(jnum(j, "params"), 656000.0);
    cJSON_Delete(j);
    free(stdout_text);

    struct ec_gguf g;
    struct ec_safetensors st;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_gguf_open(&g, out, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(ec_safetensors_open(&st, dir, &d), EC_OK, "%s", d.msg);
    const struct ec_gguf_tensor_info *te = ec_gguf_find_tensor(&g, "token_embd.weight");
    const struct ec_st_tensor *lm = ec_safetensors_find(&st, "lm_head.weight");
    cr_assert_not_null(te, "no token_embd.weight");
    cr_assert_not_null(lm);
    cr_expect_null(ec_gguf_find_tensor(&g, "output.weight"), "tied: output.weight must be absent");
    cr_assert_eq(te->n_bytes, lm->n_bytes);
    cr_expect_eq(memcmp(te->data, lm->data, (size_t)lm->n_bytes), 0,
                 "token_embd.weight differs from lm_head.weight");
    cr_expect_eq(te->ne[0], 128);
    cr_expect_eq(te->ne[1], 2048);
    char *name = ec_gguf_get_str(&g, "general.name");
    char *label = ec_gguf_get_str(&g, "general.size_label");
    char *base = ec_gguf_get_str(&g, "general.basename");
    cr_expect_str_eq(name, "Tinystories 656K");
    cr_expect_str_eq(label, "656K");
    cr_expect_str_eq(base, "tinystories");
    free(name);
    free(label);
    free(base);
    uint64_t v;
    cr_expect(ec_gguf_get_u64(&g, "tokenizer.ggml.bos_token_id", &v) && v == 1);
    cr_expect(ec_gguf_get_u64(&g, "tokenizer.ggml.padding_token_id", &v) && v == 0);
    ec_safetensors_close(&st);
    ec_gguf_close(&g);

    char *args2[] = {"inspect", out, NULL};
    rc = run_edgec(args2, &stdout_text);
    cr_expect_eq(rc, 0);
    cr_expect(strstr(stdout_text, "token_embd.weight") != NULL);
    cr_expect(strstr(stdout_text, "tensors (20)") != NULL, "%s", stdout_text);
    free(stdout_text);
    char *args3[] = {"inspect", "--json", dir, NULL};
    rc = run_edgec(args3, &stdout_text);
    cr_expect_eq(rc, 0);
    j = cJSON_Parse(stdout_text);
    cr_assert_not_null(j, "inspect --json output is not JSON");
    cr_expect_eq(jnum(j, "n_params"), 656000.0);
    cJSON_Delete(j);
    free(stdout_text);
    unlink(out);
    rmdir(tmp);
    free(tmp);
    free(dir);
}

Test(convert, q_and_k_rows_are_permuted_to_llama_layout)
{
    char *dir = ec_test_shared("models/stories260K");
    struct ec_model m;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_model_open(&m, dir, &d), EC_OK, "%s", d.msg);
    const struct ec_model_tensor *q = ec_model_find(&m, "blk.0.attn_q.weight");
    const struct ec_model_tensor *k = ec_model_find(&m, "blk.0.attn_k.weight");
    const struct ec_model_tensor *v = ec_model_find(&m, "blk.0.attn_v.weight");
    cr_assert(q && k && v);
    cr_expect_eq(q->permute_heads, 8);
    cr_expect_eq(k->permute_heads, 4);
    cr_expect_eq(v->permute_heads, 0);
    /* rows_per_head 8 for k (32 rows / 4 heads): out row 1 = in row 4 of head 0 */
    float *kf = malloc(ec_model_tensor_n_elems(k) * sizeof *kf);
    cr_assert_eq(ec_model_tensor_read_f32(&m, k, kf, &d), EC_OK, "%s", d.msg);
    const float *src = (const float *)k->data;
    uint64_t cols = k->ne[0];
    cr_expect_eq(memcmp(kf + 1 * cols, src + 4 * cols, cols * sizeof(float)), 0);
    cr_expect_eq(memcmp(kf + 2 * cols, src + 1 * cols, cols * sizeof(float)), 0);
    cr_expect_eq(memcmp(kf + 9 * cols, src + 12 * cols, cols * sizeof(float)), 0);
    free(kf);
    ec_model_close(&m);
    free(dir);
}

Test(convert, name_map_round_trips_and_rejects_unknown)
{
    static const char *const hf[] = {
        "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
        "model.layers.0.input_layernorm.weight", "model.layers.12.self_attn.q_proj.bias",
        "model.layers.3.self_attn.o_proj.weight", "model.layers.7.mlp.down_proj.weight",
        "model.layers.7.post_attention_layernorm.weight"};
    static const char *const gg[] = {
        "token_embd.weight", "output_norm.weight", "output.weight", "blk.0.attn_norm.weight",
        "blk.12.attn_q.bias", "blk.3.attn_output.weight", "blk.7.ffn_down.weight",
        "blk.7.ffn_norm.weight"};
    for (size_t i = 0; i < sizeof hf / sizeof hf[0]; i++) {
        char *a = ec_hf_to_gguf_name(hf[i]);
        cr_assert_not_null(a, "%s", hf[i]);
        cr_expect_str_eq(a, gg[i]);
        char *b = ec_gguf_to_hf_name(a);
        cr_assert_not_null(b);
        cr_expect_str_eq(b, hf[i]);
        free(a);
        free(b);
    }
    cr_expect_null(ec_hf_to_gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"));
    cr_expect(ec_hf_name_ignorable("model.layers.0.self_attn.rotary_emb.inv_freq"));
    cr_expect_null(ec_hf_to_gguf_name("model.layers.x.mlp.up_proj.weight"));
    cr_expect_null(ec_hf_to_gguf_name("model.vision_tower.weight"));
    cr_expect_null(ec_gguf_to_hf_name("blk.0.ffn_gate_exps.weight"));
}

/* A checkpoint with a tensor the converter cannot name must fail, naming it. */
Test(convert, unknown_tensor_is_refused_by_name)
{
    char *src = ec_test_shared("models/stories260K");
    char *tmp = ec_test_tmpdir();
    struct ec_diag d;
    ec_diag_clear(&d);
    /* copy the small files, write a safetensors with one extra tensor */
    static const char *const copy[] = {"config.json", "tokenizer.model", "tokenizer_config.json",
                                       "generation_config.json", "tokenizer.json"};
    for (size_t i = 0; i < sizeof copy / sizeof copy[0]; i++) {
        char *from = ec_path_join(src, copy[i]);
        char *to = ec_path_join(tmp, copy[i]);
        char *text = NULL;
        size_t len = 0;
        cr_assert_eq(ec_read_file(from, 16u << 20, &text, &len, &d), EC_OK, "%s", d.msg);
        FILE *f = fopen(to, "wb");
        cr_assert_not_null(f);
        cr_assert_eq(fwrite(text, 1, len, f), len);
        fclose(f);
        free(text);
        free(from);
        free(to);
    }
    struct ec_safetensors st;
    cr_assert_eq(ec_safetensors_open(&st, src, &d), EC_OK, "%s", d.msg);
    char *dest = ec_path_join(tmp, "model.safetensors");
    struct ec_st_writer *w = NULL;
    cr_assert_eq(ec_st_writer_open(&w, dest, NULL, &d), EC_OK, "%s", d.msg);
    for (size_t i = 0; i < st.n_tensors; i++)
        cr_assert_eq(ec_st_writer_add_tensor(w, st.tensors[i].name, st.tensors[i].dtype,
                                             st.tensors[i].ndim, st.tensors[i].ne, &d),
                     EC_OK, "%s", d.msg);
    uint64_t ne1[1] = {4};
    cr_assert_eq(ec_st_writer_add_tensor(w, "model.layers.0.mystery.weight", EC_F32, 1, ne1, &d),
                 EC_OK, "%s", d.msg);
    cr_assert_eq(ec_st_writer_begin_data(w, &d), EC_OK, "%s", d.msg);
    for (size_t i = 0; i < st.n_tensors; i++)
        cr_assert_eq(ec_st_writer_write(w, st.tensors[i].data, (size_t)st.tensors[i].n_bytes, &d),
                     EC_OK, "%s", d.msg);
    float four[4] = {1, 2, 3, 4};
    cr_assert_eq(ec_st_writer_write(w, four, sizeof four, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(ec_st_writer_commit(w, &d), EC_OK, "%s", d.msg);
    ec_st_writer_free(w);
    ec_safetensors_close(&st);

    char *out = ec_path_join(tmp, "out.gguf");
    struct ec_convert_opts o = {.input = tmp, .output = out, .outtype = EC_F16};
    struct ec_convert_result r;
    ec_diag_clear(&d);
    enum ec_status s = ec_convert_run(&o, &r, &d);
    cr_expect_eq(s, EC_ERR_UNSUPPORTED, "status %d: %s", s, d.msg);
    cr_expect(strstr(d.msg, "'model.layers.0.mystery.weight'") != NULL, "message: %s", d.msg);
    cr_expect(!ec_path_exists(out), "a failed convert left %s behind", out);

    for (size_t i = 0; i < sizeof copy / sizeof copy[0]; i++) {
        char *p = ec_path_join(tmp, copy[i]);
        unlink(p);
        free(p);
    }
    unlink(dest);
    free(dest);
    free(out);
    rmdir(tmp);
    free(tmp);
    free(src);
}

/* edgec-genmodel output converts and inspects; two runs with one seed agree. */
Test(convert, generated_model_converts_and_is_deterministic)
{
    const char *gen = getenv("EDGEC_GENMODEL");
    if (!gen || !*gen)
        cr_skip_test("EDGEC_GENMODEL not set (run through meson test)");
    char *tmp = ec_test_tmpdir();
    char cmd[8192];
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd,
                 "'%s' '%s/m%d' --hidden 32 --ffn 64 --layers 2 --heads 4 --kv-heads 2 --vocab 320 "
                 "--seed 7 --dtype bf16 --tied",
                 gen, tmp, k);
        cr_assert_eq(system(cmd), 0, "%s", cmd);
    }
    char a[4096], b[4096], out[4096];
    snprintf(a, sizeof a, "%s/m0/model.safetensors", tmp);
    snprintf(b, sizeof b, "%s/m1/model.safetensors", tmp);
    char ha[65], hb[65];
    file_sha(a, ha);
    file_sha(b, hb);
    cr_expect_str_eq(ha, hb, "same seed, different weights");
    snprintf(a, sizeof a, "%s/m0", tmp);
    snprintf(out, sizeof out, "%s/m0.gguf", tmp);
    struct ec_convert_opts o = {.input = a, .output = out, .outtype = EC_F16};
    struct ec_convert_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_convert_run(&o, &r, &d), EC_OK, "%s", d.msg);
    /* embed + 2 x 9 + norm, tied: no output */
    cr_expect_eq(r.n_tensors, 20);
    cr_expect_eq(r.n_params, 320 * 32 + 2 * (2 * 32 + 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64) + 32);
    struct ec_model m;
    cr_assert_eq(ec_model_open(&m, out, &d), EC_OK, "%s", d.msg);
    cr_expect_eq(m.vocab.n_tokens, 320);
    cr_expect_str_eq(m.vocab.tokens[3], "<0x00>");
    cr_expect_eq(m.vocab.token_types[3], EC_TOK_BYTE);
    cr_expect_eq(m.hp.n_head_kv, 2);
    ec_model_close(&m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
    free(tmp);
}

/* Llama 3 rope scaling: the HF view lists rope_freqs.weight first, computed
 * from config.json as llama.cpp's converter does (float32); convert writes
 * it, the values follow the formula (checked here in double), and a pruned
 * HF folder leaves it out of model.safetensors (its config.json gives it
 * back). */
Test(convert, llama3_rope_scaling_writes_rope_freqs)
{
    const char *gen = getenv("EDGEC_GENMODEL"), *bin = getenv("EDGEC_BIN");
    if (!gen || !*gen || !bin || !*bin)
        cr_skip_test("EDGEC_GENMODEL / EDGEC_BIN not set (run through meson test)");
    char *tmp = ec_test_tmpdir();
    char cmd[16384], dir[4096], out[4096];
    snprintf(dir, sizeof dir, "%s/l3", tmp);
    snprintf(cmd, sizeof cmd,
             "'%s' '%s' --hidden 128 --ffn 256 --layers 1 --heads 2 --kv-heads 1 --tokenizer llama-bpe "
             "--rope-scaling llama3 --tied --seed 3",
             gen, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(out, sizeof out, "%s/l3.gguf", tmp);
    struct ec_convert_opts o = {.input = dir, .output = out, .outtype = EC_F16};
    struct ec_convert_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_convert_run(&o, &r, &d), EC_OK, "%s", d.msg);
    struct ec_model m;
    cr_assert_eq(ec_model_open(&m, out, &d), EC_OK, "%s", d.msg);
    const struct ec_model_tensor *t = &m.tensors[0];
    cr_assert_str_eq(t->name, "rope_freqs.weight", "first tensor is %s", t->name);
    cr_assert_eq(t->dtype, EC_F32);
    cr_assert_eq(t->n_dims, 1);
    cr_assert_eq(t->ne[0], 32); /* head_dim 64 / 2 */
    float v[32];
    memcpy(v, t->data, sizeof v);
    /* theta 500000, factor 8, low 1, high 4, original context 64 (edgec-genmodel) */
    int n_one = 0, n_factor = 0, n_blend = 0;
    for (int i = 0; i < 32; i++) {
        double freq = 1.0 / pow(500000.0, (2.0 * i) / 64.0), wl = 2.0 * M_PI / freq, want;
        if (wl < 64.0 / 4.0)
            want = 1.0, n_one++;
        else if (wl > 64.0 / 1.0)
            want = 8.0, n_factor++;
        else {
            double s = (64.0 / wl - 1.0) / 3.0;
            want = 1.0 / ((1.0 - s) / 8.0 + s);
            n_blend++;
        }
        cr_expect(fabs(v[i] - want) <= 1e-5 * want, "rope_freqs[%d] = %.9g, formula %.9g", i, (double)v[i], want);
    }
    cr_expect(n_one > 0 && n_factor > 0 && n_blend > 0, "all three bands: %d %d %d", n_one, n_factor, n_blend);
    ec_model_close(&m);
    /* inspect names the scaling of the folder */
    snprintf(cmd, sizeof cmd,
             "'%s' inspect '%s' --json | grep -q '\"rope_scaling\": \"llama3\", \"rope_factor\": 8, "
             "\"rope_orig_ctx\": 64'",
             bin, dir);
    cr_expect_eq(system(cmd), 0, "%s", cmd);

    /* a pruned HF folder: no rope_freqs in model.safetensors, computed again on open */
    char pruned[4096];
    snprintf(pruned, sizeof pruned, "%s/pruned", tmp);
    snprintf(cmd, sizeof cmd, "'%s' prune '%s' -o '%s' --method magnitude --sparsity 0.5 -q >/dev/null", bin, dir,
             pruned);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    struct ec_safetensors st;
    cr_assert_eq(ec_safetensors_open(&st, pruned, &d), EC_OK, "%s", d.msg);
    for (size_t i = 0; i < st.n_tensors; i++)
        cr_expect(strstr(st.tensors[i].name, "rope_freqs") == NULL, "%s stored", st.tensors[i].name);
    ec_safetensors_close(&st);
    cr_assert_eq(ec_model_open(&m, pruned, &d), EC_OK, "%s", d.msg);
    cr_expect_str_eq(m.tensors[0].name, "rope_freqs.weight");
    cr_expect(memcmp(m.tensors[0].data, v, sizeof v) == 0, "the same values after the round trip");
    ec_model_close(&m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
    free(tmp);
}
