/* edgec/model.h: one view of a model, whatever it was read from.
 *
 * ec_model_open() takes a Hugging Face checkpoint folder (config.json,
 * *.safetensors, tokenizer files) or a GGUF file and presents it the same
 * way: hyper-parameters (struct ec_hparams), the vocabulary (struct ec_vocab),
 * and tensors under llama.cpp's GGUF names, in the order llama.cpp's converter
 * writes them, with ne[] innermost first. The model owns the mappings;
 * tensors borrow from them.
 *
 * HF q_proj/k_proj weights are stored in the rotate_half layout; llama.cpp
 * expects the interleaved one. Such tensors carry `permute_heads` > 0 and
 * ec_model_tensor_read() applies the permutation while reading, so no caller
 * sees the HF layout.
 */
#ifndef EDGEC_MODEL_H
#define EDGEC_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "edgec/dtype.h"
#include "edgec/gguf.h"
#include "edgec/safetensors.h"
#include "edgec/status.h"

enum ec_arch_family { EC_ARCH_LLAMA = 0, EC_ARCH_MISTRAL = 1, EC_ARCH_QWEN2 = 2 };

enum ec_rope_scaling { EC_ROPE_SCALING_NONE = 0, EC_ROPE_SCALING_LINEAR, EC_ROPE_SCALING_YARN,
                       EC_ROPE_SCALING_LLAMA3 };

struct ec_hparams {
    enum ec_arch_family family;
    const char *hf_arch;     /* "LlamaForCausalLM", ... (static string) */
    const char *gguf_arch;   /* "llama" or "qwen2" (static string) */
    uint32_t n_vocab;        /* rows of token_embd */
    uint32_t n_embd;         /* hidden size */
    uint32_t n_ff;           /* FFN intermediate size */
    uint32_t n_layer;
    uint32_t n_head;         /* query heads */
    uint32_t n_head_kv;      /* key/value heads (GQA) */
    uint32_t head_dim;       /* per-head dim (n_embd / n_head unless config says) */
    uint32_t n_ctx_train;    /* max_position_embeddings */
    float rope_theta;        /* rope_theta / freq_base */
    float norm_eps;          /* rms_norm_eps */
    enum ec_rope_scaling rope_scaling;
    float rope_factor;               /* scaling factor (1 when none) */
    uint32_t rope_orig_ctx;          /* original_max_position_embeddings (0 if none) */
    float rope_low_freq_factor;      /* llama3 */
    float rope_high_freq_factor;     /* llama3 */
    bool tied_embeddings;    /* output shares token_embd */
    bool attn_qkv_bias;      /* q/k/v projections have biases (Qwen2) */
    bool attn_out_bias;      /* o_proj has a bias */
    uint32_t sliding_window; /* Mistral (0 = none) */
    bool mlp_bias;           /* gate/up/down projections have biases (Llama mlp_bias) */
};

enum ec_vocab_type { EC_VOCAB_NONE = 0, EC_VOCAB_SPM = 1 /* GGUF "llama" */, EC_VOCAB_BPE = 2 /* GGUF "gpt2" */ };

/* llama.cpp token types */
enum ec_token_type { EC_TOK_NORMAL = 1, EC_TOK_UNKNOWN = 2, EC_TOK_CONTROL = 3,
                     EC_TOK_USER_DEFINED = 4, EC_TOK_UNUSED = 5, EC_TOK_BYTE = 6 };

struct ec_vocab {
    enum ec_vocab_type type;
    char *pre;             /* tokenizer.ggml.pre ("default", "llama-bpe", "qwen2", ...) */
    uint32_t n_tokens;
    char **tokens;         /* [n_tokens] UTF-8, NUL-terminated, owned */
    float *scores;         /* [n_tokens] or NULL */
    int32_t *token_types;  /* [n_tokens] enum ec_token_type */
    uint32_t n_merges;
    char **merges;         /* [n_merges] "a b", owned (BPE) */
    int32_t bos_id, eos_id, unk_id, pad_id, sep_id; /* -1 = none */
    bool add_bos, add_eos;
    bool has_add_bos, has_add_eos; /* whether the flags were given at all */
    bool add_space_prefix;         /* SPM: prepend "▁" (default true) */
    bool has_add_space_prefix;
    /* SPM vocabularies read from an HF tokenizer.json (BPE with byte_fallback):
     * the merge list, used only by the tokenizer (scores there are the constant
     * -1000 llama.cpp's LlamaHfVocab writes). Never written to GGUF. */
    uint32_t n_spm_merges;
    char **spm_merges;     /* [n_spm_merges] "a b", owned, or NULL */
    char *note;            /* remark from loading worth a warning (e.g. unidentified
                            * pre-tokenizer), owned, or NULL */
};

void ec_vocab_release(struct ec_vocab *v);

enum ec_model_source { EC_SRC_HF = 0, EC_SRC_GGUF = 1 };

struct ec_model_tensor {
    char *name;               /* GGUF name ("blk.0.attn_q.weight"), owned */
    const char *src_name;     /* name in the source (HF name or same), borrowed */
    enum ec_dtype dtype;      /* storage type in the source */
    uint32_t n_dims;
    uint64_t ne[EC_GGUF_MAX_DIMS]; /* innermost first; unused = 1 */
    const uint8_t *data;      /* raw bytes in the source layout, borrowed */
    uint64_t n_bytes;
    uint32_t permute_heads;   /* >0: HF rotate_half rows to permute with this head count */
    const char *src_file;     /* for messages */
    uint64_t src_offset;      /* absolute byte offset in src_file */
};

struct ec_model {
    enum ec_model_source source;
    char *path;                 /* as opened */
    struct ec_hparams hp;
    struct ec_vocab vocab;
    size_t n_tensors;
    struct ec_model_tensor *tensors; /* GGUF order */
    struct ec_safetensors st;   /* when source == EC_SRC_HF */
    struct ec_gguf gguf;        /* when source == EC_SRC_GGUF */
    char *name;                 /* general.name (derived from the folder for HF) */
    enum ec_dtype hf_dtype;     /* dominant dtype of an HF checkpoint (F32/F16/BF16) */
    float *rope_freqs;          /* HF with llama3 rope scaling: data of the computed
                                   rope_freqs.weight tensor (owned) */
};

/* Open a checkpoint folder or a .gguf file. */
enum ec_status ec_model_open(struct ec_model *m, const char *path, struct ec_diag *d);
void ec_model_close(struct ec_model *m);
const struct ec_model_tensor *ec_model_find(const struct ec_model *m, const char *gguf_name);

/* Read a plain-typed (F32/F16/BF16) tensor as F32 into dst[n_elems], applying
 * the q/k permutation. Quantized tensors: EC_ERR_UNSUPPORTED (callers
 * dequantize through quantizers/). */
enum ec_status ec_model_tensor_read_f32(const struct ec_model *m, const struct ec_model_tensor *t,
                                        float *dst, struct ec_diag *d);
/* Rows of a tensor: ne[1]*ne[2]*... for a matrix (row = ne[0] elements); for
 * a permuted vector (a q/k bias) each element is a row. */
uint64_t ec_model_tensor_n_rows(const struct ec_model_tensor *t);
/* Read rows [row0, row0+n) as F32 into dst (n x row length), permutation
 * applied: lets callers stream a tensor in bounded chunks. */
enum ec_status ec_model_tensor_read_rows_f32(const struct ec_model *m,
                                             const struct ec_model_tensor *t, uint64_t row0,
                                             uint64_t n, float *dst, struct ec_diag *d);
/* Copy raw bytes in GGUF layout (permutation applied, dtype unchanged). */
enum ec_status ec_model_tensor_read_raw(const struct ec_model *m, const struct ec_model_tensor *t,
                                        void *dst, struct ec_diag *d);
uint64_t ec_model_tensor_n_elems(const struct ec_model_tensor *t);

/* ---- pieces used by ec_model_open, exposed for tests and tools ---- */

/* Parse config.json text (path used in messages). Unsupported architectures:
 * EC_ERR_UNSUPPORTED with a message listing the supported ones. */
enum ec_status ec_hparams_from_config_json(struct ec_hparams *hp, const char *json, size_t len,
                                           const char *path, struct ec_diag *d);
/* From a GGUF's llama.* / qwen2.* keys. */
enum ec_status ec_hparams_from_gguf(struct ec_hparams *hp, const struct ec_gguf *g, struct ec_diag *d);

/* Load the vocabulary of an HF folder: tokenizer.model (SentencePiece) if
 * present, else tokenizer.json; special ids and add_bos/add_eos from
 * tokenizer_config.json / generation_config.json / config.json. */
enum ec_status ec_vocab_from_hf_dir(struct ec_vocab *v, const char *dir, const struct ec_hparams *hp,
                                    struct ec_diag *d);
/* Parse a SentencePiece ModelProto (tokenizer.model bytes). */
enum ec_status ec_vocab_from_sp_model(struct ec_vocab *v, const uint8_t *buf, size_t n,
                                      const char *path, struct ec_diag *d);
/* Parse an HF tokenizer.json text. */
enum ec_status ec_vocab_from_tokenizer_json(struct ec_vocab *v, const char *json, size_t len,
                                            const char *path, struct ec_diag *d);
/* From GGUF tokenizer.ggml.* keys. */
enum ec_status ec_vocab_from_gguf(struct ec_vocab *v, const struct ec_gguf *g, struct ec_diag *d);

/* HF tensor name -> GGUF name ("model.layers.3.self_attn.q_proj.weight" ->
 * "blk.3.attn_q.weight"). Returns a heap string or NULL for unknown names. */
char *ec_hf_to_gguf_name(const char *hf_name);
/* The reverse ("blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight"),
 * for writing HF folders. Heap string or NULL for unknown names. */
char *ec_gguf_to_hf_name(const char *gguf_name);
/* Names llama.cpp's converter drops before mapping (rotary_emb.inv_freq, ...). */
bool ec_hf_name_ignorable(const char *hf_name);

/* Write the general.* / <arch>.* / tokenizer.ggml.* keys as llama.cpp's
 * converter does, in its order. file_type = llama_ftype number. */
enum ec_status ec_model_write_gguf_kvs(const struct ec_model *m, struct ec_gguf_writer *w,
                                       uint32_t file_type, struct ec_diag *d);

#endif
