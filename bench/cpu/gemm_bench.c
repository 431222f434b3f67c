/* sgemm throughput on the GEMM shapes of BERT inference, for one backend chosen
 * at compile time (see bench/cpu/run_gemm_bench.sh, which builds one binary per
 * backend and runs them side by side):
 *   -DBACKEND_TD    tdeploy's own kernel (src/runtime/cpu/gemm.c), weights prepacked
 *                   (argv[3] = f16 / bf16 stores them in half precision)
 *   -DBACKEND_BLAS  any library exporting Fortran sgemm_ (OpenBLAS, BLIS)
 *   -DBACKEND_DNNL  oneDNN's dnnl_sgemm
 * Linear layers: C (M, N) = A (M, K) @ W^T with W stored (N, K) as in PyTorch.
 * Attention: per (batch, head) Q K^T (S x S x 64) and P V (S x 64 x S).
 * Prints one TSV line per shape: backend threads kind M N K batch GFLOP/s
 * GFLOP/s-cpu. The first uses wall time, the second process CPU time divided by
 * the thread count: on a shared, oversubscribed machine wall time mostly
 * measures the scheduler, while CPU time still measures the code (threads that
 * spin while waiting are charged for it). Each is the median of 7 timed runs,
 * each repeated to last >= 20 ms. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef BACKEND_TD
#include "core/threadpool.h"
#include "runtime/cpu/gemm.h"
static td_threadpool *pool;
static td_dtype g_store = TD_F32; /* weight storage, argv[3]: f32 (default), f16, bf16 */
#define BACKEND_NAME "tdeploy"
#elif defined(BACKEND_BLAS)
void sgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k, const float *alpha,
            const float *a, const int *lda, const float *b, const int *ldb, const float *beta, float *c,
            const int *ldc);
#ifndef BACKEND_NAME
#define BACKEND_NAME "blas"
#endif
#elif defined(BACKEND_DNNL)
#include <dnnl.h>
#define BACKEND_NAME "onednn"
#else
#error "define BACKEND_TD, BACKEND_BLAS or BACKEND_DNNL"
#endif

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }
static int g_threads = 1;
static double g_cpu_gflops;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *rand_buf(size_t n) {
    float *p = aligned_alloc(64, ((n * sizeof(float)) + 63) / 64 * 64 + 64);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) & 0xFFFF) / 65536.0f - 0.5f;
    }
    return p;
}

/* row-major C (M,N) = A (M,K) @ B where B is W^T (W (N,K)) if trans_w, else B (K,N) */
static void gemm_rm(int M, int N, int K, const float *A, int lda, const float *B, int ldb, int trans_w, float *C,
                    int ldc) {
#ifdef BACKEND_BLAS
    const float one = 1.0f, zero = 0.0f;
    /* column-major view: C^T (N,M) = op(B)^T-ish; see header comment */
    sgemm_(trans_w ? "T" : "N", "N", &N, &M, &K, &one, B, &ldb, A, &lda, &zero, C, &ldc);
#elif defined(BACKEND_DNNL)
    dnnl_sgemm('N', trans_w ? 'T' : 'N', M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
#else
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)trans_w, (void)C, (void)ldc;
#endif
}

typedef struct {
    int M, N, K;
    float *A, *W, *C;
#ifdef BACKEND_TD
    td_gemm_packed *P;
#endif
} linear_case;

static void run_linear(void *p) {
    linear_case *c = p;
#ifdef BACKEND_TD
    td_gemm_run(pool, (size_t)c->M, c->A, (size_t)c->K, c->P, c->C, (size_t)c->N, NULL);
#else
    gemm_rm(c->M, c->N, c->K, c->A, c->K, c->W, c->K, 1, c->C, c->N);
#endif
}

typedef struct {
    int batch, M, N, K, trans;
    float *A, *B, *C;
} attn_case;

static void run_attn(void *p) {
    attn_case *c = p;
    int ldb = c->trans ? c->K : c->N;
#ifdef BACKEND_TD
    td_gemm_batched(NULL, pool, (size_t)c->batch, (size_t)c->M, (size_t)c->N, (size_t)c->K, c->A, (size_t)c->K,
                    (size_t)c->M * (size_t)c->K, c->B, (size_t)ldb, (size_t)c->K * (size_t)c->N, c->trans, c->C,
                    (size_t)c->N, (size_t)c->M * (size_t)c->N, NULL);
#else
    for (int i = 0; i < c->batch; i++)
        gemm_rm(c->M, c->N, c->K, c->A + (size_t)i * c->M * c->K, c->K, c->B + (size_t)i * c->K * c->N, ldb,
                c->trans, c->C + (size_t)i * c->M * c->N, c->N);
#endif
}

static double measure(void (*fn)(void *), void *arg, double flop) {
    fn(arg);
    double t0 = now();
    fn(arg);
    double one = now() - t0;
    int reps = one > 0.02 ? 1 : (int)(0.02 / (one > 1e-7 ? one : 1e-7)) + 1;
    double samples[7], cpu[7];
    for (int s = 0; s < 7; s++) {
        t0 = now();
        double c0 = cpu_now();
        for (int r = 0; r < reps; r++)
            fn(arg);
        samples[s] = (now() - t0) / reps;
        cpu[s] = (cpu_now() - c0) / reps / g_threads;
    }
    qsort(samples, 7, sizeof(double), cmp_d);
    qsort(cpu, 7, sizeof(double), cmp_d);
    g_cpu_gflops = flop / cpu[3] / 1e9;
    return flop / samples[3] / 1e9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    g_threads = threads < 1 ? 1 : threads;
    const char *only = argc > 2 ? argv[2] : "all";
#ifdef BACKEND_TD
    if (td_threadpool_create(NULL, threads, &pool) != TD_OK)
        return 1;
    if (argc > 3)
        g_store = !strcmp(argv[3], "bf16") ? TD_BF16 : !strcmp(argv[3], "f16") ? TD_F16 : TD_F32;
#endif
    static const int Ms[] = {16, 128, 1024, 4096};
    static const int KN[][2] = {{384, 384}, {384, 1152}, {384, 1536}, {1536, 384},
                                {768, 768}, {768, 2304}, {768, 3072}, {3072, 768}};
    if (!strcmp(only, "all") || !strcmp(only, "linear")) {
        for (size_t ki = 0; ki < sizeof KN / sizeof KN[0]; ki++) {
            int K = KN[ki][0], N = KN[ki][1];
            float *W = rand_buf((size_t)N * K);
            for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
                int M = Ms[mi];
                linear_case c = {.M = M, .N = N, .K = K, .A = rand_buf((size_t)M * K), .W = W,
                                 .C = rand_buf((size_t)M * N)};
#ifdef BACKEND_TD
                if (td_gemm_pack_b(NULL, W, (size_t)K, (size_t)N, (size_t)K, true, g_store, &c.P) != TD_OK)
                    return 1;
#endif
                double g = measure(run_linear, &c, 2.0 * M * N * K);
                printf("%s\t%d\tlinear\t%d\t%d\t%d\t1\t%.1f\t%.1f\n", BACKEND_NAME, threads, M, N, K, g, g_cpu_gflops);
                fflush(stdout);
#ifdef BACKEND_TD
                td_gemm_packed_free(c.P);
#endif
                free(c.A);
                free(c.C);
            }
            free(W);
        }
    }
    if (!strcmp(only, "all") || !strcmp(only, "attn")) {
        /* (batch x heads, seq): bert-base 12 heads at 1x16, 1x128, 8x128 */
        static const int BS[][2] = {{12, 16}, {12, 128}, {96, 128}};
        for (size_t bi = 0; bi < sizeof BS / sizeof BS[0]; bi++) {
            int batch = BS[bi][0], S = BS[bi][1], D = 64;
            for (int which = 0; which < 2; which++) {
                attn_case c = {.batch = batch, .M = S, .N = which ? D : S, .K = which ? S : D, .trans = !which};
                c.A = rand_buf((size_t)batch * c.M * c.K);
                c.B = rand_buf((size_t)batch * c.K * c.N);
                c.C = rand_buf((size_t)batch * c.M * c.N);
                double g = measure(run_attn, &c, 2.0 * batch * c.M * c.N * c.K);
                printf("%s\t%d\t%s\t%d\t%d\t%d\t%d\t%.1f\t%.1f\n", BACKEND_NAME, threads,
                       which ? "attn_pv" : "attn_qk", c.M, c.N, c.K, batch, g, g_cpu_gflops);
                fflush(stdout);
                free(c.A);
                free(c.B);
                free(c.C);
            }
        }
    }
#ifdef BACKEND_TD
    td_threadpool_free(pool);
#endif
    return 0;
}
