/* pruners/linalg.c: Cholesky, triangular inverse, Hessian SYRK and the lazy
 * update GEMM (see linalg.h). References first, then the fast paths.
 *
 * The fast paths are plain C loops written so that the compiler can vectorise
 * them without reassociating sums (each vector lane is a different output
 * element), compiled twice: once for the baseline ISA and once with
 * __attribute__((target("avx2,fma"))), picked at run time. The Hessian SYRK,
 * which dominates calibration time, has a register-blocked 6x16 AVX2 kernel
 * on packed panels (the GotoBLAS layout).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define EC_LINALG_X86 1
#include <immintrin.h>
#endif

#include "pruners/linalg.h"
#include "src/core/cpu.h"

/* ------------------------------------------------------------------ */
/* references                                                          */

bool ec_chol_lower_ref(double *A, int64_t n, int64_t lda)
{
    for (int64_t i = 0; i < n; i++) {
        double *ai = A + i * lda;
        for (int64_t j = 0; j <= i; j++) {
            const double *aj = A + j * lda;
            double s = ai[j];
            for (int64_t p = 0; p < j; p++)
                s -= ai[p] * aj[p];
            if (j == i) {
                if (!(s > 0.0) || !isfinite(s))
                    return false;
                ai[i] = sqrt(s);
            } else {
                ai[j] = s / aj[j];
            }
        }
    }
    return true;
}

void ec_trinv_lower_ref(const double *L, int64_t n, int64_t ldl, double *X, int64_t ldx)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            X[i * ldx + j] = 0.0;
    for (int64_t j = 0; j < n; j++) {
        X[j * ldx + j] = 1.0 / L[j * ldl + j];
        for (int64_t i = j + 1; i < n; i++) {
            double s = 0.0;
            for (int64_t p = j; p < i; p++)
                s += L[i * ldl + p] * X[p * ldx + j];
            X[i * ldx + j] = -s / L[i * ldl + i];
        }
    }
}

void ec_ssyrk_upper_ref(float *C, int64_t n, const float *X, int64_t n_tok, float s, float beta)
{
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            double g = 0.0;
            for (int64_t t = 0; t < n_tok; t++) {
                float xi = s * X[t * n + i];
                float xj = s * X[t * n + j];
                g += (double)xi * (double)xj;
            }
            float c = C[i * n + j] * beta;
            C[i * n + j] = c + (float)g;
        }
    }
}

void ec_sgemm_sub_ref(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float *C, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            float acc = 0.0f;
            for (int64_t p = 0; p < k; p++)
                acc += A[i * lda + p] * B[p * ldb + j];
            C[i * ldc + j] -= acc;
        }
    }
}

/* ------------------------------------------------------------------ */
/* dispatch                                                            */

enum { LA_BASE = 0, LA_AVX2 = 1, LA_AVX512 = 2, LA_REF = 3 };

static int linalg_mode = -1;
static int linalg_cap = LA_AVX512; /* ec_linalg_set_isa */

static int linalg_get_mode(void)
{
    int m = __atomic_load_n(&linalg_mode, __ATOMIC_RELAXED);
    if (m >= 0)
        return m;
    const char *e = getenv("EDGEC_KERNELS");
    if (e && strcmp(e, "ref") == 0) {
        m = LA_REF;
    } else {
        m = LA_BASE;
#ifdef EC_LINALG_X86
        if (ec_cpu_has(EC_CPU_AVX2 | EC_CPU_FMA))
            m = LA_AVX2;
        if (m == LA_AVX2 && ec_cpu_has(EC_CPU_AVX512F))
            m = LA_AVX512;
#endif
        int cap = __atomic_load_n(&linalg_cap, __ATOMIC_RELAXED);
        if (m > cap)
            m = cap;
    }
    __atomic_store_n(&linalg_mode, m, __ATOMIC_RELAXED);
    return m;
}

bool ec_linalg_has_avx2(void)
{
    int m = linalg_get_mode();
    return m == LA_AVX2 || m == LA_AVX512;
}

int ec_linalg_isa(void)
{
    int m = linalg_get_mode();
    return m == LA_REF ? -1 : m;
}

int ec_linalg_set_isa(int level)
{
    __atomic_store_n(&linalg_cap, level < 0 ? 0 : level, __ATOMIC_RELAXED);
    __atomic_store_n(&linalg_mode, -1, __ATOMIC_RELAXED);
    return ec_linalg_isa();
}

/* ------------------------------------------------------------------ */
/* row kernels: acc[j] += a[p] * B[p][j], vectorised along j           */

#define EC_ROW_CHUNK 256 /* acc elements per chunk: 1-2 KiB, stays in L1 */

/* c[0..n) -= sum_{p<k} a[p*as] * B[p*ldb + j] (double), chunked. */
static inline __attribute__((always_inline)) void
drow_sub_body(int64_t n, int64_t k, const double *a, int64_t as, const double *B, int64_t ldb,
              double *restrict c)
{
    double acc[EC_ROW_CHUNK];
    for (int64_t j0 = 0; j0 < n; j0 += EC_ROW_CHUNK) {
        int64_t jn = n - j0 < EC_ROW_CHUNK ? n - j0 : EC_ROW_CHUNK;
        for (int64_t j = 0; j < jn; j++)
            acc[j] = 0.0;
        for (int64_t p = 0; p < k; p++) {
            const double av = a[p * as];
            const double *restrict b = B + p * ldb + j0;
            for (int64_t j = 0; j < jn; j++)
                acc[j] += av * b[j];
        }
        for (int64_t j = 0; j < jn; j++)
            c[j0 + j] -= acc[j];
    }
}

static inline __attribute__((always_inline)) void
srow_sub_body(int64_t n, int64_t k, const float *a, const float *B, int64_t ldb,
              float *restrict c, bool use_fma)
{
    float acc[EC_ROW_CHUNK];
    for (int64_t j0 = 0; j0 < n; j0 += EC_ROW_CHUNK) {
        int64_t jn = n - j0 < EC_ROW_CHUNK ? n - j0 : EC_ROW_CHUNK;
        for (int64_t j = 0; j < jn; j++)
            acc[j] = 0.0f;
        for (int64_t p = 0; p < k; p++) {
            const float av = a[p];
            const float *restrict b = B + p * ldb + j0;
            if (use_fma) {
                for (int64_t j = 0; j < jn; j++)
                    acc[j] = fmaf(av, b[j], acc[j]);
            } else {
                for (int64_t j = 0; j < jn; j++)
                    acc[j] += av * b[j];
            }
        }
        for (int64_t j = 0; j < jn; j++)
            c[j0 + j] -= acc[j];
    }
}

static void drow_sub_base(int64_t n, int64_t k, const double *a, int64_t as, const double *B,
                          int64_t ldb, double *c)
{
    drow_sub_body(n, k, a, as, B, ldb, c);
}

static void srow_sub_base(int64_t n, int64_t k, const float *a, const float *B, int64_t ldb,
                          float *c)
{
    srow_sub_body(n, k, a, B, ldb, c, false);
}

/* ------------------------------------------------------------------ */
/* register-blocked updates: C -= A B                                  */

/* C[r][j] -= sum_{p<k} A[r][p] B[p][j] for r < m and j < min(n, r + off)
 * (off = n: the whole m x n rectangle; off = 1: the lower triangle of a
 * block whose first row and column are on the diagonal). Per element the
 * order is fixed: acc = 0, acc = fma(A[r][p], B[p][j], acc) for p = 0, 1,
 * ..., then C -= acc; so every FMA kernel below (and the scalar edge code,
 * compiled with FMA) gives the same bits. Without FMA the baseline row
 * kernels (drow_sub_base, srow_sub_base) keep the same order with separate
 * multiplies and adds.
 *
 * B is first packed into panels of NR columns, [panel][k][NR] (zero padded),
 * so the micro kernels read it sequentially whatever B's row stride (the
 * inverse's B is a column block of a 5632-wide matrix: one page per row).
 * Row groups of MR run in parallel; each element is computed by one thread. */

#ifdef EC_LINALG_X86
/* edge rows or columns, on a packed panel (row stride nr) */
__attribute__((target("avx2,fma"))) static void dsub_edge_fma(int64_t k, const double *a,
                                                               const double *b, int nr,
                                                               double *c, int64_t w,
                                                               const double *cin, double *cout)
{
    double acc[16];
    for (int64_t q = 0; q < w; q++)
        acc[q] = cin ? cin[q] : 0.0;
    for (int64_t p = 0; p < k; p++) {
        const double av = a[p];
        for (int64_t q = 0; q < w; q++)
            acc[q] = fma(av, b[p * nr + q], acc[q]);
    }
    if (cout) {
        for (int64_t q = 0; q < w; q++)
            cout[q] = acc[q];
        return;
    }
    for (int64_t q = 0; q < w; q++)
        c[q] -= acc[q];
}

__attribute__((target("avx2,fma"))) static void ssub_edge_fma(int64_t k, const float *a,
                                                               const float *b, int nr, float *c,
                                                               int64_t w)
{
    float acc[32];
    for (int64_t q = 0; q < w; q++)
        acc[q] = 0.0f;
    for (int64_t p = 0; p < k; p++) {
        const float av = a[p];
        for (int64_t q = 0; q < w; q++)
            acc[q] = fmaf(av, b[p * nr + q], acc[q]);
    }
    for (int64_t q = 0; q < w; q++)
        c[q] -= acc[q];
}

/* Micro kernels: 4 rows (AVX2) or 8 rows (AVX-512) of A against one packed
 * panel of 2 vectors; row r updates its first lim[r] columns (0..2 vectors).
 * Named accumulators: GCC keeps an array of vectors on the stack. */
#define EC_ROW_FMA(set1, fmadd, x, y, ap)                                                          \
    do {                                                                                           \
        const __typeof__(b0) av = set1((ap)[p]);                                                  \
        x = fmadd(av, b0, x);                                                                      \
        y = fmadd(av, b1, y);                                                                      \
    } while (0)

/* The double kernels can also run a k range in parts with the same bits:
 * cin (the [MR][NR] tile of partial sums from the previous part, NULL for
 * the first) starts the accumulators and cout (NULL for the last part)
 * receives them instead of C. */
__attribute__((target("avx2,fma"))) static void dsub_tile_avx2(int64_t k, const double *A,
                                                                int64_t lda, const double *b,
                                                                double *C, int64_t ldc,
                                                                const double *cin, double *cout)
{
    __m256d c00 = _mm256_setzero_pd(), c01 = c00, c10 = c00, c11 = c00;
    __m256d c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    if (cin) {
        c00 = _mm256_loadu_pd(cin), c01 = _mm256_loadu_pd(cin + 4);
        c10 = _mm256_loadu_pd(cin + 8), c11 = _mm256_loadu_pd(cin + 12);
        c20 = _mm256_loadu_pd(cin + 16), c21 = _mm256_loadu_pd(cin + 20);
        c30 = _mm256_loadu_pd(cin + 24), c31 = _mm256_loadu_pd(cin + 28);
    }
    const double *A0 = A, *A1 = A + lda, *A2 = A + 2 * lda, *A3 = A + 3 * lda;
    for (int64_t p = 0; p < k; p++) {
        const __m256d b0 = _mm256_loadu_pd(b + p * 8);
        const __m256d b1 = _mm256_loadu_pd(b + p * 8 + 4);
        EC_ROW_FMA(_mm256_set1_pd, _mm256_fmadd_pd, c00, c01, A0);
        EC_ROW_FMA(_mm256_set1_pd, _mm256_fmadd_pd, c10, c11, A1);
        EC_ROW_FMA(_mm256_set1_pd, _mm256_fmadd_pd, c20, c21, A2);
        EC_ROW_FMA(_mm256_set1_pd, _mm256_fmadd_pd, c30, c31, A3);
    }
    const __m256d acc[4][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
    for (int r = 0; r < 4; r++)
        for (int v = 0; v < 2; v++) {
            if (cout) {
                _mm256_storeu_pd(cout + r * 8 + 4 * v, acc[r][v]);
                continue;
            }
            double *cr = C + r * ldc + 4 * v;
            _mm256_storeu_pd(cr, _mm256_sub_pd(_mm256_loadu_pd(cr), acc[r][v]));
        }
}

__attribute__((target("avx2,fma"))) static void ssub_tile_avx2(int64_t k, const float *A,
                                                                int64_t lda, const float *b,
                                                                float *C, int64_t ldc)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00;
    __m256 c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    const float *A0 = A, *A1 = A + lda, *A2 = A + 2 * lda, *A3 = A + 3 * lda;
    for (int64_t p = 0; p < k; p++) {
        const __m256 b0 = _mm256_loadu_ps(b + p * 16);
        const __m256 b1 = _mm256_loadu_ps(b + p * 16 + 8);
        EC_ROW_FMA(_mm256_set1_ps, _mm256_fmadd_ps, c00, c01, A0);
        EC_ROW_FMA(_mm256_set1_ps, _mm256_fmadd_ps, c10, c11, A1);
        EC_ROW_FMA(_mm256_set1_ps, _mm256_fmadd_ps, c20, c21, A2);
        EC_ROW_FMA(_mm256_set1_ps, _mm256_fmadd_ps, c30, c31, A3);
    }
    const __m256 acc[4][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
    for (int r = 0; r < 4; r++)
        for (int v = 0; v < 2; v++) {
            float *cr = C + r * ldc + 8 * v;
            _mm256_storeu_ps(cr, _mm256_sub_ps(_mm256_loadu_ps(cr), acc[r][v]));
        }
}

/* The AVX-512 tiles, double (8 x 16) and float (8 x 32), from one template:
 * T the element, V the vector, M the mask type, L lanes per vector, X the
 * intrinsics' suffix (pd / ps). */
#define EC_MASK_FIRST(M, L, w) ((M)((w) >= (L) ? (1u << (L)) - 1 : (w) <= 0 ? 0 : (1u << (w)) - 1))
#define EC_DEF_SUB_TILE_512(name, T, V, M, L, X)                                                   \
    __attribute__((target("avx512f,fma"))) static void name(                                       \
        int64_t k, const T *A, int64_t lda, const T *b, T *C, int64_t ldc, const int *lim,         \
        const T *cin, T *cout)                                                                     \
    {                                                                                              \
        V a00 = _mm512_setzero_##X(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;      \
        V a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;                        \
        V a60 = a00, a61 = a00, a70 = a00, a71 = a00;                                              \
        if (cin) {                                                                                 \
            a00 = _mm512_loadu_##X(cin), a01 = _mm512_loadu_##X(cin + (L));                       \
            a10 = _mm512_loadu_##X(cin + 2 * (L)), a11 = _mm512_loadu_##X(cin + 3 * (L));         \
            a20 = _mm512_loadu_##X(cin + 4 * (L)), a21 = _mm512_loadu_##X(cin + 5 * (L));         \
            a30 = _mm512_loadu_##X(cin + 6 * (L)), a31 = _mm512_loadu_##X(cin + 7 * (L));         \
            a40 = _mm512_loadu_##X(cin + 8 * (L)), a41 = _mm512_loadu_##X(cin + 9 * (L));         \
            a50 = _mm512_loadu_##X(cin + 10 * (L)), a51 = _mm512_loadu_##X(cin + 11 * (L));       \
            a60 = _mm512_loadu_##X(cin + 12 * (L)), a61 = _mm512_loadu_##X(cin + 13 * (L));       \
            a70 = _mm512_loadu_##X(cin + 14 * (L)), a71 = _mm512_loadu_##X(cin + 15 * (L));       \
        }                                                                                          \
        const T *A0 = A, *A1 = A + lda, *A2 = A + 2 * lda, *A3 = A + 3 * lda;                      \
        const T *A4 = A + 4 * lda, *A5 = A + 5 * lda, *A6 = A + 6 * lda, *A7 = A + 7 * lda;        \
        for (int64_t p = 0; p < k; p++) {                                                          \
            const V b0 = _mm512_loadu_##X(b + p * 2 * (L));                                       \
            const V b1 = _mm512_loadu_##X(b + p * 2 * (L) + (L));                                 \
            EC_ROW_FMA(_mm512_set1_##X, _mm512_fmadd_##X, a00, a01, A0);                           \
            EC_ROW_FMA(_mm512_set1_##X, _mm512_fmadd_##X, a10, a11, A1);                           \
            EC_ROW_FMA(_mm512_set1_##X, _mm512_fmadd_##X, a20, a21, A2);                           \
            EC_ROW_FMA(_mm512_set1_##X, _mm512_fmadd_##X, a30, a31, A3);                           \
            EC_ROW_FMA(_mm512_set1_##X, _mm512_fmadd_##X, a40, a41, A4);                           \
            EC_ROW_FMA(_mm512_set1_##X, _mm512_fmadd_##X, a50, a51, A5);                           \
            EC_ROW_FMA(_mm512_set1_##X, _mm512_fmadd_##X, a60, a61, A6);                           \
            EC_ROW_FMA(_mm512_set1_##X, _mm512_fmadd_##X, a70, a71, A7);                           \
        }                                                                                          \
        const V acc[8][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31},                       \
                             {a40, a41}, {a50, a51}, {a60, a61}, {a70, a71}};                      \
        for (int r = 0; r < 8; r++) {                                                              \
            if (cout) {                                                                            \
                _mm512_storeu_##X(cout + r * 2 * (L), acc[r][0]);                                 \
                _mm512_storeu_##X(cout + r * 2 * (L) + (L), acc[r][1]);                           \
                continue;                                                                          \
            }                                                                                      \
            const M m0 = EC_MASK_FIRST(M, L, lim[r]), m1 = EC_MASK_FIRST(M, L, lim[r] - (L));      \
            T *cr = C + r * ldc;                                                                   \
            _mm512_mask_storeu_##X(cr, m0,                                                         \
                                   _mm512_sub_##X(_mm512_maskz_loadu_##X(m0, cr), acc[r][0]));     \
            _mm512_mask_storeu_##X(                                                                \
                cr + (L), m1, _mm512_sub_##X(_mm512_maskz_loadu_##X(m1, cr + (L)), acc[r][1]));    \
        }                                                                                          \
    }
EC_DEF_SUB_TILE_512(dsub_tile_avx512, double, __m512d, __mmask8, 8, pd)
EC_DEF_SUB_TILE_512(ssub_tile_avx512, float, __m512, __mmask16, 16, ps)
#undef EC_DEF_SUB_TILE_512
#undef EC_MASK_FIRST
#undef EC_ROW_FMA
#endif

/* Pack B [k][n] (ldb) into [panel][k][nr], zero padded; inside a parallel
 * region (work-shared, implicit barrier at the end). */
#define EC_DEF_PACK(name, T)                                                                       \
    static void name(const T *B, int64_t ldb, int64_t k, int64_t n, int nr, T *dst)               \
    {                                                                                              \
        const int64_t n_pan = (n + nr - 1) / nr;                                                   \
        _Pragma("omp for schedule(static)") for (int64_t q = 0; q < n_pan; q++)                   \
        {                                                                                          \
            const int64_t j0 = q * nr, w = n - j0 < nr ? n - j0 : nr;                              \
            T *d = dst + q * k * nr;                                                               \
            for (int64_t p = 0; p < k; p++) {                                                      \
                int64_t c = 0;                                                                     \
                for (; c < w; c++)                                                                 \
                    d[p * nr + c] = B[p * ldb + j0 + c];                                           \
                for (; c < nr; c++)                                                                \
                    d[p * nr + c] = 0;                                                             \
            }                                                                                      \
        }                                                                                          \
    }
EC_DEF_PACK(dpack_b, double)
EC_DEF_PACK(spack_b, float)
#undef EC_DEF_PACK

/* k per part for long rectangles: the part's A rows and B panel stay in
 * L2 while the partial sums wait in a tile buffer (same bits, see above) */
#define EC_DGEMM_KC 512

/* Workspace for dgemm_sub's packed B (k * n rounded up to 16) and, when k
 * runs in parts, the partial-sum tiles (m and n rounded up to 16). */
static inline size_t dgemm_ws_elems(int64_t m, int64_t n, int64_t k)
{
    const size_t n16 = (size_t)((n + 15) / 16 * 16), m16 = (size_t)((m + 15) / 16 * 16);
    return (size_t)(k < EC_DGEMM_KC ? k : EC_DGEMM_KC) * n16 + (k > EC_DGEMM_KC ? m16 * n16 : 0);
}

static void dgemm_sub(int mode, int64_t m, int64_t n, int64_t k, const double *A, int64_t lda,
                      const double *B, int64_t ldb, double *C, int64_t ldc, int64_t off,
                      double *ws)
{
    if (m <= 0 || n <= 0)
        return;
#ifdef EC_LINALG_X86
    if (mode == LA_AVX2 || mode == LA_AVX512) {
        const int mr = mode == LA_AVX512 ? 8 : 4, nr = mode == LA_AVX512 ? 16 : 8;
        const int64_t n_groups = (m + mr - 1) / mr, n_pan = (n + nr - 1) / nr;
        const int64_t kc = k < EC_DGEMM_KC ? k : EC_DGEMM_KC;
        double *tiles = ws + (size_t)kc * (size_t)((n + 15) / 16 * 16);
        const bool rect = off >= n;
        const int64_t chunk = rect ? n_groups : n_pan; /* a panel, or a row group */
#pragma omp parallel
        for (int64_t p0 = 0; p0 < k || p0 == 0; p0 += kc) {
            const int64_t pk = k - p0 < kc ? k - p0 : kc;
            const bool part0 = p0 == 0, last = p0 + kc >= k;
            dpack_b(B + p0 * ldb, ldb, pk, n, nr, ws);
            /* rectangles: panel-major (a panel serves every row group while
             * it is in cache); triangles: group-major, balanced dynamically */
#pragma omp for schedule(dynamic, chunk)
            for (int64_t t = 0; t < n_groups * n_pan; t++) {
                const int64_t g = rect ? t % n_groups : t / n_pan;
                const int64_t jp = rect ? t / n_groups : t % n_pan;
                const int64_t r0 = g * mr, j = jp * nr;
                const int64_t rn = m - r0 < mr ? m - r0 : mr;
                int64_t lim[8];
                for (int64_t r = 0; r < rn; r++)
                    lim[r] = n < r0 + r + off ? n : r0 + r + off;
                if (j >= lim[rn - 1])
                    continue;
                const double *b = ws + jp * pk * nr;
                const double *a = A + r0 * lda + p0;
                double *c = C + r0 * ldc + j;
                double *tile = tiles + (g * n_pan + jp) * mr * nr;
                const double *cin = part0 ? NULL : tile;
                double *cout = last ? NULL : tile;
                if (mode == LA_AVX512 && rn == 8) {
                    int l[8];
                    for (int r = 0; r < 8; r++) {
                        int64_t w = lim[r] - j;
                        l[r] = (int)(w < 0 ? 0 : w > 16 ? 16 : w);
                    }
                    dsub_tile_avx512(pk, a, lda, b, c, ldc, l, cin, cout);
                } else if (mode == LA_AVX2 && rn == 4 && j + nr <= lim[0]) {
                    dsub_tile_avx2(pk, a, lda, b, c, ldc, cin, cout);
                } else {
                    for (int64_t r = 0; r < rn; r++) {
                        int64_t w = lim[r] - j;
                        if (w > 0)
                            dsub_edge_fma(pk, a + r * lda, b, nr, c + r * ldc, w < nr ? w : nr,
                                          cin ? cin + r * nr : NULL, cout ? cout + r * nr : NULL);
                    }
                }
            }
            if (k == 0)
                break;
        }
        return;
    }
#endif
    (void)ws;
#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t r = 0; r < m; r++) {
        int64_t w = n < r + off ? n : r + off;
        drow_sub_base(w, k, A + r * lda, 1, B, ldb, C + r * ldc);
    }
}

/* ------------------------------------------------------------------ */
/* lazy update GEMM                                                    */

/* Columns per outer chunk: the packed B[k][chunk] panel (k = blocksize =
 * 128 rows, 256 KiB) stays in L2 while all rows of C stream past it. */
#define EC_SGEMM_NC 512

void ec_sgemm_sub(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float *C, int64_t ldc)
{
    int mode = linalg_get_mode();
    if (mode == LA_REF) {
        ec_sgemm_sub_ref(m, n, k, A, lda, B, ldb, C, ldc);
        return;
    }
#ifdef EC_LINALG_X86
    float *ws = NULL;
    if ((mode == LA_AVX2 || mode == LA_AVX512) && m > 0 && n > 0 && k > 0)
        ws = malloc(sizeof(float) * (size_t)k * EC_SGEMM_NC);
    if (ws) {
        const int mr = mode == LA_AVX512 ? 8 : 4, nr = mode == LA_AVX512 ? 32 : 16;
        const int64_t n_groups = (m + mr - 1) / mr;
        for (int64_t j0 = 0; j0 < n; j0 += EC_SGEMM_NC) {
            const int64_t jn = n - j0 < EC_SGEMM_NC ? n - j0 : EC_SGEMM_NC;
#pragma omp parallel
            {
                spack_b(B + j0, ldb, k, jn, nr, ws);
#pragma omp for schedule(static)
                for (int64_t g = 0; g < n_groups; g++) {
                    const int64_t r0 = g * mr;
                    const int64_t rn = m - r0 < mr ? m - r0 : mr;
                    for (int64_t j = 0; j < jn; j += nr) {
                        const float *b = ws + (j / nr) * k * nr;
                        const int64_t w = jn - j < nr ? jn - j : nr;
                        float *c = C + r0 * ldc + j0 + j;
                        if (mode == LA_AVX512 && rn == 8) {
                            const int l[8] = {(int)w, (int)w, (int)w, (int)w,
                                              (int)w, (int)w, (int)w, (int)w};
                            ssub_tile_avx512(k, A + r0 * lda, lda, b, c, ldc, l, NULL, NULL);
                        } else if (mode == LA_AVX2 && rn == 4 && w == nr) {
                            ssub_tile_avx2(k, A + r0 * lda, lda, b, c, ldc);
                        } else {
                            for (int64_t r = 0; r < rn; r++)
                                ssub_edge_fma(k, A + (r0 + r) * lda, b, nr, c + r * ldc, w);
                        }
                    }
                }
            }
        }
        free(ws);
        return;
    }
#endif
    for (int64_t j0 = 0; j0 < n; j0 += EC_SGEMM_NC) {
        int64_t jn = n - j0 < EC_SGEMM_NC ? n - j0 : EC_SGEMM_NC;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m; i++)
            srow_sub_base(jn, k, A + i * lda, B + j0, ldb, C + i * ldc + j0);
    }
}

/* ------------------------------------------------------------------ */
/* blocked Cholesky (right-looking)                                    */

#define EC_CHOL_NB 96 /* panel width */
#define EC_CHOL_NC 256 /* trailing-update column chunk: 96x256 doubles = 192 KiB of panel */

bool ec_chol_lower(double *A, int64_t n, int64_t lda)
{
    int mode = linalg_get_mode();
    if (mode == LA_REF || n <= EC_CHOL_NB)
        return ec_chol_lower_ref(A, n, lda);
    double *pt = malloc(sizeof(double) * EC_CHOL_NB * (size_t)n);
    double *ws = malloc(sizeof(double) * dgemm_ws_elems(0, EC_CHOL_NC, EC_CHOL_NB));
    if (!pt || !ws) {
        free(pt);
        free(ws);
        return ec_chol_lower_ref(A, n, lda);
    }
    bool ok = true;
    for (int64_t k0 = 0; k0 < n && ok; k0 += EC_CHOL_NB) {
        int64_t k1 = k0 + EC_CHOL_NB < n ? k0 + EC_CHOL_NB : n;
        int64_t kb = k1 - k0;
        /* 1. the diagonal block (already updated by earlier panels) */
        for (int64_t i = k0; i < k1 && ok; i++) {
            double *ai = A + i * lda;
            for (int64_t j = k0; j <= i; j++) {
                const double *aj = A + j * lda;
                double s = ai[j];
                for (int64_t p = k0; p < j; p++)
                    s -= ai[p] * aj[p];
                if (j == i) {
                    if (!(s > 0.0) || !isfinite(s)) {
                        ok = false;
                        break;
                    }
                    ai[i] = sqrt(s);
                } else {
                    ai[j] = s / aj[j];
                }
            }
        }
        if (!ok || k1 == n)
            break;
        /* 2. the panel below it, A21 = A21 L11^-T, solved on its transpose
         * PT [kb][nt] so that the loops run along contiguous rows of A21's
         * columns (vectorised, no reassociation); PT then feeds step 3 */
        int64_t nt = n - k1;
#pragma omp parallel for schedule(static)
        for (int64_t j = 0; j < nt; j++)
            for (int64_t p = 0; p < kb; p++)
                pt[p * nt + j] = A[(k1 + j) * lda + k0 + p];
#pragma omp parallel for schedule(static)
        for (int64_t j0 = 0; j0 < nt; j0 += EC_CHOL_NC) {
            int64_t jn = nt - j0 < EC_CHOL_NC ? nt - j0 : EC_CHOL_NC;
            for (int64_t c = 0; c < kb; c++) {
                const double *lc = A + (k0 + c) * lda + k0;
                double *restrict pc = pt + c * nt + j0;
                for (int64_t p = 0; p < c; p++) {
                    const double l = lc[p];
                    const double *restrict pp = pt + p * nt + j0;
                    for (int64_t j = 0; j < jn; j++)
                        pc[j] -= l * pp[j];
                }
                const double diag = lc[c];
                for (int64_t j = 0; j < jn; j++)
                    pc[j] /= diag;
            }
        }
#pragma omp parallel for schedule(static)
        for (int64_t j = 0; j < nt; j++)
            for (int64_t p = 0; p < kb; p++)
                A[(k1 + j) * lda + k0 + p] = pt[p * nt + j];
        /* 3. trailing update A22 -= A21 A21^T (lower part), by column chunks so
         * that the chunk's panel of PT stays in L2 */
        for (int64_t j0 = k1; j0 < n; j0 += EC_CHOL_NC) {
            int64_t j1 = j0 + EC_CHOL_NC < n ? j0 + EC_CHOL_NC : n;
            dgemm_sub(mode, n - j0, j1 - j0, kb, A + j0 * lda + k0, lda, pt + (j0 - k1), nt,
                      A + j0 * lda + j0, lda, 1, ws);
        }
    }
    free(ws);
    free(pt);
    return ok;
}

/* ------------------------------------------------------------------ */
/* blocked triangular inverse (row blocks)                             */

#define EC_TRINV_NB 64

void ec_trinv_lower(const double *L, int64_t n, int64_t ldl, double *X, int64_t ldx)
{
    int mode = linalg_get_mode();
    double *ws = NULL;
    if (mode != LA_REF && n > EC_TRINV_NB)
        ws = malloc(sizeof(double) * dgemm_ws_elems(EC_TRINV_NB, EC_CHOL_NC, n));
    if (!ws) {
        ec_trinv_lower_ref(L, n, ldl, X, ldx);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        memset(X + i * ldx, 0, sizeof(double) * (size_t)n);
    /* Rows [r0, r1) of X = L^-1 from L X = I:
     *   X[i][0..r0) = -(L_RR^-1 (L[i][0..r0) X[0..r0)[0..r0)))
     * The product is the bulk of the work (rows in parallel, X's zeros above
     * the diagonal included); the small solve with L_RR runs row by row
     * inside the block, vectorised along the columns. */
    for (int64_t r0 = 0; r0 < n; r0 += EC_TRINV_NB) {
        int64_t r1 = r0 + EC_TRINV_NB < n ? r0 + EC_TRINV_NB : n;
        /* S = -(L_R,(0:r0) X(0:r0, 0:r0)) stored straight into X's rows; per
         * column chunk the p range starts at the chunk (X[p][j] = 0 for p < j) */
        for (int64_t j0 = 0; j0 < r0; j0 += EC_CHOL_NC) {
            int64_t j1 = j0 + EC_CHOL_NC < r0 ? j0 + EC_CHOL_NC : r0;
            dgemm_sub(mode, r1 - r0, j1 - j0, r0 - j0, L + r0 * ldl + j0, ldl, X + j0 * ldx + j0,
                      ldx, X + r0 * ldx + j0, ldx, j1 - j0, ws);
        }
        /* in-block forward substitution, independent per column chunk:
         * X[i][j] = (e_i + S_i - sum_{q in [r0,i)} L[i][q] X[q][j]) / L[i][i] */
#pragma omp parallel for schedule(static)
        for (int64_t j0 = 0; j0 < r1; j0 += EC_CHOL_NC) {
            int64_t j1 = j0 + EC_CHOL_NC < r1 ? j0 + EC_CHOL_NC : r1;
            for (int64_t i = r0 < j0 ? j0 : r0; i < r1; i++) {
                double *restrict xi = X + i * ldx;
                if (i >= j0 && i < j1)
                    xi[i] = 1.0;
                const double *li = L + i * ldl;
                int64_t je = i + 1 < j1 ? i + 1 : j1;
                for (int64_t q = r0; q < i; q++) {
                    const double lq = li[q];
                    const double *restrict xq = X + q * ldx;
                    for (int64_t j = j0; j < je; j++)
                        xi[j] -= lq * xq[j];
                }
                const double diag = li[i];
                for (int64_t j = j0; j < je; j++)
                    xi[j] /= diag;
            }
        }
    }
    free(ws);
}

/* ------------------------------------------------------------------ */
/* Hessian SYRK: packed panels, 6x16 (AVX2) or 8x32 (AVX-512) tiles    */

#define EC_SYRK_MR 6
#define EC_SYRK_NR 16
#define EC_SYRK_KC 256 /* tokens per packed block */
#define EC_SYRK_MC 96  /* rows per tile (16 panels of 6 or 12 of 8): 96 KiB of packed A */
#define EC_SYRK_NC 256 /* columns per tile (16 panels of 16) */

/* c[MR][NR] (ldc) = (first ? beta*c : c) + sum_p a[p][r] b[p][c], clipped to
 * mr x nr. a is [kc][MR], b is [kc][NR] (packed, zero padded). */
static void syrk_kernel_base(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                             int mr, int nr, float beta, bool first)
{
    float acc[EC_SYRK_MR][EC_SYRK_NR];
    memset(acc, 0, sizeof acc);
    for (int64_t p = 0; p < kc; p++) {
        for (int r = 0; r < EC_SYRK_MR; r++)
            for (int q = 0; q < EC_SYRK_NR; q++)
                acc[r][q] += a[p * EC_SYRK_MR + r] * b[p * EC_SYRK_NR + q];
    }
    for (int r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
        for (int q = 0; q < nr; q++) {
            float v = first ? cr[q] * beta : cr[q];
            cr[q] = v + acc[r][q];
        }
    }
}

#ifdef EC_LINALG_X86
__attribute__((target("avx2,fma"))) static void syrk_kernel_avx2(int64_t kc, const float *a,
                                                                  const float *b, float *c,
                                                                  int64_t ldc, int mr, int nr,
                                                                  float beta, bool first)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_loadu_ps(b);
        const __m256 b1 = _mm256_loadu_ps(b + 8);
        __m256 av;
        av = _mm256_broadcast_ss(a + 0);
        c00 = _mm256_fmadd_ps(av, b0, c00);
        c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(av, b0, c10);
        c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(av, b0, c20);
        c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(av, b0, c30);
        c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(av, b0, c40);
        c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(av, b0, c50);
        c51 = _mm256_fmadd_ps(av, b1, c51);
        a += EC_SYRK_MR;
        b += EC_SYRK_NR;
    }
    float acc[EC_SYRK_MR][EC_SYRK_NR];
    _mm256_storeu_ps(acc[0], c00);
    _mm256_storeu_ps(acc[0] + 8, c01);
    _mm256_storeu_ps(acc[1], c10);
    _mm256_storeu_ps(acc[1] + 8, c11);
    _mm256_storeu_ps(acc[2], c20);
    _mm256_storeu_ps(acc[2] + 8, c21);
    _mm256_storeu_ps(acc[3], c30);
    _mm256_storeu_ps(acc[3] + 8, c31);
    _mm256_storeu_ps(acc[4], c40);
    _mm256_storeu_ps(acc[4] + 8, c41);
    _mm256_storeu_ps(acc[5], c50);
    _mm256_storeu_ps(acc[5] + 8, c51);
    for (int r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
        for (int q = 0; q < nr; q++) {
            float v = first ? cr[q] * beta : cr[q];
            cr[q] = v + acc[r][q];
        }
    }
}

/* AVX-512: 8 rows x 32 columns (a is [kc][8], b is [kc][32]); per element
 * the same FMA order as the AVX2 kernel, so the same bits */
__attribute__((target("avx512f,fma"))) static void syrk_kernel_avx512(int64_t kc, const float *a,
                                                                      const float *b, float *c,
                                                                      int64_t ldc, int mr, int nr,
                                                                      float beta, bool first)
{
    /* named accumulators: GCC keeps an array of vectors on the stack */
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m512 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    __m512 a60 = a00, a61 = a00, a70 = a00, a71 = a00;
#define EC_SYRK_ROW(x, y, r)                                                                       \
    do {                                                                                           \
        const __m512 av = _mm512_set1_ps(a[r]);                                                   \
        x = _mm512_fmadd_ps(av, b0, x);                                                            \
        y = _mm512_fmadd_ps(av, b1, y);                                                            \
    } while (0)
    for (int64_t p = 0; p < kc; p++) {
        const __m512 b0 = _mm512_loadu_ps(b);
        const __m512 b1 = _mm512_loadu_ps(b + 16);
        EC_SYRK_ROW(a00, a01, 0);
        EC_SYRK_ROW(a10, a11, 1);
        EC_SYRK_ROW(a20, a21, 2);
        EC_SYRK_ROW(a30, a31, 3);
        EC_SYRK_ROW(a40, a41, 4);
        EC_SYRK_ROW(a50, a51, 5);
        EC_SYRK_ROW(a60, a61, 6);
        EC_SYRK_ROW(a70, a71, 7);
        a += 8;
        b += 32;
    }
#undef EC_SYRK_ROW
    const __m512 acc[8][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31},
                              {a40, a41}, {a50, a51}, {a60, a61}, {a70, a71}};
    const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
    const __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
    const __m512 vb = _mm512_set1_ps(beta);
    for (int r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
        __m512 v0 = _mm512_maskz_loadu_ps(m0, cr), v1 = _mm512_maskz_loadu_ps(m1, cr + 16);
        if (first) {
            v0 = _mm512_mul_ps(v0, vb);
            v1 = _mm512_mul_ps(v1, vb);
        }
        _mm512_mask_storeu_ps(cr, m0, _mm512_add_ps(v0, acc[r][0]));
        _mm512_mask_storeu_ps(cr + 16, m1, _mm512_add_ps(v1, acc[r][1]));
    }
}
#endif

/* Pack s*X[t0..t0+kc)[c0..c1) into panels of w columns, [panel][kc][w],
 * zero padded. */
static void syrk_pack(const float *X, int64_t n, int64_t t0, int64_t kc, int64_t c0, int64_t c1,
                      float s, int w, float *dst)
{
    for (int64_t pc = c0; pc < c1; pc += w) {
        float *d = dst + ((pc - c0) / w) * kc * w;
        int64_t cw = c1 - pc < w ? c1 - pc : w;
        for (int64_t p = 0; p < kc; p++) {
            const float *x = X + (t0 + p) * n + pc;
            int64_t q = 0;
            for (; q < cw; q++)
                d[p * w + q] = s * x[q];
            for (; q < w; q++)
                d[p * w + q] = 0.0f;
        }
    }
}

void ec_ssyrk_upper(float *C, int64_t n, const float *X, int64_t n_tok, float s, float beta)
{
    int mode = linalg_get_mode();
    if (mode == LA_REF) {
        ec_ssyrk_upper_ref(C, n, X, n_tok, s, beta);
        return;
    }
    if (n_tok == 0) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i; j < n; j++)
                C[i * n + j] *= beta;
        return;
    }
    /* Tiles (ti, tj) that reach the upper triangle, in one parallel loop
     * (one barrier per call: cheap when the cores are shared). Each thread
     * packs the panels of its own tile for every block of EC_SYRK_KC tokens,
     * an overhead of (MC + NC) / (MC * NC) per multiply-add. A tile belongs
     * to one thread and its token blocks run in order, so the sums do not
     * depend on the thread count. */
    /* micro tile: AVX-512 8 x 32, otherwise 6 x 16 (EC_SYRK_MC and EC_SYRK_NC
     * are multiples of both, so the packed panels fit the buffers) */
    const int MR = mode == LA_AVX512 ? 8 : EC_SYRK_MR;
    const int NR = mode == LA_AVX512 ? 32 : EC_SYRK_NR;
    const int64_t n_ti = (n + EC_SYRK_MC - 1) / EC_SYRK_MC;
    const int64_t n_tj = (n + EC_SYRK_NC - 1) / EC_SYRK_NC;
    const int64_t kc_max = n_tok < EC_SYRK_KC ? n_tok : EC_SYRK_KC;
    bool nomem = false;
#pragma omp parallel
    {
        float *pa = malloc(sizeof(float) * (size_t)(EC_SYRK_MC * kc_max));
        float *pb = malloc(sizeof(float) * (size_t)(EC_SYRK_NC * kc_max));
        if (!pa || !pb) {
#pragma omp atomic write
            nomem = true;
        }
        /* all threads see every allocation result before any tile is touched,
         * so on failure C is unchanged and the reference can take over */
#pragma omp barrier
        bool skip;
#pragma omp atomic read
        skip = nomem;
#pragma omp for schedule(dynamic, 1) collapse(2)
        for (int64_t ti = 0; ti < n_ti; ti++) {
            for (int64_t tj = 0; tj < n_tj; tj++) {
                const int64_t i0 = ti * EC_SYRK_MC;
                const int64_t i1 = i0 + EC_SYRK_MC < n ? i0 + EC_SYRK_MC : n;
                const int64_t j0 = tj * EC_SYRK_NC;
                const int64_t j1 = j0 + EC_SYRK_NC < n ? j0 + EC_SYRK_NC : n;
                if (j1 <= i0 || skip)
                    continue;
                for (int64_t t0 = 0; t0 < n_tok; t0 += EC_SYRK_KC) {
                    const int64_t kc = n_tok - t0 < EC_SYRK_KC ? n_tok - t0 : EC_SYRK_KC;
                    const bool first = t0 == 0;
                    syrk_pack(X, n, t0, kc, i0, i1, s, MR, pa);
                    syrk_pack(X, n, t0, kc, j0, j1, s, NR, pb);
                    for (int64_t jr = j0; jr < j1; jr += NR) {
                        const int nr = (int)(j1 - jr < NR ? j1 - jr : NR);
                        const float *b = pb + ((jr - j0) / NR) * kc * NR;
                        for (int64_t ir = i0; ir < i1; ir += MR) {
                            if (jr + nr <= ir)
                                break; /* this micro tile and the next are below the diagonal */
                            const int mr = (int)(i1 - ir < MR ? i1 - ir : MR);
                            const float *a = pa + ((ir - i0) / MR) * kc * MR;
                            float *c = C + ir * n + jr;
#ifdef EC_LINALG_X86
                            if (mode == LA_AVX512) {
                                syrk_kernel_avx512(kc, a, b, c, n, mr, nr, beta, first);
                                continue;
                            }
                            if (mode == LA_AVX2) {
                                syrk_kernel_avx2(kc, a, b, c, n, mr, nr, beta, first);
                                continue;
                            }
#endif
                            syrk_kernel_base(kc, a, b, c, n, mr, nr, beta, first);
                        }
                    }
                }
            }
        }
        free(pa);
        free(pb);
    }
    if (nomem)
        ec_ssyrk_upper_ref(C, n, X, n_tok, s, beta);
}
