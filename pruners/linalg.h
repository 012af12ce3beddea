/* pruners/linalg.h: the small dense linear algebra SparseGPT needs.
 *
 * All matrices are row-major with a leading dimension (elements between the
 * starts of two rows). Each operation has a plain scalar reference (`_ref`,
 * the definition: no OpenMP, no SIMD, fixed order) and a fast version
 * (blocked, OpenMP over rows or output tiles, register-blocked AVX2+FMA or
 * AVX-512 kernels when the CPU has them, chosen at run time; EDGEC_KERNELS=ref forces the reference). The fast
 * versions are deterministic and independent of the thread count: every
 * output element is computed by one thread, in a fixed order. They differ from
 * the reference only by rounding (summation order, FMA); tests/unit/
 * test_linalg.c states the tolerances.
 */
#ifndef EDGEC_PRUNERS_LINALG_H
#define EDGEC_PRUNERS_LINALG_H

#include <stdbool.h>
#include <stdint.h>

/* In-place lower Cholesky factor of the symmetric positive definite A (only
 * the lower triangle is read; the strict upper triangle is left untouched).
 * False when a pivot is not positive and finite (A is left partly factored). */
bool ec_chol_lower_ref(double *A, int64_t n, int64_t lda);
bool ec_chol_lower(double *A, int64_t n, int64_t lda);

/* X = L^-1 for lower-triangular L with a non-zero diagonal (strict upper part
 * of L not read). X is lower triangular; its strict upper part is set to 0.
 * X must not overlap L. */
void ec_trinv_lower_ref(const double *L, int64_t n, int64_t ldl, double *X, int64_t ldx);
void ec_trinv_lower(const double *L, int64_t n, int64_t ldl, double *X, int64_t ldx);

/* Hessian update on the upper triangle (col >= row) of C [n][n]:
 *   C = beta * C + sum_t (s x_t)(s x_t)^T,  x_t = X[t][0..n), t < n_tok,
 * where s*x is rounded to float first. The reference sums the products of a
 * call in double and rounds once; the fast version sums in float with FMA,
 * adding each block of 256 tokens to C. The fast version may also write some
 * elements below the diagonal (near it); the reference writes all of C. */
void ec_ssyrk_upper_ref(float *C, int64_t n, const float *X, int64_t n_tok, float s, float beta);
void ec_ssyrk_upper(float *C, int64_t n, const float *X, int64_t n_tok, float s, float beta);

/* C[m][n] -= A[m][k] B[k][n] (float): each element's products summed in
 * float in p order, then subtracted (torch's W -= Err @ Hinv). The fast
 * version uses FMA when available. */
void ec_sgemm_sub_ref(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float *C, int64_t ldc);
void ec_sgemm_sub(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float *C, int64_t ldc);

/* True when the fast paths use FMA kernels (AVX2+FMA or AVX-512). */
bool ec_linalg_has_avx2(void);
/* The fast paths' level: 0 baseline ISA, 1 AVX2+FMA, 2 AVX-512F; -1 under
 * EDGEC_KERNELS=ref (everything runs the references). */
int ec_linalg_isa(void);
/* Tests: cap the level (0, 1 or 2; the CPU's level when higher); returns the
 * level now in use. The AVX2 and AVX-512 kernels give the same bits (same
 * per-element FMA order). Not thread safe. */
int ec_linalg_set_isa(int level);

#endif
