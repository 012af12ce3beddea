/* edgec prune: sparsify or shrink a model with calibration data. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "edgec/io.h"
#include "edgec/prune_run.h"

static const char usage[] =
    "edgec prune MODEL -o OUT(.gguf|_DIR) [--method magnitude|wanda|sparsegpt] "
    "[--sparsity S | --pattern N:M] [--sparsity-per-layer REGEX=S]... [--calib FILE] "
    "[--calib-samples N] [--calib-len L] [--seed N] [--structured heads=K|R,ffn=R,layers=K] "
    "[--prune-embeddings] [--prune-output] [--outtype auto|f32|f16|bf16] "
    "[--then-quantize TYPE] [--json] [--summary FILE]";
static const char description[] =
    "Prune MODEL (checkpoint folder or .gguf) layer by layer on calibration data (SparseGPT or\n"
    "Wanda statistics of each block's dense pass; the pruned block's outputs feed the next),\n"
    "or remove attention heads / FFN channels / whole layers (--structured; GQA: heads=K\n"
    "removes K/g whole KV groups when g = n_head/n_head_kv divides K, else K/n_kv query heads\n"
    "from every group). Writes a GGUF (-o X.gguf) or an HF folder (model.safetensors,\n"
    "config.json, tokenizer files). Norms and biases are never pruned. A Qwen2 model with\n"
    "heads removed is written to GGUF as the llama architecture (llama.cpp's qwen2 loader\n"
    "needs heads x head_dim = hidden size; same graph, q/k rows permuted for its RoPE).\n"
    "The summary gives per tensor the sparsity, the relative reconstruction error on the\n"
    "calibration windows and input_spread: max / median of the input columns' RMS, the\n"
    "outlier features Wanda's weighting relies on (near 1: Wanda acts as magnitude per row).";

static void on_progress(void *ctx, const char *stage, int layer, int n_layer)
{
    (void)ctx;
    if (layer >= 0)
        ec_log_info("prune: %s layer %d/%d", stage, layer + 1, n_layer);
}

static int parse_structured(const char *s, struct ec_prune_opts *o)
{
    char *copy = strdup(s);
    if (!copy)
        return -1;
    int rc = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            rc = -1;
            break;
        }
        *eq = '\0';
        const char *v = eq + 1;
        char *end;
        double x = strtod(v, &end);
        if (end == v || *end || x < 0) {
            rc = -1;
            break;
        }
        bool frac = strchr(v, '.') != NULL;
        if (strcmp(tok, "heads") == 0) {
            if (frac && x < 1)
                o->heads_ratio = x;
            else
                o->heads_count = (int)x;
        } else if (strcmp(tok, "ffn") == 0 && x < 1) {
            o->ffn_ratio = x;
        } else if (strcmp(tok, "layers") == 0 && !frac) {
            o->layers_count = (int)x;
        } else {
            rc = -1;
            break;
        }
    }
    free(copy);
    o->structured = true;
    return rc;
}


static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* the spread of the pruned tensors' input-column RMS (max / median), as
 * measured on the calibration text: median over tensors and the largest */
static void print_input_spread(const struct ec_prune_result *r)
{
    double *v = malloc(sizeof(double) * (r->n_tensors ? r->n_tensors : 1));
    size_t n = 0, worst = 0;
    for (size_t i = 0; v && i < r->n_tensors; i++)
        if (isfinite(r->tensors[i].input_spread)) {
            if (n == 0 || r->tensors[i].input_spread > r->tensors[worst].input_spread)
                worst = i;
            v[n++] = r->tensors[i].input_spread;
        }
    if (n) {
        qsort(v, n, sizeof *v, cmp_double);
        printf("input-column RMS, max / median (outlier features): median over tensors %.2f, "
               "largest %.2f (%s)\n",
               v[(n - 1) / 2], r->tensors[worst].input_spread, r->tensors[worst].name);
    }
    free(v);
}

int ec_cmd_prune(int argc, char **argv)
{
    struct ec_common_opts c = {0};
    const char *output = NULL, *method = "sparsegpt", *sparsity = NULL, *pattern = NULL;
    const char *calib = NULL, *structured = NULL, *outtype = "auto", *then_q = NULL;
    const char *summary = NULL;
    long samples = 0, len = 0, seed = 0, threads = 0, blocksize = 0;
    double percdamp = 0.01;
    bool prune_embd = false, prune_out = false, kv_f32 = false;
    struct ec_strlist rules = {0};
    const struct ec_opt opts[] = {
        {"output", 'o', EC_OPT_STRING, &output, "OUT", "output .gguf, or an HF folder"},
        {"method", 'm', EC_OPT_STRING, &method, "NAME", "magnitude, wanda or sparsegpt (default)"},
        {"sparsity", 's', EC_OPT_STRING, &sparsity, "S", "fraction of weights to prune (0.5)"},
        {"pattern", 0, EC_OPT_STRING, &pattern, "N:M", "N zeros in every M consecutive weights"},
        {"sparsity-per-layer", 0, EC_OPT_MULTI, &rules, "REGEX=S",
         "sparsity (or N:M) for tensors whose GGUF name matches; first match wins"},
        {"calib", 0, EC_OPT_STRING, &calib, "FILE", "calibration text, or token ids (.i32)"},
        {"calib-samples", 0, EC_OPT_INT, &samples, "N", "calibration windows (128)"},
        {"calib-len", 0, EC_OPT_INT, &len, "L", "tokens per window (min(2048, n_ctx_train))"},
        {"seed", 0, EC_OPT_INT, &seed, "N", "seed for the window offsets (0)"},
        {"structured", 0, EC_OPT_STRING, &structured, "SPEC",
         "heads=K|R,ffn=R,layers=K: remove heads, FFN channels, layers"},
        {"prune-embeddings", 0, EC_OPT_FLAG, &prune_embd, NULL, "also prune token_embd (magnitude)"},
        {"prune-output", 0, EC_OPT_FLAG, &prune_out, NULL, "also prune output.weight"},
        {"blocksize", 0, EC_OPT_INT, &blocksize, "N", "SparseGPT lazy-update block (128)"},
        {"percdamp", 0, EC_OPT_DOUBLE, &percdamp, "F", "SparseGPT damping (0.01)"},
        {"kv-f32", 0, EC_OPT_FLAG, &kv_f32, NULL, "calibration attention without fp16 rounding"},
        {"outtype", 0, EC_OPT_STRING, &outtype, "TYPE", "auto (source), f32, f16 or bf16"},
        {"then-quantize", 0, EC_OPT_STRING, &then_q, "TYPE",
         "quantize the pruned GGUF (Q4_K_M, Q8_0, ...)"},
        {"threads", 't', EC_OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"json", 0, EC_OPT_FLAG, &c.json, NULL, "print the summary as JSON on stdout"},
        {"summary", 0, EC_OPT_STRING, &summary, "FILE", "write the JSON summary to FILE"},
        EC_COMMON_OPTS(c),
        {NULL, 0, EC_OPT_END, NULL, NULL, NULL},
    };
    const char **pos = NULL;
    size_t n_pos = 0;
    int code = 0;
    if (ec_cli_parse(usage, description, opts, &c, argc, argv, &pos, &n_pos, &code) != 0) {
        ec_strlist_release(&rules);
        return code;
    }
    struct ec_prune_opts o;
    ec_prune_opts_init(&o);
    struct ec_prune_rule *rl = NULL;
    struct ec_diag d;
    ec_diag_clear(&d);
    if (n_pos != 1) {
        code = ec_cli_usage_error("prune", "expected one MODEL argument, got %zu", n_pos);
        goto out;
    }
    o.input = pos[0];
    o.output = output;
    if (!output) {
        code = ec_cli_usage_error("prune", "-o OUT is required");
        goto out;
    }
    if (!ec_prune_method_from_name(method, &o.method)) {
        code = ec_cli_usage_error("prune", "--method '%s': magnitude, wanda or sparsegpt", method);
        goto out;
    }
    if (sparsity && pattern) {
        code = ec_cli_usage_error("prune", "give --sparsity or --pattern, not both");
        goto out;
    }
    if ((sparsity || pattern) && ec_sparsity_parse(pattern ? pattern : sparsity, &o.sp, &d) != EC_OK) {
        code = ec_cli_usage_error("prune", "%s", d.msg);
        goto out;
    }
    if (pattern && o.sp.prune_m == 0) {
        code = ec_cli_usage_error("prune", "--pattern '%s': expected N:M", pattern);
        goto out;
    }
    rl = calloc(rules.n ? rules.n : 1, sizeof *rl);
    if (!rl) {
        code = EC_EXIT_IO;
        goto out;
    }
    for (size_t i = 0; i < rules.n; i++) {
        const char *eq = strrchr(rules.items[i], '=');
        if (!eq || eq == rules.items[i]) {
            code = ec_cli_usage_error("prune", "--sparsity-per-layer '%s': expected REGEX=S",
                                      rules.items[i]);
            goto out;
        }
        char *pat = strndup(rules.items[i], (size_t)(eq - rules.items[i]));
        if (!pat || ec_sparsity_parse(eq + 1, &rl[i].sp, &d) != EC_OK) {
            free(pat);
            code = ec_cli_usage_error("prune", "--sparsity-per-layer '%s': %s", rules.items[i],
                                      d.msg);
            goto out;
        }
        rl[i].pattern = pat;
        o.n_rules = i + 1;
    }
    o.rules = rl;
    o.calib = calib;
    if (samples < 0 || len < 0 || seed < 0 || threads < 0 || blocksize < 0 || percdamp < 0) {
        code = ec_cli_usage_error("prune", "counts must be >= 0");
        goto out;
    }
    o.calib_samples = samples;
    o.calib_len = len;
    o.seed = (uint64_t)seed;
    o.n_threads = (int)threads;
    o.blocksize = (int)blocksize;
    o.percdamp = percdamp;
    o.prune_embeddings = prune_embd;
    o.prune_output = prune_out;
    o.kv_f32 = kv_f32;
    o.then_quantize = then_q;
    if (strcmp(outtype, "auto") != 0) {
        o.outtype_auto = false;
        if (!ec_dtype_from_name(outtype, &o.outtype) ||
            (o.outtype != EC_F32 && o.outtype != EC_F16 && o.outtype != EC_BF16)) {
            code = ec_cli_usage_error("prune", "--outtype '%s': auto, f32, f16 or bf16", outtype);
            goto out;
        }
    }
    if (structured && parse_structured(structured, &o) != 0) {
        code = ec_cli_usage_error("prune", "--structured '%s': expected heads=K|R,ffn=R,layers=K",
                                  structured);
        goto out;
    }
    o.progress = on_progress;

    struct ec_prune_result r;
    enum ec_status st = ec_prune_run(&o, &r, &d);
    if (st != EC_OK) {
        ec_prune_result_release(&r);
        code = ec_cli_fail(&d);
        goto out;
    }
    char *js = (c.json || summary) ? ec_prune_result_json(&r, &o) : NULL;
    if ((c.json || summary) && !js) {
        ec_prune_result_release(&r);
        code = EC_EXIT_IO;
        goto out;
    }
    if (summary) {
        struct ec_outfile of;
        if ((st = ec_outfile_open(&of, summary, NULL, &d)) == EC_OK) {
            if ((st = ec_outfile_write(&of, js, strlen(js), &d)) == EC_OK &&
                (st = ec_outfile_write(&of, "\n", 1, &d)) == EC_OK)
                st = ec_outfile_commit(&of, &d);
            else
                ec_outfile_abort(&of);
        }
        if (st != EC_OK) {
            free(js);
            ec_prune_result_release(&r);
            code = ec_cli_fail(&d);
            goto out;
        }
    }
    if (c.json) {
        printf("%s\n", js);
    } else {
        printf("pruned %s -> %s in %.1f s\n", o.input, o.output, r.seconds);
        if (r.n_pruned_elems)
            printf("sparsity of the pruned tensors: %.4f (%llu of %llu weights)\n",
                   (double)r.n_pruned_zero / (double)r.n_pruned_elems,
                   (unsigned long long)r.n_pruned_zero, (unsigned long long)r.n_pruned_elems);
        print_input_spread(&r);
        if (o.structured)
            printf("layers %u -> %u, heads %u -> %u, kv heads %u -> %u, ffn %u -> %u, "
                   "params %llu -> %llu\n",
                   r.hp_in.n_layer, r.hp_out.n_layer, r.hp_in.n_head, r.hp_out.n_head,
                   r.hp_in.n_head_kv, r.hp_out.n_head_kv, r.hp_in.n_ff, r.hp_out.n_ff,
                   (unsigned long long)r.n_params_in, (unsigned long long)r.n_params_out);
        if (r.quantized_to)
            printf("quantized to %s\n", r.quantized_to);
    }
    free(js);
    ec_prune_result_release(&r);
    code = ec_cli_finish(EC_EXIT_OK);
out:
    for (size_t i = 0; i < o.n_rules; i++)
        free((void *)rl[i].pattern);
    free(rl);
    free((void *)pos);
    ec_strlist_release(&rules);
    return code;
}
