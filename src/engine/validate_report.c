/* edgec validate's report: JSON (cJSON), Markdown for a pull-request comment,
 * and one self-contained HTML page (inline CSS and SVG, no scripts, no
 * external resources). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "edgec/validate.h"

bool ec_report_format_from_path(const char *path, enum ec_report_format *out)
{
    const char *dot = strrchr(path, '.');
    if (!dot)
        return false;
    if (strcasecmp(dot, ".json") == 0)
        *out = EC_REPORT_JSON;
    else if (strcasecmp(dot, ".md") == 0 || strcasecmp(dot, ".markdown") == 0)
        *out = EC_REPORT_MD;
    else if (strcasecmp(dot, ".html") == 0 || strcasecmp(dot, ".htm") == 0)
        *out = EC_REPORT_HTML;
    else
        return false;
    return true;
}

/* ---- JSON ---- */

static void jnum(cJSON *o, const char *k, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static bool write_json(FILE *f, const struct ec_validate_report *r)
{
    const struct ec_validate_stats *s = r->s;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return false;
    cJSON_AddStringToObject(j, "tool", "edgec validate");
    if (r->version)
        cJSON_AddStringToObject(j, "version", r->version);
    cJSON_AddStringToObject(j, "ref", r->ref_path);
    cJSON_AddStringToObject(j, "cand", r->cand_path);
    cJSON_AddStringToObject(j, "text", r->text_path ? r->text_path : "");
    jnum(j, "n_ctx", (double)r->n_ctx);
    jnum(j, "n_chunks", (double)s->n_chunks);
    jnum(j, "n_tokens_scored", (double)s->n_scored);
    cJSON_AddBoolToObject(j, "passed", r->passed);
    jnum(j, "ppl_ref", s->ppl_ref);
    jnum(j, "ppl_ref_err", s->ppl_ref_err);
    jnum(j, "ppl_cand", s->ppl_cand);
    jnum(j, "ppl_cand_err", s->ppl_cand_err);
    jnum(j, "ppl_ratio", s->ppl_ratio);
    jnum(j, "ppl_ratio_err", s->ppl_ratio_err);
    jnum(j, "ppl_cor", s->ppl_cor);
    jnum(j, "kld_mean", s->kld_mean);
    jnum(j, "kld_mean_err", s->kld_mean_err);
    jnum(j, "kld_median", s->kld_median);
    jnum(j, "kld_p99", s->kld_p99);
    jnum(j, "kld_p999", s->kld_p999);
    jnum(j, "kld_max", s->kld_max);
    jnum(j, "kld_min", s->kld_min);
    jnum(j, "top1_agreement", s->top1);
    jnum(j, "top1_agreement_err", s->top1_err);
    jnum(j, "rms_dp", s->rms_dp);
    jnum(j, "rms_dp_err", s->rms_dp_err);
    cJSON *lc = cJSON_AddObjectToObject(j, "llama_cpp");
    jnum(lc, "mean_ppl_q", s->lc_ppl_q);
    jnum(lc, "mean_ppl_q_err", s->lc_ppl_q_err);
    jnum(lc, "mean_ppl_base", s->lc_ppl_base);
    jnum(lc, "mean_ppl_base_err", s->lc_ppl_base_err);
    jnum(lc, "cor_ln_ppl", s->lc_cor);
    jnum(lc, "mean_ln_ppl_ratio", s->lc_ln_ratio);
    jnum(lc, "mean_ln_ppl_ratio_err", s->lc_ln_ratio_err);
    jnum(lc, "mean_ppl_ratio", s->lc_ratio);
    jnum(lc, "mean_ppl_ratio_err", s->lc_ratio_err);
    jnum(lc, "mean_ppl_diff", s->lc_diff);
    jnum(lc, "mean_ppl_diff_err", s->lc_diff_err);
    jnum(lc, "kld_p10", s->kld_p10);
    jnum(lc, "kld_p5", s->kld_p5);
    jnum(lc, "kld_p1", s->kld_p1);
    jnum(lc, "dp_mean", s->dp_mean);
    jnum(lc, "dp_max", s->dp_max);
    jnum(lc, "dp_p99", s->dp_p99);
    jnum(lc, "dp_median", s->dp_median);
    jnum(lc, "dp_p1", s->dp_p1);
    jnum(lc, "dp_min", s->dp_min);
    cJSON *checks = cJSON_AddArrayToObject(j, "checks");
    for (int i = 0; i < r->n_checks; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "name", r->checks[i].name);
        jnum(c, "value", r->checks[i].value);
        jnum(c, "threshold", r->checks[i].threshold);
        cJSON_AddStringToObject(c, "rule", r->checks[i].is_max ? "<=" : ">=");
        cJSON_AddBoolToObject(c, "passed", r->checks[i].passed);
        cJSON_AddItemToArray(checks, c);
    }
    cJSON *route = cJSON_AddObjectToObject(j, "routing");
    jnum(route, "target", r->route_target);
    jnum(route, "recommended_tau", r->route_tau);
    cJSON *rows = cJSON_AddArrayToObject(route, "thresholds");
    for (int i = 0; i < s->n_route; i++) {
        cJSON *c = cJSON_CreateObject();
        jnum(c, "tau", s->route[i].tau);
        jnum(c, "share_local", s->route[i].share);
        jnum(c, "top1_agreement", s->route[i].agreement);
        cJSON_AddItemToArray(rows, c);
    }
    cJSON *ts = cJSON_AddArrayToObject(j, "tensors");
    if (r->tensors) {
        for (size_t i = 0; i < r->tensors->n; i++) {
            const struct ec_tensor_err *e = &r->tensors->t[i];
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "name", e->name);
            jnum(c, "layer", e->layer);
            cJSON_AddStringToObject(c, "ref_type", ec_dtype_name(e->ref_type));
            cJSON_AddStringToObject(c, "cand_type", ec_dtype_name(e->cand_type));
            jnum(c, "n_elems", (double)e->n_elems);
            jnum(c, "rmse", e->rmse);
            jnum(c, "rel_err", e->rel_err);
            jnum(c, "snr_db", e->snr_db);
            jnum(c, "cosine", e->cosine);
            cJSON_AddItemToArray(ts, c);
        }
        jnum(j, "tensors_only_in_ref", (double)r->tensors->n_only_ref);
        jnum(j, "tensors_only_in_cand", (double)r->tensors->n_only_cand);
        jnum(j, "tensors_shape_mismatch", (double)r->tensors->n_shape_mismatch);
    }
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    if (!txt)
        return false;
    bool ok = fputs(txt, f) >= 0 && fputc('\n', f) != EOF;
    free(txt);
    return ok;
}

/* ---- Markdown ---- */

static void md_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (strchr("|*_`<>[]\\", *s))
            fputc('\\', f);
        fputc(*s, f);
    }
}

/* fmt is always one of this file's literals */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static const char *fmt_g(char *buf, size_t n, double v, const char *fmt)
{
    if (!isfinite(v))
        snprintf(buf, n, "%s", isnan(v) ? "n/a" : v > 0 ? "inf" : "-inf");
    else
        snprintf(buf, n, fmt, v);
    return buf;
}
#pragma GCC diagnostic pop

static bool write_md(FILE *f, const struct ec_validate_report *r)
{
    const struct ec_validate_stats *s = r->s;
    char b1[64], b2[64];
    fprintf(f, "### edgec validate: %s\n\n", r->passed ? "✅ PASSED" : "❌ FAILED");
    fprintf(f, "`");
    md_escape(f, r->cand_path);
    fprintf(f, "` against `");
    md_escape(f, r->ref_path);
    fprintf(f, "`, %lld chunks of %lld tokens, %lld tokens scored.\n\n", (long long)s->n_chunks,
            (long long)r->n_ctx, (long long)s->n_scored);
    if (r->n_checks) {
        fprintf(f, "| check | value | threshold | result |\n|---|---|---|---|\n");
        for (int i = 0; i < r->n_checks; i++)
            fprintf(f, "| %s | %s | %s %s | %s |\n", r->checks[i].name,
                    fmt_g(b1, sizeof b1, r->checks[i].value, "%.6g"),
                    r->checks[i].is_max ? "≤" : "≥",
                    fmt_g(b2, sizeof b2, r->checks[i].threshold, "%.6g"),
                    r->checks[i].passed ? "pass" : "**FAIL**");
        fprintf(f, "\n");
    }
    fprintf(f, "| metric | value |\n|---|---|\n");
    fprintf(f, "| PPL (ref) | %.4f ± %.4f |\n", s->ppl_ref, s->ppl_ref_err);
    fprintf(f, "| PPL (cand) | %.4f ± %.4f |\n", s->ppl_cand, s->ppl_cand_err);
    fprintf(f, "| PPL ratio (paired ±) | %.5f ± %.5f |\n", s->ppl_ratio, s->ppl_ratio_err);
    fprintf(f, "| KLD mean | %.6f ± %.6f |\n", s->kld_mean, s->kld_mean_err);
    fprintf(f, "| KLD median / p99 / max | %.6f / %.6f / %.6f |\n", s->kld_median, s->kld_p99,
            s->kld_max);
    fprintf(f, "| same top-1 | %.3f %% ± %.3f |\n", 100 * s->top1, 100 * s->top1_err);
    fprintf(f, "| RMS Δp | %.3f %% ± %.3f |\n\n", 100 * s->rms_dp, 100 * s->rms_dp_err);
    fprintf(f, "<details><summary>Routing: share of tokens the candidate answers alone</summary>"
               "\n\n| τ (top p ≥) | share local | top-1 agreement |\n|---|---|---|\n");
    for (int i = 0; i < s->n_route; i++)
        fprintf(f, "| %.2f | %.1f %% | %s |\n", s->route[i].tau, 100 * s->route[i].share,
                fmt_g(b1, sizeof b1, 100 * s->route[i].agreement, "%.2f %%"));
    if (isfinite(r->route_target))
        fprintf(f, "\nTarget agreement %.2f %%: %s\n", 100 * r->route_target,
                isfinite(r->route_tau) ? fmt_g(b1, sizeof b1, r->route_tau, "lowest τ = %.2f")
                                       : "no threshold reaches it");
    fprintf(f, "\n</details>\n\n");
    if (r->tensors && r->tensors->n) {
        fprintf(f, "<details><summary>Per-tensor error (%zu tensors)</summary>\n\n"
                   "| tensor | type | rel. error | SNR dB | cosine |\n|---|---|---|---|---|\n",
                r->tensors->n);
        for (size_t i = 0; i < r->tensors->n; i++) {
            const struct ec_tensor_err *e = &r->tensors->t[i];
            fprintf(f, "| %s | %s→%s | %s | ", e->name, ec_dtype_name(e->ref_type),
                    ec_dtype_name(e->cand_type), fmt_g(b1, sizeof b1, e->rel_err, "%.3e"));
            fprintf(f, "%s | %.6f |\n", fmt_g(b2, sizeof b2, e->snr_db, "%.1f"), e->cosine);
        }
        fprintf(f, "\n</details>\n");
    }
    return !ferror(f);
}

/* ---- HTML ---- */

static void html_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* horizontal bars of the per-tensor relative error (log scale) */
static void svg_tensors(FILE *f, const struct ec_tensor_report *t)
{
    const int bar = 12, left = 260, width = 820, plot = width - left - 70;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < t->n; i++) {
        double v = t->t[i].rel_err;
        if (v > 0 && isfinite(v)) {
            lo = fmin(lo, log10(v));
            hi = fmax(hi, log10(v));
        }
    }
    if (!isfinite(lo)) {
        lo = -8;
        hi = 0;
    }
    lo = floor(lo);
    hi = ceil(hi);
    if (hi <= lo)
        hi = lo + 1;
    const int height = (int)t->n * (bar + 2) + 40;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "role=\"img\" aria-label=\"relative error per tensor\">\n", width, height);
    for (double g = lo; g <= hi; g += 1) {
        double x = left + (g - lo) / (hi - lo) * plot;
        fprintf(f, "<line x1=\"%.1f\" y1=\"20\" x2=\"%.1f\" y2=\"%d\" class=\"grid\"/>"
                   "<text x=\"%.1f\" y=\"14\" class=\"ax\" text-anchor=\"middle\">1e%d</text>\n",
                x, x, height - 16, x, (int)g);
    }
    for (size_t i = 0; i < t->n; i++) {
        const struct ec_tensor_err *e = &t->t[i];
        double y = 22 + (double)i * (bar + 2);
        double v = e->rel_err > 0 && isfinite(e->rel_err) ? log10(e->rel_err) : lo;
        double w = (v - lo) / (hi - lo) * plot;
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" class=\"lbl\" text-anchor=\"end\">", left - 6,
                y + bar - 2);
        html_escape(f, e->name);
        fprintf(f, "</text><rect x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" class=\"b%d\">"
                   "<title>%s rel %.3e, SNR %.1f dB, cos %.6f</title></rect>"
                   "<text x=\"%.1f\" y=\"%.1f\" class=\"lbl\">%.2e</text>\n",
                left, y, w > 1 ? w : 1, bar, e->layer >= 0 ? e->layer % 2 : 2,
                ec_dtype_name(e->cand_type), e->rel_err, e->snr_db, e->cosine, left + w + 4,
                y + bar - 2, e->rel_err);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"ax\">relative error ‖ΔW‖/‖W‖ (log scale)"
               "</text></svg>\n", left, height - 2);
}

/* histogram of per-token KLD on log10 bins */
static void svg_kld(FILE *f, const struct ec_validate_stats *s)
{
    enum { NB = 40 };
    const int width = 820, height = 260, left = 50, bottom = 30, plot_w = width - left - 20,
              plot_h = height - bottom - 20;
    double lo = -7, hi = 1;
    int64_t cnt[NB] = {0}, n_small = 0;
    for (int64_t i = 0; i < s->n_scored; i++) {
        double v = s->kld_sorted[i];
        if (!(v > 1e-7)) {
            n_small++;
            cnt[0]++;
            continue;
        }
        int b = (int)((log10(v) - lo) / (hi - lo) * NB);
        cnt[b < 0 ? 0 : b >= NB ? NB - 1 : b]++;
    }
    int64_t mx = 1;
    for (int b = 0; b < NB; b++)
        mx = cnt[b] > mx ? cnt[b] : mx;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" role=\"img\" "
               "aria-label=\"KL divergence distribution\">\n", width, height);
    for (int g = (int)lo; g <= (int)hi; g++) {
        double x = left + (g - lo) / (hi - lo) * plot_w;
        fprintf(f, "<line x1=\"%.1f\" y1=\"20\" x2=\"%.1f\" y2=\"%d\" class=\"grid\"/>"
                   "<text x=\"%.1f\" y=\"%d\" class=\"ax\" text-anchor=\"middle\">1e%d</text>\n",
                x, x, height - bottom, x, height - bottom + 14, g);
    }
    for (int b = 0; b < NB; b++) {
        double h = (double)cnt[b] / (double)mx * plot_h;
        double x = left + (double)b / NB * plot_w;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"b0\">"
                   "<title>%lld tokens</title></rect>\n",
                x, height - bottom - h, (double)plot_w / NB - 1, h, (long long)cnt[b]);
    }
    const double marks[3] = {s->kld_median, s->kld_p99, s->kld_mean};
    const char *names[3] = {"median", "p99", "mean"};
    for (int m = 0; m < 3; m++) {
        if (!(marks[m] > 1e-7))
            continue;
        double x = left + (log10(marks[m]) - lo) / (hi - lo) * plot_w;
        fprintf(f, "<line x1=\"%.1f\" y1=\"20\" x2=\"%.1f\" y2=\"%d\" class=\"mk\"/>"
                   "<text x=\"%.1f\" y=\"%d\" class=\"lbl\">%s</text>\n",
                x, x, height - bottom, x + 3, 30 + 12 * m, names[m]);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"ax\">KL(ref ‖ cand) per token, nats (log "
               "scale; %lld tokens ≤ 1e-7 in the first bin)</text></svg>\n",
            left, height - 2, (long long)n_small);
}

/* routing: share answered locally and agreement, against tau */
static void svg_route(FILE *f, const struct ec_validate_stats *s, double target)
{
    const int width = 820, height = 260, left = 50, bottom = 30, plot_w = width - left - 20,
              plot_h = height - bottom - 20;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" role=\"img\" "
               "aria-label=\"routing curve\">\n", width, height);
    for (int g = 0; g <= 10; g += 2) {
        double y = height - bottom - g / 10.0 * plot_h;
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>"
                   "<text x=\"%d\" y=\"%.1f\" class=\"ax\" text-anchor=\"end\">%d%%</text>\n",
                left, y, width - 20, y, left - 4, y + 4, g * 10);
        double x = left + g / 10.0 * plot_w;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"ax\" text-anchor=\"middle\">τ %.1f</text>\n",
                x, height - bottom + 14, g / 10.0);
    }
    const char *cls[2] = {"l0", "l1"};
    for (int k = 0; k < 2; k++) {
        fprintf(f, "<polyline class=\"%s\" points=\"", cls[k]);
        for (int i = 0; i < s->n_route; i++) {
            double v = k == 0 ? s->route[i].share : s->route[i].agreement;
            if (!isfinite(v))
                continue;
            fprintf(f, "%.1f,%.1f ", left + s->route[i].tau * plot_w,
                    height - bottom - v * plot_h);
        }
        fprintf(f, "\"/>\n");
    }
    if (isfinite(target)) {
        double y = height - bottom - target * plot_h;
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"mk\"/>\n", left, y,
                width - 20, y);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"ax\"><tspan class=\"t0\">■ share answered by "
               "the candidate</tspan>  <tspan class=\"t1\">■ its top-1 agreement with the "
               "reference</tspan></text></svg>\n", left, height - 2);
}

static bool write_html(FILE *f, const struct ec_validate_report *r)
{
    const struct ec_validate_stats *s = r->s;
    char b1[64], b2[64];
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<title>edgec validate: %s</title>\n<style>\n"
               "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:860px;"
               "color:#1b1f24}\n"
               "h1{font-size:1.5em}.pass{color:#116329}.fail{color:#b3261e}\n"
               "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d0d7de;"
               "padding:3px 9px;text-align:right}th{background:#f3f4f6}td:first-child,"
               "th:first-child{text-align:left}\n"
               "svg{display:block;margin:.5em 0}.grid{stroke:#e5e7eb}.ax{font-size:11px;"
               "fill:#57606a}.lbl{font-size:10px;fill:#24292f}.b0{fill:#3b82f6}"
               ".b1{fill:#1e40af}.b2{fill:#9ca3af}.mk{stroke:#b3261e;stroke-dasharray:4 3}"
               ".l0{fill:none;stroke:#3b82f6;stroke-width:2}.l1{fill:none;stroke:#f59e0b;"
               "stroke-width:2}.t0{fill:#3b82f6}.t1{fill:#f59e0b}\n"
               "code{background:#f3f4f6;padding:1px 4px}\n</style></head><body>\n",
            r->passed ? "passed" : "failed");
    fprintf(f, "<h1>edgec validate: <span class=\"%s\">%s</span></h1>\n<p>Candidate <code>",
            r->passed ? "pass" : "fail", r->passed ? "PASSED" : "FAILED");
    html_escape(f, r->cand_path);
    fprintf(f, "</code> against reference <code>");
    html_escape(f, r->ref_path);
    fprintf(f, "</code> on <code>");
    html_escape(f, r->text_path ? r->text_path : "");
    fprintf(f, "</code>: %lld chunks of %lld tokens, %lld tokens scored.</p>\n",
            (long long)s->n_chunks, (long long)r->n_ctx, (long long)s->n_scored);
    if (r->n_checks) {
        fprintf(f, "<h2>Checks</h2><table><tr><th>check</th><th>value</th><th>threshold</th>"
                   "<th>result</th></tr>\n");
        for (int i = 0; i < r->n_checks; i++)
            fprintf(f, "<tr><td>%s</td><td>%s</td><td>%s %s</td><td class=\"%s\">%s</td></tr>\n",
                    r->checks[i].name, fmt_g(b1, sizeof b1, r->checks[i].value, "%.6g"),
                    r->checks[i].is_max ? "≤" : "≥",
                    fmt_g(b2, sizeof b2, r->checks[i].threshold, "%.6g"),
                    r->checks[i].passed ? "pass" : "fail",
                    r->checks[i].passed ? "pass" : "FAIL");
        fprintf(f, "</table>\n");
    }
    fprintf(f, "<h2>Summary</h2><table><tr><th>metric</th><th>value</th></tr>\n"
               "<tr><td>PPL reference</td><td>%.4f ± %.4f</td></tr>\n"
               "<tr><td>PPL candidate</td><td>%.4f ± %.4f</td></tr>\n"
               "<tr><td>PPL ratio (paired ±)</td><td>%.5f ± %.5f</td></tr>\n"
               "<tr><td>KLD mean</td><td>%.6f ± %.6f</td></tr>\n"
               "<tr><td>KLD median / 99 %% / 99.9 %% / max</td><td>%.6f / %.6f / %.6f / %.6f"
               "</td></tr>\n<tr><td>same top-1</td><td>%.3f %% ± %.3f</td></tr>\n"
               "<tr><td>RMS Δp</td><td>%.3f %% ± %.3f</td></tr></table>\n",
            s->ppl_ref, s->ppl_ref_err, s->ppl_cand, s->ppl_cand_err, s->ppl_ratio,
            s->ppl_ratio_err, s->kld_mean,
            s->kld_mean_err, s->kld_median, s->kld_p99, s->kld_p999, s->kld_max, 100 * s->top1,
            100 * s->top1_err, 100 * s->rms_dp, 100 * s->rms_dp_err);
    fprintf(f, "<h2>KL divergence per token</h2>\n");
    svg_kld(f, s);
    fprintf(f, "<h2>Routing</h2><p>If the candidate answers only when its top probability is at "
               "least τ and hands the rest to the reference:</p>\n");
    svg_route(f, s, r->route_target);
    fprintf(f, "<table><tr><th>τ</th><th>share local</th><th>top-1 agreement</th></tr>\n");
    for (int i = 0; i < s->n_route; i++)
        fprintf(f, "<tr><td>%.2f</td><td>%.1f %%</td><td>%s</td></tr>\n", s->route[i].tau,
                100 * s->route[i].share,
                fmt_g(b1, sizeof b1, 100 * s->route[i].agreement, "%.2f %%"));
    fprintf(f, "</table>\n");
    if (isfinite(r->route_target))
        fprintf(f, "<p>Target agreement %.2f %%: %s.</p>\n", 100 * r->route_target,
                isfinite(r->route_tau) ? fmt_g(b1, sizeof b1, r->route_tau, "lowest τ = %.2f")
                                       : "no threshold reaches it");
    if (r->tensors && r->tensors->n) {
        fprintf(f, "<h2>Per-tensor error</h2><p>%zu tensors compared (%zu only in the reference, "
                   "%zu only in the candidate, %zu with other shapes). Bars alternate colour by "
                   "layer.</p>\n",
                r->tensors->n, r->tensors->n_only_ref, r->tensors->n_only_cand,
                r->tensors->n_shape_mismatch);
        svg_tensors(f, r->tensors);
        fprintf(f, "<table><tr><th>tensor</th><th>type</th><th>RMSE</th><th>rel. error</th>"
                   "<th>SNR dB</th><th>cosine</th></tr>\n");
        for (size_t i = 0; i < r->tensors->n; i++) {
            const struct ec_tensor_err *e = &r->tensors->t[i];
            fprintf(f, "<tr><td>");
            html_escape(f, e->name);
            fprintf(f, "</td><td>%s→%s</td><td>%.3e</td><td>%s</td>", ec_dtype_name(e->ref_type),
                    ec_dtype_name(e->cand_type), e->rmse,
                    fmt_g(b1, sizeof b1, e->rel_err, "%.3e"));
            fprintf(f, "<td>%s</td><td>%.6f</td></tr>\n", fmt_g(b2, sizeof b2, e->snr_db, "%.1f"),
                    e->cosine);
        }
        fprintf(f, "</table>\n");
    }
    fprintf(f, "<p class=\"ax\">Written by %s. Token statistics are computed as "
               "llama-perplexity --kl-divergence does.</p>\n</body></html>\n",
            r->version ? r->version : "edgec");
    return !ferror(f);
}

bool ec_validate_report_write(FILE *f, enum ec_report_format fmt,
                              const struct ec_validate_report *r)
{
    switch (fmt) {
    case EC_REPORT_JSON: return write_json(f, r);
    case EC_REPORT_MD: return write_md(f, r);
    case EC_REPORT_HTML: return write_html(f, r);
    }
    return false;
}
