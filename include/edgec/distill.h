/* edgec/distill.h: teacher top-k distributions for knowledge distillation.
 *
 * An export is a folder:
 *   manifest.json            format "edgec-distill" version 1 (cJSON), see docs/distill-format.md
 *   shard-00000.ecds ...     fixed-size shards of EC_DISTILL_HEADER_BYTES + a zlib stream
 *
 * Sequences: the text is tokenized with the teacher's tokenizer exactly as
 * `edgec perplexity` does (one trailing newline dropped, BOS added per the
 * vocabulary), cut into floor(n / L) consecutive, non-overlapping windows of
 * L tokens, and each window's first token is replaced by BOS (when the
 * vocabulary has one), as llama-perplexity's chunks. Every one of the L
 * positions of a window gets a record: the teacher's distribution of the
 * token that follows it, given the window up to and including it.
 *
 * Record: the top-k token ids by logit (descending; equal logits: lower id
 * first), their log-probabilities log_softmax(logits / T) quantized on a grid
 * of 1 / EC_DISTILL_STEPS_PER_NAT nats (|stored - exact| <= 1/512 nats unless
 * below -255.99 nats, where they saturate), and the log of the probability
 * mass outside the top k on the same grid.
 *
 * Byte layout of a shard (little-endian):
 *   0  magic "ECDS"            4  u32 version (1)        8  u32 header bytes (112)
 *   12 u32 shard index         16 u64 first sequence     24 u32 sequences
 *   28 u32 seq_len L           32 u32 top_k              36 u32 id bytes (2 or 4)
 *   40 u32 steps per nat (256) 44 u32 n_vocab            48 u64 payload bytes (inflated)
 *   56 u64 stored bytes (zlib) 64 u32 crc32 of the stored bytes  68 u32 zero
 *   72 u8[32] export fingerprint (sha256 of the canonical arguments)
 *   104 u32 crc32 of bytes 0..103   108 u32 zero
 * then the zlib stream. The inflated payload, for N = sequences * L tokens,
 * holds five arrays, each "byte-shuffled" (all byte 0s of the elements, then
 * all byte 1s, ...):
 *   input ids   N       x id bytes
 *   top-k ids   N * k   x id bytes     (position-major)
 *   q_top       N       x u16          round(-logp_0 * 256), saturating at 65535
 *   q_delta     N*(k-1) x u16          q_j - q_{j-1} (>= 0): q_j = round(-logp_j * 256)
 *   q_tail      N       x u16          round(-ln(tail mass) * 256), 65535 when <= e^-256
 *
 * The library never prints; errors name the file, the shard and the offset.
 */
#ifndef EDGEC_DISTILL_H
#define EDGEC_DISTILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgec/status.h"

#define EC_DISTILL_FORMAT "edgec-distill"
#define EC_DISTILL_VERSION 1
#define EC_DISTILL_HEADER_BYTES 112
#define EC_DISTILL_STEPS_PER_NAT 256
#define EC_DISTILL_Q_MAX 65535u
#define EC_DISTILL_MANIFEST "manifest.json"
#define EC_DISTILL_MAX_TOP_K 4096

/* ---- export ---- */

struct ec_distill_progress {
    uint64_t tokens_done;     /* tokens in finished shards (reused ones included) */
    uint64_t tokens_total;
    uint64_t tokens_reused;   /* of tokens_done, from shards verified on disk */
    uint32_t shards_done;
    uint32_t n_shards;
};

struct ec_distill_opts {
    const char *teacher_path; /* checkpoint folder or .gguf */
    const char *text_path;    /* exactly one of text_path, tokens_path */
    const char *tokens_path;  /* int32 LE ids, BOS included */
    const char *out_dir;      /* created when absent (one level) */
    uint32_t seq_len;         /* L >= 2 */
    uint32_t top_k;           /* 1 .. min(n_vocab, EC_DISTILL_MAX_TOP_K) */
    double temperature;       /* > 0 */
    uint64_t shard_tokens;    /* a multiple of seq_len; 0 = the multiple of L nearest 32768 */
    int64_t max_seqs;         /* 0 = all windows */
    int n_threads;            /* 0 = OpenMP default; results do not depend on it */
    bool kv_f32;              /* F32 KV cache (default F16 as llama.cpp) */
    bool force;               /* overwrite an export made with other arguments */
    int zlib_level;           /* 0 = default (6) */
    /* called after every shard (from the calling thread); may be NULL */
    void (*on_progress)(void *user, const struct ec_distill_progress *p);
    void *user;
};

void ec_distill_opts_init(struct ec_distill_opts *o);

struct ec_distill_result {
    uint64_t n_tokens;        /* records written (= n_seqs * seq_len) */
    uint64_t n_seqs;
    uint32_t n_shards;
    uint32_t n_shards_reused; /* complete shards found on disk and kept */
    uint64_t tokens_evaluated; /* tokens run through the teacher in this run */
    uint64_t shard_bytes;     /* sum of shard file sizes */
    uint64_t total_bytes;     /* shards + manifest */
    uint64_t text_tokens;     /* tokens of the input before cutting */
    double seconds;           /* wall time of evaluation + encoding in this run */
};

/* Run (or resume) an export. A folder holding a manifest made with other
 * arguments is EC_ERR_ARG naming the differing keys unless o->force; one
 * that is not an edgec-distill manifest is EC_ERR_FORMAT unless o->force.
 * Shards already on disk that verify (header, fingerprint, CRC, contents)
 * are kept; the others are (re)written atomically. The final files are
 * byte-identical to an uninterrupted run's, for any thread count.
 * Concurrent runs on one folder are refused (flock on the folder). */
enum ec_status ec_distill_export(const struct ec_distill_opts *o, struct ec_distill_result *r,
                                 struct ec_diag *d);

/* ---- reading ---- */

struct ec_distill_shard_info {
    char *file;               /* name inside the folder, owned */
    uint32_t index;
    uint64_t first_seq;
    uint32_t n_seqs;
    uint64_t n_tokens;
    uint64_t bytes;           /* file size */
    uint32_t crc32;           /* of the stored (compressed) bytes */
    char sha256[65];          /* of the whole file, hex */
};

struct ec_distill_manifest {
    char *dir;                /* owned copy */
    char *teacher_path, *teacher_name, *teacher_arch, *teacher_sha256; /* owned */
    char *tokenizer_type;     /* "spm", "bpe", owned */
    char *fingerprint;        /* hex, owned */
    uint32_t n_vocab, top_k, seq_len, id_bytes, steps_per_nat;
    double temperature;
    uint64_t shard_tokens, n_seqs, n_tokens;
    bool complete;
    uint32_t n_shards;
    struct ec_distill_shard_info *shards; /* [n_shards] */
};

/* Parse and validate dir/manifest.json: format, version, every count
 * consistent (shards cover n_seqs in order, n_tokens = n_seqs * seq_len,
 * shard token counts = n_seqs * seq_len, k <= n_vocab, id bytes fit n_vocab).
 * An incomplete export (interrupted run) is EC_ERR_FORMAT. */
enum ec_status ec_distill_manifest_load(struct ec_distill_manifest *m, const char *dir,
                                        struct ec_diag *d);
/* The same checks on manifest text already in memory (dir names the export
 * in messages and is kept in m->dir); the fuzz target's entry point. */
enum ec_status ec_distill_manifest_parse(struct ec_distill_manifest *m, const char *dir,
                                         const char *text, size_t len, struct ec_diag *d);
void ec_distill_manifest_release(struct ec_distill_manifest *m);
/* Whether dir holds a manifest.json naming format "edgec-distill" (any version). */
bool ec_distill_is_export(const char *dir);

/* One decoded shard. logp and tail_logp are the dequantized values
 * -q / steps_per_nat (double precision, exact for the grid). */
struct ec_distill_records {
    uint64_t n_tokens;
    uint32_t top_k;
    int32_t *input_ids;  /* [n_tokens] */
    int32_t *topk_ids;   /* [n_tokens * top_k] */
    double *logp;        /* [n_tokens * top_k] */
    double *tail_logp;   /* [n_tokens] ln(tail mass); -65535/256 means <= that */
};
void ec_distill_records_release(struct ec_distill_records *r);

/* Expected header values of a shard (what the manifest says). */
struct ec_distill_shard_expect {
    uint32_t index;
    uint64_t first_seq;
    uint32_t n_seqs, seq_len, top_k, id_bytes, n_vocab;
    const uint8_t *fingerprint; /* 32 bytes, or NULL = do not check */
};

/* Decode a whole shard file held in memory (name for messages); ex (required)
 * holds what the manifest says, and every header field must equal it. Validates
 * every length and value: header CRC, sizes, payload CRC, inflated size,
 * ids < n_vocab, monotone log-probs. rec may be NULL to verify only. A fuzz
 * target. */
enum ec_status ec_distill_shard_decode(const uint8_t *buf, size_t n, const char *name,
                                       const struct ec_distill_shard_expect *ex,
                                       struct ec_distill_records *rec, struct ec_diag *d);

/* Read shard i of a loaded manifest: size, crc32, sha256 against the
 * manifest, then ec_distill_shard_decode. */
enum ec_status ec_distill_shard_read(const struct ec_distill_manifest *m, uint32_t i,
                                     struct ec_distill_records *rec, struct ec_diag *d);

/* Load the manifest and read every shard (rec = NULL). On failure *m is
 * released; on success the caller releases it. */
enum ec_status ec_distill_verify(const char *dir, struct ec_distill_manifest *m,
                                 struct ec_diag *d);

#endif
