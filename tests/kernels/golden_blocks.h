/* tests/kernels/golden_blocks.h: a minimal safetensors reader for the golden
 * quantization blocks (test-local; the library's reader lives in formats/).
 *
 * Reads the whole file, parses the JSON header with cJSON and hands out
 * pointers into the data section by tensor name. Only what the kernel tests
 * need: dtype string, shape, bytes.
 */
#ifndef EDGEC_TESTS_GOLDEN_BLOCKS_H
#define EDGEC_TESTS_GOLDEN_BLOCKS_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct golden_file {
    uint8_t *bytes;    /* whole file */
    size_t size;       /* file size in bytes */
    size_t data_start; /* 8 + header length */
    cJSON *header;     /* parsed header object */
};

struct golden_tensor {
    const char *dtype; /* "F32", "U8", ... (borrowed from the header) */
    int ndim;
    int64_t shape[4]; /* safetensors order: outermost first */
    const uint8_t *data;
    size_t n_bytes;
};

static inline void golden_close(struct golden_file *g)
{
    cJSON_Delete(g->header);
    free(g->bytes);
    memset(g, 0, sizeof *g);
}

/* Returns 0 on success, -1 with a message in err on failure. */
static inline int golden_open(struct golden_file *g, const char *path, char *err, size_t err_len)
{
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "%s: cannot open", path);
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0)
        goto fail_close;
    long sz = ftell(f);
    if (sz < 8 || fseek(f, 0, SEEK_SET) != 0)
        goto fail_close;
    g->bytes = malloc((size_t)sz);
    if (!g->bytes || fread(g->bytes, 1, (size_t)sz, f) != (size_t)sz)
        goto fail_close;
    fclose(f);
    g->size = (size_t)sz;
    uint64_t hlen = 0;
    for (int k = 0; k < 8; k++)
        hlen |= (uint64_t)g->bytes[k] << (8 * k);
    if (hlen > g->size - 8) {
        snprintf(err, err_len, "%s: header length %llu past the end", path,
                 (unsigned long long)hlen);
        goto fail;
    }
    g->data_start = 8 + (size_t)hlen;
    g->header = cJSON_ParseWithLength((const char *)g->bytes + 8, (size_t)hlen);
    if (!cJSON_IsObject(g->header)) {
        snprintf(err, err_len, "%s: header is not a JSON object", path);
        goto fail;
    }
    return 0;
fail_close:
    fclose(f);
    snprintf(err, err_len, "%s: read failed", path);
fail:
    golden_close(g);
    return -1;
}

/* 0 when found and well-formed, -1 otherwise. */
static inline int golden_get(const struct golden_file *g, const char *name, struct golden_tensor *t)
{
    memset(t, 0, sizeof *t);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(g->header, name);
    if (!cJSON_IsObject(e))
        return -1;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) ||
        cJSON_GetArraySize(off) != 2 || cJSON_GetArraySize(sh) > 4)
        return -1;
    t->dtype = dt->valuestring;
    t->ndim = cJSON_GetArraySize(sh);
    for (int k = 0; k < t->ndim; k++)
        t->shape[k] = (int64_t)cJSON_GetArrayItem(sh, k)->valuedouble;
    double b = cJSON_GetArrayItem(off, 0)->valuedouble;
    double e2 = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (b < 0 || e2 < b || (size_t)e2 > g->size - g->data_start)
        return -1;
    t->data = g->bytes + g->data_start + (size_t)b;
    t->n_bytes = (size_t)(e2 - b);
    return 0;
}

#endif
