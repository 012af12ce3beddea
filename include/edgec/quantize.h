/* edgec/quantize.h: the per-tensor type plan of a quantization mix and the
 * `edgec quantize` driver.
 *
 * The plan reproduces llama-quantize's choice of type per tensor at llama.cpp
 * commit c392e509 (src/llama-quant.cpp, llama_tensor_get_type and the
 * selection in llama_model_quantize_impl), re-implemented from its rules:
 *
 *  - Only tensors with >= 2 dimensions whose name ends in "weight" are
 *    quantized; "*_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d.weight",
 *    "attn_rel_b.weight", "time_mix_*" and position/token-type embeddings are
 *    kept; "output.weight" is kept when leave_output_tensor is set.
 *  - Tensors are visited in llama.cpp's weights-map order: names without a
 *    "blk.N." prefix first, then by layer number, each group sorted by name.
 *    The layer-position rules count tensors in that order (attn_v, ffn_down).
 *  - The mix rules (token_embd/output, attn_v, attn_output, attn_qkv,
 *    ffn_down with "use_more_bits", n_gqa, 70B) give a type; then a tensor
 *    whose row length (ne[0]) is not a multiple of that type's block takes
 *    llama.cpp's fallback (IQ2/IQ3/IQ1/Q2_K/Q3_K/IQ4_XS -> IQ4_NL, Q4_K -> Q5_0,
 *    Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 when that still does not fit).
 *  - Where llama-quantize refuses ("Unsupported tensor size encountered": a
 *    32-block type such as Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/IQ4_NL on a row whose
 *    length is not a multiple of 32), edgec uses F16, the only ggml type of
 *    llama.cpp's own last-resort fallback that fits any row, and records a
 *    warning naming the tensor. Such plans are flagged `llama_refuses`.
 *
 * User overrides are applied after the mix, strongest last:
 *   1. pure: every quantizable tensor gets the base type (no mix rules);
 *   2. --tensor-type REGEX=TYPE: POSIX extended regex searched anywhere in the
 *      GGUF tensor name (anchor with ^...$ for an exact match); the FIRST
 *      pattern that matches wins; only quantizable tensors are affected;
 *   3. --token-embedding-type / --output-tensor-type for "token_embd.weight" /
 *      "output.weight" (as in llama.cpp, a tied token_embd without
 *      output.weight takes the output type from the mix, but the explicit
 *      token-embedding type wins);
 *   4. the row-length fallback, which is applied to every result (with a
 *      warning when it changes a type the user asked for).
 *
 * Importance matrix selection (--include-weights / --exclude-weights): in
 * llama-quantize these filter the imatrix entries by name (plain substring
 * search; exclusions first, then inclusions when any are given). edgec uses
 * POSIX extended regexes searched anywhere in the name, so a plain name
 * behaves like llama.cpp's substring (with '.' matching any character).
 * A tensor whose imatrix entry is filtered out is quantized without one.
 */
#ifndef EDGEC_QUANTIZE_H
#define EDGEC_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgec/dtype.h"
#include "edgec/status.h"

/* llama_ftype numbers (written to general.file_type). */
enum ec_ftype {
    EC_FTYPE_ALL_F32 = 0,
    EC_FTYPE_MOSTLY_F16 = 1,
    EC_FTYPE_MOSTLY_Q4_0 = 2,
    EC_FTYPE_MOSTLY_Q4_1 = 3,
    EC_FTYPE_MOSTLY_Q8_0 = 7,
    EC_FTYPE_MOSTLY_Q5_0 = 8,
    EC_FTYPE_MOSTLY_Q5_1 = 9,
    EC_FTYPE_MOSTLY_Q2_K = 10,
    EC_FTYPE_MOSTLY_Q3_K_S = 11,
    EC_FTYPE_MOSTLY_Q3_K_M = 12,
    EC_FTYPE_MOSTLY_Q3_K_L = 13,
    EC_FTYPE_MOSTLY_Q4_K_S = 14,
    EC_FTYPE_MOSTLY_Q4_K_M = 15,
    EC_FTYPE_MOSTLY_Q5_K_S = 16,
    EC_FTYPE_MOSTLY_Q5_K_M = 17,
    EC_FTYPE_MOSTLY_Q6_K = 18,
    EC_FTYPE_MOSTLY_IQ4_NL = 25,
    EC_FTYPE_MOSTLY_IQ4_XS = 30,
    EC_FTYPE_MOSTLY_BF16 = 32,
};

/* Name as llama-quantize spells it ("Q4_K_M"), or "?" */
const char *ec_ftype_name(enum ec_ftype f);
/* Case-insensitive; accepts llama-quantize's names and its aliases Q3_K
 * (= Q3_K_M), Q4_K (= Q4_K_M), Q5_K (= Q5_K_M). False when unknown. */
bool ec_ftype_from_name(const char *name, enum ec_ftype *out);
/* The base (default) tensor type of a mix; F32 for ALL_F32. */
enum ec_dtype ec_ftype_base_type(enum ec_ftype f);
/* One-line list of the accepted names (for --help). */
const char *ec_ftype_names_help(void);

/* Model facts the mix rules need. */
struct ec_plan_model {
    const char *arch;   /* GGUF architecture ("llama", "qwen2", "falcon", ...) */
    uint32_t n_layer;   /* block_count */
    uint32_t n_head;    /* attention.head_count */
    uint32_t n_head_kv; /* attention.head_count_kv (0 = same as n_head) */
    uint32_t n_expert;  /* expert_count (0 = dense) */
};

/* One input tensor. */
struct ec_plan_tensor_in {
    const char *name;            /* GGUF name, borrowed */
    enum ec_dtype type;          /* type in the source */
    uint32_t n_dims;
    uint64_t ne[4];              /* innermost first; unused = 1 */
};

struct ec_type_override {
    const char *pattern; /* POSIX ERE, borrowed */
    enum ec_dtype type;
};

#define EC_DTYPE_UNSET ((enum ec_dtype) - 1)

struct ec_plan_opts {
    enum ec_ftype ftype;
    bool pure;
    bool leave_output_tensor;
    enum ec_dtype output_tensor_type;   /* EC_DTYPE_UNSET = mix decides */
    enum ec_dtype token_embedding_type; /* EC_DTYPE_UNSET = mix decides */
    size_t n_overrides;
    const struct ec_type_override *overrides; /* first match wins */
    /* imatrix selection (see the header comment); has_imatrix says whether an
     * importance matrix is given at all; imatrix_names (n_imatrix_names,
     * may be NULL) lists its entries so that the plan knows which tensors
     * have one. */
    bool has_imatrix;
    size_t n_imatrix_names;
    const char *const *imatrix_names;
    size_t n_include;
    const char *const *include_weights;
    size_t n_exclude;
    const char *const *exclude_weights;
};

enum ec_plan_flag {
    EC_PLAN_QUANTIZE = 1u << 0,      /* the tensor is converted (type differs from source) */
    EC_PLAN_QUANTIZABLE = 1u << 1,   /* eligible for quantization at all */
    EC_PLAN_FALLBACK = 1u << 2,      /* row length forced another type */
    EC_PLAN_LLAMA_REFUSES = 1u << 3, /* llama-quantize would stop on this tensor */
    EC_PLAN_OVERRIDDEN = 1u << 4,    /* a user option chose the type */
    EC_PLAN_IMATRIX = 1u << 5,       /* quantize with its imatrix entry */
};

struct ec_plan_entry {
    size_t src_index;      /* index in the caller's input array */
    char *name;            /* owned copy of the input's name */
    enum ec_dtype src_type;
    enum ec_dtype wanted;  /* type before the row-length fallback */
    enum ec_dtype type;    /* final type */
    uint32_t n_dims;
    uint64_t ne[4];
    uint64_t n_elems;
    uint64_t src_bytes;    /* bytes in the source type */
    uint64_t dst_bytes;    /* bytes in the final type */
    unsigned flags;        /* enum ec_plan_flag */
};

struct ec_quant_plan {
    enum ec_ftype ftype;
    size_t n;
    struct ec_plan_entry *entries; /* [n] in output (llama.cpp weights-map) order */
    size_t n_warnings;
    char **warnings;               /* [n_warnings] owned, each names its tensor */
    size_t n_fallback;
    bool llama_refuses;            /* llama-quantize would refuse this model/mix */
    size_t n_imatrix_entries;      /* imatrix_names left after include/exclude */
    uint64_t src_bytes_total, dst_bytes_total, n_elems_total;
};

/* Build the plan. Returns EC_ERR_ARG for a bad regex or an unknown type,
 * EC_ERR_UNSUPPORTED when a tensor's type cannot be computed. On failure *p
 * is released. Thread-safe (no globals). */
enum ec_status ec_quant_plan_build(struct ec_quant_plan *p, const struct ec_plan_model *m,
                                   const struct ec_plan_tensor_in *tensors, size_t n_tensors,
                                   const struct ec_plan_opts *o, struct ec_diag *d);
void ec_quant_plan_release(struct ec_quant_plan *p);

/* Order of llama.cpp's weights map: names without "blk.N." first, then by N;
 * ties by strcmp. Returns <0, 0, >0. */
int ec_weight_name_cmp(const char *a, const char *b);

/* ---- the driver (quantizers/quantize.c) ---- */

struct ec_quantize_tensor_result;

struct ec_quantize_opts {
    const char *input;        /* HF folder or .gguf */
    const char *output;       /* .gguf (ignored with dry_run) */
    enum ec_ftype ftype;
    const char *imatrix_file; /* NULL = none */
    size_t n_include;
    const char *const *include_weights;
    size_t n_exclude;
    const char *const *exclude_weights;
    size_t n_overrides;
    const struct ec_type_override *overrides;
    const char *const *override_specs; /* [n_overrides] "RE=TYPE" as given (metadata) */
    enum ec_dtype output_tensor_type;   /* EC_DTYPE_UNSET = mix */
    enum ec_dtype token_embedding_type; /* EC_DTYPE_UNSET = mix */
    bool pure;
    bool leave_output_tensor;
    bool allow_requantize;
    bool dry_run;
    bool no_recipe;           /* omit the edgec.quantize.* keys (then the file is
                               * byte-identical to llama-quantize's output) */
    int n_threads;            /* > 0: omp_set_num_threads (process-wide); 0 = default */
    bool skip_tensor_sha256;  /* leave ec_quantize_tensor_result.sha256 empty (the serial
                               * hash was ~28% of Q8_0 time); default false = hash */
    /* optional, called after each tensor from the calling thread */
    void (*progress)(void *ctx, uint64_t tensors_done, uint64_t tensors_total,
                     uint64_t src_bytes_done);
    void *progress_ctx;
};

struct ec_quantize_tensor_result {
    char sha256[65];  /* of the written bytes (empty in dry runs or skip_tensor_sha256) */
    double seconds;
};

struct ec_quantize_result {
    struct ec_quant_plan plan;
    struct ec_quantize_tensor_result *tensors; /* [plan.n] */
    uint64_t file_bytes;        /* size of the written file (0 in dry runs) */
    double seconds;
    char imatrix_sha256[65];    /* of the imatrix file ("" when none) */
    size_t n_imatrix_entries;   /* entries used after include/exclude */
};

/* Run a quantization: plan, then stream tensors one at a time into an atomic
 * GGUF output. Warnings (fallbacks) are in r->plan.warnings. r must be
 * released with ec_quantize_result_release even on failure.
 * Statuses: EC_ERR_ARG (bad options), EC_ERR_FORMAT / EC_ERR_UNSUPPORTED
 * (input), EC_ERR_IO (output), EC_ERR_NOMEM. */
enum ec_status ec_quantize_run(const struct ec_quantize_opts *o, struct ec_quantize_result *r,
                               struct ec_diag *d);
void ec_quantize_result_release(struct ec_quantize_result *r);

#endif
