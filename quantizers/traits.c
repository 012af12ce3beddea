/* quantizers/traits.c: the kernel table and the row-parallel drivers.
 *
 * One designated-initializer row per type with kernels; sizes live in
 * src/core/dtype.c (ec_dtype_info) and are not repeated here. The drivers
 * reproduce ggml_quantize_chunk: each row is quantized independently, so
 * splitting rows into fixed chunks across threads cannot change a byte.
 */
#include <stdlib.h>
#include <string.h>

#include "edgec/fp16.h"
#include "edgec/quant.h"

/* ---- plain types: F32 copy, F16 and BF16 via the scalar converters ---- */

static void f32_to_f32(const void *src, float *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f32_from_f32(const float *src, void *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_to_f32(const void *src, float *dst, int64_t n)
{
    ec_fp16_bytes_to_fp32_row(src, dst, (size_t)n);
}

static void f16_from_f32(const float *src, void *dst, int64_t n)
{
    ec_fp32_to_fp16_row(src, dst, (size_t)n);
}

static void bf16_to_f32(const void *src, float *dst, int64_t n)
{
    ec_bf16_bytes_to_fp32_row(src, dst, (size_t)n);
}

static void bf16_from_f32(const float *src, void *dst, int64_t n)
{
    ec_fp32_to_bf16_row(src, dst, (size_t)n);
}

/* The plain types ignore importance weights (as ggml_quantize_chunk does). */
static void f32_from_f32_imat(const float *src, void *dst, int64_t n, const float *w)
{
    (void)w;
    f32_from_f32(src, dst, n);
}

static void f16_from_f32_imat(const float *src, void *dst, int64_t n, const float *w)
{
    (void)w;
    f16_from_f32(src, dst, n);
}

static void bf16_from_f32_imat(const float *src, void *dst, int64_t n, const float *w)
{
    (void)w;
    bf16_from_f32(src, dst, n);
}

/* the fields every block type has: reference kernels, exact */
#define QROW_REF(T, t)                                                                             \
    .type = EC_##T, .to_f32 = ec_##t##_dequantize_row_ref,                                         \
    .from_f32_ref = ec_##t##_quantize_row_ref,                                                     \
    .from_f32_imat = ec_##t##_quantize_row_imat_ref, .tol = 0.0f
#define QROW(T, t) [EC_##T] = {QROW_REF(T, t)}
/* with fast paths (ec_<t>_quantize_row_fast and _imat_fast) */
#define QROW_FAST(T, t)                                                                            \
    [EC_##T] = {QROW_REF(T, t), .from_f32_fast = ec_##t##_quantize_row_fast,                       \
                .from_f32_imat_fast = ec_##t##_quantize_row_imat_fast}

static const struct ec_dtype_traits traits_table[EC_GGML_TYPE_COUNT] = {
    [EC_F32] = {.type = EC_F32,
                .to_f32 = f32_to_f32,
                .from_f32_ref = f32_from_f32,
                .from_f32_imat = f32_from_f32_imat,
                .tol = 0.0f},
    [EC_F16] = {.type = EC_F16,
                .to_f32 = f16_to_f32,
                .from_f32_ref = f16_from_f32,
                .from_f32_imat = f16_from_f32_imat,
                .tol = 0.0f},
    [EC_BF16] = {.type = EC_BF16,
                 .to_f32 = bf16_to_f32,
                 .from_f32_ref = bf16_from_f32,
                 .from_f32_imat = bf16_from_f32_imat,
                 .tol = 0.0f},
    QROW(Q4_0, q4_0),
    QROW(Q4_1, q4_1),
    QROW(Q5_0, q5_0),
    QROW(Q5_1, q5_1),
    QROW_FAST(Q8_0, q8_0),
    QROW_FAST(Q2_K, q2_k),
    /* Q3_K: only the importance-weighted search has a fast path */
    [EC_Q3_K] = {QROW_REF(Q3_K, q3_k), .from_f32_imat_fast = ec_q3_k_quantize_row_imat_fast},
    QROW_FAST(Q4_K, q4_k),
    QROW_FAST(Q5_K, q5_k),
    QROW_FAST(Q6_K, q6_k),
    QROW(IQ4_NL, iq4_nl),
    QROW(IQ4_XS, iq4_xs),
};

const struct ec_dtype_traits *ec_dtype_traits(enum ec_dtype t)
{
    if ((unsigned)t >= EC_GGML_TYPE_COUNT)
        return NULL;
    const struct ec_dtype_traits *tr = &traits_table[t];
    return tr->to_f32 ? tr : NULL;
}

int ec_dtype_traits_list(enum ec_dtype *out, int cap)
{
    int count = 0;
    for (unsigned t = 0; t < EC_GGML_TYPE_COUNT; t++) {
        if (!traits_table[t].to_f32)
            continue;
        if (out && count < cap)
            out[count] = (enum ec_dtype)t;
        count++;
    }
    return count;
}

/* ---- drivers ---- */

/* Rows per OpenMP work item: fixed, so the partition never depends on the
 * thread count (it would not change the bytes anyway: rows are independent). */
#define ROWS_PER_CHUNK 16

static enum ec_status check_args(const char *what, enum ec_dtype t, const void *src,
                                 const void *dst, int64_t n_rows, int64_t n_per_row,
                                 const struct ec_dtype_traits **tr, size_t *row_bytes,
                                 struct ec_diag *d)
{
    const struct ec_dtype_info *info = ec_dtype_info(t);
    *tr = ec_dtype_traits(t);
    if (!info || !*tr)
        return ec_fail(d, EC_ERR_UNSUPPORTED, "%s: type '%s' (%d) has no kernels", what,
                       ec_dtype_name(t), (int)t);
    if (n_rows < 0 || n_per_row <= 0)
        return ec_fail(d, EC_ERR_ARG, "%s: type '%s': bad shape %lld rows x %lld per row", what,
                       info->name, (long long)n_rows, (long long)n_per_row);
    if (n_per_row % info->block_elems)
        return ec_fail(d, EC_ERR_ARG,
                       "%s: type '%s': row length %lld is not a multiple of the block (%u)", what,
                       info->name, (long long)n_per_row, info->block_elems);
    *row_bytes = ec_dtype_row_bytes(t, (uint64_t)n_per_row);
    if (*row_bytes == 0 || (n_rows > 0 && (uint64_t)n_rows > SIZE_MAX / *row_bytes) ||
        (uint64_t)n_per_row > SIZE_MAX / sizeof(float) / (n_rows > 0 ? (uint64_t)n_rows : 1))
        return ec_fail(d, EC_ERR_NOMEM, "%s: type '%s': %lld x %lld elements overflow size_t", what,
                       info->name, (long long)n_rows, (long long)n_per_row);
    if (n_rows > 0 && (!src || !dst))
        return ec_fail(d, EC_ERR_ARG, "%s: type '%s': NULL buffer", what, info->name);
    return EC_OK;
}

enum ec_status ec_quantize_rows(enum ec_dtype t, const float *src, void *dst, int64_t n_rows,
                                int64_t n_per_row, const float *imatrix, struct ec_diag *d)
{
    const struct ec_dtype_traits *tr;
    size_t row_bytes;
    enum ec_status st = check_args("quantize", t, src, dst, n_rows, n_per_row, &tr, &row_bytes, d);
    if (st != EC_OK)
        return st;
    const int64_t n_chunks = (n_rows + ROWS_PER_CHUNK - 1) / ROWS_PER_CHUNK;
    uint8_t *out = dst;
    /* EDGEC_KERNELS=ref runs the scalar references (same bytes, slower) */
    const char *kern = getenv("EDGEC_KERNELS");
    const bool ref = kern && strcmp(kern, "ref") == 0;
    const ec_from_f32_fn row = tr->from_f32_fast && !ref ? tr->from_f32_fast : tr->from_f32_ref;
    const ec_from_f32_imat_fn row_imat =
        tr->from_f32_imat_fast && !ref ? tr->from_f32_imat_fast : tr->from_f32_imat;

#pragma omp parallel for schedule(static) if (n_rows > ROWS_PER_CHUNK)
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t r1 = (c + 1) * ROWS_PER_CHUNK < n_rows ? (c + 1) * ROWS_PER_CHUNK : n_rows;
        for (int64_t r = c * ROWS_PER_CHUNK; r < r1; r++) {
            const float *x = src + r * n_per_row;
            uint8_t *y = out + (size_t)r * row_bytes;
            if (imatrix)
                row_imat(x, y, n_per_row, imatrix);
            else
                row(x, y, n_per_row);
        }
    }
    return EC_OK;
}

enum ec_status ec_dequantize_rows(enum ec_dtype t, const void *src, float *dst, int64_t n_rows,
                                  int64_t n_per_row, struct ec_diag *d)
{
    const struct ec_dtype_traits *tr;
    size_t row_bytes;
    enum ec_status st =
        check_args("dequantize", t, src, dst, n_rows, n_per_row, &tr, &row_bytes, d);
    if (st != EC_OK)
        return st;
    const int64_t n_chunks = (n_rows + ROWS_PER_CHUNK - 1) / ROWS_PER_CHUNK;
    const uint8_t *in = src;

#pragma omp parallel for schedule(static) if (n_rows > ROWS_PER_CHUNK)
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t r1 = (c + 1) * ROWS_PER_CHUNK < n_rows ? (c + 1) * ROWS_PER_CHUNK : n_rows;
        for (int64_t r = c * ROWS_PER_CHUNK; r < r1; r++)
            tr->to_f32(in + (size_t)r * row_bytes, dst + r * n_per_row, n_per_row);
    }
    return EC_OK;
}
