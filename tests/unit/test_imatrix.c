/* Legacy imatrix .dat reader/writer against llama-imatrix's files. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "edgec/imatrix.h"
#include "edgec/io.h"
#include "edgec/sha256.h"

static cJSON *load_json(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_read_file(path, 64u << 20, &text, &len, &d), EC_OK, "%s", d.msg);
    cJSON *j = cJSON_ParseWithLength(text, len);
    cr_assert_not_null(j);
    free(text);
    return j;
}

static void check_model(const char *model)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/quantize/%s.json", model);
    char *jpath = ec_test_shared(rel);
    if (!jpath)
        return;
    snprintf(rel, sizeof rel, "golden/quantize/%s.imatrix.dat", model);
    char *dpath = ec_test_shared(rel);
    cJSON *j = load_json(jpath);
    const cJSON *g = cJSON_GetObjectItem(j, "imatrix");

    struct ec_imatrix im;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_imatrix_load(&im, dpath, &d), EC_OK, "%s", d.msg);
    cr_assert_eq((int)im.n, cJSON_GetObjectItem(g, "n_entries")->valueint);
    cr_assert(im.has_trailer);
    cr_assert_eq(im.last_call, cJSON_GetObjectItem(g, "last_call")->valueint);
    cr_assert_str_eq(im.dataset, cJSON_GetObjectItem(g, "dataset_string")->valuestring);
    const cJSON *ents = cJSON_GetObjectItem(g, "entries");
    cr_assert_eq((size_t)cJSON_GetArraySize(ents), im.n);
    for (size_t i = 0; i < im.n; i++) {
        const cJSON *ge = cJSON_GetArrayItem(ents, (int)i);
        const char *name = cJSON_GetObjectItem(ge, "name")->valuestring;
        const struct ec_imatrix_entry *e = ec_imatrix_find(&im, name);
        cr_assert_not_null(e, "%s: no entry '%s'", model, name);
        cr_assert_eq(e, &im.entries[i], "file order kept");
        cr_assert_eq(e->ncall, cJSON_GetObjectItem(ge, "ncall")->valueint);
        cr_assert_eq((int)e->nval, cJSON_GetObjectItem(ge, "nval")->valueint);
        char hex[65];
        ec_sha256_hex(e->values, (size_t)e->nval * 4, hex);
        cr_assert_str_eq(hex, cJSON_GetObjectItem(ge, "sha256_values")->valuestring, "%s '%s'",
                         model, name);
        /* the weights llama-quantize uses: values / ncall */
        float *w = malloc(e->nval * sizeof *w);
        ec_imatrix_entry_weights(e, w);
        const cJSON *first4 = cJSON_GetObjectItem(ge, "first4");
        for (int k = 0; k < 4 && k < (int)e->nval; k++) {
            float stored = (float)cJSON_GetArrayItem(first4, k)->valuedouble;
            cr_assert_eq(e->values[k], stored);
            cr_assert_eq(w[k], stored / (float)e->ncall);
        }
        free(w);
    }
    cr_assert_null(ec_imatrix_find(&im, "token_embd.weight"));

    /* writing it back gives the same bytes */
    char *tmp = ec_test_tmpdir();
    char out[4096];
    snprintf(out, sizeof out, "%s/copy.dat", tmp);
    cr_assert_eq(ec_imatrix_save(&im, out, &d), EC_OK, "%s", d.msg);
    char *bytes = NULL;
    size_t n = 0;
    cr_assert_eq(ec_read_file(out, 1u << 26, &bytes, &n, &d), EC_OK);
    char hex[65];
    ec_sha256_hex(bytes, n, hex);
    cr_assert_str_eq(hex, cJSON_GetObjectItem(g, "dat_sha256")->valuestring);
    cr_assert_eq((double)n, cJSON_GetObjectItem(g, "dat_bytes")->valuedouble);
    free(bytes);
    remove(out);
    rmdir(tmp);
    free(tmp);

    ec_imatrix_release(&im);
    cJSON_Delete(j);
    free(jpath);
    free(dpath);
}

Test(imatrix, golden_stories260K_entries_match_llama_imatrix)
{
    check_model("stories260K");
}

Test(imatrix, golden_stories_student_256_entries_match_llama_imatrix)
{
    check_model("stories-student-256");
}

/* A small valid file: 2 entries + trailer. */
static size_t make_file(uint8_t *b)
{
    size_t o = 0;
#define PUT32(v)                                                                                  \
    do {                                                                                          \
        int32_t x_ = (v);                                                                         \
        memcpy(b + o, &x_, 4);                                                                    \
        o += 4;                                                                                   \
    } while (0)
    PUT32(2);
    PUT32(5);
    memcpy(b + o, "a.one", 5);
    o += 5;
    PUT32(4);
    PUT32(3);
    for (int i = 0; i < 3; i++) {
        float f = (float)(i + 1) * 4.0f;
        memcpy(b + o, &f, 4);
        o += 4;
    }
    PUT32(3);
    memcpy(b + o, "two", 3);
    o += 3;
    PUT32(0);
    PUT32(1);
    float f = 7.0f;
    memcpy(b + o, &f, 4);
    o += 4;
    PUT32(10);
    PUT32(4);
    memcpy(b + o, "data", 4);
    o += 4;
#undef PUT32
    return o;
}

Test(imatrix, every_truncation_is_a_format_error_naming_an_offset)
{
    uint8_t b[256];
    size_t n = make_file(b);
    struct ec_imatrix im;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_imatrix_parse(&im, b, n, "t.dat", &d), EC_OK, "%s", d.msg);
    cr_assert_eq(im.n, 2);
    cr_assert_eq(im.last_call, 10);
    cr_assert_str_eq(im.dataset, "data");
    float w[3];
    ec_imatrix_entry_weights(&im.entries[0], w);
    cr_assert_eq(w[2], 3.0f);
    ec_imatrix_entry_weights(&im.entries[1], w); /* ncall 0: unchanged */
    cr_assert_eq(w[0], 7.0f);
    ec_imatrix_release(&im);

    /* the trailer is optional: a file cut exactly after the entries is fine */
    size_t entries_end = n - 12;
    for (size_t cut = 0; cut < n; cut++) {
        ec_diag_clear(&d);
        enum ec_status st = ec_imatrix_parse(&im, b, cut, "t.dat", &d);
        if (cut == entries_end) {
            cr_assert_eq(st, EC_OK, "%s", d.msg);
            cr_assert_not(im.has_trailer);
            ec_imatrix_release(&im);
            continue;
        }
        cr_assert_eq(st, EC_ERR_FORMAT, "cut at %zu", cut);
        cr_assert(strstr(d.msg, "t.dat: ") == d.msg, "%s", d.msg);
        cr_assert(strstr(d.msg, "byte"), "%s", d.msg);
        cr_assert_eq(im.n, 0);
    }
}

Test(imatrix, bad_counts_and_values_are_refused)
{
    uint8_t b[256];
    size_t n = make_file(b);
    struct ec_imatrix im;
    struct ec_diag d;

    uint8_t c[256];
    memcpy(c, b, n);
    int32_t big = 0x7fffffff;
    memcpy(c, &big, 4); /* entry count */
    ec_diag_clear(&d);
    cr_assert_eq(ec_imatrix_parse(&im, c, n, "t.dat", &d), EC_ERR_FORMAT);
    cr_assert(strstr(d.msg, "entry count"), "%s", d.msg);

    memcpy(c, b, n);
    memcpy(c + 4 + 4 + 5 + 4, &big, 4); /* nval of entry 0 */
    ec_diag_clear(&d);
    cr_assert_eq(ec_imatrix_parse(&im, c, n, "t.dat", &d), EC_ERR_FORMAT);
    cr_assert(strstr(d.msg, "entry 0 ('a.one')"), "%s", d.msg);

    memcpy(c, b, n);
    int32_t neg = -1;
    memcpy(c + 4, &neg, 4); /* name length */
    ec_diag_clear(&d);
    cr_assert_eq(ec_imatrix_parse(&im, c, n, "t.dat", &d), EC_ERR_FORMAT);
    cr_assert(strstr(d.msg, "at byte 4"), "%s", d.msg);

    memcpy(c, b, n);
    float nanv = NAN;
    memcpy(c + 4 + 4 + 5 + 8 + 4, &nanv, 4); /* value 1 of entry 0 */
    ec_diag_clear(&d);
    cr_assert_eq(ec_imatrix_parse(&im, c, n, "t.dat", &d), EC_ERR_NUMERIC);
    cr_assert(strstr(d.msg, "value 1"), "%s", d.msg);

    memcpy(c, b, n);
    c[n] = 'x'; /* junk after the dataset name */
    ec_diag_clear(&d);
    cr_assert_eq(ec_imatrix_parse(&im, c, n + 1, "t.dat", &d), EC_ERR_FORMAT);

    ec_diag_clear(&d);
    cr_assert_eq(ec_imatrix_load(&im, "/nonexistent/x.dat", &d), EC_ERR_IO);
}

Test(imatrix, repeated_name_replaces_the_earlier_entry)
{
    uint8_t c[256];
    size_t o = 0;
    int32_t v;
    v = 2, memcpy(c + o, &v, 4), o += 4;
    for (int k = 0; k < 2; k++) {
        v = 1, memcpy(c + o, &v, 4), o += 4;
        c[o++] = 'w';
        v = 1, memcpy(c + o, &v, 4), o += 4;
        v = 1, memcpy(c + o, &v, 4), o += 4;
        float f = (float)(k + 1);
        memcpy(c + o, &f, 4), o += 4;
    }
    struct ec_imatrix im;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_imatrix_parse(&im, c, o, "r.dat", &d), EC_OK, "%s", d.msg);
    cr_assert_eq(im.n, 1);
    cr_assert_eq(ec_imatrix_find(&im, "w")->values[0], 2.0f);
    ec_imatrix_release(&im);
}
