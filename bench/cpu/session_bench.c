/* Time tdeploy's CPU runtime on an ONNX encoder at one batch x sequence shape.
 *
 *   session_bench MODEL.onnx BATCH SEQ [--threads N] [--runs N] [--warmup N] [--vocab V] [--gap-us U]
 *
 * Inputs: random ids in [1000, vocab), attention_mask all ones, token_type_ids 0.
 * Each timed run does what a caller of ONNX Runtime's InferenceSession.run gets done in one call: bind
 * every input, run, and read every output into a fresh caller-owned buffer (bench/cpu/bench_vs_ort.py
 * times ONNX Runtime the same way, so both sides do equal work).
 * Prints one JSON line: {"batch", "seq", "threads", "runs", "median_ms", "min_ms", "max_ms", "mean_ms",
 * "median_cpu_ms" (process CPU time per run), "fused_nodes", "plans" (1: re-binding the same shapes every run
 * reuses the plan)}.
 * --gap-us U sleeps U microseconds before each run (not timed): the thread pool goes idle between runs, as a
 * server's does between requests at concurrency 1 (bench/triton/c1_overhead.py). */
#include "core/log.h"
#include "tdeploy/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU time of the whole process (all threads), seconds: on a host shared with other jobs it counts only the
 * cycles this benchmark got, where wall time also counts the waits for a core. */
static double cpu_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.onnx BATCH SEQ [--threads N] [--runs N] [--warmup N] [--vocab V] [--gap-us U]\n",
                argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int64_t batch = atoll(argv[2]), seq = atoll(argv[3]), vocab = 30522;
    int threads = 2, runs = 20, warmup = 3;
    long gap_us = 0;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup"))
            warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--gap-us"))
            gap_us = atol(argv[i + 1]);
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
    double *t = malloc(sizeof(double) * (size_t)runs), *tc = malloc(sizeof(double) * (size_t)runs);
    int rc = 1;
    if (!ids || !mask || !types || !t || !tc)
        goto out;
    srand(1);
    for (size_t i = 0; i < n; i++) {
        ids[i] = 1000 + rand() % (vocab - 1000);
        mask[i] = 1;
    }
    if (td_session_create_file(ctx, path, &opt, &s) != TD_OK)
        goto fail;
    int64_t shape[2] = {batch, seq};
    for (int i = 0; i < warmup + runs; i++) {
        if (gap_us > 0) {
            struct timespec gap = {.tv_sec = gap_us / 1000000, .tv_nsec = gap_us % 1000000 * 1000};
            nanosleep(&gap, NULL);
        }
        double t0 = td_now_s(), c0 = cpu_now_s();
        for (int k = 0; k < td_session_input_count(s); k++) {
            const char *name = td_session_input_name(s, k);
            const int64_t *src = !strcmp(name, "input_ids") ? ids : !strcmp(name, "attention_mask") ? mask : types;
            if (td_session_set_input(ctx, s, name, TD_DTYPE_INT64, 2, shape, src, n * 8) != TD_OK)
                goto fail;
        }
        if (td_session_run(ctx, s) != TD_OK)
            goto fail;
        for (int k = 0; k < td_session_output_count(s); k++) {
            td_session_output o;
            if (td_session_get_output(ctx, s, k, &o) != TD_OK)
                goto fail;
            void *copy = malloc(o.nbytes ? o.nbytes : 1); /* the caller's array, as ORT returns a new one */
            if (!copy)
                goto out;
            memcpy(copy, o.data, o.nbytes);
            volatile unsigned char sink = ((unsigned char *)copy)[o.nbytes ? o.nbytes - 1 : 0];
            (void)sink;
            free(copy);
        }
        if (i >= warmup) {
            t[i - warmup] = (td_now_s() - t0) * 1e3;
            tc[i - warmup] = (cpu_now_s() - c0) * 1e3;
        }
    }
    double mean = 0;
    for (int i = 0; i < runs; i++)
        mean += t[i] / runs;
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    qsort(tc, (size_t)runs, sizeof *tc, cmp_double);
    double median_cpu = runs % 2 ? tc[runs / 2] : 0.5 * (tc[runs / 2 - 1] + tc[runs / 2]);
    td_session_stats stats;
    td_session_get_stats(s, &stats);
    double median = runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);
    printf("{\"batch\": %lld, \"seq\": %lld, \"threads\": %d, \"runs\": %d, \"median_ms\": %.4f, \"min_ms\": %.4f, "
           "\"max_ms\": %.4f, \"mean_ms\": %.4f, \"median_cpu_ms\": %.4f, \"fused_nodes\": %d, \"plans\": %llu}\n",
           (long long)batch, (long long)seq, threads, runs, median, t[0], t[runs - 1], mean, median_cpu, stats.fused_nodes,
           (unsigned long long)stats.plans);
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
    free(tc);
    return rc;
}
