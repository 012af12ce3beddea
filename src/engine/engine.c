/* The llama-family forward pass (see edgec/engine.h for the graph).
 *
 * Numerics follow llama.cpp's CPU backend where it matters at the 1e-4 level:
 * RMSNorm sums x^2 in double and scales by 1/sqrtf(mean + eps); RoPE angles are
 * pos * base^(-2i/n_rot) built by repeated float multiplication; softmax sums
 * expf in double and multiplies by (float)(1/sum); with an F16 KV cache the
 * query and the softmax probabilities are rounded to fp16 as well, because
 * llama.cpp converts them to fp16 for its F16 x F16 matmuls.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Elementwise and per-token loops of the forward pass run over the engine's
 * threads; each element is computed by one thread in the same way, so the
 * results do not depend on the thread count. Small batches stay serial. */
#ifdef _OPENMP
#define EC_PRAGMA(x) _Pragma(#x)
#define EC_PAR_FOR(nt, work)                                                                       \
    EC_PRAGMA(omp parallel for schedule(static) num_threads(nt) if ((work) >= 32768))
#else
#define EC_PAR_FOR(nt, work)
#endif

#include "edgec/engine.h"
#include "edgec/fp16.h"
#include "edgec/quant.h"
#include "src/core/clones.h"
#include "src/core/cpu.h"

struct eng_lin {
    struct ec_linear_view v;
    const char *name; /* GGUF name, borrowed from the model */
    float *owned;     /* owned F32 copy (permuted / unaligned) or NULL */
    float *bias;      /* [n_out] owned, or NULL */
};

struct eng_layer {
    float *attn_norm; /* [n_embd] */
    float *ffn_norm;  /* [n_embd] */
    struct eng_lin q, k, v, o, gate, up, down;
    float *k_cache; /* [n_ctx][n_head_kv * head_dim] */
    float *v_cache; /* [n_ctx][n_head_kv * head_dim] */
};

struct ec_engine {
    const struct ec_model *m;
    struct ec_hparams hp;
    struct ec_engine_opts o;
    bool neox;            /* qwen2: rotate halves; llama: adjacent pairs */
    float freq_scale;     /* 1 / linear factor */
    float *freq_factors;  /* [head_dim/2] divisors of the angle (llama3), or NULL */
    struct eng_lin tok_embd;
    struct eng_lin output;
    float *output_norm; /* [n_embd] */
    struct eng_layer *layers;
    uint32_t n_past;

    /* scratch, sized for cap_tokens tokens */
    int64_t cap_tokens;
    float *x, *h, *q, *k, *v, *att, *gate, *up;
    float *xr;          /* [cap_tokens][max n_in] activations rounded to the vec_dot type */
    float *rope_cs;     /* [cap_tokens][head_dim] cos/sin pairs */
    float *scores;      /* [n_threads][n_ctx] */
    double *acc;        /* [n_threads][head_dim] */
    int n_threads;
};

void ec_engine_opts_init(struct ec_engine_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_ctx = 512;
    o->kv_f16 = true;
    o->round_activations = true;
    o->qdot = getenv("EDGEC_NO_QDOT") == NULL;
}

/* fp32 -> fp16 -> fp32. Fast path for the fp16 normal range: round the
 * mantissa to 10 bits, ties to even, on the bit pattern; the rest (subnormal,
 * overflow, Inf, NaN) through the reference conversions. Checked equal to the
 * reference for all 2^32 non-NaN inputs. */
static inline float round_f16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint32_t a = u & 0x7fffffffu;
    if (a >= 0x38800000u && a < 0x477ff000u) { /* 2^-14 <= |x| < 65520 */
        u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
        memcpy(&x, &u, 4);
        return x;
    }
    return ec_fp16_to_fp32(ec_fp32_to_fp16(x));
}

/* ---- building ---- */

static const char *model_path(const struct ec_model *m)
{
    return m->path ? m->path : "model";
}

/* Decode a plain-typed tensor into dst (all elements), with the HF -> GGUF
 * head permutation applied by the model view. */
static enum ec_status tensor_to_f32(const struct ec_model *m, const struct ec_model_tensor *t,
                                    float *dst, struct ec_diag *d)
{
    uint64_t n = ec_model_tensor_n_elems(t);
    size_t es;
    switch (t->dtype) {
    case EC_F32: es = 4; break;
    case EC_F16:
    case EC_BF16: es = 2; break;
    default:
        return ec_fail(d, EC_ERR_UNSUPPORTED, "%s: tensor '%s': type %s is not supported by the engine",
                       model_path(m), t->name, ec_dtype_name(t->dtype));
    }
    if (t->n_bytes < n * es)
        return ec_fail(d, EC_ERR_FORMAT, "%s: tensor '%s': %llu bytes for %llu elements of %s",
                       model_path(m), t->name, (unsigned long long)t->n_bytes,
                       (unsigned long long)n, ec_dtype_name(t->dtype));
    return ec_model_tensor_read_f32(m, t, dst, d);
}

static enum ec_status check_shape(const struct ec_model *m, const struct ec_model_tensor *t,
                                  uint32_t n_dims, uint64_t ne0, uint64_t ne1, struct ec_diag *d)
{
    bool ok = ne0 == t->ne[0] && ne1 == t->ne[1] && t->ne[2] == 1 && t->ne[3] == 1 &&
              (t->n_dims == n_dims || (n_dims == 2 && ne1 == 1 && t->n_dims == 1));
    if (!ok)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: tensor '%s': shape [%llu, %llu, %llu, %llu] (innermost first), "
                       "expected [%llu, %llu] from the hyper-parameters",
                       model_path(m), t->name, (unsigned long long)t->ne[0],
                       (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
                       (unsigned long long)t->ne[3], (unsigned long long)ne0,
                       (unsigned long long)ne1);
    return EC_OK;
}

/* A 1-D F32 copy of vector tensor `name` of n elements; *out stays NULL when
 * the tensor is absent and not required. */
static enum ec_status load_vec(const struct ec_model *m, const char *name, uint64_t n,
                               bool required, float **out, struct ec_diag *d)
{
    *out = NULL;
    const struct ec_model_tensor *t = ec_model_find(m, name);
    if (!t) {
        if (required)
            return ec_fail(d, EC_ERR_FORMAT, "%s: tensor '%s' is missing", model_path(m), name);
        return EC_OK;
    }
    enum ec_status st = check_shape(m, t, 1, n, 1, d);
    if (st != EC_OK)
        return st;
    float *buf = malloc(n * sizeof *buf);
    if (!buf)
        return ec_fail(d, EC_ERR_NOMEM, "%s: tensor '%s': cannot allocate %llu floats",
                       model_path(m), name, (unsigned long long)n);
    st = tensor_to_f32(m, t, buf, d);
    if (st != EC_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return EC_OK;
}

/* Weight `name` of n_out rows x n_in, used in place when possible. */
static enum ec_status load_lin(const struct ec_model *m, const char *name, uint64_t n_in,
                               uint64_t n_out, bool required, struct eng_lin *l,
                               struct ec_diag *d)
{
    memset(l, 0, sizeof *l);
    const struct ec_model_tensor *t = ec_model_find(m, name);
    if (!t) {
        if (required)
            return ec_fail(d, EC_ERR_FORMAT, "%s: tensor '%s' is missing", model_path(m), name);
        return EC_OK;
    }
    enum ec_status st = check_shape(m, t, 2, n_in, n_out, d);
    if (st != EC_OK)
        return st;
    l->name = t->name;
    l->v.n_in = (int64_t)n_in;
    l->v.n_out = (int64_t)n_out;
    const struct ec_dtype_info *info = ec_dtype_info(t->dtype);
    bool plain = t->dtype == EC_F32 || t->dtype == EC_F16 || t->dtype == EC_BF16;
    if (!info || (!plain && !ec_dtype_traits(t->dtype)))
        return ec_fail(d, EC_ERR_UNSUPPORTED,
                       "%s: tensor '%s': type %s is not supported by the engine",
                       model_path(m), name, ec_dtype_name(t->dtype));
    uint64_t row_bytes = ec_dtype_row_bytes(t->dtype, n_in);
    if (row_bytes == 0)
        return ec_fail(d, EC_ERR_FORMAT,
                       "%s: tensor '%s': rows of %llu elements are not whole %s blocks",
                       model_path(m), name, (unsigned long long)n_in, ec_dtype_name(t->dtype));
    if (t->n_bytes < row_bytes * n_out)
        return ec_fail(d, EC_ERR_FORMAT, "%s: tensor '%s': %llu bytes, expected %llu",
                       model_path(m), name, (unsigned long long)t->n_bytes,
                       (unsigned long long)(row_bytes * n_out));
    if (!plain && t->permute_heads)
        return ec_fail(d, EC_ERR_UNSUPPORTED,
                       "%s: tensor '%s': cannot permute heads of a %s tensor", model_path(m),
                       name, ec_dtype_name(t->dtype));
    bool in_place = t->permute_heads == 0 &&
                    (t->dtype != EC_F32 || ((uintptr_t)t->data % sizeof(float)) == 0);
    if (in_place) {
        l->v.type = t->dtype;
        l->v.data = t->data;
        l->v.row_bytes = row_bytes;
        return EC_OK;
    }
    l->owned = malloc(n_in * n_out * sizeof(float));
    if (!l->owned)
        return ec_fail(d, EC_ERR_NOMEM, "%s: tensor '%s': cannot allocate %llu floats",
                       model_path(m), name, (unsigned long long)(n_in * n_out));
    st = tensor_to_f32(m, t, l->owned, d);
    if (st != EC_OK)
        return st;
    l->v.type = EC_F32;
    l->v.data = (const uint8_t *)l->owned;
    l->v.row_bytes = n_in * sizeof(float);
    return EC_OK;
}

static void lin_release(struct eng_lin *l)
{
    free(l->owned);
    free(l->bias);
    memset(l, 0, sizeof *l);
}

void ec_engine_free(struct ec_engine *e)
{
    if (!e)
        return;
    if (e->layers) {
        for (uint32_t i = 0; i < e->hp.n_layer; i++) {
            struct eng_layer *L = &e->layers[i];
            free(L->attn_norm);
            free(L->ffn_norm);
            lin_release(&L->q);
            lin_release(&L->k);
            lin_release(&L->v);
            lin_release(&L->o);
            lin_release(&L->gate);
            lin_release(&L->up);
            lin_release(&L->down);
            free(L->k_cache);
            free(L->v_cache);
        }
        free(e->layers);
    }
    lin_release(&e->tok_embd);
    lin_release(&e->output);
    free(e->output_norm);
    free(e->freq_factors);
    free(e->x);
    free(e->h);
    free(e->q);
    free(e->k);
    free(e->v);
    free(e->att);
    free(e->gate);
    free(e->up);
    free(e->rope_cs);
    free(e->xr);
    free(e->scores);
    free(e->acc);
    free(e);
}

/* llama3 rope scaling: per-frequency divisors as llama.cpp's converter
 * computes them for rope_freqs.weight. */
static enum ec_status llama3_freq_factors(struct ec_engine *e, struct ec_diag *d)
{
    const struct ec_hparams *hp = &e->hp;
    uint32_t n = hp->head_dim / 2;
    e->freq_factors = malloc(n * sizeof(float));
    if (!e->freq_factors)
        return ec_fail(d, EC_ERR_NOMEM, "engine: cannot allocate rope factors");
    double factor = hp->rope_factor, lo = hp->rope_low_freq_factor, hi = hp->rope_high_freq_factor;
    double old_ctx = hp->rope_orig_ctx ? hp->rope_orig_ctx : 8192;
    if (lo <= 0)
        lo = 1;
    if (hi <= 0)
        hi = 4;
    double lo_wavelen = old_ctx / lo, hi_wavelen = old_ctx / hi;
    for (uint32_t i = 0; i < n; i++) {
        double freq = 1.0 / pow(hp->rope_theta, (double)(2 * i) / hp->head_dim);
        double wavelen = 2.0 * M_PI / freq;
        double f;
        if (wavelen < hi_wavelen)
            f = 1.0;
        else if (wavelen > lo_wavelen)
            f = factor;
        else {
            double smooth = (old_ctx / wavelen - lo) / (hi - lo);
            f = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        e->freq_factors[i] = (float)f;
    }
    return EC_OK;
}

enum ec_status ec_engine_new(struct ec_engine **out, const struct ec_model *m,
                             const struct ec_engine_opts *o, struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    *out = NULL;
    struct ec_engine *e = calloc(1, sizeof *e);
    if (!e)
        return ec_fail(d, EC_ERR_NOMEM, "engine: out of memory");
    e->m = m;
    e->hp = m->hp;
    if (o)
        e->o = *o;
    else
        ec_engine_opts_init(&e->o);
    if (e->o.n_ctx == 0)
        e->o.n_ctx = 512;
    const struct ec_hparams *hp = &e->hp;
    const char *mp = model_path(m);

    if (hp->family == EC_ARCH_QWEN2)
        e->neox = true;
    else if (hp->family == EC_ARCH_LLAMA || hp->family == EC_ARCH_MISTRAL)
        e->neox = false;
    else {
        st = ec_fail(d, EC_ERR_UNSUPPORTED, "%s: architecture family %d is not supported", mp,
                     (int)hp->family);
        goto out_free;
    }
    if (hp->n_embd == 0 || hp->n_head == 0 || hp->n_head_kv == 0 || hp->head_dim == 0 ||
        hp->n_layer == 0 || hp->n_vocab == 0 || hp->n_ff == 0 || hp->n_head % hp->n_head_kv != 0 ||
        hp->head_dim % 2 != 0) {
        st = ec_fail(d, EC_ERR_FORMAT,
                     "%s: inconsistent hyper-parameters (n_embd %u, n_head %u, n_head_kv %u, "
                     "head_dim %u, n_layer %u, n_vocab %u, n_ff %u)",
                     mp, hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_layer,
                     hp->n_vocab, hp->n_ff);
        goto out_free;
    }
    e->freq_scale = 1.0f;
    switch (hp->rope_scaling) {
    case EC_ROPE_SCALING_NONE: break;
    case EC_ROPE_SCALING_LINEAR:
        if (hp->rope_factor > 0)
            e->freq_scale = 1.0f / hp->rope_factor;
        break;
    case EC_ROPE_SCALING_LLAMA3: break; /* below */
    default:
        st = ec_fail(d, EC_ERR_UNSUPPORTED, "%s: rope scaling type %d (yarn) is not supported",
                     mp, (int)hp->rope_scaling);
        goto out_free;
    }
    st = load_vec(m, "rope_freqs.weight", hp->head_dim / 2, false, &e->freq_factors, d);
    if (st != EC_OK)
        goto out_free;
    if (!e->freq_factors && hp->rope_scaling == EC_ROPE_SCALING_LLAMA3) {
        st = llama3_freq_factors(e, d);
        if (st != EC_OK)
            goto out_free;
    }

    const uint64_t n_embd = hp->n_embd, n_q = (uint64_t)hp->n_head * hp->head_dim,
                   n_kv = (uint64_t)hp->n_head_kv * hp->head_dim, n_ff = hp->n_ff;
    st = load_lin(m, "token_embd.weight", n_embd, hp->n_vocab, true, &e->tok_embd, d);
    if (st != EC_OK)
        goto out_free;
    st = load_lin(m, "output.weight", n_embd, hp->n_vocab, false, &e->output, d);
    if (st != EC_OK)
        goto out_free;
    st = load_vec(m, "output_norm.weight", n_embd, true, &e->output_norm, d);
    if (st != EC_OK)
        goto out_free;

    e->layers = calloc(hp->n_layer, sizeof *e->layers);
    if (!e->layers) {
        st = ec_fail(d, EC_ERR_NOMEM, "engine: out of memory");
        goto out_free;
    }
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        struct eng_layer *L = &e->layers[il];
        char name[96];
#define NM(suffix) (snprintf(name, sizeof name, "blk.%u.%s", il, suffix), name)
        if ((st = load_vec(m, NM("attn_norm.weight"), n_embd, true, &L->attn_norm, d)) ||
            (st = load_vec(m, NM("ffn_norm.weight"), n_embd, true, &L->ffn_norm, d)) ||
            (st = load_lin(m, NM("attn_q.weight"), n_embd, n_q, true, &L->q, d)) ||
            (st = load_lin(m, NM("attn_k.weight"), n_embd, n_kv, true, &L->k, d)) ||
            (st = load_lin(m, NM("attn_v.weight"), n_embd, n_kv, true, &L->v, d)) ||
            (st = load_lin(m, NM("attn_output.weight"), n_q, n_embd, true, &L->o, d)) ||
            (st = load_lin(m, NM("ffn_gate.weight"), n_embd, n_ff, true, &L->gate, d)) ||
            (st = load_lin(m, NM("ffn_up.weight"), n_embd, n_ff, true, &L->up, d)) ||
            (st = load_lin(m, NM("ffn_down.weight"), n_ff, n_embd, true, &L->down, d)) ||
            (st = load_vec(m, NM("attn_q.bias"), n_q, hp->attn_qkv_bias, &L->q.bias, d)) ||
            (st = load_vec(m, NM("attn_k.bias"), n_kv, hp->attn_qkv_bias, &L->k.bias, d)) ||
            (st = load_vec(m, NM("attn_v.bias"), n_kv, hp->attn_qkv_bias, &L->v.bias, d)) ||
            (st = load_vec(m, NM("attn_output.bias"), n_embd, hp->attn_out_bias, &L->o.bias, d)))
            goto out_free;
#undef NM
        /* 64-byte aligned, as the scratch buffers (whole cache lines per load) */
        const size_t kv_bytes = ((size_t)e->o.n_ctx * n_kv * sizeof(float) + 63) / 64 * 64;
        L->k_cache = aligned_alloc(64, kv_bytes);
        L->v_cache = aligned_alloc(64, kv_bytes);
        if (!L->k_cache || !L->v_cache) {
            st = ec_fail(d, EC_ERR_NOMEM, "engine: cannot allocate a KV cache of %u tokens",
                         e->o.n_ctx);
            goto out_free;
        }
    }
#ifdef _OPENMP
    e->n_threads = e->o.n_threads > 0 ? e->o.n_threads : omp_get_max_threads();
#else
    e->n_threads = 1;
#endif
    e->scores = malloc((size_t)e->n_threads * e->o.n_ctx * sizeof(float));
    e->acc = malloc((size_t)e->n_threads * hp->head_dim * sizeof(double));
    if (!e->scores || !e->acc) {
        st = ec_fail(d, EC_ERR_NOMEM, "engine: out of memory");
        goto out_free;
    }
    *out = e;
    return EC_OK;

out_free:
    ec_engine_free(e);
    return st;
}

void ec_engine_reset(struct ec_engine *e)
{
    e->n_past = 0;
}

uint32_t ec_engine_n_past(const struct ec_engine *e)
{
    return e->n_past;
}

uint32_t ec_engine_n_vocab(const struct ec_engine *e)
{
    return e->hp.n_vocab;
}

uint32_t ec_engine_n_ctx(const struct ec_engine *e)
{
    return e->o.n_ctx;
}

int ec_engine_n_threads(const struct ec_engine *e)
{
    return e->n_threads;
}

/* ---- evaluation ---- */

/* Q8_0 / Q8_1 values of one block of 32: q = roundf(x / d), d = amax / 127
 * stored as fp16 (quantize_row_q8_0_ref / q8_1_ref) */
static inline __attribute__((always_inline)) void round_q8_0_block(const float *x, float *y)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) { /* fmaxf's choice (NaN ignored) without the libm call */
        const float ax = fabsf(x[j]);
        amax = ax > amax ? ax : amax;
    }
    /* as ggml-cpu's x86 quantize_row_q8_0 (the AVX2 path llama.cpp runs on
     * x86-64): id = 127 / amax, ties to even; the scale stored as fp16 */
    const float dd = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const float dh = ec_fp16_to_fp32(ec_fp32_to_fp16(dd));
    for (int j = 0; j < 32; j++)
        y[j] = rintf(x[j] * id) * dh;
}

/* Q8_K values of one block of 256 (quantize_row_q8_K_ref): scale from the
 * value of largest magnitude, iscale = -127 / max (ggml changed it from -128
 * for IQ2_XXS), q = nearest(iscale x) capped at 127, d = 1 / iscale (float) */
static inline __attribute__((always_inline)) void round_q8_k_block(const float *x, float *y)
{
    float amax = 0.0f, mx = 0.0f;
    for (int j = 0; j < 256; j++) {
        float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            mx = x[j];
        }
    }
    if (amax == 0.0f) {
        for (int j = 0; j < 256; j++)
            y[j] = 0.0f;
        return;
    }
    const float iscale = -127.0f / mx;
    const float dd = 1.0f / iscale;
    for (int j = 0; j < 256; j++) {
        float v = rintf(iscale * x[j]); /* ggml's nearest_int: ties to even */
        y[j] = (v > 127.0f ? 127.0f : v) * dd;
    }
}

/* The AVX2 clone rounds with vroundps instead of a libm call per value
 * (the baseline x86-64 ISA has no rounding instruction); same results. */
EC_AVX2_CLONES
void ec_round_activations(enum ec_dtype weight_type, const float *x, int64_t n_tokens,
                          int64_t n_in, float *y)
{
    const size_t n = (size_t)(n_tokens * n_in);
    switch (weight_type) {
    case EC_F32:
        memcpy(y, x, n * sizeof *y);
        return;
    case EC_F16:
        for (size_t i = 0; i < n; i++)
            y[i] = round_f16(x[i]);
        return;
    case EC_BF16:
        for (size_t i = 0; i < n; i++)
            y[i] = ec_bf16_to_fp32(ec_fp32_to_bf16(x[i]));
        return;
    case EC_Q4_0:
    case EC_Q4_1:
    case EC_Q5_0:
    case EC_Q5_1:
    case EC_Q8_0:
    case EC_IQ4_NL:
        if (n_in % 32 == 0) {
            for (size_t b = 0; b < n; b += 32)
                round_q8_0_block(x + b, y + b);
            return;
        }
        break;
    case EC_Q2_K:
    case EC_Q3_K:
    case EC_Q4_K:
    case EC_Q5_K:
    case EC_Q6_K:
    case EC_IQ4_XS:
        if (n_in % 256 == 0) {
            for (size_t b = 0; b < n; b += 256)
                round_q8_k_block(x + b, y + b);
            return;
        }
        break;
    default:
        break;
    }
    memcpy(y, x, n * sizeof *y);
}

static enum ec_status reserve(struct ec_engine *e, int64_t n, struct ec_diag *d)
{
    if (n <= e->cap_tokens)
        return EC_OK;
    const struct ec_hparams *hp = &e->hp;
    size_t nt = (size_t)n;
    size_t n_q = (size_t)hp->n_head * hp->head_dim, n_kv = (size_t)hp->n_head_kv * hp->head_dim;
    size_t wide = n_q > hp->n_embd ? n_q : hp->n_embd;
    size_t widest = wide > hp->n_ff ? wide : hp->n_ff;
    float **bufs[] = {&e->x, &e->h, &e->q, &e->k, &e->v, &e->att, &e->gate, &e->up, &e->rope_cs,
                      &e->xr};
    size_t sizes[] = {hp->n_embd, wide, n_q, n_kv, n_kv, n_q, hp->n_ff, hp->n_ff, hp->head_dim,
                      widest};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        /* scratch (nothing to keep), on 64-byte boundaries: the matmul tiles'
         * 512-bit loads of token rows would otherwise split cache lines (with
         * the weights' rows as well, that cost the F32 tile a third of its speed) */
        free(*bufs[i]);
        size_t bytes = nt * sizes[i] * sizeof(float);
        *bufs[i] = aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!*bufs[i])
            return ec_fail(d, EC_ERR_NOMEM, "engine: cannot allocate scratch for %lld tokens",
                           (long long)n);
    }
    e->cap_tokens = n;
    return EC_OK;
}

static enum ec_status linear(struct ec_engine *e, int layer, const struct eng_lin *l,
                             const float *x, int64_t n, float *y, struct ec_diag *d)
{
    if (e->o.on_linear_input)
        e->o.on_linear_input(e->o.user, layer, l->name, x, n, l->v.n_in);
    if (e->o.round_activations && e->o.qdot && ec_qdot_supported(l->v.type, l->v.n_in)) {
        enum ec_status st = ec_matmul_qdot(&l->v, x, n, y, e->n_threads, d);
        if (st != EC_OK)
            return st;
        goto bias;
    }
    if (e->o.round_activations && l->v.type != EC_F32) {
        const int64_t n_in = l->v.n_in;
        EC_PAR_FOR(e->n_threads, n * n_in)
        for (int64_t t = 0; t < n; t++)
            ec_round_activations(l->v.type, x + t * n_in, 1, n_in, e->xr + t * n_in);
        x = e->xr;
    }
    enum ec_status st = e->o.matmul_ref ? ec_matmul_ref(&l->v, x, n, y, d)
                                        : ec_matmul_fast(&l->v, x, n, y, e->n_threads, d);
    if (st != EC_OK)
        return st;
bias:
    if (l->bias) {
        for (int64_t t = 0; t < n; t++) {
            float *yt = y + t * l->v.n_out;
            for (int64_t r = 0; r < l->v.n_out; r++)
                yt[r] += l->bias[r];
        }
    }
    return EC_OK;
}

/* y = rmsnorm(x) * w, per token, as ggml_rms_norm followed by ggml_mul */
static void rms_norm(const float *x, const float *w, int64_t n_tok, int64_t n, float eps,
                     float *y, int nt)
{
    (void)nt;
    EC_PAR_FOR(nt, n_tok * n)
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

/* cos/sin per rotated pair for each token position (ggml_rope_cache_init) */
static void rope_cache(const struct ec_engine *e, int64_t n, uint32_t pos0)
{
    const uint32_t n_rot = e->hp.head_dim;
    const float theta_scale = powf(e->hp.rope_theta, -2.0f / (float)n_rot);
    for (int64_t t = 0; t < n; t++) {
        float *cs = e->rope_cs + t * n_rot;
        float theta = (float)(pos0 + (uint32_t)t);
        for (uint32_t i0 = 0; i0 < n_rot; i0 += 2) {
            float ff = e->freq_factors ? e->freq_factors[i0 / 2] : 1.0f;
            float th = e->freq_scale * (theta / ff);
            cs[i0] = cosf(th);
            cs[i0 + 1] = sinf(th);
            theta *= theta_scale;
        }
    }
}

static void rope_apply(const struct ec_engine *e, float *v, int64_t n, uint32_t n_heads)
{
    const uint32_t hd = e->hp.head_dim;
    EC_PAR_FOR(e->n_threads, n * n_heads * hd)
    for (int64_t t = 0; t < n; t++) {
        const float *cs = e->rope_cs + t * hd;
        for (uint32_t h = 0; h < n_heads; h++) {
            float *p = v + (t * n_heads + h) * hd;
            for (uint32_t i0 = 0; i0 < hd; i0 += 2) {
                const float c = cs[i0], s = cs[i0 + 1];
                uint32_t a = e->neox ? i0 / 2 : i0;
                uint32_t b = e->neox ? i0 / 2 + hd / 2 : i0 + 1;
                const float x0 = p[a], x1 = p[b];
                p[a] = x0 * c - x1 * s;
                p[b] = x0 * s + x1 * c;
            }
        }
    }
}

/* Attention's inner loops. Products are float (as ggml's), sums double
 * (see attention()); the vectors hold 8 products, widened to two 4-lane
 * double accumulators. An AVX2 clone is chosen at load time. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float att_v8f __attribute__((vector_size(32)));
typedef double att_v4d __attribute__((vector_size(32)));
typedef float att_v4f __attribute__((vector_size(16)));

static inline att_v8f att_ld(const float *p)
{
    att_v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void att_widen(att_v8f p, att_v4d *lo, att_v4d *hi)
{
    att_v4f a = {p[0], p[1], p[2], p[3]}, b = {p[4], p[5], p[6], p[7]};
    *lo = __builtin_convertvector(a, att_v4d);
    *hi = __builtin_convertvector(b, att_v4d);
}

/* sum_i (double)(q[i] * k[i]): lanes i % 8 < 4 and >= 4 summed apart, then
 * combined as (s[0] + s[2]) + (s[1] + s[3]), then the tail in order */
static inline __attribute__((always_inline)) att_v4d att_dot_lanes(const float *restrict q,
                                                                  const float *restrict k,
                                                                  uint32_t n)
{
    att_v4d s0 = {0}, s1 = {0};
    for (uint32_t i = 0; i + 8 <= n; i += 8) {
        att_v4d lo, hi;
        att_widen(att_ld(q + i) * att_ld(k + i), &lo, &hi);
        s0 += lo;
        s1 += hi;
    }
    return s0 + s1;
}

static inline __attribute__((always_inline)) double att_dot_tail(double acc, const float *q,
                                                                 const float *k, uint32_t n)
{
    for (uint32_t i = n & ~7u; i < n; i++)
        acc += (double)(q[i] * k[i]);
    return acc;
}

/* scores of keys j .. j+3 from their combined lane sums r (tails added) */
static inline __attribute__((always_inline)) float att_emit4(const double *r, const float *q,
                                                             const float *kj, size_t stride,
                                                             uint32_t n, float scale, float *sc,
                                                             float mx)
{
    for (int u = 0; u < 4; u++) {
        const float s = (float)att_dot_tail(r[u], q, kj + u * stride, n) * scale;
        sc[u] = s;
        mx = s > mx ? s : mx;
    }
    return mx;
}

/* sc[j] = (float)dot(q, k_j) * scale for j < n_keys, k_j = k + j * stride;
 * returns the largest. Four keys at a time: their lane vectors are combined
 * in vector form, with the same additions as one key at a time. */
static inline __attribute__((always_inline)) float
att_scores(const float *restrict q, const float *k, size_t stride, uint32_t n_keys, uint32_t n,
           float scale, float *restrict sc)
{
    float mx = -INFINITY;
    uint32_t j = 0;
    for (; j + 4 <= n_keys; j += 4) {
        const float *kj = k + j * stride;
        const att_v4d v0 = att_dot_lanes(q, kj, n), v1 = att_dot_lanes(q, kj + stride, n);
        const att_v4d v2 = att_dot_lanes(q, kj + 2 * stride, n);
        const att_v4d v3 = att_dot_lanes(q, kj + 3 * stride, n);
        const att_v4d a = (att_v4d){v0[0], v1[0], v2[0], v3[0]} +
                          (att_v4d){v0[2], v1[2], v2[2], v3[2]};
        const att_v4d b = (att_v4d){v0[1], v1[1], v2[1], v3[1]} +
                          (att_v4d){v0[3], v1[3], v2[3], v3[3]};
        const att_v4d r4 = a + b;
        const double r[4] = {r4[0], r4[1], r4[2], r4[3]};
        mx = att_emit4(r, q, kj, stride, n, scale, sc + j, mx);
    }
    for (; j < n_keys; j++) {
        const float *kj = k + j * stride;
        const att_v4d v = att_dot_lanes(q, kj, n);
        const float s = (float)att_dot_tail((v[0] + v[2]) + (v[1] + v[3]), q, kj, n) * scale;
        sc[j] = s;
        mx = s > mx ? s : mx;
    }
    return mx;
}

/* columns i0 .. n of att_pv, one at a time */
static inline __attribute__((always_inline)) void att_pv_tail(double *out, const float *p,
                                                              const float *v, size_t stride,
                                                              uint32_t n_keys, uint32_t n,
                                                              uint32_t i0)
{
    for (uint32_t i = i0; i < n; i++) {
        double a = 0.0;
        for (uint32_t j = 0; j < n_keys; j++)
            a += (double)(p[j] * v[j * stride + i]);
        out[i] = a;
    }
}

/* out[i] = sum_j (double)(p[j] * v_j[i]), v_j = v + j * stride, for i < n:
 * 16 columns at a time, their four accumulators kept in registers over all
 * keys (the same additions, in the same order, as one axpy per key) */
static inline __attribute__((always_inline)) void att_pv(double *restrict out,
                                                         const float *restrict p, const float *v,
                                                         size_t stride, uint32_t n_keys,
                                                         uint32_t n)
{
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        att_v4d a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (uint32_t j = 0; j < n_keys; j++) {
            const float *vj = v + j * stride + i;
            const att_v8f pj = (att_v8f){0} + p[j];
            att_v4d lo, hi;
            att_widen(pj * att_ld(vj), &lo, &hi);
            a0 += lo;
            a1 += hi;
            att_widen(pj * att_ld(vj + 8), &lo, &hi);
            a2 += lo;
            a3 += hi;
        }
        memcpy(out + i, &a0, sizeof a0);
        memcpy(out + i + 4, &a1, sizeof a1);
        memcpy(out + i + 8, &a2, sizeof a2);
        memcpy(out + i + 12, &a3, sizeof a3);
    }
    att_pv_tail(out, p, v, stride, n_keys, n, i);
}

/* softmax in place: exp(s - mx) summed in double, probabilities rounded to
 * fp16 when the cache is (ggml converts them for the V product) */
static void att_softmax(float *sc, uint32_t n_keys, float mx, bool f16)
{
    double sum = 0.0;
    for (uint32_t j = 0; j < n_keys; j++) {
        float p = expf(sc[j] - mx);
        sum += (double)p;
        sc[j] = p;
    }
    const float inv = (float)(1.0 / sum);
    for (uint32_t j = 0; j < n_keys; j++)
        sc[j] = f16 ? round_f16(sc[j] * inv) : sc[j] * inv;
}

/* One (token, head) item: scores, softmax (sum in double; probabilities
 * rounded to fp16 when the cache is, as ggml converts them for the V
 * product), P.V summed in double. One clone per ISA (AVX-512 widens 8
 * products at once) for the whole item, so the per-key work makes no
 * indirect calls; the operations per element are the same in every clone. */
static void att_item_generic(const float *restrict q, const float *k, const float *v, size_t stride,
                     uint32_t n_keys, uint32_t hd, float scale, bool f16, float *restrict sc,
                     double *restrict acc, float *restrict out)
{
    const float mx = att_scores(q, k, stride, n_keys, hd, scale, sc);
    att_softmax(sc, n_keys, mx, f16);
    /* sums in double: with fp16 inputs the products are exact and llama.cpp's
     * wide F32 accumulators make the sum nearly exact too */
    att_pv(acc, sc, v, stride, n_keys, hd);
    for (uint32_t i = 0; i < hd; i++)
        out[i] = (float)acc[i];
}


#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define EC_ATT_AVX2 1
/* The same item with AVX2 intrinsics (GCC's generic float4 -> double4
 * conversions come out as pairs of 2-lane converts): per key and column the
 * same float products, exact widenings and double additions in the same
 * order, so the same bits as att_item_generic. */
__attribute__((target("avx2"))) static inline __m256d att_lanes_avx2(const float *q,
                                                                      const float *k, uint32_t n)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (uint32_t i = 0; i + 8 <= n; i += 8) {
        const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i));
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
    }
    return _mm256_add_pd(s0, s1);
}

/* four keys' lane vectors (x0..x3 each) to r[k] = (x0 + x2) + (x1 + x3) of key
 * k, the four keys side by side: the generic loops' additions */
__attribute__((target("avx2"), always_inline)) static inline void
att_combine4_avx2(__m256d v0, __m256d v1, __m256d v2, __m256d v3, double r[4])
{
    const __m256d t0 = _mm256_unpacklo_pd(v0, v1), t1 = _mm256_unpackhi_pd(v0, v1);
    const __m256d t2 = _mm256_unpacklo_pd(v2, v3), t3 = _mm256_unpackhi_pd(v2, v3);
    const __m256d a = _mm256_add_pd(_mm256_permute2f128_pd(t0, t2, 0x20),
                                    _mm256_permute2f128_pd(t0, t2, 0x31));
    const __m256d b = _mm256_add_pd(_mm256_permute2f128_pd(t1, t3, 0x20),
                                    _mm256_permute2f128_pd(t1, t3, 0x31));
    _mm256_storeu_pd(r, _mm256_add_pd(a, b));
}

__attribute__((target("avx2"))) static void att_item_avx2(const float *restrict q,
                                                           const float *k, const float *v,
                                                           size_t stride, uint32_t n_keys,
                                                           uint32_t hd, float scale, bool f16,
                                                           float *restrict sc,
                                                           double *restrict acc,
                                                           float *restrict out)
{
    float mx = -INFINITY;
    uint32_t j = 0;
    for (; j + 4 <= n_keys; j += 4) {
        const float *kj = k + j * stride;
        double r[4];
        att_combine4_avx2(att_lanes_avx2(q, kj, hd), att_lanes_avx2(q, kj + stride, hd),
                          att_lanes_avx2(q, kj + 2 * stride, hd),
                          att_lanes_avx2(q, kj + 3 * stride, hd), r);
        mx = att_emit4(r, q, kj, stride, hd, scale, sc + j, mx);
    }
    for (; j < n_keys; j++) {
        const float *kj = k + j * stride;
        double r[4];
        _mm256_storeu_pd(r, att_lanes_avx2(q, kj, hd));
        const float s = (float)att_dot_tail((r[0] + r[2]) + (r[1] + r[3]), q, kj, hd) * scale;
        sc[j] = s;
        mx = s > mx ? s : mx;
    }
    att_softmax(sc, n_keys, mx, f16);
    uint32_t i = 0;
    for (; i + 16 <= hd; i += 16) {
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        for (uint32_t jj = 0; jj < n_keys; jj++) {
            const float *vj = v + jj * stride + i;
            const __m256 pj = _mm256_set1_ps(sc[jj]);
            const __m256 m0 = _mm256_mul_ps(pj, _mm256_loadu_ps(vj));
            const __m256 m1 = _mm256_mul_ps(pj, _mm256_loadu_ps(vj + 8));
            a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(m0)));
            a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(m0, 1)));
            a2 = _mm256_add_pd(a2, _mm256_cvtps_pd(_mm256_castps256_ps128(m1)));
            a3 = _mm256_add_pd(a3, _mm256_cvtps_pd(_mm256_extractf128_ps(m1, 1)));
        }
        _mm256_storeu_pd(acc + i, a0);
        _mm256_storeu_pd(acc + i + 4, a1);
        _mm256_storeu_pd(acc + i + 8, a2);
        _mm256_storeu_pd(acc + i + 12, a3);
    }
    att_pv_tail(acc, sc, v, stride, n_keys, hd, i);
    for (uint32_t c = 0; c < hd; c++)
        out[c] = (float)acc[c];
}

/* AVX-512: eight products widened at once. A key's lane vector holds the
 * AVX2 version's two 4-double accumulators side by side (lanes 0-3: the low
 * four products of each step, 4-7: the high four), and a P.V accumulator
 * eight columns, so every double addition is the one the generic loops make,
 * in the same order: the same bits. */
#define ATT_512 __attribute__((target("avx512f,avx512dq,avx2")))
ATT_512 static inline __m256d att_lanes_512(const float *q, const float *k, uint32_t n)
{
    __m512d s = _mm512_setzero_pd();
    for (uint32_t i = 0; i + 8 <= n; i += 8)
        s = _mm512_add_pd(s, _mm512_cvtps_pd(_mm256_mul_ps(_mm256_loadu_ps(q + i),
                                                           _mm256_loadu_ps(k + i))));
    return _mm256_add_pd(_mm512_castpd512_pd256(s), _mm512_extractf64x4_pd(s, 1));
}

ATT_512 static void att_item_avx512(const float *restrict q, const float *k, const float *v,
                                    size_t stride, uint32_t n_keys, uint32_t hd, float scale,
                                    bool f16, float *restrict sc, double *restrict acc,
                                    float *restrict out)
{
    float mx = -INFINITY;
    uint32_t j = 0;
    for (; j + 4 <= n_keys; j += 4) {
        const float *kj = k + j * stride;
        double r[4];
        att_combine4_avx2(att_lanes_512(q, kj, hd), att_lanes_512(q, kj + stride, hd),
                          att_lanes_512(q, kj + 2 * stride, hd),
                          att_lanes_512(q, kj + 3 * stride, hd), r);
        mx = att_emit4(r, q, kj, stride, hd, scale, sc + j, mx);
    }
    for (; j < n_keys; j++) {
        const float *kj = k + j * stride;
        double r[4];
        _mm256_storeu_pd(r, att_lanes_512(q, kj, hd));
        const float s = (float)att_dot_tail((r[0] + r[2]) + (r[1] + r[3]), q, kj, hd) * scale;
        sc[j] = s;
        mx = s > mx ? s : mx;
    }
    att_softmax(sc, n_keys, mx, f16);
    uint32_t i = 0;
    for (; i + 32 <= hd; i += 32) {
        __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        for (uint32_t jj = 0; jj < n_keys; jj++) {
            const float *vj = v + jj * stride + i;
            const __m256 pj = _mm256_set1_ps(sc[jj]);
            a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm256_mul_ps(pj, _mm256_loadu_ps(vj))));
            a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_mul_ps(pj, _mm256_loadu_ps(vj + 8))));
            a2 = _mm512_add_pd(a2, _mm512_cvtps_pd(_mm256_mul_ps(pj, _mm256_loadu_ps(vj + 16))));
            a3 = _mm512_add_pd(a3, _mm512_cvtps_pd(_mm256_mul_ps(pj, _mm256_loadu_ps(vj + 24))));
        }
        _mm512_storeu_pd(acc + i, a0);
        _mm512_storeu_pd(acc + i + 8, a1);
        _mm512_storeu_pd(acc + i + 16, a2);
        _mm512_storeu_pd(acc + i + 24, a3);
    }
    for (; i + 8 <= hd; i += 8) {
        __m512d a0 = _mm512_setzero_pd();
        for (uint32_t jj = 0; jj < n_keys; jj++)
            a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm256_mul_ps(
                                       _mm256_set1_ps(sc[jj]), _mm256_loadu_ps(v + jj * stride + i))));
        _mm512_storeu_pd(acc + i, a0);
    }
    att_pv_tail(acc, sc, v, stride, n_keys, hd, i);
    for (uint32_t c = 0; c < hd; c++)
        out[c] = (float)acc[c];
}
#endif

static int att_isa = -1; /* 0 generic, 1 AVX2, 2 AVX-512 */

int ec_attention_set_isa(int max_level)
{
    int best = 0;
#ifdef EC_ATT_AVX2
    best = ec_cpu_has(EC_CPU_AVX2) ? 1 : 0;
    if (best && ec_cpu_has(EC_CPU_AVX512F | EC_CPU_AVX512DQ))
        best = 2;
#endif
    int lvl = max_level < 0 || max_level > best ? best : max_level;
    __atomic_store_n(&att_isa, lvl, __ATOMIC_RELAXED);
    return lvl;
}

static void att_item(const float *restrict q, const float *k, const float *v, size_t stride,
                     uint32_t n_keys, uint32_t hd, float scale, bool f16, float *restrict sc,
                     double *restrict acc, float *restrict out)
{
#ifdef EC_ATT_AVX2
    int isa = __atomic_load_n(&att_isa, __ATOMIC_RELAXED);
    if (isa < 0)
        isa = ec_attention_set_isa(-1);
    if (isa == 2) {
        att_item_avx512(q, k, v, stride, n_keys, hd, scale, f16, sc, acc, out);
        return;
    }
    if (isa == 1) {
        att_item_avx2(q, k, v, stride, n_keys, hd, scale, f16, sc, acc, out);
        return;
    }
#endif
    att_item_generic(q, k, v, stride, n_keys, hd, scale, f16, sc, acc, out);
}

/* Causal GQA attention of the n new tokens (positions pos0..) over the cache. */
static void attention(struct ec_engine *e, const struct eng_layer *L, int64_t n, uint32_t pos0)
{
    const struct ec_hparams *hp = &e->hp;
    const uint32_t hd = hp->head_dim, n_head = hp->n_head;
    const uint32_t group = hp->n_head / hp->n_head_kv;
    const size_t kv_stride = (size_t)hp->n_head_kv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const bool f16 = e->o.kv_f16;
    const int64_t n_items = n * n_head;
#ifdef _OPENMP
/* round-robin items: causal rows grow with t, so contiguous halves would leave
 * the first thread idle for most of the loop */
#pragma omp parallel for schedule(static, 1) num_threads(e->n_threads)
#endif
    for (int64_t it = 0; it < n_items; it++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *sc = e->scores + (size_t)tid * e->o.n_ctx;
        const int64_t t = it / n_head;
        const uint32_t h = (uint32_t)(it % n_head);
        const uint32_t kvh = h / group;
        const float *q = e->q + (size_t)it * hd;
        const uint32_t n_keys = pos0 + (uint32_t)t + 1;
        att_item(q, L->k_cache + (size_t)kvh * hd, L->v_cache + (size_t)kvh * hd, kv_stride,
                 n_keys, hd, scale, f16, sc, e->acc + (size_t)tid * hd, e->att + (size_t)it * hd);
    }
}

enum ec_status ec_engine_eval(struct ec_engine *e, const int32_t *tokens, int64_t n_tokens,
                              float *logits, int64_t logits_from, struct ec_diag *d)
{
    const struct ec_hparams *hp = &e->hp;
    enum ec_status st;
    if (n_tokens <= 0)
        return EC_OK;
    if ((uint64_t)e->n_past + (uint64_t)n_tokens > e->o.n_ctx)
        return ec_fail(d, EC_ERR_ARG,
                       "engine: %lld tokens after %u cached exceed the context of %u tokens",
                       (long long)n_tokens, e->n_past, e->o.n_ctx);
    if (logits_from < 0 || logits_from > n_tokens)
        return ec_fail(d, EC_ERR_ARG, "engine: logits_from %lld outside 0..%lld",
                       (long long)logits_from, (long long)n_tokens);
    for (int64_t t = 0; t < n_tokens; t++)
        if (tokens[t] < 0 || (uint32_t)tokens[t] >= hp->n_vocab)
            return ec_fail(d, EC_ERR_ARG, "engine: token %lld has id %d outside 0..%u",
                           (long long)t, tokens[t], hp->n_vocab - 1);
    if ((st = reserve(e, n_tokens, d)) != EC_OK)
        return st;

    const int64_t n = n_tokens, n_embd = hp->n_embd;
    const uint32_t pos0 = e->n_past;
    const size_t n_kv = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t n_q = (size_t)hp->n_head * hp->head_dim;

    /* token embeddings (ggml_get_rows) */
    for (int64_t t = 0; t < n; t++) {
        const struct ec_linear_view *w = &e->tok_embd.v;
        const uint8_t *row = w->data + (uint64_t)tokens[t] * w->row_bytes;
        float *xt = e->x + t * n_embd;
        if (w->type == EC_F32)
            memcpy(xt, row, (size_t)n_embd * sizeof(float));
        else if (w->type == EC_F16)
            ec_fp16_to_fp32_row((const uint16_t *)(const void *)row, xt, (size_t)n_embd);
        else if (w->type == EC_BF16)
            ec_bf16_to_fp32_row((const uint16_t *)(const void *)row, xt, (size_t)n_embd);
        else
            ec_dtype_traits(w->type)->to_f32(row, xt, n_embd);
    }
    rope_cache(e, n, pos0);

    for (uint32_t il = 0; il < hp->n_layer; il++) {
        struct eng_layer *L = &e->layers[il];
        rms_norm(e->x, L->attn_norm, n, n_embd, hp->norm_eps, e->h, e->n_threads);
        if ((st = linear(e, (int)il, &L->q, e->h, n, e->q, d)) != EC_OK ||
            (st = linear(e, (int)il, &L->k, e->h, n, e->k, d)) != EC_OK ||
            (st = linear(e, (int)il, &L->v, e->h, n, e->v, d)) != EC_OK)
            return st;
        rope_apply(e, e->q, n, hp->n_head);
        rope_apply(e, e->k, n, hp->n_head_kv);
        EC_PAR_FOR(e->n_threads, n * (int64_t)n_kv)
        for (int64_t t = 0; t < n; t++) {
            float *kc = L->k_cache + (size_t)(pos0 + t) * n_kv;
            float *vc = L->v_cache + (size_t)(pos0 + t) * n_kv;
            const float *kt = e->k + t * n_kv, *vt = e->v + t * n_kv;
            for (size_t i = 0; i < n_kv; i++) {
                kc[i] = e->o.kv_f16 ? round_f16(kt[i]) : kt[i];
                vc[i] = e->o.kv_f16 ? round_f16(vt[i]) : vt[i];
            }
        }
        if (e->o.kv_f16) {
            EC_PAR_FOR(e->n_threads, n * (int64_t)n_q)
            for (size_t i = 0; i < (size_t)n * n_q; i++)
                e->q[i] = round_f16(e->q[i]);
        }
        attention(e, L, n, pos0);
        if ((st = linear(e, (int)il, &L->o, e->att, n, e->h, d)) != EC_OK)
            return st;
        EC_PAR_FOR(e->n_threads, n * n_embd)
        for (size_t i = 0; i < (size_t)(n * n_embd); i++)
            e->x[i] += e->h[i];

        rms_norm(e->x, L->ffn_norm, n, n_embd, hp->norm_eps, e->h, e->n_threads);
        if ((st = linear(e, (int)il, &L->gate, e->h, n, e->gate, d)) != EC_OK ||
            (st = linear(e, (int)il, &L->up, e->h, n, e->up, d)) != EC_OK)
            return st;
        EC_PAR_FOR(e->n_threads, n * (int64_t)hp->n_ff)
        for (size_t i = 0; i < (size_t)n * hp->n_ff; i++) {
            const float g = e->gate[i];
            e->gate[i] = (g / (1.0f + expf(-g))) * e->up[i];
        }
        if ((st = linear(e, (int)il, &L->down, e->gate, n, e->h, d)) != EC_OK)
            return st;
        EC_PAR_FOR(e->n_threads, n * n_embd)
        for (size_t i = 0; i < (size_t)(n * n_embd); i++)
            e->x[i] += e->h[i];
    }
    e->n_past += (uint32_t)n;

    if (logits && logits_from < n) {
        const int64_t n_out = n - logits_from;
        rms_norm(e->x + logits_from * n_embd, e->output_norm, n_out, n_embd, hp->norm_eps, e->h, e->n_threads);
        const struct eng_lin *out = e->output.v.data ? &e->output : &e->tok_embd;
        if ((st = linear(e, -1, out, e->h, n_out, logits, d)) != EC_OK)
            return st;
    }
    return EC_OK;
}
