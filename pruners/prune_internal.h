/* pruners/prune_internal.h: helpers shared by the pruner files (not public). */
#ifndef EDGEC_PRUNERS_PRUNE_INTERNAL_H
#define EDGEC_PRUNERS_PRUNE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Monotone map float -> uint32 (total order: -inf < ... < -0 < +0 < ... <
 * +inf < NaN). -0 sorts before +0; the scores pruned here are >= 0. */
uint32_t ec_prune_order_key(float f);
/* k-th smallest (0-based) of key[0..n), n > k >= 0; reorders key. */
uint32_t ec_prune_kth_key(uint32_t *key, int64_t n, int64_t k);
/* ec_mask_lowest_k with caller scratch of ec_mask_lowest_k_buf_bytes(len). */
void ec_mask_lowest_k_buf(const float *score, int64_t len, int64_t k, uint8_t *mask, void *buf);
size_t ec_mask_lowest_k_buf_bytes(int64_t len);
/* The n lowest of score[0..m) (ties: lower index) -> mask[0..m). */
void ec_mask_nm_group(const float *score, int m, int n, uint8_t *mask);

#endif
