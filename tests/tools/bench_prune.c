/* tests/tools/bench_prune.c: time SparseGPT on one linear layer with random
 * calibration data (fixed seed): Hessian accumulation, pruning (unstructured
 * 50 % and 2:4), and the relative reconstruction error
 * ||(W - Wp) X^T||^2 / ||W X^T||^2 = tr(dW H dW^T) / tr(W H W^T), evaluated
 * from H on up to 128 evenly spaced rows, beside magnitude and Wanda.
 *
 * usage: bench_prune ROWS COLS [NSAMPLES [SEQLEN]]   (defaults 128 x 2048)
 * Inputs: x = sqrt(6) (u1 + u2 - 1) (unit variance, triangular), plus a
 * shared per-token component on the first 32 columns so that H is not
 * diagonal; W ~ the same distribution / sqrt(cols). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "edgec/prune.h"
#include "pruners/linalg.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float tri(uint64_t *s)
{
    uint64_t r = splitmix(s);
    float u1 = (float)(r >> 40) * (1.0f / 16777216.0f);
    float u2 = (float)((r >> 8) & 0xFFFFFF) * (1.0f / 16777216.0f);
    return 2.4494897f * (u1 + u2 - 1.0f);
}

static void gen_batch(float *X, int64_t n_tok, int64_t cols, uint64_t batch)
{
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < n_tok; t++) {
        uint64_t s = 0x1234567ull ^ (batch << 32) ^ (uint64_t)t * 0x9E3779B97F4A7C15ull;
        float shared = tri(&s);
        float *x = X + t * cols;
        for (int64_t c = 0; c < cols; c++)
            x[c] = tri(&s) + (c < 32 ? 2.0f * shared : 0.0f);
    }
}

/* sum over sampled rows of d^T H d; H d accumulated along H's rows so the
 * inner loop vectorises */
static double quad(const float *D, const float *H, int64_t rows, int64_t cols, int64_t step)
{
    double total = 0.0;
#pragma omp parallel reduction(+ : total)
    {
        float *acc = malloc(sizeof(float) * cols);
#pragma omp for schedule(dynamic, 1)
        for (int64_t r = 0; r < rows; r += step) {
            const float *d = D + r * cols;
            memset(acc, 0, sizeof(float) * cols);
            for (int64_t i = 0; i < cols; i++) {
                const float di = d[i];
                if (di == 0.0f)
                    continue;
                const float *h = H + i * cols;
                for (int64_t j = 0; j < cols; j++)
                    acc[j] += di * h[j];
            }
            double q = 0.0;
            for (int64_t j = 0; j < cols; j++)
                q += (double)acc[j] * d[j];
            total += q;
        }
        free(acc);
    }
    return total;
}

static double rel_err(const float *W, const float *Wp, const float *H, int64_t rows, int64_t cols,
                      float *D)
{
    int64_t step = rows > 128 ? rows / 128 : 1;
    for (int64_t i = 0; i < rows * cols; i++)
        D[i] = W[i] - Wp[i];
    return quad(D, H, rows, cols, step) / quad(W, H, rows, cols, step);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_prune ROWS COLS [NSAMPLES [SEQLEN]]\n");
        return 2;
    }
    int64_t rows = atoll(argv[1]), cols = atoll(argv[2]);
    int64_t nsamples = argc > 3 ? atoll(argv[3]) : 128, seqlen = argc > 4 ? atoll(argv[4]) : 2048;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    printf("layer %lld x %lld (rows = out_features, cols = in_features), %lld x %lld tokens, "
           "%d threads, avx2 %s\n",
           (long long)rows, (long long)cols, (long long)nsamples, (long long)seqlen, threads,
           ec_linalg_has_avx2() ? "yes" : "no");
    struct ec_diag d = {0};
    float *X = malloc(sizeof(float) * seqlen * cols);
    float *W = malloc(sizeof(float) * rows * cols), *Wp = malloc(sizeof(float) * rows * cols);
    float *D = malloc(sizeof(float) * rows * cols);
    if (!X || !W || !Wp || !D) {
        fprintf(stderr, "bench_prune: out of memory\n");
        return 4;
    }
    uint64_t s = 77;
    float wscale = 1.0f / sqrtf((float)cols);
    for (int64_t i = 0; i < rows * cols; i++)
        W[i] = tri(&s) * wscale;

    struct ec_hessian h;
    if (ec_hessian_init(&h, cols, &d) != EC_OK) {
        fprintf(stderr, "bench_prune: %s\n", d.msg);
        return 4;
    }
    double t_gen = 0.0, t_h = 0.0, c_h = 0.0;
    for (int64_t b = 0; b < nsamples; b++) {
        double t0 = now();
        gen_batch(X, seqlen, cols, (uint64_t)b);
        double t1 = now(), c1 = cpu_now();
        ec_hessian_accumulate(&h, X, seqlen, 1, &d);
        t_h += now() - t1;
        c_h += cpu_now() - c1;
        t_gen += t1 - t0;
    }
    double t0 = now(), c0 = cpu_now();
    ec_hessian_finish(&h);
    t_h += now() - t0;
    c_h += cpu_now() - c0;
    printf("hessian accumulation  %8.3f s  (cpu %.3f s; %.1f GFLOP/s wall counting the upper "
           "triangle; input generation %.2f s, not included)\n",
           t_h, c_h, (double)nsamples * seqlen * cols * (cols + 1) / t_h * 1e-9, t_gen);

    struct ec_sparsegpt_opts o = ec_sparsegpt_defaults();
    const char *names[2] = {"unstructured 50%", "2:4"};
    double t_prune[2], err[2], loss[2];
    for (int k = 0; k < 2; k++) {
        if (k == 1)
            o.sp = (struct ec_sparsity){.prune_n = 2, .prune_m = 4};
        memcpy(Wp, W, sizeof(float) * rows * cols);
        t0 = now();
        c0 = cpu_now();
        if (ec_sparsegpt_prune(Wp, rows, cols, h.H, &o, NULL, &loss[k], &d) != EC_OK) {
            fprintf(stderr, "bench_prune: %s\n", d.msg);
            return 3;
        }
        t_prune[k] = now() - t0;
        double c_p = cpu_now() - c0;
        err[k] = rel_err(W, Wp, h.H, rows, cols, D);
        printf("sparsegpt %-16s %8.3f s  (cpu %.3f s)  rel. reconstruction error %.5f  "
               "(loss %.4g)\n",
               names[k], t_prune[k], c_p, err[k], loss[k]);
    }
    /* baselines at the same settings; Wanda's scaler_row = diag(H) / 2 */
    float *sc = malloc(sizeof(float) * cols);
    for (int64_t c = 0; c < cols; c++)
        sc[c] = h.H[c * cols + c] / 2.0f;
    for (int k = 0; k < 2; k++) {
        struct ec_sparsity sp = k ? (struct ec_sparsity){.prune_n = 2, .prune_m = 4}
                                  : (struct ec_sparsity){.ratio = 0.5};
        memcpy(Wp, W, sizeof(float) * rows * cols);
        ec_prune_magnitude(Wp, rows, cols, &sp, NULL, &d);
        double em = rel_err(W, Wp, h.H, rows, cols, D);
        memcpy(Wp, W, sizeof(float) * rows * cols);
        ec_prune_wanda(Wp, rows, cols, sc, &sp, NULL, &d);
        double ew = rel_err(W, Wp, h.H, rows, cols, D);
        printf("baselines %-16s magnitude %.5f  wanda %.5f\n", names[k], em, ew);
    }
    printf("RESULT rows=%lld cols=%lld hessian_s=%.3f prune_s=%.3f prune24_s=%.3f "
           "total_s=%.3f relerr=%.5f relerr24=%.5f\n",
           (long long)rows, (long long)cols, t_h, t_prune[0], t_prune[1], t_h + t_prune[0],
           err[0], err[1]);
    free(sc);
    ec_hessian_release(&h);
    free(D);
    free(Wp);
    free(W);
    free(X);
    return 0;
}
