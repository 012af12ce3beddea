/* edgec validate: the gate before shipping a compressed model. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "edgec/engine.h"
#include "edgec/io.h"
#include "edgec/log.h"
#include "edgec/model.h"
#include "edgec/tokenizer.h"
#include "edgec/validate.h"

#ifndef EDGEC_VERSION
#define EDGEC_VERSION "0.1.0"
#endif

static const char usage[] =
    "edgec validate REF CAND (--text FILE | --tokens FILE.i32) [--ctx N] [--batch N] "
    "[--chunks N] [--max-kld X] [--max-ppl-ratio X] [--min-top1 X] [--route-target A] "
    "[--report OUT.json|.md|.html]... [--no-tensors] [--json]";
static const char description[] =
    "Compare CAND (the compressed model) with REF (the original); each a checkpoint folder or\n"
    "a .gguf. Both evaluate the text chunked as llama-perplexity does; KL divergence, same\n"
    "top-1 and delta-p are computed exactly as llama-perplexity --kl-divergence, perplexities as\n"
    "edgec perplexity. The PPL ratio's +/- is paired (the standard error of the per-token\n"
    "loss differences, as llama.cpp's Mean PPL(Q)/PPL(base)): it says whether two models differ\n"
    "on this text beyond chance. Tensors present in both (matched by GGUF name, so HF and GGUF\n"
    "meet) get RMSE, relative error, SNR and cosine similarity. Thresholds set the exit code:\n"
    "0 when all pass, 1 when one fails (the report names it). --report may be given several\n"
    "times; the format follows the extension (.json, .md for a pull-request comment, .html\n"
    "with charts).\n"
    "Routing: for thresholds tau on CAND's top probability, the share of tokens CAND would\n"
    "answer alone and its top-1 agreement with REF there; --route-target A recommends the\n"
    "lowest tau reaching agreement A (a fraction, e.g. 0.99).\n"
    "The forward pass is edgec perplexity's (EDGEC_NO_QDOT=1: F32 products for every type).";

static void on_chunk(void *user, int64_t chunk, int64_t n_chunks)
{
    struct ec_progress *p = user;
    ec_progress_update(p, (uint64_t)(chunk + 1), 0);
    (void)n_chunks;
}

static void add_check(struct ec_validate_report *r, const char *name, double value, double thr,
                      bool is_max)
{
    struct ec_check *c = &r->checks[r->n_checks++];
    c->name = name;
    c->value = value;
    c->threshold = thr;
    c->is_max = is_max;
    c->passed = is_max ? value <= thr : value >= thr; /* NaN fails */
    if (!c->passed)
        r->passed = false;
}

static int write_report(const char *path, const struct ec_validate_report *r,
                        const char *const *inputs, struct ec_diag *d)
{
    enum ec_report_format fmt;
    if (!ec_report_format_from_path(path, &fmt))
        return ec_cli_usage_error("validate", "--report %s: unknown extension (use .json, .md "
                                  "or .html)", path);
    struct ec_outfile o;
    memset(&o, 0, sizeof o);
    if (ec_outfile_open(&o, path, inputs, d) != EC_OK)
        return ec_cli_fail(d);
    if (!ec_validate_report_write(o.fp, fmt, r) || ferror(o.fp)) {
        ec_outfile_abort(&o);
        ec_fail(d, EC_ERR_IO, "%s: cannot write the report", path);
        return ec_cli_fail(d);
    }
    if (ec_outfile_commit(&o, d) != EC_OK)
        return ec_cli_fail(d);
    ec_log_info("report written to %s", path);
    return 0;
}

static void print_text(const struct ec_validate_report *r)
{
    const struct ec_validate_stats *s = r->s;
    printf("PPL ref            %.4f +/- %.5f\n", s->ppl_ref, s->ppl_ref_err);
    printf("PPL cand           %.4f +/- %.5f\n", s->ppl_cand, s->ppl_cand_err);
    printf("PPL ratio          %.5f +/- %.5f (paired, correlation %.2f %%)\n", s->ppl_ratio,
           s->ppl_ratio_err, 100 * s->ppl_cor);
    printf("Mean KLD           %.6f +/- %.6f\n", s->kld_mean, s->kld_mean_err);
    printf("KLD median/99%%/max %.6f / %.6f / %.6f\n", s->kld_median, s->kld_p99, s->kld_max);
    printf("Same top-1         %.3f +/- %.3f %%\n", 100 * s->top1, 100 * s->top1_err);
    printf("RMS delta p        %.3f +/- %.3f %%\n", 100 * s->rms_dp, 100 * s->rms_dp_err);
    if (r->tensors && r->tensors->n) {
        const struct ec_tensor_err *worst = &r->tensors->t[0];
        for (size_t i = 1; i < r->tensors->n; i++)
            if (r->tensors->t[i].rel_err > worst->rel_err)
                worst = &r->tensors->t[i];
        printf("Tensors            %zu compared, worst %s: rel %.3e, SNR %.1f dB, cos %.6f\n",
               r->tensors->n, worst->name, worst->rel_err, worst->snr_db, worst->cosine);
    }
    if (isfinite(r->route_target)) {
        if (isfinite(r->route_tau)) {
            for (int i = 0; i < s->n_route; i++)
                if (s->route[i].tau == r->route_tau)
                    printf("Routing            tau %.2f: candidate answers %.1f %% of tokens "
                           "alone with %.2f %% top-1 agreement (target %.2f %%)\n",
                           r->route_tau, 100 * s->route[i].share, 100 * s->route[i].agreement,
                           100 * r->route_target);
        } else {
            printf("Routing            no threshold reaches %.2f %% agreement\n",
                   100 * r->route_target);
        }
    }
    for (int i = 0; i < r->n_checks; i++)
        printf("check %-14s %.6g %s %.6g: %s\n", r->checks[i].name, r->checks[i].value,
               r->checks[i].is_max ? "<=" : ">=", r->checks[i].threshold,
               r->checks[i].passed ? "pass" : "FAIL");
    printf("%s\n", r->passed ? "PASSED" : "FAILED");
}

int ec_cmd_validate(int argc, char **argv)
{
    struct ec_common_opts c = {0};
    const char *text_path = NULL, *tokens_path = NULL;
    long ctx = 512, batch = 0, chunks = 0, threads = 0;
    double max_kld = NAN, max_ppl_ratio = NAN, min_top1 = NAN, route_target = NAN;
    bool no_tensors = false, kv_f32 = false;
    struct ec_strlist reports = {0};
    const struct ec_opt opts[] = {
        {"text", 'f', EC_OPT_STRING, &text_path, "FILE", "UTF-8 evaluation text"},
        {"tokens", 0, EC_OPT_STRING, &tokens_path, "FILE",
         "pre-tokenized ids (int32 little-endian, BOS included) instead of --text"},
        {"ctx", 'c', EC_OPT_INT, &ctx, "N", "chunk length in tokens (default 512)"},
        {"batch", 'b', EC_OPT_INT, &batch, "N", "tokens per forward call (default: ctx)"},
        {"chunks", 0, EC_OPT_INT, &chunks, "N", "use only the first N chunks (default all)"},
        {"threads", 't', EC_OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"max-kld", 0, EC_OPT_DOUBLE, &max_kld, "X", "fail when the mean KLD exceeds X (nats)"},
        {"max-ppl-ratio", 0, EC_OPT_DOUBLE, &max_ppl_ratio, "X",
         "fail when PPL(cand)/PPL(ref) exceeds X"},
        {"min-top1", 0, EC_OPT_DOUBLE, &min_top1, "X",
         "fail when the same-top-1 share is below X (0..1)"},
        {"route-target", 0, EC_OPT_DOUBLE, &route_target, "A",
         "recommend the lowest confidence threshold with top-1 agreement >= A (0..1)"},
        {"report", 'o', EC_OPT_MULTI, &reports, "OUT", "write a report (.json, .md, .html)"},
        {"no-tensors", 0, EC_OPT_FLAG, &no_tensors, NULL, "skip the per-tensor comparison"},
        {"kv-f32", 0, EC_OPT_FLAG, &kv_f32, NULL, "F32 KV cache (default F16, as llama.cpp)"},
        {"json", 0, EC_OPT_FLAG, &c.json, NULL, "print the JSON report on stdout"},
        EC_COMMON_OPTS(c),
        {NULL, 0, EC_OPT_END, NULL, NULL, NULL},
    };
    const char **pos = NULL;
    size_t n_pos = 0;
    int code = 0;
    if (ec_cli_parse(usage, description, opts, &c, argc, argv, &pos, &n_pos, &code) != 0) {
        ec_strlist_release(&reports);
        return code;
    }
    if (n_pos != 2) {
        free((void *)pos);
        ec_strlist_release(&reports);
        return ec_cli_usage_error("validate", "expected REF and CAND, got %zu arguments", n_pos);
    }
    const char *ref_path = pos[0], *cand_path = pos[1];
    free((void *)pos);
    int bad = ec_cli_check_text_opts("validate", text_path, tokens_path, ctx, batch, chunks,
                                     threads);
    if (!bad && ((!isnan(min_top1) && (min_top1 < 0 || min_top1 > 1)) ||
                 (!isnan(route_target) && (route_target < 0 || route_target > 1))))
        bad = ec_cli_usage_error("validate", "--min-top1 and --route-target are fractions "
                                 "between 0 and 1");
    if (!bad && ((!isnan(max_kld) && !(max_kld >= 0)) ||
                 (!isnan(max_ppl_ratio) && !(max_ppl_ratio > 0))))
        bad = ec_cli_usage_error("validate", "--max-kld must be >= 0 and --max-ppl-ratio > 0");
    for (size_t i = 0; !bad && i < reports.n; i++) {
        enum ec_report_format f;
        if (!ec_report_format_from_path(reports.items[i], &f))
            bad = ec_cli_usage_error("validate", "--report %s: unknown extension (use .json, "
                                     ".md or .html)", reports.items[i]);
    }
    if (bad) {
        ec_strlist_release(&reports);
        return bad;
    }

    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_model mr, mc;
    memset(&mr, 0, sizeof mr);
    memset(&mc, 0, sizeof mc);
    struct ec_engine *er = NULL, *ec = NULL;
    int32_t *tokens = NULL;
    int64_t n_tokens = 0;
    struct ec_validate_stats s;
    memset(&s, 0, sizeof s);
    struct ec_tensor_report tr;
    memset(&tr, 0, sizeof tr);
    int rc = 0;
    enum ec_status st;
    if ((st = ec_model_open(&mr, ref_path, &d)) != EC_OK ||
        (st = ec_model_open(&mc, cand_path, &d)) != EC_OK)
        goto out_fail;
    if (tokens_path)
        st = ec_tokens_from_i32_file(tokens_path, &tokens, &n_tokens, &d);
    else
        st = ec_tokens_from_text_file(&mr.vocab, text_path, &tokens, &n_tokens, &d);
    if (st != EC_OK)
        goto out_fail;
    struct ec_engine_opts eo;
    ec_engine_opts_init(&eo);
    eo.n_ctx = (uint32_t)ctx;
    eo.n_threads = (int)threads;
    eo.kv_f16 = !kv_f32;
    if ((st = ec_engine_new(&er, &mr, &eo, &d)) != EC_OK ||
        (st = ec_engine_new(&ec, &mc, &eo, &d)) != EC_OK)
        goto out_fail;

    int64_t n_chunks = n_tokens / ctx;
    if (chunks > 0 && chunks < n_chunks)
        n_chunks = chunks;
    struct ec_progress prog;
    ec_progress_begin(&prog, "validate", (uint64_t)(n_chunks > 0 ? n_chunks : 1));
    struct ec_validate_opts vo = {
        .n_ctx = ctx,
        .n_batch = batch,
        .max_chunks = chunks,
        .bos_id = ec_vocab_chunk_bos(&mr.vocab),
        .on_chunk = on_chunk,
        .user = &prog,
    };
    st = ec_validate_run(er, ec, tokens, n_tokens, &vo, &s, &d);
    ec_progress_end(&prog);
    if (st != EC_OK)
        goto out_fail;
    if (!no_tensors && (st = ec_tensor_compare(&mr, &mc, &tr, &d)) != EC_OK)
        goto out_fail;

    struct ec_validate_report r = {
        .ref_path = ref_path,
        .cand_path = cand_path,
        .text_path = tokens_path ? tokens_path : text_path,
        .version = "edgec " EDGEC_VERSION,
        .n_ctx = ctx,
        .s = &s,
        .tensors = no_tensors ? NULL : &tr,
        .passed = true,
        .route_target = route_target,
        .route_tau = isnan(route_target) ? NAN : ec_route_recommend(&s, route_target),
    };
    if (!isnan(max_kld))
        add_check(&r, "kld_mean", s.kld_mean, max_kld, true);
    if (!isnan(max_ppl_ratio))
        add_check(&r, "ppl_ratio", s.ppl_ratio, max_ppl_ratio, true);
    if (!isnan(min_top1))
        add_check(&r, "top1_agreement", s.top1, min_top1, false);

    const char *inputs[] = {ref_path, cand_path, text_path, tokens_path, NULL};
    const char *in_list[5];
    size_t n_in = 0;
    for (size_t i = 0; i < 4; i++)
        if (inputs[i])
            in_list[n_in++] = inputs[i];
    in_list[n_in] = NULL;
    for (size_t i = 0; i < reports.n; i++)
        if ((rc = write_report(reports.items[i], &r, in_list, &d)) != 0)
            goto out_free;
    if (c.json)
        ec_validate_report_write(stdout, EC_REPORT_JSON, &r);
    else
        print_text(&r);
    for (int i = 0; i < r.n_checks; i++)
        if (!r.checks[i].passed)
            ec_log_warn("validate: %s = %.6g, threshold %s %.6g: FAIL", r.checks[i].name,
                        r.checks[i].value, r.checks[i].is_max ? "<=" : ">=",
                        r.checks[i].threshold);
    rc = ec_cli_finish(r.passed ? EC_EXIT_OK : EC_EXIT_THRESHOLD);
    goto out_free;

out_fail:
    rc = ec_cli_fail(&d);
out_free:
    ec_tensor_report_release(&tr);
    ec_validate_stats_release(&s);
    ec_engine_free(er);
    ec_engine_free(ec);
    free(tokens);
    ec_model_close(&mr);
    ec_model_close(&mc);
    ec_strlist_release(&reports);
    return rc;
}
