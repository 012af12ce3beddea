/* Declarative option parsing (see edgec/opts.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/opts.h"

void ec_strlist_release(struct ec_strlist *l)
{
    if (!l)
        return;
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static const struct ec_opt *find_long(const struct ec_opt *o, const char *name, size_t len)
{
    for (; o->kind != EC_OPT_END; o++)
        if (o->long_name && strlen(o->long_name) == len && strncmp(o->long_name, name, len) == 0)
            return o;
    return NULL;
}

static const struct ec_opt *find_short(const struct ec_opt *o, char c)
{
    for (; o->kind != EC_OPT_END; o++)
        if (o->short_name && o->short_name == c)
            return o;
    return NULL;
}

static enum ec_status set_value(const struct ec_opt *o, const char *shown, const char *val,
                                struct ec_diag *d)
{
    char *end;
    switch (o->kind) {
    case EC_OPT_STRING:
        *(const char **)o->dest = val;
        return EC_OK;
    case EC_OPT_INT: {
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end)
            return ec_fail(d, EC_ERR_ARG, "option '%s' expects an integer, got '%s'", shown, val);
        *(long *)o->dest = v;
        return EC_OK;
    }
    case EC_OPT_DOUBLE: {
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end)
            return ec_fail(d, EC_ERR_ARG, "option '%s' expects a number, got '%s'", shown, val);
        *(double *)o->dest = v;
        return EC_OK;
    }
    case EC_OPT_MULTI: {
        struct ec_strlist *l = o->dest;
        const char **ni = realloc(l->items, (l->n + 1) * sizeof *ni);
        if (!ni)
            return ec_fail(d, EC_ERR_NOMEM, "out of memory");
        ni[l->n++] = val;
        l->items = ni;
        return EC_OK;
    }
    default:
        return ec_fail(d, EC_ERR_INTERNAL, "bad option table entry '%s'", shown);
    }
}

enum ec_status ec_opts_parse(const struct ec_opt *opts, int argc, char **argv,
                             const char ***pos, size_t *n_pos, struct ec_diag *d)
{
    const char **p = calloc((size_t)(argc > 0 ? argc : 1), sizeof *p);
    size_t np = 0;
    if (!p)
        return ec_fail(d, EC_ERR_NOMEM, "out of memory");
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            p[np++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        const struct ec_opt *o;
        const char *inline_val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            o = find_long(opts, name, len);
            if (eq)
                inline_val = eq + 1;
        } else {
            if (a[2] != '\0') {
                free(p);
                return ec_fail(d, EC_ERR_ARG, "unknown option '%s'", a);
            }
            o = find_short(opts, a[1]);
        }
        if (!o) {
            free(p);
            return ec_fail(d, EC_ERR_ARG, "unknown option '%s'", a);
        }
        if (o->kind == EC_OPT_FLAG) {
            if (inline_val) {
                free(p);
                return ec_fail(d, EC_ERR_ARG, "option '%s' takes no value", a);
            }
            *(bool *)o->dest = true;
            continue;
        }
        const char *val = inline_val;
        if (!val) {
            if (i + 1 >= argc) {
                free(p);
                return ec_fail(d, EC_ERR_ARG, "option '%s' needs a value", a);
            }
            val = argv[++i];
        }
        enum ec_status s = set_value(o, a, val, d);
        if (s) {
            free(p);
            return s;
        }
    }
    *pos = p;
    *n_pos = np;
    return EC_OK;
}

void ec_opts_print_help(FILE *f, const struct ec_opt *opts)
{
    fputs("Options:\n", f);
    for (const struct ec_opt *o = opts; o->kind != EC_OPT_END; o++) {
        char left[64];
        if (o->short_name && o->long_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->long_name,
                     o->metavar ? " " : "", o->metavar ? o->metavar : "");
        else if (o->long_name)
            snprintf(left, sizeof left, "    --%s%s%s", o->long_name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
        else
            snprintf(left, sizeof left, "-%c%s%s", o->short_name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
        fprintf(f, "  %-30s %s\n", left, o->help);
    }
}
