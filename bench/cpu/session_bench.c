/* Time tdeploy's CPU runtime on an ONNX encoder at one batch x sequence shape.
 *
 *   session_bench MODEL.onnx BATCH SEQ [--threads N] [--runs N] [--warmup N] [--vocab V]
 *
 * Inputs: random ids in [1000, vocab), attention_mask all ones, token_type_ids 0.
 * Prints one JSON line: {"batch", "seq", "threads", "runs", "median_ms", "min_ms", "mean_ms",
 * "fused_nodes"}. */
#include "core/log.h"
#include "tdeploy/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.onnx BATCH SEQ [--threads N] [--runs N] [--warmup N] [--vocab V]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int64_t batch = atoll(argv[2]), seq = atoll(argv[3]), vocab = 30522;
    int threads = 2, runs = 20, warmup = 3;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup"))
            warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--vocab"))
            vocab = atoll(argv[i + 1]);
    }
    if (batch < 1 || seq < 1 || runs < 1 || vocab <= 1000) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    td_ctx *ctx = td_ctx_new();
    td_session_options opt;
    td_session_options_init(&opt);
    opt.threads = threads;
    td_session *s = NULL;
    size_t n = (size_t)(batch * seq);
    int64_t *ids = malloc(n * 8), *mask = malloc(n * 8), *types = calloc(n, 8);
    double *t = malloc(sizeof(double) * (size_t)runs);
    volatile double sink = 0.0;
    int rc = 1;
    if (!ids || !mask || !types || !t)
        goto out;
    srand(1);
    for (size_t i = 0; i < n; i++) {
        ids[i] = 1000 + rand() % (vocab - 1000);
        mask[i] = 1;
    }
    if (td_session_create_file(ctx, path, &opt, &s) != TD_OK)
        goto fail;
    int64_t shape[2] = {batch, seq};
    for (int i = 0; i < td_session_input_count(s); i++) {
        const char *name = td_session_input_name(s, i);
        const int64_t *src = !strcmp(name, "input_ids") ? ids : !strcmp(name, "attention_mask") ? mask : types;
        if (td_session_set_input(ctx, s, name, TD_DTYPE_INT64, 2, shape, src, n * 8) != TD_OK)
            goto fail;
    }
    for (int i = 0; i < warmup + runs; i++) {
        double t0 = td_now_s();
        if (td_session_run(ctx, s) != TD_OK)
            goto fail;
        /* read every output, as a Python ONNX Runtime caller gets them copied into numpy arrays */
        for (int o = 0; o < td_session_output_count(s); o++) {
            td_session_output out;
            if (td_session_get_output(ctx, s, o, &out) != TD_OK)
                goto fail;
            size_t cnt = 1;
            for (int d = 0; d < out.rank; d++)
                cnt *= (size_t)out.shape[d];
            if (out.dtype == TD_DTYPE_FLOAT32)
                for (size_t k = 0; k < cnt; k++)
                    sink += ((const float *)out.data)[k];
        }
        if (i >= warmup)
            t[i - warmup] = (td_now_s() - t0) * 1e3;
    }
    if (sink == 12345.678) /* keeps the reads; practically never true */
        fprintf(stderr, "checksum %g\n", sink);
    double mean = 0;
    for (int i = 0; i < runs; i++)
        mean += t[i] / runs;
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    td_session_stats stats;
    td_session_get_stats(s, &stats);
    double median = runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);
    printf("{\"batch\": %lld, \"seq\": %lld, \"threads\": %d, \"runs\": %d, \"median_ms\": %.4f, \"min_ms\": %.4f, "
           "\"mean_ms\": %.4f, \"fused_nodes\": %d}\n",
           (long long)batch, (long long)seq, threads, runs, median, t[0], mean, stats.fused_nodes);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "session_bench: %s\n", td_error_message(ctx));
out:
    td_session_free(s);
    td_ctx_free(ctx);
    free(ids);
    free(mask);
    free(types);
    free(t);
    return rc;
}
