/* pruners/sparsegpt.c: SparseGPT (IST-DASLab/sparsegpt @ 147d2159): the
 * calibration Hessian (add_batch) and the one-shot pruning with OBS weight
 * updates (fasterprune), re-derived in C; see edgec/prune.h for the contract.
 *
 * Hinv: torch computes U = cholesky(cholesky_inverse(cholesky(H)), upper).
 * With J the order-reversing permutation and J H J = L' L'^T (lower
 * Cholesky), H = R R^T with R = J L' J upper triangular, so
 * H^-1 = R^-T R^-1 = U^T U with U = R^-1 = J L'^-1 J (upper, positive
 * diagonal: the unique upper Cholesky factor of H^-1). One factorisation and
 * one triangular inverse, in double, instead of three float LAPACK calls. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/prune.h"
#include "pruners/linalg.h"
#include "pruners/prune_internal.h"

enum ec_status ec_hessian_init(struct ec_hessian *h, int64_t cols, struct ec_diag *d)
{
    h->cols = cols;
    h->nsamples = 0;
    h->H = NULL;
    h->reference = false;
    if (cols <= 0 || cols > (int64_t)1 << 20)
        return ec_fail(d, EC_ERR_ARG, "prune: hessian: %lld input columns", (long long)cols);
    h->H = calloc((size_t)cols * (size_t)cols, sizeof(float));
    if (!h->H)
        return ec_fail(d, EC_ERR_NOMEM, "prune: hessian: no memory for %lld x %lld floats",
                       (long long)cols, (long long)cols);
    return EC_OK;
}

void ec_hessian_release(struct ec_hessian *h)
{
    free(h->H);
    h->H = NULL;
}

enum ec_status ec_hessian_accumulate(struct ec_hessian *h, const float *X, int64_t n_tokens,
                                     int64_t n_samples, struct ec_diag *d)
{
    if (n_tokens < 0 || n_samples <= 0)
        return ec_fail(d, EC_ERR_ARG, "prune: hessian: batch of %lld tokens in %lld samples",
                       (long long)n_tokens, (long long)n_samples);
    /* H *= nsamples / (nsamples + tmp); nsamples += tmp; inp *= sqrt(2 / nsamples):
     * Python doubles, applied to float tensors as floats */
    const float beta = (float)((double)h->nsamples / (double)(h->nsamples + n_samples));
    h->nsamples += n_samples;
    const float s = (float)sqrt(2.0 / (double)h->nsamples);
    if (h->reference)
        ec_ssyrk_upper_ref(h->H, h->cols, X, n_tokens, s, beta);
    else
        ec_ssyrk_upper(h->H, h->cols, X, n_tokens, s, beta);
    return EC_OK;
}

void ec_hessian_finish(struct ec_hessian *h)
{
    const int64_t n = h->cols;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++)
            h->H[i * n + j] = h->H[j * n + i];
}

struct ec_sparsegpt_opts ec_sparsegpt_defaults(void)
{
    return (struct ec_sparsegpt_opts){
        .sp = {.ratio = 0.5, .prune_n = 0, .prune_m = 0},
        .blocksize = 128,
        .percdamp = 0.01,
        .reference = false,
    };
}

/* Hinv = upper Cholesky factor of (H + damp I)^-1 as float [n][n] (see the
 * file comment); dead columns (diag 0) get diag 1 first. */
static enum ec_status sparsegpt_hinv(const float *H, int64_t n, double percdamp, bool ref,
                                     float *U, struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    double *A = malloc(sizeof(double) * (size_t)n * (size_t)n);
    double *X = malloc(sizeof(double) * (size_t)n * (size_t)n);
    if (!A || !X) {
        st = ec_fail(d, EC_ERR_NOMEM, "prune: sparsegpt: no memory for two %lld x %lld doubles",
                     (long long)n, (long long)n);
        goto out_free;
    }
    /* diag in float as torch: dead -> 1, damp = percdamp * mean(diag) */
    double dsum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float hii = H[i * n + i];
        dsum += hii == 0.0f ? 1.0 : (double)hii;
    }
    const float damp = (float)percdamp * (float)(dsum / (double)n);
    /* A = J (H + damp I) J, lower triangle */
#pragma omp parallel for schedule(static)
    for (int64_t a = 0; a < n; a++) {
        for (int64_t b = 0; b <= a; b++) {
            float v = H[(n - 1 - a) * n + (n - 1 - b)];
            if (a == b)
                v = (v == 0.0f ? 1.0f : v) + damp;
            A[a * n + b] = v;
        }
    }
    bool ok = ref ? ec_chol_lower_ref(A, n, n) : ec_chol_lower(A, n, n);
    if (!ok) {
        st = ec_fail(d, EC_ERR_NUMERIC,
                     "prune: sparsegpt: damped hessian (%lld columns, damp %g) is not positive "
                     "definite; raise percdamp or check the calibration inputs for NaN/Inf",
                     (long long)n, (double)damp);
        goto out_free;
    }
    if (ref)
        ec_trinv_lower_ref(A, n, n, X, n);
    else
        ec_trinv_lower(A, n, n, X, n);
#pragma omp parallel for schedule(static)
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++)
            U[a * n + b] = (float)X[(n - 1 - a) * n + (n - 1 - b)];
out_free:
    free(X);
    free(A);
    return st;
}

enum ec_status ec_sparsegpt_prune(float *W, int64_t rows, int64_t cols, const float *H,
                                  const struct ec_sparsegpt_opts *o, uint8_t *mask_out,
                                  double *loss_out, struct ec_diag *d)
{
    const struct ec_sparsity *sp = &o->sp;
    enum ec_status st = ec_sparsity_check(sp, rows, cols, d);
    if (st != EC_OK)
        return st;
    if (o->blocksize <= 0 || !(o->percdamp >= 0.0))
        return ec_fail(d, EC_ERR_ARG, "prune: sparsegpt: blocksize %d, percdamp %g", o->blocksize,
                       o->percdamp);
    if (sp->prune_n != 0 && o->blocksize % sp->prune_m != 0)
        return ec_fail(d, EC_ERR_ARG,
                       "prune: sparsegpt: blocksize %d is not a multiple of the group size %d",
                       o->blocksize, sp->prune_m);
    if (sp->prune_n != 0 && sp->prune_m > 64)
        return ec_fail(d, EC_ERR_UNSUPPORTED, "prune: sparsegpt: group size %d: at most 64",
                       sp->prune_m);
    const int64_t bs = o->blocksize < cols ? o->blocksize : cols;
    const int nm_n = sp->prune_n, nm_m = sp->prune_m;
    float *U = malloc(sizeof(float) * (size_t)cols * (size_t)cols);
    float *err = malloc(sizeof(float) * (size_t)rows * (size_t)bs);
    uint8_t *bmask = malloc((size_t)rows * (size_t)bs);
    float *tmp = malloc(sizeof(float) * (size_t)rows * (size_t)bs);
    uint32_t *key = malloc(sizeof(uint32_t) * (size_t)rows * (size_t)bs);
    double *row_loss = calloc((size_t)rows, sizeof(double));
    if (!U || !err || !bmask || !tmp || !key || !row_loss) {
        st = ec_fail(d, EC_ERR_NOMEM, "prune: sparsegpt: no memory for a %lld x %lld layer",
                     (long long)rows, (long long)cols);
        goto out_free;
    }
    st = sparsegpt_hinv(H, cols, o->percdamp, o->reference, U, d);
    if (st != EC_OK)
        goto out_free;
    /* W[:, dead] = 0 */
    for (int64_t c = 0; c < cols; c++)
        if (H[c * cols + c] == 0.0f)
            for (int64_t r = 0; r < rows; r++)
                W[r * cols + c] = 0.0f;

    for (int64_t i1 = 0; i1 < cols; i1 += bs) {
        const int64_t i2 = i1 + bs < cols ? i1 + bs : cols;
        const int64_t count = i2 - i1;
        if (nm_n == 0) {
            /* tmp = W1^2 / diag(Hinv1)^2; thresh = sort(tmp)[int(numel * ratio)];
             * mask = tmp <= thresh (over the whole block, all rows) */
            const int64_t numel = rows * count;
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t c = 0; c < count; c++) {
                    float w = W[r * cols + i1 + c];
                    float dd = U[(i1 + c) * cols + i1 + c];
                    float t = (w * w) / (dd * dd);
                    tmp[r * count + c] = t;
                    key[r * count + c] = ec_prune_order_key(t);
                }
            }
            if (sp->ratio == 0.0) {
                memset(bmask, 0, (size_t)numel);
            } else {
                uint32_t thresh = ec_prune_kth_key(key, numel, (int64_t)((double)numel * sp->ratio));
                for (int64_t i = 0; i < numel; i++)
                    bmask[i] = !isnan(tmp[i]) && ec_prune_order_key(tmp[i]) <= thresh;
            }
        }
        /* column by column; rows are independent */
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            float *w1 = W + r * cols + i1;
            uint8_t *m1 = bmask + r * count;
            float *e1 = err + r * count;
            double loss = 0.0;
            for (int64_t i = 0; i < count; i++) {
                const float *urow = U + (i1 + i) * cols + i1;
                if (nm_n != 0 && i % nm_m == 0) {
                    float g[64];
                    int gm = (int)(count - i < nm_m ? count - i : nm_m);
                    if (gm > 64)
                        gm = 64; /* groups longer than 64 are refused below */
                    for (int q = 0; q < gm; q++) {
                        float dd = U[(i1 + i + q) * cols + i1 + i + q];
                        g[q] = (w1[i + q] * w1[i + q]) / (dd * dd);
                    }
                    ec_mask_nm_group(g, gm, nm_n < gm ? nm_n : gm, m1 + i);
                }
                const float w = w1[i];
                const float q = m1[i] ? 0.0f : w;
                const float dd = urow[i];
                const float diff = w - q;
                loss += (double)((diff * diff) / (dd * dd));
                const float e = diff / dd;
                e1[i] = e;
                w1[i] = q;
                for (int64_t j = i + 1; j < count; j++)
                    w1[j] -= e * urow[j];
            }
            row_loss[r] += loss / 2.0;
        }
        if (mask_out)
            for (int64_t r = 0; r < rows; r++)
                memcpy(mask_out + r * cols + i1, bmask + r * count, (size_t)count);
        /* lazy batch update: W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:] */
        if (i2 < cols) {
            if (o->reference)
                ec_sgemm_sub_ref(rows, cols - i2, count, err, count, U + i1 * cols + i2, cols,
                                 W + i2, cols);
            else
                ec_sgemm_sub(rows, cols - i2, count, err, count, U + i1 * cols + i2, cols, W + i2,
                             cols);
        }
    }
    if (loss_out) {
        double total = 0.0;
        for (int64_t r = 0; r < rows; r++)
            total += row_loss[r];
        *loss_out = total;
    }
out_free:
    free(row_loss);
    free(key);
    free(tmp);
    free(bmask);
    free(err);
    free(U);
    return st;
}
