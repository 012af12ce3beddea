/* quantizers/quantize_kernels.c: see quantize_kernels.h. */
#include <string.h>

#include "edgec/fp16.h"
#include "edgec/quant.h"
#include "quantizers/quantize_kernels.h"

static bool is_plain(enum ec_dtype t)
{
    return t == EC_F32 || t == EC_F16 || t == EC_BF16;
}

bool ec_qk_can_quantize(enum ec_dtype t)
{
    return is_plain(t) || ec_dtype_traits(t) != NULL;
}

bool ec_qk_can_dequantize(enum ec_dtype t)
{
    return is_plain(t) || ec_dtype_traits(t) != NULL;
}

enum ec_status ec_qk_quantize(enum ec_dtype t, const float *src, void *dst, uint64_t n_rows,
                              uint64_t n_cols, const float *imatrix, struct ec_diag *d)
{
    const uint64_t n = n_rows * n_cols;
    switch (t) {
    /* plain types ignore the imatrix, as ggml_quantize_chunk does */
    case EC_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return EC_OK;
    case EC_F16: ec_fp32_to_fp16_row(src, dst, (size_t)n); return EC_OK;
    case EC_BF16: ec_fp32_to_bf16_row(src, dst, (size_t)n); return EC_OK;
    default:
        if (n_rows > INT64_MAX || n_cols > INT64_MAX)
            return ec_fail(d, EC_ERR_NOMEM, "tensor of %llu x %llu is too large",
                           (unsigned long long)n_cols, (unsigned long long)n_rows);
        return ec_quantize_rows(t, src, dst, (int64_t)n_rows, (int64_t)n_cols, imatrix, d);
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
    default: {
        const struct ec_dtype_info *info = ec_dtype_info(t);
        if (!info || n_cols % info->block_elems != 0 || n_rows > INT64_MAX || n_cols > INT64_MAX)
            return ec_fail(d, EC_ERR_FORMAT, "rows of %llu elements are not whole %s blocks",
                           (unsigned long long)n_cols, ec_dtype_name(t));
        return ec_dequantize_rows(t, src, dst, (int64_t)n_rows, (int64_t)n_cols, d);
    }
    }
}
