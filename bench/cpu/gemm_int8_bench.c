/* Int8 GEMM throughput (runtime/cpu/gemm_int8.h) on the linear-layer shapes of
 * MiniLM-L6-H384 and bert-base, beside tdeploy's fp32 GEMM on the same shapes.
 *
 *   gemm_int8_bench [--threads N] [--rows M,M,...] [--weight-bits 8|7]
 *
 * C (M, N) = dequant(quant_rows(A (M, K)) @ Bq (K, N)) + bias, weights packed
 * once as a session does; --weight-bits 7 quantizes them to [-63, 63], which the
 * AVX2 kernel runs with paired products (gemm_int8.h, TD_GEMM_I8_NARROW). Prints one TSV line per shape: threads M N K,
 * int8 GOP/s and fp32 GFLOP/s by process CPU time (divided by the thread count,
 * so on a shared host it counts only the cycles the benchmark got), their ratio,
 * and the share of the int8 call spent quantizing A (timed on its own). Each
 * figure is the median of 7 timed runs, each repeated to last >= 20 ms; int8
 * and fp32 alternate run by run so both see the same load. */
#define _POSIX_C_SOURCE 200809L
#include "core/threadpool.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_int8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    td_threadpool *pool;
    size_t M, N, K;
    const float *A, *bias;
    const td_gemm_i8_packed *q;
    const td_gemm_packed *f;
    float *C;
    void *scratch;
    int which; /* 0 int8, 1 fp32, 2 int8 with N = 1 column panel: quantization + one panel */
} bench_case;

static void run_once(const bench_case *c) {
    td_gemm_epilogue ep = {.bias = c->bias};
    if (c->which == 1)
        td_gemm_run(c->pool, c->M, c->A, c->K, c->f, c->C, c->N, &ep);
    else
        td_gemm_i8_run(c->pool, c->M, c->A, c->K, c->q, c->C, c->N, &ep, c->scratch);
}

/* Seconds of CPU per call: median of 7 timed runs. */
static double time_case(const bench_case *c, int threads) {
    double t[7];
    int reps = 1;
    for (;;) { /* calibrate: >= 20 ms per timed run */
        double t0 = cpu_now();
        for (int r = 0; r < reps; r++)
            run_once(c);
        if (cpu_now() - t0 >= 0.02 * threads)
            break;
        reps *= 2;
    }
    for (int i = 0; i < 7; i++) {
        double t0 = cpu_now();
        for (int r = 0; r < reps; r++)
            run_once(c);
        t[i] = (cpu_now() - t0) / reps / threads;
    }
    qsort(t, 7, sizeof t[0], cmp_double);
    return t[3];
}

int main(int argc, char **argv) {
    int threads = 1;
    const char *rows = "16,128,1024";
    int qmax = 127;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rows"))
            rows = argv[i + 1];
        else if (!strcmp(argv[i], "--weight-bits"))
            qmax = atoi(argv[i + 1]) == 7 ? TD_GEMM_I8_NARROW : 127;
        else {
            fprintf(stderr, "usage: %s [--threads N] [--rows M,M,...] [--weight-bits 8|7]\n", argv[0]);
            return 2;
        }
    }
    td_ctx *ctx = td_ctx_new();
    td_threadpool *pool = NULL;
    if (threads > 1 && td_threadpool_create(ctx, threads, &pool) != TD_OK) {
        fprintf(stderr, "threadpool: %s\n", td_error_message(ctx));
        return 1;
    }
    /* (N, K) of the linear layers: MiniLM QKV/out, FFN up, FFN down; bert-base the same */
    static const size_t nk[][2] = {{384, 384}, {1536, 384}, {384, 1536}, {768, 768}, {3072, 768}, {768, 3072}};
    printf("threads\tM\tN\tK\tint8_GOPs\tfp32_GFLOPs\tint8/fp32\tquantize_share\n");
    for (const char *r = rows; *r;) {
        size_t M = strtoull(r, (char **)&r, 10);
        if (*r == ',')
            r++;
        for (size_t s = 0; s < sizeof nk / sizeof nk[0]; s++) {
            size_t N = nk[s][0], K = nk[s][1];
            float *A = malloc(M * K * sizeof *A), *W = malloc(K * N * sizeof *W), *bias = malloc(N * sizeof *bias);
            float *C = malloc(M * N * sizeof *C), *sc = malloc(N * sizeof *sc);
            int8_t *bq = malloc(K * N);
            unsigned x = 12345;
            for (size_t i = 0; i < M * K; i++)
                A[i] = (float)((x = x * 1103515245u + 12345u) >> 16 & 1023) / 512.0f - 1.0f;
            for (size_t i = 0; i < K * N; i++)
                W[i] = (float)((x = x * 1103515245u + 12345u) >> 16 & 1023) / 8192.0f - 0.0625f;
            for (size_t i = 0; i < N; i++)
                bias[i] = 0.01f * (float)(i % 7);
            td_gemm_i8_quantize_weights(W, K, N, N, false, qmax, bq, sc);
            td_gemm_i8_packed *q = NULL;
            td_gemm_packed *f = NULL;
            void *scratch = aligned_alloc(64, (td_gemm_i8_scratch_bytes(M, K) + 63) / 64 * 64);
            if (td_gemm_i8_pack(ctx, bq, K, N, sc, N, &q) != TD_OK ||
                td_gemm_pack_b(ctx, W, K, N, N, false, TD_F32, &f) != TD_OK || !scratch) {
                fprintf(stderr, "pack: %s\n", td_error_message(ctx));
                return 1;
            }
            /* the quantization share: the same call on one 48-column panel minus its GEMM part */
            td_gemm_i8_packed *q1 = NULL;
            if (td_gemm_i8_pack(ctx, bq, K, 1, sc, 1, &q1) != TD_OK)
                return 1;
            bench_case ci = {pool, M, N, K, A, bias, q, f, C, scratch, 0};
            bench_case cf = ci, c1 = ci;
            cf.which = 1;
            c1.q = q1;
            c1.N = 1;
            double ti = time_case(&ci, threads), tf = time_case(&cf, threads);
            double t1 = time_case(&c1, threads);
            ti = (ti + time_case(&ci, threads)) / 2; /* alternate: int8, fp32, int8 */
            double ops = 2.0 * (double)M * (double)N * (double)K;
            /* one column costs the quantization plus ~1/N of the products */
            double tq = t1 - ti / (double)N;
            printf("%d\t%zu\t%zu\t%zu\t%.1f\t%.1f\t%.2f\t%.1f%%\n", threads, M, N, K, ops / ti * 1e-9, ops / tf * 1e-9,
                   tf / ti, 100.0 * (tq > 0 ? tq : 0) / ti);
            fflush(stdout);
            td_gemm_i8_packed_free(q);
            td_gemm_i8_packed_free(q1);
            td_gemm_packed_free(f);
            free(A);
            free(W);
            free(bias);
            free(C);
            free(sc);
            free(bq);
            free(scratch);
        }
    }
    td_threadpool_free(pool);
    td_ctx_free(ctx);
    return 0;
}
