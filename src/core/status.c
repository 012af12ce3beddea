/* Status names, exit codes and the diag helpers (see edgec/status.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "edgec/status.h"

static const char *const status_names[EC_STATUS_COUNT] = {
    [EC_OK] = "ok",
    [EC_ERR_ARG] = "usage",
    [EC_ERR_IO] = "io",
    [EC_ERR_FORMAT] = "format",
    [EC_ERR_NOMEM] = "nomem",
    [EC_ERR_UNSUPPORTED] = "unsupported",
    [EC_ERR_NUMERIC] = "numeric",
    [EC_ERR_THRESHOLD] = "threshold",
    [EC_ERR_INTERNAL] = "internal",
};

const char *ec_status_name(enum ec_status s)
{
    if ((unsigned)s >= EC_STATUS_COUNT)
        return "unknown";
    return status_names[s];
}

int ec_status_exit_code(enum ec_status s)
{
    switch (s) {
    case EC_OK:
        return EC_EXIT_OK;
    case EC_ERR_THRESHOLD:
        return EC_EXIT_THRESHOLD;
    case EC_ERR_ARG:
        return EC_EXIT_USAGE;
    case EC_ERR_FORMAT:
    case EC_ERR_UNSUPPORTED:
    case EC_ERR_NUMERIC:
        return EC_EXIT_BAD_INPUT;
    case EC_ERR_IO:
    case EC_ERR_NOMEM:
        return EC_EXIT_IO;
    default:
        return EC_EXIT_INTERNAL;
    }
}

void ec_diag_clear(struct ec_diag *d)
{
    if (!d)
        return;
    d->code = EC_OK;
    d->msg[0] = '\0';
}

enum ec_status ec_fail(struct ec_diag *d, enum ec_status code, const char *fmt, ...)
{
    if (d && d->msg[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->msg, sizeof d->msg, fmt, ap);
        va_end(ap);
        d->code = code;
    } else if (d && d->code == EC_OK) {
        d->code = code;
    }
    return code;
}

void ec_diag_prefix(struct ec_diag *d, const char *fmt, ...)
{
    if (!d)
        return;
    char prefix[EC_DIAG_MSG_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[EC_DIAG_MSG_BYTES];
    memcpy(old, d->msg, sizeof old);
    size_t np = strlen(prefix);
    if (np + 2 >= sizeof d->msg)
        np = sizeof d->msg - 3;
    memcpy(d->msg, prefix, np);
    memcpy(d->msg + np, ": ", 2);
    size_t room = sizeof d->msg - np - 3;
    size_t no = strlen(old);
    if (no > room)
        no = room;
    memcpy(d->msg + np + 2, old, no);
    d->msg[np + 2 + no] = '\0';
}
