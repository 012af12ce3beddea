/* edgec/validate.h: compare a compressed model (CAND) with its original (REF).
 *
 * Token-level statistics follow llama-perplexity --kl-divergence exactly
 * (perplexity.cpp kl_divergence(); see ../shared/golden/README.md §4):
 *   - the text is chunked as for perplexity (ec_perplexity_run), both models
 *     evaluate the same chunks, positions n_ctx/2 .. n_ctx-2 are scored;
 *   - REF's log-probabilities are stored as llama.cpp stores its base file:
 *     per position a float scale and minimum and uint16 codes, clamped 16
 *     nats below the maximum (ec_kld_base_encode), so statistics computed
 *     from them equal llama.cpp's;
 *   - per position: nll of CAND, nll of REF (decoded), KL(REF || CAND) over the
 *     decoded entries above -16, same top-1 token, delta p of the scored token.
 * Plain perplexities of REF and CAND (from the unquantized logits, as
 * `edgec perplexity` prints them) are reported as well; llama.cpp's
 * "Mean PPL(base)" is computed from the clamped base and may differ.
 *
 * Only per-position scalars are kept (a few floats per scored token), never
 * whole logit rows beyond one chunk.
 */
#ifndef EDGEC_VALIDATE_H
#define EDGEC_VALIDATE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "edgec/engine.h"
#include "edgec/model.h"
#include "edgec/status.h"

/* ---- llama.cpp's base-logit record and per-position statistics ---- */

/* Words of one record: 4 uint16 (float scale, float min_log_prob) + codes
 * padded to an even count: 2 * ceil(n_vocab / 2) + 4. */
uint64_t ec_kld_record_words(int64_t n_vocab);
/* Encode one row of REF logits into rec[ec_kld_record_words(n_vocab)]. */
void ec_kld_base_encode(const float *logits, int64_t n_vocab, uint16_t *rec);

struct ec_kld_position {
    float nll;        /* CAND: max + lse - l[tok] */
    float nll_base;   /* REF: -decoded log p[tok] */
    double kld;       /* sum over decoded entries > -16 */
    float p_diff;     /* exp(-nll) - exp(-nll_base) */
    float cand_top_p; /* CAND's top probability exp(-lse) */
    bool same_top;    /* first argmax of CAND logits == first argmax of decoded REF */
};
/* Compare CAND's logits with a REF record for the scored token tok. */
void ec_kld_position_eval(const float *cand_logits, int64_t n_vocab, const uint16_t *rec,
                          int32_t tok, struct ec_kld_position *out);

/* Linear interpolation on ascending values at p = fraction * (n - 1). */
double ec_percentile_sorted(const float *sorted, int64_t n, double fraction);

/* ---- the whole comparison ---- */

#define EC_ROUTE_MAX_TAU 16

struct ec_validate_opts {
    int64_t n_ctx;      /* chunk length */
    int64_t n_batch;    /* 0 = n_ctx */
    int64_t max_chunks; /* 0 = all */
    int32_t bos_id;     /* < 0: keep each chunk's first token */
    void (*on_chunk)(void *user, int64_t chunk, int64_t n_chunks);
    void *user;
};

struct ec_route_row {
    double tau;        /* confidence threshold on CAND's top probability */
    double share;      /* fraction of scored tokens with top p >= tau (CAND answers alone) */
    double agreement;  /* top-1 agreement with REF on those (NaN when share is 0) */
};

struct ec_validate_stats {
    int64_t n_chunks, n_scored;
    /* plain perplexities from unquantized logits, as edgec perplexity */
    double ppl_ref, ppl_ref_err, ppl_cand, ppl_cand_err;
    double ppl_ratio;            /* ppl_cand / ppl_ref */
    /* paired: ln(ppl_ratio) is the mean per-token difference of the two NLLs,
     * so its standard error sees the correlation of the two models' losses
     * on the same tokens (far below either PPL's own +/-) */
    double ppl_ratio_err;        /* ppl_ratio * stderr of the mean NLL difference */
    double ppl_cor;              /* correlation of the per-token NLLs */
    /* llama.cpp's printed statistics */
    double lc_ppl_q, lc_ppl_q_err, lc_ppl_base, lc_ppl_base_err, lc_cor;
    double lc_ln_ratio, lc_ln_ratio_err, lc_ratio, lc_ratio_err, lc_diff, lc_diff_err;
    double kld_mean, kld_mean_err, kld_max, kld_p999, kld_p99, kld_median, kld_p10, kld_p5,
        kld_p1, kld_min;
    double dp_mean, dp_mean_err, dp_max, dp_p999, dp_p99, dp_p95, dp_p90, dp_p75, dp_median,
        dp_p25, dp_p10, dp_p5, dp_p1, dp_p01, dp_min; /* fractions, not % */
    double rms_dp, rms_dp_err;   /* fraction */
    double top1, top1_err;       /* same top-1 share */
    int n_route;
    struct ec_route_row route[EC_ROUTE_MAX_TAU];
    float *kld_sorted;           /* [n_scored], ascending, owned (for histograms) */
    double seconds;
};

/* Evaluate REF and CAND on the tokens and fill s. The two engines must have
 * the same vocabulary size and n_ctx >= o->n_ctx. */
enum ec_status ec_validate_run(struct ec_engine *ref, struct ec_engine *cand,
                               const int32_t *tokens, int64_t n_tokens,
                               const struct ec_validate_opts *o, struct ec_validate_stats *s,
                               struct ec_diag *d);
void ec_validate_stats_release(struct ec_validate_stats *s);

/* Route table and recommendation: lowest tau whose agreement >= target
 * (NaN when none). */
double ec_route_recommend(const struct ec_validate_stats *s, double target);

/* ---- per-tensor error ---- */

struct ec_tensor_err {
    char *name;       /* GGUF name, owned */
    int layer;        /* blk index, -1 otherwise */
    enum ec_dtype ref_type, cand_type;
    uint64_t n_elems;
    double rmse, rel_err, snr_db, cosine; /* snr_db = +inf when identical */
};

struct ec_tensor_report {
    size_t n;
    struct ec_tensor_err *t;
    size_t n_only_ref, n_only_cand, n_shape_mismatch; /* tensors not compared */
};

/* Every tensor present in both models under the same GGUF name and shape,
 * streamed in row chunks (bounded memory). */
enum ec_status ec_tensor_compare(const struct ec_model *ref, const struct ec_model *cand,
                                 struct ec_tensor_report *r, struct ec_diag *d);
void ec_tensor_report_release(struct ec_tensor_report *r);

/* ---- the report (JSON, Markdown, self-contained HTML with SVG charts) ---- */

enum ec_report_format { EC_REPORT_JSON, EC_REPORT_MD, EC_REPORT_HTML };

/* A report format from a file name's extension (.json, .md, .html/.htm);
 * false when unknown. */
bool ec_report_format_from_path(const char *path, enum ec_report_format *out);

struct ec_check {
    const char *name;   /* "kld_mean", "ppl_ratio", "top1_agreement" */
    double value, threshold;
    bool is_max;        /* value must be <= threshold (else >=) */
    bool passed;
};

#define EC_MAX_CHECKS 8

struct ec_validate_report {
    const char *ref_path, *cand_path, *text_path, *version;
    int64_t n_ctx;
    const struct ec_validate_stats *s;
    const struct ec_tensor_report *tensors; /* may be NULL */
    int n_checks;
    struct ec_check checks[EC_MAX_CHECKS];
    bool passed;
    double route_target; /* NaN = not asked */
    double route_tau;    /* recommendation, NaN = none reaches the target */
};

/* Write the report to f (library code: no other output). Returns false on a
 * stream error (callers check ferror too). */
bool ec_validate_report_write(FILE *f, enum ec_report_format fmt,
                              const struct ec_validate_report *r);

#endif
