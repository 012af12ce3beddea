/* Importance-matrix collection through the engine's linear-input hook
 * (see edgec/calib.h). */
#include <stdlib.h>
#include <string.h>

#include "edgec/calib.h"
#include "edgec/tokenizer.h"

struct acc {
    char *name;
    int64_t n_in;
    float *sum;    /* [n_in] sum of x^2, float, in token order (as llama-imatrix) */
    int64_t count; /* tokens seen (the same for every column) */
    int32_t ncall; /* matmul calls */
};

struct collector {
    struct acc *a;
    size_t n, cap;
    enum ec_status status; /* first allocation failure inside the hook */
};

static void collect(void *user, int layer, const char *name, const float *x, int64_t n_tokens,
                    int64_t n_in)
{
    struct collector *c = user;
    if (c->status != EC_OK || layer < 0 || strncmp(name, "blk.", 4) != 0)
        return;
    struct acc *e = NULL;
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->a[i].name, name) == 0) {
            e = &c->a[i];
            break;
        }
    }
    if (!e) {
        if (c->n == c->cap) {
            size_t ncap = c->cap ? 2 * c->cap : 64;
            struct acc *na = realloc(c->a, ncap * sizeof *na);
            if (!na) {
                c->status = EC_ERR_NOMEM;
                return;
            }
            c->a = na;
            c->cap = ncap;
        }
        e = &c->a[c->n];
        memset(e, 0, sizeof *e);
        e->name = strdup(name);
        e->sum = calloc((size_t)n_in, sizeof *e->sum);
        e->n_in = n_in;
        if (!e->name || !e->sum) {
            free(e->name);
            free(e->sum);
            c->status = EC_ERR_NOMEM;
            return;
        }
        c->n++;
    }
    if (e->n_in != n_in) {
        c->status = EC_ERR_INTERNAL;
        return;
    }
    e->ncall++;
    for (int64_t t = 0; t < n_tokens; t++) {
        const float *row = x + t * n_in;
        for (int64_t j = 0; j < n_in; j++)
            e->sum[j] += row[j] * row[j];
    }
    e->count += n_tokens;
}

enum ec_status ec_imatrix_compute(const struct ec_model *m, const int32_t *tokens,
                                  int64_t n_tokens, const struct ec_imatrix_opts *o,
                                  struct ec_imatrix *out, struct ec_ppl_result *ppl,
                                  struct ec_diag *d)
{
    struct collector c = {0};
    struct ec_engine *e = NULL;
    enum ec_status st;
    memset(out, 0, sizeof *out);

    struct ec_engine_opts eo;
    ec_engine_opts_init(&eo);
    eo.n_ctx = (uint32_t)o->n_ctx;
    eo.n_threads = o->n_threads;
    eo.kv_f16 = !o->kv_f32;
    eo.on_linear_input = collect;
    eo.user = &c;
    if ((st = ec_engine_new(&e, m, &eo, d)) != EC_OK)
        goto out_free;
    struct ec_ppl_opts po = {
        .n_ctx = o->n_ctx,
        .n_batch = o->n_batch,
        .max_chunks = o->max_chunks,
        .bos_id = ec_vocab_chunk_bos(&m->vocab),
        .on_chunk = o->on_chunk,
        .user = o->user,
    };
    struct ec_ppl_result r;
    if ((st = ec_perplexity_run(e, tokens, n_tokens, &po, &r, d)) != EC_OK)
        goto out_free;
    if (c.status != EC_OK) {
        st = ec_fail(d, c.status, "imatrix: %s while collecting layer inputs",
                     c.status == EC_ERR_NOMEM ? "out of memory" : "inconsistent input widths");
        goto out_free;
    }
    if (ppl)
        *ppl = r;

    out->entries = calloc(c.n ? c.n : 1, sizeof *out->entries);
    out->dataset = strdup(o->dataset ? o->dataset : "");
    if (!out->entries || !out->dataset) {
        st = ec_fail(d, EC_ERR_NOMEM, "imatrix: out of memory");
        goto out_free;
    }
    out->has_trailer = true;
    out->last_call = (int32_t)r.n_chunks;
    for (size_t i = 0; i < c.n; i++) {
        struct ec_imatrix_entry *en = &out->entries[out->n++];
        struct acc *a = &c.a[i];
        en->name = a->name;
        a->name = NULL;
        en->ncall = a->ncall;
        en->nval = (uint32_t)a->n_in;
        en->values = a->sum; /* normalised in place: (sum / count) * ncall, in float */
        a->sum = NULL;
        for (uint32_t j = 0; j < en->nval; j++)
            en->values[j] = (en->values[j] / (float)a->count) * (float)a->ncall;
    }
    st = EC_OK;

out_free:
    ec_engine_free(e);
    for (size_t i = 0; i < c.n; i++) {
        free(c.a[i].name);
        free(c.a[i].sum);
    }
    free(c.a);
    if (st != EC_OK)
        ec_imatrix_release(out);
    return st;
}
