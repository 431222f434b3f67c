/* Latency statistics over a set of timing samples (seconds).
 *
 * Percentiles come in two documented flavours:
 *  - TD_PCT_LINEAR (default, numpy's default "linear" method, Hyndman & Fan type 7):
 *    h = (n - 1) * q / 100; result = x[floor(h)] + (h - floor(h)) * (x[floor(h)+1] - x[floor(h)])
 *    on the ascending samples x[0..n-1]. Interpolates between samples.
 *  - TD_PCT_NEAREST_RANK (numpy's "inverted_cdf", type 1): the smallest sample x such that at
 *    least q% of the samples are <= x, i.e. x[ceil(q / 100 * n) - 1] (x[0] for q = 0).
 *    Always one of the measured values.
 * The standard deviation is the sample one (divides by n - 1; 0 when n == 1), numpy's std(ddof=1). */
#ifndef TD_DEPLOY_STATS_H
#define TD_DEPLOY_STATS_H

#include "tdeploy/tdeploy.h"

typedef enum td_percentile_method { TD_PCT_LINEAR = 0, TD_PCT_NEAREST_RANK = 1 } td_percentile_method;

typedef struct td_latency_stats {
    size_t n;        /* samples */
    double total;    /* sum of the samples */
    double mean, sd; /* sd: sample standard deviation (n - 1) */
    double min, max;
    double p50, p90, p95, p99;
    td_percentile_method method;
} td_latency_stats;

/* q in [0, 100]; sorted ascending, n >= 1. */
double td_percentile_sorted(const double *sorted, size_t n, double q, td_percentile_method method);

/* Stats of samples[0..n-1] (not modified). Fails on n == 0 or on a NaN, infinite
 * or negative sample. */
td_status td_latency_stats_compute(td_ctx *ctx, const double *samples, size_t n, td_percentile_method method,
                                   td_latency_stats *out);

/* Items (sequences, tokens) per second when every sample processed items_per_sample
 * items: items_per_sample * n / total. 0 when total is 0. */
double td_latency_throughput(const td_latency_stats *s, double items_per_sample);

#endif
