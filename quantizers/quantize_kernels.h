/* quantizers/quantize_kernels.h: the driver's narrow view of the block
 * kernels (internal to quantizers/). Plain types (F32, F16, BF16) are
 * converted here; block types go through the kernel traits table. */
#ifndef EDGEC_QUANTIZE_KERNELS_H
#define EDGEC_QUANTIZE_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "edgec/dtype.h"
#include "edgec/status.h"

bool ec_qk_can_quantize(enum ec_dtype t);
bool ec_qk_can_dequantize(enum ec_dtype t);
/* Quantize n_rows rows of n_cols floats into dst (row bytes of type t each);
 * imatrix: n_cols importance weights or NULL. Row-parallel, deterministic. */
enum ec_status ec_qk_quantize(enum ec_dtype t, const float *src, void *dst, uint64_t n_rows,
                              uint64_t n_cols, const float *imatrix, struct ec_diag *d);
/* Dequantize n_rows rows of n_cols elements (whole blocks) of type t into dst. */
enum ec_status ec_qk_dequantize(enum ec_dtype t, const void *src, float *dst, uint64_t n_rows,
                                uint64_t n_cols, struct ec_diag *d);

#endif
