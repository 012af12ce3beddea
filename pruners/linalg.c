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

static int linalg_mode = -1; /* 0 baseline, 1 avx2+fma, 2 forced reference */

static int linalg_get_mode(void)
{
    int m = __atomic_load_n(&linalg_mode, __ATOMIC_RELAXED);
    if (m >= 0)
        return m;
    const char *e = getenv("EDGEC_KERNELS");
    if (e && strcmp(e, "ref") == 0) {
        m = 2;
    } else {
        m = 0;
#ifdef EC_LINALG_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            m = 1;
#endif
    }
    __atomic_store_n(&linalg_mode, m, __ATOMIC_RELAXED);
    return m;
}

bool ec_linalg_has_avx2(void)
{
    return linalg_get_mode() == 1;
}

void ec_linalg_allow_avx2(bool allow)
{
    __atomic_store_n(&linalg_mode, -1, __ATOMIC_RELAXED);
    int m = linalg_get_mode();
    if (!allow && m == 1)
        __atomic_store_n(&linalg_mode, 0, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ */
/* row kernels: acc[j] += a[p] * B[p][j], vectorised along j           */

#define EC_ROW_CHUNK 256 /* acc elements per chunk: 1-2 KiB, stays in L1 */

/* c[0..n) -= sum_{p<k} a[p*as] * B[p*ldb + j] (double), chunked. */
static inline __attribute__((always_inline)) void
drow_sub_body(int64_t n, int64_t k, const double *a, int64_t as, const double *B, int64_t ldb,
              double *restrict c, bool use_fma)
{
    double acc[EC_ROW_CHUNK];
    for (int64_t j0 = 0; j0 < n; j0 += EC_ROW_CHUNK) {
        int64_t jn = n - j0 < EC_ROW_CHUNK ? n - j0 : EC_ROW_CHUNK;
        for (int64_t j = 0; j < jn; j++)
            acc[j] = 0.0;
        for (int64_t p = 0; p < k; p++) {
            const double av = a[p * as];
            const double *restrict b = B + p * ldb + j0;
            if (use_fma) {
                for (int64_t j = 0; j < jn; j++)
                    acc[j] = fma(av, b[j], acc[j]);
            } else {
                for (int64_t j = 0; j < jn; j++)
                    acc[j] += av * b[j];
            }
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
    drow_sub_body(n, k, a, as, B, ldb, c, false);
}

static void srow_sub_base(int64_t n, int64_t k, const float *a, const float *B, int64_t ldb,
                          float *c)
{
    srow_sub_body(n, k, a, B, ldb, c, false);
}

#ifdef EC_LINALG_X86
__attribute__((target("avx2,fma"))) static void drow_sub_avx2(int64_t n, int64_t k,
                                                               const double *a, int64_t as,
                                                               const double *B, int64_t ldb,
                                                               double *c)
{
    drow_sub_body(n, k, a, as, B, ldb, c, true);
}

__attribute__((target("avx2,fma"))) static void srow_sub_avx2(int64_t n, int64_t k,
                                                               const float *a, const float *B,
                                                               int64_t ldb, float *c)
{
    srow_sub_body(n, k, a, B, ldb, c, true);
}
#endif

static void drow_sub(int avx2, int64_t n, int64_t k, const double *a, int64_t as, const double *B,
                     int64_t ldb, double *c)
{
#ifdef EC_LINALG_X86
    if (avx2) {
        drow_sub_avx2(n, k, a, as, B, ldb, c);
        return;
    }
#endif
    drow_sub_base(n, k, a, as, B, ldb, c);
}

static void srow_sub(int avx2, int64_t n, int64_t k, const float *a, const float *B, int64_t ldb,
                     float *c)
{
#ifdef EC_LINALG_X86
    if (avx2) {
        srow_sub_avx2(n, k, a, B, ldb, c);
        return;
    }
#endif
    srow_sub_base(n, k, a, B, ldb, c);
}

/* ------------------------------------------------------------------ */
/* lazy update GEMM                                                    */

/* Columns per outer chunk: the B[k][chunk] panel (k = blocksize = 128 rows)
 * stays in L2 while all rows of C stream past it. */
#define EC_SGEMM_NC 512

void ec_sgemm_sub(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float *C, int64_t ldc)
{
    int mode = linalg_get_mode();
    if (mode == 2) {
        ec_sgemm_sub_ref(m, n, k, A, lda, B, ldb, C, ldc);
        return;
    }
    int avx2 = mode == 1;
    for (int64_t j0 = 0; j0 < n; j0 += EC_SGEMM_NC) {
        int64_t jn = n - j0 < EC_SGEMM_NC ? n - j0 : EC_SGEMM_NC;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < m; i++)
            srow_sub(avx2, jn, k, A + i * lda, B + j0, ldb, C + i * ldc + j0);
    }
}

/* ------------------------------------------------------------------ */
/* blocked Cholesky (right-looking)                                    */

#define EC_CHOL_NB 96 /* panel width */
#define EC_CHOL_NC 256 /* trailing-update column chunk: 96x256 doubles = 192 KiB of panel */

bool ec_chol_lower(double *A, int64_t n, int64_t lda)
{
    int mode = linalg_get_mode();
    if (mode == 2 || n <= EC_CHOL_NB)
        return ec_chol_lower_ref(A, n, lda);
    int avx2 = mode == 1;
    double *pt = malloc(sizeof(double) * EC_CHOL_NB * (size_t)n);
    if (!pt)
        return ec_chol_lower_ref(A, n, lda);
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
        /* 3. trailing update A22 -= A21 A21^T (lower part) */
        for (int64_t j0 = k1; j0 < n; j0 += EC_CHOL_NC) {
            int64_t j1 = j0 + EC_CHOL_NC < n ? j0 + EC_CHOL_NC : n;
#pragma omp parallel for schedule(static)
            for (int64_t i = j0; i < n; i++) {
                int64_t je = i + 1 < j1 ? i + 1 : j1;
                drow_sub(avx2, je - j0, kb, A + i * lda + k0, 1, pt + (j0 - k1), nt,
                         A + i * lda + j0);
            }
        }
    }
    free(pt);
    return ok;
}

/* ------------------------------------------------------------------ */
/* blocked triangular inverse (row blocks)                             */

#define EC_TRINV_NB 64

void ec_trinv_lower(const double *L, int64_t n, int64_t ldl, double *X, int64_t ldx)
{
    int mode = linalg_get_mode();
    if (mode == 2 || n <= EC_TRINV_NB) {
        ec_trinv_lower_ref(L, n, ldl, X, ldx);
        return;
    }
    int avx2 = mode == 1;
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
#pragma omp parallel for schedule(static)
            for (int64_t i = r0; i < r1; i++)
                drow_sub(avx2, j1 - j0, r0 - j0, L + i * ldl + j0, 1, X + j0 * ldx + j0, ldx,
                         X + i * ldx + j0);
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
}

/* ------------------------------------------------------------------ */
/* Hessian SYRK: packed panels, 6x16 register tiles                    */

#define EC_SYRK_MR 6
#define EC_SYRK_NR 16
#define EC_SYRK_KC 256 /* tokens per packed block */
#define EC_SYRK_MC 96  /* rows per tile (16 panels of 6): 96 KiB of packed A */
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
    if (mode == 2) {
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
                    syrk_pack(X, n, t0, kc, i0, i1, s, EC_SYRK_MR, pa);
                    syrk_pack(X, n, t0, kc, j0, j1, s, EC_SYRK_NR, pb);
                    for (int64_t jr = j0; jr < j1; jr += EC_SYRK_NR) {
                        const int nr = (int)(j1 - jr < EC_SYRK_NR ? j1 - jr : EC_SYRK_NR);
                        const float *b = pb + ((jr - j0) / EC_SYRK_NR) * kc * EC_SYRK_NR;
                        for (int64_t ir = i0; ir < i1; ir += EC_SYRK_MR) {
                            if (jr + nr <= ir)
                                break; /* this micro tile and the next are below the diagonal */
                            const int mr = (int)(i1 - ir < EC_SYRK_MR ? i1 - ir : EC_SYRK_MR);
                            const float *a = pa + ((ir - i0) / EC_SYRK_MR) * kc * EC_SYRK_MR;
                            float *c = C + ir * n + jr;
#ifdef EC_LINALG_X86
                            if (mode == 1) {
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
