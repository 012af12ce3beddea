/* edgec perplexity: perplexity of a model on a text, as llama-perplexity. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "edgec/engine.h"
#include "edgec/io.h"
#include "edgec/model.h"
#include "edgec/tokenizer.h"

static const char usage[] =
    "edgec perplexity MODEL (--text FILE | --tokens FILE.i32) [--ctx N] [--batch N] "
    "[--chunks N] [--threads N] [--kv-f32] [--json]";
static const char description[] =
    "Perplexity of MODEL (checkpoint folder or .gguf) computed exactly as llama-perplexity:\n"
    "the text minus one trailing newline is tokenized with BOS, cut into floor(n/ctx) chunks,\n"
    "each chunk's first token replaced by BOS; the second half of every chunk is scored.\n"
    "Prints each chunk's running value on stderr and the final estimate on stdout.\n"
    "\n"
    "Q4_0/Q5_0/Q8_0/Q4_K/Q6_K weights take llama.cpp's integer block dot products in its\n"
    "order; other types an F32 product over dequantized weights. Environment:\n"
    "EDGEC_NO_QDOT=1 uses the F32 product for every type (faster, not bit-identical).";

struct ppl_progress {
    bool print;
};

static void on_chunk(void *user, int64_t chunk, int64_t n_chunks, double ppl)
{
    const struct ppl_progress *p = user;
    if (p->print)
        fprintf(stderr, "[%" PRId64 "/%" PRId64 "]%.4f\n", chunk + 1, n_chunks, ppl);
}

int ec_cmd_perplexity(int argc, char **argv)
{
    struct ec_common_opts c = {0};
    const char *text_path = NULL, *tokens_path = NULL;
    long ctx = 512, batch = 0, chunks = 0, threads = 0;
    bool kv_f32 = false;
    const struct ec_opt opts[] = {
        {"text", 'f', EC_OPT_STRING, &text_path, "FILE", "UTF-8 text to score"},
        {"tokens", 0, EC_OPT_STRING, &tokens_path, "FILE",
         "pre-tokenized ids (int32 little-endian, BOS included) instead of --text"},
        {"ctx", 'c', EC_OPT_INT, &ctx, "N", "chunk length in tokens (default 512)"},
        {"batch", 'b', EC_OPT_INT, &batch, "N", "tokens per forward call (default: ctx)"},
        {"chunks", 0, EC_OPT_INT, &chunks, "N", "score only the first N chunks (default all)"},
        {"threads", 't', EC_OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"kv-f32", 0, EC_OPT_FLAG, &kv_f32, NULL,
         "F32 KV cache (default F16, rounding K/V as llama.cpp does)"},
        {"json", 0, EC_OPT_FLAG, &c.json, NULL, "print the result as JSON"},
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
        return ec_cli_usage_error("perplexity", "expected one MODEL argument, got %zu", n_pos);
    }
    const char *model_path = pos[0];
    free((void *)pos);
    int bad = ec_cli_check_text_opts("perplexity", text_path, tokens_path, ctx, batch, chunks, threads);
    if (bad)
        return bad;

    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_model m;
    memset(&m, 0, sizeof m);
    struct ec_engine *e = NULL;
    int32_t *tokens = NULL;
    int64_t n_tokens = 0;
    enum ec_status st = ec_model_open(&m, model_path, &d);
    if (st != EC_OK)
        return ec_cli_fail(&d);
    if (tokens_path)
        st = ec_tokens_from_i32_file(tokens_path, &tokens, &n_tokens, &d);
    else
        st = ec_tokens_from_text_file(&m.vocab, text_path, &tokens, &n_tokens, &d);
    if (st != EC_OK)
        goto out_fail;

    struct ec_engine_opts eo;
    ec_engine_opts_init(&eo);
    eo.n_ctx = (uint32_t)ctx;
    eo.n_threads = (int)threads;
    eo.kv_f16 = !kv_f32;
    if ((st = ec_engine_new(&e, &m, &eo, &d)) != EC_OK)
        goto out_fail;

    struct ppl_progress prog = {.print = ec_log_level() != EC_LOG_QUIET};
    struct ec_ppl_opts po = {
        .n_ctx = ctx,
        .n_batch = batch,
        .max_chunks = chunks,
        .bos_id = ec_vocab_chunk_bos(&m.vocab),
        .on_chunk = on_chunk,
        .user = &prog,
    };
    struct ec_ppl_result r;
    ec_log_info("perplexity: %lld tokens, %lld chunks of %ld", (long long)n_tokens,
                (long long)(chunks > 0 && chunks < n_tokens / ctx ? chunks : n_tokens / ctx), ctx);
    if ((st = ec_perplexity_run(e, tokens, n_tokens, &po, &r, &d)) != EC_OK)
        goto out_fail;
    double tps = r.seconds > 0 ? (double)r.n_evaluated / r.seconds : 0.0;
    if (c.json) {
        printf("{\"model\": ");
        ec_json_write_str(stdout, model_path);
        printf(", \"ppl\": %.6f, \"ppl_err\": %.6f, \"nll_mean\": %.8f, \"n_ctx\": %ld, "
               "\"n_chunks\": %lld, \"n_tokens\": %lld, \"n_tokens_scored\": %lld, "
               "\"n_tokens_evaluated\": %lld, \"kv_cache\": \"%s\", \"seconds\": %.3f, "
               "\"tokens_per_s\": %.1f}\n",
               r.ppl, r.ppl_err, r.nll_mean, ctx, (long long)r.n_chunks, (long long)n_tokens,
               (long long)r.n_scored, (long long)r.n_evaluated, kv_f32 ? "f32" : "f16", r.seconds,
               tps);
    } else {
        printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
        printf("chunks %lld, tokens scored %lld, %.1f tokens/s\n", (long long)r.n_chunks,
               (long long)r.n_scored, tps);
    }
    ec_engine_free(e);
    free(tokens);
    ec_model_close(&m);
    return ec_cli_finish(EC_EXIT_OK);

out_fail:
    ec_engine_free(e);
    free(tokens);
    ec_model_close(&m);
    return ec_cli_fail(&d);
}
