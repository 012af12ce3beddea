/* src/cli.h: shared pieces of the subcommands (CLI layer only). */
#ifndef EDGEC_CLI_H
#define EDGEC_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "edgec/log.h"
#include "edgec/opts.h"
#include "edgec/status.h"

struct ec_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

/* Common flags every subcommand accepts. */
struct ec_common_opts {
    bool help;
    bool quiet;
    bool verbose;
    bool json;
};

#define EC_COMMON_OPTS(c)                                                                      \
    {"help", 'h', EC_OPT_FLAG, &(c).help, NULL, "show this help and exit"},                    \
        {"quiet", 'q', EC_OPT_FLAG, &(c).quiet, NULL, "only errors and warnings on stderr"},   \
        {"verbose", 'v', EC_OPT_FLAG, &(c).verbose, NULL, "more detail on stderr"}

/* Parse argv with the table; on --help prints usage + options to stdout and
 * returns -1 with *exit_code = 0; on a usage error prints to stderr and
 * returns -1 with *exit_code = 2. Returns 0 to continue. Applies -q/-v. */
int ec_cli_parse(const char *usage, const char *description, const struct ec_opt *opts,
                 const struct ec_common_opts *common, int argc, char **argv, const char ***pos,
                 size_t *n_pos, int *exit_code);

/* Print the diag (once) and map it to an exit code. */
int ec_cli_fail(const struct ec_diag *d);

/* Usage error: message to stderr, returns 2. */
int ec_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The options every chunked-text command shares (perplexity, imatrix, ...):
 * exactly one of --text/--tokens, 4 <= ctx <= 2^24, batch dividing ctx,
 * chunks and threads >= 0. Returns 0, or prints a usage error and returns 2. */
int ec_cli_check_text_opts(const char *cmd, const char *text_path, const char *tokens_path,
                           long ctx, long batch, long chunks, long threads);

/* Flush stdout and check it worked; returns the exit code to use. */
int ec_cli_finish(int code);

/* Write a JSON string literal (with quotes and escapes) to f. */
void ec_json_write_str(FILE *f, const char *s);

/* subcommands */
int ec_cmd_inspect(int argc, char **argv);
int ec_cmd_convert(int argc, char **argv);
int ec_cmd_perplexity(int argc, char **argv);
int ec_cmd_imatrix(int argc, char **argv);
int ec_cmd_quantize(int argc, char **argv);
int ec_cmd_prune(int argc, char **argv);
int ec_cmd_distill_export(int argc, char **argv);
int ec_cmd_validate(int argc, char **argv);
int ec_cmd_generate(int argc, char **argv);
/* `edgec inspect DIR` on a distill export (cmd_distill_export.c): verifies and
 * prints the summary; returns the exit code. */
int ec_distill_inspect(const char *dir, bool json, bool verbose);

#endif
