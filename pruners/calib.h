/* pruners/calib.h: calibration data and a one-block forward pass for the
 * layer-by-layer pruning drivers (not public).
 *
 * The block forward repeats src/engine/engine.c's math for one llama-family
 * block over one sequence at positions 0..n_tok-1 (RMSNorm summed in double,
 * RoPE angles by repeated float multiplication, softmax summed in double,
 * optional fp16 rounding of K, V, q and the probabilities as the engine's
 * default F16 KV cache), so the activations the pruners see are the ones the
 * engine computes on an F32 model. Weights are F32 in GGUF layout (q/k rows
 * interleaved for "llama"), row-major [rows = out][cols = in].
 */
#ifndef EDGEC_PRUNERS_CALIB_H
#define EDGEC_PRUNERS_CALIB_H

#include <stdbool.h>
#include <stdint.h>

#include "edgec/model.h"
#include "edgec/status.h"

/* Calibration windows: n_samples sequences of len tokens. */
struct ec_calib_data {
    int64_t n_samples;
    int64_t len;
    int64_t n_source_tokens; /* tokens in the file the windows come from */
    int32_t *tokens;         /* [n_samples][len], owned */
};

/* Read `path` (UTF-8 text tokenized with m's tokenizer with BOS, or, when the
 * name ends in ".i32", little-endian int32 ids) and cut n_samples windows of
 * len tokens at offsets drawn as SparseGPT's get_*: uniform in
 * [0, n_tokens - len - 1], from a splitmix64 stream seeded with `seed`.
 * EC_ERR_ARG when the file holds fewer than len + 1 tokens or an id is out of
 * the vocabulary. */
enum ec_status ec_calib_load(struct ec_calib_data *c, const struct ec_model *m, const char *path,
                             int64_t n_samples, int64_t len, uint64_t seed, struct ec_diag *d);
void ec_calib_release(struct ec_calib_data *c);

enum ec_calib_lin {
    EC_LIN_Q = 0,
    EC_LIN_K,
    EC_LIN_V,
    EC_LIN_O,
    EC_LIN_GATE,
    EC_LIN_UP,
    EC_LIN_DOWN,
    EC_LIN_COUNT
};
/* "attn_q", "attn_k", ... (the GGUF name part) */
const char *ec_calib_lin_name(enum ec_calib_lin l);

/* One block's weights as F32, owned. */
struct ec_calib_block {
    float *attn_norm; /* [n_embd] */
    float *ffn_norm;  /* [n_embd] */
    float *w[EC_LIN_COUNT]; /* [rows][cols] GGUF layout */
    float *b[EC_LIN_COUNT]; /* [rows] bias or NULL */
    int64_t rows[EC_LIN_COUNT], cols[EC_LIN_COUNT];
};

/* Read block il of m as F32 (plain types, or dequantized). */
enum ec_status ec_calib_block_load(struct ec_calib_block *b, const struct ec_model *m, uint32_t il,
                                   struct ec_diag *d);
void ec_calib_block_release(struct ec_calib_block *b);

/* Any tensor of m as F32 in GGUF layout (permutation applied, quantized
 * types dequantized); dst holds ec_model_tensor_n_elems(t) floats. */
enum ec_status ec_calib_tensor_f32(const struct ec_model *m, const struct ec_model_tensor *t,
                                   float *dst, struct ec_diag *d);

/* Called after each linear layer of the block with its input x[n_tok][cols]
 * and output y[n_tok][rows] (before RoPE for q and k). */
typedef enum ec_status (*ec_calib_tap_fn)(void *user, enum ec_calib_lin lin, const float *x,
                                          const float *y, int64_t n_tok, struct ec_diag *d);

struct ec_calib_fwd;

/* Scratch for sequences of up to max_tok tokens. */
enum ec_status ec_calib_fwd_new(struct ec_calib_fwd **out, const struct ec_hparams *hp,
                                const float *freq_factors, int64_t max_tok, bool kv_f16,
                                int n_threads, struct ec_diag *d);
void ec_calib_fwd_free(struct ec_calib_fwd *f);

/* x[n_tok][n_embd] <- block(x), tokens at positions 0..n_tok-1. */
enum ec_status ec_calib_block_forward(struct ec_calib_fwd *f, const struct ec_calib_block *b,
                                      float *x, int64_t n_tok, ec_calib_tap_fn tap, void *user,
                                      struct ec_diag *d);

/* y[n_tok][n_embd] = rmsnorm(x) * w, as the engine's final norm. */
void ec_calib_rms_norm(const float *x, const float *w, int64_t n_tok, int64_t n, float eps,
                       float *y);

/* x[t] = token_embd[tokens[t]] as F32. */
enum ec_status ec_calib_embed(const struct ec_model *m, const int32_t *tokens, int64_t n_tok,
                              float *x, struct ec_diag *d);

#endif
