/* pruners/structured.c: structured pruning (heads, FFN channels, layers)
 * ranked on the dense model (see edgec/prune_run.h for the scores and the
 * GQA policy). One calibration pass collects, per block, the mean L2 norm of
 * each query head's attention output, the mean |silu(gate) * up| of each FFN
 * channel and the block influence 1 - mean cos(x_in, x_out); then every
 * tensor is sliced and written with the new shapes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/convert.h"
#include "edgec/gguf.h"
#include "edgec/log.h"
#include "edgec/prune_run.h"
#include "pruners/calib.h"
#include "pruners/prune_out.h"

struct sstats {
    const struct ec_hparams *hp;
    double *head; /* [n_head] sum over tokens of ||att_h|| */
    double *ff;   /* [n_ff] sum over tokens of |act| */
};

static enum ec_status tap(void *user, enum ec_calib_lin lin, const float *x, const float *y,
                          int64_t n_tok, struct ec_diag *d)
{
    (void)y;
    (void)d;
    struct sstats *S = user;
    const uint32_t hd = S->hp->head_dim, nh = S->hp->n_head, nff = S->hp->n_ff;
    if (lin == EC_LIN_O) {
        for (int64_t t = 0; t < n_tok; t++)
            for (uint32_t h = 0; h < nh; h++) {
                const float *p = x + (t * nh + h) * hd;
                double s = 0;
                for (uint32_t i = 0; i < hd; i++)
                    s += (double)p[i] * p[i];
                S->head[h] += sqrt(s);
            }
    } else if (lin == EC_LIN_DOWN) {
        for (int64_t t = 0; t < n_tok; t++)
            for (uint32_t c = 0; c < nff; c++)
                S->ff[c] += fabs((double)x[t * nff + c]);
    }
    return EC_OK;
}

/* Mark the k lowest of score[0..n) (ties: lower index first) in removed[]. */
static void lowest_k(const double *score, uint32_t n, uint32_t k, uint8_t *removed)
{
    memset(removed, 0, n);
    for (uint32_t r = 0; r < k; r++) {
        int best = -1;
        for (uint32_t i = 0; i < n; i++)
            if (!removed[i] && (best < 0 || score[i] < score[best]))
                best = (int)i;
        removed[best] = 1;
    }
}

struct splan {
    uint8_t *layer_removed;    /* [n_layer] */
    uint8_t *head_removed;     /* [n_layer][n_head] */
    uint8_t *kv_removed;       /* [n_layer][n_head_kv] */
    uint8_t *ff_removed;       /* [n_layer][n_ff] */
};

static void splan_release(struct splan *p)
{
    free(p->layer_removed);
    free(p->head_removed);
    free(p->kv_removed);
    free(p->ff_removed);
}

/* rows of `keep` blocks of `blk` rows each: dst = src rows where !removed */
static int64_t keep_rows(const float *src, float *dst, const uint8_t *removed, int64_t n_blocks,
                         int64_t blk_rows, int64_t cols)
{
    int64_t o = 0;
    for (int64_t b = 0; b < n_blocks; b++) {
        if (removed[b])
            continue;
        memcpy(dst + o * blk_rows * cols, src + b * blk_rows * cols,
               (size_t)(blk_rows * cols) * sizeof(float));
        o++;
    }
    return o * blk_rows;
}

static int64_t keep_cols(const float *src, float *dst, const uint8_t *removed, int64_t rows,
                         int64_t n_blocks, int64_t blk_cols)
{
    const int64_t cols = n_blocks * blk_cols;
    int64_t n_kept = 0;
    for (int64_t b = 0; b < n_blocks; b++)
        n_kept += !removed[b];
    const int64_t oc = n_kept * blk_cols;
    for (int64_t r = 0; r < rows; r++) {
        int64_t o = 0;
        for (int64_t b = 0; b < n_blocks; b++) {
            if (removed[b])
                continue;
            memcpy(dst + r * oc + o * blk_cols, src + r * cols + b * blk_cols,
                   (size_t)blk_cols * sizeof(float));
            o++;
        }
    }
    return oc;
}

enum ec_status ec_prune_structured(const struct ec_prune_opts *o, struct ec_model *m,
                                   struct ec_prune_result *r, struct ec_diag *d)
{
    const struct ec_hparams *hp = &m->hp;
    const uint32_t L = hp->n_layer, nh = hp->n_head, nkv = hp->n_head_kv, nff = hp->n_ff;
    const uint32_t hd = hp->head_dim, g = nh / nkv;
    enum ec_status st = EC_OK;
    struct ec_calib_data cd;
    struct ec_calib_fwd *fwd = NULL;
    struct ec_calib_block b;
    struct splan plan;
    struct sstats S;
    struct ec_pout out;
    float *hidden = NULL, *xin = NULL, *buf = NULL, *buf2 = NULL, *ffac = NULL;
    double *bi = NULL, *head_imp = NULL, *ff_imp = NULL;
    memset(&cd, 0, sizeof cd);
    memset(&b, 0, sizeof b);
    memset(&plan, 0, sizeof plan);
    memset(&S, 0, sizeof S);
    memset(&out, 0, sizeof out);

    /* counts */
    uint32_t k_heads = o->heads_count > 0 ? (uint32_t)o->heads_count
                                          : (uint32_t)lround(o->heads_ratio * nh);
    uint32_t k_ff = (uint32_t)lround(o->ffn_ratio * nff);
    uint32_t k_layers = o->layers_count > 0 ? (uint32_t)o->layers_count : 0;
    bool whole_groups = false;
    if (k_heads >= nh || k_ff >= nff || k_layers >= L)
        return ec_fail(d, EC_ERR_ARG,
                       "prune: --structured removes %u of %u heads, %u of %u channels, %u of %u "
                       "layers: at least one of each must stay",
                       k_heads, nh, k_ff, nff, k_layers, L);
    if (k_heads > 0) {
        if (k_heads % g == 0)
            whole_groups = true;
        else if (k_heads % nkv != 0)
            return ec_fail(d, EC_ERR_ARG,
                           "prune: heads=%u: with %u query heads per KV head (%u KV heads) the "
                           "count must be a multiple of %u (whole KV groups) or of %u (the same "
                           "number from every group)",
                           k_heads, g, nkv, g, nkv);
    }
    if (k_heads == 0 && k_ff == 0 && k_layers == 0)
        return ec_fail(d, EC_ERR_ARG, "prune: --structured removes nothing");

    int64_t len = o->calib_len > 0 ? o->calib_len : 2048;
    if (o->calib_len <= 0 && hp->n_ctx_train > 0 && len > hp->n_ctx_train)
        len = hp->n_ctx_train;
    int64_t ns = o->calib_samples > 0 ? o->calib_samples : 128;
    if ((st = ec_calib_load(&cd, m, o->calib, ns, len, o->seed, d)) != EC_OK)
        return st;
    r->calib_samples = ns;
    r->calib_len = len;
    r->calib_source_tokens = cd.n_source_tokens;
    const struct ec_model_tensor *ft = ec_model_find(m, "rope_freqs.weight");
    if (ft) {
        ffac = malloc(ec_model_tensor_n_elems(ft) * sizeof(float));
        if (!ffac || (st = ec_calib_tensor_f32(m, ft, ffac, d)) != EC_OK) {
            if (!ffac)
                st = ec_fail(d, EC_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    if ((st = ec_calib_fwd_new(&fwd, hp, ffac, len, !o->kv_f32, o->n_threads, d)) != EC_OK)
        goto out;
    const int64_t n_embd = hp->n_embd;
    hidden = malloc((size_t)(ns * len * n_embd) * sizeof(float));
    xin = malloc((size_t)(len * n_embd) * sizeof(float));
    bi = calloc(L, sizeof *bi);
    head_imp = calloc((size_t)L * nh, sizeof *head_imp);
    ff_imp = calloc((size_t)L * nff, sizeof *ff_imp);
    plan.layer_removed = calloc(L, 1);
    plan.head_removed = calloc((size_t)L * nh, 1);
    plan.kv_removed = calloc((size_t)L * nkv, 1);
    plan.ff_removed = calloc((size_t)L * nff, 1);
    r->layers = calloc(L, sizeof *r->layers);
    if (!hidden || !xin || !bi || !head_imp || !ff_imp || !plan.layer_removed ||
        !plan.head_removed || !plan.kv_removed || !plan.ff_removed || !r->layers) {
        st = ec_fail(d, EC_ERR_NOMEM, "prune: cannot allocate %lld x %lld hidden states",
                     (long long)ns, (long long)len);
        goto out;
    }
    r->n_layers = L;
    for (int64_t s = 0; s < ns; s++)
        if ((st = ec_calib_embed(m, cd.tokens + s * len, len, hidden + s * len * n_embd, d)) !=
            EC_OK)
            goto out;

    /* one dense pass: importance and block influence */
    S.hp = hp;
    for (uint32_t il = 0; il < L; il++) {
        double t0 = ec_now_seconds();
        if (o->progress)
            o->progress(o->progress_ctx, "calib", (int)il, (int)L);
        if ((st = ec_calib_block_load(&b, m, il, d)) != EC_OK)
            goto out;
        S.head = head_imp + (size_t)il * nh;
        S.ff = ff_imp + (size_t)il * nff;
        double cos_sum = 0;
        for (int64_t s = 0; s < ns; s++) {
            float *x = hidden + s * len * n_embd;
            memcpy(xin, x, (size_t)(len * n_embd) * sizeof(float));
            if ((st = ec_calib_block_forward(fwd, &b, x, len, tap, &S, d)) != EC_OK)
                goto out;
            for (int64_t t = 0; t < len; t++) {
                const float *a = xin + t * n_embd, *c = x + t * n_embd;
                double ab = 0, aa = 0, cc = 0;
                for (int64_t i = 0; i < n_embd; i++) {
                    ab += (double)a[i] * c[i];
                    aa += (double)a[i] * a[i];
                    cc += (double)c[i] * c[i];
                }
                cos_sum += aa > 0 && cc > 0 ? ab / sqrt(aa * cc) : 1.0;
            }
        }
        ec_calib_block_release(&b);
        const double n_tok = (double)(ns * len);
        bi[il] = 1.0 - cos_sum / n_tok;
        for (uint32_t h = 0; h < nh; h++)
            S.head[h] /= n_tok;
        for (uint32_t c = 0; c < nff; c++)
            S.ff[c] /= n_tok;
        r->layers[il].src_layer = (int)il;
        r->layers[il].block_influence = bi[il];
        r->layers[il].seconds = ec_now_seconds() - t0;
    }
    free(hidden);
    hidden = NULL;

    /* decisions */
    lowest_k(bi, L, k_layers, plan.layer_removed);
    for (uint32_t il = 0; il < L; il++) {
        uint8_t *hr = plan.head_removed + (size_t)il * nh;
        uint8_t *kr = plan.kv_removed + (size_t)il * nkv;
        const double *hi = head_imp + (size_t)il * nh;
        if (k_heads > 0 && whole_groups) {
            double gs[1024];
            for (uint32_t k = 0; k < nkv && k < 1024; k++) {
                gs[k] = 0;
                for (uint32_t j = 0; j < g; j++)
                    gs[k] += hi[k * g + j];
            }
            lowest_k(gs, nkv, k_heads / g, kr);
            for (uint32_t h = 0; h < nh; h++)
                hr[h] = kr[h / g];
        } else if (k_heads > 0) {
            for (uint32_t k = 0; k < nkv; k++)
                lowest_k(hi + k * g, g, k_heads / nkv, hr + k * g);
        }
        lowest_k(ff_imp + (size_t)il * nff, nff, k_ff, plan.ff_removed + (size_t)il * nff);
        struct ec_prune_layer_stat *ls = &r->layers[il];
        for (uint32_t h = 0; h < nh; h++)
            if (hr[h] && ls->n_heads_removed < 64)
                ls->heads_removed[ls->n_heads_removed++] = h;
        ls->n_heads_removed = k_heads;
        ls->n_kv_removed = whole_groups ? k_heads / g : 0;
        ls->n_ff_removed = k_ff;
    }
    struct ec_hparams hp_out = *hp;
    hp_out.n_layer = L - k_layers;
    hp_out.n_head = nh - k_heads;
    hp_out.n_head_kv = whole_groups ? nkv - k_heads / g : nkv;
    hp_out.n_ff = nff - k_ff;
    r->hp_out = hp_out;
    int out_l = 0;
    for (uint32_t il = 0; il < L; il++)
        r->layers[il].out_layer = plan.layer_removed[il] ? -1 : out_l++;

    /* declare */
    enum ec_dtype outtype =
        o->outtype_auto ? (m->source == EC_SRC_HF ? m->hf_dtype : EC_F32) : o->outtype;
    if ((st = ec_pout_open(&out, m, &hp_out, o, d)) != EC_OK)
        goto out;
    if (out.gguf) {
        uint32_t ftype = 0;
        ec_convert_file_type(outtype, &ftype);
        if ((st = ec_model_write_gguf_kvs(m, out.gw, ftype, d)) != EC_OK)
            goto out;
        const char *a = hp->gguf_arch;
        const char *keys[] = {"block_count", "feed_forward_length", "attention.head_count",
                              "attention.head_count_kv", "attention.key_length",
                              "attention.value_length"};
        const uint32_t vals[] = {hp_out.n_layer, hp_out.n_ff,    hp_out.n_head,
                                 hp_out.n_head_kv, hp_out.head_dim, hp_out.head_dim};
        for (int i = 0; i < 6; i++) {
            char key[128];
            snprintf(key, sizeof key, "%s.%s", a, keys[i]);
            ec_gguf_writer_remove_kv(out.gw, key);
            if ((st = ec_gguf_writer_add_u32(out.gw, key, vals[i], d)) != EC_OK)
                goto out;
        }
        /* llama.cpp's qwen2 loader takes q as n_embd x n_embd; once heads are
         * gone the model is written as the llama architecture, which reads
         * heads x head_dim and the optional q/k/v biases: the same graph with
         * llama.cpp's interleaved RoPE, for which q/k rows are permuted */
        if (hp->family == EC_ARCH_QWEN2 && (uint64_t)hp_out.n_head * hd != hp->n_embd) {
            ec_gguf_writer_remove_kv(out.gw, "general.architecture");
            if ((st = ec_gguf_writer_rename_prefix(out.gw, "qwen2.", "llama.", d)) != EC_OK ||
                (st = ec_gguf_writer_add_str(out.gw, "general.architecture", "llama", d)) != EC_OK ||
                (st = ec_gguf_writer_add_u32(out.gw, "llama.rope.dimension_count", hp_out.head_dim, d)) !=
                    EC_OK)
                goto out;
            out.rope_interleave = true;
            hp_out.family = out.hp.family = EC_ARCH_LLAMA;
            hp_out.gguf_arch = out.hp.gguf_arch = "llama";
            r->hp_out = hp_out;
            ec_log_info("prune: %u of %u heads x head_dim %u no longer fill the hidden size %u, which "
                        "llama.cpp's qwen2 loader needs: writing the llama architecture (same graph, "
                        "q/k rows permuted for its RoPE, biases kept)",
                        hp_out.n_head, hp->n_head, hd, hp->n_embd);
        }
    }
    uint64_t max_elems = 0;
    for (int pass = 0; pass < 3; pass++) {
        for (uint32_t il = 0; il < (pass == 1 ? L : 1); il++) {
            if (pass == 1 && plan.layer_removed[il])
                continue;
            for (size_t i = 0; i < m->n_tensors; i++) {
                const struct ec_model_tensor *t = &m->tensors[i];
                int layer = -1, nn = 0;
                bool blk = sscanf(t->name, "blk.%d.%n", &layer, &nn) == 1 && nn > 0;
                bool tail = !blk && (strcmp(t->name, "output_norm.weight") == 0 ||
                                     strcmp(t->name, "output.weight") == 0);
                if ((pass == 0 && (blk || tail)) || (pass == 1 && (!blk || layer != (int)il)) ||
                    (pass == 2 && !tail))
                    continue;
                uint64_t ne0 = t->ne[0], ne1 = t->ne[1];
                char name[128];
                snprintf(name, sizeof name, "%s", t->name);
                if (blk) {
                    const char *rest = t->name + nn;
                    snprintf(name, sizeof name, "blk.%d.%s", r->layers[il].out_layer, rest);
                    bool vec = t->n_dims < 2;
                    uint64_t *rows = vec ? &ne0 : &ne1;
                    if (strncmp(rest, "attn_q.", 7) == 0)
                        *rows = (uint64_t)hp_out.n_head * hd;
                    else if (strncmp(rest, "attn_k.", 7) == 0 || strncmp(rest, "attn_v.", 7) == 0)
                        *rows = (uint64_t)hp_out.n_head_kv * hd;
                    else if (strcmp(rest, "attn_output.weight") == 0)
                        ne0 = (uint64_t)hp_out.n_head * hd;
                    else if (strncmp(rest, "ffn_gate.", 9) == 0 || strncmp(rest, "ffn_up.", 7) == 0)
                        *rows = hp_out.n_ff;
                    else if (strcmp(rest, "ffn_down.weight") == 0)
                        ne0 = hp_out.n_ff;
                }
                if ((st = ec_pout_add(&out, t, name, blk ? layer : -1, -1, t->n_dims, ne0, ne1,
                                      outtype, d)) != EC_OK)
                    goto out;
                uint64_t n = ec_model_tensor_n_elems(t);
                if (n > max_elems)
                    max_elems = n;
            }
        }
    }
    if ((st = ec_pout_begin(&out, d)) != EC_OK)
        goto out;
    buf = malloc((size_t)max_elems * sizeof(float));
    buf2 = malloc((size_t)max_elems * sizeof(float));
    if (!buf || !buf2) {
        st = ec_fail(d, EC_ERR_NOMEM, "prune: out of memory");
        goto out;
    }
    for (size_t i = 0; i < out.n; i++) {
        const struct ec_pout_entry *e = &out.e[i];
        const struct ec_model_tensor *t = e->src;
        if (o->progress && e->src_layer >= 0)
            o->progress(o->progress_ctx, "write", e->src_layer, (int)L);
        if ((st = ec_calib_tensor_f32(m, t, buf, d)) != EC_OK)
            goto out;
        float *res = buf;
        int64_t rows_removed = 0, cols_removed = 0;
        if (e->src_layer >= 0) {
            const int il = e->src_layer;
            const char *rest = strchr(t->name + 4, '.') + 1;
            const bool vec = t->n_dims < 2;
            const int64_t cols = vec ? 1 : (int64_t)t->ne[0];
            const int64_t rows = vec ? (int64_t)t->ne[0] : (int64_t)t->ne[1];
            const uint8_t *hr = plan.head_removed + (size_t)il * nh;
            const uint8_t *kr = plan.kv_removed + (size_t)il * nkv;
            const uint8_t *fr = plan.ff_removed + (size_t)il * nff;
            int64_t kept = -1;
            if (strncmp(rest, "attn_q.", 7) == 0)
                kept = keep_rows(buf, buf2, hr, nh, hd, cols);
            else if (strncmp(rest, "attn_k.", 7) == 0 || strncmp(rest, "attn_v.", 7) == 0)
                kept = keep_rows(buf, buf2, kr, nkv, hd, cols);
            else if (strncmp(rest, "ffn_gate.", 9) == 0 || strncmp(rest, "ffn_up.", 7) == 0)
                kept = keep_rows(buf, buf2, fr, nff, 1, cols);
            if (kept >= 0) {
                res = buf2;
                rows_removed = rows - kept;
            } else if (strcmp(rest, "attn_output.weight") == 0) {
                cols_removed = cols - keep_cols(buf, buf2, hr, rows, nh, hd);
                res = buf2;
            } else if (strcmp(rest, "ffn_down.weight") == 0) {
                cols_removed = cols - keep_cols(buf, buf2, fr, rows, nff, 1);
                res = buf2;
            }
            if (rows_removed || cols_removed) {
                struct ec_prune_tensor_stat *ts = ec_prune_result_add(r, e->name, il, d);
                if (!ts) {
                    st = EC_ERR_NOMEM;
                    goto out;
                }
                snprintf(ts->spec, sizeof ts->spec, "structured");
                ts->rows = (int64_t)(vec ? e->ne[0] : e->ne[1]);
                ts->cols = vec ? 1 : (int64_t)e->ne[0];
                ts->rows_removed = rows_removed;
                ts->cols_removed = cols_removed;
            }
        }
        if ((st = ec_pout_write_f32(&out, res, d)) != EC_OK)
            goto out;
        r->n_params_out += e->ne[0] * e->ne[1];
    }
    st = ec_pout_commit(&out, o, d);
out:
    ec_pout_release(&out);
    ec_calib_block_release(&b);
    ec_calib_fwd_free(fwd);
    ec_calib_release(&cd);
    splan_release(&plan);
    free(hidden);
    free(xin);
    free(buf);
    free(buf2);
    free(ffac);
    free(bi);
    free(head_imp);
    free(ff_imp);
    return st;
}
