/* GGUF streaming writer (see edgec/gguf.h).
 *
 * Layout, byte for byte as gguf-py's GGUFWriter produces it: header (magic,
 * version 3, n_tensors, n_kv), the KVs in insertion order, the tensor infos,
 * zero padding to the alignment, then each tensor's data followed by zero
 * padding to the alignment (the last tensor too: llama-quantize and
 * convert_hf_to_gguf.py outputs all have sizes that are multiples of 32). The
 * alignment is `general.alignment` when added (UINT32, a power of two), else 32.
 *
 * KVs are kept serialized (type tag excluded) until begin_data; only the
 * declarations are held in memory, never tensor data. */
#include <stdlib.h>
#include <string.h>

#include "edgec/gguf.h"

struct gw_kv {
    char *key;
    enum ec_gguf_type type;
    uint8_t *val; /* serialized value as in the file (after the u32 type) */
    size_t val_bytes;
};

struct gw_tensor {
    char *name;
    enum ec_dtype type;
    uint32_t n_dims;
    uint64_t ne[EC_GGUF_MAX_DIMS];
    uint64_t n_bytes;
    uint64_t offset; /* assigned by begin_data */
};

struct ec_gguf_writer {
    struct ec_outfile out;
    struct gw_kv *kv;
    size_t n_kv, cap_kv;
    struct gw_tensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t alignment;
    bool header_done;
    size_t cur;        /* tensor receiving bytes */
    uint64_t cur_done; /* bytes of it written */
    uint64_t data_offset;
};

static const uint8_t gw_type_size[EC_GGUF_TYPE_COUNT] = {
    [EC_GGUF_U8] = 1,  [EC_GGUF_I8] = 1,  [EC_GGUF_U16] = 2, [EC_GGUF_I16] = 2,
    [EC_GGUF_U32] = 4, [EC_GGUF_I32] = 4, [EC_GGUF_F32] = 4, [EC_GGUF_BOOL] = 1,
    [EC_GGUF_U64] = 8, [EC_GGUF_I64] = 8, [EC_GGUF_F64] = 8,
};

static const char *gw_path(const struct ec_gguf_writer *w)
{
    return w->out.dest_path ? w->out.dest_path : "?";
}

static void gw_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

enum ec_status ec_gguf_writer_open(struct ec_gguf_writer **w, const char *dest,
                                   const char *const *inputs, struct ec_diag *d)
{
    *w = calloc(1, sizeof **w);
    if (!*w)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", dest);
    (*w)->alignment = EC_GGUF_DEFAULT_ALIGNMENT;
    enum ec_status s = ec_outfile_open(&(*w)->out, dest, inputs, d);
    if (s) {
        free(*w);
        *w = NULL;
    }
    return s;
}

static struct gw_kv *gw_find(struct ec_gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0)
            return &w->kv[i];
    return NULL;
}

/* Takes ownership of val (freed on failure too). */
static enum ec_status gw_add(struct ec_gguf_writer *w, const char *key, enum ec_gguf_type type,
                             uint8_t *val, size_t val_bytes, struct ec_diag *d)
{
    enum ec_status s = EC_OK;
    if (w->header_done) {
        s = ec_fail(d, EC_ERR_INTERNAL, "%s: key '%s' added after the header was written",
                    gw_path(w), key);
        goto out_val;
    }
    if (!key[0]) {
        s = ec_fail(d, EC_ERR_ARG, "%s: empty key", gw_path(w));
        goto out_val;
    }
    if (gw_find(w, key)) {
        s = ec_fail(d, EC_ERR_ARG, "%s: key '%s' added twice (remove it first to override)",
                    gw_path(w), key);
        goto out_val;
    }
    if (strcmp(key, "general.alignment") == 0) {
        uint64_t a = type == EC_GGUF_U32 ? (uint64_t)val[0] | (uint64_t)val[1] << 8 |
                                               (uint64_t)val[2] << 16 | (uint64_t)val[3] << 24
                                         : 0;
        if (type != EC_GGUF_U32 || a == 0 || (a & (a - 1))) {
            s = ec_fail(d, EC_ERR_ARG, "%s: key 'general.alignment' must be a UINT32 power of two",
                        gw_path(w));
            goto out_val;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t nc = w->cap_kv ? 2 * w->cap_kv : 32;
        struct gw_kv *nk = realloc(w->kv, nc * sizeof *nk);
        if (!nk) {
            s = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", gw_path(w));
            goto out_val;
        }
        w->kv = nk;
        w->cap_kv = nc;
    }
    char *k = strdup(key);
    if (!k) {
        s = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", gw_path(w));
        goto out_val;
    }
    w->kv[w->n_kv++] = (struct gw_kv){.key = k, .type = type, .val = val, .val_bytes = val_bytes};
    return EC_OK;
out_val:
    free(val);
    return s;
}

static enum ec_status gw_add_scalar(struct ec_gguf_writer *w, const char *key,
                                    enum ec_gguf_type type, uint64_t bits, struct ec_diag *d)
{
    uint8_t *val = malloc(8);
    if (!val)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", gw_path(w));
    gw_le(val, bits, gw_type_size[type]);
    return gw_add(w, key, type, val, gw_type_size[type], d);
}

enum ec_status ec_gguf_writer_add_u32(struct ec_gguf_writer *w, const char *key, uint32_t v,
                                      struct ec_diag *d)
{
    return gw_add_scalar(w, key, EC_GGUF_U32, v, d);
}

enum ec_status ec_gguf_writer_add_i32(struct ec_gguf_writer *w, const char *key, int32_t v,
                                      struct ec_diag *d)
{
    return gw_add_scalar(w, key, EC_GGUF_I32, (uint32_t)v, d);
}

enum ec_status ec_gguf_writer_add_u64(struct ec_gguf_writer *w, const char *key, uint64_t v,
                                      struct ec_diag *d)
{
    return gw_add_scalar(w, key, EC_GGUF_U64, v, d);
}

enum ec_status ec_gguf_writer_add_f32(struct ec_gguf_writer *w, const char *key, float v,
                                      struct ec_diag *d)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    return gw_add_scalar(w, key, EC_GGUF_F32, u, d);
}

enum ec_status ec_gguf_writer_add_bool(struct ec_gguf_writer *w, const char *key, bool v,
                                       struct ec_diag *d)
{
    return gw_add_scalar(w, key, EC_GGUF_BOOL, v ? 1 : 0, d);
}

static enum ec_status gw_add_bytes_str(struct ec_gguf_writer *w, const char *key, const char *s,
                                       uint64_t len, struct ec_diag *d)
{
    if (len > SIZE_MAX - 8)
        return ec_fail(d, EC_ERR_ARG, "%s: key '%s': string too long", gw_path(w), key);
    uint8_t *val = malloc((size_t)len + 8);
    if (!val)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", gw_path(w));
    gw_le(val, len, 8);
    if (len)
        memcpy(val + 8, s, (size_t)len);
    return gw_add(w, key, EC_GGUF_STRING, val, (size_t)len + 8, d);
}

enum ec_status ec_gguf_writer_add_str(struct ec_gguf_writer *w, const char *key, const char *v,
                                      struct ec_diag *d)
{
    return gw_add_bytes_str(w, key, v, strlen(v), d);
}

enum ec_status ec_gguf_writer_add_array(struct ec_gguf_writer *w, const char *key,
                                        enum ec_gguf_type elem_type, const void *data, uint64_t n,
                                        struct ec_diag *d)
{
    if ((unsigned)elem_type >= EC_GGUF_TYPE_COUNT || !gw_type_size[elem_type])
        return ec_fail(d, EC_ERR_ARG, "%s: key '%s': array element type %s is not fixed-size",
                       gw_path(w), key, ec_gguf_type_name(elem_type));
    uint64_t esz = gw_type_size[elem_type];
    if (n > (SIZE_MAX - 12) / esz)
        return ec_fail(d, EC_ERR_ARG, "%s: key '%s': array too large", gw_path(w), key);
    size_t nb = (size_t)(n * esz);
    uint8_t *val = malloc(nb + 12);
    if (!val)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", gw_path(w));
    gw_le(val, (uint64_t)elem_type, 4);
    gw_le(val + 4, n, 8);
    if (nb)
        memcpy(val + 12, data, nb); /* elements are little-endian already (host order, LE only) */
    return gw_add(w, key, EC_GGUF_ARRAY, val, nb + 12, d);
}

enum ec_status ec_gguf_writer_add_str_array(struct ec_gguf_writer *w, const char *key,
                                            const char *const *strs, const uint64_t *lens,
                                            uint64_t n, struct ec_diag *d)
{
    uint64_t total = 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = lens ? lens[i] : strlen(strs[i]);
        if (l > SIZE_MAX - 8 || total > SIZE_MAX - 8 - l)
            return ec_fail(d, EC_ERR_ARG, "%s: key '%s': array too large", gw_path(w), key);
        total += 8 + l;
    }
    uint8_t *val = malloc((size_t)total);
    if (!val)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", gw_path(w));
    gw_le(val, EC_GGUF_STRING, 4);
    gw_le(val + 4, n, 8);
    size_t p = 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = lens ? lens[i] : strlen(strs[i]);
        gw_le(val + p, l, 8);
        if (l)
            memcpy(val + p + 8, strs[i], (size_t)l);
        p += 8 + (size_t)l;
    }
    return gw_add(w, key, EC_GGUF_ARRAY, val, (size_t)total, d);
}

enum ec_status ec_gguf_writer_add_kv(struct ec_gguf_writer *w, const struct ec_gguf_kv *kv,
                                     struct ec_diag *d)
{
    switch (kv->type) {
    case EC_GGUF_U8:
    case EC_GGUF_U16:
    case EC_GGUF_U32:
    case EC_GGUF_U64:
    case EC_GGUF_BOOL:
        return gw_add_scalar(w, kv->key, kv->type, kv->v.u64, d);
    case EC_GGUF_I8:
    case EC_GGUF_I16:
    case EC_GGUF_I32:
    case EC_GGUF_I64:
        return gw_add_scalar(w, kv->key, kv->type, (uint64_t)kv->v.i64, d);
    case EC_GGUF_F32: {
        float f = (float)kv->v.f64; /* exact for a value the reader widened */
        uint32_t u;
        memcpy(&u, &f, 4);
        return gw_add_scalar(w, kv->key, kv->type, u, d);
    }
    case EC_GGUF_F64: {
        uint64_t u;
        memcpy(&u, &kv->v.f64, 8);
        return gw_add_scalar(w, kv->key, kv->type, u, d);
    }
    case EC_GGUF_STRING:
        return gw_add_bytes_str(w, kv->key, kv->v.str.data, kv->v.str.len, d);
    case EC_GGUF_ARRAY:
        if (kv->arr_type == EC_GGUF_STRING && kv->arr_strs && !kv->arr_data) {
            const char **strs = malloc((kv->arr_n ? (size_t)kv->arr_n : 1) * sizeof *strs);
            uint64_t *lens = malloc((kv->arr_n ? (size_t)kv->arr_n : 1) * sizeof *lens);
            enum ec_status s;
            if (!strs || !lens) {
                s = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", gw_path(w));
            } else {
                for (uint64_t i = 0; i < kv->arr_n; i++) {
                    strs[i] = kv->arr_strs[i].data;
                    lens[i] = kv->arr_strs[i].len;
                }
                s = ec_gguf_writer_add_str_array(w, kv->key, strs, lens, kv->arr_n, d);
            }
            free(strs);
            free(lens);
            return s;
        }
        if ((unsigned)kv->arr_type >= EC_GGUF_TYPE_COUNT || kv->arr_type == EC_GGUF_ARRAY ||
            kv->arr_bytes > SIZE_MAX - 12)
            return ec_fail(d, EC_ERR_ARG, "%s: key '%s': unsupported array element type",
                           gw_path(w), kv->key);
        {
            /* The raw payload (strings as u64 length + bytes) is copied as is. */
            uint8_t *val = malloc((size_t)kv->arr_bytes + 12);
            if (!val)
                return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", gw_path(w));
            gw_le(val, kv->arr_type, 4);
            gw_le(val + 4, kv->arr_n, 8);
            if (kv->arr_bytes)
                memcpy(val + 12, kv->arr_data, (size_t)kv->arr_bytes);
            return gw_add(w, kv->key, EC_GGUF_ARRAY, val, (size_t)kv->arr_bytes + 12, d);
        }
    default:
        return ec_fail(d, EC_ERR_ARG, "%s: key '%s': unknown value type %d", gw_path(w), kv->key,
                       (int)kv->type);
    }
}

void ec_gguf_writer_remove_kv(struct ec_gguf_writer *w, const char *key)
{
    if (w->header_done)
        return;
    struct gw_kv *kv = gw_find(w, key);
    if (!kv)
        return;
    size_t i = (size_t)(kv - w->kv);
    free(kv->key);
    free(kv->val);
    memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - i - 1) * sizeof *w->kv);
    w->n_kv--;
}

enum ec_status ec_gguf_writer_rename_prefix(struct ec_gguf_writer *w, const char *from, const char *to,
                                            struct ec_diag *d)
{
    if (w->header_done)
        return ec_fail(d, EC_ERR_INTERNAL, "%s: keys renamed after the header was written", gw_path(w));
    const size_t nf = strlen(from), nt = strlen(to);
    char **names = calloc(w->n_kv ? w->n_kv : 1, sizeof *names);
    if (!names)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", gw_path(w));
    enum ec_status s = EC_OK;
    for (size_t i = 0; i < w->n_kv && s == EC_OK; i++) {
        if (strncmp(w->kv[i].key, from, nf) != 0)
            continue;
        size_t rest = strlen(w->kv[i].key) - nf;
        names[i] = malloc(nt + rest + 1);
        if (!names[i]) {
            s = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", gw_path(w));
            break;
        }
        memcpy(names[i], to, nt);
        memcpy(names[i] + nt, w->kv[i].key + nf, rest + 1);
        const struct gw_kv *clash = gw_find(w, names[i]);
        if (clash && strncmp(clash->key, from, nf) != 0)
            s = ec_fail(d, EC_ERR_ARG, "%s: cannot rename key '%s': '%s' exists", gw_path(w), w->kv[i].key,
                        names[i]);
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!names[i])
            continue;
        if (s == EC_OK) {
            free(w->kv[i].key);
            w->kv[i].key = names[i];
        } else {
            free(names[i]);
        }
    }
    free(names);
    return s;
}

enum ec_status ec_gguf_writer_add_tensor(struct ec_gguf_writer *w, const char *name,
                                         enum ec_dtype type, uint32_t n_dims, const uint64_t *ne,
                                         struct ec_diag *d)
{
    if (w->header_done)
        return ec_fail(d, EC_ERR_INTERNAL, "%s: tensor '%s' declared after the header was written",
                       gw_path(w), name);
    if (!name[0])
        return ec_fail(d, EC_ERR_ARG, "%s: empty tensor name", gw_path(w));
    if ((unsigned)type >= EC_GGML_TYPE_COUNT || !ec_dtype_info(type))
        return ec_fail(d, EC_ERR_UNSUPPORTED, "%s: tensor '%s': type %s has no GGUF number",
                       gw_path(w), name, ec_dtype_name(type));
    if (n_dims < 1 || n_dims > EC_GGUF_MAX_DIMS)
        return ec_fail(d, EC_ERR_ARG, "%s: tensor '%s': n_dims %u is not in 1..%d", gw_path(w),
                       name, n_dims, EC_GGUF_MAX_DIMS);
    for (uint32_t i = 0; i < n_dims; i++)
        if (ne[i] == 0)
            return ec_fail(d, EC_ERR_ARG, "%s: tensor '%s': ne[%u] is 0", gw_path(w), name, i);
    uint64_t nb;
    if (!ec_dtype_tensor_bytes(type, (int)n_dims, ne, &nb))
        return ec_fail(
            d, EC_ERR_ARG,
            "%s: tensor '%s': ne[0] = %llu is not a multiple of the %s block or the size "
            "overflows",
            gw_path(w), name, (unsigned long long)ne[0], ec_dtype_name(type));
    /* Linear duplicate scan: models declare hundreds of tensors, not millions. */
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return ec_fail(d, EC_ERR_ARG, "%s: tensor '%s' declared twice", gw_path(w), name);
    if (w->n_tensors == w->cap_tensors) {
        size_t nc = w->cap_tensors ? 2 * w->cap_tensors : 64;
        struct gw_tensor *nt = realloc(w->tensors, nc * sizeof *nt);
        if (!nt)
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", gw_path(w));
        w->tensors = nt;
        w->cap_tensors = nc;
    }
    struct gw_tensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", gw_path(w));
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t i = 0; i < EC_GGUF_MAX_DIMS; i++)
        t->ne[i] = i < n_dims ? ne[i] : 1;
    t->n_bytes = nb;
    w->n_tensors++;
    return EC_OK;
}

static enum ec_status gw_put_u(struct ec_gguf_writer *w, uint64_t v, int bytes, struct ec_diag *d)
{
    uint8_t b[8];
    gw_le(b, v, bytes);
    return ec_outfile_write(&w->out, b, (size_t)bytes, d);
}

static enum ec_status gw_put_str(struct ec_gguf_writer *w, const char *s, struct ec_diag *d)
{
    size_t n = strlen(s);
    enum ec_status st = gw_put_u(w, n, 8, d);
    return st ? st : ec_outfile_write(&w->out, s, n, d);
}

enum ec_status ec_gguf_writer_begin_data(struct ec_gguf_writer *w, struct ec_diag *d)
{
    if (w->header_done)
        return ec_fail(d, EC_ERR_INTERNAL, "%s: header written twice", gw_path(w));
    struct gw_kv *al = gw_find(w, "general.alignment");
    w->alignment = EC_GGUF_DEFAULT_ALIGNMENT;
    if (al)
        w->alignment = (uint32_t)(al->val[0] | al->val[1] << 8 | al->val[2] << 16 |
                                  (uint32_t)al->val[3] << 24);
    uint64_t a = w->alignment, off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        struct gw_tensor *t = &w->tensors[i];
        uint64_t padded = t->n_bytes + (a - t->n_bytes % a) % a;
        if (padded < t->n_bytes || off > UINT64_MAX - padded)
            return ec_fail(d, EC_ERR_ARG, "%s: tensor '%s': total data size overflows", gw_path(w),
                           t->name);
        t->offset = off;
        off += padded;
    }
    enum ec_status s;
    if ((s = ec_outfile_write(&w->out, "GGUF", 4, d)) || (s = gw_put_u(w, 3, 4, d)) ||
        (s = gw_put_u(w, w->n_tensors, 8, d)) || (s = gw_put_u(w, w->n_kv, 8, d)))
        return s;
    for (size_t i = 0; i < w->n_kv; i++) {
        const struct gw_kv *kv = &w->kv[i];
        if ((s = gw_put_str(w, kv->key, d)) || (s = gw_put_u(w, (uint64_t)kv->type, 4, d)) ||
            (s = ec_outfile_write(&w->out, kv->val, kv->val_bytes, d)))
            return s;
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const struct gw_tensor *t = &w->tensors[i];
        if ((s = gw_put_str(w, t->name, d)) || (s = gw_put_u(w, t->n_dims, 4, d)))
            return s;
        for (uint32_t k = 0; k < t->n_dims; k++)
            if ((s = gw_put_u(w, t->ne[k], 8, d)))
                return s;
        if ((s = gw_put_u(w, (uint64_t)t->type, 4, d)) || (s = gw_put_u(w, t->offset, 8, d)))
            return s;
    }
    s = ec_outfile_pad(&w->out, a, d);
    if (s)
        return s;
    w->data_offset = w->out.written;
    w->header_done = true;
    return EC_OK;
}

enum ec_status ec_gguf_writer_write(struct ec_gguf_writer *w, const void *data, size_t n,
                                    struct ec_diag *d)
{
    if (!w->header_done)
        return ec_fail(d, EC_ERR_INTERNAL, "%s: tensor data written before the header", gw_path(w));
    const uint8_t *p = data;
    while (n > 0) {
        if (w->cur >= w->n_tensors)
            return ec_fail(d, EC_ERR_INTERNAL,
                           "%s: at byte %llu: %zu bytes written past the last declared tensor",
                           gw_path(w), (unsigned long long)w->out.written, n);
        const struct gw_tensor *t = &w->tensors[w->cur];
        uint64_t room = t->n_bytes - w->cur_done;
        size_t k = n < room ? n : (size_t)room;
        enum ec_status s = ec_outfile_write(&w->out, p, k, d);
        if (s)
            return s;
        w->cur_done += k;
        p += k;
        n -= k;
        if (w->cur_done == t->n_bytes) {
            s = ec_outfile_pad(&w->out, w->alignment, d);
            if (s)
                return s;
            w->cur++;
            w->cur_done = 0;
        }
    }
    return EC_OK;
}

enum ec_status ec_gguf_writer_commit(struct ec_gguf_writer *w, struct ec_diag *d)
{
    if (!w->header_done)
        return ec_fail(d, EC_ERR_INTERNAL, "%s: commit before the header was written", gw_path(w));
    if (w->cur < w->n_tensors) {
        const struct gw_tensor *t = &w->tensors[w->cur];
        return ec_fail(d, EC_ERR_INTERNAL,
                       "%s: tensor '%s' at byte %llu: received %llu of its %llu bytes", gw_path(w),
                       t->name, (unsigned long long)(w->data_offset + t->offset),
                       (unsigned long long)w->cur_done, (unsigned long long)t->n_bytes);
    }
    return ec_outfile_commit(&w->out, d);
}

void ec_gguf_writer_free(struct ec_gguf_writer *w)
{
    if (!w)
        return;
    ec_outfile_abort(&w->out);
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    free(w->kv);
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    free(w);
}
