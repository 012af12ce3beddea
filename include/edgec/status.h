/* edgec/status.h: status codes and diagnostics.
 *
 * Library functions that can fail return an `enum ec_status` and take a
 * `struct ec_diag *` as their last argument. The message is set once, where
 * the problem is detected, and printed once by the CLI. The library never
 * prints and never exits.
 *
 * Messages name the file, then the tensor or key, then the byte offset, then
 * the problem, e.g.
 *   model.safetensors: tensor 'layers.3.mlp.up' at byte 4096: data ends 1200 bytes early
 */
#ifndef EDGEC_STATUS_H
#define EDGEC_STATUS_H

#include <stdbool.h>
#include <stddef.h>

/* Stable numbers: never renumber. */
enum ec_status {
    EC_OK = 0,
    EC_ERR_ARG = 1,         /* caller / usage error (bad option value) */
    EC_ERR_IO = 2,          /* open/read/write/rename failed, disk full */
    EC_ERR_FORMAT = 3,      /* malformed input file */
    EC_ERR_NOMEM = 4,       /* allocation failed or a limit was exceeded */
    EC_ERR_UNSUPPORTED = 5, /* well-formed input we do not handle */
    EC_ERR_NUMERIC = 6,     /* NaN/Inf or a failed factorisation */
    EC_ERR_THRESHOLD = 7,   /* a validation threshold failed */
    EC_ERR_INTERNAL = 8,    /* a bug */
    EC_STATUS_COUNT
};

/* CLI exit codes (documented in --help and README). */
enum ec_exit {
    EC_EXIT_OK = 0,
    EC_EXIT_THRESHOLD = 1,
    EC_EXIT_USAGE = 2,
    EC_EXIT_BAD_INPUT = 3,
    EC_EXIT_IO = 4,
    EC_EXIT_INTERNAL = 5,
};

#define EC_DIAG_MSG_BYTES 1024

struct ec_diag {
    enum ec_status code;
    char msg[EC_DIAG_MSG_BYTES]; /* NUL-terminated; empty when code == EC_OK */
};

/* "ok", "usage", "io", "format", ... */
const char *ec_status_name(enum ec_status s);

/* Map a status to the CLI exit code. */
int ec_status_exit_code(enum ec_status s);

/* Clear a diag (code = EC_OK, empty message). NULL is allowed. */
void ec_diag_clear(struct ec_diag *d);

/* Format the message into d (if d is non-NULL and has no message yet, so the
 * first, most specific error wins) and return code. */
enum ec_status ec_fail(struct ec_diag *d, enum ec_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepend "prefix: " to an existing message (adds context on the way up). */
void ec_diag_prefix(struct ec_diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
