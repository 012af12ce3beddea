/* Safetensors reader: single files and sharded checkpoints (see edgec/safetensors.h).
 *
 * Every check runs before ec_safetensors_open() returns, so callers can trust
 * each tensor's dtype, shape and byte range. Byte offsets in messages are
 * absolute file offsets: of the tensor's key in the JSON header for header
 * problems, of its data for data-range problems. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/safetensors.h"
#include "formats/st_internal.h"

#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"
#define ST_MAX_INDEX_BYTES (64u * 1000u * 1000u)
/* Integers in the JSON header arrive as doubles: exact up to 2^53. */
#define ST_MAX_JSON_INT 9007199254740992.0

struct st_dtype_name {
    const char *name;
    enum ec_dtype dtype;
};

static const struct st_dtype_name st_dtypes[] = {
    {"F32", EC_F32},   {"F16", EC_F16},         {"BF16", EC_BF16},       {"F64", EC_F64},
    {"I8", EC_I8},     {"I16", EC_I16},         {"I32", EC_I32},         {"I64", EC_I64},
    {"U8", EC_U8},     {"U16", EC_U16},         {"U32", EC_U32},         {"U64", EC_U64},
    {"BOOL", EC_BOOL}, {"F8_E4M3", EC_F8_E4M3}, {"F8_E5M2", EC_F8_E5M2},
};

bool ec_st_dtype_from_name(const char *s, enum ec_dtype *out)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
        if (strcmp(s, st_dtypes[i].name) == 0) {
            *out = st_dtypes[i].dtype;
            return true;
        }
    }
    return false;
}

const char *ec_st_dtype_name(enum ec_dtype t)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dtype == t)
            return st_dtypes[i].name;
    return NULL;
}

int64_t ec_utf8_invalid_at(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return (int64_t)i;
        }
        if (n - i < len)
            return (int64_t)i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return (int64_t)i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return (int64_t)i;
        i += len;
    }
    return -1;
}

static uint64_t rd_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Growable arrays of the result while it is being built. */
struct st_build {
    struct ec_safetensors *st;
    size_t cap_tensors;
    size_t cap_meta;
};

static enum ec_status st_push_tensor(struct st_build *b, const struct ec_st_tensor *t,
                                     struct ec_diag *d)
{
    struct ec_safetensors *st = b->st;
    if (st->n_tensors == b->cap_tensors) {
        size_t nc = b->cap_tensors ? 2 * b->cap_tensors : 64;
        struct ec_st_tensor *nt = realloc(st->tensors, nc * sizeof *nt);
        if (!nt)
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory for %zu tensors", t->file, nc);
        st->tensors = nt;
        b->cap_tensors = nc;
    }
    st->tensors[st->n_tensors++] = *t;
    return EC_OK;
}

static enum ec_status st_push_meta(struct st_build *b, const char *file, const char *key,
                                   const char *value, struct ec_diag *d)
{
    struct ec_safetensors *st = b->st;
    if (st->n_meta == b->cap_meta) {
        size_t nc = b->cap_meta ? 2 * b->cap_meta : 16;
        char **nk = realloc(st->meta_keys, nc * sizeof *nk);
        if (!nk)
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", file);
        st->meta_keys = nk;
        char **nv = realloc(st->meta_values, nc * sizeof *nv);
        if (!nv)
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", file);
        st->meta_values = nv;
        b->cap_meta = nc;
    }
    char *k = strdup(key);
    char *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", file);
    }
    st->meta_keys[st->n_meta] = k;
    st->meta_values[st->n_meta] = v;
    st->n_meta++;
    return EC_OK;
}

/* Absolute offset of a key's quoted name in the header, for messages; the
 * header start when the name is written with escapes. */
static uint64_t st_key_offset(const uint8_t *hdr, uint64_t n, const char *name)
{
    size_t ln = strlen(name);
    char *q = malloc(ln + 3);
    if (!q)
        return 8;
    q[0] = '"';
    memcpy(q + 1, name, ln);
    q[ln + 1] = '"';
    q[ln + 2] = '\0';
    const uint8_t *p = memmem(hdr, (size_t)n, q, ln + 2);
    free(q);
    return p ? 8 + (uint64_t)(p - hdr) : 8;
}

/* Offset of a quoted name in the index JSON text, for messages (0 when escaped). */
static unsigned long long st_index_offset(const char *text, size_t len, const char *name)
{
    uint64_t at = st_key_offset((const uint8_t *)text, len, name);
    return (unsigned long long)(at - 8);
}

/* A JSON number that is a non-negative integer exactly representable. */
static bool st_json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return false;
    double v = j->valuedouble;
    if (!isfinite(v) || v < 0 || v != floor(v) || v > ST_MAX_JSON_INT)
        return false;
    *out = (uint64_t)v;
    return true;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Index sort by data begin, then end (for the contiguity check). */
struct st_range {
    uint64_t begin, end;
    size_t idx;
};

static int cmp_range(const void *a, const void *b)
{
    const struct st_range *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static enum ec_status st_parse_meta(struct st_build *b, const char *path, const uint8_t *hdr,
                                    uint64_t n, const cJSON *meta, struct ec_diag *d)
{
    uint64_t at = st_key_offset(hdr, n, "__metadata__");
    if (!cJSON_IsObject(meta))
        return ec_fail(d, EC_ERR_FORMAT, "%s: key '__metadata__' at byte %llu: not an object", path,
                       (unsigned long long)at);
    size_t first = b->st->n_meta;
    for (const cJSON *m = meta->child; m; m = m->next) {
        if (!m->string)
            return ec_fail(d, EC_ERR_FORMAT,
                           "%s: key '__metadata__' at byte %llu: entry without a key", path,
                           (unsigned long long)at);
        if (!cJSON_IsString(m) || !m->valuestring)
            return ec_fail(d, EC_ERR_FORMAT,
                           "%s: metadata key '%s' at byte %llu: value is not a string", path,
                           m->string, (unsigned long long)st_key_offset(hdr, n, m->string));
        enum ec_status s = st_push_meta(b, path, m->string, m->valuestring, d);
        if (s)
            return s;
    }
    size_t nm = b->st->n_meta - first;
    if (nm < 2)
        return EC_OK;
    const char **keys = malloc(nm * sizeof *keys);
    if (!keys)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
    memcpy(keys, b->st->meta_keys + first, nm * sizeof *keys);
    qsort(keys, nm, sizeof *keys, cmp_str_ptr);
    enum ec_status s = EC_OK;
    for (size_t i = 1; i < nm && !s; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            s = ec_fail(d, EC_ERR_FORMAT, "%s: metadata key '%s' at byte %llu: duplicate key", path,
                        keys[i], (unsigned long long)st_key_offset(hdr, n, keys[i]));
    free(keys);
    return s;
}

/* Parse one tensor entry of the header into *t (data fields set later). */
static enum ec_status st_parse_entry(const char *path, const uint8_t *hdr, uint64_t n,
                                     const cJSON *e, struct ec_st_tensor *t, uint64_t *begin,
                                     uint64_t *end, struct ec_diag *d)
{
    const char *name = e->string;
    unsigned long long at = (unsigned long long)st_key_offset(hdr, n, name);
    int64_t bad = ec_utf8_invalid_at((const uint8_t *)name, strlen(name));
    if (bad >= 0)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: tensor name at byte %llu: invalid UTF-8 at name byte %lld", path, at,
                       (long long)bad);
    if (!cJSON_IsObject(e))
        return ec_fail(d, EC_ERR_FORMAT, "%s: tensor '%s' at byte %llu: entry is not an object",
                       path, name, at);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd) || !jd->valuestring)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: tensor '%s' at byte %llu: missing or non-string 'dtype'", path, name,
                       at);
    if (!ec_st_dtype_from_name(jd->valuestring, &t->dtype))
        return ec_fail(d, EC_ERR_UNSUPPORTED, "%s: tensor '%s' at byte %llu: unknown dtype '%s'",
                       path, name, at, jd->valuestring);
    if (!cJSON_IsArray(js))
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: tensor '%s' at byte %llu: missing or non-array 'shape'", path, name,
                       at);
    int ndim = cJSON_GetArraySize(js);
    uint64_t shape[EC_MAX_DIMS] = {0};
    int k = 0;
    for (const cJSON *x = js->child; x; x = x->next, k++) {
        uint64_t v;
        if (!st_json_uint(x, &v))
            return ec_fail(d, EC_ERR_FORMAT,
                           "%s: tensor '%s' at byte %llu: shape[%d] is not a non-negative integer",
                           path, name, at, k);
        if (k < EC_MAX_DIMS)
            shape[k] = v;
    }
    if (ndim > EC_MAX_DIMS)
        return ec_fail(d, EC_ERR_UNSUPPORTED,
                       "%s: tensor '%s' at byte %llu: %d dimensions (at most %d supported)", path,
                       name, at, ndim, EC_MAX_DIMS);
    t->ndim = ndim;
    for (int i = 0; i < EC_MAX_DIMS; i++)
        t->ne[i] = i < ndim ? shape[ndim - 1 - i] : 1;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || !st_json_uint(jo->child, begin) ||
        !st_json_uint(jo->child->next, end))
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: tensor '%s' at byte %llu: 'data_offsets' must be [begin, end] of "
                       "non-negative integers",
                       path, name, at);
    if (*begin > *end)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: tensor '%s' at byte %llu: data_offsets begin %llu > end %llu", path,
                       name, at, (unsigned long long)*begin, (unsigned long long)*end);
    uint64_t want;
    if (!ec_dtype_tensor_bytes(t->dtype, ndim, t->ne, &want))
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: tensor '%s' at byte %llu: byte size of the shape overflows", path, name,
                       at);
    if (want != *end - *begin)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: tensor '%s' at byte %llu: data_offsets span %llu bytes but %s x shape "
                       "needs %llu",
                       path, name, at, (unsigned long long)(*end - *begin), jd->valuestring,
                       (unsigned long long)want);
    t->name = strdup(name);
    if (!t->name)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
    return EC_OK;
}

/* Parse and validate the mapped file st->files[fi]; appends its tensors and metadata. */
static enum ec_status st_parse_file(struct st_build *b, size_t fi, struct ec_diag *d)
{
    struct ec_safetensors *st = b->st;
    const struct ec_mapped_file *mf = &st->files[fi];
    const char *path = mf->path;
    const uint8_t *buf = mf->data;
    uint64_t size = mf->size_bytes;
    enum ec_status s = EC_OK;

    if (size < 8)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: at byte 0: file has %llu bytes, too short for the "
                       "8-byte header length",
                       path, (unsigned long long)size);
    uint64_t n = rd_le64(buf);
    if (n < 2)
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte 0: header length %llu is too small", path,
                       (unsigned long long)n);
    if (n > EC_ST_MAX_HEADER_BYTES)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: at byte 0: header length %llu exceeds the limit of %u", path,
                       (unsigned long long)n, EC_ST_MAX_HEADER_BYTES);
    if (n > size - 8)
        return ec_fail(
            d, EC_ERR_FORMAT,
            "%s: at byte 0: header length %llu runs past the end of the file (%llu bytes)", path,
            (unsigned long long)n, (unsigned long long)size);
    const uint8_t *hdr = buf + 8;
    int64_t bad = ec_utf8_invalid_at(hdr, (size_t)n);
    if (bad >= 0)
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %llu: header is not valid UTF-8", path,
                       (unsigned long long)(8 + bad));

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)hdr, (size_t)n, &end, 0);
    if (!root) {
        uint64_t at = 8;
        if (end && (const uint8_t *)end >= hdr && (const uint8_t *)end <= hdr + n)
            at = 8 + (uint64_t)((const uint8_t *)end - hdr);
        return ec_fail(d, EC_ERR_FORMAT, "%s: at byte %llu: header is not valid JSON", path,
                       (unsigned long long)at);
    }
    for (const uint8_t *p = (const uint8_t *)end; p < hdr + n; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            s = ec_fail(d, EC_ERR_FORMAT, "%s: at byte %llu: unexpected data after the JSON header",
                        path, (unsigned long long)(8 + (uint64_t)(p - hdr)));
            goto out_json;
        }
    }
    if (!cJSON_IsObject(root)) {
        s = ec_fail(d, EC_ERR_FORMAT, "%s: at byte 8: header is not a JSON object", path);
        goto out_json;
    }

    size_t first = st->n_tensors;
    bool seen_meta = false;
    uint64_t data_start = 8 + n;
    uint64_t data_size = size - data_start;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string) {
            s = ec_fail(d, EC_ERR_FORMAT, "%s: at byte 8: header entry without a key", path);
            goto out_json;
        }
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta) {
                s = ec_fail(d, EC_ERR_FORMAT, "%s: key '__metadata__' at byte %llu: duplicate key",
                            path, (unsigned long long)st_key_offset(hdr, n, "__metadata__"));
                goto out_json;
            }
            seen_meta = true;
            s = st_parse_meta(b, path, hdr, n, e, d);
            if (s)
                goto out_json;
            continue;
        }
        struct ec_st_tensor t;
        memset(&t, 0, sizeof t);
        uint64_t begin = 0, endo = 0;
        s = st_parse_entry(path, hdr, n, e, &t, &begin, &endo, d);
        if (s)
            goto out_json;
        if (endo > data_size) {
            s = ec_fail(d, EC_ERR_FORMAT,
                        "%s: tensor '%s' at byte %llu: data ends at byte %llu, past the end of the "
                        "file (%llu bytes)",
                        path, t.name, (unsigned long long)(data_start + begin),
                        (unsigned long long)(data_start + endo), (unsigned long long)size);
            free(t.name);
            goto out_json;
        }
        t.data = buf + data_start + begin;
        t.n_bytes = endo - begin;
        t.file = path;
        t.file_offset = data_start + begin;
        s = st_push_tensor(b, &t, d);
        if (s) {
            free(t.name);
            goto out_json;
        }
    }

    /* Contiguity: sorted by offset, each tensor starts where the previous ends. */
    size_t nt = st->n_tensors - first;
    struct st_range *r = malloc((nt ? nt : 1) * sizeof *r);
    if (!r) {
        s = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
        goto out_json;
    }
    for (size_t i = 0; i < nt; i++) {
        const struct ec_st_tensor *t = &st->tensors[first + i];
        r[i].begin = t->file_offset - data_start;
        r[i].end = r[i].begin + t->n_bytes;
        r[i].idx = first + i;
    }
    qsort(r, nt, sizeof *r, cmp_range);
    uint64_t pos = 0;
    for (size_t i = 0; i < nt; i++) {
        const struct ec_st_tensor *t = &st->tensors[r[i].idx];
        const char *prev = i ? st->tensors[r[i - 1].idx].name : NULL;
        if (r[i].begin > pos) {
            s = ec_fail(d, EC_ERR_FORMAT,
                        "%s: tensor '%s' at byte %llu: gap of %llu bytes before it (after %s%s%s)",
                        path, t->name, (unsigned long long)t->file_offset,
                        (unsigned long long)(r[i].begin - pos), prev ? "'" : "",
                        prev ? prev : "the header", prev ? "'" : "");
            break;
        }
        if (r[i].begin < pos) {
            s = ec_fail(d, EC_ERR_FORMAT, "%s: tensor '%s' at byte %llu: overlaps tensor '%s'",
                        path, t->name, (unsigned long long)t->file_offset, prev);
            break;
        }
        pos = r[i].end;
    }
    if (!s && pos != data_size)
        s = ec_fail(d, EC_ERR_FORMAT,
                    "%s: at byte %llu: %llu bytes after the last tensor's data are not described "
                    "by the header",
                    path, (unsigned long long)(data_start + pos),
                    (unsigned long long)(data_size - pos));
    free(r);

out_json:
    cJSON_Delete(root);
    return s;
}

/* Stored tensors' names sorted (pointers into st->tensors[i].name), for
 * duplicate checks and lookups that must stay O(n log n) on hostile input. */
static const char **st_sorted_names(const struct ec_safetensors *st, size_t n)
{
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return NULL;
    for (size_t i = 0; i < n; i++)
        names[i] = st->tensors[i].name;
    qsort(names, n, sizeof *names, cmp_str_ptr);
    return names;
}

static bool st_sorted_has(const char **names, size_t n, const char *name)
{
    return bsearch(&name, names, n, sizeof *names, cmp_str_ptr) != NULL;
}

/* Rejects a name stored twice (within a file or across shards). */
static enum ec_status st_check_duplicates(const struct ec_safetensors *st, struct ec_diag *d)
{
    const char **names = st_sorted_names(st, st->n_tensors);
    if (!names)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    enum ec_status s = EC_OK;
    for (size_t i = 1; i < st->n_tensors; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            const struct ec_st_tensor *t = NULL;
            for (size_t k = st->n_tensors; k-- > 0;)
                if (strcmp(st->tensors[k].name, names[i]) == 0) {
                    t = &st->tensors[k];
                    break;
                }
            s = ec_fail(d, EC_ERR_FORMAT,
                        "%s: tensor '%s' at byte %llu: name appears more than once", t->file,
                        t->name, (unsigned long long)t->file_offset);
            break;
        }
    }
    free(names);
    return s;
}

/* Tied-weight aliases from __metadata__ (see the header). */
static enum ec_status st_add_aliases(struct st_build *b, struct ec_diag *d)
{
    struct ec_safetensors *st = b->st;
    size_t n_stored = st->n_tensors;
    const char **names = st_sorted_names(st, n_stored);
    if (!names)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    enum ec_status s = EC_OK;
    for (size_t i = 0; i < st->n_meta && !s; i++) {
        const char *k = st->meta_keys[i], *v = st->meta_values[i];
        if (st_sorted_has(names, n_stored, k) || !st_sorted_has(names, n_stored, v))
            continue;
        bool dup = false; /* same alias key in two shards' metadata */
        for (size_t j = n_stored; j < st->n_tensors; j++)
            if (strcmp(st->tensors[j].name, k) == 0)
                dup = true;
        if (dup)
            continue;
        const struct ec_st_tensor *target = NULL;
        for (size_t j = 0; j < n_stored; j++)
            if (strcmp(st->tensors[j].name, v) == 0) {
                target = &st->tensors[j];
                break;
            }
        struct ec_st_tensor a = *target;
        a.alias_of = target->name;
        a.name = strdup(k);
        if (!a.name) {
            s = ec_fail(d, EC_ERR_NOMEM, "out of memory");
            break;
        }
        s = st_push_tensor(b, &a, d);
        if (s)
            free(a.name);
    }
    free(names);
    return s;
}

static enum ec_status st_open_single(struct st_build *b, const char *path, struct ec_diag *d)
{
    struct ec_safetensors *st = b->st;
    st->files = calloc(1, sizeof *st->files);
    if (!st->files)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", path);
    enum ec_status s = ec_mapped_file_open(&st->files[0], path, d);
    if (s)
        return s;
    st->n_files = 1;
    return st_parse_file(b, 0, d);
}

static int cmp_entry_name(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

static int cmp_key_entry(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const cJSON *const *)elem)->string);
}

static enum ec_status st_open_index(struct st_build *b, const char *index_path, struct ec_diag *d)
{
    struct ec_safetensors *st = b->st;
    char *text = NULL, *dir = NULL;
    size_t len = 0;
    const cJSON **entries = NULL;
    enum ec_status s = ec_read_file(index_path, ST_MAX_INDEX_BYTES, &text, &len, d);
    if (s)
        return s;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        unsigned long long at = (e >= text && e <= text + len) ? (unsigned long long)(e - text) : 0;
        s = ec_fail(d, EC_ERR_FORMAT, "%s: at byte %llu: not valid JSON", index_path, at);
        goto out_text;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        s = ec_fail(d, EC_ERR_FORMAT, "%s: at byte 0: missing or non-object 'weight_map'",
                    index_path);
        goto out_json;
    }
    const char *slash = strrchr(index_path, '/');
    dir = slash ? strndup(index_path, (size_t)(slash - index_path + 1)) : strdup("./");
    size_t n_entries = (size_t)cJSON_GetArraySize(wm);
    entries = malloc((n_entries ? n_entries : 1) * sizeof *entries);
    if (!dir || !entries) {
        s = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", index_path);
        goto out_json;
    }
    /* Distinct shard names in order of first appearance. */
    size_t k = 0;
    for (const cJSON *e = wm->child; e; e = e->next, k++) {
        if (!cJSON_IsString(e) || !e->valuestring || !e->valuestring[0]) {
            s = ec_fail(d, EC_ERR_FORMAT,
                        "%s: tensor '%s' at byte %llu: weight_map value is not a file name",
                        index_path, e->string ? e->string : "?",
                        e->string ? st_index_offset(text, len, e->string) : 0ull);
            goto out_json;
        }
        const char *f = e->valuestring;
        if (f[0] == '/' || strstr(f, "..")) {
            s = ec_fail(d, EC_ERR_FORMAT,
                        "%s: tensor '%s' at byte %llu: shard '%s' is outside the folder",
                        index_path, e->string, st_index_offset(text, len, e->string), f);
            goto out_json;
        }
        entries[k] = e;
        bool known = false; /* compared with the shards opened so far (few) */
        size_t dl = strlen(dir);
        for (size_t i = 0; i < st->n_files && !known; i++)
            known = strcmp(st->files[i].path + dl, f) == 0;
        if (known)
            continue;
        struct ec_mapped_file *nf = realloc(st->files, (st->n_files + 1) * sizeof *nf);
        if (!nf) {
            s = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", index_path);
            goto out_json;
        }
        st->files = nf;
        char *shard = ec_path_join(dir, f);
        if (!shard) {
            s = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", index_path);
            goto out_json;
        }
        if (!ec_path_exists(shard)) {
            s = ec_fail(d, EC_ERR_FORMAT,
                        "%s: tensor '%s' at byte %llu: names shard '%s', which does "
                        "not exist",
                        index_path, e->string, st_index_offset(text, len, e->string), f);
            free(shard);
            goto out_json;
        }
        s = ec_mapped_file_open(&st->files[st->n_files], shard, d);
        free(shard);
        if (s) {
            ec_diag_prefix(d, "%s: tensor '%s' names shard '%s'", index_path, e->string, f);
            goto out_json;
        }
        st->n_files++;
        s = st_parse_file(b, st->n_files - 1, d);
        if (s)
            goto out_json;
    }
    s = st_check_duplicates(st, d);
    if (s)
        goto out_json;
    qsort(entries, n_entries, sizeof *entries, cmp_entry_name);
    for (size_t i = 1; i < n_entries; i++)
        if (strcmp(entries[i - 1]->string, entries[i]->string) == 0) {
            s = ec_fail(d, EC_ERR_FORMAT,
                        "%s: tensor '%s' at byte %llu: listed twice in weight_map", index_path,
                        entries[i]->string, st_index_offset(text, len, entries[i]->string));
            goto out_json;
        }
    for (size_t i = 0; i < st->n_tensors; i++) {
        const struct ec_st_tensor *t = &st->tensors[i];
        const cJSON *const *hit =
            bsearch(t->name, entries, n_entries, sizeof *entries, cmp_key_entry);
        const char *base = strrchr(t->file, '/');
        base = base ? base + 1 : t->file;
        if (!hit) {
            s = ec_fail(d, EC_ERR_FORMAT,
                        "%s: tensor '%s' at byte %llu: not listed in the weight_map of '%s'",
                        t->file, t->name, (unsigned long long)t->file_offset, index_path);
            goto out_json;
        }
        const char *want = (*hit)->valuestring;
        const char *wb = strrchr(want, '/');
        /* compare full relative names: the shard path is dir + want */
        size_t dl = strlen(dir);
        if (strncmp(t->file, dir, dl) != 0 || strcmp(t->file + dl, want) != 0) {
            s = ec_fail(d, EC_ERR_FORMAT,
                        "%s: tensor '%s' at byte %llu: stored in '%s' but weight_map of '%s' "
                        "places it in '%s'",
                        t->file, t->name, (unsigned long long)t->file_offset, base, index_path,
                        wb ? wb + 1 : want);
            goto out_json;
        }
    }
    if (n_entries != st->n_tensors) {
        /* Some weight_map entry names a tensor its shard does not hold. */
        const char **names = st_sorted_names(st, st->n_tensors);
        if (!names) {
            s = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", index_path);
            goto out_json;
        }
        for (size_t i = 0; i < n_entries; i++) {
            if (!st_sorted_has(names, st->n_tensors, entries[i]->string)) {
                free(names);
                s = ec_fail(d, EC_ERR_FORMAT,
                            "%s: tensor '%s' at byte %llu: weight_map places it in '%s', "
                            "which does not hold it",
                            index_path, entries[i]->string,
                            st_index_offset(text, len, entries[i]->string),
                            entries[i]->valuestring);
                goto out_json;
            }
        }
        free(names);
        s = ec_fail(d, EC_ERR_FORMAT, "%s: at byte 0: weight_map has %zu entries for %zu tensors",
                    index_path, n_entries, st->n_tensors);
        goto out_json;
    }
out_json:
    cJSON_Delete(root);
out_text:
    free(entries);
    free(dir);
    free(text);
    return s;
}

static bool st_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* A folder: the index if present, else model.safetensors, else its only *.safetensors. */
static enum ec_status st_open_dir(struct st_build *b, const char *dir, struct ec_diag *d)
{
    char *p = ec_path_join(dir, ST_INDEX_NAME);
    if (!p)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", dir);
    if (ec_path_exists(p)) {
        enum ec_status s = st_open_index(b, p, d);
        free(p);
        return s;
    }
    free(p);
    p = ec_path_join(dir, ST_SINGLE_NAME);
    if (!p)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", dir);
    if (!ec_path_exists(p)) {
        free(p);
        p = NULL;
        DIR *dh = opendir(dir);
        if (!dh)
            return ec_fail(d, EC_ERR_IO, "%s: cannot list the folder", dir);
        int count = 0;
        for (struct dirent *de; (de = readdir(dh));) {
            if (st_ends_with(de->d_name, ".safetensors")) {
                count++;
                free(p);
                p = ec_path_join(dir, de->d_name);
            }
        }
        closedir(dh);
        if (count != 1) {
            free(p);
            return ec_fail(d, EC_ERR_IO,
                           "%s: no %s, no %s and %d other .safetensors files (need exactly one)",
                           dir, ST_INDEX_NAME, ST_SINGLE_NAME, count);
        }
        if (!p)
            return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", dir);
    }
    enum ec_status s = st_open_single(b, p, d);
    free(p);
    return s;
}

enum ec_status ec_safetensors_open(struct ec_safetensors *st, const char *path, struct ec_diag *d)
{
    memset(st, 0, sizeof *st);
    struct st_build b = {.st = st};
    enum ec_status s;
    if (ec_path_is_dir(path))
        s = st_open_dir(&b, path, d);
    else if (st_ends_with(path, ".json"))
        s = st_open_index(&b, path, d);
    else
        s = st_open_single(&b, path, d);
    if (!s)
        s = st_check_duplicates(st, d);
    if (!s)
        s = st_add_aliases(&b, d);
    if (s)
        ec_safetensors_close(st);
    return s;
}

void ec_safetensors_close(struct ec_safetensors *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    for (size_t i = 0; i < st->n_files; i++)
        ec_mapped_file_close(&st->files[i]);
    free(st->files);
    memset(st, 0, sizeof *st);
}

const struct ec_st_tensor *ec_safetensors_find(const struct ec_safetensors *st, const char *name)
{
    for (size_t i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0)
            return &st->tensors[i];
    return NULL;
}

const char *ec_safetensors_meta(const struct ec_safetensors *st, const char *key)
{
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0)
            return st->meta_values[i];
    return NULL;
}
