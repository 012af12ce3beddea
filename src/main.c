/* edgec: command-line entry point and subcommand dispatch. */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <unistd.h>
#endif

#include "cli.h"

#ifndef EDGEC_VERSION
#define EDGEC_VERSION "0.1.0"
#endif

static const struct ec_cmd commands[] = {
    {"inspect", ec_cmd_inspect, "show what is inside a checkpoint folder, .safetensors or .gguf"},
    {"convert", ec_cmd_convert, "Hugging Face checkpoint -> GGUF (F32/F16/BF16)"},
    {"quantize", ec_cmd_quantize, "checkpoint or GGUF -> quantized GGUF (Q4_K_M, Q8_0, ...)"},
    {"perplexity", ec_cmd_perplexity, "perplexity of a model on a text, as llama-perplexity"},
    {"imatrix", ec_cmd_imatrix, "importance matrix (llama.cpp .dat) from a calibration text"},
    {"prune", ec_cmd_prune, "sparsify (SparseGPT, Wanda, magnitude, N:M) or shrink a model"},
    {"distill-export", ec_cmd_distill_export, "teacher top-k log-probabilities for distillation"},
    {"validate", ec_cmd_validate, "gate a compressed model: PPL, KL divergence, top-1, tensor error"},
    {"generate", ec_cmd_generate, "continue a prompt (greedy or seeded sampling)"},
};
static const size_t n_commands = sizeof commands / sizeof commands[0];

static const char exit_codes_help[] =
    "Exit codes:\n"
    "  0  success\n"
    "  1  a validation threshold failed\n"
    "  2  usage error\n"
    "  3  bad input (malformed or unsupported file)\n"
    "  4  I/O or environment error (cannot read/write, disk full, out of memory)\n"
    "  5  internal error\n";

static void print_main_help(FILE *f)
{
    fprintf(f, "edgec %s: compress trained language models into GGUF files for devices\n\n",
            EDGEC_VERSION);
    fputs("Usage: edgec <command> [options]\n"
          "       edgec <command> --help\n"
          "       edgec --version\n\n"
          "Commands:\n",
          f);
    for (size_t i = 0; i < n_commands; i++)
        fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-16s %s\n\n", "help", "this text");
    fputs("Results go to stdout (--json where offered); diagnostics and progress to stderr.\n\n",
          f);
    fputs(exit_codes_help, f);
}

int ec_cli_parse(const char *usage, const char *description, const struct ec_opt *opts,
                 const struct ec_common_opts *common, int argc, char **argv, const char ***pos,
                 size_t *n_pos, int *exit_code)
{
    struct ec_diag d;
    ec_diag_clear(&d);
    if (ec_opts_parse(opts, argc, argv, pos, n_pos, &d) != EC_OK) {
        fprintf(stderr, "edgec %s: %s\nUsage: %s\nTry 'edgec %s --help'.\n", argv[0], d.msg, usage,
                argv[0]);
        *exit_code = EC_EXIT_USAGE;
        return -1;
    }
    if (common->help) {
        printf("Usage: %s\n\n%s\n\n", usage, description);
        ec_opts_print_help(stdout, opts);
        printf("\n%s", exit_codes_help);
        free((void *)*pos);
        *pos = NULL;
        *exit_code = ec_cli_finish(EC_EXIT_OK);
        return -1;
    }
    if (common->quiet)
        ec_log_set_level(EC_LOG_QUIET);
    else if (common->verbose)
        ec_log_set_level(EC_LOG_VERBOSE);
    return 0;
}

int ec_cli_fail(const struct ec_diag *d)
{
    ec_log_error("%s", d->msg[0] ? d->msg : ec_status_name(d->code));
    int code = ec_status_exit_code(d->code);
    return code == 0 ? EC_EXIT_INTERNAL : code;
}

int ec_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "edgec %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'edgec %s --help'.\n", cmd);
    return EC_EXIT_USAGE;
}

int ec_cli_check_text_opts(const char *cmd, const char *text_path, const char *tokens_path,
                           long ctx, long batch, long chunks, long threads)
{
    if ((text_path == NULL) == (tokens_path == NULL))
        return ec_cli_usage_error(cmd, "give exactly one of --text and --tokens");
    if (ctx < 4 || ctx > (1l << 24))
        return ec_cli_usage_error(cmd, "--ctx %ld: must be 4..16777216", ctx);
    if (batch < 0 || batch > ctx || (batch > 0 && ctx % batch != 0))
        return ec_cli_usage_error(cmd, "--batch %ld: must divide --ctx %ld", batch, ctx);
    if (chunks < 0 || threads < 0 || threads > 1024)
        return ec_cli_usage_error(cmd, "--chunks must be >= 0 and --threads 0..1024");
    return 0;
}

int ec_cli_finish(int code)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "edgec: error: cannot write to standard output\n");
        return code ? code : EC_EXIT_IO;
    }
    return code;
}

void ec_json_write_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

int main(int argc, char **argv)
{
    /* A file-size limit (ulimit -f) must surface as a failed write (EFBIG) that
     * the atomic-output path reports and cleans up, not kill the process. */
    signal(SIGXFSZ, SIG_IGN);
#ifdef __linux__
    /* libgomp reads OMP_WAIT_POLICY when it is loaded, before main. Its
     * default spins idle threads between parallel regions; with another job
     * on one of the cores (CI, a shared laptop) the engine's many short
     * regions then ran 10x slower than on one thread (measured: 327 vs 3800
     * tokens/s on stories-student-256). Re-executing once with the passive
     * policy costs about a millisecond; a policy set by the user is kept. */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv); /* returns only on failure: run on as is */
    }
#endif
    if (argc < 2) {
        print_main_help(stderr);
        return EC_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("edgec %s\n", EDGEC_VERSION);
        return ec_cli_finish(EC_EXIT_OK);
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        if (argc >= 3) {
            for (size_t i = 0; i < n_commands; i++) {
                if (strcmp(argv[2], commands[i].name) == 0) {
                    char *hargv[] = {argv[2], "--help", NULL};
                    return commands[i].fn(2, hargv);
                }
            }
        }
        print_main_help(stdout);
        return ec_cli_finish(EC_EXIT_OK);
    }
    for (size_t i = 0; i < n_commands; i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "edgec: unknown command '%s'\nTry 'edgec help'.\n", cmd);
    return EC_EXIT_USAGE;
}
