/* quantizers/imatrix.c: llama.cpp legacy importance-matrix files (see
 * edgec/imatrix.h for the layout). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/imatrix.h"
#include "edgec/io.h"

static int32_t rd_i32(const uint8_t *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return (int32_t)v;
}

static void wr_i32(uint8_t *p, int32_t x)
{
    uint32_t v = (uint32_t)x;
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void ec_imatrix_release(struct ec_imatrix *im)
{
    if (!im)
        return;
    for (size_t i = 0; i < im->n; i++) {
        free(im->entries[i].name);
        free(im->entries[i].values);
    }
    free(im->entries);
    free(im->dataset);
    free(im->path);
    memset(im, 0, sizeof *im);
}

const struct ec_imatrix_entry *ec_imatrix_find(const struct ec_imatrix *im, const char *name)
{
    for (size_t i = 0; i < im->n; i++)
        if (strcmp(im->entries[i].name, name) == 0)
            return &im->entries[i];
    return NULL;
}

void ec_imatrix_entry_weights(const struct ec_imatrix_entry *e, float *dst)
{
    if (e->ncall > 0) {
        const float nc = (float)e->ncall;
        for (uint32_t i = 0; i < e->nval; i++)
            dst[i] = e->values[i] / nc;
    } else {
        memcpy(dst, e->values, (size_t)e->nval * sizeof *dst);
    }
}

/* Values are stored little-endian; this build assumes a little-endian host
 * for the copy (checked at run time, converted otherwise). */
static void load_floats(float *dst, const uint8_t *src, uint32_t n)
{
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe == 1) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)rd_i32(src + 4 * (size_t)i);
        memcpy(&dst[i], &v, 4);
    }
}

enum ec_status ec_imatrix_parse(struct ec_imatrix *im, const uint8_t *buf, uint64_t n,
                                const char *name, struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    uint64_t off = 0;
    memset(im, 0, sizeof *im);
    im->path = strdup(name);
    if (!im->path)
        return ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", name);

    if (n < 4) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: at byte 0: file has %llu bytes, too short for the "
                                       "entry count", name, (unsigned long long)n);
        goto out_fail;
    }
    const int32_t n_entries = rd_i32(buf);
    off = 4;
    /* each entry takes at least 12 bytes plus one value (nval >= 1) */
    if (n_entries < 1 || (uint64_t)n_entries > (n - 4) / 16) {
        st = ec_fail(d, EC_ERR_FORMAT,
                     "%s: at byte 0: entry count %d does not fit a file of %llu bytes", name,
                     n_entries, (unsigned long long)n);
        goto out_fail;
    }
    im->entries = calloc((size_t)n_entries, sizeof *im->entries);
    if (!im->entries) {
        st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory for %d entries", name, n_entries);
        goto out_fail;
    }
    for (int32_t i = 0; i < n_entries; i++) {
        const uint64_t start = off;
        if (n - off < 4) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: entry %d at byte %llu: file ends before the name "
                                           "length", name, i, (unsigned long long)off);
            goto out_fail;
        }
        const int32_t len = rd_i32(buf + off);
        off += 4;
        if (len < 1 || (uint64_t)len > n - off) {
            st = ec_fail(d, EC_ERR_FORMAT,
                         "%s: entry %d at byte %llu: name length %d exceeds the %llu bytes left",
                         name, i, (unsigned long long)start, len,
                         (unsigned long long)(n - off));
            goto out_fail;
        }
        if (memchr(buf + off, 0, (size_t)len)) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: entry %d at byte %llu: name contains a NUL byte",
                         name, i, (unsigned long long)start);
            goto out_fail;
        }
        char *ename = malloc((size_t)len + 1);
        if (!ename) {
            st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", name);
            goto out_fail;
        }
        memcpy(ename, buf + off, (size_t)len);
        ename[len] = 0;
        off += (uint64_t)len;
        if (n - off < 8) {
            free(ename);
            st = ec_fail(d, EC_ERR_FORMAT,
                         "%s: entry %d ('%.*s') at byte %llu: file ends before ncall/nval", name,
                         i, len, (const char *)buf + start + 4, (unsigned long long)off);
            goto out_fail;
        }
        const int32_t ncall = rd_i32(buf + off);
        const int32_t nval = rd_i32(buf + off + 4);
        if (nval < 1 || (uint64_t)nval > (n - off - 8) / 4) {
            st = ec_fail(d, EC_ERR_FORMAT,
                         "%s: entry %d ('%s') at byte %llu: %d values do not fit the %llu bytes "
                         "left",
                         name, i, ename, (unsigned long long)(off + 4), nval,
                         (unsigned long long)(n - off - 8));
            free(ename);
            goto out_fail;
        }
        off += 8;
        float *vals = malloc((size_t)nval * sizeof *vals);
        if (!vals) {
            free(ename);
            st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory for %d values", name, nval);
            goto out_fail;
        }
        load_floats(vals, buf + off, (uint32_t)nval);
        for (int32_t k = 0; k < nval; k++) {
            if (!isfinite(vals[k])) {
                st = ec_fail(d, EC_ERR_NUMERIC,
                             "%s: entry %d ('%s') at byte %llu: value %d is not finite", name, i,
                             ename, (unsigned long long)(off + 4 * (uint64_t)k), k);
                free(ename);
                free(vals);
                goto out_fail;
            }
        }
        off += 4 * (uint64_t)nval;

        /* a repeated name replaces the earlier entry */
        struct ec_imatrix_entry *e = NULL;
        for (size_t k = 0; k < im->n; k++) {
            if (strcmp(im->entries[k].name, ename) == 0) {
                e = &im->entries[k];
                free(e->name);
                free(e->values);
                break;
            }
        }
        if (!e)
            e = &im->entries[im->n++];
        e->name = ename;
        e->ncall = ncall;
        e->nval = (uint32_t)nval;
        e->values = vals;
        e->offset = start;
    }

    if (off < n) {
        if (n - off < 8) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: at byte %llu: %llu trailing bytes, too short for "
                                           "last_call and the dataset length",
                         name, (unsigned long long)off, (unsigned long long)(n - off));
            goto out_fail;
        }
        im->has_trailer = true;
        im->last_call = rd_i32(buf + off);
        const int32_t dlen = rd_i32(buf + off + 4);
        if (dlen < 0 || (uint64_t)dlen > n - off - 8) {
            st = ec_fail(d, EC_ERR_FORMAT,
                         "%s: at byte %llu: dataset name length %d exceeds the %llu bytes left",
                         name, (unsigned long long)(off + 4), dlen,
                         (unsigned long long)(n - off - 8));
            goto out_fail;
        }
        off += 8;
        im->dataset = malloc((size_t)dlen + 1);
        if (!im->dataset) {
            st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", name);
            goto out_fail;
        }
        memcpy(im->dataset, buf + off, (size_t)dlen);
        im->dataset[dlen] = 0;
        off += (uint64_t)dlen;
        if (off != n) {
            st = ec_fail(d, EC_ERR_FORMAT, "%s: at byte %llu: %llu unexpected bytes after the "
                                           "dataset name",
                         name, (unsigned long long)off, (unsigned long long)(n - off));
            goto out_fail;
        }
    } else {
        im->dataset = strdup("");
        if (!im->dataset) {
            st = ec_fail(d, EC_ERR_NOMEM, "%s: out of memory", name);
            goto out_fail;
        }
    }
    return EC_OK;

out_fail:
    ec_imatrix_release(im);
    return st;
}

enum ec_status ec_imatrix_load(struct ec_imatrix *im, const char *path, struct ec_diag *d)
{
    struct ec_mapped_file f;
    memset(im, 0, sizeof *im);
    enum ec_status st = ec_mapped_file_open(&f, path, d);
    if (st != EC_OK)
        return st;
    st = ec_imatrix_parse(im, f.data, f.size_bytes, path, d);
    ec_mapped_file_close(&f);
    return st;
}

enum ec_status ec_imatrix_save(const struct ec_imatrix *im, const char *path, struct ec_diag *d)
{
    struct ec_outfile o;
    uint8_t b[8];
    enum ec_status st;
    if (im->n < 1 || im->n > INT32_MAX)
        return ec_fail(d, EC_ERR_ARG, "%s: cannot write %zu imatrix entries", path, im->n);
    st = ec_outfile_open(&o, path, NULL, d);
    if (st != EC_OK)
        return st;
    wr_i32(b, (int32_t)im->n);
    st = ec_outfile_write(&o, b, 4, d);
    for (size_t i = 0; st == EC_OK && i < im->n; i++) {
        const struct ec_imatrix_entry *e = &im->entries[i];
        size_t len = strlen(e->name);
        if (len < 1 || len > INT32_MAX || e->nval < 1 || e->nval > INT32_MAX) {
            st = ec_fail(d, EC_ERR_ARG, "%s: entry %zu ('%s'): bad name or value count", path, i,
                         e->name);
            break;
        }
        wr_i32(b, (int32_t)len);
        st = ec_outfile_write(&o, b, 4, d);
        if (st == EC_OK)
            st = ec_outfile_write(&o, e->name, len, d);
        wr_i32(b, e->ncall);
        wr_i32(b + 4, (int32_t)e->nval);
        if (st == EC_OK)
            st = ec_outfile_write(&o, b, 8, d);
        for (uint32_t k = 0; st == EC_OK && k < e->nval; k++) {
            uint32_t v;
            memcpy(&v, &e->values[k], 4);
            wr_i32(b, (int32_t)v);
            st = ec_outfile_write(&o, b, 4, d);
        }
    }
    const char *ds = im->dataset ? im->dataset : "";
    size_t dlen = strlen(ds);
    wr_i32(b, im->last_call);
    wr_i32(b + 4, (int32_t)dlen);
    if (st == EC_OK)
        st = ec_outfile_write(&o, b, 8, d);
    if (st == EC_OK && dlen)
        st = ec_outfile_write(&o, ds, dlen, d);
    if (st == EC_OK)
        return ec_outfile_commit(&o, d);
    ec_outfile_abort(&o);
    return st;
}
