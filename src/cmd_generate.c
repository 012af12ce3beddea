/* edgec generate: continue a prompt with the engine, to look at a model's output. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "edgec/engine.h"
#include "edgec/model.h"
#include "edgec/tokenizer.h"

static const char usage[] =
    "edgec generate MODEL -p TEXT [-n N] [--temp T] [--top-k K] [--seed S] [--threads N]";
static const char description[] =
    "Tokenize TEXT (with BOS), then generate up to N tokens (default 64) with MODEL, a\n"
    "checkpoint folder or .gguf, and print the prompt and its continuation on stdout. With\n"
    "--temp 0 (the default) the most probable token is taken each step (greedy, as llama.cpp's\n"
    "greedy sampler); otherwise a token is drawn from softmax(logits / T) over the K most\n"
    "probable (default 40) with a seeded generator, so the same seed gives the same text.\n"
    "Stops at the end-of-sequence token or at the context limit.";

/* splitmix64: small, seedable, the same on every platform */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

struct cand {
    float l;
    int32_t id;
};

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->l != y->l)
        return x->l < y->l ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

static int32_t pick(const float *l, int64_t nv, double temp, long top_k, uint64_t *rng,
                    struct cand *buf)
{
    int64_t best = 0;
    for (int64_t i = 1; i < nv; i++)
        if (l[i] > l[best])
            best = i;
    if (temp <= 0)
        return (int32_t)best;
    for (int64_t i = 0; i < nv; i++) {
        buf[i].l = l[i];
        buf[i].id = (int32_t)i;
    }
    qsort(buf, (size_t)nv, sizeof *buf, cmp_cand);
    int64_t k = top_k > 0 && top_k < nv ? top_k : nv;
    double sum = 0.0;
    for (int64_t i = 0; i < k; i++)
        sum += exp(((double)buf[i].l - buf[0].l) / temp);
    double u = (double)(next_u64(rng) >> 11) * 0x1.0p-53 * sum, acc = 0.0;
    for (int64_t i = 0; i < k; i++) {
        acc += exp(((double)buf[i].l - buf[0].l) / temp);
        if (u < acc)
            return buf[i].id;
    }
    return buf[k - 1].id;
}

int ec_cmd_generate(int argc, char **argv)
{
    struct ec_common_opts c = {0};
    const char *prompt = NULL;
    long n_gen = 64, top_k = 40, seed = 42, threads = 0;
    double temp = 0.0;
    const struct ec_opt opts[] = {
        {"prompt", 'p', EC_OPT_STRING, &prompt, "TEXT", "text to continue (required)"},
        {"n-predict", 'n', EC_OPT_INT, &n_gen, "N", "tokens to generate (default 64)"},
        {"temp", 0, EC_OPT_DOUBLE, &temp, "T", "temperature; 0 = greedy (default 0)"},
        {"top-k", 0, EC_OPT_INT, &top_k, "K", "sample among the K most probable (default 40)"},
        {"seed", 0, EC_OPT_INT, &seed, "S", "random seed for sampling (default 42)"},
        {"threads", 't', EC_OPT_INT, &threads, "N", "threads (default: all cores)"},
        EC_COMMON_OPTS(c),
        {NULL, 0, EC_OPT_END, NULL, NULL, NULL},
    };
    const char **pos = NULL;
    size_t n_pos = 0;
    int code = 0;
    if (ec_cli_parse(usage, description, opts, &c, argc, argv, &pos, &n_pos, &code) != 0)
        return code;
    if (n_pos != 1) {
        free((void *)pos);
        return ec_cli_usage_error("generate", "expected one MODEL argument, got %zu", n_pos);
    }
    const char *model_path = pos[0];
    free((void *)pos);
    if (!prompt)
        return ec_cli_usage_error("generate", "-p TEXT is required");
    if (n_gen < 0 || n_gen > 1000000 || top_k < 0 || threads < 0 || !(temp >= 0) ||
        !isfinite(temp))
        return ec_cli_usage_error("generate", "-n, --top-k and --threads must be >= 0 and "
                                  "--temp a number >= 0");

    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_model m;
    memset(&m, 0, sizeof m);
    struct ec_tokenizer *tk = NULL;
    struct ec_engine *e = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    float *logits = NULL;
    struct cand *buf = NULL;
    char *text = NULL;
    enum ec_status st;
    int rc = 0;
    if ((st = ec_model_open(&m, model_path, &d)) != EC_OK ||
        (st = ec_tokenizer_new(&tk, &m.vocab, &d)) != EC_OK ||
        (st = ec_tokenizer_encode(tk, prompt, strlen(prompt), true, false, &ids, &n_ids, &d)) !=
            EC_OK)
        goto out_fail;
    uint32_t n_ctx = m.hp.n_ctx_train > 0 ? m.hp.n_ctx_train : 2048;
    if (n_ids + (size_t)n_gen < n_ctx)
        n_ctx = (uint32_t)(n_ids + (size_t)n_gen);
    if (n_ids == 0 || n_ids > n_ctx) {
        st = ec_fail(&d, EC_ERR_ARG, "generate: the prompt is %zu tokens, the context %u", n_ids,
                     n_ctx);
        goto out_fail;
    }
    struct ec_engine_opts eo;
    ec_engine_opts_init(&eo);
    eo.n_ctx = n_ctx;
    eo.n_threads = (int)threads;
    if ((st = ec_engine_new(&e, &m, &eo, &d)) != EC_OK)
        goto out_fail;
    const int64_t nv = ec_engine_n_vocab(e);
    int32_t *all = realloc(ids, (n_ids + (size_t)n_gen + 1) * sizeof *all);
    logits = malloc((size_t)nv * sizeof *logits);
    buf = malloc((size_t)nv * sizeof *buf);
    if (!all || !logits || !buf) {
        if (all)
            ids = all;
        st = ec_fail(&d, EC_ERR_NOMEM, "generate: out of memory");
        goto out_fail;
    }
    ids = all;
    uint64_t rng = (uint64_t)seed;
    size_t printed = 0, n = n_ids;
    if ((st = ec_engine_eval(e, ids, (int64_t)n_ids, logits, (int64_t)n_ids - 1, &d)) != EC_OK)
        goto out_fail;
    for (long i = 0; i < n_gen; i++) {
        int32_t t = pick(logits, nv, temp, top_k, &rng, buf);
        if (t == m.vocab.eos_id || ec_engine_n_past(e) >= n_ctx)
            break;
        ids[n++] = t;
        size_t len = 0;
        free(text);
        text = NULL;
        if ((st = ec_tokenizer_decode(tk, ids, n, &text, &len, &d)) != EC_OK)
            goto out_fail;
        /* print what the new token added (decoding whole keeps multi-byte
         * characters and SPM spaces right) */
        if (len > printed) {
            fwrite(text + printed, 1, len - printed, stdout);
            fflush(stdout);
            printed = len;
        }
        if (ec_engine_n_past(e) >= n_ctx)
            break;
        if ((st = ec_engine_eval(e, &t, 1, logits, 0, &d)) != EC_OK)
            goto out_fail;
    }
    if (n == n_ids) { /* nothing generated: still show the prompt */
        size_t len = 0;
        if ((st = ec_tokenizer_decode(tk, ids, n, &text, &len, &d)) != EC_OK)
            goto out_fail;
        fwrite(text, 1, len, stdout);
    }
    fputc('\n', stdout);
    rc = ec_cli_finish(EC_EXIT_OK);
    goto out_free;
out_fail:
    rc = ec_cli_fail(&d);
out_free:
    free(text);
    free(buf);
    free(logits);
    free(ids);
    ec_engine_free(e);
    ec_tokenizer_free(tk);
    ec_model_close(&m);
    return rc;
}
