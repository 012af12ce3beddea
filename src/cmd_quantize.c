/* edgec quantize: HF checkpoint or GGUF -> quantized GGUF (llama-quantize's mixes). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "edgec/quantize.h"

static const char usage[] =
    "edgec quantize INPUT -o OUT.gguf --type TYPE [--imatrix FILE] [--include-weights RE]...\n"
    "       [--exclude-weights RE]... [--tensor-type RE=TYPE]... [--output-tensor-type T]\n"
    "       [--token-embedding-type T] [--pure] [--leave-output-tensor] [--allow-requantize]\n"
    "       [--threads N] [--dry-run] [--json] [-q|-v]";

static const char description[] =
    "Quantize a Hugging Face checkpoint folder or a GGUF file into a GGUF llama.cpp loads,\n"
    "choosing each tensor's type as llama-quantize (llama.cpp c392e509) does for the mix,\n"
    "and producing the same bytes. INPUT may be an HF folder (read as its F32 conversion)\n"
    "or a .gguf (quantized inputs need --allow-requantize).\n"
    "\n"
    "TYPE: %s.\n"
    "\n"
    "Where a row length fits no block of the chosen type, llama.cpp's fallback is used\n"
    "(q2_K/q3_K -> iq4_nl, q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, then f16). Where\n"
    "llama-quantize refuses (a 32-block type such as Q8_0/Q4_0 on rows that are not a\n"
    "multiple of 32), edgec writes that tensor as F16 and warns.\n"
    "\n"
    "Overrides apply after the mix: --tensor-type REGEX=TYPE (POSIX extended regex searched\n"
    "anywhere in the GGUF tensor name, e.g. 'blk\\.[0-3]\\.ffn_down'; repeatable; the FIRST\n"
    "matching pattern wins; only quantizable tensors, never norms), then --token-embedding-type\n"
    "and --output-tensor-type (these beat --tensor-type). --pure gives every quantizable\n"
    "tensor TYPE's base type; --leave-output-tensor keeps output.weight unquantized.\n"
    "--include-weights / --exclude-weights (POSIX regexes, repeatable) choose which tensors\n"
    "use their --imatrix entry: exclusions first, then only the included ones; a plain name\n"
    "acts as llama-quantize's substring match.\n"
    "\n"
    "The output gets llama-quantize's metadata (general.file_type, quantize.imatrix.*) plus\n"
    "edgec.quantize.* recipe keys (--no-recipe omits them, making the file byte-identical to\n"
    "llama-quantize's). With --dry-run nothing is written; the plan and sizes are printed.\n"
    "Results go to stdout (--json: plan and per-tensor results with SHA-256; without --json tensors are not hashed), warnings to stderr.\n"
    "\n"
    "Environment: EDGEC_KERNELS=ref runs the scalar reference kernels instead of the fast\n"
    "paths (the same bytes, several times slower; for cross-checking).";

static void on_progress(void *ctx, uint64_t done, uint64_t total, uint64_t bytes)
{
    struct ec_progress *p = ctx;
    p->total = total;
    ec_progress_update(p, done, bytes);
}

static bool parse_type(const char *s, enum ec_dtype *t)
{
    return ec_dtype_from_name(s, t) && (unsigned)*t < EC_GGML_TYPE_COUNT;
}

static double mib(uint64_t b)
{
    return (double)b / (1024.0 * 1024.0);
}

static void print_json(const struct ec_quantize_opts *o, const struct ec_quantize_result *r)
{
    const struct ec_quant_plan *p = &r->plan;
    printf("{\"input\": ");
    ec_json_write_str(stdout, o->input);
    printf(", \"output\": ");
    if (o->dry_run)
        printf("null");
    else
        ec_json_write_str(stdout, o->output);
    printf(", \"type\": \"%s\", \"file_type\": %d, \"dry_run\": %s", ec_ftype_name(o->ftype),
           (int)o->ftype, o->dry_run ? "true" : "false");
    printf(", \"imatrix\": ");
    if (o->imatrix_file) {
        printf("{\"file\": ");
        ec_json_write_str(stdout, o->imatrix_file);
        printf(", \"sha256\": \"%s\", \"entries_used\": %zu}", r->imatrix_sha256,
               r->n_imatrix_entries);
    } else {
        printf("null");
    }
    printf(", \"n_tensors\": %zu, \"n_elems\": %llu, \"src_bytes\": %llu, \"dst_bytes\": %llu, "
           "\"bpw\": %.4f, \"file_bytes\": %llu, \"seconds\": %.3f, \"n_fallback\": %zu, "
           "\"llama_quantize_refuses\": %s",
           p->n, (unsigned long long)p->n_elems_total, (unsigned long long)p->src_bytes_total,
           (unsigned long long)p->dst_bytes_total,
           p->n_elems_total ? 8.0 * (double)p->dst_bytes_total / (double)p->n_elems_total : 0.0,
           (unsigned long long)r->file_bytes, r->seconds, p->n_fallback,
           p->llama_refuses ? "true" : "false");
    printf(", \"warnings\": [");
    for (size_t i = 0; i < p->n_warnings; i++) {
        if (i)
            printf(", ");
        ec_json_write_str(stdout, p->warnings[i]);
    }
    printf("], \"tensors\": [");
    for (size_t i = 0; i < p->n; i++) {
        const struct ec_plan_entry *e = &p->entries[i];
        printf("%s\n  {\"name\": ", i ? "," : "");
        ec_json_write_str(stdout, e->name);
        printf(", \"ne\": [");
        for (uint32_t k = 0; k < e->n_dims; k++)
            printf("%s%llu", k ? ", " : "", (unsigned long long)e->ne[k]);
        printf("], \"src_type\": \"%s\", \"wanted\": \"%s\", \"type\": \"%s\", \"src_bytes\": "
               "%llu, \"n_bytes\": %llu, \"quantized\": %s, \"fallback\": %s, \"override\": %s, "
               "\"imatrix\": %s",
               ec_dtype_name(e->src_type), ec_dtype_name(e->wanted), ec_dtype_name(e->type),
               (unsigned long long)e->src_bytes, (unsigned long long)e->dst_bytes,
               (e->flags & EC_PLAN_QUANTIZE) ? "true" : "false",
               (e->flags & EC_PLAN_FALLBACK) ? "true" : "false",
               (e->flags & EC_PLAN_OVERRIDDEN) ? "true" : "false",
               (e->flags & EC_PLAN_IMATRIX) ? "true" : "false");
        if (!o->dry_run && r->tensors)
            printf(", \"sha256\": \"%s\", \"seconds\": %.4f", r->tensors[i].sha256,
                   r->tensors[i].seconds);
        printf("}");
    }
    printf("\n]}\n");
}

static void print_summary(const struct ec_quantize_opts *o, const struct ec_quantize_result *r)
{
    const struct ec_quant_plan *p = &r->plan;
    size_t counts[EC_GGML_TYPE_COUNT] = {0};
    for (size_t i = 0; i < p->n; i++)
        if ((unsigned)p->entries[i].type < EC_GGML_TYPE_COUNT)
            counts[p->entries[i].type]++;
    const double n = (double)(p->n_elems_total ? p->n_elems_total : 1);
    printf("%s -> %s (%s%s)\n", o->input, o->dry_run ? "(dry run)" : o->output,
           ec_ftype_name(o->ftype), o->imatrix_file ? ", imatrix" : "");
    printf("  tensors:  %zu (", p->n);
    bool first = true;
    for (unsigned t = 0; t < EC_GGML_TYPE_COUNT; t++) {
        if (!counts[t])
            continue;
        printf("%s%s x%zu", first ? "" : ", ", ec_dtype_name((enum ec_dtype)t), counts[t]);
        first = false;
    }
    printf(")\n");
    printf("  before:   %.2f MiB (%.2f bits per weight)\n", mib(p->src_bytes_total),
           8.0 * (double)p->src_bytes_total / n);
    printf("  after:    %.2f MiB (%.2f bits per weight)%s\n", mib(p->dst_bytes_total),
           8.0 * (double)p->dst_bytes_total / n, o->dry_run ? " [tensor data, dry run]" : "");
    if (!o->dry_run)
        printf("  file:     %llu bytes in %.2f s (%.1f MB/s)\n", (unsigned long long)r->file_bytes,
               r->seconds,
               r->seconds > 0 ? (double)p->src_bytes_total / 1e6 / r->seconds : 0.0);
    if (o->imatrix_file)
        printf("  imatrix:  %zu entries used (sha256 %.16s...)\n", r->n_imatrix_entries,
               r->imatrix_sha256);
    printf("  fallbacks: %zu%s\n", p->n_fallback,
           p->llama_refuses ? " (llama-quantize would refuse this model with this type)" : "");
}

int ec_cmd_quantize(int argc, char **argv)
{
    struct ec_common_opts c = {0};
    const char *output = NULL, *type = NULL, *imatrix = NULL, *out_type = NULL,
               *embd_type = NULL;
    struct ec_strlist inc = {0}, exc = {0}, tt = {0};
    bool pure = false, leave_output = false, allow_requant = false, dry_run = false,
         no_recipe = false;
    long threads = 0;
    const struct ec_opt opts[] = {
        {"output", 'o', EC_OPT_STRING, &output, "OUT.gguf", "destination file (required unless --dry-run)"},
        {"type", 't', EC_OPT_STRING, &type, "TYPE", "quantization mix or type (required), e.g. Q4_K_M"},
        {"imatrix", 0, EC_OPT_STRING, &imatrix, "FILE", "llama.cpp importance matrix (.dat)"},
        {"include-weights", 0, EC_OPT_MULTI, &inc, "RE", "use the imatrix only for matching tensors"},
        {"exclude-weights", 0, EC_OPT_MULTI, &exc, "RE", "do not use the imatrix for matching tensors"},
        {"tensor-type", 0, EC_OPT_MULTI, &tt, "RE=TYPE", "type for tensors matching RE (first match wins)"},
        {"output-tensor-type", 0, EC_OPT_STRING, &out_type, "T", "type of output.weight"},
        {"token-embedding-type", 0, EC_OPT_STRING, &embd_type, "T", "type of token_embd.weight"},
        {"pure", 0, EC_OPT_FLAG, &pure, NULL, "no mix rules: every quantizable tensor gets the base type"},
        {"leave-output-tensor", 0, EC_OPT_FLAG, &leave_output, NULL, "do not quantize output.weight"},
        {"allow-requantize", 0, EC_OPT_FLAG, &allow_requant, NULL, "accept already quantized GGUF tensors"},
        {"no-recipe", 0, EC_OPT_FLAG, &no_recipe, NULL, "omit edgec.quantize.* keys (file as llama-quantize writes it)"},
        {"threads", 'j', EC_OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"dry-run", 'n', EC_OPT_FLAG, &dry_run, NULL, "plan and sizes only; write nothing"},
        {"json", 0, EC_OPT_FLAG, &c.json, NULL, "print the plan and per-tensor results as JSON"},
        EC_COMMON_OPTS(c),
        {NULL, 0, EC_OPT_END, NULL, NULL, NULL},
    };
    char desc[4096];
    snprintf(desc, sizeof desc, description, ec_ftype_names_help());
    const char **pos = NULL;
    size_t n_pos = 0;
    int code;
    struct ec_type_override *ov = NULL;
    char **ov_pats = NULL;
    if (ec_cli_parse(usage, desc, opts, &c, argc, argv, &pos, &n_pos, &code) != 0)
        goto out;

    struct ec_quantize_opts o = {
        .output_tensor_type = EC_DTYPE_UNSET,
        .token_embedding_type = EC_DTYPE_UNSET,
    };
    if (n_pos != 1) {
        code = ec_cli_usage_error("quantize", "expected one INPUT, got %zu", n_pos);
        goto out;
    }
    if (!type) {
        code = ec_cli_usage_error("quantize", "missing --type TYPE (one of %s)",
                                  ec_ftype_names_help());
        goto out;
    }
    if (!ec_ftype_from_name(type, &o.ftype)) {
        code = ec_cli_usage_error("quantize", "--type '%s': expected one of %s", type,
                                  ec_ftype_names_help());
        goto out;
    }
    if (!output && !dry_run) {
        code = ec_cli_usage_error("quantize", "missing -o OUT.gguf (or --dry-run)");
        goto out;
    }
    if (threads < 0 || threads > 4096) {
        code = ec_cli_usage_error("quantize", "--threads %ld: expected 0..4096", threads);
        goto out;
    }
    if (out_type && !parse_type(out_type, &o.output_tensor_type)) {
        code = ec_cli_usage_error("quantize", "--output-tensor-type '%s': unknown type", out_type);
        goto out;
    }
    if (embd_type && !parse_type(embd_type, &o.token_embedding_type)) {
        code = ec_cli_usage_error("quantize", "--token-embedding-type '%s': unknown type",
                                  embd_type);
        goto out;
    }
    if ((inc.n || exc.n) && !imatrix) {
        code = ec_cli_usage_error("quantize", "--include-weights/--exclude-weights need --imatrix");
        goto out;
    }
    if (tt.n) {
        ov = calloc(tt.n, sizeof *ov);
        ov_pats = calloc(tt.n, sizeof *ov_pats);
        if (!ov || !ov_pats) {
            code = EC_EXIT_IO;
            goto out;
        }
        for (size_t i = 0; i < tt.n; i++) {
            const char *eq = strrchr(tt.items[i], '=');
            if (!eq || eq == tt.items[i] || !parse_type(eq + 1, &ov[i].type)) {
                code = ec_cli_usage_error("quantize",
                                          "--tensor-type '%s': expected REGEX=TYPE with a known type",
                                          tt.items[i]);
                goto out;
            }
            ov_pats[i] = strndup(tt.items[i], (size_t)(eq - tt.items[i]));
            if (!ov_pats[i]) {
                code = EC_EXIT_IO;
                goto out;
            }
            ov[i].pattern = ov_pats[i];
        }
    }

    o.input = pos[0];
    o.output = output;
    o.imatrix_file = imatrix;
    o.n_include = inc.n;
    o.include_weights = inc.items;
    o.n_exclude = exc.n;
    o.exclude_weights = exc.items;
    o.n_overrides = tt.n;
    o.overrides = ov;
    o.override_specs = tt.items;
    o.pure = pure;
    o.leave_output_tensor = leave_output;
    o.allow_requantize = allow_requant;
    o.dry_run = dry_run;
    o.no_recipe = no_recipe;
    o.n_threads = (int)threads;
    o.skip_tensor_sha256 = !c.json; /* per-tensor hashes are only printed by --json */

    struct ec_progress prog;
    ec_progress_begin(&prog, "quantize", 0);
    o.progress = on_progress;
    o.progress_ctx = &prog;
    struct ec_quantize_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    enum ec_status s = ec_quantize_run(&o, &r, &d);
    ec_progress_end(&prog);
    if (s != EC_OK) {
        code = ec_cli_fail(&d);
        ec_quantize_result_release(&r);
        goto out;
    }
    /* llama-quantize prints every fallback; keep the default output short */
    const size_t max_warn = ec_log_level() == EC_LOG_VERBOSE ? r.plan.n_warnings : 5;
    for (size_t i = 0; i < r.plan.n_warnings && i < max_warn; i++)
        ec_log_warn("%s", r.plan.warnings[i]);
    if (r.plan.n_warnings > max_warn)
        ec_log_warn("... and %zu more fallback warnings (-v lists them)",
                    r.plan.n_warnings - max_warn);
    if (ec_log_level() == EC_LOG_VERBOSE) {
        for (size_t i = 0; i < r.plan.n; i++) {
            const struct ec_plan_entry *e = &r.plan.entries[i];
            ec_log_verbose("[%4zu/%4zu] %-36s %-7s -> %-7s %10.3f KiB -> %10.3f KiB%s%s", i + 1,
                           r.plan.n, e->name, ec_dtype_name(e->src_type), ec_dtype_name(e->type),
                           (double)e->src_bytes / 1024.0, (double)e->dst_bytes / 1024.0,
                           (e->flags & EC_PLAN_IMATRIX) ? " imatrix" : "",
                           (e->flags & EC_PLAN_OVERRIDDEN) ? " override" : "");
        }
    }
    if (c.json)
        print_json(&o, &r);
    else if (ec_log_level() != EC_LOG_QUIET)
        print_summary(&o, &r);
    ec_quantize_result_release(&r);
    code = ec_cli_finish(EC_EXIT_OK);

out:
    if (ov_pats)
        for (size_t i = 0; i < tt.n; i++)
            free(ov_pats[i]);
    free(ov_pats);
    free(ov);
    ec_strlist_release(&inc);
    ec_strlist_release(&exc);
    ec_strlist_release(&tt);
    free(pos);
    return code;
}
