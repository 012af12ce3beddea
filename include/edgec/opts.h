/* edgec/opts.h: a small declarative option parser for the CLI.
 *
 * Each subcommand fills a table of struct ec_opt and calls ec_opts_parse().
 * Long options accept "--name value" and "--name=value"; short options "-x
 * value". "--" ends options. Positional arguments are collected in order.
 */
#ifndef EDGEC_OPTS_H
#define EDGEC_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "edgec/status.h"

enum ec_opt_kind {
    EC_OPT_FLAG,   /* bool *: set true */
    EC_OPT_STRING, /* const char **: last one wins */
    EC_OPT_INT,    /* long *: decimal, range-checked by the caller */
    EC_OPT_DOUBLE, /* double * */
    EC_OPT_MULTI,  /* struct ec_strlist *: every occurrence appended */
    EC_OPT_END
};

struct ec_strlist {
    size_t n;
    const char **items; /* heap array of borrowed argv pointers */
};
void ec_strlist_release(struct ec_strlist *l);

struct ec_opt {
    const char *long_name; /* without "--" */
    char short_name;       /* 0 if none */
    enum ec_opt_kind kind;
    void *dest;
    const char *metavar; /* "FILE", "N"... (NULL for flags) */
    const char *help;
};

/* Parses argv[1..argc-1] (argv[0] is the subcommand name). Positionals go to
 * *pos (heap array of borrowed pointers, *n_pos entries). Unknown options and
 * missing or malformed values are EC_ERR_ARG with a message. */
enum ec_status ec_opts_parse(const struct ec_opt *opts, int argc, char **argv,
                             const char ***pos, size_t *n_pos, struct ec_diag *d);

/* Print "Options:" lines for the table. */
void ec_opts_print_help(FILE *f, const struct ec_opt *opts);

#endif
