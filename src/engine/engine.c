/* The llama-family forward pass (see edgec/engine.h for the graph).
 *
 * Numerics follow llama.cpp's CPU backend (the golden build, b4748 on
 * AVX-512) operation for operation, so that F32 files give its logits bit for
 * bit: RMSNorm sums x^2 in double and scales by 1/sqrtf(mean + eps); RoPE
 * angles are pos * base^(-2i/n_rot) built by repeated float multiplication
 * and applied with fused multiply-adds; with an F16 KV cache the query and
 * the softmax probabilities are rounded to fp16 as well, because llama.cpp
 * converts them to fp16 for its F16 x F16 matmuls; attention, softmax and
 * SiLU take ggml's lane orders and vector expf (see "attention, SiLU and
 * expf" below).
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
    struct ec_rope rope;  /* RoPE set-up (src/engine/rope.c) */
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
    free(e);
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
    st = load_vec(m, "rope_freqs.weight", hp->head_dim / 2, false, &e->freq_factors, d);
    if (st != EC_OK)
        goto out_free;
    if ((st = ec_rope_init(&e->rope, hp, e->freq_factors, mp, d)) != EC_OK)
        goto out_free;

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
            (st = load_vec(m, NM("attn_output.bias"), n_embd, hp->attn_out_bias, &L->o.bias, d)) ||
            (st = load_vec(m, NM("ffn_gate.bias"), n_ff, hp->mlp_bias, &L->gate.bias, d)) ||
            (st = load_vec(m, NM("ffn_up.bias"), n_ff, hp->mlp_bias, &L->up.bias, d)) ||
            (st = load_vec(m, NM("ffn_down.bias"), n_embd, hp->mlp_bias, &L->down.bias, d)))
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
    if (!e->scores) {
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

void ec_rope_rotate(float *p, const float *cs, uint32_t hd, bool neox)
{
    for (uint32_t i0 = 0; i0 < hd; i0 += 2) {
        const float c = cs[i0], s = cs[i0 + 1];
        const uint32_t a = neox ? i0 / 2 : i0;
        const uint32_t b = neox ? i0 / 2 + hd / 2 : i0 + 1;
        const float x0 = p[a], x1 = p[b];
        /* as gcc contracts ggml's x0*c - x1*s and x0*s + x1*c */
        p[a] = fmaf(x0, c, -(x1 * s));
        p[b] = fmaf(x0, s, x1 * c);
    }
}

static void rope_apply(const struct ec_engine *e, float *v, int64_t n, uint32_t n_heads)
{
    const uint32_t hd = e->hp.head_dim;
    EC_PAR_FOR(e->n_threads, n * n_heads * hd)
    for (int64_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < n_heads; h++)
            ec_rope_rotate(v + (t * n_heads + h) * hd, e->rope_cs + t * hd, hd, e->neox);
}

/* ---- attention, SiLU and expf in ggml-cpu's AVX-512 order ----
 *
 * llama.cpp b4748 (the golden build: GGML_NATIVE on AVX-512, llamafile
 * sgemm, flash attention off) computes, per (token, head):
 *   scores   KQ = K (fp16) x q (converted to fp16): head sizes that are a
 *            multiple of 16 take tinyBLAS (16 float lanes, lane = element
 *            mod 16, one fused multiply-add chain each, then the lanes'
 *            tree sum); other head sizes take ggml_vec_dot_f16 (4 x 16
 *            lanes over 64-element steps, the same tree, the remaining
 *            products added in double);
 *   softmax  s * scale, max, exp(s - max) by ggml's vector expf 16 keys at
 *            a time, each 16's tree sum added to a double total, p * (float)
 *            (1 / total), rounded to fp16 for the V product;
 *   output   V^T (fp16) x p (fp16) through tinyBLAS over the keys: lane =
 *            key mod 16, one fused multiply-add chain per lane, tree sum.
 * SiLU takes the same vector expf on each row's first n - n % 16 elements
 * and libm's expf on the rest. With these steps (and RoPE's fused
 * multiply-adds) stories-student-256's logits equal the golden ones bit for
 * bit. The scalar functions below are the definition; the AVX2 and AVX-512
 * versions give the same bits (test_engine). The build passes
 * -ffp-contract=off: no multiply-add is fused unless written as fmaf. */

/* ggml's vector expf for one lane (its AVX-512 form: a degree-5 polynomial
 * in the reduced argument, scaled by 2^n with scalef): |x| beyond 192
 * halvings/doublings gives 0 or +Inf. */
static inline float ec_vexpf1(float x)
{
    const float r = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    if (fabsf(n) > 192.0f)
        return n <= 0.0f ? 0.0f : INFINITY;
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                              fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                         u, fmaf(0x1.ffffecp-1f, b, 1.0f));
    if (isnan(n))
        return j;
    return ldexpf(j, (int)n);
}

/* the lanes' tree sum of _mm512_reduce_add_ps: i + i+8, i + i+4, then
 * (0 + 2) + (1 + 3) */
static inline float ec_tree16(const float *l)
{
    float a[8], b[4];
    for (int i = 0; i < 8; i++)
        a[i] = l[i] + l[i + 8];
    for (int i = 0; i < 4; i++)
        b[i] = a[i] + a[i + 4];
    return (b[0] + b[2]) + (b[1] + b[3]);
}

/* score dot product q . k of one key, as described above */
static float att_dot(const float *q, const float *k, uint32_t hd)
{
    if (hd % 16 == 0) {
        float l[16] = {0};
        for (uint32_t i = 0; i < hd; i++)
            l[i % 16] = fmaf(q[i], k[i], l[i % 16]);
        return ec_tree16(l);
    }
    const uint32_t np = hd & ~63u;
    double s = 0.0;
    if (np) {
        float a[4][16] = {{0}};
        for (uint32_t i = 0; i < np; i++)
            a[(i % 64) / 16][i % 16] = fmaf(q[i], k[i], a[(i % 64) / 16][i % 16]);
        float l[16];
        for (int i = 0; i < 16; i++)
            l[i] = (a[0][i] + a[2][i]) + (a[1][i] + a[3][i]);
        s = (double)ec_tree16(l);
    }
    for (uint32_t i = np; i < hd; i++)
        s += (double)(q[i] * k[i]);
    return (float)s;
}

/* one (token, head) item: the definition */
static void att_item_generic(const float *restrict q, const float *k, const float *v,
                             size_t stride, uint32_t n_keys, uint32_t hd, float scale, bool f16,
                             float *restrict sc, float *restrict out)
{
    float mx = -INFINITY;
    for (uint32_t j = 0; j < n_keys; j++) {
        sc[j] = att_dot(q, k + j * stride, hd) * scale;
        mx = sc[j] > mx ? sc[j] : mx;
    }
    double sum = 0.0;
    for (uint32_t j0 = 0; j0 < n_keys; j0 += 16) {
        float l[16] = {0};
        for (uint32_t j = j0; j < j0 + 16 && j < n_keys; j++)
            l[j - j0] = sc[j] = ec_vexpf1(sc[j] - mx);
        sum += (double)ec_tree16(l);
    }
    const float inv = (float)(1.0 / sum);
    for (uint32_t j = 0; j < n_keys; j++)
        sc[j] = f16 ? round_f16(sc[j] * inv) : sc[j] * inv;
    for (uint32_t i = 0; i < hd; i++) {
        float l[16] = {0};
        for (uint32_t j = 0; j < n_keys; j++)
            l[j % 16] = fmaf(sc[j], v[j * stride + i], l[j % 16]);
        out[i] = ec_tree16(l);
    }
}

/* the row's last n % 16 elements: ggml's scalar SiLU (libm expf) */
static inline void silu_mul_tail(float *restrict g, const float *restrict up, int64_t n)
{
    for (int64_t i = n - n % 16; i < n; i++)
        g[i] = (g[i] / (1.0f + expf(-g[i]))) * up[i];
}

/* g[i] = silu(g[i]) * up[i] over one row of n: the definition */
static void silu_mul_generic(float *restrict g, const float *restrict up, int64_t n)
{
    const int64_t n16 = n - n % 16;
    for (int64_t i = 0; i < n16; i++) {
        const float x = g[i];
        g[i] = (x / (1.0f + ec_vexpf1(0.0f - x))) * up[i];
    }
    silu_mul_tail(g, up, n);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "src/engine/simd_sum.h"
#define EC_ATT_512 1
#define ATT_512 __attribute__((target("avx512f,avx512dq,avx2,fma")))
#define ATT_512_IN __attribute__((target("avx512f,avx512dq,avx2,fma"), always_inline)) static inline

ATT_512_IN __m512 vexpf16(__m512 x)
{
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                      _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 p3 = _mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b,
                                      _mm512_set1_ps(0x1.573e2ep-5f));
    const __m512 p2 = _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b,
                                      _mm512_set1_ps(0x1.fffdb6p-2f));
    const __m512 p1 = _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f));
    const __m512 j = _mm512_fmadd_ps(_mm512_fmadd_ps(p3, u, p2), u, p1);
    const __m512 res = _mm512_scalef_ps(j, n);
    const __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192.0f), _CMP_GT_OQ);
    if (!big)
        return res;
    const __m512 alt = _mm512_mask_blend_ps(
        _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ), _mm512_set1_ps(INFINITY),
        _mm512_setzero_ps());
    return _mm512_mask_blend_ps(big, res, alt);
}

ATT_512 static void att_item_avx512(const float *restrict q, const float *k, const float *v,
                                    size_t stride, uint32_t n_keys, uint32_t hd, float scale,
                                    bool f16, float *restrict sc, float *restrict out)
{
    float mx = -INFINITY;
    if (hd % 16 == 0) {
        for (uint32_t j = 0; j < n_keys; j++) {
            const float *kj = k + j * stride;
            __m512 l = _mm512_setzero_ps();
            for (uint32_t i = 0; i < hd; i += 16)
                l = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(kj + i), l);
            const float s = ec_hsum512(l) * scale;
            sc[j] = s;
            mx = s > mx ? s : mx;
        }
    } else {
        for (uint32_t j = 0; j < n_keys; j++) {
            sc[j] = att_dot(q, k + j * stride, hd) * scale;
            mx = sc[j] > mx ? sc[j] : mx;
        }
    }
    double sum = 0.0;
    const __m512 vmx = _mm512_set1_ps(mx);
    for (uint32_t j0 = 0; j0 < n_keys; j0 += 16) {
        const uint32_t left = n_keys - j0;
        const __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
        const __m512 s = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, sc + j0);
        const __m512 p = vexpf16(_mm512_sub_ps(s, vmx));
        _mm512_mask_storeu_ps(sc + j0, m, p);
        sum += (double)ec_hsum512(p);
    }
    const __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
    for (uint32_t j0 = 0; j0 < n_keys; j0 += 16) {
        const uint32_t left = n_keys - j0;
        const __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
        __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, sc + j0), inv);
        if (f16)
            p = _mm512_cvtph_ps(_mm512_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        _mm512_mask_storeu_ps(sc + j0, m, p);
    }
    /* P.V: sixteen accumulators, one per key lane, per 16 columns */
    for (uint32_t c = 0; c < hd; c += 16) {
        const uint32_t cl = hd - c;
        const __mmask16 cm = cl >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cl) - 1u);
        __m512 a[16];
        for (int l = 0; l < 16; l++)
            a[l] = _mm512_setzero_ps();
        uint32_t j = 0;
        for (; j + 16 <= n_keys; j += 16)
            for (int l = 0; l < 16; l++)
                a[l] = _mm512_fmadd_ps(_mm512_set1_ps(sc[j + l]),
                                       _mm512_maskz_loadu_ps(cm, v + (j + l) * stride + c), a[l]);
        for (int l = 0; j + (uint32_t)l < n_keys; l++)
            a[l] = _mm512_fmadd_ps(_mm512_set1_ps(sc[j + l]),
                                   _mm512_maskz_loadu_ps(cm, v + (j + l) * stride + c), a[l]);
        for (int l = 0; l < 8; l++)
            a[l] = _mm512_add_ps(a[l], a[l + 8]);
        for (int l = 0; l < 4; l++)
            a[l] = _mm512_add_ps(a[l], a[l + 4]);
        const __m512 r = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
        _mm512_mask_storeu_ps(out + c, cm, r);
    }
}

ATT_512 static void silu_mul_avx512(float *restrict g, const float *restrict up, int64_t n)
{
    const int64_t n16 = n - n % 16;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n16; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        const __m512 e = vexpf16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)),
                                              _mm512_loadu_ps(up + i)));
    }
    silu_mul_tail(g, up, n);
}

/* vector expf of n values (for the test of vexpf16 against ec_vexpf1) */
ATT_512 static void vexpf_avx512(const float *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, vexpf16(_mm512_loadu_ps(x + i)));
    for (; i < n; i++)
        y[i] = ec_vexpf1(x[i]);
}

/* AVX2 + FMA: the same steps with 16 lanes as two 8-float halves; the
 * scaling by 2^n that AVX-512 does with scalef is two exact power-of-two
 * products (the first stays normal, the second rounds once, as scalef
 * does), so the bits are the definition's. */
#define ATT_256 __attribute__((target("avx2,fma")))
#define ATT_256_IN __attribute__((target("avx2,fma"), always_inline)) static inline

ATT_256_IN __m256 pow2_256(__m256i e)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
}

ATT_256_IN __m256 vexpf8(__m256 x)
{
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 p3 = _mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b,
                                      _mm256_set1_ps(0x1.573e2ep-5f));
    const __m256 p2 = _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b,
                                      _mm256_set1_ps(0x1.fffdb6p-2f));
    const __m256 p1 = _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f));
    const __m256 j = _mm256_fmadd_ps(_mm256_fmadd_ps(p3, u, p2), u, p1);
    const __m256 an = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
    const __m256 big = _mm256_cmp_ps(an, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
    /* |n| <= 192 here (others are replaced below): n = h + (n - h), |h| <= 96 */
    const __m256i ni = _mm256_cvtps_epi32(_mm256_andnot_ps(big, n));
    const __m256i h = _mm256_srai_epi32(ni, 1);
    const __m256 res = _mm256_mul_ps(_mm256_mul_ps(j, pow2_256(h)),
                                     pow2_256(_mm256_sub_epi32(ni, h)));
    if (_mm256_testz_ps(big, big))
        return res;
    const __m256 le0 = _mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ);
    const __m256 alt = _mm256_blendv_ps(_mm256_set1_ps(INFINITY), _mm256_setzero_ps(), le0);
    return _mm256_blendv_ps(res, alt, big);
}

ATT_256_IN __m256i mask8(uint32_t left)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left > 8 ? 8 : left)), idx);
}

ATT_256 static void att_item_avx2(const float *restrict q, const float *k, const float *v,
                                  size_t stride, uint32_t n_keys, uint32_t hd, float scale,
                                  bool f16, float *restrict sc, float *restrict out)
{
    float mx = -INFINITY;
    if (hd % 16 == 0) {
        for (uint32_t j = 0; j < n_keys; j++) {
            const float *kj = k + j * stride;
            __m256 lo = _mm256_setzero_ps(), hi = lo;
            for (uint32_t i = 0; i < hd; i += 16) {
                lo = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(kj + i), lo);
                hi = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(kj + i + 8), hi);
            }
            const float s = ec_hsum256(_mm256_add_ps(lo, hi)) * scale;
            sc[j] = s;
            mx = s > mx ? s : mx;
        }
    } else {
        for (uint32_t j = 0; j < n_keys; j++) {
            sc[j] = att_dot(q, k + j * stride, hd) * scale;
            mx = sc[j] > mx ? sc[j] : mx;
        }
    }
    double sum = 0.0;
    const __m256 vmx = _mm256_set1_ps(mx);
    for (uint32_t j0 = 0; j0 < n_keys; j0 += 16) {
        const uint32_t left = n_keys - j0;
        const __m256i m0 = mask8(left), m1 = mask8(left > 8 ? left - 8 : 0);
        const __m256 ninf = _mm256_set1_ps(-INFINITY);
        const __m256 s0 = _mm256_blendv_ps(ninf, _mm256_maskload_ps(sc + j0, m0), _mm256_castsi256_ps(m0));
        const __m256 s1 = _mm256_blendv_ps(ninf, _mm256_maskload_ps(sc + j0 + 8, m1), _mm256_castsi256_ps(m1));
        const __m256 p0 = vexpf8(_mm256_sub_ps(s0, vmx)), p1 = vexpf8(_mm256_sub_ps(s1, vmx));
        _mm256_maskstore_ps(sc + j0, m0, p0);
        _mm256_maskstore_ps(sc + j0 + 8, m1, p1);
        sum += (double)ec_hsum256(_mm256_add_ps(p0, p1));
    }
    const float inv = (float)(1.0 / sum);
    for (uint32_t j = 0; j < n_keys; j++)
        sc[j] = f16 ? round_f16(sc[j] * inv) : sc[j] * inv;
    /* P.V: sixteen accumulators, one per key lane, per 8 columns */
    for (uint32_t c = 0; c < hd; c += 8) {
        const __m256i cm = mask8(hd - c);
        __m256 a[16];
        for (int l = 0; l < 16; l++)
            a[l] = _mm256_setzero_ps();
        uint32_t j = 0;
        for (; j + 16 <= n_keys; j += 16)
            for (int l = 0; l < 16; l++)
                a[l] = _mm256_fmadd_ps(_mm256_set1_ps(sc[j + l]),
                                       _mm256_maskload_ps(v + (j + l) * stride + c, cm), a[l]);
        for (int l = 0; j + (uint32_t)l < n_keys; l++)
            a[l] = _mm256_fmadd_ps(_mm256_set1_ps(sc[j + l]),
                                   _mm256_maskload_ps(v + (j + l) * stride + c, cm), a[l]);
        for (int l = 0; l < 8; l++)
            a[l] = _mm256_add_ps(a[l], a[l + 8]);
        for (int l = 0; l < 4; l++)
            a[l] = _mm256_add_ps(a[l], a[l + 4]);
        const __m256 r = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
        _mm256_maskstore_ps(out + c, cm, r);
    }
}

ATT_256 static void silu_mul_avx2(float *restrict g, const float *restrict up, int64_t n)
{
    const int64_t n16 = n - n % 16;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int64_t i = 0; i < n16; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = vexpf8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)),
                                              _mm256_loadu_ps(up + i)));
    }
    silu_mul_tail(g, up, n);
}

ATT_256 static void vexpf_avx2(const float *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, vexpf8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++)
        y[i] = ec_vexpf1(x[i]);
}
#endif

static int att_isa = -1; /* 0 generic, 1 AVX2 + FMA, 2 AVX-512 */

int ec_attention_set_isa(int max_level)
{
    int best = 0;
#ifdef EC_ATT_512
    if (ec_cpu_has(EC_CPU_AVX2 | EC_CPU_FMA))
        best = 1;
    if (best && ec_cpu_has(EC_CPU_AVX512F | EC_CPU_AVX512DQ))
        best = 2;
#endif
    int lvl = max_level < 0 || max_level > best ? best : max_level;
    __atomic_store_n(&att_isa, lvl, __ATOMIC_RELAXED);
    return lvl;
}

static int att_level(void)
{
    int isa = __atomic_load_n(&att_isa, __ATOMIC_RELAXED);
    return isa < 0 ? ec_attention_set_isa(-1) : isa;
}

void ec_attention_item(const float *restrict q, const float *k, const float *v, size_t stride,
                       uint32_t n_keys, uint32_t hd, float scale, bool f16, float *restrict sc,
                       float *restrict out)
{
#ifdef EC_ATT_512
    const int lvl = att_level();
    if (lvl == 2) {
        att_item_avx512(q, k, v, stride, n_keys, hd, scale, f16, sc, out);
        return;
    }
    if (lvl == 1) {
        att_item_avx2(q, k, v, stride, n_keys, hd, scale, f16, sc, out);
        return;
    }
#endif
    att_item_generic(q, k, v, stride, n_keys, hd, scale, f16, sc, out);
}

void ec_silu_mul_row(float *restrict g, const float *restrict up, int64_t n)
{
#ifdef EC_ATT_512
    const int lvl = att_level();
    if (lvl == 2) {
        silu_mul_avx512(g, up, n);
        return;
    }
    if (lvl == 1) {
        silu_mul_avx2(g, up, n);
        return;
    }
#endif
    silu_mul_generic(g, up, n);
}

void ec_engine_vexpf(const float *x, float *y, int64_t n, int level)
{
#ifdef EC_ATT_512
    if (level == 2 && att_level() == 2) {
        vexpf_avx512(x, y, n);
        return;
    }
    if (level >= 1 && att_level() >= 1) {
        vexpf_avx2(x, y, n);
        return;
    }
#endif
    (void)level;
    for (int64_t i = 0; i < n; i++)
        y[i] = ec_vexpf1(x[i]);
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
        ec_attention_item(q, L->k_cache + (size_t)kvh * hd, L->v_cache + (size_t)kvh * hd, kv_stride,
                 n_keys, hd, scale, f16, sc, e->att + (size_t)it * hd);
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
    ec_rope_cache(&e->rope, pos0, n, e->rope_cs);

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
        for (int64_t t = 0; t < n; t++)
            ec_silu_mul_row(e->gate + t * hp->n_ff, e->up + t * hp->n_ff, hp->n_ff);
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
