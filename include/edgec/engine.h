/* edgec/engine.h: a small CPU inference engine for the llama-family graph.
 *
 * The forward pass follows llama.cpp's graph for GGUF architectures "llama"
 * (also used for Mistral) and "qwen2", evaluated as llama.cpp evaluates it:
 *
 *   x = token_embd[tok]                                     [n_embd]
 *   per layer l:
 *     h = rmsnorm(x) * attn_norm                            eps = hp.norm_eps
 *     q = Wq h (+bq), k = Wk h (+bk), v = Wv h (+bv)         [n_head*hd], [n_head_kv*hd] x2
 *     rope(q), rope(k) at the token's position              "llama": adjacent pairs
 *                                                            (q/k were permuted by the
 *                                                            converter), "qwen2": NEOX halves
 *     K, V appended to the cache (rounded to fp16 when kv_f16)
 *     per head: softmax(q.K^T / sqrt(hd), causal) V          GQA: head h uses kv head
 *                                                            h / (n_head / n_head_kv)
 *     x += Wo attn (+bo)
 *     h = rmsnorm(x) * ffn_norm
 *     x += Wdown (silu(Wgate h) * (Wup h))
 *   logits = output (rmsnorm(x) * output_norm)               output = token_embd when tied
 *
 * With kv_f16 (the default, as llama.cpp's default F16 KV cache), K and V are
 * rounded to fp16 before attention, and so are the two activations llama.cpp
 * converts to fp16 for its F16 matmuls: the query (for K.q) and the softmax
 * probabilities (for V^T p). Everything else is F32.
 *
 * Weights are read straight from the model's mapping: F32 tensors in place,
 * F16/BF16 and block-quantized rows (every type with quant traits) converted
 * to F32 inside the matmul, block by block of rows. q/k weights that need the
 * HF -> GGUF head permutation, unaligned F32 tensors and all 1-D tensors are
 * copied into buffers the engine owns. For F16, BF16 and quantized weights
 * llama.cpp rounds the activations to the weight's vec_dot type (fp16, bf16,
 * Q8_0, Q8_1 or Q8_K) and takes an integer / half dot product; with
 * round_activations the engine rounds the activations the same way and then
 * takes an F32 dot product with the dequantized weights, which is the same
 * sum up to float reassociation; with qdot as well, Q4_0/Q5_0/Q8_0 and
 * Q2_K..Q6_K weights take llama.cpp's integer block dot with its float
 * steps in its order (ec_matmul_qdot), so those products are llama.cpp's
 * bits.
 *
 * Determinism: matmuls split output rows over OpenMP threads in fixed blocks;
 * every output element is computed by one thread with a fixed summation
 * order, so results do not depend on the thread count.
 *
 * Ownership: the engine borrows the model (which must outlive it) and owns its
 * KV cache and scratch. An engine is not thread-safe; use one per thread.
 */
#ifndef EDGEC_ENGINE_H
#define EDGEC_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "edgec/model.h"
#include "edgec/status.h"

/* Calibration hook: called with the input matrix x[n_tokens][n_in] (row-major,
 * one row per token) of every linear layer before it is applied. `layer` is
 * the block index, or -1 for output.weight; `tensor_name` is the weight's GGUF
 * name ("blk.3.ffn_down.weight"). q, k and v share one input and are reported
 * once each. x is only valid during the call. Called from the evaluating
 * thread, outside any parallel region. */
typedef void (*ec_linear_input_fn)(void *user, int layer, const char *tensor_name, const float *x,
                                   int64_t n_tokens, int64_t n_in);

struct ec_engine_opts {
    uint32_t n_ctx;       /* KV cache capacity in tokens (0 = 512, capped at n_ctx_train
                             only by the caller's choice) */
    int n_threads;        /* OpenMP threads (0 = OpenMP default) */
    bool kv_f16;          /* round K, V (and q, softmax probabilities) to fp16 (default true) */
    bool matmul_ref;      /* use the scalar reference matmul (slow; for tests) */
    bool round_activations; /* round each linear layer's input to the weight's vec_dot
                               type first, as llama.cpp does (default true) */
    bool qdot;            /* with round_activations: integer block dot products in
                             llama.cpp's order where ec_qdot_supported (default true;
                             EDGEC_NO_QDOT=1 in the environment turns it off) */
    ec_linear_input_fn on_linear_input; /* NULL = none */
    void *user;                         /* passed to on_linear_input */
};

/* Defaults: n_ctx 512, n_threads 0, kv_f16 true, matmul_ref false,
 * round_activations true, qdot true (false under EDGEC_NO_QDOT), no hook. */
void ec_engine_opts_init(struct ec_engine_opts *o);

struct ec_engine;

/* Build an engine for m (arch "llama" or "qwen2"). Checks every tensor's
 * presence, type and shape against the hyper-parameters; errors name the
 * model path and the tensor. */
enum ec_status ec_engine_new(struct ec_engine **out, const struct ec_model *m,
                             const struct ec_engine_opts *o, struct ec_diag *d);
void ec_engine_free(struct ec_engine *e); /* NULL is a no-op */

/* Forget all cached tokens (the next eval starts at position 0). */
void ec_engine_reset(struct ec_engine *e);
/* Number of tokens in the KV cache (= position of the next token). */
uint32_t ec_engine_n_past(const struct ec_engine *e);
uint32_t ec_engine_n_vocab(const struct ec_engine *e);
uint32_t ec_engine_n_ctx(const struct ec_engine *e);
int ec_engine_n_threads(const struct ec_engine *e); /* threads its loops use */

/* Evaluate n_tokens tokens at positions n_past .. n_past+n_tokens-1 in one
 * batch and append them to the cache. If logits is not NULL it receives
 * logits[(i - logits_from) * n_vocab + j] for the batch rows i >= logits_from
 * (0 <= logits_from <= n_tokens): row i = next-token logits after token i.
 * EC_ERR_ARG when the cache would overflow or a token id is out of range. */
enum ec_status ec_engine_eval(struct ec_engine *e, const int32_t *tokens, int64_t n_tokens,
                              float *logits, int64_t logits_from, struct ec_diag *d);

/* ---- matmul kernels (exposed for tests and benchmarks) ---- */

/* A linear layer's weight: n_out rows of n_in elements of `type` (F32, F16,
 * BF16 or a type with quant traits), row r at data + r * row_bytes. */
struct ec_linear_view {
    enum ec_dtype type;
    const uint8_t *data;
    uint64_t row_bytes;
    int64_t n_in;
    int64_t n_out;
};

/* y[t * n_out + r] = sum_i W[r][i] * x[t * n_in + i] for t < n_tokens.
 * _ref: scalar, sequential float sum, no OpenMP. _fast: blocked, 8 partial
 * sums per row combined in a fixed order, OpenMP over row blocks (n_threads 0
 * = default). Both fail only with EC_ERR_NOMEM (scratch). They agree to within a few ulp of sum_i |W[r][i] x[t][i]|. */
enum ec_status ec_matmul_ref(const struct ec_linear_view *w, const float *x, int64_t n_tokens,
                             float *y, struct ec_diag *d);
enum ec_status ec_matmul_fast(const struct ec_linear_view *w, const float *x, int64_t n_tokens,
                              float *y, int n_threads, struct ec_diag *d);

/* The kernel family ec_matmul_fast uses: 0 portable (8-lane vectors, no
 * FMA), 1 AVX2 + FMA tiles, 2 AVX-512 tiles. The default is the best this
 * CPU has; ec_matmul_set_isa(L) caps it at L (-1: no cap) and returns the
 * level in effect. Not thread-safe against running matmuls (for tests and
 * benchmarks). */
int ec_matmul_set_isa(int max_level);

/* Integer-dot matmul for Q4_0, Q5_0, Q8_0 (n_in % 32 == 0) and Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K (n_in % 256 == 0) weights: x is quantized to Q8_0 / Q8_K
 * blocks as ggml-cpu does, and each output is llama.cpp's x86 AVX2 block
 * dot product with its float steps in its order (src/engine/qdot.c). */
bool ec_qdot_supported(enum ec_dtype t, int64_t n_in);
enum ec_status ec_matmul_qdot(const struct ec_linear_view *w, const float *x, int64_t n_tokens,
                              float *y, int n_threads, struct ec_diag *d);
/* Its kernels: 0 scalar (the definition), 1 AVX2, 2 AVX-512 VNNI (same
 * bits); -1 = the best this CPU has. Returns the level in effect. For
 * tests. */
int ec_qdot_set_isa(int max_level);

/* The same for attention, SiLU and the vector expf they use: 0 the scalar
 * definition, 1 AVX2 + FMA, 2 AVX-512. All levels give the same bits; -1
 * restores the default. Returns the level set. */
int ec_attention_set_isa(int max_level);

/* Kernels of the forward pass, shared with the pruners' calibration pass so
 * both give the same bits. ec_attention_item: one (token, head) of causal
 * attention over n_keys keys at k/v + j * stride (q, k, v already rounded to
 * fp16 when f16), scores scratch sc[n_keys], out[hd]. ec_silu_mul_row:
 * g[i] = silu(g[i]) * up[i] over one token's row of n. ec_rope_rotate: one
 * head of hd values by the cos/sin pairs cs (normal or NeoX pairing). */
void ec_attention_item(const float *q, const float *k, const float *v, size_t stride,
                       uint32_t n_keys, uint32_t hd, float scale, bool f16, float *sc,
                       float *out);
void ec_silu_mul_row(float *g, const float *up, int64_t n);
void ec_rope_rotate(float *p, const float *cs, uint32_t hd, bool neox);

/* Rotary position embedding as llama.cpp sets it up for the hyper-parameters
 * (llama_context's yarn defaults, ggml_rope_yarn_corr_dims,
 * ggml_rope_cache_init): theta_scale = theta^(-2/n_rot); linear scaling
 * divides the angles by the factor; llama3 divides each frequency by
 * freq_factors (rope_freqs.weight, required); YaRN (ext_factor 1, beta_fast
 * 32, beta_slow 1, original context from the hyper-parameters or n_ctx_train)
 * blends interpolated and extrapolated angles per dimension and scales cos/sin
 * by attn_factor (1 + 0.1 ln factor), net of the factor llama_context cancels.
 * ec_rope_init fails on a scaling type it cannot apply. ec_rope_cache fills
 * cs[t][n_rot] with (cos, sin) pairs for positions pos0 .. pos0 + n - 1. */
struct ec_rope {
    uint32_t n_rot;
    float theta_scale, freq_scale, ext_factor, attn_factor, corr_dims[2];
    const float *freq_factors; /* borrowed, n_rot / 2, or NULL */
};
enum ec_status ec_rope_init(struct ec_rope *r, const struct ec_hparams *hp, const float *freq_factors,
                            const char *what, struct ec_diag *d);
void ec_rope_cache(const struct ec_rope *r, uint32_t pos0, int64_t n, float *cs);

/* y[i] = ggml-cpu's vector expf of x[i] (the engine's softmax and SiLU use
 * it), at the given level (0 scalar definition, 1 AVX2, 2 AVX-512 where
 * present). */
void ec_engine_vexpf(const float *x, float *y, int64_t n, int level);

/* y[n_tokens * n_in] = x rounded to the activation type llama.cpp pairs with
 * weight_type (F16 -> fp16, BF16 -> bf16, Q4_0/Q5_0/Q8_0/IQ4_NL -> Q8_0,
 * Q4_1/Q5_1 -> Q8_1 (same values), K-quants/IQ4_XS -> Q8_K) and back to F32;
 * a copy for F32 or when n_in is not a whole number of blocks. */
void ec_round_activations(enum ec_dtype weight_type, const float *x, int64_t n_tokens,
                          int64_t n_in, float *y);

/* ---- perplexity (as llama-perplexity) ---- */

struct ec_ppl_opts {
    int64_t n_ctx;      /* chunk length (tokens); the engine's n_ctx must be >= this */
    int64_t n_batch;    /* tokens per eval call (0 = n_ctx); n_ctx must be a multiple */
    int64_t max_chunks; /* 0 = all */
    int32_t bos_id;     /* replaces each chunk's first token; < 0 = keep it */
    /* called after each chunk with the running perplexity (as printed by
     * llama-perplexity: exp(mean nll so far)); may be NULL */
    void (*on_chunk)(void *user, int64_t chunk, int64_t n_chunks, double ppl_so_far);
    void *user;
};

struct ec_ppl_result {
    double ppl;          /* exp(mean nll) */
    double ppl_err;      /* ppl * sqrt(var(nll) / (N - 1)) */
    double nll_mean;
    int64_t n_chunks;
    int64_t n_scored;    /* N = n_chunks * (n_ctx - 1 - n_ctx / 2) */
    int64_t n_evaluated; /* tokens run through the model */
    double seconds;      /* wall time of the evaluation */
};

/* llama-perplexity's perplexity(): tokens (already with BOS prepended by the
 * tokenizer) cut into floor(n_tokens / n_ctx) chunks, each chunk's first
 * token replaced by bos_id, the KV cache cleared per chunk, positions
 * n_ctx/2 .. n_ctx-2 scoring the next token: nll = log sum_j expf(l_j - max)
 * (summed in double) - (l_tok - max). EC_ERR_ARG when there is not one full
 * chunk. */
enum ec_status ec_perplexity_run(struct ec_engine *e, const int32_t *tokens, int64_t n_tokens,
                                 const struct ec_ppl_opts *o, struct ec_ppl_result *r,
                                 struct ec_diag *d);

#endif
