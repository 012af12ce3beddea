/* GGUF reader and streaming writer: every value type, layout, copies, shared model. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "edgec/gguf.h"
#include "edgec/io.h"
#include "edgec/safetensors.h"

static void fill_bytes(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 7;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

static uint64_t file_size(const char *p)
{
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    return (uint64_t)st.st_size;
}

struct tdecl {
    const char *name;
    enum ec_dtype type;
    uint32_t n_dims;
    uint64_t ne[4];
};

static const struct tdecl tdecls[] = {
    {"tok_embd.weight", EC_F32, 2, {5, 3}},
    {"blk.0.q4", EC_Q4_0, 2, {64, 2}},
    {"norm", EC_F16, 1, {7}},
    {"four.d", EC_I32, 4, {1, 2, 3, 4}},
    {"k", EC_Q4_K, 1, {256}},
};
#define N_T (sizeof tdecls / sizeof tdecls[0])

static const float arr_f32[] = {0.1f, -2.5f, 1e30f, 0.0f};
static const int16_t arr_i16[] = {-32768, 0, 32767};
static const uint8_t arr_bool[] = {1, 0, 1};
static const uint64_t arr_u64[] = {0, UINT64_MAX, 1234567890123ull};
static const char *const arr_str[] = {"a", "", "ünï", "with\0nul"};
static const uint64_t arr_str_len[] = {1, 0, 5, 8};

/* Writes every value type and the tensors; alignment 0 = default. */
static void write_all_types(const char *path, uint32_t alignment, size_t chunk)
{
    struct ec_diag d = {0};
    struct ec_gguf_writer *w;
    cr_assert_eq(ec_gguf_writer_open(&w, path, NULL, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(ec_gguf_writer_add_str(w, "general.architecture", "llama", &d), EC_OK);
    if (alignment)
        cr_assert_eq(ec_gguf_writer_add_u32(w, "general.alignment", alignment, &d), EC_OK, "%s",
                     d.msg);
    struct ec_gguf_kv kv;
    memset(&kv, 0, sizeof kv);
    kv.key = "t.u8", kv.type = EC_GGUF_U8, kv.v.u64 = 200;
    cr_assert_eq(ec_gguf_writer_add_kv(w, &kv, &d), EC_OK);
    kv.key = "t.i8", kv.type = EC_GGUF_I8, kv.v.i64 = -100;
    cr_assert_eq(ec_gguf_writer_add_kv(w, &kv, &d), EC_OK);
    kv.key = "t.u16", kv.type = EC_GGUF_U16, kv.v.u64 = 65535;
    cr_assert_eq(ec_gguf_writer_add_kv(w, &kv, &d), EC_OK);
    kv.key = "t.i16", kv.type = EC_GGUF_I16, kv.v.i64 = -32768;
    cr_assert_eq(ec_gguf_writer_add_kv(w, &kv, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_u32(w, "t.u32", 4000000000u, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_i32(w, "t.i32", -2000000000, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_f32(w, "t.f32", 0.1f, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_bool(w, "t.bool", true, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_str(w, "t.str", "héllo", &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_u64(w, "t.u64", UINT64_MAX, &d), EC_OK);
    kv.key = "t.i64", kv.type = EC_GGUF_I64, kv.v.i64 = INT64_MIN;
    cr_assert_eq(ec_gguf_writer_add_kv(w, &kv, &d), EC_OK);
    kv.key = "t.f64", kv.type = EC_GGUF_F64, kv.v.f64 = 0.1;
    cr_assert_eq(ec_gguf_writer_add_kv(w, &kv, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_array(w, "a.f32", EC_GGUF_F32, arr_f32, 4, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_array(w, "a.i16", EC_GGUF_I16, arr_i16, 3, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_array(w, "a.bool", EC_GGUF_BOOL, arr_bool, 3, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_array(w, "a.u64", EC_GGUF_U64, arr_u64, 3, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_array(w, "a.empty", EC_GGUF_U8, NULL, 0, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_str_array(w, "a.str", arr_str, arr_str_len, 4, &d), EC_OK);
    /* override: remove then re-add moves the key to the end */
    cr_assert_eq(ec_gguf_writer_add_u32(w, "t.override", 1, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_u32(w, "t.override", 2, &d), EC_ERR_ARG);
    ec_diag_clear(&d);
    ec_gguf_writer_remove_kv(w, "t.override");
    ec_gguf_writer_remove_kv(w, "t.absent");
    cr_assert_eq(ec_gguf_writer_add_u32(w, "t.override", 3, &d), EC_OK);
    for (size_t i = 0; i < N_T; i++)
        cr_assert_eq(ec_gguf_writer_add_tensor(w, tdecls[i].name, tdecls[i].type, tdecls[i].n_dims,
                                               tdecls[i].ne, &d),
                     EC_OK, "%s", d.msg);
    cr_assert_eq(ec_gguf_writer_begin_data(w, &d), EC_OK, "%s", d.msg);
    for (size_t i = 0; i < N_T; i++) {
        uint64_t nb;
        cr_assert(ec_dtype_tensor_bytes(tdecls[i].type, (int)tdecls[i].n_dims, tdecls[i].ne, &nb));
        uint8_t *buf = malloc(nb);
        fill_bytes(buf, nb, (uint32_t)i);
        for (uint64_t off = 0; off < nb; off += chunk) {
            size_t k = nb - off < chunk ? (size_t)(nb - off) : chunk;
            cr_assert_eq(ec_gguf_writer_write(w, buf + off, k, &d), EC_OK, "%s", d.msg);
        }
        free(buf);
    }
    cr_assert_eq(ec_gguf_writer_commit(w, &d), EC_OK, "%s", d.msg);
    ec_gguf_writer_free(w);
}

static void check_all_types(const struct ec_gguf *g, uint32_t alignment)
{
    uint32_t a = alignment ? alignment : EC_GGUF_DEFAULT_ALIGNMENT;
    cr_assert_eq(g->alignment, a);
    const char *order[] = {"general.architecture",
                           "t.u8",
                           "t.i8",
                           "t.u16",
                           "t.i16",
                           "t.u32",
                           "t.i32",
                           "t.f32",
                           "t.bool",
                           "t.str",
                           "t.u64",
                           "t.i64",
                           "t.f64",
                           "a.f32",
                           "a.i16",
                           "a.bool",
                           "a.u64",
                           "a.empty",
                           "a.str",
                           "t.override"};
    size_t n_order = sizeof order / sizeof order[0];
    cr_assert_eq(g->n_kv, n_order + (alignment ? 1 : 0));
    for (size_t i = 0, k = 0; i < g->n_kv; i++) {
        if (alignment && i == 1) {
            cr_assert_str_eq(g->kv[i].key, "general.alignment");
            continue;
        }
        cr_assert_str_eq(g->kv[i].key, order[k++]);
    }
    uint64_t u;
    double f;
    bool b;
    cr_assert(ec_gguf_get_u64(g, "t.u8", &u) && u == 200);
    cr_assert_eq(ec_gguf_find_kv(g, "t.i8")->v.i64, -100);
    cr_assert_not(ec_gguf_get_u64(g, "t.i8", &u), "negative must not read as u64");
    cr_assert(ec_gguf_get_u64(g, "t.u16", &u) && u == 65535);
    cr_assert_eq(ec_gguf_find_kv(g, "t.i16")->v.i64, -32768);
    cr_assert(ec_gguf_get_u64(g, "t.u32", &u) && u == 4000000000u);
    cr_assert_eq(ec_gguf_find_kv(g, "t.i32")->v.i64, -2000000000);
    cr_assert(ec_gguf_get_f64(g, "t.f32", &f) && f == (double)0.1f);
    cr_assert(ec_gguf_get_bool(g, "t.bool", &b) && b);
    cr_assert_not(ec_gguf_get_bool(g, "t.u8", &b));
    char *s = ec_gguf_get_str(g, "t.str");
    cr_assert_str_eq(s, "héllo");
    free(s);
    cr_assert_null(ec_gguf_get_str(g, "t.u8"));
    cr_assert(ec_gguf_get_u64(g, "t.u64", &u) && u == UINT64_MAX);
    cr_assert_eq(ec_gguf_find_kv(g, "t.i64")->v.i64, INT64_MIN);
    cr_assert(ec_gguf_get_f64(g, "t.f64", &f) && f == 0.1);
    cr_assert(ec_gguf_get_u64(g, "t.override", &u) && u == 3);
    cr_assert_not(ec_gguf_get_u64(g, "absent", &u));

    const struct ec_gguf_kv *kv = ec_gguf_find_kv(g, "a.f32");
    cr_assert_eq(kv->type, EC_GGUF_ARRAY);
    cr_assert_eq(kv->arr_type, EC_GGUF_F32);
    cr_assert_eq(kv->arr_n, 4);
    cr_assert_eq(kv->arr_bytes, sizeof arr_f32);
    cr_assert(memcmp(kv->arr_data, arr_f32, sizeof arr_f32) == 0);
    kv = ec_gguf_find_kv(g, "a.i16");
    cr_assert(kv->arr_type == EC_GGUF_I16 && kv->arr_n == 3 &&
              memcmp(kv->arr_data, arr_i16, sizeof arr_i16) == 0);
    kv = ec_gguf_find_kv(g, "a.bool");
    cr_assert(kv->arr_type == EC_GGUF_BOOL && memcmp(kv->arr_data, arr_bool, 3) == 0);
    kv = ec_gguf_find_kv(g, "a.u64");
    cr_assert(kv->arr_type == EC_GGUF_U64 && memcmp(kv->arr_data, arr_u64, sizeof arr_u64) == 0);
    kv = ec_gguf_find_kv(g, "a.empty");
    cr_assert(kv->arr_type == EC_GGUF_U8 && kv->arr_n == 0 && kv->arr_bytes == 0);
    kv = ec_gguf_find_kv(g, "a.str");
    cr_assert_eq(kv->arr_type, EC_GGUF_STRING);
    cr_assert_eq(kv->arr_n, 4);
    cr_assert_eq(kv->arr_bytes, 4 * 8 + 1 + 0 + 5 + 8);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(kv->arr_strs[i].len, arr_str_len[i]);
        cr_assert(memcmp(kv->arr_strs[i].data, arr_str[i], arr_str_len[i]) == 0);
    }

    cr_assert_eq(g->n_tensors, N_T);
    cr_assert_eq(g->data_offset % a, 0);
    uint64_t expect_off = 0;
    for (size_t i = 0; i < N_T; i++) {
        const struct ec_gguf_tensor_info *t = &g->tensors[i];
        cr_assert_str_eq(t->name, tdecls[i].name);
        cr_assert_eq(t->type, tdecls[i].type);
        cr_assert_eq(t->n_dims, tdecls[i].n_dims);
        for (uint32_t k = 0; k < 4; k++)
            cr_assert_eq(t->ne[k], k < t->n_dims ? tdecls[i].ne[k] : 1);
        cr_assert_eq(t->offset, expect_off, "%s", t->name);
        uint8_t *want = malloc(t->n_bytes);
        fill_bytes(want, t->n_bytes, (uint32_t)i);
        cr_assert(memcmp(want, t->data, t->n_bytes) == 0, "%s data", t->name);
        free(want);
        expect_off += (t->n_bytes + a - 1) / a * a;
    }
    /* gguf-py pads after the last tensor too */
    cr_assert_eq(g->file.size_bytes, g->data_offset + expect_off);
}

Test(gguf, writer_roundtrips_every_value_type_default_alignment)
{
    char *dir = ec_test_tmpdir();
    char *path = ec_path_join(dir, "all.gguf");
    write_all_types(path, 0, 7);
    struct ec_gguf g;
    struct ec_diag d = {0};
    cr_assert_eq(ec_gguf_open(&g, path, &d), EC_OK, "%s", d.msg);
    check_all_types(&g, 0);
    cr_assert_eq(g.version, 3);
    ec_gguf_close(&g);
    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
}

Test(gguf, writer_honours_general_alignment)
{
    char *dir = ec_test_tmpdir();
    char *path = ec_path_join(dir, "al.gguf");
    write_all_types(path, 128, 1 << 20);
    struct ec_gguf g;
    struct ec_diag d = {0};
    cr_assert_eq(ec_gguf_open(&g, path, &d), EC_OK, "%s", d.msg);
    check_all_types(&g, 128);
    cr_assert_eq(file_size(path) % 128, 0);
    ec_gguf_close(&g);
    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
}

/* Copy every kv and tensor of a reader into a writer: byte-identical output. */
static void copy_gguf(const struct ec_gguf *g, const char *dest)
{
    struct ec_diag d = {0};
    struct ec_gguf_writer *w;
    cr_assert_eq(ec_gguf_writer_open(&w, dest, NULL, &d), EC_OK, "%s", d.msg);
    for (uint64_t i = 0; i < g->n_kv; i++)
        cr_assert_eq(ec_gguf_writer_add_kv(w, &g->kv[i], &d), EC_OK, "%s", d.msg);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct ec_gguf_tensor_info *t = &g->tensors[i];
        cr_assert_eq(ec_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, &d), EC_OK,
                     "%s", d.msg);
    }
    cr_assert_eq(ec_gguf_writer_begin_data(w, &d), EC_OK, "%s", d.msg);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        cr_assert_eq(ec_gguf_writer_write(w, g->tensors[i].data, g->tensors[i].n_bytes, &d), EC_OK,
                     "%s", d.msg);
    cr_assert_eq(ec_gguf_writer_commit(w, &d), EC_OK, "%s", d.msg);
    ec_gguf_writer_free(w);
}

static bool files_equal(const char *a, const char *b)
{
    struct ec_mapped_file ma, mb;
    struct ec_diag d = {0};
    cr_assert_eq(ec_mapped_file_open(&ma, a, &d), EC_OK);
    cr_assert_eq(ec_mapped_file_open(&mb, b, &d), EC_OK);
    bool eq = ma.size_bytes == mb.size_bytes &&
              (ma.size_bytes == 0 || memcmp(ma.data, mb.data, ma.size_bytes) == 0);
    ec_mapped_file_close(&ma);
    ec_mapped_file_close(&mb);
    return eq;
}

Test(gguf, copying_through_reader_and_writer_is_byte_identical)
{
    char *dir = ec_test_tmpdir();
    char *p1 = ec_path_join(dir, "a.gguf"), *p2 = ec_path_join(dir, "b.gguf");
    write_all_types(p1, 64, 13);
    struct ec_gguf g;
    struct ec_diag d = {0};
    cr_assert_eq(ec_gguf_open(&g, p1, &d), EC_OK, "%s", d.msg);
    copy_gguf(&g, p2);
    ec_gguf_close(&g);
    cr_assert(files_equal(p1, p2));
    unlink(p1);
    unlink(p2);
    rmdir(dir);
    free(p1);
    free(p2);
    free(dir);
}

Test(gguf, parse_from_memory_reads_version_2)
{
    char *dir = ec_test_tmpdir();
    char *path = ec_path_join(dir, "v2.gguf");
    write_all_types(path, 0, 100);
    struct ec_mapped_file m;
    struct ec_diag d = {0};
    cr_assert_eq(ec_mapped_file_open(&m, path, &d), EC_OK);
    uint8_t *buf = malloc(m.size_bytes);
    memcpy(buf, m.data, m.size_bytes);
    buf[4] = 2;
    struct ec_gguf g;
    cr_assert_eq(ec_gguf_parse(&g, buf, m.size_bytes, "mem.gguf", &d), EC_OK, "%s", d.msg);
    cr_assert_eq(g.version, 2);
    cr_assert_null(g.file.data);
    check_all_types(&g, 0);
    ec_gguf_close(&g);
    free(buf);
    ec_mapped_file_close(&m);
    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
}

Test(gguf, writer_refuses_overrun_short_data_and_bad_declarations)
{
    char *dir = ec_test_tmpdir();
    char *path = ec_path_join(dir, "x.gguf");
    struct ec_diag d = {0};
    struct ec_gguf_writer *w;
    uint64_t ne[2] = {4, 2}, bad_ne[1] = {33};
    uint8_t buf[64] = {0};
    cr_assert_eq(ec_gguf_writer_open(&w, path, NULL, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_u32(w, "general.alignment", 3, &d), EC_ERR_ARG);
    cr_assert_eq(ec_gguf_writer_add_u32(w, "general.alignment", 0, &d), EC_ERR_ARG);
    cr_assert_eq(ec_gguf_writer_add_str(w, "general.alignment", "32", &d), EC_ERR_ARG);
    cr_assert_eq(ec_gguf_writer_add_tensor(w, "q", EC_Q4_0, 1, bad_ne, &d), EC_ERR_ARG);
    cr_assert_eq(ec_gguf_writer_add_tensor(w, "b", EC_BOOL, 2, ne, &d), EC_ERR_UNSUPPORTED);
    cr_assert_eq(ec_gguf_writer_add_tensor(w, "z", EC_F32, 0, ne, &d), EC_ERR_ARG);
    cr_assert_eq(ec_gguf_writer_add_tensor(w, "a", EC_F32, 2, ne, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_tensor(w, "a", EC_F32, 2, ne, &d), EC_ERR_ARG);
    cr_assert_eq(ec_gguf_writer_add_tensor(w, "c", EC_F16, 1, ne, &d), EC_OK);
    ec_diag_clear(&d);
    cr_assert_eq(ec_gguf_writer_begin_data(w, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_write(w, buf, 32, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_commit(w, &d), EC_ERR_INTERNAL);
    cr_assert(strstr(d.msg, "'c'") != NULL, "%s", d.msg);
    ec_diag_clear(&d);
    cr_assert_eq(ec_gguf_writer_write(w, buf, 9, &d), EC_ERR_INTERNAL);
    ec_gguf_writer_free(w);
    DIR *dh = opendir(dir);
    int n = 0;
    for (struct dirent *de; (de = readdir(dh));)
        n += de->d_name[0] != '.';
    closedir(dh);
    cr_assert_eq(n, 0, "temporary file left behind");
    rmdir(dir);
    free(path);
    free(dir);
}

Test(gguf, type_names_match_gguf_py)
{
    const char *names[] = {"UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
                           "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};
    for (int t = 0; t < EC_GGUF_TYPE_COUNT; t++)
        cr_assert_str_eq(ec_gguf_type_name((enum ec_gguf_type)t), names[t]);
    cr_assert_str_eq(ec_gguf_type_name(EC_GGUF_TYPE_COUNT), "?");
}

/* A shared checkpoint converted tensor by tensor (no tokenizer): the GGUF holds
 * the same bytes, and a reader->writer copy reproduces the file exactly. */
Test(gguf, shared_model_tensors_survive_gguf_round_trip)
{
    char *src = ec_test_shared("models/stories260K/model.safetensors");
    if (!src)
        return;
    struct ec_safetensors st;
    struct ec_diag d = {0};
    cr_assert_eq(ec_safetensors_open(&st, src, &d), EC_OK, "%s", d.msg);
    char *dir = ec_test_tmpdir();
    char *p1 = ec_path_join(dir, "m.gguf"), *p2 = ec_path_join(dir, "m2.gguf");
    struct ec_gguf_writer *w;
    cr_assert_eq(ec_gguf_writer_open(&w, p1, NULL, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_add_str(w, "general.architecture", "llama", &d), EC_OK);
    for (size_t i = 0; i < st.n_meta; i++)
        cr_assert_eq(ec_gguf_writer_add_str(w, st.meta_keys[i], st.meta_values[i], &d), EC_OK);
    for (size_t i = 0; i < st.n_tensors; i++) {
        const struct ec_st_tensor *t = &st.tensors[i];
        cr_assert_eq(ec_gguf_writer_add_tensor(w, t->name, t->dtype, (uint32_t)t->ndim, t->ne, &d),
                     EC_OK, "%s", d.msg);
    }
    cr_assert_eq(ec_gguf_writer_begin_data(w, &d), EC_OK);
    for (size_t i = 0; i < st.n_tensors; i++)
        cr_assert_eq(ec_gguf_writer_write(w, st.tensors[i].data, st.tensors[i].n_bytes, &d), EC_OK);
    cr_assert_eq(ec_gguf_writer_commit(w, &d), EC_OK, "%s", d.msg);
    ec_gguf_writer_free(w);

    struct ec_gguf g;
    cr_assert_eq(ec_gguf_open(&g, p1, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(g.n_tensors, st.n_tensors);
    cr_assert_eq(g.n_kv, st.n_meta + 1);
    for (size_t i = 0; i < st.n_tensors; i++) {
        const struct ec_gguf_tensor_info *t = ec_gguf_find_tensor(&g, st.tensors[i].name);
        cr_assert_not_null(t);
        cr_assert_eq(t->n_bytes, st.tensors[i].n_bytes);
        cr_assert(memcmp(t->data, st.tensors[i].data, t->n_bytes) == 0, "%s", t->name);
    }
    cr_assert_eq(g.file.size_bytes % 32, 0);
    copy_gguf(&g, p2);
    ec_gguf_close(&g);
    cr_assert(files_equal(p1, p2));
    ec_safetensors_close(&st);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
    free(p1);
    free(p2);
    free(dir);
    free(src);
}

/* Layout against llama.cpp's converter: declaring the golden file's tensors
 * (names, types, ne, in file order) gives the same relative offsets and the
 * same data-section size, i.e. the same padding rule (after the last tensor too). */
Test(gguf, writer_offsets_match_convert_hf_to_gguf_layout)
{
    char *jp = ec_test_shared("golden/convert/stories260K.json");
    if (!jp)
        return;
    char *text;
    struct ec_diag d = {0};
    cr_assert_eq(ec_read_file(jp, 1 << 24, &text, NULL, &d), EC_OK, "%s", d.msg);
    cJSON *root = cJSON_Parse(text);
    cr_assert_not_null(root);
    const char *variants[] = {"F16", "BF16", "F32"};
    char *dir = ec_test_tmpdir();
    char *path = ec_path_join(dir, "layout.gguf");
    for (int v = 0; v < 3; v++) {
        const cJSON *f = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "files"), variants[v]);
        cr_assert_not_null(f);
        const cJSON *tensors = cJSON_GetObjectItem(f, "tensors");
        double size = cJSON_GetObjectItem(f, "file_size")->valuedouble;
        double data_off = cJSON_GetObjectItem(f, "tensor_data_offset")->valuedouble;
        cr_assert_eq(cJSON_GetObjectItem(f, "alignment")->valueint, 32);
        struct ec_gguf_writer *w;
        cr_assert_eq(ec_gguf_writer_open(&w, path, NULL, &d), EC_OK);
        for (const cJSON *t = tensors->child; t; t = t->next) {
            enum ec_dtype ty;
            cr_assert(ec_dtype_from_name(cJSON_GetObjectItem(t, "type")->valuestring, &ty));
            uint64_t ne[4];
            uint32_t nd = 0;
            for (const cJSON *e = cJSON_GetObjectItem(t, "ne")->child; e; e = e->next)
                ne[nd++] = (uint64_t)e->valuedouble;
            cr_assert_eq(ec_gguf_writer_add_tensor(w, cJSON_GetObjectItem(t, "name")->valuestring,
                                                   ty, nd, ne, &d),
                         EC_OK, "%s", d.msg);
        }
        cr_assert_eq(ec_gguf_writer_begin_data(w, &d), EC_OK);
        static uint8_t zeros[1 << 16];
        for (const cJSON *t = tensors->child; t; t = t->next) {
            uint64_t nb = (uint64_t)cJSON_GetObjectItem(t, "n_bytes")->valuedouble;
            for (uint64_t o = 0; o < nb; o += sizeof zeros)
                cr_assert_eq(ec_gguf_writer_write(
                                 w, zeros, nb - o < sizeof zeros ? nb - o : sizeof zeros, &d),
                             EC_OK, "%s", d.msg);
        }
        cr_assert_eq(ec_gguf_writer_commit(w, &d), EC_OK, "%s", d.msg);
        ec_gguf_writer_free(w);
        struct ec_gguf g;
        cr_assert_eq(ec_gguf_open(&g, path, &d), EC_OK, "%s", d.msg);
        uint64_t i = 0;
        for (const cJSON *t = tensors->child; t; t = t->next, i++)
            cr_assert_eq(g.tensors[i].offset,
                         (uint64_t)cJSON_GetObjectItem(t, "offset")->valuedouble, "%s %s",
                         variants[v], g.tensors[i].name);
        cr_assert_eq(g.file.size_bytes - g.data_offset, (uint64_t)(size - data_off), "%s",
                     variants[v]);
        ec_gguf_close(&g);
    }
    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
    cJSON_Delete(root);
    free(text);
    free(jp);
}
