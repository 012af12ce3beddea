/* tests/unit/test_prune_run.c: `edgec prune` end to end on the shared tiny
 * models: the calibration forward equals the engine, N:M patterns hold,
 * SparseGPT < Wanda < magnitude in held-out perplexity, HF and GGUF outputs
 * agree, structured outputs load with the new shapes.
 *
 * Calibration text: the first 90 % of tinystories_valid_sample.txt (the
 * held-out file is its last 10 %), never the held-out text itself.
 * EDGEC_TEST_FULL=1 adds the figure run (both models, 50 % and 2:4, all
 * methods, 128 windows, every held-out chunk) and prints the table. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "common.h"
#include "edgec/engine.h"
#include "edgec/io.h"
#include "edgec/prune.h"
#include "edgec/prune_run.h"
#include "edgec/tokenizer.h"
#include "edgec/validate.h"
#include "pruners/calib.h"

static char *calib_file(const char *dir)
{
    char *sample = ec_test_shared("data/tinystories_valid_sample.txt");
    char *held = ec_test_shared("data/tinystories_heldout.txt");
    struct stat a, b;
    cr_assert(stat(sample, &a) == 0 && stat(held, &b) == 0);
    size_t n = (size_t)(a.st_size - b.st_size);
    FILE *f = fopen(sample, "rb");
    cr_assert_not_null(f);
    char *buf = malloc(n);
    cr_assert_eq(fread(buf, 1, n, f), n);
    fclose(f);
    char *out = ec_path_join(dir, "calib.txt");
    f = fopen(out, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
    free(buf);
    free(sample);
    free(held);
    return out;
}

/* the held-out text (minus its trailing newline) tokenized with BOS by m's
 * tokenizer; the caller frees *ids */
static void heldout_ids(const struct ec_model *m, int32_t **ids, size_t *n_ids)
{
    char *held = ec_test_shared("data/tinystories_heldout.txt");
    struct ec_diag d;
    ec_diag_clear(&d);
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(ec_read_file(held, 1u << 26, &text, &len, &d), EC_OK);
    if (len && text[len - 1] == '\n')
        len--;
    struct ec_tokenizer *tk;
    cr_assert_eq(ec_tokenizer_new(&tk, &m->vocab, &d), EC_OK);
    cr_assert_eq(ec_tokenizer_encode(tk, text, len, true, false, ids, n_ids, &d), EC_OK);
    ec_tokenizer_free(tk);
    free(text);
    free(held);
}

/* an engine for m with a 128-token context */
static struct ec_engine *engine_ctx128(const struct ec_model *m)
{
    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_engine_opts eo;
    ec_engine_opts_init(&eo);
    eo.n_ctx = 128;
    struct ec_engine *e;
    cr_assert_eq(ec_engine_new(&e, m, &eo, &d), EC_OK, "%s", d.msg);
    return e;
}

/* perplexity of a model file on the held-out text, ctx 128, first max_chunks */
static double heldout_ppl(const char *model, int64_t max_chunks)
{
    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_model m;
    cr_assert_eq(ec_model_open(&m, model, &d), EC_OK, "%s", d.msg);
    int32_t *ids;
    size_t n_ids;
    heldout_ids(&m, &ids, &n_ids);
    struct ec_engine *e = engine_ctx128(&m);
    struct ec_ppl_opts po = {.n_ctx = 128, .max_chunks = max_chunks, .bos_id = m.vocab.bos_id};
    struct ec_ppl_result r;
    cr_assert_eq(ec_perplexity_run(e, ids, (int64_t)n_ids, &po, &r, &d), EC_OK, "%s", d.msg);
    ec_engine_free(e);
    free(ids);
    ec_model_close(&m);
    return r.ppl;
}

/* PPL(cand) / PPL(ref) on the held-out text (ctx 128, all chunks) with its
 * paired standard error (edgec validate's ppl_ratio_err) */
static void paired_ratio(const char *ref, const char *cand, double *ratio, double *err)
{
    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_model mr, mc;
    cr_assert_eq(ec_model_open(&mr, ref, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(ec_model_open(&mc, cand, &d), EC_OK, "%s", d.msg);
    int32_t *ids;
    size_t n_ids;
    heldout_ids(&mr, &ids, &n_ids);
    struct ec_engine *er = engine_ctx128(&mr), *ec = engine_ctx128(&mc);
    struct ec_validate_opts vo = {.n_ctx = 128, .bos_id = mr.vocab.bos_id};
    struct ec_validate_stats st;
    cr_assert_eq(ec_validate_run(er, ec, ids, (int64_t)n_ids, &vo, &st, &d), EC_OK, "%s", d.msg);
    *ratio = st.ppl_ratio;
    *err = st.ppl_ratio_err;
    ec_validate_stats_release(&st);
    ec_engine_free(ec);
    ec_engine_free(er);
    free(ids);
    ec_model_close(&mc);
    ec_model_close(&mr);
}

static void run_prune(struct ec_prune_opts *o, struct ec_prune_result *r)
{
    struct ec_diag d;
    ec_diag_clear(&d);
    enum ec_status st = ec_prune_run(o, r, &d);
    cr_assert_eq(st, EC_OK, "prune %s -> %s: %s", o->input, o->output, d.msg);
}

static char *path2(const char *dir, const char *name)
{
    char *p = ec_path_join(dir, name);
    cr_assert_not_null(p);
    return p;
}

Test(prune_run, calibration_forward_matches_the_engine)
{
    char *model = ec_test_shared("models/stories260K");
    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_model m;
    cr_assert_eq(ec_model_open(&m, model, &d), EC_OK, "%s", d.msg);
    const struct ec_hparams *hp = &m.hp;
    const int64_t n = 48;
    int32_t tok[48];
    for (int i = 0; i < n; i++)
        tok[i] = (int32_t)((i * 37 + 1) % hp->n_vocab);
    /* engine logits */
    struct ec_engine_opts eo;
    ec_engine_opts_init(&eo);
    eo.n_ctx = (uint32_t)n;
    struct ec_engine *e;
    cr_assert_eq(ec_engine_new(&e, &m, &eo, &d), EC_OK, "%s", d.msg);
    float *le = malloc((size_t)n * hp->n_vocab * sizeof(float));
    cr_assert_eq(ec_engine_eval(e, tok, n, le, 0, &d), EC_OK);
    /* blocks of pruners/calib.c, then the final norm and the tied output */
    struct ec_calib_fwd *f;
    cr_assert_eq(ec_calib_fwd_new(&f, hp, NULL, n, true, 0, &d), EC_OK);
    float *x = malloc((size_t)n * hp->n_embd * sizeof(float));
    float *h = malloc((size_t)n * hp->n_embd * sizeof(float));
    float *lc = malloc((size_t)n * hp->n_vocab * sizeof(float));
    cr_assert_eq(ec_calib_embed(&m, tok, n, x, &d), EC_OK);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        struct ec_calib_block b;
        cr_assert_eq(ec_calib_block_load(&b, &m, il, &d), EC_OK, "%s", d.msg);
        cr_assert_eq(ec_calib_block_forward(f, &b, x, n, NULL, NULL, &d), EC_OK);
        ec_calib_block_release(&b);
    }
    const struct ec_model_tensor *on = ec_model_find(&m, "output_norm.weight");
    const struct ec_model_tensor *te = ec_model_find(&m, "token_embd.weight");
    float *nw = malloc(hp->n_embd * sizeof(float));
    float *W = malloc((size_t)hp->n_vocab * hp->n_embd * sizeof(float));
    cr_assert_eq(ec_calib_tensor_f32(&m, on, nw, &d), EC_OK);
    cr_assert_eq(ec_calib_tensor_f32(&m, te, W, &d), EC_OK);
    ec_calib_rms_norm(x, nw, n, hp->n_embd, hp->norm_eps, h);
    const struct ec_linear_view v = {.type = EC_F32, .data = (const uint8_t *)W,
                                     .row_bytes = hp->n_embd * sizeof(float),
                                     .n_in = hp->n_embd, .n_out = hp->n_vocab};
    cr_assert_eq(ec_matmul_fast(&v, h, n, lc, 0, &d), EC_OK);
    double maxd = 0;
    for (int64_t i = 0; i < n * hp->n_vocab; i++)
        maxd = fmax(maxd, fabs((double)le[i] - lc[i]));
    cr_expect(maxd < 1e-4, "calibration forward differs from the engine by %g", maxd);
    free(le);
    free(lc);
    free(x);
    free(h);
    free(nw);
    free(W);
    ec_calib_fwd_free(f);
    ec_engine_free(e);
    ec_model_close(&m);
    free(model);
}

static bool nm_holds_in_file(const char *path, int n, int m_)
{
    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_model m;
    cr_assert_eq(ec_model_open(&m, path, &d), EC_OK, "%s", d.msg);
    int checked = 0;
    bool ok = true;
    for (size_t i = 0; i < m.n_tensors; i++) {
        const struct ec_model_tensor *t = &m.tensors[i];
        if (strncmp(t->name, "blk.", 4) != 0 || t->n_dims != 2)
            continue;
        float *w = malloc(ec_model_tensor_n_elems(t) * sizeof(float));
        cr_assert_eq(ec_calib_tensor_f32(&m, t, w, &d), EC_OK);
        if (!ec_nm_holds(w, (int64_t)t->ne[1], (int64_t)t->ne[0], n, m_)) {
            cr_log_error("%s: tensor '%s' breaks %d:%d", path, t->name, n, m_);
            ok = false;
        }
        checked++;
        free(w);
    }
    cr_expect_eq(checked, 7 * (int)m.hp.n_layer, "checked %d linear weights", checked);
    ec_model_close(&m);
    return ok;
}

Test(prune_run, two_of_four_holds_in_every_group, .timeout = EC_TIMEOUT(60))
{
    char *model = ec_test_shared("models/stories260K");
    char *dir = ec_test_tmpdir();
    char *cal = calib_file(dir);
    const enum ec_prune_method methods[] = {EC_PRUNE_MAGNITUDE, EC_PRUNE_WANDA,
                                            EC_PRUNE_SPARSEGPT};
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "nm-%d.gguf", i);
        char *out = path2(dir, name);
        struct ec_prune_opts o;
        ec_prune_opts_init(&o);
        o.input = model;
        o.output = out;
        o.method = methods[i];
        o.sp = (struct ec_sparsity){.prune_n = 2, .prune_m = 4};
        o.calib = cal;
        o.calib_samples = 8;
        o.calib_len = 128;
        struct ec_prune_result r;
        run_prune(&o, &r);
        cr_expect_eq(r.n_pruned_zero * 2, r.n_pruned_elems, "%s: %llu zeros of %llu",
                     ec_prune_method_name(methods[i]), (unsigned long long)r.n_pruned_zero,
                     (unsigned long long)r.n_pruned_elems);
        cr_expect(nm_holds_in_file(out, 2, 4), "%s output breaks 2:4",
                  ec_prune_method_name(methods[i]));
        ec_prune_result_release(&r);
        remove(out);
        free(out);
    }
    remove(cal);
    rmdir(dir);
    free(cal);
    free(dir);
    free(model);
}

Test(prune_run, sparsegpt_beats_wanda_beats_magnitude, .timeout = EC_TIMEOUT(60))
{
    char *model = ec_test_shared("models/stories260K");
    char *dir = ec_test_tmpdir();
    char *cal = calib_file(dir);
    const enum ec_prune_method methods[] = {EC_PRUNE_SPARSEGPT, EC_PRUNE_WANDA,
                                            EC_PRUNE_MAGNITUDE};
    double ppl[3];
    double dense = heldout_ppl(model, 20);
    double spread0[2][8]; /* block 0's input spreads: SparseGPT's Hessian, Wanda's norms */
    for (int i = 0; i < 3; i++) {
        char *out = path2(dir, "p.gguf");
        struct ec_prune_opts o;
        ec_prune_opts_init(&o);
        o.input = model;
        o.output = out;
        o.method = methods[i];
        o.sp.ratio = 0.5;
        o.calib = cal;
        o.calib_samples = 32;
        o.calib_len = 256;
        struct ec_prune_result r;
        run_prune(&o, &r);
        double s = (double)r.n_pruned_zero / (double)r.n_pruned_elems;
        cr_expect(s >= 0.5 && s < 0.502, "achieved sparsity %g", s);
        for (size_t t = 0; t < r.n_tensors; t++) {
            cr_expect(r.tensors[t].sparsity >= 0.5 && r.tensors[t].sparsity < 0.51,
                      "%s: sparsity %g", r.tensors[t].name, r.tensors[t].sparsity);
            cr_expect(isfinite(r.tensors[t].recon_err) && r.tensors[t].recon_err > 0 &&
                          r.tensors[t].recon_err < 1,
                      "%s: reconstruction error %g", r.tensors[t].name, r.tensors[t].recon_err);
            cr_expect(methods[i] != EC_PRUNE_SPARSEGPT || isfinite(r.tensors[t].loss));
            /* input-column RMS max / median: measured by the calibrated methods */
            const double sp_t = r.tensors[t].input_spread;
            if (methods[i] == EC_PRUNE_MAGNITUDE)
                cr_expect(isnan(sp_t), "%s: magnitude has no input statistics", r.tensors[t].name);
            else
                cr_expect(isfinite(sp_t) && sp_t >= 1.0, "%s: input spread %g", r.tensors[t].name,
                          sp_t);
            if (i < 2 && t < 8)
                spread0[i][t] = r.tensors[t].src_layer == 0 ? sp_t : NAN;
        }
        if (i == 1) {
            /* block 0 sees the same dense inputs under both methods: the
             * Hessian's diagonal (float sums) and Wanda's norms (double sums)
             * give the same spread; q, k and v share their input */
            int n0 = 0;
            for (int t = 0; t < 8; t++)
                if (!isnan(spread0[0][t])) {
                    n0++;
                    cr_expect(fabs(spread0[0][t] - spread0[1][t]) <= 1e-4 * spread0[1][t],
                              "block 0 tensor %d: spread %g (sparsegpt) vs %g (wanda)", t,
                              spread0[0][t], spread0[1][t]);
                }
            cr_expect_eq(n0, 7, "block 0: %d tensors with a spread", n0);
            cr_expect_eq(spread0[1][0], spread0[1][1]);
            cr_expect_eq(spread0[1][0], spread0[1][2]);
        }
        ec_prune_result_release(&r);
        ppl[i] = heldout_ppl(out, 20);
        remove(out);
        free(out);
    }
    cr_log_info("stories260K 50%%: dense %.3f sparsegpt %.3f wanda %.3f magnitude %.3f", dense,
                ppl[0], ppl[1], ppl[2]);
    cr_expect(dense < ppl[0], "dense %.3f vs sparsegpt %.3f", dense, ppl[0]);
    cr_expect(ppl[0] < ppl[1], "sparsegpt %.3f should beat wanda %.3f", ppl[0], ppl[1]);
    cr_expect(ppl[1] < ppl[2], "wanda %.3f should beat magnitude %.3f", ppl[1], ppl[2]);
    remove(cal);
    rmdir(dir);
    free(cal);
    free(dir);
    free(model);
}

/* HF folder output (HF q/k layout, HF names) reads back to the same tensors
 * as the GGUF output; a per-layer rule leaves attn_v dense. */
Test(prune_run, hf_folder_equals_gguf_and_rules_apply, .timeout = EC_TIMEOUT(60))
{
    char *model = ec_test_shared("models/stories260K");
    char *dir = ec_test_tmpdir();
    char *gg = path2(dir, "p.gguf"), *hf = path2(dir, "hf");
    const struct ec_prune_rule rules[] = {{.pattern = "attn_v", .sp = {0}},
                                          {.pattern = "^blk\\.0\\.", .sp = {.ratio = 0.25}}};
    for (int k = 0; k < 2; k++) {
        struct ec_prune_opts o;
        ec_prune_opts_init(&o);
        o.input = model;
        o.output = k ? hf : gg;
        o.method = EC_PRUNE_MAGNITUDE;
        o.sp.ratio = 0.5;
        o.rules = rules;
        o.n_rules = 2;
        struct ec_prune_result r;
        run_prune(&o, &r);
        ec_prune_result_release(&r);
    }
    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_model a, b;
    cr_assert_eq(ec_model_open(&a, gg, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(ec_model_open(&b, hf, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(a.n_tensors, b.n_tensors);
    for (size_t i = 0; i < a.n_tensors; i++) {
        const struct ec_model_tensor *ta = &a.tensors[i];
        const struct ec_model_tensor *tb = ec_model_find(&b, ta->name);
        cr_assert_not_null(tb, "%s missing from the HF folder", ta->name);
        uint64_t n = ec_model_tensor_n_elems(ta);
        cr_assert_eq(n, ec_model_tensor_n_elems(tb));
        float *wa = malloc(n * sizeof(float)), *wb = malloc(n * sizeof(float));
        cr_assert_eq(ec_model_tensor_read_f32(&a, ta, wa, &d), EC_OK);
        cr_assert_eq(ec_model_tensor_read_f32(&b, tb, wb, &d), EC_OK);
        cr_expect(memcmp(wa, wb, n * sizeof(float)) == 0, "%s differs", ta->name);
        int64_t z = 0;
        for (uint64_t j = 0; j < n; j++)
            z += wa[j] == 0.0f;
        if (strstr(ta->name, "attn_v.weight"))
            cr_expect_eq(z, 0, "%s: %lld zeros, the rule keeps it dense", ta->name, (long long)z);
        else if (strncmp(ta->name, "blk.0.", 6) == 0 && ta->n_dims == 2)
            cr_expect(fabs((double)z / (double)n - 0.25) < 0.01, "%s: %lld zeros", ta->name,
                      (long long)z);
        else if (strncmp(ta->name, "blk.", 4) == 0 && ta->n_dims == 2)
            cr_expect(fabs((double)z / (double)n - 0.5) < 0.01, "%s: %lld zeros", ta->name,
                      (long long)z);
        else
            cr_expect(z < (int64_t)n / 10, "%s should not be pruned", ta->name);
        free(wa);
        free(wb);
    }
    ec_model_close(&a);
    ec_model_close(&b);
    free(gg);
    free(hf);
    free(dir);
    free(model);
}

static void structured_case(const char *spec_name, int heads, double ffn, int layers,
                            uint32_t want_layers, uint32_t want_heads, uint32_t want_kv,
                            uint32_t want_ff)
{
    char *model = ec_test_shared("models/stories-student-256");
    char *dir = ec_test_tmpdir();
    char *cal = calib_file(dir);
    char *out = path2(dir, "s.gguf");
    struct ec_prune_opts o;
    ec_prune_opts_init(&o);
    o.input = model;
    o.output = out;
    o.structured = true;
    o.heads_count = heads;
    o.ffn_ratio = ffn;
    o.layers_count = layers;
    o.calib = cal;
    o.calib_samples = 8;
    o.calib_len = 128;
    struct ec_prune_result r;
    run_prune(&o, &r);
    cr_expect_eq(r.hp_out.n_layer, want_layers);
    cr_expect_eq(r.hp_out.n_head, want_heads);
    cr_expect_eq(r.hp_out.n_head_kv, want_kv);
    cr_expect_eq(r.hp_out.n_ff, want_ff);
    cr_expect(r.n_params_out < r.n_params_in);
    if (layers) {
        /* the removed layer has the lowest block influence */
        int removed = -1;
        for (size_t i = 0; i < r.n_layers; i++)
            if (r.layers[i].out_layer < 0)
                removed = (int)i;
        cr_assert(removed >= 0);
        for (size_t i = 0; i < r.n_layers; i++)
            cr_expect(r.layers[i].block_influence >= r.layers[removed].block_influence);
    }
    ec_prune_result_release(&r);
    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_model m;
    cr_assert_eq(ec_model_open(&m, out, &d), EC_OK, "%s", d.msg);
    cr_expect_eq(m.hp.n_layer, want_layers);
    cr_expect_eq(m.hp.n_head, want_heads);
    cr_expect_eq(m.hp.n_head_kv, want_kv);
    cr_expect_eq(m.hp.n_ff, want_ff);
    cr_expect_eq(m.hp.head_dim, 32);
    ec_model_close(&m);
    double dense = heldout_ppl(model, 10), p = heldout_ppl(out, 10);
    cr_log_info("stories-student-256 %s: dense %.3f pruned %.3f", spec_name, dense, p);
    cr_expect(p > dense * 0.98 && p < dense * 2.0, "%s: ppl %.3f vs dense %.3f", spec_name, p,
              dense);
    remove(out);
    remove(cal);
    rmdir(dir);
    free(out);
    free(cal);
    free(dir);
    free(model);
}

Test(prune_run, structured_heads_and_ffn_make_a_smaller_valid_model, .timeout = EC_TIMEOUT(60))
{
    structured_case("heads=2,ffn=0.25", 2, 0.25, 0, 6, 6, 3, 576);
}

Test(prune_run, structured_layer_removal_drops_the_least_influential, .timeout = EC_TIMEOUT(60))
{
    structured_case("layers=1", 0, 0, 1, 5, 8, 4, 768);
}

Test(prune_run, gqa_head_counts_that_split_groups_are_refused)
{
    char *model = ec_test_shared("models/stories-student-256");
    struct ec_prune_opts o;
    ec_prune_opts_init(&o);
    o.input = model;
    o.output = "/nonexistent/x.gguf";
    o.structured = true;
    o.heads_count = 3; /* neither a multiple of 2 (group) nor of 4 (kv heads) */
    o.calib = "/nonexistent/calib.txt";
    struct ec_prune_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_expect_eq(ec_prune_run(&o, &r, &d), EC_ERR_ARG);
    cr_expect(strstr(d.msg, "heads=3") != NULL, "message: %s", d.msg);
    ec_prune_result_release(&r);
    free(model);
}

Test(prune_run, then_quantize_writes_a_quantized_gguf_and_no_temp, .timeout = EC_TIMEOUT(60))
{
    char *model = ec_test_shared("models/stories-student-256");
    char *dir = ec_test_tmpdir();
    char *out = path2(dir, "q.gguf");
    struct ec_prune_opts o;
    ec_prune_opts_init(&o);
    o.input = model;
    o.output = out;
    o.method = EC_PRUNE_MAGNITUDE;
    o.sp = (struct ec_sparsity){.prune_n = 2, .prune_m = 4};
    o.then_quantize = "Q8_0";
    struct ec_prune_result r;
    run_prune(&o, &r);
    cr_expect_str_eq(r.quantized_to, "Q8_0");
    ec_prune_result_release(&r);
    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_model m;
    cr_assert_eq(ec_model_open(&m, out, &d), EC_OK, "%s", d.msg);
    const struct ec_model_tensor *t = ec_model_find(&m, "blk.0.ffn_up.weight");
    cr_assert_not_null(t);
    cr_expect_eq(t->dtype, EC_Q8_0);
    /* Q8_0 keeps exact zeros: the 2:4 pattern survives quantization */
    float *w = malloc(ec_model_tensor_n_elems(t) * sizeof(float));
    cr_assert_eq(ec_calib_tensor_f32(&m, t, w, &d), EC_OK);
    cr_expect(ec_nm_holds(w, (int64_t)t->ne[1], (int64_t)t->ne[0], 2, 4));
    free(w);
    ec_model_close(&m);
    DIR *dd = opendir(dir);
    cr_assert_not_null(dd);
    int n_files = 0;
    for (struct dirent *de; (de = readdir(dd));)
        n_files += de->d_name[0] != '.';
    closedir(dd);
    cr_expect_eq(n_files, 1, "temporary files left in %s", dir);
    remove(out);
    rmdir(dir);
    free(out);
    free(dir);
    free(model);
}

Test(prune_run, sparsity_specs_parse)
{
    struct ec_sparsity sp;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_expect_eq(ec_sparsity_parse("0.5", &sp, &d), EC_OK);
    cr_expect(sp.ratio == 0.5 && sp.prune_m == 0);
    cr_expect_eq(ec_sparsity_parse("2:4", &sp, &d), EC_OK);
    cr_expect(sp.prune_n == 2 && sp.prune_m == 4);
    cr_expect_eq(ec_sparsity_parse("1.0", &sp, &d), EC_ERR_ARG);
    cr_expect_eq(ec_sparsity_parse("4:2", &sp, &d), EC_ERR_ARG);
    cr_expect_eq(ec_sparsity_parse("x", &sp, &d), EC_ERR_ARG);
}

/* EDGEC_TEST_FULL=1: the figure table (128 windows of 512, all chunks). */
Test(prune_run, full_figures, .timeout = EC_TIMEOUT(3600))
{
    const char *full = getenv("EDGEC_TEST_FULL");
    if (!full || strcmp(full, "1") != 0)
        cr_skip_test("set EDGEC_TEST_FULL=1 for the full perplexity table");
    const char *models[] = {"models/stories260K", "models/stories-student-256"};
    const char *specs[] = {"0.5", "2:4"};
    const enum ec_prune_method methods[] = {EC_PRUNE_SPARSEGPT, EC_PRUNE_WANDA,
                                            EC_PRUNE_MAGNITUDE};
    char *dir = ec_test_tmpdir();
    char *cal = calib_file(dir);
    fprintf(stderr, "| model | spec | dense | SparseGPT | Wanda | magnitude | "
                    "PPL Wanda / magnitude | PPL SparseGPT / Wanda |\n|---|---|---|---|---|---|---|---|\n");
    for (int mi = 0; mi < 2; mi++) {
        char *model = ec_test_shared(models[mi]);
        double dense = heldout_ppl(model, 0);
        for (int si = 0; si < 2; si++) {
            double ppl[3];
            char *outs[3];
            for (int k = 0; k < 3; k++) {
                static const char *const names[] = {"f-sparsegpt.gguf", "f-wanda.gguf",
                                                    "f-magnitude.gguf"};
                char *out = outs[k] = path2(dir, names[k]);
                struct ec_prune_opts o;
                ec_prune_opts_init(&o);
                o.input = model;
                o.output = out;
                o.method = methods[k];
                struct ec_diag d;
                ec_diag_clear(&d);
                cr_assert_eq(ec_sparsity_parse(specs[si], &o.sp, &d), EC_OK);
                o.calib = cal;
                struct ec_prune_result r;
                run_prune(&o, &r);
                ec_prune_result_release(&r);
                if (o.sp.prune_m)
                    cr_expect(nm_holds_in_file(out, 2, 4));
                ppl[k] = heldout_ppl(out, 0);
            }
            /* the differences with their paired errors: the three models'
             * per-token losses are strongly correlated, so this tells a real
             * gap from chance where the PPLs' own +/- (1.5 %) cannot */
            double r_wm, e_wm, r_sw, e_sw;
            paired_ratio(outs[2], outs[1], &r_wm, &e_wm);
            paired_ratio(outs[1], outs[0], &r_sw, &e_sw);
            for (int k = 0; k < 3; k++) {
                remove(outs[k]);
                free(outs[k]);
            }
            fprintf(stderr,
                    "| %s | %s | %.3f | %.3f | %.3f | %.3f | %.5f ± %.5f | %.5f ± %.5f |\n",
                    models[mi] + 7, specs[si], dense, ppl[0], ppl[1], ppl[2], r_wm, e_wm, r_sw,
                    e_sw);
            /* SparseGPT must win everywhere. Wanda < magnitude holds on
             * stories260K but NOT on stories-student-256 (measured 50 %:
             * wanda 7.889 vs magnitude 7.842, paired ratio 1.00598 +/- 0.00139,
             * the same over six seeds; 2:4: 8.728 vs 8.716, a tie within
             * 1.00134 +/- 0.00180), so it is only asserted on the former. The
             * student's q/k/v and gate/up inputs have an input_spread of
             * 1.2-1.3, so Wanda's weighting is close to none (README). */
            cr_expect(ppl[0] < ppl[1] && ppl[0] < ppl[2], "%s %s: sparsegpt not best",
                      models[mi], specs[si]);
            /* and by more than two paired standard errors */
            cr_expect(r_sw + 2 * e_sw < 1, "%s %s: sparsegpt / wanda %.5f +/- %.5f", models[mi],
                      specs[si], r_sw, e_sw);
            if (mi == 0) {
                cr_expect(ppl[1] < ppl[2], "%s %s: wanda vs magnitude", models[mi], specs[si]);
                cr_expect(r_wm + 2 * e_wm < 1, "%s %s: wanda / magnitude %.5f +/- %.5f",
                          models[mi], specs[si], r_wm, e_wm);
            }
        }
        free(model);
    }
    remove(cal);
    rmdir(dir);
    free(cal);
    free(dir);
}
