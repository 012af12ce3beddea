/* Malformed safetensors and GGUF inputs, generated at test time in a temp dir
 * from a valid file and byte-patched. Every one must fail with EC_ERR_FORMAT
 * (or EC_ERR_UNSUPPORTED for well-formed input we do not handle), with a
 * message naming the file and a byte offset, and without touching memory
 * outside the input (GGUF cases are also parsed from exactly-sized heap
 * copies, where ASan sees any over-read). */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "edgec/gguf.h"
#include "edgec/io.h"
#include "edgec/safetensors.h"

static void write_file(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(buf, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static void check_failure(enum ec_status s, const struct ec_diag *d, enum ec_status want,
                          const char *file_name, const char *case_name)
{
    cr_assert_eq(s, want, "%s: status %s, expected %s (%s)", case_name, ec_status_name(s),
                 ec_status_name(want), d->msg);
    cr_assert(strstr(d->msg, file_name) != NULL, "%s: message does not name the file: %s",
              case_name, d->msg);
    cr_assert(strstr(d->msg, "byte") != NULL, "%s: message has no byte offset: %s", case_name,
              d->msg);
    if (getenv("EDGEC_SHOW_MESSAGES")) /* for reviewing the wording */
        fprintf(stderr, "%-28s %s\n", case_name, d->msg);
}

/* ---------------------------------------------------------------- safetensors */

#define ST_VALID_HDR                                                                               \
    "{\"__metadata__\":{\"format\":\"pt\"},"                                                       \
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"                           \
    "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]}}"

/* A file: u64 header length, the header text, data_len bytes. */
static size_t build_st(uint8_t **out, const char *hdr, size_t data_len)
{
    size_t hn = strlen(hdr), n = 8 + hn + data_len;
    uint8_t *b = calloc(1, n);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    memcpy(b + 8, hdr, hn);
    for (size_t i = 0; i < data_len; i++)
        b[8 + hn + i] = (uint8_t)(i * 7 + 1);
    *out = b;
    return n;
}

static enum ec_status open_st(const char *path, struct ec_diag *d)
{
    struct ec_safetensors st;
    ec_diag_clear(d);
    enum ec_status s = ec_safetensors_open(&st, path, d);
    if (s == EC_OK)
        ec_safetensors_close(&st);
    return s;
}

struct st_case {
    const char *name;
    const char *hdr;
    size_t data_len;
    enum ec_status want;
};

static const struct st_case st_cases[] = {
    {"invalid_json", "{\"a\":{\"dtype\":", 0, EC_ERR_FORMAT},
    {"non_object_header", "[1,2,3]", 0, EC_ERR_FORMAT},
    {"dtype_unknown", "{\"a\":{\"dtype\":\"X32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     EC_ERR_UNSUPPORTED},
    {"dtype_not_string", "{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     EC_ERR_FORMAT},
    {"shape_missing", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, EC_ERR_FORMAT},
    {"shape_negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
     EC_ERR_FORMAT},
    {"shape_non_integer", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
     EC_ERR_FORMAT},
    {"shape_string", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
     EC_ERR_FORMAT},
    {"shape_too_many_dims",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
     EC_ERR_UNSUPPORTED},
    {"shape_product_overflow",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
     "\"data_offsets\":[0,8]}}",
     8, EC_ERR_FORMAT},
    {"data_offsets_reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
     EC_ERR_FORMAT},
    {"data_offsets_out_of_range",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8, EC_ERR_FORMAT},
    {"data_offsets_three_values",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, EC_ERR_FORMAT},
    {"data_offsets_overlap",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
     "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[16,24]}}",
     24, EC_ERR_FORMAT},
    {"data_offsets_gap",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
     "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[28,36]}}",
     36, EC_ERR_FORMAT},
    {"data_not_at_start", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
     EC_ERR_FORMAT},
    {"trailing_data_bytes", ST_VALID_HDR, 40, EC_ERR_FORMAT},
    {"byte_size_mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}",
     20, EC_ERR_FORMAT},
    {"duplicate_names",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
     16, EC_ERR_FORMAT},
    {"bad_utf8_name", "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     EC_ERR_FORMAT},
    {"overlong_utf8_name",
     "{\"a\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, EC_ERR_FORMAT},
    {"metadata_non_string",
     "{\"__metadata__\":{\"format\":5},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
     "\"data_offsets\":[0,8]}}",
     8, EC_ERR_FORMAT},
    {"metadata_not_object",
     "{\"__metadata__\":[\"x\"],\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     EC_ERR_FORMAT},
    {"entry_not_object", "{\"a\":5}", 0, EC_ERR_FORMAT},
    {"garbage_after_json", ST_VALID_HDR "  x", 32, EC_ERR_FORMAT},
    {"offset_beyond_2_53", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}",
     8, EC_ERR_FORMAT},
};

Test(malformed, safetensors_header_cases_fail_cleanly)
{
    char *dir = ec_test_tmpdir();
    /* the base is valid */
    uint8_t *buf;
    size_t n = build_st(&buf, ST_VALID_HDR, 32);
    char *path = ec_path_join(dir, "valid.safetensors");
    write_file(path, buf, n);
    struct ec_diag d = {0};
    cr_assert_eq(open_st(path, &d), EC_OK, "%s", d.msg);
    unlink(path);
    free(path);
    free(buf);

    for (size_t i = 0; i < sizeof st_cases / sizeof st_cases[0]; i++) {
        const struct st_case *c = &st_cases[i];
        char fname[128];
        snprintf(fname, sizeof fname, "%s.safetensors", c->name);
        path = ec_path_join(dir, fname);
        n = build_st(&buf, c->hdr, c->data_len);
        write_file(path, buf, n);
        check_failure(open_st(path, &d), &d, c->want, fname, c->name);
        unlink(path);
        free(path);
        free(buf);
    }
    rmdir(dir);
    free(dir);
}

static void patch_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

Test(malformed, safetensors_header_length_cases_fail_cleanly)
{
    char *dir = ec_test_tmpdir();
    uint8_t *buf;
    size_t n = build_st(&buf, ST_VALID_HDR, 32);
    const struct {
        const char *name;
        uint64_t len;
    } cases[] = {
        {"header_len_past_eof", n},      {"header_len_one_past_eof", n - 8 + 1},
        {"header_len_huge", 1ull << 62}, {"header_len_over_limit", EC_ST_MAX_HEADER_BYTES + 1ull},
        {"header_len_too_small", 1},     {"header_len_zero", 0},
    };
    struct ec_diag d = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char fname[128];
        snprintf(fname, sizeof fname, "%s.safetensors", cases[i].name);
        char *path = ec_path_join(dir, fname);
        uint8_t *b = malloc(n);
        memcpy(b, buf, n);
        patch_u64(b, cases[i].len);
        write_file(path, b, n);
        check_failure(open_st(path, &d), &d, EC_ERR_FORMAT, fname, cases[i].name);
        unlink(path);
        free(path);
        free(b);
    }
    free(buf);
    rmdir(dir);
    free(dir);
}

Test(malformed, safetensors_truncated_at_every_byte_fails_cleanly)
{
    char *dir = ec_test_tmpdir();
    uint8_t *buf;
    size_t n = build_st(&buf, ST_VALID_HDR, 32);
    char *path = ec_path_join(dir, "truncated.safetensors");
    struct ec_diag d = {0};
    for (size_t k = 0; k < n; k++) {
        write_file(path, buf, k);
        char cname[64];
        snprintf(cname, sizeof cname, "truncated at %zu", k);
        check_failure(open_st(path, &d), &d, EC_ERR_FORMAT, "truncated.safetensors", cname);
    }
    write_file(path, buf, n);
    cr_assert_eq(open_st(path, &d), EC_OK, "%s", d.msg);
    unlink(path);
    free(path);
    free(buf);
    rmdir(dir);
    free(dir);
}

/* Sharded checkpoints: two valid shards, then a broken index each time. */
Test(malformed, safetensors_index_inconsistencies_fail_cleanly)
{
    char *dir = ec_test_tmpdir();
    const char *shard_hdr[2] = {
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
    };
    const char *shard_name[2] = {"s1.safetensors", "s2.safetensors"};
    char *shard_path[2];
    for (int i = 0; i < 2; i++) {
        uint8_t *buf;
        size_t n = build_st(&buf, shard_hdr[i], 8);
        shard_path[i] = ec_path_join(dir, shard_name[i]);
        write_file(shard_path[i], buf, n);
        free(buf);
    }
    const struct {
        const char *name;
        const char *json;
        enum ec_status want;
    } cases[] = {
        {"valid", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}", EC_OK},
        {"missing_shard", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s9.safetensors\"}}",
         EC_ERR_FORMAT},
        {"wrong_shard", "{\"weight_map\":{\"a\":\"s2.safetensors\",\"b\":\"s1.safetensors\"}}",
         EC_ERR_FORMAT},
        {"tensor_not_listed",
         "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}", EC_ERR_FORMAT},
        {"extra_tensor_listed",
         "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\",\"c\":\"s2."
         "safetensors\"}}",
         EC_ERR_FORMAT},
        {"listed_twice",
         "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\",\"a\":\"s1."
         "safetensors\"}}",
         EC_ERR_FORMAT},
        {"shard_outside_folder", "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}", EC_ERR_FORMAT},
        {"weight_map_missing", "{\"metadata\":{}}", EC_ERR_FORMAT},
        {"index_invalid_json", "{\"weight_map\":{\"a\":", EC_ERR_FORMAT},
    };
    char *idx = ec_path_join(dir, "model.safetensors.index.json");
    struct ec_diag d = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(idx, cases[i].json, strlen(cases[i].json));
        enum ec_status s = open_st(dir, &d);
        if (cases[i].want == EC_OK)
            cr_assert_eq(s, EC_OK, "%s", d.msg);
        else
            check_failure(s, &d, cases[i].want, "model.safetensors.index.json", cases[i].name);
    }
    unlink(idx);
    free(idx);
    for (int i = 0; i < 2; i++) {
        unlink(shard_path[i]);
        free(shard_path[i]);
    }
    rmdir(dir);
    free(dir);
}

/* ---------------------------------------------------------------- GGUF */

struct gbuf {
    uint8_t *p;
    size_t n, cap;
};

static void gb_put(struct gbuf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void gb_u(struct gbuf *b, uint64_t v, int bytes)
{
    uint8_t t[8];
    for (int i = 0; i < bytes; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    gb_put(b, t, (size_t)bytes);
}

static void gb_str(struct gbuf *b, const char *s)
{
    gb_u(b, strlen(s), 8);
    gb_put(b, s, strlen(s));
}

/* Offsets of the fields the cases patch. */
struct gg_layout {
    size_t version, n_tensors, n_kv;
    size_t kv0_key_len, kv0_str_len;
    size_t kv1_type, kv1_val;
    size_t kv2_key, kv2_elem_type, kv2_count;
    size_t kv3_key, kv3_type, kv3_val;
    size_t t0_ndims, t0_ne0, t0_ne1, t0_type;
    size_t t1_name, t1_ne0, t1_type, t1_offset;
};

/* Valid GGUF: 4 kvs (string, general.alignment = 32, u32 array, bool), an F32
 * [8,2] tensor at 0 and a Q8_0 [32] tensor at 64, data padded to 32. */
static struct gbuf build_gguf(struct gg_layout *L)
{
    struct gbuf b = {0};
    gb_put(&b, "GGUF", 4);
    L->version = b.n;
    gb_u(&b, 3, 4);
    L->n_tensors = b.n;
    gb_u(&b, 2, 8);
    L->n_kv = b.n;
    gb_u(&b, 4, 8);
    L->kv0_key_len = b.n;
    gb_str(&b, "general.architecture");
    gb_u(&b, EC_GGUF_STRING, 4);
    L->kv0_str_len = b.n;
    gb_str(&b, "llama");
    gb_str(&b, "general.alignment");
    L->kv1_type = b.n;
    gb_u(&b, EC_GGUF_U32, 4);
    L->kv1_val = b.n;
    gb_u(&b, 32, 4);
    L->kv2_key = b.n + 8;
    gb_str(&b, "arr1");
    gb_u(&b, EC_GGUF_ARRAY, 4);
    L->kv2_elem_type = b.n;
    gb_u(&b, EC_GGUF_U32, 4);
    L->kv2_count = b.n;
    gb_u(&b, 3, 8);
    for (int i = 1; i <= 3; i++)
        gb_u(&b, (uint64_t)i, 4);
    L->kv3_key = b.n + 8;
    gb_str(&b, "flag");
    L->kv3_type = b.n;
    gb_u(&b, EC_GGUF_BOOL, 4);
    L->kv3_val = b.n;
    gb_u(&b, 1, 1);
    gb_str(&b, "t0");
    L->t0_ndims = b.n;
    gb_u(&b, 2, 4);
    L->t0_ne0 = b.n;
    gb_u(&b, 8, 8);
    L->t0_ne1 = b.n;
    gb_u(&b, 2, 8);
    L->t0_type = b.n;
    gb_u(&b, EC_F32, 4);
    gb_u(&b, 0, 8);
    L->t1_name = b.n + 8;
    gb_str(&b, "t1");
    gb_u(&b, 1, 4);
    L->t1_ne0 = b.n;
    gb_u(&b, 32, 8);
    L->t1_type = b.n;
    gb_u(&b, EC_Q8_0, 4);
    L->t1_offset = b.n;
    gb_u(&b, 64, 8);
    while (b.n % 32)
        gb_u(&b, 0, 1);
    for (int i = 0; i < 64 + 34; i++)
        gb_u(&b, (uint64_t)(i * 13 + 5), 1);
    while (b.n % 32)
        gb_u(&b, 0, 1);
    return b;
}

/* Parse from an exactly-sized heap copy, and open from a file. */
static void gg_expect(const char *dir, const char *case_name, const uint8_t *buf, size_t n,
                      enum ec_status want)
{
    char fname[128];
    snprintf(fname, sizeof fname, "%s.gguf", case_name);
    struct ec_diag d = {0};
    struct ec_gguf g;
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, buf, n);
    enum ec_status s = ec_gguf_parse(&g, copy, n, fname, &d);
    if (want == EC_OK) {
        cr_assert_eq(s, EC_OK, "%s: %s", case_name, d.msg);
        ec_gguf_close(&g);
    } else {
        check_failure(s, &d, want, fname, case_name);
    }
    free(copy);
    if (!dir)
        return;
    char *path = ec_path_join(dir, fname);
    write_file(path, buf, n);
    ec_diag_clear(&d);
    s = ec_gguf_open(&g, path, &d);
    if (want == EC_OK) {
        cr_assert_eq(s, EC_OK, "%s: %s", case_name, d.msg);
        ec_gguf_close(&g);
    } else {
        check_failure(s, &d, want, fname, case_name);
    }
    unlink(path);
    free(path);
}

static void pu32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

enum gg_kind { P8, P32, P64 };

Test(malformed, gguf_patched_cases_fail_cleanly)
{
    struct gg_layout L;
    struct gbuf base = build_gguf(&L);
    char *dir = ec_test_tmpdir();
    gg_expect(dir, "valid", base.p, base.n, EC_OK);
    const struct {
        const char *name;
        size_t off;
        enum gg_kind kind;
        uint64_t v;
        enum ec_status want;
    } cases[] = {
        {"bad_magic", 0, P8, 'X', EC_ERR_FORMAT},
        {"version_1", L.version, P32, 1, EC_ERR_FORMAT},
        {"version_99", L.version, P32, 99, EC_ERR_FORMAT},
        {"version_big_endian", L.version, P32, 0x03000000u, EC_ERR_FORMAT},
        {"n_tensors_huge", L.n_tensors, P64, 1ull << 60, EC_ERR_FORMAT},
        {"n_kv_huge", L.n_kv, P64, 1ull << 60, EC_ERR_FORMAT},
        {"n_kv_max", L.n_kv, P64, UINT64_MAX, EC_ERR_FORMAT},
        {"key_len_max", L.kv0_key_len, P64, UINT64_MAX, EC_ERR_FORMAT},
        {"string_len_past_eof", L.kv0_str_len, P64, 1ull << 40, EC_ERR_FORMAT},
        {"key_with_nul", L.kv2_key, P8, 0, EC_ERR_FORMAT},
        {"array_count_huge", L.kv2_count, P64, 1ull << 61, EC_ERR_FORMAT},
        {"array_elem_type_unknown", L.kv2_elem_type, P32, 77, EC_ERR_FORMAT},
        {"array_of_arrays", L.kv2_elem_type, P32, EC_GGUF_ARRAY, EC_ERR_UNSUPPORTED},
        {"kv_type_unknown", L.kv3_type, P32, 13, EC_ERR_FORMAT},
        {"bool_value_2", L.kv3_val, P8, 2, EC_ERR_FORMAT},
        {"duplicate_key", L.kv3_key, P32, 0x31727261u /* "arr1" */, EC_ERR_FORMAT},
        {"alignment_0", L.kv1_val, P32, 0, EC_ERR_FORMAT},
        {"alignment_3", L.kv1_val, P32, 3, EC_ERR_FORMAT},
        {"alignment_not_u32", L.kv1_type, P32, EC_GGUF_I32, EC_ERR_FORMAT},
        {"tensor_type_retired_4", L.t0_type, P32, 4, EC_ERR_FORMAT},
        {"tensor_type_unknown_99", L.t0_type, P32, 99, EC_ERR_FORMAT},
        {"tensor_type_safetensors_only", L.t0_type, P32, EC_BOOL, EC_ERR_FORMAT},
        {"n_dims_0", L.t0_ndims, P32, 0, EC_ERR_FORMAT},
        {"n_dims_5", L.t0_ndims, P32, 5, EC_ERR_FORMAT},
        {"ne_0", L.t0_ne1, P64, 0, EC_ERR_FORMAT},
        {"ne_product_overflow", L.t0_ne0, P64, 1ull << 62, EC_ERR_FORMAT},
        {"ne_huge_past_eof", L.t0_ne1, P64, 1ull << 40, EC_ERR_FORMAT},
        {"ne0_not_block_multiple", L.t1_ne0, P64, 33, EC_ERR_FORMAT},
        {"offset_not_aligned", L.t1_offset, P64, 65, EC_ERR_FORMAT},
        {"offset_past_eof", L.t1_offset, P64, 1ull << 20, EC_ERR_FORMAT},
        {"offset_max", L.t1_offset, P64, UINT64_MAX - 31, EC_ERR_FORMAT},
        {"tensor_overlap", L.t1_offset, P64, 32, EC_ERR_FORMAT},
        {"duplicate_tensor_name", L.t1_name + 1, P8, '0', EC_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *b = malloc(base.n);
        memcpy(b, base.p, base.n);
        if (cases[i].kind == P8)
            b[cases[i].off] = (uint8_t)cases[i].v;
        else if (cases[i].kind == P32)
            pu32(b + cases[i].off, (uint32_t)cases[i].v);
        else
            patch_u64(b + cases[i].off, cases[i].v);
        gg_expect(dir, cases[i].name, b, base.n, cases[i].want);
        free(b);
    }
    free(base.p);
    rmdir(dir);
    free(dir);
}

Test(malformed, gguf_truncated_at_every_byte_fails_cleanly)
{
    struct gg_layout L;
    struct gbuf base = build_gguf(&L);
    /* The padding after the last tensor is not needed by the reader; cut
     * everywhere up to the end of the last tensor's bytes. */
    size_t data_end = base.n - 30; /* 98 data bytes padded to 128: 30 of padding */
    for (size_t k = 0; k < data_end; k++) {
        char cname[64];
        snprintf(cname, sizeof cname, "truncated_%zu", k);
        gg_expect(NULL, cname, base.p, k, EC_ERR_FORMAT);
    }
    gg_expect(NULL, "truncated_in_final_padding", base.p, data_end, EC_OK);
    free(base.p);
}

/* Every byte of a valid file set to 0x00, 0x80 and 0xff: whatever the status,
 * no crash, a message on failure, and on success every tensor inside the buffer. */
Test(malformed, gguf_every_byte_flipped_is_safe)
{
    struct gg_layout L;
    struct gbuf base = build_gguf(&L);
    const uint8_t vals[] = {0x00, 0x80, 0xff};
    int n_ok = 0, n_fail = 0;
    for (size_t i = 0; i < base.n; i++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            uint8_t *b = malloc(base.n);
            memcpy(b, base.p, base.n);
            b[i] = vals[v];
            struct ec_gguf g;
            struct ec_diag d = {0};
            enum ec_status s = ec_gguf_parse(&g, b, base.n, "flip.gguf", &d);
            if (s == EC_OK) {
                n_ok++;
                for (uint64_t t = 0; t < g.n_tensors; t++)
                    cr_assert(g.tensors[t].data >= b &&
                              g.tensors[t].data + g.tensors[t].n_bytes <= b + base.n);
                ec_gguf_close(&g);
            } else {
                n_fail++;
                cr_assert(s == EC_ERR_FORMAT || s == EC_ERR_UNSUPPORTED, "byte %zu: %s", i, d.msg);
                cr_assert(strstr(d.msg, "flip.gguf") && strstr(d.msg, "byte"), "%s", d.msg);
            }
            free(b);
        }
    }
    cr_assert(n_ok > 0 && n_fail > 0);
    free(base.p);
}

Test(malformed, safetensors_every_header_byte_flipped_is_safe)
{
    char *dir = ec_test_tmpdir();
    uint8_t *buf;
    size_t n = build_st(&buf, ST_VALID_HDR, 32);
    char *path = ec_path_join(dir, "flip.safetensors");
    const uint8_t vals[] = {0x00, '9', 0xff};
    int n_fail = 0;
    for (size_t i = 0; i < n - 32; i++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            uint8_t saved = buf[i];
            buf[i] = vals[v];
            write_file(path, buf, n);
            buf[i] = saved;
            struct ec_safetensors st;
            struct ec_diag d = {0};
            enum ec_status s = ec_safetensors_open(&st, path, &d);
            if (s == EC_OK) {
                for (size_t t = 0; t < st.n_tensors; t++)
                    cr_assert(st.tensors[t].file_offset + st.tensors[t].n_bytes <= n);
                ec_safetensors_close(&st);
            } else {
                n_fail++;
                cr_assert(s == EC_ERR_FORMAT || s == EC_ERR_UNSUPPORTED, "byte %zu: %s", i, d.msg);
                cr_assert(strstr(d.msg, "flip.safetensors") && strstr(d.msg, "byte"), "%s", d.msg);
            }
        }
    }
    cr_assert(n_fail > 0);
    unlink(path);
    free(path);
    free(buf);
    rmdir(dir);
    free(dir);
}
