/* GGUF reader (see edgec/gguf.h for the layout).
 *
 * Every count and length is checked against the bytes left in the file before
 * anything is allocated or read, with overflow-safe arithmetic, so a short or
 * hostile file fails fast with a message naming the file, the key or tensor,
 * and the byte offset. String values and array payloads are borrowed from the
 * buffer; keys and tensor names are copied NUL-terminated (a NUL inside one is
 * rejected, since the copy would silently shorten it). */
#include <stdlib.h>
#include <string.h>

#include "edgec/gguf.h"

#define GG_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GG_MIN_KV_BYTES 13u  /* u64 key length + u32 type + 1-byte value */
#define GG_MIN_TI_BYTES 32u  /* u64 name length + u32 n_dims + 1 x u64 + u32 type + u64 offset */

static const char *const gg_type_names[EC_GGUF_TYPE_COUNT] = {
    [EC_GGUF_U8] = "UINT8",    [EC_GGUF_I8] = "INT8",    [EC_GGUF_U16] = "UINT16",
    [EC_GGUF_I16] = "INT16",   [EC_GGUF_U32] = "UINT32", [EC_GGUF_I32] = "INT32",
    [EC_GGUF_F32] = "FLOAT32", [EC_GGUF_BOOL] = "BOOL",  [EC_GGUF_STRING] = "STRING",
    [EC_GGUF_ARRAY] = "ARRAY", [EC_GGUF_U64] = "UINT64", [EC_GGUF_I64] = "INT64",
    [EC_GGUF_F64] = "FLOAT64",
};

/* Bytes of a fixed-size value, 0 for STRING/ARRAY and unknown types. */
static const uint8_t gg_type_size[EC_GGUF_TYPE_COUNT] = {
    [EC_GGUF_U8] = 1,  [EC_GGUF_I8] = 1,  [EC_GGUF_U16] = 2, [EC_GGUF_I16] = 2,
    [EC_GGUF_U32] = 4, [EC_GGUF_I32] = 4, [EC_GGUF_F32] = 4, [EC_GGUF_BOOL] = 1,
    [EC_GGUF_U64] = 8, [EC_GGUF_I64] = 8, [EC_GGUF_F64] = 8,
};

const char *ec_gguf_type_name(enum ec_gguf_type t)
{
    if ((unsigned)t >= EC_GGUF_TYPE_COUNT)
        return "?";
    return gg_type_names[t];
}

/* Reading position over the buffer; `name` is the file name for messages. */
struct gg_cur {
    const uint8_t *buf;
    uint64_t n;
    uint64_t pos;
    const char *name;
};

static uint64_t gg_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t gg_left(const struct gg_cur *c)
{
    return c->n - c->pos;
}

/* `what` names the key/tensor context ("key 'x'") or is "" at top level. */
static enum ec_status gg_short(const struct gg_cur *c, const char *what, const char *field,
                               uint64_t need, struct ec_diag *d)
{
    return ec_fail(d, EC_ERR_FORMAT,
                   "%s: %s%sat byte %llu: %s needs %llu bytes but only %llu are left in the file",
                   c->name, what, *what ? " " : "", (unsigned long long)c->pos, field,
                   (unsigned long long)need, (unsigned long long)gg_left(c));
}

static enum ec_status gg_read_uint(struct gg_cur *c, int bytes, uint64_t *out, const char *what,
                                   const char *field, struct ec_diag *d)
{
    *out = 0;
    if (gg_left(c) < (uint64_t)bytes)
        return gg_short(c, what, field, (uint64_t)bytes, d);
    *out = gg_le(c->buf + c->pos, bytes);
    c->pos += (uint64_t)bytes;
    return EC_OK;
}

static enum ec_status gg_read_str(struct gg_cur *c, struct ec_gguf_str *s, const char *what,
                                  const char *field, struct ec_diag *d)
{
    uint64_t at = c->pos, len;
    enum ec_status st = gg_read_uint(c, 8, &len, what, field, d);
    if (st)
        return st;
    if (len > gg_left(c)) {
        c->pos = at;
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: %s%sat byte %llu: %s length %llu runs past the end of the file "
                       "(%llu bytes left)",
                       c->name, what, *what ? " " : "", (unsigned long long)at, field,
                       (unsigned long long)len, (unsigned long long)(gg_left(c) - 8));
    }
    s->len = len;
    s->data = (const char *)(c->buf + c->pos);
    c->pos += len;
    return EC_OK;
}

/* NUL-terminated copy of a key or tensor name. */
static enum ec_status gg_copy_name(const struct gg_cur *c, const struct ec_gguf_str *s, uint64_t at,
                                   const char *kind, char **out, struct ec_diag *d)
{
    if (s->len == 0)
        return ec_fail(d, EC_ERR_FORMAT, "%s: %s at byte %llu: empty name", c->name, kind,
                       (unsigned long long)at);
    if (memchr(s->data, '\0', (size_t)s->len))
        return ec_fail(d, EC_ERR_FORMAT, "%s: %s at byte %llu: name contains a NUL byte", c->name,
                       kind, (unsigned long long)at);
    *out = strndup(s->data, (size_t)s->len);
    if (!*out)
        return ec_fail(d, EC_ERR_NOMEM, "%s: %s at byte %llu: out of memory", c->name, kind,
                       (unsigned long long)at);
    return EC_OK;
}

/* One scalar of type t into kv's union (the buffer holds enough bytes). */
static enum ec_status gg_scalar(struct gg_cur *c, enum ec_gguf_type t, struct ec_gguf_kv *kv,
                                const char *what, struct ec_diag *d)
{
    uint64_t at = c->pos, raw;
    enum ec_status s = gg_read_uint(c, gg_type_size[t], &raw, what, "value", d);
    if (s)
        return s;
    switch (t) {
    case EC_GGUF_U8:
    case EC_GGUF_U16:
    case EC_GGUF_U32:
    case EC_GGUF_U64:
        kv->v.u64 = raw;
        break;
    case EC_GGUF_BOOL:
        if (raw > 1)
            return ec_fail(d, EC_ERR_FORMAT, "%s: %s at byte %llu: bool value %llu is not 0 or 1",
                           c->name, what, (unsigned long long)at, (unsigned long long)raw);
        kv->v.u64 = raw;
        break;
    case EC_GGUF_I8:
        kv->v.i64 = (int8_t)(uint8_t)raw;
        break;
    case EC_GGUF_I16:
        kv->v.i64 = (int16_t)(uint16_t)raw;
        break;
    case EC_GGUF_I32:
        kv->v.i64 = (int32_t)(uint32_t)raw;
        break;
    case EC_GGUF_I64: {
        int64_t v;
        memcpy(&v, &raw, 8);
        kv->v.i64 = v;
        break;
    }
    case EC_GGUF_F32: {
        uint32_t u = (uint32_t)raw;
        float f;
        memcpy(&f, &u, 4);
        kv->v.f64 = (double)f;
        break;
    }
    case EC_GGUF_F64:
        memcpy(&kv->v.f64, &raw, 8);
        break;
    default:
        return ec_fail(d, EC_ERR_INTERNAL, "%s: %s: not a scalar type", c->name, what);
    }
    return EC_OK;
}

static enum ec_status gg_array(struct gg_cur *c, struct ec_gguf_kv *kv, const char *what,
                               struct ec_diag *d)
{
    uint64_t at = c->pos, et, n;
    enum ec_status s = gg_read_uint(c, 4, &et, what, "array element type", d);
    if (s)
        return s;
    if (et >= EC_GGUF_TYPE_COUNT)
        return ec_fail(d, EC_ERR_FORMAT, "%s: %s at byte %llu: unknown array element type %llu",
                       c->name, what, (unsigned long long)at, (unsigned long long)et);
    if (et == EC_GGUF_ARRAY)
        return ec_fail(d, EC_ERR_UNSUPPORTED,
                       "%s: %s at byte %llu: arrays of arrays are not supported", c->name, what,
                       (unsigned long long)at);
    uint64_t at_n = c->pos;
    s = gg_read_uint(c, 8, &n, what, "array count", d);
    if (s)
        return s;
    kv->arr_type = (enum ec_gguf_type)et;
    kv->arr_n = n;
    kv->arr_data = c->buf + c->pos;
    uint64_t esz = et == EC_GGUF_STRING ? 8 : gg_type_size[et];
    if (n > gg_left(c) / esz)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: %s at byte %llu: array of %llu %s elements needs at least %llu bytes "
                       "per element but only %llu bytes are left",
                       c->name, what, (unsigned long long)at_n, (unsigned long long)n,
                       ec_gguf_type_name((enum ec_gguf_type)et), (unsigned long long)esz,
                       (unsigned long long)gg_left(c));
    uint64_t start = c->pos;
    if (et == EC_GGUF_STRING) {
        kv->arr_strs = calloc(n ? (size_t)n : 1, sizeof *kv->arr_strs);
        if (!kv->arr_strs)
            return ec_fail(d, EC_ERR_NOMEM, "%s: %s: out of memory for %llu strings", c->name, what,
                           (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++) {
            s = gg_read_str(c, &kv->arr_strs[i], what, "array string", d);
            if (s)
                return s;
        }
    } else {
        if (et == EC_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (c->buf[c->pos + i] > 1)
                    return ec_fail(d, EC_ERR_FORMAT,
                                   "%s: %s at byte %llu: bool element %llu is %u, not 0 or 1",
                                   c->name, what, (unsigned long long)(c->pos + i),
                                   (unsigned long long)i, c->buf[c->pos + i]);
        c->pos += n * esz;
    }
    kv->arr_bytes = c->pos - start;
    return EC_OK;
}

static enum ec_status gg_parse_kv(struct gg_cur *c, struct ec_gguf_kv *kv, struct ec_diag *d)
{
    kv->file_offset = c->pos;
    struct ec_gguf_str key;
    enum ec_status s = gg_read_str(c, &key, "", "key", d);
    if (s)
        return s;
    s = gg_copy_name(c, &key, kv->file_offset, "key", &kv->key, d);
    if (s)
        return s;
    char what[160];
    snprintf(what, sizeof what, "key '%.120s'", kv->key);
    uint64_t at = c->pos, t;
    s = gg_read_uint(c, 4, &t, what, "value type", d);
    if (s)
        return s;
    if (t >= EC_GGUF_TYPE_COUNT)
        return ec_fail(d, EC_ERR_FORMAT, "%s: %s at byte %llu: unknown value type %llu", c->name,
                       what, (unsigned long long)at, (unsigned long long)t);
    kv->type = (enum ec_gguf_type)t;
    if (t == EC_GGUF_STRING)
        return gg_read_str(c, &kv->v.str, what, "string value", d);
    if (t == EC_GGUF_ARRAY)
        return gg_array(c, kv, what, d);
    return gg_scalar(c, kv->type, kv, what, d);
}

static enum ec_status gg_parse_tensor(struct gg_cur *c, struct ec_gguf_tensor_info *ti,
                                      struct ec_diag *d)
{
    uint64_t at = c->pos, v;
    struct ec_gguf_str name;
    enum ec_status s = gg_read_str(c, &name, "", "tensor name", d);
    if (s)
        return s;
    s = gg_copy_name(c, &name, at, "tensor", &ti->name, d);
    if (s)
        return s;
    char what[160];
    snprintf(what, sizeof what, "tensor '%.120s'", ti->name);
    at = c->pos;
    s = gg_read_uint(c, 4, &v, what, "n_dims", d);
    if (s)
        return s;
    if (v < 1 || v > EC_GGUF_MAX_DIMS)
        return ec_fail(d, EC_ERR_FORMAT, "%s: %s at byte %llu: n_dims %llu is not in 1..%d",
                       c->name, what, (unsigned long long)at, (unsigned long long)v,
                       EC_GGUF_MAX_DIMS);
    ti->n_dims = (uint32_t)v;
    uint64_t n_elems = 1;
    for (uint32_t i = 0; i < EC_GGUF_MAX_DIMS; i++)
        ti->ne[i] = 1;
    for (uint32_t i = 0; i < ti->n_dims; i++) {
        at = c->pos;
        s = gg_read_uint(c, 8, &ti->ne[i], what, "ne", d);
        if (s)
            return s;
        if (ti->ne[i] == 0)
            return ec_fail(d, EC_ERR_FORMAT, "%s: %s at byte %llu: ne[%u] is 0", c->name, what,
                           (unsigned long long)at, i);
        if (ti->ne[i] > (uint64_t)INT64_MAX / n_elems)
            return ec_fail(d, EC_ERR_FORMAT,
                           "%s: %s at byte %llu: element count overflows at ne[%u] = %llu", c->name,
                           what, (unsigned long long)at, i, (unsigned long long)ti->ne[i]);
        n_elems *= ti->ne[i];
    }
    at = c->pos;
    s = gg_read_uint(c, 4, &v, what, "type", d);
    if (s)
        return s;
    const struct ec_dtype_info *info =
        v < EC_GGML_TYPE_COUNT ? ec_dtype_info((enum ec_dtype)v) : NULL;
    if (!info)
        return ec_fail(d, EC_ERR_FORMAT, "%s: %s at byte %llu: unknown tensor type %llu", c->name,
                       what, (unsigned long long)at, (unsigned long long)v);
    ti->type = (enum ec_dtype)v;
    if (ti->ne[0] % info->block_elems)
        return ec_fail(
            d, EC_ERR_FORMAT,
            "%s: %s at byte %llu: ne[0] = %llu is not a multiple of the %s block size %u", c->name,
            what, (unsigned long long)at, (unsigned long long)ti->ne[0], info->name,
            info->block_elems);
    if (!ec_dtype_tensor_bytes(ti->type, (int)ti->n_dims, ti->ne, &ti->n_bytes))
        return ec_fail(d, EC_ERR_FORMAT, "%s: %s at byte %llu: byte size overflows", c->name, what,
                       (unsigned long long)at);
    return gg_read_uint(c, 8, &ti->offset, what, "offset", d);
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* First name that appears twice (sorted copy), or NULL. */
static const char *gg_dup_name(const char **names, size_t n)
{
    qsort(names, n, sizeof *names, cmp_str_ptr);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return names[i];
    return NULL;
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const struct ec_gguf_tensor_info *x = *(const struct ec_gguf_tensor_info *const *)a;
    const struct ec_gguf_tensor_info *y = *(const struct ec_gguf_tensor_info *const *)b;
    return x->offset < y->offset ? -1 : (x->offset > y->offset);
}

static enum ec_status gg_check_unique(struct ec_gguf *g, const char *name, struct ec_diag *d)
{
    size_t n = (size_t)(g->n_kv > g->n_tensors ? g->n_kv : g->n_tensors);
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", name);
    enum ec_status s = EC_OK;
    for (uint64_t i = 0; i < g->n_kv; i++)
        names[i] = g->kv[i].key;
    const char *dup = gg_dup_name(names, (size_t)g->n_kv);
    if (dup) {
        const struct ec_gguf_kv *kv = ec_gguf_find_kv(g, dup);
        for (uint64_t i = g->n_kv; i-- > 0;)
            if (strcmp(g->kv[i].key, dup) == 0) {
                kv = &g->kv[i];
                break;
            }
        s = ec_fail(d, EC_ERR_FORMAT, "%s: key '%s' at byte %llu: duplicate key", name, dup,
                    (unsigned long long)kv->file_offset);
        goto out_names;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        names[i] = g->tensors[i].name;
    dup = gg_dup_name(names, (size_t)g->n_tensors);
    if (dup) {
        const struct ec_gguf_tensor_info *t = ec_gguf_find_tensor(g, dup);
        s = ec_fail(d, EC_ERR_FORMAT, "%s: tensor '%s' at byte %llu: duplicate tensor name", name,
                    dup, (unsigned long long)(g->data_offset + t->offset));
    }
out_names:
    free(names);
    return s;
}

static enum ec_status gg_parse(struct ec_gguf *g, const uint8_t *buf, uint64_t n, const char *name,
                               struct ec_diag *d)
{
    struct gg_cur c = {.buf = buf, .n = n, .pos = 0, .name = name};
    uint64_t v;
    enum ec_status s = gg_read_uint(&c, 4, &v, "", "magic", d);
    if (s)
        return s;
    if (v != GG_MAGIC)
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte 0: bad magic 0x%08llx (not a GGUF file)",
                       name, (unsigned long long)v);
    s = gg_read_uint(&c, 4, &v, "", "version", d);
    if (s)
        return s;
    if (v != 2 && v != 3)
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte 4: GGUF version %llu%s (2 and 3 are read)",
                       name, (unsigned long long)v,
                       (v == 0x02000000u || v == 0x03000000u) ? " (a big-endian file?)" : "");
    g->version = (uint32_t)v;
    if ((s = gg_read_uint(&c, 8, &g->n_tensors, "", "tensor count", d)) ||
        (s = gg_read_uint(&c, 8, &g->n_kv, "", "kv count", d)))
        return s;
    uint64_t rem = gg_left(&c);
    if (g->n_kv > rem / GG_MIN_KV_BYTES)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: at byte 16: kv count %llu cannot fit in the %llu bytes left", name,
                       (unsigned long long)g->n_kv, (unsigned long long)rem);
    if (g->n_tensors > rem / GG_MIN_TI_BYTES ||
        g->n_kv * GG_MIN_KV_BYTES > rem - g->n_tensors * GG_MIN_TI_BYTES)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: at byte 8: tensor count %llu (with %llu kvs) cannot fit in the %llu "
                       "bytes left",
                       name, (unsigned long long)g->n_tensors, (unsigned long long)g->n_kv,
                       (unsigned long long)rem);
    g->kv = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", name);

    for (uint64_t i = 0; i < g->n_kv; i++) {
        s = gg_parse_kv(&c, &g->kv[i], d);
        if (s)
            return s;
    }
    g->alignment = EC_GGUF_DEFAULT_ALIGNMENT;
    const struct ec_gguf_kv *al = ec_gguf_find_kv(g, "general.alignment");
    if (al) {
        if (al->type != EC_GGUF_U32)
            return ec_fail(d, EC_ERR_FORMAT,
                           "%s: key 'general.alignment' at byte %llu: type %s, expected UINT32",
                           name, (unsigned long long)al->file_offset, ec_gguf_type_name(al->type));
        if (al->v.u64 == 0 || (al->v.u64 & (al->v.u64 - 1)))
            return ec_fail(d, EC_ERR_FORMAT,
                           "%s: key 'general.alignment' at byte %llu: %llu is not a power of two",
                           name, (unsigned long long)al->file_offset,
                           (unsigned long long)al->v.u64);
        g->alignment = (uint32_t)al->v.u64;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        s = gg_parse_tensor(&c, &g->tensors[i], d);
        if (s)
            return s;
    }
    uint64_t a = g->alignment;
    uint64_t pad = (a - c.pos % a) % a;
    g->data_offset = c.pos + pad;
    if (g->n_tensors > 0 && pad > gg_left(&c))
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: at byte %llu: file ends inside the padding before the tensor data",
                       name, (unsigned long long)c.pos);
    s = gg_check_unique(g, name, d);
    if (s)
        return s;
    uint64_t data_bytes = g->data_offset <= n ? n - g->data_offset : 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct ec_gguf_tensor_info *t = &g->tensors[i];
        if (t->offset % a)
            return ec_fail(d, EC_ERR_FORMAT,
                           "%s: tensor '%s' at byte %llu: offset %llu is not a multiple of the "
                           "alignment %u",
                           name, t->name, (unsigned long long)(g->data_offset + t->offset),
                           (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_bytes || t->n_bytes > data_bytes - t->offset)
            return ec_fail(d, EC_ERR_FORMAT,
                           "%s: tensor '%s' at byte %llu: %llu data bytes at offset %llu run past "
                           "the end of the file (%llu bytes of data)",
                           name, t->name, (unsigned long long)(g->data_offset + t->offset),
                           (unsigned long long)t->n_bytes, (unsigned long long)t->offset,
                           (unsigned long long)data_bytes);
        t->data = buf + g->data_offset + t->offset;
    }
    if (g->n_tensors > 1) {
        const struct ec_gguf_tensor_info **by_off = malloc((size_t)g->n_tensors * sizeof *by_off);
        if (!by_off)
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", name);
        for (uint64_t i = 0; i < g->n_tensors; i++)
            by_off[i] = &g->tensors[i];
        qsort(by_off, (size_t)g->n_tensors, sizeof *by_off, cmp_tensor_offset);
        for (uint64_t i = 1; i < g->n_tensors && !s; i++)
            if (by_off[i - 1]->offset + by_off[i - 1]->n_bytes > by_off[i]->offset)
                s = ec_fail(
                    d, EC_ERR_FORMAT, "%s: tensor '%s' at byte %llu: data overlaps tensor '%s'",
                    name, by_off[i]->name, (unsigned long long)(g->data_offset + by_off[i]->offset),
                    by_off[i - 1]->name);
        free(by_off);
    }
    return s;
}

static void gg_free_parsed(struct ec_gguf *g)
{
    if (g->kv) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].key);
            free(g->kv[i].arr_strs);
        }
        free(g->kv);
    }
    if (g->tensors) {
        for (uint64_t i = 0; i < g->n_tensors; i++)
            free(g->tensors[i].name);
        free(g->tensors);
    }
    g->kv = NULL;
    g->tensors = NULL;
}

/* From memory, g->file holds only the name (path) and size: there is no
 * mapping to release (data stays NULL). */
enum ec_status ec_gguf_parse(struct ec_gguf *g, const uint8_t *buf, uint64_t n, const char *name,
                             struct ec_diag *d)
{
    memset(g, 0, sizeof *g);
    enum ec_status s = gg_parse(g, buf, n, name, d);
    if (!s) {
        g->file.path = strdup(name);
        g->file.size_bytes = n;
        if (!g->file.path)
            s = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", name);
    }
    if (s) {
        gg_free_parsed(g);
        memset(g, 0, sizeof *g);
    }
    return s;
}

enum ec_status ec_gguf_open(struct ec_gguf *g, const char *path, struct ec_diag *d)
{
    memset(g, 0, sizeof *g);
    struct ec_mapped_file mf;
    enum ec_status s = ec_mapped_file_open(&mf, path, d);
    if (s)
        return s;
    s = gg_parse(g, mf.data, mf.size_bytes, path, d);
    if (s) {
        gg_free_parsed(g);
        ec_mapped_file_close(&mf);
        memset(g, 0, sizeof *g);
        return s;
    }
    g->file = mf;
    return EC_OK;
}

void ec_gguf_close(struct ec_gguf *g)
{
    if (!g)
        return;
    gg_free_parsed(g);
    ec_mapped_file_close(&g->file);
    memset(g, 0, sizeof *g);
}

const struct ec_gguf_kv *ec_gguf_find_kv(const struct ec_gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0)
            return &g->kv[i];
    return NULL;
}

const struct ec_gguf_tensor_info *ec_gguf_find_tensor(const struct ec_gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && strcmp(g->tensors[i].name, name) == 0)
            return &g->tensors[i];
    return NULL;
}

bool ec_gguf_get_u64(const struct ec_gguf *g, const char *key, uint64_t *out)
{
    const struct ec_gguf_kv *kv = ec_gguf_find_kv(g, key);
    if (!kv)
        return false;
    switch (kv->type) {
    case EC_GGUF_U8:
    case EC_GGUF_U16:
    case EC_GGUF_U32:
    case EC_GGUF_U64:
        *out = kv->v.u64;
        return true;
    case EC_GGUF_I8:
    case EC_GGUF_I16:
    case EC_GGUF_I32:
    case EC_GGUF_I64:
        if (kv->v.i64 < 0)
            return false;
        *out = (uint64_t)kv->v.i64;
        return true;
    default:
        return false;
    }
}

bool ec_gguf_get_f64(const struct ec_gguf *g, const char *key, double *out)
{
    const struct ec_gguf_kv *kv = ec_gguf_find_kv(g, key);
    if (!kv || (kv->type != EC_GGUF_F32 && kv->type != EC_GGUF_F64))
        return false;
    *out = kv->v.f64;
    return true;
}

bool ec_gguf_get_bool(const struct ec_gguf *g, const char *key, bool *out)
{
    const struct ec_gguf_kv *kv = ec_gguf_find_kv(g, key);
    if (!kv || kv->type != EC_GGUF_BOOL)
        return false;
    *out = kv->v.u64 != 0;
    return true;
}

char *ec_gguf_get_str(const struct ec_gguf *g, const char *key)
{
    const struct ec_gguf_kv *kv = ec_gguf_find_kv(g, key);
    if (!kv || kv->type != EC_GGUF_STRING)
        return NULL;
    char *p = malloc((size_t)kv->v.str.len + 1);
    if (!p)
        return NULL;
    if (kv->v.str.len)
        memcpy(p, kv->v.str.data, (size_t)kv->v.str.len);
    p[kv->v.str.len] = '\0';
    return p;
}
