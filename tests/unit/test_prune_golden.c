/* tests/unit/test_prune_golden.c: magnitude, Wanda and SparseGPT on one
 * 96x256 linear layer against the authors' PyTorch results
 * (golden/prune/sparsegpt-96x256-{iid,corr}.safetensors; see
 * /work/shared/PROVENANCE.md). Figures are printed to stderr. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "edgec/prune.h"
#include "edgec/safetensors.h"

#define G_ROWS 96
#define G_COLS 256
#define G_NS 16
#define G_SEQ 32
#define G_TOK (G_NS * G_SEQ)

struct golden {
    const char *name;
    struct ec_safetensors st;
    float *W, *X, *H, *scaler;
};

static float *g_tensor(struct golden *g, const char *name, uint64_t n_elems)
{
    const struct ec_st_tensor *t = ec_safetensors_find(&g->st, name);
    cr_assert_not_null(t, "%s: tensor '%s' missing", g->name, name);
    cr_assert_eq(t->dtype, EC_F32, "%s: tensor '%s' not F32", g->name, name);
    cr_assert_eq(t->n_bytes, n_elems * 4, "%s: tensor '%s' has %llu bytes", g->name, name,
                 (unsigned long long)t->n_bytes);
    float *p = malloc(t->n_bytes);
    memcpy(p, t->data, t->n_bytes); /* the mapping need not be float-aligned */
    return p;
}

static double g_meta(struct golden *g, const char *key)
{
    const char *v = ec_safetensors_meta(&g->st, key);
    cr_assert_not_null(v, "%s: metadata '%s' missing", g->name, key);
    return strtod(v, NULL);
}

static bool golden_open(struct golden *g, const char *which)
{
    char rel[128];
    snprintf(rel, sizeof rel, "golden/prune/sparsegpt-96x256-%s.safetensors", which);
    char *path = ec_test_shared(rel);
    if (!path)
        return false;
    memset(g, 0, sizeof *g);
    g->name = which;
    struct ec_diag d = {0};
    cr_assert_eq(ec_safetensors_open(&g->st, path, &d), EC_OK, "%s", d.msg);
    free(path);
    cr_assert_eq((int)g_meta(g, "rows"), G_ROWS);
    cr_assert_eq((int)g_meta(g, "cols"), G_COLS);
    cr_assert_eq((int)g_meta(g, "nsamples"), G_NS);
    cr_assert_eq((int)g_meta(g, "seqlen"), G_SEQ);
    g->W = g_tensor(g, "W", G_ROWS * G_COLS);
    g->X = g_tensor(g, "X_calib", G_TOK * G_COLS);
    g->H = g_tensor(g, "H_sparsegpt", G_COLS * G_COLS);
    g->scaler = g_tensor(g, "scaler_row_wanda", G_COLS);
    return true;
}

static void golden_close(struct golden *g)
{
    free(g->W);
    free(g->X);
    free(g->H);
    free(g->scaler);
    ec_safetensors_close(&g->st);
}

/* max|a-b| / max|b| */
static double rel_maxdiff(const float *a, const float *b, int64_t n)
{
    double md = 0.0, mb = 0.0;
    for (int64_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - (double)b[i]));
        mb = fmax(mb, fabs((double)b[i]));
    }
    return mb > 0.0 ? md / mb : md;
}

static int64_t zero_mismatches(const float *a, const float *b, int64_t n)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        m += (a[i] == 0.0f) != (b[i] == 0.0f);
    return m;
}

static double sparsity_of(const float *w, int64_t n)
{
    int64_t z = 0;
    for (int64_t i = 0; i < n; i++)
        z += w[i] == 0.0f;
    return (double)z / (double)n;
}

/* ||(W - Wp) X^T||_F^2 / ||W X^T||_F^2 over the calibration tokens */
static double rel_out_err(const float *W, const float *Wp, const float *X)
{
    double num = 0.0, den = 0.0;
    for (int64_t t = 0; t < G_TOK; t++) {
        for (int64_t r = 0; r < G_ROWS; r++) {
            double y = 0.0, e = 0.0;
            for (int64_t c = 0; c < G_COLS; c++) {
                double x = X[t * G_COLS + c];
                y += (double)W[r * G_COLS + c] * x;
                e += ((double)W[r * G_COLS + c] - (double)Wp[r * G_COLS + c]) * x;
            }
            num += e * e;
            den += y * y;
        }
    }
    return num / den;
}

/* The metadata's rel_out_err is not defined in the file and is not a function
 * of the stored tensors: the closest reading, ||dY||^2 / ||Y||^2, gives
 * figures 1-3 % away on X_calib (0.071409 vs 0.07078, 0.008457 vs 0.008212)
 * and no single calibration sample matches, so it was presumably measured on
 * held-out inputs that were not saved. We check (a) 3 significant digits
 * against the same figure computed from the golden pruned weights on X_calib,
 * and (b) the metadata figure within 5 %. */
static void check_rel_out_err(struct golden *g, const float *Wp, const char *gname,
                              const char *key)
{
    float *want = g_tensor(g, gname, G_ROWS * G_COLS);
    double mine = rel_out_err(g->W, Wp, g->X);
    double gold = rel_out_err(g->W, want, g->X);
    double meta = g_meta(g, key);
    fprintf(stderr,
            "[%s] %-28s rel_out_err on X_calib %.6f (golden weights %.6f; metadata %.6f)\n",
            g->name, gname, mine, gold, meta);
    cr_expect(fabs(mine - gold) <= 5e-4 * gold, "%s %s: rel_out_err %.6f vs %.6f", g->name,
              gname, mine, gold);
    cr_expect(fabs(mine - meta) <= 0.05 * meta, "%s %s: rel_out_err %.6f vs metadata %.6f",
              g->name, gname, mine, meta);
    free(want);
}

static void accumulate_hessian(struct golden *g, struct ec_hessian *h, bool per_sample, bool ref)
{
    struct ec_diag d = {0};
    cr_assert_eq(ec_hessian_init(h, G_COLS, &d), EC_OK, "%s", d.msg);
    h->reference = ref;
    if (per_sample) {
        for (int s = 0; s < G_NS; s++)
            cr_assert_eq(ec_hessian_accumulate(h, g->X + s * G_SEQ * G_COLS, G_SEQ, 1, &d), EC_OK);
    } else {
        cr_assert_eq(ec_hessian_accumulate(h, g->X, G_TOK, G_NS, &d), EC_OK);
    }
    ec_hessian_finish(h);
    cr_assert_eq(h->nsamples, G_NS);
}

static void hessian_case(const char *which)
{
    struct golden g;
    if (!golden_open(&g, which))
        return;
    const struct {
        bool per_sample, ref;
        const char *what;
    } v[] = {
        {true, true, "ref, 16 batches of 1"},
        {true, false, "fast, 16 batches of 1"},
        {false, true, "ref, 1 batch of 16"},
        {false, false, "fast, 1 batch of 16"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        struct ec_hessian h;
        accumulate_hessian(&g, &h, v[i].per_sample, v[i].ref);
        double rd = rel_maxdiff(h.H, g.H, G_COLS * G_COLS);
        fprintf(stderr, "[%s] H %-22s max|dH|/max|H| = %.3g\n", which, v[i].what, rd);
        cr_expect(rd < 1e-5, "%s: H (%s) differs by %.3g relative", which, v[i].what, rd);
        for (int64_t r = 0; r < G_COLS; r++)
            for (int64_t c = 0; c < r; c++)
                cr_assert_eq(h.H[r * G_COLS + c], h.H[c * G_COLS + r]);
        ec_hessian_release(&h);
    }
    golden_close(&g);
}

Test(prune_golden, hessian_matches_authors_add_batch_iid) { hessian_case("iid"); }
Test(prune_golden, hessian_matches_authors_add_batch_corr) { hessian_case("corr"); }

static void scaler_case(const char *which)
{
    struct golden g;
    if (!golden_open(&g, which))
        return;
    for (int mode = 0; mode < 2; mode++) {
        struct ec_wanda_scaler s;
        struct ec_diag d = {0};
        cr_assert_eq(ec_wanda_scaler_init(&s, G_COLS, &d), EC_OK);
        if (mode == 0) {
            for (int i = 0; i < G_NS; i++)
                cr_assert_eq(ec_wanda_scaler_accumulate(&s, g.X + i * G_SEQ * G_COLS, G_SEQ, 1, &d),
                             EC_OK);
        } else {
            cr_assert_eq(ec_wanda_scaler_accumulate(&s, g.X, G_TOK, G_NS, &d), EC_OK);
        }
        double rd = rel_maxdiff(s.scaler_row, g.scaler, G_COLS);
        double mr = 0.0;
        for (int c = 0; c < G_COLS; c++)
            mr = fmax(mr, fabs(s.scaler_row[c] - g.scaler[c]) / fabs(g.scaler[c]));
        fprintf(stderr, "[%s] wanda scaler_row (%s): max rel diff per column %.3g, max|d|/max %.3g\n",
                which, mode == 0 ? "16 batches of 1" : "1 batch of 16", mr, rd);
        cr_expect(mr < 1e-5, "%s: scaler_row differs by %.3g relative", which, mr);
        ec_wanda_scaler_release(&s);
    }
    golden_close(&g);
}

Test(prune_golden, wanda_scaler_matches_iid) { scaler_case("iid"); }
Test(prune_golden, wanda_scaler_matches_corr) { scaler_case("corr"); }

static const struct ec_sparsity SP_UNSTR = {.ratio = 0.5};
static const struct ec_sparsity SP_24 = {.prune_n = 2, .prune_m = 4};

static void check_nm(const float *Wp, const char *which, const char *what)
{
    cr_expect(ec_nm_holds(Wp, G_ROWS, G_COLS, 2, 4), "%s %s: 2:4 pattern broken", which, what);
    /* exactly 2 zeros per group (no weight was already 0) */
    cr_expect_eq(sparsity_of(Wp, G_ROWS * G_COLS), 0.5);
}

static void simple_case(const char *which, bool wanda, bool nm)
{
    struct golden g;
    if (!golden_open(&g, which))
        return;
    const char *gname = wanda ? (nm ? "W_wanda_2of4" : "W_wanda_unstructured")
                              : (nm ? "W_magnitude_2of4" : "W_magnitude_unstructured");
    float *want = g_tensor(&g, gname, G_ROWS * G_COLS);
    float *Wp = malloc(sizeof(float) * G_ROWS * G_COLS);
    uint8_t *mask = malloc(G_ROWS * G_COLS);
    memcpy(Wp, g.W, sizeof(float) * G_ROWS * G_COLS);
    struct ec_diag d = {0};
    const struct ec_sparsity *sp = nm ? &SP_24 : &SP_UNSTR;
    if (wanda)
        cr_assert_eq(ec_prune_wanda(Wp, G_ROWS, G_COLS, g.scaler, sp, mask, &d), EC_OK, "%s", d.msg);
    else
        cr_assert_eq(ec_prune_magnitude(Wp, G_ROWS, G_COLS, sp, mask, &d), EC_OK, "%s", d.msg);
    int64_t mism = zero_mismatches(Wp, want, G_ROWS * G_COLS);
    cr_expect_eq(memcmp(Wp, want, sizeof(float) * G_ROWS * G_COLS), 0,
                 "%s %s: %lld mask mismatches", which, gname, (long long)mism);
    for (int64_t i = 0; i < G_ROWS * G_COLS; i++)
        cr_assert_eq(mask[i] != 0, Wp[i] == 0.0f);
    double sp_mine = sparsity_of(Wp, G_ROWS * G_COLS);
    fprintf(stderr, "[%s] %-28s mask mismatches %lld, sparsity %.5f\n", which, gname,
            (long long)mism, sp_mine);
    if (nm)
        check_nm(Wp, which, gname);
    else if (wanda)
        cr_expect_eq(sp_mine, g_meta(&g, "wanda_unstructured_sparsity"));
    else
        /* one layer-wide threshold: int(numel/2) + 1 weights are <= it */
        cr_expect_eq(sp_mine, (G_ROWS * G_COLS / 2 + 1) / (double)(G_ROWS * G_COLS));
    char key[96];
    snprintf(key, sizeof key, "%s_%s_rel_out_err", wanda ? "wanda" : "magnitude",
             nm ? "2:4" : "unstructured");
    check_rel_out_err(&g, Wp, gname, key);
    free(mask);
    free(Wp);
    free(want);
    golden_close(&g);
}

Test(prune_golden, wanda_unstructured_iid) { simple_case("iid", true, false); }
Test(prune_golden, wanda_unstructured_corr) { simple_case("corr", true, false); }
Test(prune_golden, wanda_2of4_iid) { simple_case("iid", true, true); }
Test(prune_golden, wanda_2of4_corr) { simple_case("corr", true, true); }
Test(prune_golden, magnitude_unstructured_iid) { simple_case("iid", false, false); }
Test(prune_golden, magnitude_unstructured_corr) { simple_case("corr", false, false); }
Test(prune_golden, magnitude_2of4_iid) { simple_case("iid", false, true); }
Test(prune_golden, magnitude_2of4_corr) { simple_case("corr", false, true); }

/* Mask mismatches allowed: the authors' float LAPACK/BLAS and our double
 * factorisation give Hinv differing by ~1e-6 relative, which can flip a
 * score that sits within that distance of the block threshold (unstructured)
 * or of its group rival (N:M). Measured: 0 on both goldens. */
#define SPARSEGPT_MAX_MISMATCH 2

static void sparsegpt_case(const char *which, bool nm, int hsrc, bool ref)
{
    struct golden g;
    if (!golden_open(&g, which))
        return;
    const char *gname = nm ? "W_sparsegpt_2of4" : "W_sparsegpt_unstructured";
    const char *hname[] = {"golden H", "our H (fast)", "our H (ref)"};
    float *want = g_tensor(&g, gname, G_ROWS * G_COLS);
    float *Wp = malloc(sizeof(float) * G_ROWS * G_COLS);
    uint8_t *mask = malloc(G_ROWS * G_COLS);
    memcpy(Wp, g.W, sizeof(float) * G_ROWS * G_COLS);
    struct ec_hessian h = {0};
    const float *H = g.H;
    if (hsrc > 0) {
        accumulate_hessian(&g, &h, true, hsrc == 2);
        H = h.H;
    }
    struct ec_sparsegpt_opts o = ec_sparsegpt_defaults();
    o.sp = nm ? SP_24 : SP_UNSTR;
    o.reference = ref;
    struct ec_diag d = {0};
    double loss = 0.0;
    cr_assert_eq(ec_sparsegpt_prune(Wp, G_ROWS, G_COLS, H, &o, mask, &loss, &d), EC_OK, "%s",
                 d.msg);
    int64_t mism = zero_mismatches(Wp, want, G_ROWS * G_COLS);
    double rd = rel_maxdiff(Wp, want, G_ROWS * G_COLS);
    double sp_mine = sparsity_of(Wp, G_ROWS * G_COLS);
    const char *pk = nm ? "sparsegpt_2:4_printed" : "sparsegpt_unstructured_printed";
    const char *printed = ec_safetensors_meta(&g.st, pk);
    const char *e = printed ? strstr(printed, "error ") : NULL;
    double gloss = e ? strtod(e + 6, NULL) : NAN;
    fprintf(stderr,
            "[%s] %-24s from %-12s %s linalg: mask mismatches %lld, max|dW|/max|W| %.3g, "
            "sparsity %.5f, loss %.6f (printed %.6f)\n",
            which, gname, hname[hsrc], ref ? "ref " : "fast", (long long)mism, rd, sp_mine, loss,
            gloss);
    cr_expect(mism <= SPARSEGPT_MAX_MISMATCH, "%s %s: %lld mask mismatches", which, gname,
              (long long)mism);
    cr_expect(rd < 1e-4, "%s %s: weights differ by %.3g relative", which, gname, rd);
    cr_expect(fabs(loss - gloss) <= 1e-3 * gloss, "%s: loss %.6f vs printed %.6f", which, loss,
              gloss);
    for (int64_t i = 0; i < G_ROWS * G_COLS; i++)
        cr_assert(!mask[i] || Wp[i] == 0.0f);
    if (nm) {
        check_nm(Wp, which, gname);
        cr_expect_eq(sp_mine, g_meta(&g, "sparsegpt_2:4_sparsity"));
    } else {
        /* metadata rounds to 5 decimals */
        cr_expect(fabs(sp_mine - g_meta(&g, "sparsegpt_unstructured_sparsity")) < 5e-6,
                  "sparsity %.6f", sp_mine);
    }
    check_rel_out_err(&g, Wp, gname,
                      nm ? "sparsegpt_2:4_rel_out_err" : "sparsegpt_unstructured_rel_out_err");
    ec_hessian_release(&h);
    free(mask);
    free(Wp);
    free(want);
    golden_close(&g);
}

Test(prune_golden, sparsegpt_unstructured_iid_golden_h) { sparsegpt_case("iid", false, 0, false); }
Test(prune_golden, sparsegpt_unstructured_corr_golden_h) { sparsegpt_case("corr", false, 0, false); }
Test(prune_golden, sparsegpt_2of4_iid_golden_h) { sparsegpt_case("iid", true, 0, false); }
Test(prune_golden, sparsegpt_2of4_corr_golden_h) { sparsegpt_case("corr", true, 0, false); }
Test(prune_golden, sparsegpt_unstructured_iid_ref_linalg) { sparsegpt_case("iid", false, 0, true); }
Test(prune_golden, sparsegpt_unstructured_corr_ref_linalg) { sparsegpt_case("corr", false, 0, true); }
Test(prune_golden, sparsegpt_2of4_corr_ref_linalg) { sparsegpt_case("corr", true, 0, true); }
Test(prune_golden, sparsegpt_unstructured_iid_own_h) { sparsegpt_case("iid", false, 1, false); }
Test(prune_golden, sparsegpt_unstructured_corr_own_h) { sparsegpt_case("corr", false, 1, false); }
Test(prune_golden, sparsegpt_2of4_iid_own_h) { sparsegpt_case("iid", true, 1, false); }
Test(prune_golden, sparsegpt_2of4_corr_own_h) { sparsegpt_case("corr", true, 2, true); }

Test(prune_golden, sparsegpt_refuses_bad_settings)
{
    float W[8 * 8] = {0}, H[8 * 8] = {0};
    for (int i = 0; i < 8; i++)
        H[i * 8 + i] = -1.0f; /* negative diagonal: not positive definite */
    struct ec_sparsegpt_opts o = ec_sparsegpt_defaults();
    struct ec_diag d = {0};
    cr_expect_eq(ec_sparsegpt_prune(W, 8, 8, H, &o, NULL, NULL, &d), EC_ERR_NUMERIC);
    cr_expect(strstr(d.msg, "not positive definite") != NULL, "%s", d.msg);
    o.sp = (struct ec_sparsity){.prune_n = 2, .prune_m = 3};
    ec_diag_clear(&d);
    cr_expect_eq(ec_sparsegpt_prune(W, 8, 8, H, &o, NULL, NULL, &d), EC_ERR_ARG);
    o.sp = (struct ec_sparsity){.ratio = 1.0};
    ec_diag_clear(&d);
    cr_expect_eq(ec_sparsegpt_prune(W, 8, 8, H, &o, NULL, NULL, &d), EC_ERR_ARG);
    o.sp = (struct ec_sparsity){.prune_n = 4, .prune_m = 4};
    ec_diag_clear(&d);
    cr_expect_eq(ec_prune_magnitude(W, 8, 8, &o.sp, NULL, &d), EC_ERR_ARG);
}

Test(prune_golden, dead_columns_are_zeroed_not_fatal)
{
    /* a column whose input is always 0 gives diag(H) == 0: SparseGPT sets
     * that diagonal to 1 and zeroes the column instead of failing */
    enum { R = 4, C = 8, T = 32 };
    float X[T * C], W[R * C];
    uint32_t s = 1;
    for (int i = 0; i < T * C; i++) {
        s = s * 1664525u + 1013904223u;
        X[i] = (i % C == 3) ? 0.0f : (float)((s >> 8) / 16777216.0 - 0.5);
    }
    for (int i = 0; i < R * C; i++)
        W[i] = 1.0f + (float)i;
    struct ec_hessian h;
    struct ec_diag d = {0};
    cr_assert_eq(ec_hessian_init(&h, C, &d), EC_OK);
    cr_assert_eq(ec_hessian_accumulate(&h, X, T, 1, &d), EC_OK);
    ec_hessian_finish(&h);
    cr_assert_eq(h.H[3 * C + 3], 0.0f);
    struct ec_sparsegpt_opts o = ec_sparsegpt_defaults();
    o.sp.ratio = 0.25;
    cr_assert_eq(ec_sparsegpt_prune(W, R, C, h.H, &o, NULL, NULL, &d), EC_OK, "%s", d.msg);
    for (int r = 0; r < R; r++)
        cr_expect_eq(W[r * C + 3], 0.0f);
    ec_hessian_release(&h);
}
