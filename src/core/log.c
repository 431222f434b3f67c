/* Logging and terminal progress. */
#define _POSIX_C_SOURCE 200809L
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static td_log_level g_level = TD_LOG_INFO;

void td_log_set_level(td_log_level level) { g_level = level; }
td_log_level td_log_get_level(void) { return g_level; }

void td_log(td_log_level level, const char *fmt, ...) {
    if (level > g_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (level == TD_LOG_WARN)
        fputs("warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

double td_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double td_cpu_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void draw(td_progress *p, bool final) {
    double el = td_now_s() - p->start_s;
    if (p->total) {
        int width = 30;
        int filled = (int)((double)p->done / (double)p->total * width);
        if (filled > width)
            filled = width;
        fprintf(stderr, "\r%-24.24s [", p->label);
        for (int i = 0; i < width; i++)
            fputc(i < filled ? '#' : '.', stderr);
        fprintf(stderr, "] %3d%% %6.1fs", (int)(100.0 * (double)p->done / (double)p->total), el);
        /* time left at the rate so far (done and total are in units of equal cost: runs, or tokens) */
        if (!final && p->done > 0 && p->done < p->total)
            fprintf(stderr, " ETA %6.1fs", el * (double)(p->total - p->done) / (double)p->done);
        else
            fputs("           ", stderr); /* clear a previous ETA */
    } else {
        fprintf(stderr, "\r%-24.24s %llu %6.1fs", p->label, (unsigned long long)p->done, el);
    }
    if (final)
        fputs("\n", stderr);
    fflush(stderr);
}

void td_progress_begin(td_progress *p, const char *label, uint64_t total) {
    p->label = label;
    p->total = total;
    p->done = 0;
    p->start_s = td_now_s();
    p->last_draw_s = 0;
    p->active = g_level >= TD_LOG_INFO && isatty(STDERR_FILENO);
}

void td_progress_update(td_progress *p, uint64_t done) {
    p->done = done;
    if (!p->active)
        return;
    double now = td_now_s();
    if (now - p->last_draw_s < 0.1) /* redraw at most 10 times a second */
        return;
    p->last_draw_s = now;
    draw(p, false);
}

void td_progress_end(td_progress *p) {
    if (p->active) {
        if (p->total)
            p->done = p->total;
        draw(p, true);
    }
    p->active = false;
}
