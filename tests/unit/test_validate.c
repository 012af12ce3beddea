/* KL-divergence statistics as llama-perplexity computes them: the uint16
 * base record, one position's KLD / top-1 / delta p, percentiles, and the
 * report formats. The whole comparison against llama.cpp's printed figures
 * runs in tests/cli/validate.sh. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/validate.h"

static double kl_exact(const float *p_logits, const float *q_logits, int n)
{
    double mp = -INFINITY, mq = -INFINITY, sp = 0, sq = 0, kl = 0;
    for (int i = 0; i < n; i++) {
        mp = fmax(mp, p_logits[i]);
        mq = fmax(mq, q_logits[i]);
    }
    for (int i = 0; i < n; i++) {
        sp += exp(p_logits[i] - mp);
        sq += exp(q_logits[i] - mq);
    }
    for (int i = 0; i < n; i++) {
        double lp = p_logits[i] - mp - log(sp), lq = q_logits[i] - mq - log(sq);
        kl += exp(lp) * (lp - lq);
    }
    return kl;
}

Test(validate, record_words_pad_to_even)
{
    cr_expect_eq(ec_kld_record_words(512), 516);
    cr_expect_eq(ec_kld_record_words(511), 516);
    cr_expect_eq(ec_kld_record_words(1), 6);
}

Test(validate, identical_logits_give_zero_kld_and_same_top)
{
    enum { N = 300 };
    float l[N];
    uint16_t rec[N + 4];
    for (int i = 0; i < N; i++)
        l[i] = (float)sin(i * 0.37) * 4.f;
    ec_kld_base_encode(l, N, rec);
    struct ec_kld_position p;
    ec_kld_position_eval(l, N, rec, 17, &p);
    cr_expect(fabs(p.kld) < 1e-5, "kld %g", p.kld);
    cr_expect(p.same_top);
    cr_expect(fabsf(p.p_diff) < 1e-4f, "dp %g", p.p_diff);
    cr_expect(fabsf(p.nll - p.nll_base) < 1e-3f, "nll %g base %g", p.nll, p.nll_base);
}

Test(validate, kld_matches_the_exact_divergence_within_the_code_step)
{
    enum { N = 64 };
    float a[N], b[N];
    uint16_t rec[N + 4];
    for (int i = 0; i < N; i++) {
        a[i] = (float)cos(i * 0.91) * 3.f;
        b[i] = a[i] + (float)sin(i * 1.7) * 0.3f;
    }
    ec_kld_base_encode(a, N, rec);
    struct ec_kld_position p;
    ec_kld_position_eval(b, N, rec, 5, &p);
    double want = kl_exact(a, b, N);
    /* the uint16 step is (max - min) / 65535 < 1e-4 nats here */
    cr_expect(fabs(p.kld - want) < 2e-4, "kld %.6g, exact %.6g", p.kld, want);
    cr_expect(p.kld > 0.01, "a real divergence: %g", p.kld);
}

Test(validate, different_top_token_is_counted)
{
    float a[4] = {0, 5, 1, 2}, b[4] = {0, 1, 5, 2};
    uint16_t rec[8];
    ec_kld_base_encode(a, 4, rec);
    struct ec_kld_position p;
    ec_kld_position_eval(b, 4, rec, 1, &p);
    cr_expect(!p.same_top);
    cr_expect(p.p_diff < -0.5f, "token 1 lost most of its probability: %g", p.p_diff);
    cr_expect(fabs(p.kld - kl_exact(a, b, 4)) < 1e-3, "%g vs %g", p.kld, kl_exact(a, b, 4));
}

Test(validate, entries_16_nats_below_the_max_are_clamped)
{
    float a[3] = {0, -30, -5};
    uint16_t rec[8];
    ec_kld_base_encode(a, 3, rec);
    float scale, minlp;
    memcpy(&scale, rec, 4);
    memcpy(&minlp, rec + 2, 4);
    cr_expect_eq(rec[4 + 1], 0, "the -30 logit is below max - 16");
    cr_expect(fabsf(scale - 16.f / 65535.f) < 1e-9f);
    cr_expect(minlp < -16.f);
}

Test(validate, percentile_interpolates_linearly)
{
    float v[5] = {1, 2, 3, 4, 10};
    cr_expect_float_eq(ec_percentile_sorted(v, 5, 0.5), 3.0, 1e-6);
    cr_expect_float_eq(ec_percentile_sorted(v, 5, 0.875), 4 + 0.5 * 6, 1e-6);
    cr_expect_float_eq(ec_percentile_sorted(v, 5, 0.0), 1.0, 1e-6);
    cr_expect_float_eq(ec_percentile_sorted(v, 5, 1.0), 10.0, 1e-6);
}

static struct ec_validate_stats fake_stats(float *k)
{
    struct ec_validate_stats s;
    memset(&s, 0, sizeof s);
    s.n_chunks = 1;
    s.n_scored = 4;
    s.ppl_ref = 5;
    s.ppl_cand = 6;
    s.ppl_ratio = 1.2;
    s.kld_mean = 0.5;
    s.top1 = 0.75;
    s.kld_sorted = k;
    s.n_route = 2;
    s.route[0] = (struct ec_route_row){0.0, 1.0, 0.75};
    s.route[1] = (struct ec_route_row){0.5, 0.5, 1.0};
    return s;
}

Test(validate, route_recommendation_is_the_lowest_tau_reaching_the_target)
{
    float k[4] = {0.001f, 0.01f, 0.1f, 1.f};
    struct ec_validate_stats s = fake_stats(k);
    cr_expect_float_eq(ec_route_recommend(&s, 0.7), 0.0, 1e-12);
    cr_expect_float_eq(ec_route_recommend(&s, 0.9), 0.5, 1e-12);
    cr_expect(isnan(ec_route_recommend(&s, 1.01)));
}

Test(validate, reports_name_the_failed_check_and_escape_paths)
{
    float k[4] = {0.001f, 0.01f, 0.1f, 1.f};
    struct ec_validate_stats s = fake_stats(k);
    struct ec_validate_report r = {.ref_path = "ref<&>.gguf", .cand_path = "c|a_nd.gguf",
                                   .text_path = "t.txt", .n_ctx = 8, .s = &s,
                                   .route_target = NAN, .route_tau = NAN, .n_checks = 1,
                                   .passed = false};
    r.checks[0] = (struct ec_check){"kld_mean", 0.5, 0.1, true, false};
    const enum ec_report_format fmts[3] = {EC_REPORT_JSON, EC_REPORT_MD, EC_REPORT_HTML};
    for (int i = 0; i < 3; i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        cr_assert(ec_validate_report_write(f, fmts[i], &r));
        fclose(f);
        cr_expect(strstr(buf, "kld_mean") != NULL, "format %d names the check", i);
        if (fmts[i] == EC_REPORT_HTML) {
            cr_expect(strstr(buf, "ref&lt;&amp;&gt;.gguf") != NULL);
            cr_expect(strstr(buf, "<svg") != NULL);
            cr_expect(strstr(buf, "<script") == NULL && strstr(buf, "http://") == strstr(buf, "http://www.w3.org"));
        }
        if (fmts[i] == EC_REPORT_MD)
            cr_expect(strstr(buf, "c\\|a\\_nd.gguf") != NULL, "%s", buf);
        if (fmts[i] == EC_REPORT_JSON)
            cr_expect(strstr(buf, "\"passed\":\tfalse") != NULL, "%s", buf);
        free(buf);
    }
    enum ec_report_format f;
    cr_expect(ec_report_format_from_path("x/r.HTML", &f) && f == EC_REPORT_HTML);
    cr_expect(!ec_report_format_from_path("r.txt", &f));
}
