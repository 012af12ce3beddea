/* stderr diagnostics and the progress bar (see edgec/log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "edgec/log.h"

static enum ec_log_level g_level = EC_LOG_NORMAL;

void ec_log_set_level(enum ec_log_level lvl) { g_level = lvl; }
enum ec_log_level ec_log_level(void) { return g_level; }

static void vlog(const char *prefix, const char *fmt, va_list ap)
{
    fputs("edgec: ", stderr);
    if (prefix)
        fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void ec_log_info(const char *fmt, ...)
{
    if (g_level < EC_LOG_NORMAL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(NULL, fmt, ap);
    va_end(ap);
}

void ec_log_verbose(const char *fmt, ...)
{
    if (g_level < EC_LOG_VERBOSE)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(NULL, fmt, ap);
    va_end(ap);
}

void ec_log_warn(const char *fmt, ...)
{
    /* warnings are shown even with -q: they change what was written */
    va_list ap;
    va_start(ap, fmt);
    vlog("warning: ", fmt, ap);
    va_end(ap);
}

void ec_log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("error: ", fmt, ap);
    va_end(ap);
}

double ec_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void draw(struct ec_progress *p, int final)
{
    double now = ec_now_seconds();
    double el = now - p->t_start;
    double frac = p->total ? (double)p->done / (double)p->total : 0.0;
    if (frac > 1)
        frac = 1;
    char bar[31];
    int filled = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[30] = '\0';
    double eta = frac > 0 ? el * (1 - frac) / frac : 0;
    fprintf(stderr, "\r%-12s [%s] %llu/%llu", p->label, bar, (unsigned long long)p->done,
            (unsigned long long)p->total);
    if (p->bytes_done && el > 0)
        fprintf(stderr, "  %.1f MB/s", (double)p->bytes_done / 1e6 / el);
    if (!final)
        fprintf(stderr, "  ETA %.0fs   ", eta);
    else
        fprintf(stderr, "  %.1fs        \n", el);
    fflush(stderr);
    p->t_last_draw = now;
}

void ec_progress_begin(struct ec_progress *p, const char *label, uint64_t total)
{
    p->label = label;
    p->total = total;
    p->done = 0;
    p->bytes_done = 0;
    p->t_start = ec_now_seconds();
    p->t_last_draw = 0;
    p->enabled = g_level >= EC_LOG_NORMAL && isatty(STDERR_FILENO);
}

void ec_progress_update(struct ec_progress *p, uint64_t done, uint64_t bytes_done)
{
    p->done = done;
    p->bytes_done = bytes_done;
    if (!p->enabled)
        return;
    if (ec_now_seconds() - p->t_last_draw < 0.1 && done < p->total)
        return;
    draw(p, 0);
}

void ec_progress_end(struct ec_progress *p)
{
    if (p->enabled)
        draw(p, 1);
    p->enabled = 0;
}
