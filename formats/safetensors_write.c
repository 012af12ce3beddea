/* Safetensors writer (see edgec/safetensors.h).
 *
 * The JSON header lists "__metadata__" first (when any), then the tensors in
 * declaration order with contiguous data_offsets; it is padded with spaces so
 * that the data starts at a multiple of 8. Tensor bytes are streamed in
 * declaration order into an atomic output file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/safetensors.h"
#include "formats/st_internal.h"

struct st_wtensor {
    char *name;
    enum ec_dtype dtype;
    int ndim;
    uint64_t ne[EC_MAX_DIMS];
    uint64_t begin, n_bytes; /* data_offsets = [begin, begin + n_bytes) */
};

struct ec_st_writer {
    struct ec_outfile out;
    char **meta_keys, **meta_values;
    size_t n_meta, cap_meta;
    struct st_wtensor *tensors;
    size_t n_tensors, cap_tensors;
    uint64_t total_bytes;
    bool header_done;
    size_t cur;        /* tensor receiving bytes */
    uint64_t cur_done; /* bytes of it written */
    uint64_t data_start;
};

/* A growable string for the header. */
struct st_sbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void sb_put(struct st_sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 1024;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_puts(struct st_sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_put_u64(struct st_sbuf *b, uint64_t v)
{
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    sb_put(b, tmp, (size_t)k);
}

/* JSON string with the escapes RFC 8259 requires (UTF-8 passes through). */
static void sb_put_json_str(struct st_sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

enum ec_status ec_st_writer_open(struct ec_st_writer **w, const char *dest,
                                 const char *const *inputs, struct ec_diag *d)
{
    *w = calloc(1, sizeof **w);
    if (!*w)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", dest);
    enum ec_status s = ec_outfile_open(&(*w)->out, dest, inputs, d);
    if (s) {
        free(*w);
        *w = NULL;
    }
    return s;
}

static const char *st_wpath(const struct ec_st_writer *w)
{
    return w->out.dest_path ? w->out.dest_path : "?";
}

static enum ec_status st_check_name(struct ec_st_writer *w, const char *what, const char *name,
                                    struct ec_diag *d)
{
    if (!name[0])
        return ec_fail(d, EC_ERR_ARG, "%s: empty %s name", st_wpath(w), what);
    int64_t bad = ec_utf8_invalid_at((const uint8_t *)name, strlen(name));
    if (bad >= 0)
        return ec_fail(d, EC_ERR_ARG, "%s: %s name is not valid UTF-8 at byte %lld", st_wpath(w),
                       what, (long long)bad);
    if (w->header_done)
        return ec_fail(d, EC_ERR_INTERNAL, "%s: %s '%s' declared after the header was written",
                       st_wpath(w), what, name);
    return EC_OK;
}

enum ec_status ec_st_writer_add_meta(struct ec_st_writer *w, const char *key, const char *value,
                                     struct ec_diag *d)
{
    enum ec_status s = st_check_name(w, "metadata key", key, d);
    if (s)
        return s;
    if (ec_utf8_invalid_at((const uint8_t *)value, strlen(value)) >= 0)
        return ec_fail(d, EC_ERR_ARG, "%s: metadata key '%s': value is not valid UTF-8",
                       st_wpath(w), key);
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta_keys[i], key) == 0)
            return ec_fail(d, EC_ERR_ARG, "%s: metadata key '%s' added twice", st_wpath(w), key);
    if (w->n_meta == w->cap_meta) {
        size_t nc = w->cap_meta ? 2 * w->cap_meta : 8;
        char **nk = realloc(w->meta_keys, nc * sizeof *nk);
        if (!nk)
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", st_wpath(w));
        w->meta_keys = nk;
        char **nv = realloc(w->meta_values, nc * sizeof *nv);
        if (!nv)
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", st_wpath(w));
        w->meta_values = nv;
        w->cap_meta = nc;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", st_wpath(w));
    }
    w->meta_keys[w->n_meta] = k;
    w->meta_values[w->n_meta] = v;
    w->n_meta++;
    return EC_OK;
}

enum ec_status ec_st_writer_add_tensor(struct ec_st_writer *w, const char *name,
                                       enum ec_dtype dtype, int ndim, const uint64_t *ne,
                                       struct ec_diag *d)
{
    enum ec_status s = st_check_name(w, "tensor", name, d);
    if (s)
        return s;
    if (strcmp(name, "__metadata__") == 0)
        return ec_fail(d, EC_ERR_ARG, "%s: '__metadata__' cannot name a tensor", st_wpath(w));
    if (!ec_st_dtype_name(dtype))
        return ec_fail(d, EC_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s has no safetensors name",
                       st_wpath(w), name, ec_dtype_name(dtype));
    if (ndim < 0 || ndim > EC_MAX_DIMS)
        return ec_fail(d, EC_ERR_ARG, "%s: tensor '%s': %d dimensions (0..%d allowed)", st_wpath(w),
                       name, ndim, EC_MAX_DIMS);
    uint64_t nb;
    if (!ec_dtype_tensor_bytes(dtype, ndim, ne, &nb) || nb > UINT64_MAX - w->total_bytes)
        return ec_fail(d, EC_ERR_ARG, "%s: tensor '%s': byte size overflows", st_wpath(w), name);
    /* Linear duplicate scan: writers declare few tensors (hundreds). */
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return ec_fail(d, EC_ERR_ARG, "%s: tensor '%s' declared twice", st_wpath(w), name);
    if (w->n_tensors == w->cap_tensors) {
        size_t nc = w->cap_tensors ? 2 * w->cap_tensors : 32;
        struct st_wtensor *nt = realloc(w->tensors, nc * sizeof *nt);
        if (!nt)
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", st_wpath(w));
        w->tensors = nt;
        w->cap_tensors = nc;
    }
    struct st_wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", st_wpath(w));
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->ne[i] = ne[i];
    t->begin = w->total_bytes;
    t->n_bytes = nb;
    w->total_bytes += nb;
    w->n_tensors++;
    return EC_OK;
}

/* Advance past finished (and empty) tensors. */
static void st_skip_done(struct ec_st_writer *w)
{
    while (w->cur < w->n_tensors && w->cur_done == w->tensors[w->cur].n_bytes) {
        w->cur++;
        w->cur_done = 0;
    }
}

enum ec_status ec_st_writer_begin_data(struct ec_st_writer *w, struct ec_diag *d)
{
    if (w->header_done)
        return ec_fail(d, EC_ERR_INTERNAL, "%s: header written twice", st_wpath(w));
    struct st_sbuf b = {0};
    sb_puts(&b, "{");
    bool first = true;
    if (w->n_meta) {
        sb_puts(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i)
                sb_puts(&b, ",");
            sb_put_json_str(&b, w->meta_keys[i]);
            sb_puts(&b, ":");
            sb_put_json_str(&b, w->meta_values[i]);
        }
        sb_puts(&b, "}");
        first = false;
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const struct st_wtensor *t = &w->tensors[i];
        if (!first)
            sb_puts(&b, ",");
        first = false;
        sb_put_json_str(&b, t->name);
        sb_puts(&b, ":{\"dtype\":\"");
        sb_puts(&b, ec_st_dtype_name(t->dtype));
        sb_puts(&b, "\",\"shape\":[");
        for (int k = t->ndim - 1; k >= 0; k--) { /* JSON shape is outermost-first */
            sb_put_u64(&b, t->ne[k]);
            if (k)
                sb_puts(&b, ",");
        }
        sb_puts(&b, "],\"data_offsets\":[");
        sb_put_u64(&b, t->begin);
        sb_puts(&b, ",");
        sb_put_u64(&b, t->begin + t->n_bytes);
        sb_puts(&b, "]}");
    }
    sb_puts(&b, "}");
    while (!b.oom && b.n % 8)
        sb_puts(&b, " ");
    enum ec_status s;
    if (b.oom) {
        s = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory for the header", st_wpath(w));
        goto out_buf;
    }
    if (b.n > EC_ST_MAX_HEADER_BYTES) {
        s = ec_fail(d, EC_ERR_ARG, "%s: header of %zu bytes exceeds the limit of %u", st_wpath(w),
                    b.n, EC_ST_MAX_HEADER_BYTES);
        goto out_buf;
    }
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)b.n >> (8 * i));
    s = ec_outfile_write(&w->out, len, 8, d);
    if (!s)
        s = ec_outfile_write(&w->out, b.p, b.n, d);
    if (!s) {
        w->header_done = true;
        w->data_start = 8 + b.n;
        st_skip_done(w);
    }
out_buf:
    free(b.p);
    return s;
}

enum ec_status ec_st_writer_write(struct ec_st_writer *w, const void *data, size_t n,
                                  struct ec_diag *d)
{
    if (!w->header_done)
        return ec_fail(d, EC_ERR_INTERNAL, "%s: tensor data written before the header",
                       st_wpath(w));
    const uint8_t *p = data;
    while (n > 0) {
        if (w->cur >= w->n_tensors)
            return ec_fail(d, EC_ERR_INTERNAL,
                           "%s: at byte %llu: %zu bytes written past the last declared tensor",
                           st_wpath(w), (unsigned long long)w->out.written, n);
        const struct st_wtensor *t = &w->tensors[w->cur];
        uint64_t room = t->n_bytes - w->cur_done;
        size_t k = n < room ? n : (size_t)room;
        enum ec_status s = ec_outfile_write(&w->out, p, k, d);
        if (s)
            return s;
        w->cur_done += k;
        p += k;
        n -= k;
        st_skip_done(w);
    }
    return EC_OK;
}

enum ec_status ec_st_writer_commit(struct ec_st_writer *w, struct ec_diag *d)
{
    if (!w->header_done)
        return ec_fail(d, EC_ERR_INTERNAL, "%s: commit before the header was written", st_wpath(w));
    if (w->cur < w->n_tensors) {
        const struct st_wtensor *t = &w->tensors[w->cur];
        return ec_fail(d, EC_ERR_INTERNAL,
                       "%s: tensor '%s' at byte %llu: received %llu of its %llu bytes", st_wpath(w),
                       t->name, (unsigned long long)(w->data_start + t->begin),
                       (unsigned long long)w->cur_done, (unsigned long long)t->n_bytes);
    }
    return ec_outfile_commit(&w->out, d);
}

void ec_st_writer_free(struct ec_st_writer *w)
{
    if (!w)
        return;
    ec_outfile_abort(&w->out);
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->meta_keys);
    free(w->meta_values);
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    free(w);
}
