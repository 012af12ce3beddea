/* edgec/log.h: diagnostics and progress on stderr (CLI layer and drivers).
 *
 * Library code below src/ never calls these except through the progress
 * callback it is handed; the CLI sets the level from -q / -v.
 */
#ifndef EDGEC_LOG_H
#define EDGEC_LOG_H

#include <stdint.h>

enum ec_log_level { EC_LOG_QUIET = 0, EC_LOG_NORMAL = 1, EC_LOG_VERBOSE = 2 };

void ec_log_set_level(enum ec_log_level lvl);
enum ec_log_level ec_log_level(void);
void ec_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ec_log_verbose(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ec_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ec_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A progress bar with rate and ETA, drawn only when stderr is a terminal and
 * the level is not quiet. `unit` is "tensors", "tokens", "MB", ... */
struct ec_progress {
    const char *label;
    uint64_t total;
    uint64_t done;
    uint64_t bytes_done; /* optional throughput numerator (MB/s) */
    double t_start;
    double t_last_draw;
    int enabled;
};
void ec_progress_begin(struct ec_progress *p, const char *label, uint64_t total);
void ec_progress_update(struct ec_progress *p, uint64_t done, uint64_t bytes_done);
void ec_progress_end(struct ec_progress *p);

/* Monotonic seconds. */
double ec_now_seconds(void);

#endif
