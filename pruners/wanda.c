/* pruners/wanda.c: Wanda (locuslab/wanda @ 8e8fc87b): input-norm statistics
 * as WrappedGPT.add_batch and pruning by |W| * sqrt(scaler_row) per output
 * row. */
#include <math.h>
#include <stdlib.h>

#include "edgec/prune.h"
#include "pruners/prune_internal.h"

enum ec_status ec_wanda_scaler_init(struct ec_wanda_scaler *s, int64_t cols, struct ec_diag *d)
{
    s->cols = cols;
    s->nsamples = 0;
    s->scaler_row = NULL;
    if (cols <= 0)
        return ec_fail(d, EC_ERR_ARG, "prune: wanda: %lld input columns", (long long)cols);
    s->scaler_row = calloc((size_t)cols, sizeof(float));
    if (!s->scaler_row)
        return ec_fail(d, EC_ERR_NOMEM, "prune: wanda: no memory for %lld columns",
                       (long long)cols);
    return EC_OK;
}

void ec_wanda_scaler_release(struct ec_wanda_scaler *s)
{
    free(s->scaler_row);
    s->scaler_row = NULL;
}

enum ec_status ec_wanda_scaler_accumulate(struct ec_wanda_scaler *s, const float *X,
                                          int64_t n_tokens, int64_t n_samples, struct ec_diag *d)
{
    if (n_tokens < 0 || n_samples <= 0)
        return ec_fail(d, EC_ERR_ARG, "prune: wanda: batch of %lld tokens in %lld samples",
                       (long long)n_tokens, (long long)n_samples);
    const int64_t cols = s->cols;
    double *ss = calloc((size_t)cols, sizeof(double));
    if (!ss)
        return ec_fail(d, EC_ERR_NOMEM, "prune: wanda: no memory for %lld columns",
                       (long long)cols);
    for (int64_t t = 0; t < n_tokens; t++) {
        const float *x = X + t * cols;
        for (int64_t c = 0; c < cols; c++)
            ss[c] += (double)x[c] * (double)x[c];
    }
    /* torch multiplies a float tensor by a Python number in float */
    const float ratio = (float)((double)s->nsamples / (double)(s->nsamples + n_samples));
    s->nsamples += n_samples;
    const float ns = (float)s->nsamples;
    for (int64_t c = 0; c < cols; c++) {
        float norm = (float)sqrt(ss[c]);
        float sq = norm * norm;
        s->scaler_row[c] = s->scaler_row[c] * ratio + sq / ns;
    }
    free(ss);
    return EC_OK;
}

enum ec_status ec_prune_wanda(float *W, int64_t rows, int64_t cols, const float *scaler_row,
                              const struct ec_sparsity *sp, uint8_t *mask_out, struct ec_diag *d)
{
    enum ec_status st = ec_sparsity_check(sp, rows, cols, d);
    if (st != EC_OK)
        return st;
    int64_t n = rows * cols;
    uint8_t *mask = mask_out ? mask_out : malloc((size_t)n);
    float *sq = malloc(sizeof(float) * (size_t)cols);
    float *score = malloc(sizeof(float) * (size_t)cols);
    void *buf = malloc(ec_mask_lowest_k_buf_bytes(cols));
    if (!mask || !sq || !score || !buf) {
        st = ec_fail(d, EC_ERR_NOMEM, "prune: wanda: no memory for a %lld x %lld layer",
                     (long long)rows, (long long)cols);
        goto out_free;
    }
    for (int64_t c = 0; c < cols; c++)
        sq[c] = sqrtf(scaler_row[c]);
    int64_t k = (int64_t)((double)cols * sp->ratio);
    for (int64_t r = 0; r < rows; r++) {
        const float *w = W + r * cols;
        for (int64_t c = 0; c < cols; c++)
            score[c] = fabsf(w[c]) * sq[c];
        if (sp->prune_n != 0)
            ec_mask_nm_row(score, cols, sp->prune_n, sp->prune_m, mask + r * cols);
        else
            ec_mask_lowest_k_buf(score, cols, k, mask + r * cols, buf);
    }
    ec_mask_apply(W, mask, n);
out_free:
    free(buf);
    free(score);
    free(sq);
    if (mask != mask_out)
        free(mask);
    return st;
}
