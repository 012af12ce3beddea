/* edgec/calib.h: calibration passes over a text (importance matrix).
 *
 * ec_imatrix_compute evaluates the tokens in llama-perplexity's chunks
 * (floor(n/ctx) chunks, each chunk's first token replaced by BOS, KV cache
 * cleared per chunk) and, through the engine's linear-input hook, collects
 * for every blk.* weight the per-column sum of squared inputs over all
 * evaluated tokens, as llama-imatrix (llama.cpp c392e509) does: sums in
 * float in token order, one ncall per matmul call; the stored value is
 * (sum / count) * ncall. output.weight and token_embd are not collected.
 */
#ifndef EDGEC_CALIB_H
#define EDGEC_CALIB_H

#include <stdbool.h>
#include <stdint.h>

#include "edgec/engine.h"
#include "edgec/imatrix.h"
#include "edgec/model.h"
#include "edgec/status.h"

struct ec_imatrix_opts {
    int64_t n_ctx;      /* chunk length in tokens */
    int64_t n_batch;    /* tokens per eval call (0 = n_ctx; must divide n_ctx) */
    int64_t max_chunks; /* 0 = all */
    int n_threads;      /* 0 = OpenMP default */
    bool kv_f32;        /* F32 KV cache instead of llama.cpp's default F16 */
    const char *dataset; /* stored in the file's trailer (llama-imatrix: the -f argument) */
    void (*on_chunk)(void *user, int64_t chunk, int64_t n_chunks, double ppl_so_far);
    void *user;
};

/* Fills *out (entries in first-use order; release with ec_imatrix_release)
 * and, when ppl is non-NULL, the perplexity of the same pass (llama-imatrix
 * prints it as a by-product). */
enum ec_status ec_imatrix_compute(const struct ec_model *m, const int32_t *tokens,
                                  int64_t n_tokens, const struct ec_imatrix_opts *o,
                                  struct ec_imatrix *out, struct ec_ppl_result *ppl,
                                  struct ec_diag *d);

#endif
