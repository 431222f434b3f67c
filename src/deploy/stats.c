/* Latency statistics (see stats.h for the percentile definitions). */
#include "deploy/stats.h"

#include "core/ctx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double td_percentile_sorted(const double *sorted, size_t n, double q, td_percentile_method method) {
    if (n == 0)
        return NAN;
    if (q <= 0)
        return sorted[0];
    if (q >= 100)
        return sorted[n - 1];
    if (method == TD_PCT_NEAREST_RANK) {
        double rank = ceil(q / 100.0 * (double)n); /* 1-based */
        size_t i = rank < 1 ? 0 : (size_t)rank - 1;
        return sorted[i < n ? i : n - 1];
    }
    double h = (double)(n - 1) * q / 100.0;
    size_t lo = (size_t)floor(h);
    if (lo >= n - 1)
        return sorted[n - 1];
    double frac = h - (double)lo;
    return sorted[lo] + frac * (sorted[lo + 1] - sorted[lo]);
}

td_status td_latency_stats_compute(td_ctx *ctx, const double *samples, size_t n, td_percentile_method method,
                                   td_latency_stats *out) {
    memset(out, 0, sizeof *out);
    if (n == 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "latency statistics need at least one sample");
    for (size_t i = 0; i < n; i++)
        if (!isfinite(samples[i]) || samples[i] < 0)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "latency sample %zu is %g: not a finite duration", i,
                           samples[i]);
    double *sorted = malloc(n * sizeof *sorted);
    if (!sorted)
        return td_fail_oom(ctx, n * sizeof *sorted, "latency samples");
    memcpy(sorted, samples, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += sorted[i];
    double mean = sum / (double)n;
    double ss = 0; /* two passes: no cancellation from sum of squares */
    for (size_t i = 0; i < n; i++)
        ss += (sorted[i] - mean) * (sorted[i] - mean);
    out->n = n;
    out->total = sum;
    out->mean = mean;
    out->sd = n > 1 ? sqrt(ss / (double)(n - 1)) : 0.0;
    out->min = sorted[0];
    out->max = sorted[n - 1];
    out->p50 = td_percentile_sorted(sorted, n, 50, method);
    out->p90 = td_percentile_sorted(sorted, n, 90, method);
    out->p95 = td_percentile_sorted(sorted, n, 95, method);
    out->p99 = td_percentile_sorted(sorted, n, 99, method);
    out->method = method;
    free(sorted);
    return TD_OK;
}

double td_latency_throughput(const td_latency_stats *s, double items_per_sample) {
    return s->total > 0 ? items_per_sample * (double)s->n / s->total : 0.0;
}
