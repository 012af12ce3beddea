/* quantizers/quantize_kernels.c: see quantize_kernels.h. */
#include <string.h>

#include "edgec/fp16.h"
#include "quantizers/quantize_kernels.h"

static bool is_plain(enum ec_dtype t)
{
    return t == EC_F32 || t == EC_F16 || t == EC_BF16;
}

bool ec_qk_can_quantize(enum ec_dtype t)
{
    return is_plain(t);
}

bool ec_qk_can_dequantize(enum ec_dtype t)
{
    return is_plain(t);
}

enum ec_status ec_qk_quantize(enum ec_dtype t, const float *src, void *dst, uint64_t n_rows,
                              uint64_t n_cols, const float *imatrix, struct ec_diag *d)
{
    (void)imatrix; /* plain types ignore it, as ggml_quantize_chunk does */
    const uint64_t n = n_rows * n_cols;
    switch (t) {
    case EC_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return EC_OK;
    case EC_F16: ec_fp32_to_fp16_row(src, dst, (size_t)n); return EC_OK;
    case EC_BF16: ec_fp32_to_bf16_row(src, dst, (size_t)n); return EC_OK;
    default:
        return ec_fail(d, EC_ERR_UNSUPPORTED, "no quantizer for %s", ec_dtype_name(t));
    }
}

enum ec_status ec_qk_dequantize(enum ec_dtype t, const void *src, float *dst, uint64_t n_rows,
                                uint64_t n_cols, struct ec_diag *d)
{
    const uint64_t n = n_rows * n_cols;
    switch (t) {
    case EC_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return EC_OK;
    case EC_F16: ec_fp16_to_fp32_row(src, dst, (size_t)n); return EC_OK;
    case EC_BF16: ec_bf16_to_fp32_row(src, dst, (size_t)n); return EC_OK;
    default:
        return ec_fail(d, EC_ERR_UNSUPPORTED, "no dequantizer for %s", ec_dtype_name(t));
    }
}
