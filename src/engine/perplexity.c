/* Perplexity exactly as llama-perplexity's perplexity() computes it (see
 * edgec/engine.h and the golden README section 4). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/engine.h"
#include "edgec/log.h"

/* -log softmax(l)[tok]: max in float, sum of expf in double, log in double */
static double token_nll(const float *l, int64_t n_vocab, int32_t tok)
{
    float mx = l[0];
    for (int64_t j = 1; j < n_vocab; j++)
        mx = l[j] > mx ? l[j] : mx;
    double sum_exp = 0.0;
    for (int64_t j = 0; j < n_vocab; j++)
        sum_exp += (double)expf(l[j] - mx);
    return -((double)(l[tok] - mx) - log(sum_exp));
}

enum ec_status ec_perplexity_run(struct ec_engine *e, const int32_t *tokens, int64_t n_tokens,
                                 const struct ec_ppl_opts *o, struct ec_ppl_result *r,
                                 struct ec_diag *d)
{
    enum ec_status st = EC_OK;
    memset(r, 0, sizeof *r);
    const int64_t n_ctx = o->n_ctx;
    const int64_t n_batch = o->n_batch > 0 ? o->n_batch : n_ctx;
    if (n_ctx < 4 || n_ctx > (int64_t)ec_engine_n_ctx(e))
        return ec_fail(d, EC_ERR_ARG, "perplexity: context %lld outside 4..%u", (long long)n_ctx,
                       ec_engine_n_ctx(e));
    if (n_batch > n_ctx || n_ctx % n_batch != 0)
        return ec_fail(d, EC_ERR_ARG,
                       "perplexity: batch %lld must divide the context %lld", (long long)n_batch,
                       (long long)n_ctx);
    int64_t n_chunks = n_tokens / n_ctx;
    if (n_chunks < 1)
        return ec_fail(d, EC_ERR_ARG,
                       "perplexity: %lld tokens, need at least %lld (one chunk of the context)",
                       (long long)n_tokens, (long long)n_ctx);
    if (o->max_chunks > 0 && o->max_chunks < n_chunks)
        n_chunks = o->max_chunks;

    const int64_t nv = ec_engine_n_vocab(e);
    const int64_t first = n_ctx / 2; /* first scored position */
    /* logits of positions first .. n_ctx-1 */
    float *logits = malloc((size_t)(n_ctx - first) * (size_t)nv * sizeof *logits);
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    double *tok_nll = malloc((size_t)(n_ctx - first) * sizeof *tok_nll);
    if (!logits || !chunk || !tok_nll) {
        st = ec_fail(d, EC_ERR_NOMEM, "perplexity: cannot allocate logits for %lld positions",
                     (long long)(n_ctx - first));
        goto out_free;
    }

    double nll = 0.0, nll2 = 0.0;
    int64_t count = 0;
    const double t0 = ec_now_seconds();
    for (int64_t c = 0; c < n_chunks; c++) {
        const int32_t *src = tokens + c * n_ctx;
        memcpy(chunk, src, (size_t)n_ctx * sizeof *chunk);
        if (o->bos_id >= 0)
            chunk[0] = o->bos_id;
        ec_engine_reset(e);
        for (int64_t b = 0; b < n_ctx; b += n_batch) {
            /* rows of this batch at positions >= first land at logits[pos - first] */
            int64_t from = first > b ? first - b : 0;
            float *dst = NULL;
            if (from < n_batch)
                dst = logits + (b + from - first) * nv;
            st = ec_engine_eval(e, chunk + b, n_batch, dst, dst ? from : n_batch, d);
            if (st != EC_OK) {
                ec_diag_prefix(d, "perplexity: chunk %lld", (long long)c);
                goto out_free;
            }
        }
        /* each position's NLL on its own (in parallel), summed in order */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(ec_engine_n_threads(e))
#endif
        for (int64_t k = first; k < n_ctx - 1; k++)
            tok_nll[k - first] = token_nll(logits + (k - first) * nv, nv, src[k + 1]);
        for (int64_t k = first; k < n_ctx - 1; k++) {
            const double v = tok_nll[k - first];
            nll += v;
            nll2 += v * v;
            count++;
        }
        if (o->on_chunk)
            o->on_chunk(o->user, c, n_chunks, exp(nll / (double)count));
    }
    r->seconds = ec_now_seconds() - t0;
    r->n_chunks = n_chunks;
    r->n_scored = count;
    r->n_evaluated = n_chunks * n_ctx;
    r->nll_mean = nll / (double)count;
    r->ppl = exp(r->nll_mean);
    double var = nll2 / (double)count - r->nll_mean * r->nll_mean;
    r->ppl_err = var > 0 && count > 1 ? r->ppl * sqrt(var / (double)(count - 1)) : 0.0;

out_free:
    free(tok_nll);
    free(chunk);
    free(logits);
    return st;
}
