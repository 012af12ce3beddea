/* edgec/prune_run.h: the `edgec prune` driver (pruners/prune_run.c,
 * pruners/structured.c).
 *
 * Unstructured / N:M pruning is sequential, layer by layer, as SparseGPT's
 * llama.py (and Wanda's prune_wanda / prune_sparsegpt) do it: the calibration
 * windows are embedded; then for each block l
 *   1. the DENSE block runs over every window while each linear layer's input
 *      is accumulated (q/k/v share one statistic, gate/up another; o_proj's
 *      input is the attention output, down's is silu(gate) * up): SparseGPT
 *      Hessians (ec_hessian_accumulate) or Wanda column norms, one sample per
 *      call;
 *   2. q, k, v, o, gate, up, down are pruned in that order from those
 *      statistics (ec_sparsegpt_prune / ec_prune_wanda / ec_prune_magnitude);
 *   3. the PRUNED block runs over the windows again; its outputs feed block
 *      l+1, and each linear layer's relative reconstruction error
 *      sum ||(W - W') x||^2 / sum ||W x||^2 over those inputs is recorded.
 * Memory: the windows' hidden states [n_samples][len][n_embd] plus one
 * block's weights and statistics. Magnitude pruning needs no calibration
 * (without --calib it skips the passes and reports no reconstruction error).
 * token_embd / output are pruned only on request (token_embd by magnitude,
 * since an embedding lookup has no input statistics; output with the chosen
 * method from the final normed hidden states); norms and biases never.
 *
 * Structured pruning (ec_prune_opts.structured) ranks on the DENSE model in
 * one calibration pass:
 *   - attention heads: importance of query head h = mean over calibration
 *     tokens of the L2 norm of its attention output (the o_proj input slice),
 *     as Minitron's head score. Llama needs n_head / n_head_kv query heads per
 *     KV head, so with GQA (group g = n_head / n_head_kv) removing K heads
 *     removes K / g whole KV groups (the lowest summed importance) when g
 *     divides K; otherwise, when n_head_kv divides K, K / n_head_kv query
 *     heads are removed from EVERY group (KV heads kept); otherwise
 *     EC_ERR_ARG. The same count goes in every layer (config.json has one
 *     num_attention_heads), chosen per layer.
 *   - FFN channels: importance = mean over tokens of |silu(gate) * up| of the
 *     channel (the down_proj input); the lowest round(R * n_ff) of each layer
 *     are removed (rows of gate/up, columns of down).
 *   - layers: block influence 1 - mean_t cos(x_in_t, x_out_t) (ShortGPT);
 *     the K lowest are removed.
 * Shapes and hyper-parameters are rewritten: num_attention_heads,
 * num_key_value_heads, intermediate_size, num_hidden_layers (head_dim stays
 * and is written explicitly). Heads are contiguous blocks of head_dim rows
 * in both q/k layouts, so removing them commutes with the rotary permutation.
 *
 * Output: a .gguf path -> GGUF (keys as `edgec convert` writes them, with the
 * new hyper-parameters); anything else -> an HF folder (model.safetensors
 * with HF names and HF q/k layout, config.json rewritten, tokenizer files
 * copied; needs an HF input). Files are written atomically.
 */
#ifndef EDGEC_PRUNE_RUN_H
#define EDGEC_PRUNE_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgec/dtype.h"
#include "edgec/model.h"
#include "edgec/prune.h"
#include "edgec/status.h"

enum ec_prune_method { EC_PRUNE_MAGNITUDE = 0, EC_PRUNE_WANDA = 1, EC_PRUNE_SPARSEGPT = 2 };

/* "magnitude", "wanda", "sparsegpt"; false when unknown */
bool ec_prune_method_from_name(const char *s, enum ec_prune_method *out);
const char *ec_prune_method_name(enum ec_prune_method m);

/* Parse "0.5" (ratio) or "2:4" (N:M) into sp. EC_ERR_ARG when malformed. */
enum ec_status ec_sparsity_parse(const char *s, struct ec_sparsity *sp, struct ec_diag *d);

/* Per-tensor sparsity: POSIX ERE searched in the GGUF tensor name; the first
 * rule that matches wins (ratio 0 leaves the tensor dense). */
struct ec_prune_rule {
    const char *pattern; /* borrowed */
    struct ec_sparsity sp;
};

struct ec_prune_opts {
    const char *input;  /* HF folder or .gguf */
    const char *output; /* .gguf, or an HF folder */
    enum ec_prune_method method;
    struct ec_sparsity sp; /* default for every linear layer */
    size_t n_rules;
    const struct ec_prune_rule *rules;
    bool prune_embeddings;
    bool prune_output;
    const char *calib;      /* text or .i32 ids; required for wanda/sparsegpt/structured */
    int64_t calib_samples;  /* 0 = 128 */
    int64_t calib_len;      /* 0 = min(2048, n_ctx_train) */
    uint64_t seed;          /* window offsets */
    int blocksize;          /* SparseGPT (0 = 128) */
    double percdamp;        /* SparseGPT (< 0 = 0.01) */
    bool kv_f32;            /* calibration attention without fp16 rounding */
    enum ec_dtype outtype;  /* weights: EC_F32, EC_F16 or EC_BF16 when !outtype_auto */
    bool outtype_auto;      /* true: F32 sources give F32, F16/BF16 keep theirs */
    /* structured */
    bool structured;
    double heads_ratio; /* fraction of n_head (used when heads_count == 0) */
    int heads_count;    /* query heads removed per layer */
    double ffn_ratio;   /* fraction of n_ff channels removed per layer */
    int layers_count;   /* whole layers removed */
    const char *then_quantize; /* llama-quantize type name, NULL = none (GGUF output only) */
    int n_threads;             /* 0 = OpenMP default */
    /* progress (stage "calib", "prune", "write"; layer index or -1) */
    void (*progress)(void *ctx, const char *stage, int layer, int n_layer);
    void *progress_ctx;
};

void ec_prune_opts_init(struct ec_prune_opts *o);

struct ec_prune_tensor_stat {
    char *name;        /* GGUF name in the output (owned) */
    int src_layer;     /* block index in the input, -1 outside blocks */
    int64_t rows, cols;       /* output shape (out x in) */
    int64_t rows_removed, cols_removed; /* structured */
    int64_t n_zero;    /* zeros in the written weight */
    double sparsity;   /* n_zero / (rows * cols) */
    char spec[32];     /* sparsity asked: "0.5", "2:4", "dense", "structured" */
    double loss;       /* SparseGPT's error sum, NAN when not SparseGPT */
    double recon_err;  /* relative reconstruction error, NAN when not measured */
    /* max / median of the input columns' RMS over the calibration tokens
     * (Wanda's ||X_j||): how far its weighting departs from plain magnitude;
     * LLaMA-scale models with outlier features reach 100, 1.0 is uniform.
     * NAN when not calibrated (magnitude, structured) */
    double input_spread;
};

struct ec_prune_layer_stat {
    int src_layer;
    int out_layer;           /* -1 when removed */
    double block_influence;  /* NAN when not measured */
    uint32_t n_heads_removed, n_kv_removed;
    uint32_t heads_removed[64]; /* query head indices (first 64) */
    uint32_t n_ff_removed;
    double seconds;
};

struct ec_prune_result {
    size_t n_tensors;
    struct ec_prune_tensor_stat *tensors;
    size_t n_layers;
    struct ec_prune_layer_stat *layers;
    struct ec_hparams hp_in, hp_out;
    uint64_t n_params_in, n_params_out;
    uint64_t n_pruned_elems, n_pruned_zero; /* over the tensors asked to be sparse */
    int64_t calib_samples, calib_len, calib_source_tokens;
    char *quantized_to; /* type name when --then-quantize ran (owned) */
    double seconds;
};

/* Run `edgec prune`. r must be released with ec_prune_result_release (also
 * on failure). EC_ERR_ARG (options), EC_ERR_FORMAT / EC_ERR_UNSUPPORTED
 * (input), EC_ERR_IO, EC_ERR_NOMEM, EC_ERR_NUMERIC (a Hessian that damping
 * does not make positive definite). */
enum ec_status ec_prune_run(const struct ec_prune_opts *o, struct ec_prune_result *r,
                            struct ec_diag *d);
void ec_prune_result_release(struct ec_prune_result *r);

/* The summary as a JSON document (heap string, free()), or NULL on OOM. */
char *ec_prune_result_json(const struct ec_prune_result *r, const struct ec_prune_opts *o);

#endif
