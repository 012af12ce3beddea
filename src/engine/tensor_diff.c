/* Per-tensor error of CAND against REF, tensors matched by GGUF name and
 * shape, streamed in row chunks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/quant.h"
#include "edgec/validate.h"

#define CHUNK_ELEMS (1u << 20) /* ~4 MiB of floats per side */

static bool is_plain(enum ec_dtype t)
{
    return t == EC_F32 || t == EC_F16 || t == EC_BF16;
}

static enum ec_status read_rows(const struct ec_model *m, const struct ec_model_tensor *t,
                                uint64_t row0, uint64_t n, float *dst, struct ec_diag *d)
{
    if (is_plain(t->dtype))
        return ec_model_tensor_read_rows_f32(m, t, row0, n, dst, d);
    const size_t rb = ec_dtype_row_bytes(t->dtype, t->ne[0]);
    enum ec_status st = ec_dequantize_rows(t->dtype, t->data + row0 * rb, dst, (int64_t)n,
                                           (int64_t)t->ne[0], d);
    if (st != EC_OK)
        ec_diag_prefix(d, "%s: tensor '%s'", t->src_file, t->name);
    return st;
}

static int layer_of(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    char *end = NULL;
    long l = strtol(name + 4, &end, 10);
    return end && *end == '.' && l >= 0 && l < 1 << 20 ? (int)l : -1;
}

static bool same_shape(const struct ec_model_tensor *a, const struct ec_model_tensor *b)
{
    for (int i = 0; i < EC_GGUF_MAX_DIMS; i++)
        if (a->ne[i] != b->ne[i])
            return false;
    return true;
}

enum ec_status ec_tensor_compare(const struct ec_model *ref, const struct ec_model *cand,
                                 struct ec_tensor_report *r, struct ec_diag *d)
{
    memset(r, 0, sizeof *r);
    enum ec_status st = EC_OK;
    float *a = NULL, *b = NULL;
    r->t = calloc(ref->n_tensors ? ref->n_tensors : 1, sizeof *r->t);
    if (!r->t)
        return ec_fail(d, EC_ERR_NOMEM, "validate: out of memory");
    for (size_t i = 0; i < cand->n_tensors; i++)
        if (!ec_model_find(ref, cand->tensors[i].name))
            r->n_only_cand++;
    for (size_t i = 0; i < ref->n_tensors; i++) {
        const struct ec_model_tensor *tr = &ref->tensors[i];
        const struct ec_model_tensor *tc = ec_model_find(cand, tr->name);
        if (!tc) {
            r->n_only_ref++;
            continue;
        }
        if (!same_shape(tr, tc)) {
            r->n_shape_mismatch++;
            continue;
        }
        const uint64_t row = tr->ne[0] ? tr->ne[0] : 1;
        const uint64_t n_rows = ec_model_tensor_n_rows(tr);
        uint64_t per = CHUNK_ELEMS / row;
        if (per == 0)
            per = 1;
        if (per > n_rows)
            per = n_rows;
        free(a);
        free(b);
        a = malloc((size_t)(per * row) * sizeof *a);
        b = malloc((size_t)(per * row) * sizeof *b);
        if (!a || !b) {
            st = ec_fail(d, EC_ERR_NOMEM, "validate: tensor '%s': cannot allocate %llu rows",
                         tr->name, (unsigned long long)per);
            goto out_fail;
        }
        /* per-tensor rows in the permuted (GGUF) layout on both sides: a
         * permuted vector (q/k bias) reads one element per row */
        const uint64_t row_len = ec_model_tensor_n_elems(tr) / n_rows;
        double sdd = 0, srr = 0, scc = 0, src = 0;
        const uint64_t n_rows_c = ec_model_tensor_n_rows(tc);
        if (n_rows_c != n_rows && per != n_rows) {
            /* one side is a permuted vector (element rows), the other not:
             * only small vectors are permuted, so read both whole */
            r->n_shape_mismatch++;
            continue;
        }
        for (uint64_t r0 = 0; r0 < n_rows; r0 += per) {
            uint64_t n = n_rows - r0 < per ? n_rows - r0 : per;
            if ((st = read_rows(ref, tr, r0, n, a, d)) != EC_OK ||
                (st = read_rows(cand, tc, n_rows_c == n_rows ? r0 : 0,
                                n_rows_c == n_rows ? n : n_rows_c, b, d)) != EC_OK)
                goto out_fail;
            for (uint64_t j = 0; j < n * row_len; j++) {
                double x = a[j], y = b[j], e = x - y;
                sdd += e * e;
                srr += x * x;
                scc += y * y;
                src += x * y;
            }
        }
        struct ec_tensor_err *e = &r->t[r->n++];
        if (!(e->name = strdup(tr->name))) {
            st = ec_fail(d, EC_ERR_NOMEM, "validate: out of memory");
            goto out_fail;
        }
        const double n_el = (double)ec_model_tensor_n_elems(tr);
        e->layer = layer_of(tr->name);
        e->ref_type = tr->dtype;
        e->cand_type = tc->dtype;
        e->n_elems = ec_model_tensor_n_elems(tr);
        e->rmse = sqrt(sdd / n_el);
        e->rel_err = srr > 0 ? sqrt(sdd / srr) : (sdd > 0 ? INFINITY : 0.0);
        e->snr_db = sdd > 0 ? 10.0 * log10(srr / sdd) : INFINITY;
        e->cosine = srr > 0 && scc > 0 ? src / sqrt(srr * scc) : (srr == scc ? 1.0 : 0.0);
    }
    free(a);
    free(b);
    return EC_OK;
out_fail:
    free(a);
    free(b);
    ec_tensor_report_release(r);
    return st;
}

void ec_tensor_report_release(struct ec_tensor_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->t[i].name);
    free(r->t);
    memset(r, 0, sizeof *r);
}
