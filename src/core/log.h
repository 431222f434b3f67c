/* Logging to stderr with a process-wide verbosity, and a progress display for
 * long work that draws only when stderr is a terminal and output is not quiet. */
#ifndef TD_CORE_LOG_H
#define TD_CORE_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum td_log_level {
    TD_LOG_QUIET = 0, /* nothing but errors the caller prints itself */
    TD_LOG_WARN = 1,
    TD_LOG_INFO = 2,  /* default */
    TD_LOG_DEBUG = 3,
} td_log_level;

void td_log_set_level(td_log_level level);
td_log_level td_log_get_level(void);
void td_log(td_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define td_warn(...) td_log(TD_LOG_WARN, __VA_ARGS__)
#define td_info(...) td_log(TD_LOG_INFO, __VA_ARGS__)
#define td_debug(...) td_log(TD_LOG_DEBUG, __VA_ARGS__)

/* Progress for one long operation. total may be 0 when unknown; with a total the
 * bar shows the time left at the rate so far, so done/total should count units of
 * about equal cost. */
typedef struct td_progress {
    const char *label;
    uint64_t total, done;
    double start_s, last_draw_s;
    bool active; /* false when stderr is not a tty or level is quiet */
} td_progress;

void td_progress_begin(td_progress *p, const char *label, uint64_t total);
void td_progress_update(td_progress *p, uint64_t done);
void td_progress_end(td_progress *p);

/* Monotonic seconds. */
double td_now_s(void);
/* CPU time of the whole process (every thread), seconds: for timings on a busy host. */
double td_cpu_now_s(void);

#endif
