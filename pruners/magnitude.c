/* pruners/magnitude.c: magnitude pruning as in Wanda's prune_magnitude
 * (locuslab/wanda @ 8e8fc87b): unstructured uses one threshold per layer,
 * N:M the N smallest |W| of every group. */
#include <math.h>
#include <stdlib.h>

#include "edgec/prune.h"
#include "pruners/prune_internal.h"

enum ec_status ec_prune_magnitude(float *W, int64_t rows, int64_t cols,
                                  const struct ec_sparsity *sp, uint8_t *mask_out,
                                  struct ec_diag *d)
{
    enum ec_status st = ec_sparsity_check(sp, rows, cols, d);
    if (st != EC_OK)
        return st;
    int64_t n = rows * cols;
    uint8_t *mask = mask_out ? mask_out : malloc((size_t)n);
    if (!mask)
        return ec_fail(d, EC_ERR_NOMEM, "prune: magnitude: no memory for a %lld-entry mask",
                       (long long)n);
    if (sp->prune_n != 0) {
        float g[256];
        float *gbuf = sp->prune_m <= 256 ? g : malloc(sizeof(float) * (size_t)sp->prune_m);
        if (!gbuf) {
            st = ec_fail(d, EC_ERR_NOMEM, "prune: magnitude: no memory for a group of %d",
                         sp->prune_m);
            goto out_mask;
        }
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c += sp->prune_m) {
                for (int q = 0; q < sp->prune_m; q++)
                    gbuf[q] = fabsf(W[r * cols + c + q]);
                ec_mask_nm_group(gbuf, sp->prune_m, sp->prune_n, mask + r * cols + c);
            }
        }
        if (gbuf != g)
            free(gbuf);
    } else if (sp->ratio == 0.0) {
        /* the authors' code would still prune the smallest weight(s) */
        for (int64_t i = 0; i < n; i++)
            mask[i] = 0;
    } else {
        /* thresh = sort(|W|.flatten())[int(numel * ratio)]; prune |W| <= thresh */
        uint32_t *key = malloc(sizeof(uint32_t) * (size_t)n);
        if (!key) {
            st = ec_fail(d, EC_ERR_NOMEM, "prune: magnitude: no memory for %lld keys",
                         (long long)n);
            goto out_mask;
        }
        for (int64_t i = 0; i < n; i++)
            key[i] = ec_prune_order_key(fabsf(W[i]));
        int64_t k = (int64_t)((double)n * sp->ratio);
        uint32_t t = ec_prune_kth_key(key, n, k);
        free(key);
        for (int64_t i = 0; i < n; i++) {
            float a = fabsf(W[i]);
            mask[i] = !isnan(a) && ec_prune_order_key(a) <= t;
        }
    }
    ec_mask_apply(W, mask, n);
out_mask:
    if (mask != mask_out)
        free(mask);
    return st;
}
