/* pruners/prune_run.c: the `edgec prune` driver for unstructured and N:M
 * pruning (see edgec/prune_run.h for the sequence), the result and its JSON.
 *
 * Output order: tensors outside blocks (token_embd, rope_freqs) first, then
 * block 0..n-1 (each in the input's order), then output_norm and output, so
 * that a block can be written as soon as it is pruned.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edgec/convert.h"
#include "edgec/engine.h"
#include "edgec/log.h"
#include "edgec/prune_run.h"
#include "edgec/quantize.h"
#include "pruners/calib.h"
#include "pruners/prune_out.h"

bool ec_prune_method_from_name(const char *s, enum ec_prune_method *out)
{
    static const char *const names[] = {"magnitude", "wanda", "sparsegpt"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum ec_prune_method)i;
            return true;
        }
    return false;
}

const char *ec_prune_method_name(enum ec_prune_method m)
{
    switch (m) {
    case EC_PRUNE_MAGNITUDE: return "magnitude";
    case EC_PRUNE_WANDA: return "wanda";
    case EC_PRUNE_SPARSEGPT: return "sparsegpt";
    }
    return "?";
}

enum ec_status ec_sparsity_parse(const char *s, struct ec_sparsity *sp, struct ec_diag *d)
{
    memset(sp, 0, sizeof *sp);
    char *end;
    if (strchr(s, ':')) {
        long n = strtol(s, &end, 10);
        if (end == s || *end != ':')
            goto bad;
        const char *m_s = end + 1;
        long m = strtol(m_s, &end, 10);
        if (end == m_s || *end || n <= 0 || m <= n || m > 64)
            goto bad;
        sp->prune_n = (int)n;
        sp->prune_m = (int)m;
        return EC_OK;
    }
    double r = strtod(s, &end);
    if (end == s || *end || !(r >= 0.0 && r < 1.0))
        goto bad;
    sp->ratio = r;
    return EC_OK;
bad:
    return ec_fail(d, EC_ERR_ARG, "sparsity '%s': expected a fraction in [0, 1) or N:M", s);
}

void ec_prune_opts_init(struct ec_prune_opts *o)
{
    memset(o, 0, sizeof *o);
    o->method = EC_PRUNE_SPARSEGPT;
    o->sp.ratio = 0.5;
    o->seed = 0;
    o->percdamp = -1;
    o->outtype_auto = true;
    o->outtype = EC_F32;
}

static void sp_spec(const struct ec_sparsity *sp, char *buf, size_t n)
{
    if (sp->prune_m)
        snprintf(buf, n, "%d:%d", sp->prune_n, sp->prune_m);
    else if (sp->ratio == 0)
        snprintf(buf, n, "dense");
    else
        snprintf(buf, n, "%g", sp->ratio);
}

static bool sp_dense(const struct ec_sparsity *sp)
{
    return sp->prune_m == 0 && sp->ratio == 0;
}

struct ec_prune_tensor_stat *ec_prune_result_add(struct ec_prune_result *r, const char *name,
                                                 int src_layer, struct ec_diag *d)
{
    struct ec_prune_tensor_stat *nt = realloc(r->tensors, (r->n_tensors + 1) * sizeof *nt);
    if (!nt) {
        ec_fail(d, EC_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->tensors = nt;
    struct ec_prune_tensor_stat *t = &nt[r->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) {
        ec_fail(d, EC_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->n_tensors++;
    t->src_layer = src_layer;
    t->loss = NAN;
    t->recon_err = NAN;
    t->input_spread = NAN;
    snprintf(t->spec, sizeof t->spec, "dense");
    return t;
}

void ec_prune_result_release(struct ec_prune_result *r)
{
    for (size_t i = 0; i < r->n_tensors; i++)
        free(r->tensors[i].name);
    free(r->tensors);
    free(r->layers);
    free(r->quantized_to);
    memset(r, 0, sizeof *r);
}

/* ---- the unstructured run ---- */

enum { G_QKV = 0, G_O, G_GU, G_DOWN, G_COUNT };
static const int lin_group[EC_LIN_COUNT] = {G_QKV, G_QKV, G_QKV, G_O, G_GU, G_GU, G_DOWN};

struct run {
    const struct ec_prune_opts *o;
    struct ec_prune_result *r;
    struct ec_model *m;
    struct ec_hparams hp;
    regex_t *re;
    size_t n_re;
    bool calibrated;
    struct ec_calib_data cd;
    float *hidden; /* [n_samples][len][n_embd] */
    struct ec_calib_fwd *fwd;
    float *freq_factors;
    enum ec_dtype outtype;
    struct ec_pout out;
    /* per block */
    struct ec_hessian H[G_COUNT];
    struct ec_wanda_scaler S[G_COUNT];
    float *dW[EC_LIN_COUNT]; /* dense - pruned */
    double num[EC_LIN_COUNT], den[EC_LIN_COUNT];
    float *e_buf;            /* [len][widest] */
    float *tmp;              /* [len][n_embd] */
    bool stats_hessian;
    const struct ec_calib_block *blk; /* block of the recompute pass */
};

static struct ec_sparsity rule_for(const struct run *R, const char *name)
{
    for (size_t i = 0; i < R->n_re; i++)
        if (regexec(&R->re[i], name, 0, NULL, 0) == 0)
            return R->o->rules[i].sp;
    return R->o->sp;
}

static enum ec_status tap_stats(void *user, enum ec_calib_lin lin, const float *x, const float *y,
                                int64_t n_tok, struct ec_diag *d)
{
    (void)y;
    struct run *R = user;
    if (lin == EC_LIN_K || lin == EC_LIN_V || lin == EC_LIN_UP)
        return EC_OK; /* same input as q / gate */
    int g = lin_group[lin];
    if (R->stats_hessian)
        return ec_hessian_accumulate(&R->H[g], x, n_tok, 1, d);
    return ec_wanda_scaler_accumulate(&R->S[g], x, n_tok, 1, d);
}

/* e = dW x; num += ||e||^2, den += ||y + e||^2 (y + e is the dense output) */
static enum ec_status recon(struct run *R, int lin, int64_t rows, int64_t cols, const float *x,
                            const float *y, int64_t n_tok, struct ec_diag *d)
{
    if (!R->dW[lin])
        return EC_OK;
    const struct ec_linear_view v = {.type = EC_F32,
                                     .data = (const uint8_t *)R->dW[lin],
                                     .row_bytes = (uint64_t)cols * sizeof(float),
                                     .n_in = cols,
                                     .n_out = rows};
    enum ec_status st = ec_matmul_fast(&v, x, n_tok, R->e_buf, R->o->n_threads, d);
    if (st != EC_OK)
        return st;
    double num = 0, den = 0;
    for (int64_t i = 0; i < n_tok * rows; i++) {
        double e = R->e_buf[i], yd = (double)y[i] + e;
        num += e * e;
        den += yd * yd;
    }
    R->num[lin] += num;
    R->den[lin] += den;
    return EC_OK;
}

static enum ec_status tap_recon(void *user, enum ec_calib_lin lin, const float *x, const float *y,
                                int64_t n_tok, struct ec_diag *d)
{
    struct run *R = user;
    return recon(R, lin, R->blk->rows[lin], R->blk->cols[lin], x, y, n_tok, d);
}

static void stats_release(struct run *R)
{
    for (int g = 0; g < G_COUNT; g++) {
        ec_hessian_release(&R->H[g]);
        ec_wanda_scaler_release(&R->S[g]);
    }
    for (int l = 0; l < EC_LIN_COUNT; l++) {
        free(R->dW[l]);
        R->dW[l] = NULL;
        R->num[l] = R->den[l] = 0;
    }
}

static enum ec_status stats_init(struct run *R, const int64_t *cols, int n_groups,
                                 struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    for (int g = 0; g < n_groups && st == EC_OK; g++) {
        if (R->stats_hessian)
            st = ec_hessian_init(&R->H[g], cols[g], d);
        else
            st = ec_wanda_scaler_init(&R->S[g], cols[g], d);
    }
    return st;
}

static int cmp_f32(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* max / (lower) median of the input columns' RMS: the square roots of
 * Wanda's scaler_row, or of the Hessian's diagonal (the same up to a
 * constant factor); NAN when the median column is dead or memory is short */
static double input_spread(const struct run *R, int g, int64_t cols)
{
    float *v = malloc(sizeof(float) * (size_t)cols);
    if (!v)
        return NAN;
    for (int64_t c = 0; c < cols; c++)
        v[c] = R->stats_hessian ? R->H[g].H[c * cols + c] : R->S[g].scaler_row[c];
    qsort(v, (size_t)cols, sizeof *v, cmp_f32);
    const double mx = v[cols - 1], med = v[(cols - 1) / 2];
    free(v);
    return med > 0 && isfinite(mx) ? sqrt(mx / med) : NAN;
}

/* Prune one weight W[rows][cols] with the statistics of group g. */
static enum ec_status prune_weight(struct run *R, float *W, int64_t rows, int64_t cols, int g,
                                   const struct ec_sparsity *sp, struct ec_prune_tensor_stat *ts,
                                   const char *name, struct ec_diag *d)
{
    enum ec_status st;
    if ((st = ec_sparsity_check(sp, rows, cols, d)) != EC_OK)
        return ec_fail(d, st, "%s: tensor '%s': %s", R->m->path, name, d->msg);
    if (R->o->method == EC_PRUNE_MAGNITUDE || !R->calibrated || g < 0)
        return ec_prune_magnitude(W, rows, cols, sp, NULL, d);
    ts->input_spread = input_spread(R, g, cols);
    if (R->o->method == EC_PRUNE_WANDA)
        return ec_prune_wanda(W, rows, cols, R->S[g].scaler_row, sp, NULL, d);
    struct ec_sparsegpt_opts so = ec_sparsegpt_defaults();
    so.sp = *sp;
    if (R->o->blocksize > 0)
        so.blocksize = R->o->blocksize;
    if (R->o->percdamp >= 0)
        so.percdamp = R->o->percdamp;
    double loss = 0;
    st = ec_sparsegpt_prune(W, rows, cols, R->H[g].H, &so, NULL, &loss, d);
    if (st != EC_OK)
        return ec_fail(d, st, "%s: tensor '%s': %s", R->m->path, name, d->msg);
    ts->loss = loss;
    return EC_OK;
}

static void count_zero(struct run *R, struct ec_prune_tensor_stat *ts, const float *W,
                       int64_t rows, int64_t cols, bool asked)
{
    int64_t z = 0;
    for (int64_t i = 0; i < rows * cols; i++)
        z += W[i] == 0.0f;
    ts->rows = rows;
    ts->cols = cols;
    ts->n_zero = z;
    ts->sparsity = (rows * cols) != 0 ? (double)z / (double)(rows * cols) : 0;
    if (asked) {
        R->r->n_pruned_elems += (uint64_t)(rows * cols);
        R->r->n_pruned_zero += (uint64_t)z;
    }
}

static void progress(struct run *R, const char *stage, int layer)
{
    if (R->o->progress)
        R->o->progress(R->o->progress_ctx, stage, layer, (int)R->hp.n_layer);
}

static bool is_block_tensor(const char *name, int *layer)
{
    int l, n = 0;
    if (sscanf(name, "blk.%d.%n", &l, &n) == 1 && n > 0) {
        *layer = l;
        return true;
    }
    return false;
}

/* Process block il: stats, prune, recompute, write its tensors. */
static enum ec_status do_block(struct run *R, uint32_t il, struct ec_diag *d)
{
    const struct ec_hparams *hp = &R->hp;
    struct ec_calib_block b;
    enum ec_status st = ec_calib_block_load(&b, R->m, il, d);
    if (st != EC_OK)
        return st;
    const int64_t n_embd = hp->n_embd, len = R->cd.len;
    struct ec_sparsity sp[EC_LIN_COUNT];
    char name[128];
    bool any = false;
    for (int l = 0; l < EC_LIN_COUNT; l++) {
        snprintf(name, sizeof name, "blk.%u.%s.weight", il, ec_calib_lin_name(l));
        sp[l] = rule_for(R, name);
        any |= !sp_dense(&sp[l]);
    }
    bool need_stats = R->calibrated && R->o->method != EC_PRUNE_MAGNITUDE && any;
    if (need_stats) {
        const int64_t cols[G_COUNT] = {b.cols[EC_LIN_Q], b.cols[EC_LIN_O], b.cols[EC_LIN_GATE],
                                       b.cols[EC_LIN_DOWN]};
        if ((st = stats_init(R, cols, G_COUNT, d)) != EC_OK)
            goto out;
        progress(R, "calib", (int)il);
        for (int64_t s = 0; s < R->cd.n_samples; s++) {
            memcpy(R->tmp, R->hidden + s * len * n_embd, (size_t)(len * n_embd) * sizeof(float));
            if ((st = ec_calib_block_forward(R->fwd, &b, R->tmp, len, tap_stats, R, d)) != EC_OK)
                goto out;
        }
        if (R->stats_hessian)
            for (int g = 0; g < G_COUNT; g++)
                ec_hessian_finish(&R->H[g]);
    }
    progress(R, "prune", (int)il);
    /* reserve the reports first: ec_prune_result_add may move the array */
    size_t ts0 = R->r->n_tensors;
    for (int l = 0; l < EC_LIN_COUNT; l++) {
        snprintf(name, sizeof name, "blk.%u.%s.weight", il, ec_calib_lin_name(l));
        if (!ec_prune_result_add(R->r, name, (int)il, d)) {
            st = EC_ERR_NOMEM;
            goto out;
        }
    }
    struct ec_prune_tensor_stat *ts[EC_LIN_COUNT];
    for (int l = 0; l < EC_LIN_COUNT; l++)
        ts[l] = &R->r->tensors[ts0 + (size_t)l];
    for (int l = 0; l < EC_LIN_COUNT; l++) {
        snprintf(name, sizeof name, "blk.%u.%s.weight", il, ec_calib_lin_name(l));
        sp_spec(&sp[l], ts[l]->spec, sizeof ts[l]->spec);
        const int64_t n = b.rows[l] * b.cols[l];
        if (!sp_dense(&sp[l])) {
            if (R->calibrated) {
                R->dW[l] = malloc((size_t)n * sizeof(float));
                if (!R->dW[l]) {
                    st = ec_fail(d, EC_ERR_NOMEM, "prune: out of memory");
                    goto out;
                }
                memcpy(R->dW[l], b.w[l], (size_t)n * sizeof(float));
            }
            st = prune_weight(R, b.w[l], b.rows[l], b.cols[l], need_stats ? lin_group[l] : -1,
                              &sp[l], ts[l], name, d);
            if (st != EC_OK)
                goto out;
            if (R->dW[l])
                for (int64_t i = 0; i < n; i++)
                    R->dW[l][i] -= b.w[l][i];
        }
        count_zero(R, ts[l], b.w[l], b.rows[l], b.cols[l], !sp_dense(&sp[l]));
    }
    if (R->calibrated) {
        R->blk = &b;
        for (int64_t s = 0; s < R->cd.n_samples; s++) {
            float *x = R->hidden + s * len * n_embd;
            if ((st = ec_calib_block_forward(R->fwd, &b, x, len, tap_recon, R, d)) != EC_OK)
                goto out;
        }
        R->blk = NULL;
        for (int l = 0; l < EC_LIN_COUNT; l++)
            if (R->dW[l] && R->den[l] > 0)
                ts[l]->recon_err = R->num[l] / R->den[l];
    }
    progress(R, "write", (int)il);
    /* write this block's tensors in declaration order */
    for (; R->out.next < R->out.n && R->out.e[R->out.next].src_layer == (int)il;) {
        const struct ec_pout_entry *e = &R->out.e[R->out.next];
        if (e->lin >= 0) {
            if ((st = ec_pout_write_f32(&R->out, b.w[e->lin], d)) != EC_OK)
                goto out;
            continue;
        }
        float *buf = malloc((size_t)ec_model_tensor_n_elems(e->src) * sizeof(float));
        if (!buf) {
            st = ec_fail(d, EC_ERR_NOMEM, "prune: out of memory");
            goto out;
        }
        st = ec_calib_tensor_f32(R->m, e->src, buf, d);
        if (st == EC_OK)
            st = ec_pout_write_f32(&R->out, buf, d);
        free(buf);
        if (st != EC_OK)
            goto out;
    }
out:
    R->blk = NULL;
    stats_release(R);
    ec_calib_block_release(&b);
    return st;
}

static int lin_of(const char *name)
{
    for (int l = 0; l < EC_LIN_COUNT; l++) {
        char suf[64];
        snprintf(suf, sizeof suf, ".%s.weight", ec_calib_lin_name(l));
        size_t n = strlen(name), k = strlen(suf);
        if (n >= k && strcmp(name + n - k, suf) == 0)
            return l;
    }
    return -1;
}

static enum ec_status declare_all(struct run *R, struct ec_diag *d)
{
    struct ec_model *m = R->m;
    enum ec_status st;
    /* pass 0: outside blocks except output_norm/output; 1: blocks; 2: the tail */
    for (int pass = 0; pass < 3; pass++) {
        for (uint32_t il = 0; il < (pass == 1 ? R->hp.n_layer : 1); il++) {
            for (size_t i = 0; i < m->n_tensors; i++) {
                const struct ec_model_tensor *t = &m->tensors[i];
                int layer;
                bool blk = is_block_tensor(t->name, &layer);
                bool tail = !blk && (strcmp(t->name, "output_norm.weight") == 0 ||
                                     strcmp(t->name, "output.weight") == 0);
                if (pass == 0 && (blk || tail))
                    continue;
                if (pass == 1 && (!blk || layer != (int)il))
                    continue;
                if (pass == 2 && !tail)
                    continue;
                int lin = blk ? lin_of(t->name) : -1;
                if ((st = ec_pout_add(&R->out, t, t->name, blk ? layer : -1, lin, t->n_dims,
                                      t->ne[0], t->ne[1], R->outtype, d)) != EC_OK)
                    return st;
            }
        }
    }
    return EC_OK;
}

/* Write non-block tensors at the head (pass 0) or tail; prune token_embd /
 * output when asked. */
static enum ec_status write_outside(struct run *R, bool tail, struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    while (R->out.next < R->out.n) {
        const struct ec_pout_entry *e = &R->out.e[R->out.next];
        if (e->src_layer >= 0)
            break;
        bool is_tail = strcmp(e->name, "output_norm.weight") == 0 ||
                       strcmp(e->name, "output.weight") == 0;
        if (is_tail != tail)
            break;
        uint64_t n = ec_model_tensor_n_elems(e->src);
        float *w = malloc((size_t)n * sizeof(float));
        if (!w)
            return ec_fail(d, EC_ERR_NOMEM, "prune: cannot allocate tensor '%s'", e->name);
        if ((st = ec_calib_tensor_f32(R->m, e->src, w, d)) != EC_OK)
            goto next;
        bool is_embd = strcmp(e->name, "token_embd.weight") == 0;
        bool is_out = strcmp(e->name, "output.weight") == 0;
        if ((is_embd && R->o->prune_embeddings) || (is_out && R->o->prune_output)) {
            int64_t rows = (int64_t)e->src->ne[1], cols = (int64_t)e->src->ne[0];
            struct ec_sparsity sp = rule_for(R, e->name);
            struct ec_prune_tensor_stat *ts = ec_prune_result_add(R->r, e->name, -1, d);
            if (!ts) {
                st = EC_ERR_NOMEM;
                goto next;
            }
            sp_spec(&sp, ts->spec, sizeof ts->spec);
            if (!sp_dense(&sp)) {
                float *dense = NULL;
                int g = -1;
                if (is_out && R->calibrated) {
                    /* statistics from the final normed hidden states */
                    const struct ec_model_tensor *on = ec_model_find(R->m, "output_norm.weight");
                    float *nw = malloc(R->hp.n_embd * sizeof(float));
                    if (!nw || !on) {
                        free(nw);
                        st = ec_fail(d, EC_ERR_NOMEM, "prune: output_norm missing or no memory");
                        goto next;
                    }
                    if ((st = ec_calib_tensor_f32(R->m, on, nw, d)) != EC_OK) {
                        free(nw);
                        goto next;
                    }
                    const int64_t cols1[1] = {cols};
                    if (R->o->method != EC_PRUNE_MAGNITUDE &&
                        (st = stats_init(R, cols1, 1, d)) != EC_OK) {
                        free(nw);
                        goto next;
                    }
                    const int64_t len = R->cd.len;
                    for (int64_t s = 0; s < R->cd.n_samples && st == EC_OK; s++) {
                        ec_calib_rms_norm(R->hidden + s * len * cols, nw, len, cols,
                                          R->hp.norm_eps, R->tmp);
                        if (R->o->method != EC_PRUNE_MAGNITUDE)
                            st = R->stats_hessian
                                     ? ec_hessian_accumulate(&R->H[0], R->tmp, len, 1, d)
                                     : ec_wanda_scaler_accumulate(&R->S[0], R->tmp, len, 1, d);
                    }
                    if (R->stats_hessian && R->o->method != EC_PRUNE_MAGNITUDE)
                        ec_hessian_finish(&R->H[0]);
                    g = R->o->method != EC_PRUNE_MAGNITUDE ? 0 : -1;
                    dense = malloc((size_t)n * sizeof(float));
                    if (dense)
                        memcpy(dense, w, (size_t)n * sizeof(float));
                    if (st == EC_OK) {
                        st = prune_weight(R, w, rows, cols, g, &sp, ts, e->name, d);
                        if (st == EC_OK && dense) {
                            for (uint64_t i = 0; i < n; i++)
                                dense[i] -= w[i];
                            R->dW[0] = dense;
                            dense = NULL;
                            float *y = malloc((size_t)(len * rows) * sizeof(float));
                            float *eb = R->e_buf;
                            R->e_buf = malloc((size_t)(len * rows) * sizeof(float));
                            const struct ec_linear_view v = {
                                .type = EC_F32, .data = (const uint8_t *)w,
                                .row_bytes = (uint64_t)cols * sizeof(float), .n_in = cols,
                                .n_out = rows};
                            for (int64_t s = 0; s < R->cd.n_samples && st == EC_OK && y &&
                                                R->e_buf;
                                 s++) {
                                ec_calib_rms_norm(R->hidden + s * len * cols, nw, len, cols,
                                                  R->hp.norm_eps, R->tmp);
                                st = ec_matmul_fast(&v, R->tmp, len, y, R->o->n_threads, d);
                                if (st == EC_OK)
                                    st = recon(R, 0, rows, cols, R->tmp, y, len, d);
                            }
                            if (R->den[0] > 0)
                                ts->recon_err = R->num[0] / R->den[0];
                            free(y);
                            free(R->e_buf);
                            R->e_buf = eb;
                        }
                    }
                    free(dense);
                    free(nw);
                    stats_release(R);
                } else {
                    st = prune_weight(R, w, rows, cols, -1, &sp, ts, e->name, d);
                }
            }
            if (st == EC_OK)
                count_zero(R, ts, w, rows, cols, !sp_dense(&sp));
        }
        if (st == EC_OK)
            st = ec_pout_write_f32(&R->out, w, d);
    next:
        free(w);
        if (st != EC_OK)
            return st;
    }
    return EC_OK;
}

/* token_embd after --prune-embeddings: the calibration must see the pruned
 * rows, so embed from the pruned copy. */
static enum ec_status embed_all(struct run *R, const float *embd_f32, struct ec_diag *d)
{
    const int64_t len = R->cd.len, n_embd = R->hp.n_embd;
    for (int64_t s = 0; s < R->cd.n_samples; s++) {
        const int32_t *tok = R->cd.tokens + s * len;
        float *x = R->hidden + s * len * n_embd;
        if (embd_f32) {
            for (int64_t t = 0; t < len; t++)
                memcpy(x + t * n_embd, embd_f32 + (int64_t)tok[t] * n_embd,
                       (size_t)n_embd * sizeof(float));
        } else {
            enum ec_status st = ec_calib_embed(R->m, tok, len, x, d);
            if (st != EC_OK)
                return st;
        }
    }
    return EC_OK;
}

static enum ec_status then_quantize(const struct ec_prune_opts *o, const char *tmp,
                                    struct ec_prune_result *r, struct ec_diag *d)
{
    struct ec_quantize_opts qo;
    memset(&qo, 0, sizeof qo);
    if (!ec_ftype_from_name(o->then_quantize, &qo.ftype))
        return ec_fail(d, EC_ERR_ARG, "--then-quantize '%s': unknown type (%s)", o->then_quantize,
                       ec_ftype_names_help());
    qo.input = tmp;
    qo.output = o->output;
    qo.output_tensor_type = EC_DTYPE_UNSET;
    qo.token_embedding_type = EC_DTYPE_UNSET;
    qo.n_threads = o->n_threads;
    struct ec_quantize_result qr;
    memset(&qr, 0, sizeof qr);
    enum ec_status st = ec_quantize_run(&qo, &qr, d);
    ec_quantize_result_release(&qr);
    if (st == EC_OK) {
        r->quantized_to = strdup(ec_ftype_name(qo.ftype));
        if (!r->quantized_to)
            st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
    }
    return st;
}

static enum ec_status check_opts(const struct ec_prune_opts *o, struct ec_diag *d)
{
    if (!o->input || !o->output)
        return ec_fail(d, EC_ERR_ARG, "prune: an input and an output are required");
    if (!o->calib && (o->method != EC_PRUNE_MAGNITUDE || o->structured))
        return ec_fail(d, EC_ERR_ARG, "prune: --method %s%s needs --calib FILE",
                       ec_prune_method_name(o->method), o->structured ? " / --structured" : "");
    if (o->then_quantize) {
        size_t n = strlen(o->output);
        if (n < 5 || strcmp(o->output + n - 5, ".gguf") != 0)
            return ec_fail(d, EC_ERR_ARG, "prune: --then-quantize needs a .gguf output");
    }
    if (!o->outtype_auto && o->outtype != EC_F32 && o->outtype != EC_F16 &&
        o->outtype != EC_BF16)
        return ec_fail(d, EC_ERR_ARG, "prune: output type %s is not f32, f16 or bf16",
                       ec_dtype_name(o->outtype));
    return EC_OK;
}

enum ec_status ec_prune_run(const struct ec_prune_opts *o_in, struct ec_prune_result *r,
                            struct ec_diag *d)
{
    memset(r, 0, sizeof *r);
    enum ec_status st = check_opts(o_in, d);
    if (st != EC_OK)
        return st;
    double t0 = ec_now_seconds();
    struct ec_prune_opts ov = *o_in;
    char *tmp_out = NULL;
    if (ov.then_quantize) {
        size_t n = strlen(ov.output) + 32;
        tmp_out = malloc(n);
        if (!tmp_out)
            return ec_fail(d, EC_ERR_NOMEM, "out of memory");
        snprintf(tmp_out, n, "%s.prune-%ld.gguf", ov.output, (long)getpid());
        ov.output = tmp_out;
    }
    const struct ec_prune_opts *o = &ov;
    struct ec_model m;
    if ((st = ec_model_open(&m, o->input, d)) != EC_OK) {
        free(tmp_out);
        return st;
    }
    r->hp_in = m.hp;
    r->hp_out = m.hp;
    for (size_t i = 0; i < m.n_tensors; i++)
        r->n_params_in += ec_model_tensor_n_elems(&m.tensors[i]);

    if (o->structured) {
        st = ec_prune_structured(o, &m, r, d);
        goto out_model;
    }

    struct run R;
    memset(&R, 0, sizeof R);
    R.o = o;
    R.r = r;
    R.m = &m;
    R.hp = m.hp;
    R.stats_hessian = o->method == EC_PRUNE_SPARSEGPT;
    R.outtype = o->outtype_auto ? (m.source == EC_SRC_HF ? m.hf_dtype : EC_F32) : o->outtype;
    if (o->prune_output && !ec_model_find(&m, "output.weight")) {
        st = ec_fail(d, EC_ERR_ARG,
                     "%s: --prune-output: the output is tied to token_embd (no output.weight); "
                     "use --prune-embeddings",
                     m.path);
        goto out_model;
    }
    R.re = calloc(o->n_rules ? o->n_rules : 1, sizeof *R.re);
    if (!R.re) {
        st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out_model;
    }
    for (; R.n_re < o->n_rules; R.n_re++) {
        int rc = regcomp(&R.re[R.n_re], o->rules[R.n_re].pattern, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            st = ec_fail(d, EC_ERR_ARG, "--sparsity-per-layer '%s': not a valid regex",
                         o->rules[R.n_re].pattern);
            goto out_run;
        }
    }
    r->layers = calloc(m.hp.n_layer, sizeof *r->layers);
    if (!r->layers) {
        st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
        goto out_run;
    }
    r->n_layers = m.hp.n_layer;
    for (uint32_t i = 0; i < m.hp.n_layer; i++) {
        r->layers[i].src_layer = (int)i;
        r->layers[i].out_layer = (int)i;
        r->layers[i].block_influence = NAN;
    }

    if (o->calib) {
        int64_t len = o->calib_len > 0 ? o->calib_len : 2048;
        if (o->calib_len <= 0 && m.hp.n_ctx_train > 0 && len > m.hp.n_ctx_train)
            len = m.hp.n_ctx_train;
        int64_t ns = o->calib_samples > 0 ? o->calib_samples : 128;
        if ((st = ec_calib_load(&R.cd, &m, o->calib, ns, len, o->seed, d)) != EC_OK)
            goto out_run;
        R.calibrated = true;
        r->calib_samples = ns;
        r->calib_len = len;
        r->calib_source_tokens = R.cd.n_source_tokens;
        const struct ec_model_tensor *ff = ec_model_find(&m, "rope_freqs.weight");
        if (ff) {
            R.freq_factors = malloc(ec_model_tensor_n_elems(ff) * sizeof(float));
            if (!R.freq_factors) {
                st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
                goto out_run;
            }
            if ((st = ec_calib_tensor_f32(&m, ff, R.freq_factors, d)) != EC_OK)
                goto out_run;
        }
        if ((st = ec_calib_fwd_new(&R.fwd, &m.hp, R.freq_factors, len, !o->kv_f32, o->n_threads,
                                   d)) != EC_OK)
            goto out_run;
        size_t hsz = (size_t)(ns * len) * m.hp.n_embd;
        R.hidden = malloc(hsz * sizeof(float));
        size_t n_q = (size_t)m.hp.n_head * m.hp.head_dim;
        size_t widest = m.hp.n_ff > m.hp.n_embd ? m.hp.n_ff : m.hp.n_embd;
        if (n_q > widest)
            widest = n_q;
        R.e_buf = malloc((size_t)len * widest * sizeof(float));
        R.tmp = malloc((size_t)len * m.hp.n_embd * sizeof(float));
        if (!R.hidden || !R.e_buf || !R.tmp) {
            st = ec_fail(d, EC_ERR_NOMEM,
                         "prune: cannot allocate the hidden states of %lld x %lld tokens",
                         (long long)ns, (long long)len);
            goto out_run;
        }
    }

    if ((st = ec_pout_open(&R.out, &m, &m.hp, o, d)) != EC_OK)
        goto out_run;
    if (R.out.gguf) {
        uint32_t ft = 0;
        ec_convert_file_type(R.outtype, &ft);
        if ((st = ec_model_write_gguf_kvs(&m, R.out.gw, ft, d)) != EC_OK)
            goto out_run;
    }
    if ((st = declare_all(&R, d)) != EC_OK || (st = ec_pout_begin(&R.out, d)) != EC_OK)
        goto out_run;

    /* head: token_embd (pruned by magnitude on request) and rope_freqs */
    float *embd_pruned = NULL;
    if (o->prune_embeddings && R.calibrated) {
        /* keep the pruned embedding for the calibration lookups */
        const struct ec_model_tensor *te = ec_model_find(&m, "token_embd.weight");
        if (te) {
            embd_pruned = malloc(ec_model_tensor_n_elems(te) * sizeof(float));
            if (!embd_pruned) {
                st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
                goto out_run;
            }
            if ((st = ec_calib_tensor_f32(&m, te, embd_pruned, d)) != EC_OK) {
                free(embd_pruned);
                goto out_run;
            }
            struct ec_sparsity sp = rule_for(&R, "token_embd.weight");
            if (!sp_dense(&sp) &&
                (st = ec_prune_magnitude(embd_pruned, (int64_t)te->ne[1], (int64_t)te->ne[0], &sp,
                                         NULL, d)) != EC_OK) {
                free(embd_pruned);
                goto out_run;
            }
        }
    }
    if ((st = write_outside(&R, false, d)) != EC_OK) {
        free(embd_pruned);
        goto out_run;
    }
    if (R.calibrated) {
        st = embed_all(&R, embd_pruned, d);
        free(embd_pruned);
        if (st != EC_OK)
            goto out_run;
    } else {
        free(embd_pruned);
    }
    for (uint32_t il = 0; il < m.hp.n_layer; il++) {
        double tl = ec_now_seconds();
        if ((st = do_block(&R, il, d)) != EC_OK)
            goto out_run;
        r->layers[il].seconds = ec_now_seconds() - tl;
    }
    if ((st = write_outside(&R, true, d)) != EC_OK)
        goto out_run;
    if ((st = ec_pout_commit(&R.out, o, d)) != EC_OK)
        goto out_run;
    r->n_params_out = r->n_params_in;

out_run:
    ec_pout_release(&R.out);
    stats_release(&R);
    for (size_t i = 0; i < R.n_re; i++)
        regfree(&R.re[i]);
    free(R.re);
    ec_calib_fwd_free(R.fwd);
    ec_calib_release(&R.cd);
    free(R.hidden);
    free(R.e_buf);
    free(R.tmp);
    free(R.freq_factors);
out_model:
    ec_model_close(&m);
    if (st == EC_OK && tmp_out) {
        st = then_quantize(o_in, tmp_out, r, d);
    }
    if (tmp_out) {
        unlink(tmp_out);
        free(tmp_out);
    }
    r->seconds = ec_now_seconds() - t0;
    return st;
}

/* ---- JSON ---- */

static cJSON *num_or_null(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

char *ec_prune_result_json(const struct ec_prune_result *r, const struct ec_prune_opts *o)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON_AddStringToObject(root, "input", o->input ? o->input : "");
    cJSON_AddStringToObject(root, "output", o->output ? o->output : "");
    cJSON_AddStringToObject(root, "method", o->structured ? "structured"
                                                          : ec_prune_method_name(o->method));
    char spec[32];
    sp_spec(&o->sp, spec, sizeof spec);
    cJSON_AddStringToObject(root, "sparsity", spec);
    if (r->quantized_to)
        cJSON_AddStringToObject(root, "quantized", r->quantized_to);
    cJSON *cal = cJSON_AddObjectToObject(root, "calibration");
    if (cal) {
        cJSON_AddStringToObject(cal, "file", o->calib ? o->calib : "");
        cJSON_AddNumberToObject(cal, "samples", (double)r->calib_samples);
        cJSON_AddNumberToObject(cal, "len", (double)r->calib_len);
        cJSON_AddNumberToObject(cal, "source_tokens", (double)r->calib_source_tokens);
        cJSON_AddNumberToObject(cal, "seed", (double)o->seed);
    }
    cJSON *hp = cJSON_AddObjectToObject(root, "hparams");
    if (hp) {
        const struct ec_hparams *a = &r->hp_in, *b = &r->hp_out;
        const char *k[] = {"n_layer", "n_head", "n_head_kv", "n_ff", "head_dim"};
        const uint32_t va[] = {a->n_layer, a->n_head, a->n_head_kv, a->n_ff, a->head_dim};
        const uint32_t vb[] = {b->n_layer, b->n_head, b->n_head_kv, b->n_ff, b->head_dim};
        for (int i = 0; i < 5; i++) {
            cJSON *pair = cJSON_CreateIntArray((const int[]){(int)va[i], (int)vb[i]}, 2);
            cJSON_AddItemToObject(hp, k[i], pair);
        }
    }
    cJSON_AddNumberToObject(root, "params_in", (double)r->n_params_in);
    cJSON_AddNumberToObject(root, "params_out", (double)r->n_params_out);
    cJSON_AddNumberToObject(root, "pruned_elems", (double)r->n_pruned_elems);
    cJSON_AddNumberToObject(root, "pruned_zero", (double)r->n_pruned_zero);
    cJSON_AddItemToObject(root, "achieved_sparsity",
                          num_or_null(r->n_pruned_elems ? (double)r->n_pruned_zero /
                                                              (double)r->n_pruned_elems
                                                        : NAN));
    cJSON_AddNumberToObject(root, "seconds", r->seconds);
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    for (size_t i = 0; layers && i < r->n_layers; i++) {
        const struct ec_prune_layer_stat *L = &r->layers[i];
        cJSON *j = cJSON_CreateObject();
        if (!j)
            break;
        cJSON_AddNumberToObject(j, "layer", L->src_layer);
        if (L->out_layer >= 0)
            cJSON_AddNumberToObject(j, "out_layer", L->out_layer);
        else
            cJSON_AddNullToObject(j, "out_layer");
        cJSON_AddBoolToObject(j, "removed", L->out_layer < 0);
        cJSON_AddItemToObject(j, "block_influence", num_or_null(L->block_influence));
        uint32_t nh = L->n_heads_removed < 64 ? L->n_heads_removed : 64;
        cJSON *hr = cJSON_CreateArray();
        for (uint32_t h = 0; hr && h < nh; h++)
            cJSON_AddItemToArray(hr, cJSON_CreateNumber(L->heads_removed[h]));
        cJSON_AddItemToObject(j, "heads_removed", hr);
        cJSON_AddNumberToObject(j, "kv_heads_removed", L->n_kv_removed);
        cJSON_AddNumberToObject(j, "ffn_channels_removed", L->n_ff_removed);
        cJSON_AddNumberToObject(j, "seconds", L->seconds);
        cJSON_AddItemToArray(layers, j);
    }
    cJSON *ts = cJSON_AddArrayToObject(root, "tensors");
    for (size_t i = 0; ts && i < r->n_tensors; i++) {
        const struct ec_prune_tensor_stat *t = &r->tensors[i];
        cJSON *j = cJSON_CreateObject();
        if (!j)
            break;
        cJSON_AddStringToObject(j, "name", t->name);
        cJSON_AddNumberToObject(j, "layer", t->src_layer);
        cJSON_AddStringToObject(j, "asked", t->spec);
        cJSON_AddItemToObject(j, "shape", cJSON_CreateIntArray((const int[]){(int)t->rows,
                                                                             (int)t->cols},
                                                               2));
        cJSON_AddNumberToObject(j, "rows_removed", (double)t->rows_removed);
        cJSON_AddNumberToObject(j, "cols_removed", (double)t->cols_removed);
        cJSON_AddNumberToObject(j, "zeros", (double)t->n_zero);
        cJSON_AddNumberToObject(j, "sparsity", t->sparsity);
        cJSON_AddItemToObject(j, "sparsegpt_loss", num_or_null(t->loss));
        cJSON_AddItemToObject(j, "recon_err", num_or_null(t->recon_err));
        cJSON_AddItemToObject(j, "input_spread", num_or_null(t->input_spread));
        cJSON_AddItemToArray(ts, j);
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}
