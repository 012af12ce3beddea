/* pruners/nm.c: the mask vocabulary shared by the pruners (see edgec/prune.h):
 * sparsity checks, lowest-k selection, N:M groups, and the order key that
 * makes float comparisons total (NaN last, like torch.sort). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/prune.h"
#include "pruners/prune_internal.h"

enum ec_status ec_sparsity_check(const struct ec_sparsity *sp, int64_t rows, int64_t cols,
                                 struct ec_diag *d)
{
    if (rows <= 0 || cols <= 0)
        return ec_fail(d, EC_ERR_ARG, "prune: layer shape %lld x %lld: rows and cols must be > 0",
                       (long long)rows, (long long)cols);
    if (sp->prune_n == 0 && sp->prune_m == 0) {
        if (!(sp->ratio >= 0.0 && sp->ratio < 1.0))
            return ec_fail(d, EC_ERR_ARG, "prune: sparsity %g: must be in [0, 1)", sp->ratio);
        return EC_OK;
    }
    if (sp->prune_n <= 0 || sp->prune_m <= 0 || sp->prune_n >= sp->prune_m)
        return ec_fail(d, EC_ERR_ARG, "prune: pattern %d:%d: need 0 < N < M", sp->prune_n,
                       sp->prune_m);
    if (cols % sp->prune_m != 0)
        return ec_fail(d, EC_ERR_ARG,
                       "prune: pattern %d:%d: %lld input columns are not a multiple of %d",
                       sp->prune_n, sp->prune_m, (long long)cols, sp->prune_m);
    return EC_OK;
}

uint32_t ec_prune_order_key(float f)
{
    uint32_t u;
    if (isnan(f))
        return UINT32_MAX;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* k-th smallest (0-based) of key[0..n): quickselect, median-of-three pivot.
 * Reorders key. */
uint32_t ec_prune_kth_key(uint32_t *key, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        uint32_t a = key[lo], b = key[mid], c = key[hi];
        uint32_t pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (key[i] < pivot)
                i++;
            while (key[j] > pivot)
                j--;
            if (i <= j) {
                uint32_t t = key[i];
                key[i] = key[j];
                key[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return key[k];
    }
    return key[k];
}

struct key_idx {
    uint32_t key;
    int64_t idx;
};

static int key_idx_cmp(const void *pa, const void *pb)
{
    const struct key_idx *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return a->idx < b->idx ? -1 : (a->idx > b->idx);
}

void ec_mask_lowest_k_buf(const float *score, int64_t len, int64_t k, uint8_t *mask, void *buf)
{
    struct key_idx *ki = buf;
    memset(mask, 0, (size_t)len);
    if (k <= 0)
        return;
    for (int64_t i = 0; i < len; i++) {
        ki[i].key = ec_prune_order_key(score[i]);
        ki[i].idx = i;
    }
    qsort(ki, (size_t)len, sizeof *ki, key_idx_cmp);
    for (int64_t i = 0; i < k && i < len; i++)
        mask[ki[i].idx] = 1;
}

size_t ec_mask_lowest_k_buf_bytes(int64_t len)
{
    return sizeof(struct key_idx) * (size_t)len;
}

void ec_mask_lowest_k(const float *score, int64_t len, int64_t k, uint8_t *mask)
{
    void *buf = malloc(ec_mask_lowest_k_buf_bytes(len > 0 ? len : 1));
    if (!buf) {
        /* selection by repeated minimum: O(len*k), no memory */
        memset(mask, 0, (size_t)len);
        for (int64_t s = 0; s < k; s++) {
            int64_t best = -1;
            for (int64_t i = 0; i < len; i++)
                if (!mask[i] && (best < 0 || ec_prune_order_key(score[i]) <
                                                 ec_prune_order_key(score[best])))
                    best = i;
            if (best >= 0)
                mask[best] = 1;
        }
        return;
    }
    ec_mask_lowest_k_buf(score, len, k, mask, buf);
    free(buf);
}

void ec_mask_nm_group(const float *score, int m, int n, uint8_t *mask)
{
    /* n passes of "lowest unpicked, first on ties": m is small (4, 8) */
    for (int q = 0; q < m; q++)
        mask[q] = 0;
    for (int s = 0; s < n; s++) {
        int best = -1;
        uint32_t bk = 0;
        for (int q = 0; q < m; q++) {
            uint32_t k = ec_prune_order_key(score[q]);
            if (!mask[q] && (best < 0 || k < bk)) {
                best = q;
                bk = k;
            }
        }
        mask[best] = 1;
    }
}

void ec_mask_nm_row(const float *score, int64_t cols, int n, int m, uint8_t *mask)
{
    for (int64_t c = 0; c + m <= cols; c += m)
        ec_mask_nm_group(score + c, m, n, mask + c);
}

int64_t ec_mask_apply(float *W, const uint8_t *mask, int64_t n_elems)
{
    int64_t n = 0;
    for (int64_t i = 0; i < n_elems; i++) {
        if (mask[i]) {
            W[i] = 0.0f;
            n++;
        }
    }
    return n;
}

bool ec_nm_holds(const float *W, int64_t rows, int64_t cols, int n, int m)
{
    if (m <= 0 || cols % m != 0)
        return false;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c += m) {
            int zeros = 0;
            for (int q = 0; q < m; q++)
                zeros += W[r * cols + c + q] == 0.0f;
            if (zeros < n)
                return false;
        }
    }
    return true;
}
