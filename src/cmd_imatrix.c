/* edgec imatrix: a llama.cpp-compatible importance matrix from a text. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "edgec/calib.h"
#include "edgec/tokenizer.h"

static const char usage[] =
    "edgec imatrix MODEL (--text FILE | --tokens FILE.i32) -o OUT.imatrix [--ctx N] [--batch N] "
    "[--chunks N] [--threads N] [--kv-f32] [--json]";
static const char description[] =
    "Importance matrix of MODEL (checkpoint folder or .gguf) on a calibration text, in\n"
    "llama.cpp's legacy .dat layout, so llama-quantize --imatrix and edgec quantize --imatrix\n"
    "both read it. Computed as llama-imatrix does: the text minus one trailing newline,\n"
    "tokenized with BOS, cut into floor(n/ctx) chunks whose first token is replaced by BOS;\n"
    "for every blk.* weight, the mean of each input column's square over all evaluated\n"
    "tokens, stored times the number of calls. The calibration perplexity of the same pass\n"
    "is printed too. Use a text other than your evaluation text.";

struct progress {
    bool print;
};

static void on_chunk(void *user, int64_t chunk, int64_t n_chunks, double ppl)
{
    const struct progress *p = user;
    if (p->print && ((chunk + 1) % 10 == 0 || chunk + 1 == n_chunks))
        fprintf(stderr, "[%" PRId64 "/%" PRId64 "]%.4f\n", chunk + 1, n_chunks, ppl);
}

int ec_cmd_imatrix(int argc, char **argv)
{
    struct ec_common_opts c = {0};
    const char *text_path = NULL, *tokens_path = NULL, *out_path = NULL;
    long ctx = 512, batch = 0, chunks = 0, threads = 0;
    bool kv_f32 = false;
    const struct ec_opt opts[] = {
        {"text", 'f', EC_OPT_STRING, &text_path, "FILE", "UTF-8 calibration text"},
        {"tokens", 0, EC_OPT_STRING, &tokens_path, "FILE",
         "pre-tokenized ids (int32 little-endian, BOS included) instead of --text"},
        {"output", 'o', EC_OPT_STRING, &out_path, "OUT", "destination .imatrix/.dat file"},
        {"ctx", 'c', EC_OPT_INT, &ctx, "N", "chunk length in tokens (default 512)"},
        {"batch", 'b', EC_OPT_INT, &batch, "N", "tokens per forward call (default: ctx)"},
        {"chunks", 0, EC_OPT_INT, &chunks, "N", "use only the first N chunks (default all)"},
        {"threads", 't', EC_OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"kv-f32", 0, EC_OPT_FLAG, &kv_f32, NULL, "F32 KV cache (default F16, as llama.cpp)"},
        {"json", 0, EC_OPT_FLAG, &c.json, NULL, "print a summary as JSON"},
        EC_COMMON_OPTS(c),
        {NULL, 0, EC_OPT_END, NULL, NULL, NULL},
    };
    const char **pos = NULL;
    size_t n_pos = 0;
    int code;
    if (ec_cli_parse(usage, description, opts, &c, argc, argv, &pos, &n_pos, &code) != 0)
        return code;
    if (n_pos != 1) {
        free((void *)pos);
        return ec_cli_usage_error("imatrix", "expected one MODEL argument, got %zu", n_pos);
    }
    const char *model_path = pos[0];
    free((void *)pos);
    int bad = ec_cli_check_text_opts("imatrix", text_path, tokens_path, ctx, batch, chunks, threads);
    if (bad)
        return bad;
    if (!out_path)
        return ec_cli_usage_error("imatrix", "-o OUT is required");

    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_model m;
    memset(&m, 0, sizeof m);
    struct ec_imatrix im;
    memset(&im, 0, sizeof im);
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
    struct progress prog = {.print = ec_log_level() != EC_LOG_QUIET};
    struct ec_imatrix_opts io = {
        .n_ctx = ctx,
        .n_batch = batch,
        .max_chunks = chunks,
        .n_threads = (int)threads,
        .kv_f32 = kv_f32,
        .dataset = text_path ? text_path : tokens_path,
        .on_chunk = on_chunk,
        .user = &prog,
    };
    struct ec_ppl_result r;
    if ((st = ec_imatrix_compute(&m, tokens, n_tokens, &io, &im, &r, &d)) != EC_OK)
        goto out_fail;
    if ((st = ec_imatrix_save(&im, out_path, &d)) != EC_OK)
        goto out_fail;
    double tps = r.seconds > 0 ? (double)r.n_evaluated / r.seconds : 0.0;
    if (c.json)
        printf("{\"output\": \"%s\", \"entries\": %zu, \"chunks\": %lld, \"n_ctx\": %ld, "
               "\"calibration_ppl\": %.6f, \"tokens_per_s\": %.1f}\n",
               out_path, im.n, (long long)r.n_chunks, ctx, r.ppl, tps);
    else
        printf("%s: %zu entries from %lld chunks of %ld tokens; calibration PPL = %.4f +/- "
               "%.5f; %.1f tokens/s\n",
               out_path, im.n, (long long)r.n_chunks, ctx, r.ppl, r.ppl_err, tps);
    ec_imatrix_release(&im);
    free(tokens);
    ec_model_close(&m);
    return ec_cli_finish(EC_EXIT_OK);

out_fail:
    ec_imatrix_release(&im);
    free(tokens);
    ec_model_close(&m);
    return ec_cli_fail(&d);
}
