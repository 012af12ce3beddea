/* Matmul kernels of the engine: y = x W^T for F32/F16/BF16 weights.
 *
 * ec_matmul_ref is the definition: each row converted to F32, one sequential
 * float sum per output. ec_matmul_fast keeps 8 partial sums per row (the
 * compiler turns the lane loops into SIMD), works on 4 weight rows at a time
 * so that each activation load serves 4 rows, and converts F16/BF16 rows to
 * F32 once per row block rather than once per token. The row blocking is
 * fixed (independent of the thread count) and each output is produced by one
 * thread, so results are the same for any number of threads. The AVX-512
 * level takes llama.cpp's AVX-512 order per output (tinyBLAS for rows of a
 * multiple of 16, ggml_vec_dot_f32 otherwise; test_engine spells both out);
 * the AVX2 level keeps 8 lanes of its own.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "edgec/engine.h"
#include "edgec/fp16.h"
#include "edgec/quant.h"
#include "src/core/clones.h"
#include "src/core/cpu.h"

#define MM_LANES 8        /* partial sums per row */
#define MM_ROWS 4         /* rows sharing one activation load */
#define MM_BLOCK_ROWS 32  /* rows per OpenMP work item (multiple of MM_ROWS) */


/* Row r of w as F32: in place for F32, else converted into buf. */
static const float *row_f32(const struct ec_linear_view *w, int64_t r, float *buf)
{
    const uint8_t *src = w->data + (uint64_t)r * w->row_bytes;
    switch (w->type) {
    case EC_F32:
        return (const float *)(const void *)src;
    case EC_F16:
        ec_fp16_bytes_to_fp32_row(src, buf, (size_t)w->n_in);
        return buf;
    case EC_BF16:
        ec_bf16_bytes_to_fp32_row(src, buf, (size_t)w->n_in);
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

/* an AVX2 clone: without FMA it computes exactly what the baseline does */
EC_AVX2_CLONES
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

/* ---- register-tiled FMA kernels (x86-64, chosen at run time) ----
 *
 * A tile computes NR weight rows x NT tokens at once: per step of the inner
 * dimension it loads NR row vectors and NT token vectors and issues NR x NT
 * fused multiply-adds into accumulators that stay in registers, so the loads
 * no longer bound the loop. AVX2 uses 2 x 6 tiles (12 of 16 ymm registers as
 * accumulators), AVX-512 4 x 6 (24 of 32 zmm, walking long rows in k-chunks
 * with the lane sums carried, so the chunking keeps the bits). Each output is still one
 * thread's fixed-order sum (lanes, then a fixed reduction, then the tail),
 * so results do not depend on the thread count; they differ from the
 * portable kernel by FMA's single rounding and the lane count, within the
 * bound the tests check (n_in x eps x sum |w x|). */
#if defined(__x86_64__) && defined(__GNUC__)
#define EC_MM_X86 1
#include <immintrin.h>

#include "src/engine/simd_sum.h"
#endif

static int mm_isa = -1; /* 0 portable, 1 AVX2+FMA, 2 AVX-512F */

static int cpu_isa(void)
{
    int m = 0;
#ifdef EC_MM_X86
    if (ec_cpu_has(EC_CPU_AVX2 | EC_CPU_FMA))
        m = 1;
    if (m == 1 && ec_cpu_has(EC_CPU_AVX512F))
        m = 2;
#endif
    return m;
}

static int get_isa(void)
{
    int m = __atomic_load_n(&mm_isa, __ATOMIC_RELAXED);
    if (m < 0) {
        m = cpu_isa();
        __atomic_store_n(&mm_isa, m, __ATOMIC_RELAXED);
    }
    return m;
}

int ec_matmul_set_isa(int max_level)
{
    int m = cpu_isa();
    if (max_level >= 0 && max_level < m)
        m = max_level;
    __atomic_store_n(&mm_isa, m, __ATOMIC_RELAXED);
    return m;
}

#ifdef EC_MM_X86
#define AVX2_FN __attribute__((target("avx2,fma")))
#define AVX2_IN __attribute__((target("avx2,fma"), always_inline)) static inline
#define AVX512_FN __attribute__((target("avx512f,avx2,fma")))
#define AVX512_IN __attribute__((target("avx512f,avx2,fma"), always_inline)) static inline

/* out[t * ldo + r] = w[r] . x[t * ldx] for r < NR, t < NT */
AVX2_IN void tile_avx2(const float *const *w, const int NR, const float *x, int64_t ldx,
                       const int NT, int64_t n, float *out, int64_t ldo)
{
    __m256 acc[2][6];
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++)
            acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv[2];
        for (int r = 0; r < NR; r++)
            wv[r] = _mm256_loadu_ps(w[r] + i);
        for (int t = 0; t < NT; t++) {
            const __m256 xv = _mm256_loadu_ps(x + t * ldx + i);
            for (int r = 0; r < NR; r++)
                acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) {
            float s = ec_hsum256(acc[r][t]);
            for (int64_t k = i; k < n; k++)
                s = fmaf(w[r][k], x[t * ldx + k], s);
            out[t * ldo + r] = s;
        }
}

AVX2_FN static void rows_avx2(const float *const *wr, int64_t nrows, const float *x,
                              int64_t n_tokens, int64_t n, float *y, int64_t ldo)
{
    /* token groups outer, as rows_avx512 */
    const int64_t r2 = nrows - nrows % 2;
    int64_t t = 0;
    for (; t + 6 <= n_tokens; t += 6)
        for (int64_t r = 0; r < r2; r += 2)
            tile_avx2(wr + r, 2, x + t * n, n, 6, n, y + t * ldo + r, ldo);
    for (; t < n_tokens; t++)
        for (int64_t r = 0; r < r2; r += 2)
            tile_avx2(wr + r, 2, x + t * n, n, 1, n, y + t * ldo + r, ldo);
    for (int64_t r = r2; r < nrows; r++) {
        for (t = 0; t + 6 <= n_tokens; t += 6)
            tile_avx2(wr + r, 1, x + t * n, n, 6, n, y + t * ldo + r, ldo);
        for (; t < n_tokens; t++)
            tile_avx2(wr + r, 1, x + t * n, n, 1, n, y + t * ldo + r, ldo);
    }
}

/* One k-chunk [k0, k1) of an NR x NT tile (n a multiple of 16: llamafile's
 * tinyBLAS order). The 16-lane partial sums are carried between chunks in
 * acc_buf (NT x NR x 16 floats), so every lane sees the same fused
 * multiply-adds in the same order as one pass over the whole row would give:
 * the chunking changes where the data is, not the bits. On the last chunk
 * the lanes are reduced (ec_hsum512: _mm512_reduce_add_ps's tree) and the
 * results are written. */
AVX512_IN void tile_avx512(const float *const *w, const int NR, const float *x, int64_t ldx,
                           const int NT, int64_t k0, int64_t k1, int64_t n, float *acc_buf,
                           float *out, int64_t ldo)
{
    __m512 acc[4][6];
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++)
            acc[r][t] = k0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(acc_buf + 16 * (t * NR + r));
    for (int64_t i = k0; i < k1; i += 16) {
        __m512 wv[4];
        for (int r = 0; r < NR; r++)
            wv[r] = _mm512_loadu_ps(w[r] + i);
        for (int t = 0; t < NT; t++) {
            const __m512 xv = _mm512_loadu_ps(x + t * ldx + i);
            for (int r = 0; r < NR; r++)
                acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    if (k1 < n) {
        for (int r = 0; r < NR; r++)
            for (int t = 0; t < NT; t++)
                _mm512_storeu_ps(acc_buf + 16 * (t * NR + r), acc[r][t]);
        return;
    }
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++)
            out[t * ldo + r] = ec_hsum512(acc[r][t]);
}

/* Rows whose length is not a multiple of 16: llamafile's tinyBLAS declines
 * them and ggml_vec_dot_f32 runs instead, so this is its order: four 16-lane
 * accumulators over 64-element steps, (a0 + a2) + (a1 + a3), the lanes' tree
 * sum, then the remaining products (float) added in double. */
AVX512_IN float dot_vecdot512(const float *w, const float *x, int64_t n)
{
    const int64_t np = n & ~(int64_t)63;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < np; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    double s = ec_hsum512(_mm512_add_ps(_mm512_add_ps(a0, a2), _mm512_add_ps(a1, a3)));
    for (int64_t i = np; i < n; i++)
        s += (double)(w[i] * x[i]);
    return (float)s;
}

AVX512_FN static void rows_vecdot512(const float *const *wr, int64_t nrows, const float *x,
                                     int64_t n_tokens, int64_t n, float *y, int64_t ldo)
{
    for (int64_t t = 0; t < n_tokens; t++)
        for (int64_t r = 0; r < nrows; r++)
            y[t * ldo + r] = dot_vecdot512(wr[r], x + t * n, n);
}

/* k-chunk length: six tokens' chunks (6 x 2 KB) stay in L1 while the block's
 * rows stream from L2; without chunking a long row (n = 5632: 22 KB per
 * token) pushed the tokens out of L1 and both operands came from L2 */
#define MM_KC 1024

#define T512(NR, NT)                                                                           \
    tile_avx512(wr + r, NR, x + t * n, n, NT, k0, k1, n, acc_buf + (r * NT) * 16,              \
                y + t * ldo + r, ldo)
AVX512_FN static void rows_avx512(const float *const *wr, int64_t nrows, const float *x,
                                  int64_t n_tokens, int64_t n, float *y, int64_t ldo)
{
    /* token groups outer, then k-chunks, then the block's rows: a group's
     * activations for one chunk stay in L1 while the rows pass by */
    float acc_buf[MM_BLOCK_ROWS * 6 * 16];
    const int64_t r4 = nrows - nrows % 4; /* n % 16 == 0 here */
    int64_t t = 0;
    for (int64_t nt = 6; nt >= 1; nt = nt == 6 ? 2 : nt - 1) {
        for (; t + nt <= n_tokens; t += nt) {
            int64_t k0 = 0;
            do {
                const int64_t k1 = n - k0 > MM_KC ? k0 + MM_KC : n;
                for (int64_t r = 0; r < r4; r += 4) {
                    if (nt == 6)
                        T512(4, 6);
                    else if (nt == 2)
                        T512(4, 2);
                    else
                        T512(4, 1);
                }
                for (int64_t r = r4; r < nrows; r++) {
                    if (nt == 6)
                        T512(1, 6);
                    else if (nt == 2)
                        T512(1, 2);
                    else
                        T512(1, 1);
                }
                k0 = k1;
            } while (k0 < n);
        }
    }
}
#undef T512
#endif /* EC_MM_X86 */

static void block_rows(const struct ec_linear_view *w, const float *x, int64_t n_tokens,
                       float *y, int64_t r0, int64_t r1, float *buf, int64_t ldb)
{
    const int64_t n = w->n_in;
    const float *rows[MM_BLOCK_ROWS];
    for (int64_t r = r0; r < r1; r++) {
        rows[r - r0] = row_f32(w, r, buf + (r - r0) * ldb);
        if (w->type == EC_F32 && buf) /* misaligned F32 rows: an aligned copy */
            rows[r - r0] = memcpy(buf + (r - r0) * ldb, rows[r - r0], (size_t)n * sizeof(float));
    }
#ifdef EC_MM_X86
    const int isa = get_isa();
    if (isa == 2 && n % 16 != 0) {
        rows_vecdot512(rows, r1 - r0, x, n_tokens, n, y + r0, w->n_out);
        return;
    }
    if (isa == 2) {
        rows_avx512(rows, r1 - r0, x, n_tokens, n, y + r0, w->n_out);
        return;
    }
    if (isa == 1) {
        rows_avx2(rows, r1 - r0, x, n_tokens, n, y + r0, w->n_out);
        return;
    }
#endif
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
    /* scratch for converted rows, one slice per thread, rows 64-byte aligned
     * (ldb floats apart); F32 rows are used in place unless a row would start
     * off a 64-byte boundary (GGUF aligns tensors to 32 bytes), where the
     * tiles' 512-bit loads would split cache lines: those are copied */
    const int64_t ldb = (w->n_in + 15) / 16 * 16;
    const bool f32_in_place = w->type == EC_F32 && (uintptr_t)w->data % 64 == 0 &&
                              w->row_bytes % 64 == 0;
    const size_t slice = f32_in_place ? 0 : (size_t)MM_BLOCK_ROWS * (size_t)ldb;
    float *scratch = NULL;
    if (slice) {
        scratch = aligned_alloc(64, (size_t)nt * slice * sizeof *scratch);
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
            block_rows(w, x, n_tokens, y, r0, r1, buf, ldb);
        }
    }
    free(scratch);
    return EC_OK;
}
