/* tests/unit/test_linalg.c: the fast Cholesky, triangular inverse, Hessian
 * SYRK and lazy-update GEMM of pruners/linalg.c against their scalar
 * references at every ISA level (baseline, AVX2+FMA, AVX-512), their
 * thread-count invariance, and AVX-512 = AVX2 bit for bit.
 *
 * Tolerances (relative to the largest magnitude of the result):
 *   Cholesky, triangular inverse (double, well conditioned): 1e-12 — the
 *     blocked versions only reorder sums;
 *   SYRK (float, up to 600 terms): 2e-6 — the reference sums in double, the
 *     fast one in float with FMA, block by block;
 *   lazy GEMM (float): bit-identical without FMA (same order), 1e-6 with FMA.
 * Thread counts 1, 2 and 3 must give bit-identical results. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common.h"
#include "edgec/prune.h"
#include "pruners/linalg.h"

static uint64_t rng_state;

static double rnd(void) /* uniform [-1, 1), fixed sequence */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) / 4503599627370496.0 - 1.0;
}

static void set_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* SPD test matrix: A = B B^T / k + I, B [n][k] random */
static double *spd(int64_t n, uint64_t seed)
{
    rng_state = seed;
    int64_t k = n + 7;
    double *B = malloc(sizeof(double) * n * k);
    double *A = malloc(sizeof(double) * n * n);
    for (int64_t i = 0; i < n * k; i++)
        B[i] = rnd();
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t p = 0; p < k; p++)
                s += B[i * k + p] * B[j * k + p];
            A[i * n + j] = s / (double)k + (i == j);
        }
    free(B);
    return A;
}

static double maxabs_d(const double *a, int64_t n)
{
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

static double reldiff_lower(const double *a, const double *b, int64_t n)
{
    double md = 0.0, mb = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            md = fmax(md, fabs(a[i * n + j] - b[i * n + j]));
            mb = fmax(mb, fabs(b[i * n + j]));
        }
    return md / mb;
}

static const char *const LEVEL_NAME[] = {"baseline", "AVX2+FMA", "AVX-512"};

static const int64_t SIZES[] = {1, 5, 95, 96, 97, 200, 301, 613};

static void chol_and_inverse(int level)
{
    if (ec_linalg_set_isa(level) != level)
        cr_skip_test("this CPU has no %s", LEVEL_NAME[level]);
    for (size_t si = 0; si < sizeof SIZES / sizeof SIZES[0]; si++) {
        int64_t n = SIZES[si];
        double *A = spd(n, 42 + n);
        double *Lr = malloc(sizeof(double) * n * n), *Lf = malloc(sizeof(double) * n * n);
        memcpy(Lr, A, sizeof(double) * n * n);
        cr_assert(ec_chol_lower_ref(Lr, n, n));
        double *Xr = malloc(sizeof(double) * n * n);
        ec_trinv_lower_ref(Lr, n, n, Xr, n);
        double *first_L = NULL, *first_X = NULL;
        for (int th = 1; th <= 3; th++) {
            set_threads(th);
            memcpy(Lf, A, sizeof(double) * n * n);
            cr_assert(ec_chol_lower(Lf, n, n), "n=%lld", (long long)n);
            double dl = reldiff_lower(Lf, Lr, n);
            cr_expect(dl < 1e-12, "cholesky n=%lld threads=%d: %.3g", (long long)n, th, dl);
            double *Xf = malloc(sizeof(double) * n * n);
            ec_trinv_lower(Lf, n, n, Xf, n);
            double dx = reldiff_lower(Xf, Xr, n);
            cr_expect(dx < 1e-12, "trinv n=%lld threads=%d: %.3g", (long long)n, th, dx);
            /* strict upper part of X is zero; L X = I */
            double e = 0.0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < n; j++) {
                    if (j > i)
                        cr_assert_eq(Xf[i * n + j], 0.0);
                    double s = 0.0;
                    for (int64_t p = j; p <= i; p++)
                        s += Lf[i * n + p] * Xf[p * n + j];
                    e = fmax(e, fabs(s - (i == j)));
                }
            cr_expect(e < 1e-12 * maxabs_d(Xf, n * n) * n, "L X - I = %.3g", e);
            if (th == 1) {
                first_L = malloc(sizeof(double) * n * n);
                first_X = Xf;
                memcpy(first_L, Lf, sizeof(double) * n * n);
            } else {
                for (int64_t i = 0; i < n; i++)
                    cr_assert_eq(memcmp(Lf + i * n, first_L + i * n, sizeof(double) * (i + 1)), 0,
                                 "cholesky differs with %d threads, n=%lld", th, (long long)n);
                cr_assert_eq(memcmp(Xf, first_X, sizeof(double) * n * n), 0,
                             "trinv differs with %d threads, n=%lld", th, (long long)n);
                free(Xf);
            }
        }
        if (si == sizeof SIZES / sizeof SIZES[0] - 1)
            fprintf(stderr, "linalg (%s): cholesky/trinv n=%lld fast vs ref %.3g / %.3g\n",
                    LEVEL_NAME[level], (long long)n, reldiff_lower(first_L, Lr, n),
                    reldiff_lower(first_X, Xr, n));
        free(first_L);
        free(first_X);
        free(Xr);
        free(Lr);
        free(Lf);
        free(A);
    }
    ec_linalg_set_isa(2);
}

Test(linalg, cholesky_and_inverse_match_reference_avx512) { chol_and_inverse(2); }
Test(linalg, cholesky_and_inverse_match_reference_avx2) { chol_and_inverse(1); }
Test(linalg, cholesky_and_inverse_match_reference_baseline) { chol_and_inverse(0); }

Test(linalg, cholesky_refuses_non_positive_definite)
{
    int64_t n = 150;
    double *A = spd(n, 7);
    A[120 * n + 120] = -5.0;
    double *B = malloc(sizeof(double) * n * n);
    memcpy(B, A, sizeof(double) * n * n);
    cr_expect(!ec_chol_lower_ref(A, n, n));
    cr_expect(!ec_chol_lower(B, n, n));
    free(A);
    free(B);
}

static void syrk_case(int level)
{
    if (ec_linalg_set_isa(level) != level)
        cr_skip_test("this CPU has no %s", LEVEL_NAME[level]);
    const int64_t ns[] = {1, 6, 17, 101, 300};
    const int64_t ts[] = {0, 1, 255, 257, 600};
    double worst = 0.0;
    for (size_t a = 0; a < 5; a++) {
        for (size_t b = 0; b < 5; b++) {
            int64_t n = ns[a], nt = ts[b];
            rng_state = 1000 + n * 7 + nt;
            float *X = malloc(sizeof(float) * (nt * n + 1));
            float *C0 = malloc(sizeof(float) * n * n);
            for (int64_t i = 0; i < nt * n; i++)
                X[i] = (float)rnd();
            for (int64_t i = 0; i < n * n; i++)
                C0[i] = (float)rnd();
            float *Cr = malloc(sizeof(float) * n * n), *Cf = malloc(sizeof(float) * n * n);
            float *C1 = malloc(sizeof(float) * n * n);
            memcpy(Cr, C0, sizeof(float) * n * n);
            ec_ssyrk_upper_ref(Cr, n, X, nt, 0.37f, 0.75f);
            for (int th = 1; th <= 3; th++) {
                set_threads(th);
                memcpy(Cf, C0, sizeof(float) * n * n);
                ec_ssyrk_upper(Cf, n, X, nt, 0.37f, 0.75f);
                double md = 0.0, mc = 0.0;
                for (int64_t i = 0; i < n; i++)
                    for (int64_t j = i; j < n; j++) {
                        md = fmax(md, fabs((double)Cf[i * n + j] - Cr[i * n + j]));
                        mc = fmax(mc, fabs((double)Cr[i * n + j]));
                    }
                cr_expect(md <= 2e-6 * mc, "syrk n=%lld tokens=%lld threads=%d: %.3g rel",
                          (long long)n, (long long)nt, th, md / mc);
                worst = fmax(worst, md / mc);
                if (th == 1) {
                    memcpy(C1, Cf, sizeof(float) * n * n);
                } else {
                    for (int64_t i = 0; i < n; i++)
                        cr_assert_eq(memcmp(Cf + i * n + i, C1 + i * n + i, sizeof(float) * (n - i)),
                                     0, "syrk differs with %d threads", th);
                }
            }
            free(C1);
            free(Cf);
            free(Cr);
            free(C0);
            free(X);
        }
    }
    fprintf(stderr, "linalg (%s): syrk worst fast vs ref %.3g\n", LEVEL_NAME[level],
            worst);
    ec_linalg_set_isa(2);
}

Test(linalg, hessian_syrk_matches_reference_avx512) { syrk_case(2); }
Test(linalg, hessian_syrk_matches_reference_avx2) { syrk_case(1); }
Test(linalg, hessian_syrk_matches_reference_baseline) { syrk_case(0); }

static void sgemm_case(int level)
{
    if (ec_linalg_set_isa(level) != level)
        cr_skip_test("this CPU has no %s", LEVEL_NAME[level]);
    const int64_t m = 37, n = 1100, k = 128;
    rng_state = 99;
    float *A = malloc(sizeof(float) * m * k), *B = malloc(sizeof(float) * k * n);
    float *C0 = malloc(sizeof(float) * m * n), *Cr = malloc(sizeof(float) * m * n);
    float *Cf = malloc(sizeof(float) * m * n), *C1 = malloc(sizeof(float) * m * n);
    for (int64_t i = 0; i < m * k; i++)
        A[i] = (float)rnd();
    for (int64_t i = 0; i < k * n; i++)
        B[i] = (float)rnd();
    for (int64_t i = 0; i < m * n; i++)
        C0[i] = (float)rnd();
    memcpy(Cr, C0, sizeof(float) * m * n);
    ec_sgemm_sub_ref(m, n, k, A, k, B, n, Cr, n);
    for (int th = 1; th <= 3; th++) {
        set_threads(th);
        memcpy(Cf, C0, sizeof(float) * m * n);
        ec_sgemm_sub(m, n, k, A, k, B, n, Cf, n);
        if (!ec_linalg_has_avx2()) {
            cr_expect_eq(memcmp(Cf, Cr, sizeof(float) * m * n), 0,
                         "baseline sgemm must equal the reference bit for bit");
        } else {
            double md = 0.0, mc = 0.0;
            for (int64_t i = 0; i < m * n; i++) {
                md = fmax(md, fabs((double)Cf[i] - Cr[i]));
                mc = fmax(mc, fabs((double)Cr[i]));
            }
            cr_expect(md <= 1e-6 * mc, "sgemm fma: %.3g rel", md / mc);
        }
        if (th == 1)
            memcpy(C1, Cf, sizeof(float) * m * n);
        else
            cr_assert_eq(memcmp(Cf, C1, sizeof(float) * m * n), 0, "sgemm differs with %d threads",
                         th);
    }
    free(A);
    free(B);
    free(C0);
    free(Cr);
    free(Cf);
    free(C1);
    ec_linalg_set_isa(2);
}

Test(linalg, lazy_update_gemm_matches_reference_avx512) { sgemm_case(2); }
Test(linalg, lazy_update_gemm_matches_reference_avx2) { sgemm_case(1); }
Test(linalg, lazy_update_gemm_matches_reference_baseline) { sgemm_case(0); }

/* The AVX2 and AVX-512 kernels keep the same per-element FMA order: the
 * Cholesky factor, the inverse, the Hessian and the lazy update are the
 * same bits. */
Test(linalg, avx512_kernels_give_the_avx2_bits)
{
    if (ec_linalg_set_isa(2) != 2)
        cr_skip_test("this CPU has no AVX-512");
    const int64_t n = 613, nt = 700;
    double *A = spd(n, 7);
    double *L[2], *X[2];
    float *H[2], *G[2];
    rng_state = 11;
    float *T = malloc(sizeof(float) * nt * n);
    for (int64_t i = 0; i < nt * n; i++)
        T[i] = (float)rnd();
    for (int level = 1; level <= 2; level++) {
        cr_assert_eq(ec_linalg_set_isa(level), level);
        L[level - 1] = malloc(sizeof(double) * n * n);
        X[level - 1] = malloc(sizeof(double) * n * n);
        H[level - 1] = calloc((size_t)(n * n), sizeof(float));
        memcpy(L[level - 1], A, sizeof(double) * n * n);
        cr_assert(ec_chol_lower(L[level - 1], n, n));
        ec_trinv_lower(L[level - 1], n, n, X[level - 1], n);
        ec_ssyrk_upper(H[level - 1], n, T, nt, 0.5f, 1.0f);
        ec_ssyrk_upper(H[level - 1], n, T, nt / 2, 0.25f, 0.5f);
        /* lazy update: 77 rows x 613 columns, k = 128 */
        G[level - 1] = malloc(sizeof(float) * 77 * n);
        memcpy(G[level - 1], T, sizeof(float) * 77 * n);
        ec_sgemm_sub(77, n, 128, T + 100 * n, 128, T + 200 * n, n, G[level - 1], n);
    }
    cr_assert_eq(memcmp(G[0], G[1], sizeof(float) * 77 * n), 0, "lazy update");
    for (int64_t i = 0; i < n; i++) {
        cr_assert_eq(memcmp(L[0] + i * n, L[1] + i * n, sizeof(double) * (i + 1)), 0,
                     "cholesky row %lld", (long long)i);
        cr_assert_eq(memcmp(H[0] + i * n + i, H[1] + i * n + i, sizeof(float) * (n - i)), 0,
                     "hessian row %lld", (long long)i);
    }
    cr_assert_eq(memcmp(X[0], X[1], sizeof(double) * n * n), 0, "inverse");
    for (int q = 0; q < 2; q++) {
        free(L[q]);
        free(X[q]);
        free(H[q]);
        free(G[q]);
    }
    free(T);
    free(A);
    ec_linalg_set_isa(2);
}

Test(linalg, sparsegpt_is_thread_count_invariant)
{
    const int64_t rows = 40, cols = 320, nt = 400;
    rng_state = 5;
    float *X = malloc(sizeof(float) * nt * cols), *W0 = malloc(sizeof(float) * rows * cols);
    for (int64_t i = 0; i < nt * cols; i++)
        X[i] = (float)rnd() + (i % cols < 8 ? 3.0f * (float)rnd() : 0.0f);
    for (int64_t i = 0; i < rows * cols; i++)
        W0[i] = (float)rnd();
    struct ec_diag d = {0};
    float *first = malloc(sizeof(float) * rows * cols), *W = malloc(sizeof(float) * rows * cols);
    for (int pat = 0; pat < 2; pat++) {
        for (int th = 1; th <= 3; th++) {
            set_threads(th);
            struct ec_hessian h;
            cr_assert_eq(ec_hessian_init(&h, cols, &d), EC_OK);
            for (int64_t s = 0; s < 4; s++)
                cr_assert_eq(ec_hessian_accumulate(&h, X + s * 100 * cols, 100, 1, &d), EC_OK);
            ec_hessian_finish(&h);
            struct ec_sparsegpt_opts o = ec_sparsegpt_defaults();
            if (pat)
                o.sp = (struct ec_sparsity){.prune_n = 2, .prune_m = 4};
            memcpy(W, W0, sizeof(float) * rows * cols);
            cr_assert_eq(ec_sparsegpt_prune(W, rows, cols, h.H, &o, NULL, NULL, &d), EC_OK, "%s",
                         d.msg);
            if (th == 1)
                memcpy(first, W, sizeof(float) * rows * cols);
            else
                cr_assert_eq(memcmp(W, first, sizeof(float) * rows * cols), 0,
                             "sparsegpt differs with %d threads", th);
            ec_hessian_release(&h);
        }
        if (pat)
            cr_expect(ec_nm_holds(first, rows, cols, 2, 4));
    }
    free(W);
    free(first);
    free(W0);
    free(X);
}
