/* REF vs CAND token statistics as llama-perplexity --kl-divergence computes
 * them (see edgec/validate.h and ../shared/golden/README.md §4). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/log.h"
#include "edgec/validate.h"

uint64_t ec_kld_record_words(int64_t n_vocab)
{
    return 2 * (((uint64_t)n_vocab + 1) / 2) + 4;
}

/* round half to even, as llama.cpp's nearest_int (1.5 * 2^23 trick) */
static int nearest_int(float fval)
{
    float val = fval + 12582912.f;
    int32_t i;
    memcpy(&i, &val, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* max, first argmax and (float) log sum expf(l - max), the sum in double */
static float row_lse(const float *l, int64_t n, float *max_out, int64_t *imax_out)
{
    float mx = l[0];
    int64_t im = 0;
    for (int64_t i = 1; i < n; i++)
        if (l[i] > mx) {
            mx = l[i];
            im = i;
        }
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)expf(l[i] - mx);
    *max_out = mx;
    if (imax_out)
        *imax_out = im;
    return (float)log(sum);
}

void ec_kld_base_encode(const float *logits, int64_t n_vocab, uint16_t *rec)
{
    float mx = logits[0], mn = logits[0];
    for (int64_t i = 1; i < n_vocab; i++) {
        mx = logits[i] > mx ? logits[i] : mx;
        mn = logits[i] < mn ? logits[i] : mn;
    }
    const float lse = row_lse(logits, n_vocab, &mx, NULL);
    mn = mn > mx - 16.f ? mn : mx - 16.f;
    const float min_log_prob = mn - mx - lse;
    const float scale = (mx - mn) / 65535.f;
    memcpy(rec, &scale, sizeof scale);
    memcpy(rec + 2, &min_log_prob, sizeof min_log_prob);
    uint16_t *q = rec + 4;
    const float inv = scale > 0 ? 1.f / scale : 0.f;
    for (int64_t i = 0; i < n_vocab; i++) {
        q[i] = 0;
        if (logits[i] > mn && scale > 0) {
            int v = nearest_int((logits[i] - mn) * inv);
            q[i] = (uint16_t)(v < 0 ? 0 : v > 65535 ? 65535 : v);
        }
    }
    if (n_vocab % 2)
        q[n_vocab] = 0;
}

void ec_kld_position_eval(const float *cand_logits, int64_t n_vocab, const uint16_t *rec,
                          int32_t tok, struct ec_kld_position *out)
{
    float mx;
    int64_t imax;
    const float lse = row_lse(cand_logits, n_vocab, &mx, &imax);
    float scale, min_log_prob;
    memcpy(&scale, rec, sizeof scale);
    memcpy(&min_log_prob, rec + 2, sizeof min_log_prob);
    const uint16_t *q = rec + 4;
    out->nll = mx + lse - cand_logits[tok];
    out->nll_base = -(scale * (float)q[tok] + min_log_prob);
    const float shift = mx + lse;
    double sum = 0.0;
    int64_t imax_base = -1;
    float pmax = 0.f;
    for (int64_t i = 0; i < n_vocab; i++) {
        const float pb = scale * (float)q[i] + min_log_prob;
        if (pb > -16.f)
            sum += (double)(expf(pb) * (pb - cand_logits[i] + shift));
        if (imax_base < 0 || pb > pmax) {
            pmax = pb;
            imax_base = i;
        }
    }
    out->kld = sum;
    out->same_top = imax == imax_base;
    out->p_diff = expf(-out->nll) - expf(-out->nll_base);
    out->cand_top_p = expf(-lse);
}

double ec_percentile_sorted(const float *v, int64_t n, double fraction)
{
    if (n <= 0)
        return NAN;
    if (fraction <= 0)
        return v[0];
    if (fraction >= 1)
        return v[n - 1];
    float p = (float)fraction * (float)(n - 1);
    int64_t ip = (int64_t)p;
    p -= (float)ip;
    int64_t ip1 = ip + 1 < n ? ip + 1 : n - 1;
    return (double)((1.f - p) * v[ip] + p * v[ip1]);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* nll of the scored token from raw logits, as ec_perplexity_run */
static double plain_nll(const float *l, int64_t n, int32_t tok)
{
    float mx = l[0];
    for (int64_t j = 1; j < n; j++)
        mx = l[j] > mx ? l[j] : mx;
    double s = 0.0;
    for (int64_t j = 0; j < n; j++)
        s += (double)expf(l[j] - mx);
    return -((double)(l[tok] - mx) - log(s));
}

struct mean_unc {
    double mean, unc;
};

/* llama.cpp: mean = S/N, var = S2/N - mean^2, unc = sqrt(var / (N - 1)) */
static struct mean_unc mean_and_unc(double s, double s2, int64_t n)
{
    struct mean_unc r = {s / (double)n, 0.0};
    double var = s2 / (double)n - r.mean * r.mean;
    if (n > 1 && var > 0)
        r.unc = sqrt(var / (double)(n - 1));
    return r;
}

/* Two means over the same n positions, paired through sum(x y) as
 * llama.cpp does: the covariance of the means, the standard error of
 * mean(x) - mean(y) and the correlation of x and y. */
struct paired {
    double cov, diff_unc, cor;
};

static struct paired pair_means(double sxy, struct mean_unc x, struct mean_unc y, int64_t n)
{
    struct paired p;
    p.cov = n > 1 ? (sxy / (double)n - x.mean * y.mean) / (double)(n - 1) : 0.0;
    const double var = x.unc * x.unc + y.unc * y.unc - 2.0 * p.cov;
    p.diff_unc = var > 0 ? sqrt(var) : 0.0;
    p.cor = x.unc > 0 && y.unc > 0 ? p.cov / (x.unc * y.unc) : 1.0;
    return p;
}

static const double route_taus[] = {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99};

static enum ec_status eval_chunk(struct ec_engine *e, const int32_t *chunk, int64_t n_ctx,
                                 int64_t n_batch, int64_t first, float *logits, int64_t nv,
                                 struct ec_diag *d)
{
    ec_engine_reset(e);
    for (int64_t b = 0; b < n_ctx; b += n_batch) {
        int64_t from = first > b ? first - b : 0;
        float *dst = from < n_batch ? logits + (b + from - first) * nv : NULL;
        enum ec_status st = ec_engine_eval(e, chunk + b, n_batch, dst, dst ? from : n_batch, d);
        if (st != EC_OK)
            return st;
    }
    return EC_OK;
}

enum ec_status ec_validate_run(struct ec_engine *ref, struct ec_engine *cand,
                               const int32_t *tokens, int64_t n_tokens,
                               const struct ec_validate_opts *o, struct ec_validate_stats *s,
                               struct ec_diag *d)
{
    memset(s, 0, sizeof *s);
    const int64_t n_ctx = o->n_ctx;
    const int64_t n_batch = o->n_batch > 0 ? o->n_batch : n_ctx;
    const int64_t nv = ec_engine_n_vocab(ref);
    if (ec_engine_n_vocab(cand) != (uint32_t)nv)
        return ec_fail(d, EC_ERR_ARG, "validate: REF has %lld tokens in its vocabulary, CAND %u",
                       (long long)nv, ec_engine_n_vocab(cand));
    if (n_ctx < 4 || n_ctx > (int64_t)ec_engine_n_ctx(ref) || n_ctx > (int64_t)ec_engine_n_ctx(cand))
        return ec_fail(d, EC_ERR_ARG, "validate: context %lld outside 4..%u", (long long)n_ctx,
                       ec_engine_n_ctx(ref));
    if (n_batch > n_ctx || n_ctx % n_batch != 0)
        return ec_fail(d, EC_ERR_ARG, "validate: batch %lld must divide the context %lld",
                       (long long)n_batch, (long long)n_ctx);
    int64_t n_chunks = n_tokens / n_ctx;
    if (n_chunks < 1)
        return ec_fail(d, EC_ERR_ARG,
                       "validate: %lld tokens, need at least %lld (one chunk of the context)",
                       (long long)n_tokens, (long long)n_ctx);
    if (o->max_chunks > 0 && o->max_chunks < n_chunks)
        n_chunks = o->max_chunks;
    const int64_t first = n_ctx / 2, per_chunk = n_ctx - 1 - first;
    const int64_t N = n_chunks * per_chunk;
    const uint64_t rw = ec_kld_record_words(nv);

    enum ec_status st = EC_OK;
    float *logits = malloc((size_t)(n_ctx - first) * (size_t)nv * sizeof *logits);
    uint16_t *recs = malloc((size_t)per_chunk * rw * sizeof *recs);
    double *nll_ref = malloc((size_t)per_chunk * sizeof *nll_ref);
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    float *kld = malloc((size_t)N * sizeof *kld);
    float *dp = malloc((size_t)N * sizeof *dp);
    float *topp = malloc((size_t)N * sizeof *topp);
    uint8_t *same = malloc((size_t)N);
    if (!logits || !recs || !nll_ref || !chunk || !kld || !dp || !topp || !same) {
        st = ec_fail(d, EC_ERR_NOMEM, "validate: cannot allocate buffers for %lld positions",
                     (long long)N);
        goto out_free;
    }

    double sn = 0, sn2 = 0, snb = 0, snb2 = 0, snnb = 0, sk = 0, sk2 = 0, sp = 0, sp2 = 0;
    double pr = 0, pr2 = 0, pc = 0, pc2 = 0, prc = 0;
    int64_t n_same = 0, k = 0;
    const double t0 = ec_now_seconds();
    for (int64_t c = 0; c < n_chunks; c++) {
        const int32_t *src = tokens + c * n_ctx;
        memcpy(chunk, src, (size_t)n_ctx * sizeof *chunk);
        if (o->bos_id >= 0)
            chunk[0] = o->bos_id;
        if ((st = eval_chunk(ref, chunk, n_ctx, n_batch, first, logits, nv, d)) != EC_OK) {
            ec_diag_prefix(d, "validate: REF, chunk %lld", (long long)c);
            goto out_free;
        }
        for (int64_t i = 0; i < per_chunk; i++) {
            ec_kld_base_encode(logits + i * nv, nv, recs + (size_t)i * rw);
            nll_ref[i] = plain_nll(logits + i * nv, nv, src[first + i + 1]);
        }
        if ((st = eval_chunk(cand, chunk, n_ctx, n_batch, first, logits, nv, d)) != EC_OK) {
            ec_diag_prefix(d, "validate: CAND, chunk %lld", (long long)c);
            goto out_free;
        }
        for (int64_t i = 0; i < per_chunk; i++, k++) {
            const int32_t tok = src[first + i + 1];
            struct ec_kld_position p;
            ec_kld_position_eval(logits + i * nv, nv, recs + (size_t)i * rw, tok, &p);
            sn += p.nll;
            sn2 += (double)p.nll * p.nll;
            snb += p.nll_base;
            snb2 += (double)p.nll_base * p.nll_base;
            snnb += (double)p.nll * p.nll_base;
            sk += p.kld;
            sk2 += p.kld * p.kld;
            sp += p.p_diff;
            sp2 += (double)p.p_diff * p.p_diff;
            n_same += p.same_top;
            kld[k] = (float)p.kld;
            dp[k] = p.p_diff;
            topp[k] = p.cand_top_p;
            same[k] = p.same_top;
            double nc = plain_nll(logits + i * nv, nv, tok);
            pr += nll_ref[i];
            pr2 += nll_ref[i] * nll_ref[i];
            pc += nc;
            pc2 += nc * nc;
            prc += nll_ref[i] * nc;
        }
        if (o->on_chunk)
            o->on_chunk(o->user, c, n_chunks);
    }
    s->seconds = ec_now_seconds() - t0;
    s->n_chunks = n_chunks;
    s->n_scored = N;

    struct mean_unc a = mean_and_unc(pr, pr2, N), b = mean_and_unc(pc, pc2, N);
    s->ppl_ref = exp(a.mean);
    s->ppl_ref_err = s->ppl_ref * a.unc;
    s->ppl_cand = exp(b.mean);
    s->ppl_cand_err = s->ppl_cand * b.unc;
    s->ppl_ratio = s->ppl_cand / s->ppl_ref;
    /* paired, as llama.cpp's Mean ln(PPL(Q)/PPL(base)) below */
    const struct paired rc = pair_means(prc, b, a, N);
    s->ppl_ratio_err = s->ppl_ratio * rc.diff_unc;
    s->ppl_cor = rc.cor;

    struct mean_unc lq = mean_and_unc(sn, sn2, N), lb = mean_and_unc(snb, snb2, N);
    s->lc_ppl_q = exp(lq.mean);
    s->lc_ppl_q_err = s->lc_ppl_q * lq.unc;
    s->lc_ppl_base = exp(lb.mean);
    s->lc_ppl_base_err = s->lc_ppl_base * lb.unc;
    const struct paired qb = pair_means(snnb, lq, lb, N);
    const double cov = qb.cov;
    s->lc_cor = qb.cor;
    s->lc_ln_ratio = lq.mean - lb.mean;
    s->lc_ln_ratio_err = qb.diff_unc;
    s->lc_ratio = exp(s->lc_ln_ratio);
    s->lc_ratio_err = s->lc_ratio * s->lc_ln_ratio_err;
    s->lc_diff = s->lc_ppl_q - s->lc_ppl_base;
    double pcov = s->lc_ppl_q * s->lc_ppl_base * cov;
    double d_var = s->lc_ppl_q_err * s->lc_ppl_q_err + s->lc_ppl_base_err * s->lc_ppl_base_err -
                   2.0 * pcov;
    s->lc_diff_err = d_var > 0 ? sqrt(d_var) : 0.0;

    struct mean_unc km = mean_and_unc(sk, sk2, N);
    s->kld_mean = km.mean;
    s->kld_mean_err = km.unc;
    qsort(kld, (size_t)N, sizeof *kld, cmp_float);
    s->kld_max = kld[N - 1];
    s->kld_p999 = ec_percentile_sorted(kld, N, 0.999);
    s->kld_p99 = ec_percentile_sorted(kld, N, 0.99);
    s->kld_median = ec_percentile_sorted(kld, N, 0.5);
    s->kld_p10 = ec_percentile_sorted(kld, N, 0.10);
    s->kld_p5 = ec_percentile_sorted(kld, N, 0.05);
    s->kld_p1 = ec_percentile_sorted(kld, N, 0.01);
    s->kld_min = kld[0];

    struct mean_unc pm = mean_and_unc(sp, sp2, N);
    s->dp_mean = pm.mean;
    s->dp_mean_err = pm.unc;
    s->rms_dp = sqrt(sp2 / (double)N);
    {
        /* llama.cpp: the RMS's uncertainty from that of the mean square (sum of dp^4) */
        double s4 = 0.0;
        for (int64_t i = 0; i < N; i++)
            s4 += (double)dp[i] * dp[i] * dp[i] * dp[i];
        struct mean_unc m2 = mean_and_unc(sp2, s4, N);
        s->rms_dp_err = s->rms_dp > 0 ? 0.5 / s->rms_dp * m2.unc : 0.0;
    }
    qsort(dp, (size_t)N, sizeof *dp, cmp_float);
    s->dp_max = dp[N - 1];
    s->dp_p999 = ec_percentile_sorted(dp, N, 0.999);
    s->dp_p99 = ec_percentile_sorted(dp, N, 0.99);
    s->dp_p95 = ec_percentile_sorted(dp, N, 0.95);
    s->dp_p90 = ec_percentile_sorted(dp, N, 0.90);
    s->dp_p75 = ec_percentile_sorted(dp, N, 0.75);
    s->dp_median = ec_percentile_sorted(dp, N, 0.5);
    s->dp_p25 = ec_percentile_sorted(dp, N, 0.25);
    s->dp_p10 = ec_percentile_sorted(dp, N, 0.10);
    s->dp_p5 = ec_percentile_sorted(dp, N, 0.05);
    s->dp_p1 = ec_percentile_sorted(dp, N, 0.01);
    s->dp_p01 = ec_percentile_sorted(dp, N, 0.001);
    s->dp_min = dp[0];

    s->top1 = (double)n_same / (double)N;
    s->top1_err = N > 1 ? sqrt(s->top1 * (1 - s->top1) / (double)(N - 1)) : 0.0;

    s->n_route = (int)(sizeof route_taus / sizeof route_taus[0]);
    for (int r = 0; r < s->n_route; r++) {
        int64_t n_in = 0, n_agree = 0;
        for (int64_t i = 0; i < N; i++)
            if ((double)topp[i] >= route_taus[r]) {
                n_in++;
                n_agree += same[i];
            }
        s->route[r].tau = route_taus[r];
        s->route[r].share = (double)n_in / (double)N;
        s->route[r].agreement = n_in ? (double)n_agree / (double)n_in : NAN;
    }
    s->kld_sorted = kld;
    kld = NULL;

out_free:
    free(logits);
    free(recs);
    free(nll_ref);
    free(chunk);
    free(kld);
    free(dp);
    free(topp);
    free(same);
    return st;
}

void ec_validate_stats_release(struct ec_validate_stats *s)
{
    if (!s)
        return;
    free(s->kld_sorted);
    s->kld_sorted = NULL;
}

double ec_route_recommend(const struct ec_validate_stats *s, double target)
{
    for (int r = 0; r < s->n_route; r++)
        if (s->route[r].share > 0 && s->route[r].agreement >= target)
            return s->route[r].tau;
    return NAN;
}
