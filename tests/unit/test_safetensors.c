/* Safetensors reader and writer: round trips, sharded checkpoints, shared models. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "edgec/io.h"
#include "edgec/safetensors.h"

/* Deterministic fill so that every byte of every tensor differs. */
static void fill_bytes(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

static size_t count_dir_entries(const char *dir)
{
    DIR *dh = opendir(dir);
    cr_assert_not_null(dh);
    size_t n = 0;
    for (struct dirent *de; (de = readdir(dh));)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(dh);
    return n;
}

struct decl {
    const char *name;
    enum ec_dtype dtype;
    int ndim;
    uint64_t ne[EC_MAX_DIMS];
};

static const struct decl roundtrip_decls[] = {
    {"model.embed.weight", EC_F32, 2, {8, 5}},
    {"norm", EC_F16, 1, {7}},
    {"scalar.i64", EC_I64, 0, {0}},
    {"bytes.u8", EC_U8, 3, {3, 2, 5}},
    {"mask", EC_BOOL, 4, {2, 1, 3, 2}},
    {"bf", EC_BF16, 2, {4, 4}},
    {"empty", EC_F32, 2, {0, 3}},
    {"q\"uote\\d\x01", EC_I8, 1, {9}},
    {"f8", EC_F8_E4M3, 1, {5}},
    {"ünïcode", EC_U32, 1, {3}},
};
#define N_RT (sizeof roundtrip_decls / sizeof roundtrip_decls[0])

static uint64_t decl_bytes(const struct decl *t)
{
    uint64_t b;
    cr_assert(ec_dtype_tensor_bytes(t->dtype, t->ndim, t->ne, &b));
    return b;
}

/* Write decls (data from fill_bytes(i)) plus metadata into path. */
static void write_st(const char *path, const struct decl *decls, size_t n, const char *const *meta,
                     size_t n_meta, size_t chunk)
{
    struct ec_diag d = {0};
    struct ec_st_writer *w;
    cr_assert_eq(ec_st_writer_open(&w, path, NULL, &d), EC_OK, "%s", d.msg);
    for (size_t i = 0; i < n_meta; i++)
        cr_assert_eq(ec_st_writer_add_meta(w, meta[2 * i], meta[2 * i + 1], &d), EC_OK, "%s",
                     d.msg);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ec_st_writer_add_tensor(w, decls[i].name, decls[i].dtype, decls[i].ndim,
                                             decls[i].ne, &d),
                     EC_OK, "%s", d.msg);
    cr_assert_eq(ec_st_writer_begin_data(w, &d), EC_OK, "%s", d.msg);
    for (size_t i = 0; i < n; i++) {
        uint64_t nb = decl_bytes(&decls[i]);
        uint8_t *buf = malloc(nb + 1);
        fill_bytes(buf, nb, (uint32_t)i);
        for (uint64_t off = 0; off < nb; off += chunk) {
            size_t k = nb - off < chunk ? (size_t)(nb - off) : chunk;
            cr_assert_eq(ec_st_writer_write(w, buf + off, k, &d), EC_OK, "%s", d.msg);
        }
        free(buf);
    }
    cr_assert_eq(ec_st_writer_commit(w, &d), EC_OK, "%s", d.msg);
    ec_st_writer_free(w);
}

static void check_st_matches(const struct ec_safetensors *st, const struct decl *decls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct ec_st_tensor *t = ec_safetensors_find(st, decls[i].name);
        cr_assert_not_null(t, "tensor '%s' missing", decls[i].name);
        cr_assert_eq(t->dtype, decls[i].dtype, "%s", decls[i].name);
        cr_assert_eq(t->ndim, decls[i].ndim, "%s", decls[i].name);
        for (int k = 0; k < decls[i].ndim; k++)
            cr_assert_eq(t->ne[k], decls[i].ne[k], "%s ne[%d]", decls[i].name, k);
        uint64_t nb = decl_bytes(&decls[i]);
        cr_assert_eq(t->n_bytes, nb, "%s", decls[i].name);
        uint8_t *want = malloc(nb + 1);
        fill_bytes(want, nb, (uint32_t)i);
        cr_assert(nb == 0 || memcmp(want, t->data, nb) == 0, "%s: data differs", decls[i].name);
        free(want);
        cr_assert_null(t->alias_of);
    }
}

Test(safetensors, writer_roundtrip_preserves_tensors_meta_and_layout)
{
    char *dir = ec_test_tmpdir();
    char *path = ec_path_join(dir, "rt.safetensors");
    const char *meta[] = {"format", "pt", "note", "a \"quoted\"\nline", "alias.weight", "norm"};
    write_st(path, roundtrip_decls, N_RT, meta, 3, 3);
    cr_assert_eq(count_dir_entries(dir), 1, "temp file left behind");

    struct ec_safetensors st;
    struct ec_diag d = {0};
    cr_assert_eq(ec_safetensors_open(&st, path, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(st.n_files, 1);
    cr_assert_eq(st.n_tensors, N_RT + 1); /* + the alias from metadata */
    check_st_matches(&st, roundtrip_decls, N_RT);
    /* file order = declaration order; alias last */
    for (size_t i = 0; i < N_RT; i++)
        cr_assert_str_eq(st.tensors[i].name, roundtrip_decls[i].name);
    const struct ec_st_tensor *a = &st.tensors[N_RT];
    cr_assert_str_eq(a->name, "alias.weight");
    cr_assert_str_eq(a->alias_of, "norm");
    cr_assert_eq(a->data, ec_safetensors_find(&st, "norm")->data);
    cr_assert_str_eq(ec_safetensors_meta(&st, "note"), "a \"quoted\"\nline");
    cr_assert_str_eq(ec_safetensors_meta(&st, "format"), "pt");
    cr_assert_eq(st.n_meta, 3);

    /* header: 8-aligned data, __metadata__ first, contiguous data_offsets */
    const uint8_t *b = st.files[0].data;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | b[i];
    cr_assert_eq(n % 8, 0, "header length %llu", (unsigned long long)n);
    cr_assert(memcmp(b + 8, "{\"__metadata__\":", 16) == 0);
    cr_assert_eq(b[8 + n - 1] == ' ' || b[8 + n - 1] == '}', 1);
    uint64_t expect_off = 8 + n;
    for (size_t i = 0; i < N_RT; i++) {
        cr_assert_eq(st.tensors[i].file_offset, expect_off, "%s", st.tensors[i].name);
        expect_off += st.tensors[i].n_bytes;
    }
    cr_assert_eq(expect_off, st.files[0].size_bytes);
    ec_safetensors_close(&st);
    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
}

Test(safetensors, writer_rejects_short_and_long_data_and_leaves_no_file)
{
    char *dir = ec_test_tmpdir();
    char *path = ec_path_join(dir, "bad.safetensors");
    struct ec_diag d = {0};
    struct ec_st_writer *w;
    uint64_t ne[2] = {4, 2};
    uint8_t buf[64] = {0};

    cr_assert_eq(ec_st_writer_open(&w, path, NULL, &d), EC_OK);
    cr_assert_eq(ec_st_writer_add_tensor(w, "a", EC_F32, 2, ne, &d), EC_OK);
    cr_assert_eq(ec_st_writer_add_tensor(w, "a", EC_F32, 2, ne, &d), EC_ERR_ARG);
    cr_assert_eq(ec_st_writer_add_tensor(w, "q", EC_Q4_K, 2, ne, &d), EC_ERR_UNSUPPORTED);
    ec_diag_clear(&d);
    cr_assert_eq(ec_st_writer_begin_data(w, &d), EC_OK);
    cr_assert_eq(ec_st_writer_write(w, buf, 31, &d), EC_OK);
    cr_assert_eq(ec_st_writer_commit(w, &d), EC_ERR_INTERNAL);
    cr_assert(strstr(d.msg, "'a'") && strstr(d.msg, "31 of its 32"), "%s", d.msg);
    ec_st_writer_free(w);
    cr_assert_eq(count_dir_entries(dir), 0);

    ec_diag_clear(&d);
    cr_assert_eq(ec_st_writer_open(&w, path, NULL, &d), EC_OK);
    cr_assert_eq(ec_st_writer_add_tensor(w, "a", EC_F32, 2, ne, &d), EC_OK);
    cr_assert_eq(ec_st_writer_begin_data(w, &d), EC_OK);
    cr_assert_eq(ec_st_writer_write(w, buf, 33, &d), EC_ERR_INTERNAL);
    ec_st_writer_free(w);
    cr_assert_eq(count_dir_entries(dir), 0);
    rmdir(dir);
    free(path);
    free(dir);
}

/* Two shards + index; the folder and the index path both open. */
Test(safetensors, sharded_checkpoint_opens_from_folder_and_index)
{
    char *dir = ec_test_tmpdir();
    char *s1 = ec_path_join(dir, "model-00001-of-00002.safetensors");
    char *s2 = ec_path_join(dir, "model-00002-of-00002.safetensors");
    char *idx = ec_path_join(dir, "model.safetensors.index.json");
    write_st(s1, roundtrip_decls, 4, NULL, 0, 1000);
    write_st(s2, roundtrip_decls + 4, N_RT - 4, NULL, 0, 1000);
    FILE *f = fopen(idx, "w");
    fprintf(f, "{\"metadata\":{\"total_size\":1},\"weight_map\":{");
    for (size_t i = 0; i < N_RT; i++) {
        cJSON *s = cJSON_CreateString(roundtrip_decls[i].name);
        char *js = cJSON_PrintUnformatted(s);
        fprintf(f, "%s%s:\"model-0000%d-of-00002.safetensors\"", i ? "," : "", js, i < 4 ? 1 : 2);
        free(js);
        cJSON_Delete(s);
    }
    fprintf(f, "}}");
    fclose(f);

    const char *paths[] = {dir, idx};
    for (int p = 0; p < 2; p++) {
        struct ec_safetensors st;
        struct ec_diag d = {0};
        cr_assert_eq(ec_safetensors_open(&st, paths[p], &d), EC_OK, "%s", d.msg);
        cr_assert_eq(st.n_files, 2);
        cr_assert_eq(st.n_tensors, N_RT);
        /* fill seeds restart per shard */
        check_st_matches(&st, roundtrip_decls, 4);
        for (size_t i = 0; i < N_RT; i++) {
            const struct ec_st_tensor *t = ec_safetensors_find(&st, roundtrip_decls[i].name);
            cr_assert_str_eq(t->file, i < 4 ? st.files[0].path : st.files[1].path);
        }
        ec_safetensors_close(&st);
    }
    unlink(s1);
    unlink(s2);
    unlink(idx);
    rmdir(dir);
    free(s1);
    free(s2);
    free(idx);
    free(dir);
}

/* Reads num_hidden_layers / hidden_size / vocab_size from a model's config.json. */
static void read_config(const char *model_dir, int *layers, int *hidden, int *vocab)
{
    char *cfg = ec_path_join(model_dir, "config.json");
    char *text;
    struct ec_diag d = {0};
    cr_assert_eq(ec_read_file(cfg, 1 << 20, &text, NULL, &d), EC_OK, "%s", d.msg);
    cJSON *j = cJSON_Parse(text);
    cr_assert_not_null(j);
    *layers = cJSON_GetObjectItem(j, "num_hidden_layers")->valueint;
    *hidden = cJSON_GetObjectItem(j, "hidden_size")->valueint;
    *vocab = cJSON_GetObjectItem(j, "vocab_size")->valueint;
    cJSON_Delete(j);
    free(text);
    free(cfg);
}

/* Every shared Llama checkpoint: 9 tensors per layer + embeddings + final norm
 * (+ lm_head when stored), shapes from config.json, one dtype per variant. */
static void check_shared_model(const char *model)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", model);
    char *mdir = ec_test_shared(rel);
    if (!mdir)
        return;
    int layers, hidden, vocab;
    read_config(mdir, &layers, &hidden, &vocab);
    const char *variants[] = {"model.safetensors", "model-f16", "model-bf16"};
    const enum ec_dtype dtypes[] = {EC_F32, EC_F16, EC_BF16};
    size_t n_stored_first = 0;
    for (int v = 0; v < 3; v++) {
        char *p = ec_path_join(mdir, variants[v]);
        struct ec_safetensors st;
        struct ec_diag d = {0};
        cr_assert_eq(ec_safetensors_open(&st, p, &d), EC_OK, "%s", d.msg);
        size_t n_alias = 0;
        for (size_t i = 0; i < st.n_tensors; i++) {
            const struct ec_st_tensor *t = &st.tensors[i];
            if (t->alias_of) {
                n_alias++;
                continue;
            }
            cr_assert_eq(t->dtype, dtypes[v], "%s %s: %s", model, variants[v], t->name);
            cr_assert_eq(t->file_offset, (uint64_t)(t->data - st.files[0].data));
        }
        size_t n_stored = st.n_tensors - n_alias;
        const struct ec_st_tensor *lm = ec_safetensors_find(&st, "lm_head.weight");
        const struct ec_st_tensor *emb = ec_safetensors_find(&st, "model.embed_tokens.weight");
        cr_assert_not_null(emb);
        int n_io = (lm && !lm->alias_of) + !emb->alias_of; /* stored embedding / output */
        cr_assert_eq(n_stored, (size_t)(9 * layers + 1 + n_io), "%s %s: %zu tensors", model,
                     variants[v], n_stored);
        if (v == 0)
            n_stored_first = n_stored;
        cr_assert_eq(n_stored, n_stored_first);
        cr_assert_eq(emb->ndim, 2);
        cr_assert_eq(emb->ne[0], (uint64_t)hidden);
        cr_assert_eq(emb->ne[1], (uint64_t)vocab);
        if (strcmp(model, "tinystories-656K") == 0) {
            cr_assert_eq(n_alias, 1);
            cr_assert_not_null(emb->alias_of, "embed_tokens should be an alias");
            cr_assert_str_eq(emb->alias_of, "lm_head.weight");
            cr_assert_eq(emb->data, lm->data);
            cr_assert_eq(emb->n_bytes, lm->n_bytes);
            cr_assert_eq(&st.tensors[st.n_tensors - 1], emb, "aliases come last");
        }
        ec_safetensors_close(&st);
        free(p);
    }
    free(mdir);
}

Test(safetensors, shared_stories260K_opens_in_all_dtypes)
{
    check_shared_model("stories260K");
}
Test(safetensors, shared_stories_student_256_opens_in_all_dtypes)
{
    check_shared_model("stories-student-256");
}
Test(safetensors, shared_tinystories_656K_exposes_tied_alias)
{
    check_shared_model("tinystories-656K");
}

Test(safetensors, golden_quant_blocks_opens_with_u8_and_f32)
{
    char *p = ec_test_shared("golden/quant/blocks.safetensors");
    if (!p)
        return;
    struct ec_safetensors st;
    struct ec_diag d = {0};
    cr_assert_eq(ec_safetensors_open(&st, p, &d), EC_OK, "%s", d.msg);
    const struct ec_st_tensor *x = ec_safetensors_find(&st, "x_normal");
    cr_assert_not_null(x);
    cr_assert_eq(x->dtype, EC_F32);
    cr_assert_eq(x->ne[0], 512);
    cr_assert_eq(x->ne[1], 64);
    /* README: Q4_0 rows of 512 are 288 bytes */
    const struct ec_st_tensor *q = ec_safetensors_find(&st, "x_normal.Q4_0");
    cr_assert_not_null(q);
    cr_assert_eq(q->dtype, EC_U8);
    cr_assert_eq(q->ne[0], 288);
    cr_assert_eq(q->ne[1], 64);
    size_t n_u8 = 0, n_f32 = 0;
    for (size_t i = 0; i < st.n_tensors; i++) {
        n_u8 += st.tensors[i].dtype == EC_U8;
        n_f32 += st.tensors[i].dtype == EC_F32;
    }
    cr_assert_eq(n_u8 + n_f32, st.n_tensors);
    cr_assert(n_u8 > 0 && n_f32 > 0);
    cr_assert_not_null(ec_safetensors_meta(&st, "sets"));
    ec_safetensors_close(&st);
    free(p);
}

Test(safetensors, dtype_names_map_both_ways)
{
    const char *names[] = {"F32", "F16", "BF16", "F64", "I8",   "I16",     "I32",    "I64",
                           "U8",  "U16", "U32",  "U64", "BOOL", "F8_E4M3", "F8_E5M2"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        enum ec_dtype t;
        cr_assert(ec_st_dtype_from_name(names[i], &t), "%s", names[i]);
        cr_assert_str_eq(ec_st_dtype_name(t), names[i]);
        cr_assert_str_eq(ec_dtype_name(t), names[i]);
    }
    enum ec_dtype t;
    cr_assert_not(ec_st_dtype_from_name("f32", &t));
    cr_assert_not(ec_st_dtype_from_name("C64", &t));
    cr_assert_null(ec_st_dtype_name(EC_Q4_K));
}
