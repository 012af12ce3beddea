/* Matmul kernels of the engine: y = x W^T for F32/F16/BF16 weights.
 *
 * ec_matmul_ref is the definition: each row converted to F32, one sequential
 * float sum per output. ec_matmul_fast keeps 8 partial sums per row (the
 * compiler turns the lane loops into SIMD), works on 4 weight rows at a time
 * so that each activation load serves 4 rows, and converts F16/BF16 rows to
 * F32 once per row block rather than once per token. The row blocking is
 * fixed (independent of the thread count) and each output is produced by one
 * thread, so results are the same for any number of threads.
 */
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "edgec/engine.h"
#include "edgec/fp16.h"
#include "edgec/quant.h"

#define MM_LANES 8        /* partial sums per row */
#define MM_ROWS 4         /* rows sharing one activation load */
#define MM_BLOCK_ROWS 32  /* rows per OpenMP work item (multiple of MM_ROWS) */

/* An AVX2 clone of the hot kernel, chosen at load time (ifunc). Without FMA
 * and with -ffp-contract=off it computes exactly what the baseline does. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define EC_MM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define EC_MM_CLONES
#endif

/* Row r of w as F32: in place for F32, else converted into buf. */
static const float *row_f32(const struct ec_linear_view *w, int64_t r, float *buf)
{
    const uint8_t *src = w->data + (uint64_t)r * w->row_bytes;
    switch (w->type) {
    case EC_F32:
        return (const float *)(const void *)src;
    case EC_F16:
        for (int64_t i = 0; i < w->n_in; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            buf[i] = ec_fp16_to_fp32(h);
        }
        return buf;
    case EC_BF16:
        for (int64_t i = 0; i < w->n_in; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            buf[i] = ec_bf16_to_fp32(h);
        }
        return buf;
    default: {
        /* block-quantized: dequantize the row as llama.cpp's to_float does */
        const struct ec_dtype_traits *tr = ec_dtype_traits(w->type);
        tr->to_f32(src, buf, w->n_in);
        return buf;
    }
    }
}

enum ec_status ec_matmul_ref(const struct ec_linear_view *w, const float *x, int64_t n_tokens,
                             float *y, struct ec_diag *d)
{
    float *buf = malloc((size_t)(w->n_in > 0 ? w->n_in : 1) * sizeof *buf);
    if (!buf)
        return ec_fail(d, EC_ERR_NOMEM, "matmul: cannot allocate a row of %lld floats",
                       (long long)w->n_in);
    for (int64_t r = 0; r < w->n_out; r++) {
        const float *wr = row_f32(w, r, buf);
        for (int64_t t = 0; t < n_tokens; t++) {
            const float *xt = x + t * w->n_in;
            float s = 0.0f;
            for (int64_t i = 0; i < w->n_in; i++)
                s += wr[i] * xt[i];
            y[t * w->n_out + r] = s;
        }
    }
    free(buf);
    return EC_OK;
}

/* 8 partial sums as a GCC/Clang vector: the lanes are explicit in the source,
 * so the compiler maps them to SSE (2 x 4) or AVX (1 x 8) without changing
 * the arithmetic. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float ec_v8f __attribute__((vector_size(32)));

static inline ec_v8f load8(const float *p)
{
    ec_v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Fixed combination of the lanes: pairwise, independent of the ISA. */
static inline float lanes_sum(ec_v8f a)
{
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

EC_MM_CLONES
static void dot_rows4(const float *restrict w0, const float *restrict w1,
                      const float *restrict w2, const float *restrict w3,
                      const float *restrict x, int64_t n, float *restrict out)
{
    ec_v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    int64_t i = 0;
    for (; i + MM_LANES <= n; i += MM_LANES) {
        const ec_v8f xv = load8(x + i);
        a0 += load8(w0 + i) * xv;
        a1 += load8(w1 + i) * xv;
        a2 += load8(w2 + i) * xv;
        a3 += load8(w3 + i) * xv;
    }
    float s0 = lanes_sum(a0), s1 = lanes_sum(a1), s2 = lanes_sum(a2), s3 = lanes_sum(a3);
    for (; i < n; i++) {
        s0 += w0[i] * x[i];
        s1 += w1[i] * x[i];
        s2 += w2[i] * x[i];
        s3 += w3[i] * x[i];
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

/* Same arithmetic as one row of dot_rows4. */
static float dot_row1(const float *restrict w0, const float *restrict x, int64_t n)
{
    ec_v8f a0 = {0};
    int64_t i = 0;
    for (; i + MM_LANES <= n; i += MM_LANES)
        a0 += load8(w0 + i) * load8(x + i);
    float s0 = lanes_sum(a0);
    for (; i < n; i++)
        s0 += w0[i] * x[i];
    return s0;
}

static void block_rows(const struct ec_linear_view *w, const float *x, int64_t n_tokens,
                       float *y, int64_t r0, int64_t r1, float *buf)
{
    const int64_t n = w->n_in;
    const float *rows[MM_BLOCK_ROWS];
    for (int64_t r = r0; r < r1; r++)
        rows[r - r0] = row_f32(w, r, buf + (r - r0) * n);
    int64_t r = r0;
    for (; r + MM_ROWS <= r1; r += MM_ROWS) {
        const float *const *wr = rows + (r - r0);
        for (int64_t t = 0; t < n_tokens; t++) {
            float out[MM_ROWS];
            dot_rows4(wr[0], wr[1], wr[2], wr[3], x + t * n, n, out);
            float *yt = y + t * w->n_out + r;
            yt[0] = out[0];
            yt[1] = out[1];
            yt[2] = out[2];
            yt[3] = out[3];
        }
    }
    for (; r < r1; r++)
        for (int64_t t = 0; t < n_tokens; t++)
            y[t * w->n_out + r] = dot_row1(rows[r - r0], x + t * n, n);
}

enum ec_status ec_matmul_fast(const struct ec_linear_view *w, const float *x, int64_t n_tokens,
                              float *y, int n_threads, struct ec_diag *d)
{
    const int64_t n_blocks = (w->n_out + MM_BLOCK_ROWS - 1) / MM_BLOCK_ROWS;
    int nt = 1;
#ifdef _OPENMP
    nt = n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    (void)n_threads;
#endif
    if (nt > n_blocks)
        nt = (int)(n_blocks > 0 ? n_blocks : 1);
    /* scratch for converted rows, one slice per thread */
    const size_t slice = w->type == EC_F32 ? 0 : (size_t)MM_BLOCK_ROWS * (size_t)w->n_in;
    float *scratch = NULL;
    if (slice) {
        scratch = malloc((size_t)nt * slice * sizeof *scratch);
        if (!scratch)
            return ec_fail(d, EC_ERR_NOMEM, "matmul: cannot allocate %d x %zu floats of scratch",
                           nt, slice);
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *buf = scratch ? scratch + (size_t)tid * slice : NULL;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t b = 0; b < n_blocks; b++) {
            int64_t r0 = b * MM_BLOCK_ROWS;
            int64_t r1 = r0 + MM_BLOCK_ROWS < w->n_out ? r0 + MM_BLOCK_ROWS : w->n_out;
            block_rows(w, x, n_tokens, y, r0, r1, buf);
        }
    }
    free(scratch);
    return EC_OK;
}
