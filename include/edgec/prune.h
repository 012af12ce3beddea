/* edgec/prune.h: the numeric core of `edgec prune` for one linear layer.
 *
 * Layout. W is row-major float [rows = out_features][cols = in_features], the
 * PyTorch nn.Linear layout (GGUF ne[0] = cols). Calibration inputs X are
 * token-major float [n_tokens][cols] (one row per token, the layer's input).
 * A mask is uint8_t [rows][cols], 1 = pruned (the weight is set to 0).
 *
 * Sparsity vocabulary (shared by all methods, struct ec_sparsity):
 *   - unstructured: `ratio` = fraction to prune (prune_n = prune_m = 0);
 *   - N:M ("2:4"): prune_n zeros in every group of prune_m consecutive
 *     columns of each row (2:4 keeps 2 of 4), as prune_n/prune_m in the
 *     SparseGPT and Wanda code; cols must be a multiple of prune_m.
 *
 * What each method reproduces (checked in tests/unit/test_prune_golden.c
 * against the authors' PyTorch code run on one layer):
 *   - magnitude (Wanda repo, prune_magnitude): unstructured uses ONE threshold
 *     per layer: t = the (int(rows*cols*ratio))-th smallest |W| (0-based) and
 *     every |W| <= t is pruned, i.e. int(rows*cols*ratio)+1 weights (+ ties);
 *     N:M prunes the N smallest |W| of each group.
 *   - Wanda (locuslab/wanda @ 8e8fc87b): score |W| * sqrt(scaler_row[col]);
 *     unstructured prunes exactly int(cols*ratio) lowest scores of EACH row
 *     (stable sort: on equal scores the lower column goes first); N:M per group.
 *   - SparseGPT (IST-DASLab/sparsegpt @ 147d2159, fasterprune): see
 *     ec_sparsegpt_prune().
 * Ties inside an N:M group break towards the lower column (torch.topk leaves
 * this unspecified; the goldens have no exact ties).
 *
 * Threads: the drivers use OpenMP inside; results do not depend on the thread
 * count (each output element is computed by one thread in a fixed order).
 * Functions are reentrant; a struct must not be used by two threads at once.
 */
#ifndef EDGEC_PRUNE_H
#define EDGEC_PRUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "edgec/status.h"

struct ec_sparsity {
    double ratio; /* unstructured: fraction pruned, [0, 1); ignored for N:M */
    int prune_n;  /* N:M: zeros per group; 0 = unstructured */
    int prune_m;  /* N:M: group size (consecutive columns); 0 = unstructured */
};

/* EC_ERR_ARG unless: 0 <= ratio < 1 for unstructured; 0 < n < m and cols % m
 * == 0 for N:M; rows, cols > 0. */
enum ec_status ec_sparsity_check(const struct ec_sparsity *sp, int64_t rows, int64_t cols,
                                 struct ec_diag *d);

/* ---- masks (pruners/nm.c) ---- */

/* Mark the k lowest of score[0..len) in mask (1 = pruned; other entries 0).
 * Order: by score, then by index (a stable sort's order). NaN scores sort
 * last. k <= len. */
void ec_mask_lowest_k(const float *score, int64_t len, int64_t k, uint8_t *mask);
/* N:M over one row: for each group of m columns mark the n lowest scores. */
void ec_mask_nm_row(const float *score, int64_t cols, int n, int m, uint8_t *mask);
/* W[i] = 0 where mask[i]; returns the number of masked entries. */
int64_t ec_mask_apply(float *W, const uint8_t *mask, int64_t n_elems);
/* True when every group of m consecutive columns of every row holds at least
 * n zeros of W (the N:M pattern hardware needs). */
bool ec_nm_holds(const float *W, int64_t rows, int64_t cols, int n, int m);

/* ---- magnitude (pruners/magnitude.c) ---- */

/* Prune W in place; mask_out [rows*cols] may be NULL. EC_ERR_ARG, EC_ERR_NOMEM. */
enum ec_status ec_prune_magnitude(float *W, int64_t rows, int64_t cols,
                                  const struct ec_sparsity *sp, uint8_t *mask_out,
                                  struct ec_diag *d);

/* ---- Wanda (pruners/wanda.c) ---- */

struct ec_wanda_scaler {
    int64_t cols;      /* in_features */
    int64_t nsamples;  /* calibration samples (sequences) seen so far */
    float *scaler_row; /* [cols] mean over samples of sum over tokens of x^2; owned */
};

enum ec_status ec_wanda_scaler_init(struct ec_wanda_scaler *s, int64_t cols, struct ec_diag *d);
void ec_wanda_scaler_release(struct ec_wanda_scaler *s);
/* Add one batch of n_samples sequences holding n_tokens rows of X in total
 * (WrappedGPT.add_batch: tmp = n_samples):
 *   scaler *= nsamples / (nsamples + n_samples); nsamples += n_samples;
 *   scaler[c] += ||X[:, c]||^2 / nsamples                  (float, as torch)
 * The column norm is summed in double, rounded to float, then squared in
 * float (torch.norm(...) ** 2). Calling it once per sequence or once for all
 * gives the same result up to rounding. EC_ERR_ARG on bad sizes. */
enum ec_status ec_wanda_scaler_accumulate(struct ec_wanda_scaler *s, const float *X,
                                          int64_t n_tokens, int64_t n_samples, struct ec_diag *d);
/* Prune W in place by |W| * sqrt(scaler_row). mask_out may be NULL. */
enum ec_status ec_prune_wanda(float *W, int64_t rows, int64_t cols, const float *scaler_row,
                              const struct ec_sparsity *sp, uint8_t *mask_out, struct ec_diag *d);

/* ---- SparseGPT Hessian (pruners/sparsegpt.c) ---- */

struct ec_hessian {
    int64_t cols;     /* in_features */
    int64_t nsamples; /* calibration samples (sequences) seen so far */
    float *H;         /* [cols][cols] owned; see ec_hessian_finish() */
    bool reference;   /* use the scalar reference kernel (tests) */
};

/* H = 0, nsamples = 0. EC_ERR_NOMEM, EC_ERR_ARG. */
enum ec_status ec_hessian_init(struct ec_hessian *h, int64_t cols, struct ec_diag *d);
void ec_hessian_release(struct ec_hessian *h);
/* SparseGPT add_batch for a batch of n_samples sequences holding n_tokens
 * rows of X (tmp = n_samples, the batch dimension, NOT the token count):
 *   H *= nsamples / (nsamples + n_samples); nsamples += n_samples;
 *   s = sqrt(2 / nsamples) (rounded to float); H += (s X)^T (s X)
 * so that H = 2/nsamples * sum_t x_t x_t^T. Arithmetic is float like torch's;
 * the product of a batch is summed in double by the reference and in float
 * (FMA, in blocks of 256 tokens) by the fast path. Only the upper triangle
 * (col >= row) is kept up to date; call ec_hessian_finish() before reading H.
 * Deterministic for any thread count. EC_ERR_ARG on bad sizes. */
enum ec_status ec_hessian_accumulate(struct ec_hessian *h, const float *X, int64_t n_tokens,
                                     int64_t n_samples, struct ec_diag *d);
/* Mirror the upper triangle into the lower one: H is then complete and
 * symmetric. Accumulating again afterwards is allowed. */
void ec_hessian_finish(struct ec_hessian *h);

/* ---- SparseGPT (pruners/sparsegpt.c) ---- */

struct ec_sparsegpt_opts {
    struct ec_sparsity sp;
    int blocksize;   /* columns per lazy-update block; 128 in the paper */
    double percdamp; /* damping, fraction of mean(diag(H)); 0.01 in the paper */
    bool reference;  /* scalar reference linear algebra (tests; slow on big layers) */
};

/* Defaults: blocksize 128, percdamp 0.01, unstructured 0.5. */
struct ec_sparsegpt_opts ec_sparsegpt_defaults(void);

/* SparseGPT's fasterprune on W (in place):
 *   dead = diag(H) == 0 -> H[dead][dead] = 1, W[:, dead] = 0;
 *   H += percdamp * mean(diag(H)) * I;
 *   Hinv = upper Cholesky factor U of H^-1 (H^-1 = U^T U);
 *   for each block of `blocksize` columns: the unstructured mask of the block
 *   is tmp = w^2 / U[c][c]^2 <= the (int(numel*ratio))-th smallest tmp of the
 *   block (all rows at once); N:M picks the N lowest tmp of each group when
 *   the loop reaches its first column; then column by column
 *   q = masked w, err = (w - q) / U[c][c], W[:, c+1:i2] -= err U[c, c+1:i2],
 *   and after the block W[:, i2:] -= Err U[i1:i2, i2:].
 * H (float [cols][cols], complete and symmetric, read only) is not modified;
 * U is computed in double as the inverse of the reversed-order Cholesky
 * factor (one factorisation and one triangular inverse instead of torch's
 * cholesky + cholesky_inverse + cholesky), rounded to float; the column loop
 * runs in float like torch. mask_out [rows*cols] may be NULL; *loss_out
 * (may be NULL) receives sum (w - q)^2 / U[c][c]^2 / 2 (the printed "error").
 * Needs about 20*cols^2 bytes of scratch (two double matrices, one float). EC_ERR_ARG, EC_ERR_NOMEM,
 * EC_ERR_NUMERIC when the damped H is not positive definite. */
enum ec_status ec_sparsegpt_prune(float *W, int64_t rows, int64_t cols, const float *H,
                                  const struct ec_sparsegpt_opts *o, uint8_t *mask_out,
                                  double *loss_out, struct ec_diag *d);

#endif
