/* edgec distill-export: the teacher's top-k next-token log-probabilities over a
 * text, for distillation (format in docs/distill-format.md). Also `edgec
 * inspect EXPORT_DIR` through ec_distill_inspect(). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "edgec/distill.h"

static const char usage[] =
    "edgec distill-export TEACHER (--text FILE | --tokens FILE.i32) --seq-len L --top-k K\n"
    "       [--temperature T] [--shard-tokens N] [--seqs N] [--threads N] [--kv-f32] [--force]\n"
    "       [--json] -o DIR\n"
    "       edgec distill-export --dump DIR [--dump-seq N]";
static const char description[] =
    "Run TEACHER (checkpoint folder or .gguf) over a text and store, for every position, the\n"
    "top-K next-token ids with their log-probabilities log_softmax(logits / T) and the log of\n"
    "the probability mass outside the top K, in zlib-compressed, CRC-checked shards of\n"
    "--shard-tokens tokens plus a manifest.json in DIR.\n"
    "The text (minus one trailing newline) is tokenized with BOS as `edgec perplexity` does and\n"
    "cut into consecutive, non-overlapping windows of L tokens; each window's first token is\n"
    "replaced by BOS (llama-perplexity's chunks) and every position gets a record.\n"
    "Log-probabilities are stored on a grid of 1/256 nat (error <= 1/512 nat).\n"
    "A rerun with the same arguments keeps the shards already complete and finishes the rest;\n"
    "other arguments are refused (exit 2) unless --force. The output does not depend on\n"
    "--threads. --dump prints one stored sequence as JSON (read back through the verifier).";

struct cli_progress {
    bool enabled;
    double t0;
    double t_last;
    uint64_t fresh_at_start;
    bool started;
};

static void on_progress(void *user, const struct ec_distill_progress *p)
{
    struct cli_progress *cp = user;
    if (!cp->enabled)
        return;
    double now = ec_now_seconds();
    bool last = p->shards_done == p->n_shards;
    uint64_t fresh = p->tokens_done - p->tokens_reused;
    if (!cp->started) {
        /* the rate counts from the first report, after loading and tokenizing */
        cp->started = true;
        cp->t0 = now;
        cp->fresh_at_start = fresh;
    }
    if (!last && now - cp->t_last < 0.2)
        return;
    cp->t_last = now;
    double frac = p->tokens_total ? (double)p->tokens_done / (double)p->tokens_total : 1.0;
    char bar[31];
    int filled = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[30] = '\0';
    double el = now - cp->t0;
    double tps = el > 0 ? (double)(fresh - cp->fresh_at_start) / el : 0;
    double eta = tps > 0 ? (double)(p->tokens_total - p->tokens_done) / tps : 0;
    fprintf(stderr, "\rdistill [%s] %" PRIu64 "/%" PRIu64 " tokens, shard %" PRIu32 "/%" PRIu32
            ", %.0f tokens/s, ETA %.0fs   %s",
            bar, p->tokens_done, p->tokens_total, p->shards_done, p->n_shards, tps, eta,
            last ? "\n" : "");
    fflush(stderr);
}

static int dump_export(const char *dir, long seq)
{
    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_distill_manifest m;
    struct ec_distill_records rec;
    memset(&rec, 0, sizeof rec);
    if (ec_distill_manifest_load(&m, dir, &d) != EC_OK)
        return ec_cli_fail(&d);
    if (seq < 0 || (uint64_t)seq >= m.n_seqs) {
        ec_distill_manifest_release(&m);
        return ec_cli_usage_error("distill-export", "--dump-seq %ld: the export has %" PRIu64
                                  " sequences", seq, m.n_seqs);
    }
    uint32_t si = 0;
    while (si + 1 < m.n_shards && m.shards[si + 1].first_seq <= (uint64_t)seq)
        si++;
    if (ec_distill_shard_read(&m, si, &rec, &d) != EC_OK) {
        ec_distill_manifest_release(&m);
        return ec_cli_fail(&d);
    }
    const uint64_t t0 = ((uint64_t)seq - m.shards[si].first_seq) * m.seq_len;
    printf("{\"seq\": %ld, \"shard\": %" PRIu32 ", \"seq_len\": %" PRIu32 ", \"top_k\": %" PRIu32
           ", \"positions\": [",
           seq, si, m.seq_len, m.top_k);
    for (uint64_t t = t0; t < t0 + m.seq_len; t++) {
        printf("%s\n {\"input\": %" PRId32 ", \"ids\": [", t > t0 ? "," : "", rec.input_ids[t]);
        for (uint32_t j = 0; j < m.top_k; j++)
            printf("%s%" PRId32, j ? ", " : "", rec.topk_ids[t * m.top_k + j]);
        printf("], \"logp\": [");
        for (uint32_t j = 0; j < m.top_k; j++)
            printf("%s%.17g", j ? ", " : "", rec.logp[t * m.top_k + j]);
        printf("], \"tail_logp\": %.17g}", rec.tail_logp[t]);
    }
    printf("\n]}\n");
    ec_distill_records_release(&rec);
    ec_distill_manifest_release(&m);
    return ec_cli_finish(EC_EXIT_OK);
}

int ec_distill_inspect(const char *dir, bool json, bool verbose)
{
    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_distill_manifest m;
    if (ec_distill_verify(dir, &m, &d) != EC_OK)
        return ec_cli_fail(&d);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < m.n_shards; i++)
        bytes += m.shards[i].bytes;
    double bpt = m.n_tokens ? (double)bytes / (double)m.n_tokens : 0;
    if (json) {
        printf("{\"path\": ");
        ec_json_write_str(stdout, dir);
        printf(", \"format\": \"%s\", \"version\": %d, \"teacher\": {\"path\": ", EC_DISTILL_FORMAT,
               EC_DISTILL_VERSION);
        ec_json_write_str(stdout, m.teacher_path);
        printf(", \"name\": ");
        ec_json_write_str(stdout, m.teacher_name);
        printf(", \"architecture\": ");
        ec_json_write_str(stdout, m.teacher_arch);
        printf(", \"sha256\": \"%s\"}, \"tokenizer\": ", m.teacher_sha256);
        ec_json_write_str(stdout, m.tokenizer_type);
        printf(", \"n_vocab\": %" PRIu32 ", \"top_k\": %" PRIu32 ", \"temperature\": %.17g, "
               "\"seq_len\": %" PRIu32 ", \"n_seqs\": %" PRIu64 ", \"n_tokens\": %" PRIu64
               ", \"n_shards\": %" PRIu32 ", \"shard_bytes\": %" PRIu64
               ", \"bytes_per_token\": %.3f, \"verified\": true}\n",
               m.n_vocab, m.top_k, m.temperature, m.seq_len, m.n_seqs, m.n_tokens, m.n_shards,
               bytes, bpt);
    } else {
        printf("%s: %s version %d (all %" PRIu32 " shards verified: sizes, crc32, sha256)\n", dir,
               EC_DISTILL_FORMAT, EC_DISTILL_VERSION, m.n_shards);
        printf("teacher: %s (name '%s', architecture %s)\n  sha256 %s\n", m.teacher_path,
               m.teacher_name, m.teacher_arch, m.teacher_sha256);
        printf("tokenizer %s, n_vocab %" PRIu32 ", top_k %" PRIu32 ", temperature %g, seq_len %"
               PRIu32 "\n",
               m.tokenizer_type, m.n_vocab, m.top_k, m.temperature, m.seq_len);
        printf("sequences %" PRIu64 ", tokens %" PRIu64 ", shards %" PRIu32 " of %" PRIu64
               " tokens, %" PRIu64 " bytes, %.2f bytes/token\n",
               m.n_seqs, m.n_tokens, m.n_shards, m.shard_tokens, bytes, bpt);
        if (verbose)
            for (uint32_t i = 0; i < m.n_shards; i++)
                printf("  %s  first_seq %" PRIu64 "  tokens %" PRIu64 "  bytes %" PRIu64
                       "  crc32 %08" PRIx32 "\n",
                       m.shards[i].file, m.shards[i].first_seq, m.shards[i].n_tokens,
                       m.shards[i].bytes, m.shards[i].crc32);
    }
    ec_distill_manifest_release(&m);
    return ec_cli_finish(EC_EXIT_OK);
}

int ec_cmd_distill_export(int argc, char **argv)
{
    struct ec_common_opts c = {0};
    const char *text_path = NULL, *tokens_path = NULL, *out = NULL, *dump = NULL;
    long seq_len = 0, top_k = 0, shard_tokens = 0, seqs = 0, threads = 0, dump_seq = 0;
    double temperature = 1.0;
    bool kv_f32 = false, force = false;
    const struct ec_opt opts[] = {
        {"text", 'f', EC_OPT_STRING, &text_path, "FILE", "UTF-8 text to run the teacher over"},
        {"tokens", 0, EC_OPT_STRING, &tokens_path, "FILE",
         "pre-tokenized ids (int32 little-endian, BOS included) instead of --text"},
        {"seq-len", 'L', EC_OPT_INT, &seq_len, "L", "tokens per sequence (window)"},
        {"top-k", 'k', EC_OPT_INT, &top_k, "K", "token ids kept per position"},
        {"temperature", 'T', EC_OPT_DOUBLE, &temperature, "T",
         "softmax temperature: log_softmax(logits / T) (default 1)"},
        {"shard-tokens", 0, EC_OPT_INT, &shard_tokens, "N",
         "tokens per shard, a multiple of L (default: the multiple of L nearest 32768)"},
        {"seqs", 0, EC_OPT_INT, &seqs, "N", "export only the first N sequences (default all)"},
        {"threads", 't', EC_OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"kv-f32", 0, EC_OPT_FLAG, &kv_f32, NULL, "F32 KV cache (default F16 as llama.cpp)"},
        {"force", 0, EC_OPT_FLAG, &force, NULL,
         "overwrite an export in DIR made with other arguments"},
        {"output", 'o', EC_OPT_STRING, &out, "DIR", "output folder (created if absent)"},
        {"dump", 0, EC_OPT_STRING, &dump, "DIR", "print one sequence of an export as JSON"},
        {"dump-seq", 0, EC_OPT_INT, &dump_seq, "N", "sequence --dump prints (default 0)"},
        {"json", 0, EC_OPT_FLAG, &c.json, NULL, "print the summary as JSON"},
        EC_COMMON_OPTS(c),
        {NULL, 0, EC_OPT_END, NULL, NULL, NULL},
    };
    const char **pos = NULL;
    size_t n_pos = 0;
    int code = 0;
    if (ec_cli_parse(usage, description, opts, &c, argc, argv, &pos, &n_pos, &code) != 0)
        return code;
    if (dump) {
        free((void *)pos);
        if (n_pos != 0)
            return ec_cli_usage_error("distill-export", "--dump takes no TEACHER argument");
        return dump_export(dump, dump_seq);
    }
    if (n_pos != 1) {
        free((void *)pos);
        return ec_cli_usage_error("distill-export", "expected one TEACHER argument, got %zu",
                                  n_pos);
    }
    const char *teacher = pos[0];
    free((void *)pos);
    if ((text_path == NULL) == (tokens_path == NULL))
        return ec_cli_usage_error("distill-export", "give exactly one of --text and --tokens");
    if (!out)
        return ec_cli_usage_error("distill-export", "-o DIR is required");
    if (seq_len < 2 || seq_len > (1l << 20))
        return ec_cli_usage_error("distill-export", "--seq-len %ld: must be 2..1048576", seq_len);
    if (top_k < 1 || top_k > EC_DISTILL_MAX_TOP_K)
        return ec_cli_usage_error("distill-export", "--top-k %ld: must be 1..%d", top_k,
                                  EC_DISTILL_MAX_TOP_K);
    if (!(temperature > 0) || temperature > 1e6)
        return ec_cli_usage_error("distill-export", "--temperature %g: must be > 0", temperature);
    if (shard_tokens < 0 || (shard_tokens > 0 && shard_tokens % seq_len != 0))
        return ec_cli_usage_error("distill-export",
                                  "--shard-tokens %ld: must be a positive multiple of --seq-len %ld",
                                  shard_tokens, seq_len);
    if (seqs < 0 || threads < 0 || threads > 1024)
        return ec_cli_usage_error("distill-export", "--seqs and --threads must be >= 0");

    struct ec_distill_opts o;
    ec_distill_opts_init(&o);
    o.teacher_path = teacher;
    o.text_path = text_path;
    o.tokens_path = tokens_path;
    o.out_dir = out;
    o.seq_len = (uint32_t)seq_len;
    o.top_k = (uint32_t)top_k;
    o.temperature = temperature;
    o.shard_tokens = (uint64_t)shard_tokens;
    o.max_seqs = seqs;
    o.n_threads = (int)threads;
    o.kv_f32 = kv_f32;
    o.force = force;
    struct cli_progress cp = {
        .enabled = ec_log_level() != EC_LOG_QUIET && isatty(STDERR_FILENO),
    };
    o.on_progress = on_progress;
    o.user = &cp;

    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_distill_result r;
    if (ec_distill_export(&o, &r, &d) != EC_OK)
        return ec_cli_fail(&d);
    double tps = r.seconds > 0 ? (double)r.tokens_evaluated / r.seconds : 0.0;
    double bpt = r.n_tokens ? (double)r.shard_bytes / (double)r.n_tokens : 0.0;
    if (c.json) {
        printf("{\"output\": ");
        ec_json_write_str(stdout, out);
        printf(", \"n_seqs\": %" PRIu64 ", \"n_tokens\": %" PRIu64 ", \"n_shards\": %" PRIu32
               ", \"n_shards_reused\": %" PRIu32 ", \"tokens_evaluated\": %" PRIu64
               ", \"shard_bytes\": %" PRIu64 ", \"total_bytes\": %" PRIu64
               ", \"bytes_per_token\": %.3f, \"seconds\": %.3f, \"tokens_per_s\": %.1f}\n",
               r.n_seqs, r.n_tokens, r.n_shards, r.n_shards_reused, r.tokens_evaluated,
               r.shard_bytes, r.total_bytes, bpt, r.seconds, tps);
    } else {
        printf("exported %" PRIu64 " tokens (%" PRIu64 " sequences of %ld) to %s\n", r.n_tokens,
               r.n_seqs, seq_len, out);
        printf("shards %" PRIu32 " (%" PRIu32 " kept from a previous run), %" PRIu64
               " bytes (%" PRIu64 " with the manifest), %.2f bytes/token\n",
               r.n_shards, r.n_shards_reused, r.shard_bytes, r.total_bytes, bpt);
        printf("evaluated %" PRIu64 " tokens in %.2f s, %.1f tokens/s\n", r.tokens_evaluated,
               r.seconds, tps);
    }
    return ec_cli_finish(EC_EXIT_OK);
}
