/* pruners/calib.c: calibration windows and the one-block forward pass (see
 * pruners/calib.h). The forward mirrors src/engine/engine.c operation by
 * operation; a test compares a whole model's logits through these blocks with
 * the engine's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "edgec/engine.h"
#include "edgec/fp16.h"
#include "edgec/io.h"
#include "edgec/quant.h"
#include "edgec/tokenizer.h"
#include "pruners/calib.h"

#define CALIB_MAX_TEXT_BYTES (1ull << 32)

static const char *const lin_names[EC_LIN_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
};

const char *ec_calib_lin_name(enum ec_calib_lin l)
{
    return (unsigned)l < EC_LIN_COUNT ? lin_names[l] : "?";
}

/* ---- calibration windows ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static enum ec_status read_ids(const char *path, int32_t **out, int64_t *n, struct ec_diag *d)
{
    struct ec_mapped_file mf;
    enum ec_status st = ec_mapped_file_open(&mf, path, d);
    if (st != EC_OK)
        return st;
    if (mf.size_bytes % 4 != 0) {
        st = ec_fail(d, EC_ERR_FORMAT, "%s: %llu bytes is not a whole number of int32 ids", path,
                     (unsigned long long)mf.size_bytes);
        goto out_close;
    }
    *n = (int64_t)(mf.size_bytes / 4);
    *out = malloc(mf.size_bytes ? mf.size_bytes : 1);
    if (!*out) {
        st = ec_fail(d, EC_ERR_NOMEM, "%s: cannot allocate %lld ids", path, (long long)*n);
        goto out_close;
    }
    if (mf.size_bytes)
        memcpy(*out, mf.data, mf.size_bytes);
out_close:
    ec_mapped_file_close(&mf);
    return st;
}

static enum ec_status read_text_ids(const struct ec_model *m, const char *path, int32_t **out,
                                    int64_t *n, struct ec_diag *d)
{
    char *text = NULL;
    size_t len = 0;
    struct ec_tokenizer *tk = NULL;
    enum ec_status st = ec_read_file(path, CALIB_MAX_TEXT_BYTES, &text, &len, d);
    if (st != EC_OK)
        return st;
    if ((st = ec_tokenizer_new(&tk, &m->vocab, d)) != EC_OK)
        goto out_free;
    size_t n_ids = 0;
    st = ec_tokenizer_encode(tk, text, len, true, false, out, &n_ids, d);
    *n = (int64_t)n_ids;
out_free:
    ec_tokenizer_free(tk);
    free(text);
    return st;
}

enum ec_status ec_calib_load(struct ec_calib_data *c, const struct ec_model *m, const char *path,
                             int64_t n_samples, int64_t len, uint64_t seed, struct ec_diag *d)
{
    memset(c, 0, sizeof *c);
    if (n_samples <= 0 || len <= 0)
        return ec_fail(d, EC_ERR_ARG, "%s: %lld calibration samples of %lld tokens", path,
                       (long long)n_samples, (long long)len);
    int32_t *ids = NULL;
    int64_t n = 0;
    enum ec_status st = ends_with(path, ".i32") ? read_ids(path, &ids, &n, d)
                                                : read_text_ids(m, path, &ids, &n, d);
    if (st != EC_OK)
        return st;
    if (n < len + 1) {
        st = ec_fail(d, EC_ERR_ARG,
                     "%s: %lld tokens, need at least %lld for windows of %lld tokens", path,
                     (long long)n, (long long)(len + 1), (long long)len);
        goto out_free;
    }
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= m->hp.n_vocab) {
            st = ec_fail(d, EC_ERR_ARG, "%s: token %lld has id %d outside 0..%u", path,
                         (long long)i, ids[i], m->hp.n_vocab - 1);
            goto out_free;
        }
    c->tokens = malloc((size_t)(n_samples * len) * sizeof *c->tokens);
    if (!c->tokens) {
        st = ec_fail(d, EC_ERR_NOMEM, "%s: cannot allocate %lld x %lld calibration tokens", path,
                     (long long)n_samples, (long long)len);
        goto out_free;
    }
    /* random.randint(0, n - len - 1) is inclusive: n - len choices */
    uint64_t state = seed, span = (uint64_t)(n - len);
    for (int64_t s = 0; s < n_samples; s++) {
        uint64_t off = splitmix64(&state) % span;
        memcpy(c->tokens + s * len, ids + off, (size_t)len * sizeof *ids);
    }
    c->n_samples = n_samples;
    c->len = len;
    c->n_source_tokens = n;
out_free:
    free(ids);
    return st;
}

void ec_calib_release(struct ec_calib_data *c)
{
    free(c->tokens);
    memset(c, 0, sizeof *c);
}

/* ---- weights ---- */

enum ec_status ec_calib_tensor_f32(const struct ec_model *m, const struct ec_model_tensor *t,
                                   float *dst, struct ec_diag *d)
{
    if (t->dtype == EC_F32 || t->dtype == EC_F16 || t->dtype == EC_BF16)
        return ec_model_tensor_read_f32(m, t, dst, d);
    if (!ec_dtype_traits(t->dtype) || t->permute_heads)
        return ec_fail(d, EC_ERR_UNSUPPORTED, "%s: tensor '%s': type %s cannot be read as F32",
                       t->src_file, t->name, ec_dtype_name(t->dtype));
    uint64_t n = ec_model_tensor_n_elems(t);
    int64_t rows = (int64_t)(n / t->ne[0]);
    if (ec_dtype_row_bytes(t->dtype, t->ne[0]) * (uint64_t)rows > t->n_bytes)
        return ec_fail(d, EC_ERR_FORMAT, "%s: tensor '%s': %llu bytes are too few for its shape",
                       t->src_file, t->name, (unsigned long long)t->n_bytes);
    return ec_dequantize_rows(t->dtype, t->data, dst, rows, (int64_t)t->ne[0], d);
}

static enum ec_status load_named(const struct ec_model *m, const char *name, uint64_t ne0,
                                 uint64_t ne1, bool required, float **out, struct ec_diag *d)
{
    *out = NULL;
    const struct ec_model_tensor *t = ec_model_find(m, name);
    if (!t) {
        if (required)
            return ec_fail(d, EC_ERR_FORMAT, "%s: tensor '%s' is missing", m->path, name);
        return EC_OK;
    }
    if (t->ne[0] != ne0 || ec_model_tensor_n_elems(t) != ne0 * ne1)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: tensor '%s': shape [%llu, %llu], expected [%llu, %llu] from the "
                       "hyper-parameters",
                       m->path, name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                       (unsigned long long)ne0, (unsigned long long)ne1);
    float *buf = malloc((size_t)(ne0 * ne1) * sizeof *buf);
    if (!buf)
        return ec_fail(d, EC_ERR_NOMEM, "%s: tensor '%s': cannot allocate %llu floats", m->path,
                       name, (unsigned long long)(ne0 * ne1));
    enum ec_status st = ec_calib_tensor_f32(m, t, buf, d);
    if (st != EC_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return EC_OK;
}

enum ec_status ec_calib_block_load(struct ec_calib_block *b, const struct ec_model *m, uint32_t il,
                                   struct ec_diag *d)
{
    memset(b, 0, sizeof *b);
    const struct ec_hparams *hp = &m->hp;
    const int64_t n_embd = hp->n_embd, n_q = (int64_t)hp->n_head * hp->head_dim,
                  n_kv = (int64_t)hp->n_head_kv * hp->head_dim, n_ff = hp->n_ff;
    const int64_t rows[EC_LIN_COUNT] = {n_q, n_kv, n_kv, n_embd, n_ff, n_ff, n_embd};
    const int64_t cols[EC_LIN_COUNT] = {n_embd, n_embd, n_embd, n_q, n_embd, n_embd, n_ff};
    char name[128];
    enum ec_status st;
    snprintf(name, sizeof name, "blk.%u.attn_norm.weight", il);
    if ((st = load_named(m, name, (uint64_t)n_embd, 1, true, &b->attn_norm, d)) != EC_OK)
        goto out_release;
    snprintf(name, sizeof name, "blk.%u.ffn_norm.weight", il);
    if ((st = load_named(m, name, (uint64_t)n_embd, 1, true, &b->ffn_norm, d)) != EC_OK)
        goto out_release;
    for (int l = 0; l < EC_LIN_COUNT; l++) {
        b->rows[l] = rows[l];
        b->cols[l] = cols[l];
        snprintf(name, sizeof name, "blk.%u.%s.weight", il, lin_names[l]);
        if ((st = load_named(m, name, (uint64_t)cols[l], (uint64_t)rows[l], true, &b->w[l], d)) !=
            EC_OK)
            goto out_release;
        snprintf(name, sizeof name, "blk.%u.%s.bias", il, lin_names[l]);
        if ((st = load_named(m, name, (uint64_t)rows[l], 1, false, &b->b[l], d)) != EC_OK)
            goto out_release;
    }
    return EC_OK;
out_release:
    ec_calib_block_release(b);
    return st;
}

void ec_calib_block_release(struct ec_calib_block *b)
{
    free(b->attn_norm);
    free(b->ffn_norm);
    for (int l = 0; l < EC_LIN_COUNT; l++) {
        free(b->w[l]);
        free(b->b[l]);
    }
    memset(b, 0, sizeof *b);
}

enum ec_status ec_calib_embed(const struct ec_model *m, const int32_t *tokens, int64_t n_tok,
                              float *x, struct ec_diag *d)
{
    const struct ec_model_tensor *t = ec_model_find(m, "token_embd.weight");
    const uint64_t n_embd = m->hp.n_embd;
    if (!t)
        return ec_fail(d, EC_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing", m->path);
    uint64_t rb = ec_dtype_row_bytes(t->dtype, n_embd);
    if (t->ne[0] != n_embd || rb == 0 || t->n_bytes < rb * t->ne[1])
        return ec_fail(d, EC_ERR_FORMAT, "%s: tensor 'token_embd.weight': unexpected shape",
                       m->path);
    const struct ec_dtype_traits *tr = ec_dtype_traits(t->dtype);
    for (int64_t i = 0; i < n_tok; i++) {
        if (tokens[i] < 0 || (uint64_t)tokens[i] >= t->ne[1])
            return ec_fail(d, EC_ERR_ARG, "calibration token %lld: id %d out of range",
                           (long long)i, tokens[i]);
        const uint8_t *row = t->data + (uint64_t)tokens[i] * rb;
        float *xt = x + i * (int64_t)n_embd;
        if (t->dtype == EC_F32)
            memcpy(xt, row, n_embd * sizeof(float));
        else if (t->dtype == EC_F16)
            ec_fp16_to_fp32_row((const uint16_t *)(const void *)row, xt, n_embd);
        else if (t->dtype == EC_BF16)
            ec_bf16_to_fp32_row((const uint16_t *)(const void *)row, xt, n_embd);
        else if (tr)
            tr->to_f32(row, xt, (int64_t)n_embd);
        else
            return ec_fail(d, EC_ERR_UNSUPPORTED, "%s: tensor 'token_embd.weight': type %s",
                           m->path, ec_dtype_name(t->dtype));
    }
    return EC_OK;
}

/* ---- forward ---- */

struct ec_calib_fwd {
    struct ec_hparams hp;
    int64_t max_tok;
    bool kv_f16, neox;
    int n_threads;
    float *h, *q, *k, *v, *att, *gate, *up, *y; /* scratch [max_tok][width] */
    float *rope_cs;                            /* [max_tok][head_dim] */
    float *scores;                             /* [n_threads][max_tok] */
};

/* fp32 -> fp16 -> fp32 (the engine's round_f16 for all inputs) */
static inline float round_f16(float x)
{
    return ec_fp16_to_fp32(ec_fp32_to_fp16(x));
}

void ec_calib_fwd_free(struct ec_calib_fwd *f)
{
    if (!f)
        return;
    free(f->h);
    free(f->q);
    free(f->k);
    free(f->v);
    free(f->att);
    free(f->gate);
    free(f->up);
    free(f->y);
    free(f->rope_cs);
    free(f->scores);
    free(f);
}

enum ec_status ec_calib_fwd_new(struct ec_calib_fwd **out, const struct ec_hparams *hp,
                                const float *freq_factors, int64_t max_tok, bool kv_f16,
                                int n_threads, struct ec_diag *d)
{
    *out = NULL;
    struct ec_rope rope;
    enum ec_status st = ec_rope_init(&rope, hp, freq_factors, "prune: calibration pass", d);
    if (st != EC_OK)
        return st;
    if (hp->head_dim == 0 || hp->head_dim % 2 || hp->n_head_kv == 0 ||
        hp->n_head % hp->n_head_kv)
        return ec_fail(d, EC_ERR_FORMAT, "prune: inconsistent head counts (%u heads, %u kv, dim %u)",
                       hp->n_head, hp->n_head_kv, hp->head_dim);
    struct ec_calib_fwd *f = calloc(1, sizeof *f);
    if (!f)
        return ec_fail(d, EC_ERR_NOMEM, "prune: out of memory");
    f->hp = *hp;
    f->max_tok = max_tok;
    f->kv_f16 = kv_f16;
    f->neox = hp->family == EC_ARCH_QWEN2;
#ifdef _OPENMP
    f->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    (void)n_threads;
    f->n_threads = 1;
#endif
    const size_t nt = (size_t)max_tok, n_q = (size_t)hp->n_head * hp->head_dim,
                 n_kv = (size_t)hp->n_head_kv * hp->head_dim;
    size_t wide = n_q > hp->n_embd ? n_q : hp->n_embd;
    size_t widest = wide > hp->n_ff ? wide : hp->n_ff;
    f->h = malloc(nt * wide * sizeof(float));
    f->q = malloc(nt * n_q * sizeof(float));
    f->k = malloc(nt * n_kv * sizeof(float));
    f->v = malloc(nt * n_kv * sizeof(float));
    f->att = malloc(nt * n_q * sizeof(float));
    f->gate = malloc(nt * hp->n_ff * sizeof(float));
    f->up = malloc(nt * hp->n_ff * sizeof(float));
    f->y = malloc(nt * widest * sizeof(float));
    f->rope_cs = malloc(nt * hp->head_dim * sizeof(float));
    f->scores = malloc((size_t)f->n_threads * nt * sizeof(float));
    if (!f->h || !f->q || !f->k || !f->v || !f->att || !f->gate || !f->up || !f->y ||
        !f->rope_cs || !f->scores) {
        ec_calib_fwd_free(f);
        return ec_fail(d, EC_ERR_NOMEM, "prune: cannot allocate activations for %lld tokens",
                       (long long)max_tok);
    }
    /* the engine's rope cache at pos0 = 0 */
    ec_rope_cache(&rope, 0, max_tok, f->rope_cs);
    *out = f;
    return EC_OK;
}

void ec_calib_rms_norm(const float *x, const float *w, int64_t n_tok, int64_t n, float eps,
                       float *y)
{
    for (int64_t t = 0; t < n_tok; t++) {
        const float *xt = x + t * n;
        float *yt = y + t * n;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++)
            sum += (double)(xt[i] * xt[i]);
        const float mean = (float)(sum / (double)n);
        const float scale = 1.0f / sqrtf(mean + eps);
        for (int64_t i = 0; i < n; i++)
            yt[i] = (xt[i] * scale) * w[i];
    }
}

static enum ec_status linear(struct ec_calib_fwd *f, const struct ec_calib_block *b,
                             enum ec_calib_lin l, const float *x, int64_t n, float *y,
                             ec_calib_tap_fn tap, void *user, struct ec_diag *d)
{
    const struct ec_linear_view v = {
        .type = EC_F32,
        .data = (const uint8_t *)b->w[l],
        .row_bytes = (uint64_t)b->cols[l] * sizeof(float),
        .n_in = b->cols[l],
        .n_out = b->rows[l],
    };
    enum ec_status st = ec_matmul_fast(&v, x, n, y, f->n_threads, d);
    if (st != EC_OK)
        return st;
    if (b->b[l])
        for (int64_t t = 0; t < n; t++)
            for (int64_t r = 0; r < b->rows[l]; r++)
                y[t * b->rows[l] + r] += b->b[l][r];
    return tap ? tap(user, l, x, y, n, d) : EC_OK;
}

static void rope_apply(const struct ec_calib_fwd *f, float *v, int64_t n, uint32_t n_heads)
{
    const uint32_t hd = f->hp.head_dim;
    for (int64_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < n_heads; h++)
            ec_rope_rotate(v + (t * n_heads + h) * hd, f->rope_cs + t * hd, hd, f->neox);
}

/* causal GQA attention of n tokens over themselves, k/v already rounded */
static void attention(struct ec_calib_fwd *f, int64_t n)
{
    const struct ec_hparams *hp = &f->hp;
    const uint32_t hd = hp->head_dim, n_head = hp->n_head;
    const uint32_t group = hp->n_head / hp->n_head_kv;
    const size_t kv_stride = (size_t)hp->n_head_kv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t n_items = n * n_head;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(f->n_threads)
#endif
    for (int64_t it = 0; it < n_items; it++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *sc = f->scores + (size_t)tid * (size_t)f->max_tok;
        const int64_t t = it / n_head;
        const uint32_t h = (uint32_t)(it % n_head);
        const uint32_t kvh = h / group;
        const float *q = f->q + (size_t)it * hd;
        const uint32_t n_keys = (uint32_t)t + 1;
        ec_attention_item(q, f->k + (size_t)kvh * hd, f->v + (size_t)kvh * hd, kv_stride, n_keys,
                          hd, scale, f->kv_f16, sc, f->att + (size_t)it * hd);
    }
}

enum ec_status ec_calib_block_forward(struct ec_calib_fwd *f, const struct ec_calib_block *b,
                                      float *x, int64_t n, ec_calib_tap_fn tap, void *user,
                                      struct ec_diag *d)
{
    const struct ec_hparams *hp = &f->hp;
    enum ec_status st;
    if (n <= 0 || n > f->max_tok)
        return ec_fail(d, EC_ERR_ARG, "prune: %lld tokens, scratch holds %lld", (long long)n,
                       (long long)f->max_tok);
    const int64_t n_embd = hp->n_embd;
    const size_t n_kv = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t n_q = (size_t)hp->n_head * hp->head_dim;

    ec_calib_rms_norm(x, b->attn_norm, n, n_embd, hp->norm_eps, f->h);
    if ((st = linear(f, b, EC_LIN_Q, f->h, n, f->q, tap, user, d)) != EC_OK ||
        (st = linear(f, b, EC_LIN_K, f->h, n, f->k, tap, user, d)) != EC_OK ||
        (st = linear(f, b, EC_LIN_V, f->h, n, f->v, tap, user, d)) != EC_OK)
        return st;
    rope_apply(f, f->q, n, hp->n_head);
    rope_apply(f, f->k, n, hp->n_head_kv);
    if (f->kv_f16) {
        for (size_t i = 0; i < (size_t)n * n_kv; i++) {
            f->k[i] = round_f16(f->k[i]);
            f->v[i] = round_f16(f->v[i]);
        }
        for (size_t i = 0; i < (size_t)n * n_q; i++)
            f->q[i] = round_f16(f->q[i]);
    }
    attention(f, n);
    if ((st = linear(f, b, EC_LIN_O, f->att, n, f->y, tap, user, d)) != EC_OK)
        return st;
    for (size_t i = 0; i < (size_t)(n * n_embd); i++)
        x[i] += f->y[i];

    ec_calib_rms_norm(x, b->ffn_norm, n, n_embd, hp->norm_eps, f->h);
    if ((st = linear(f, b, EC_LIN_GATE, f->h, n, f->gate, tap, user, d)) != EC_OK ||
        (st = linear(f, b, EC_LIN_UP, f->h, n, f->up, tap, user, d)) != EC_OK)
        return st;
    for (int64_t t = 0; t < n; t++)
        ec_silu_mul_row(f->gate + t * hp->n_ff, f->up + t * hp->n_ff, hp->n_ff);
    if ((st = linear(f, b, EC_LIN_DOWN, f->gate, n, f->y, tap, user, d)) != EC_OK)
        return st;
    for (size_t i = 0; i < (size_t)(n * n_embd); i++)
        x[i] += f->y[i];
    return EC_OK;
}
