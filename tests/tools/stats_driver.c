/* Test driver for td_latency_stats_compute (src/deploy/stats.c): reads
 *   METHOD N x1 x2 ... xN
 * from stdin (METHOD 0 = linear, 1 = nearest rank), prints
 *   rc n total mean sd min max p50 p90 p95 p99
 * with 17 significant digits, so tests/deploy/test_stats_numpy.py can compare it with
 * numpy. A separate executable because the function is internal: libtdeploy.so
 * exports only the public API. */
#include "core/ctx.h"
#include "deploy/stats.h"

#include <stdio.h>
#include <stdlib.h>

int main(void) {
    int method;
    long n;
    if (scanf("%d %ld", &method, &n) != 2 || n < 0 || n > 10000000) {
        fprintf(stderr, "stats_driver: expected METHOD N then N numbers\n");
        return 2;
    }
    double *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    if (!x)
        return 1;
    for (long i = 0; i < n; i++)
        if (scanf("%lf", &x[i]) != 1) {
            fprintf(stderr, "stats_driver: sample %ld missing\n", i);
            free(x);
            return 2;
        }
    td_ctx *ctx = td_ctx_new();
    td_latency_stats s = {0};
    td_status rc = td_latency_stats_compute(ctx, x, (size_t)n, (td_percentile_method)method, &s);
    printf("%d %zu %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g\n", (int)rc, s.n, s.total, s.mean, s.sd,
           s.min, s.max, s.p50, s.p90, s.p95, s.p99);
    td_ctx_free(ctx);
    free(x);
    return 0;
}
