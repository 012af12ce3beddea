/* edgec convert: Hugging Face checkpoint -> GGUF (F32/F16/BF16). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "edgec/convert.h"

static const char usage[] = "edgec convert MODEL_DIR -o OUT.gguf [--outtype f32|f16|bf16] [--json] [-q|-v]";
static const char description[] =
    "Write a GGUF file llama.cpp loads from a Hugging Face checkpoint folder (config.json,\n"
    "*.safetensors, tokenizer.model or tokenizer.json). Tensor names, order, metadata keys\n"
    "and per-tensor types follow llama.cpp's convert_hf_to_gguf.py: 2-D weights take the\n"
    "output type, norms and biases stay F32, q/k rows are permuted for llama/mistral, and\n"
    "Llama 3 rope scaling (rope_type llama3) becomes a computed F32 rope_freqs.weight.\n"
    "Tensors are streamed one at a time; the output appears only when complete.";

static void on_progress(void *ctx, uint64_t done, uint64_t total, uint64_t bytes)
{
    struct ec_progress *p = ctx;
    p->total = total;
    ec_progress_update(p, done, bytes);
}

int ec_cmd_convert(int argc, char **argv)
{
    struct ec_common_opts c = {0};
    const char *output = NULL, *outtype = "f16";
    const struct ec_opt opts[] = {
        {"output", 'o', EC_OPT_STRING, &output, "OUT.gguf", "destination file (required)"},
        {"outtype", 0, EC_OPT_STRING, &outtype, "TYPE", "f32, f16 (default) or bf16"},
        {"json", 0, EC_OPT_FLAG, &c.json, NULL, "print the summary as JSON"},
        EC_COMMON_OPTS(c),
        {NULL, 0, EC_OPT_END, NULL, NULL, NULL},
    };
    const char **pos = NULL;
    size_t n_pos = 0;
    int code;
    if (ec_cli_parse(usage, description, opts, &c, argc, argv, &pos, &n_pos, &code) != 0)
        return code;
    if (n_pos != 1) {
        free(pos);
        return ec_cli_usage_error("convert", "expected one MODEL_DIR, got %zu", n_pos);
    }
    if (!output) {
        free(pos);
        return ec_cli_usage_error("convert", "missing -o OUT.gguf");
    }
    enum ec_dtype type;
    uint32_t ft;
    if (!ec_dtype_from_name(outtype, &type) || !ec_convert_file_type(type, &ft)) {
        free(pos);
        return ec_cli_usage_error("convert", "--outtype '%s': expected f32, f16 or bf16", outtype);
    }

    struct ec_progress prog;
    ec_progress_begin(&prog, "convert", 0);
    struct ec_convert_opts o = {
        .input = pos[0],
        .output = output,
        .outtype = type,
        .progress = on_progress,
        .progress_ctx = &prog,
    };
    struct ec_convert_result r;
    struct ec_diag d;
    ec_diag_clear(&d);
    prog.total = 0;
    enum ec_status s = ec_convert_run(&o, &r, &d);
    if (s == EC_OK)
        prog.total = r.n_tensors;
    ec_progress_end(&prog);
    if (s != EC_OK) {
        free(pos);
        return ec_cli_fail(&d);
    }
    double mbs = r.seconds > 0 ? (double)r.file_bytes / 1e6 / r.seconds : 0.0;
    if (c.json) {
        printf("{\"input\": ");
        ec_json_write_str(stdout, pos[0]);
        printf(", \"output\": ");
        ec_json_write_str(stdout, output);
        printf(", \"outtype\": \"%s\", \"file_type\": %u, \"tensors\": %llu, \"params\": %llu, "
               "\"data_bytes\": %llu, \"file_bytes\": %llu, \"seconds\": %.3f, \"mb_per_s\": %.1f}\n",
               ec_dtype_name(type), r.file_type, (unsigned long long)r.n_tensors,
               (unsigned long long)r.n_params, (unsigned long long)r.data_bytes,
               (unsigned long long)r.file_bytes, r.seconds, mbs);
    } else if (ec_log_level() != EC_LOG_QUIET) {
        printf("%s -> %s: %llu tensors, %llu params, %s, %llu bytes in %.2f s (%.1f MB/s)\n",
               pos[0], output, (unsigned long long)r.n_tensors, (unsigned long long)r.n_params,
               ec_dtype_name(type), (unsigned long long)r.file_bytes, r.seconds, mbs);
    }
    free(pos);
    return ec_cli_finish(EC_EXIT_OK);
}
