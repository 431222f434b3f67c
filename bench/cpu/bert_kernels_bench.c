/* BERT encoder forward pass assembled directly from the CPU kernel layer
 * (no graph, no runtime): per layer a fused QKV GEMM (weights prepacked, bias in
 * the epilogue), fused attention, output projection with the residual in the
 * epilogue, LayerNorm, FFN up with bias+GELU epilogue, FFN down with residual,
 * LayerNorm. Embeddings and pooler are left out (they are < 1% of the FLOPs).
 * Random weights; the point is what the kernels cost when the runtime adds
 * nothing, to compare with a full engine's latency.
 *   bert_kernels_bench LAYERS HIDDEN HEADS FFN BATCH SEQ THREADS
 * Prints: median wall ms, median CPU ms / threads, GFLOP, GFLOP/s (both). */
#define _POSIX_C_SOURCE 200809L
#include "core/threadpool.h"
#include "runtime/cpu/attention.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/layernorm.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static float *rnd(size_t n, float amp) {
    float *p = aligned_alloc(64, (n * 4 + 63) / 64 * 64);
    uint32_t s = (uint32_t)n * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = amp * ((float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f);
    }
    return p;
}

typedef struct {
    td_gemm_packed *qkv, *o, *up, *down;
    float *b_qkv, *b_o, *b_up, *b_down, *g1, *be1, *g2, *be2;
} layer;

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s LAYERS HIDDEN HEADS FFN BATCH SEQ THREADS\n", argv[0]);
        return 2;
    }
    size_t L = (size_t)atoi(argv[1]), H = (size_t)atoi(argv[2]), NH = (size_t)atoi(argv[3]);
    size_t F = (size_t)atoi(argv[4]), B = (size_t)atoi(argv[5]), S = (size_t)atoi(argv[6]);
    int T = atoi(argv[7]);
    size_t M = B * S;
    td_threadpool *pool = NULL;
    if (td_threadpool_create(NULL, T, &pool) != TD_OK)
        return 1;
    layer *ly = calloc(L, sizeof *ly);
    for (size_t l = 0; l < L; l++) {
        float *w = rnd(3 * H * H, 0.03f);
        td_gemm_pack_b(NULL, w, H, 3 * H, H, true, TD_F32, &ly[l].qkv); /* (3H, H) as PyTorch stores it */
        free(w);
        w = rnd(H * H, 0.03f);
        td_gemm_pack_b(NULL, w, H, H, H, true, TD_F32, &ly[l].o);
        free(w);
        w = rnd(F * H, 0.03f);
        td_gemm_pack_b(NULL, w, H, F, H, true, TD_F32, &ly[l].up);
        free(w);
        w = rnd(H * F, 0.03f);
        td_gemm_pack_b(NULL, w, F, H, F, true, TD_F32, &ly[l].down);
        free(w);
        ly[l].b_qkv = rnd(3 * H, 0.1f), ly[l].b_o = rnd(H, 0.1f), ly[l].b_up = rnd(F, 0.1f);
        ly[l].b_down = rnd(H, 0.1f), ly[l].g1 = rnd(H, 1.0f), ly[l].be1 = rnd(H, 0.1f);
        ly[l].g2 = rnd(H, 1.0f), ly[l].be2 = rnd(H, 0.1f);
    }
    float *x = rnd(M * H, 1.0f), *qkv = rnd(M * 3 * H, 0), *ctx = rnd(M * H, 0), *t = rnd(M * H, 0);
    float *h1 = rnd(M * H, 0), *up = rnd(M * F, 0);
    int32_t *lens = malloc(B * sizeof(int32_t));
    for (size_t b = 0; b < B; b++)
        lens[b] = (int32_t)S;
    double flop = (double)L * (2.0 * M * H * (3 * H + H + 2 * F) + 4.0 * B * NH * S * S * (H / NH));
    double wall[9], cpu[9];
    for (int rep = -2; rep < 9; rep++) {
        double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        for (size_t l = 0; l < L; l++) {
            td_gemm_epilogue e_qkv = {.bias = ly[l].b_qkv};
            td_gemm_run(pool, M, x, H, ly[l].qkv, qkv, 3 * H, &e_qkv); /* (M, 3H) */
            td_attention_args a = {.batch = B, .heads = NH, .q_seq = S, .kv_seq = S, .head_dim = H / NH,
                                   .q = qkv, .k = qkv + H, .v = qkv + 2 * H, .ld_q = 3 * H, .ld_k = 3 * H,
                                   .ld_v = 3 * H, .out = ctx, .ld_out = H, .scale = 1.0f / sqrtf((float)(H / NH)),
                                   .mask_kind = TD_ATTN_MASK_KEY_LENS, .key_lens = lens};
            td_cpu_attention(NULL, pool, &a);
            td_gemm_epilogue e_o = {.bias = ly[l].b_o, .residual = x, .ldr = H};
            td_gemm_run(pool, M, ctx, H, ly[l].o, t, H, &e_o);
            td_layernorm_args ln1 = {.rows = M, .cols = H, .x = t, .gamma = ly[l].g1, .beta = ly[l].be1,
                                     .eps = 1e-12f, .out = h1};
            td_cpu_layernorm(pool, &ln1);
            td_gemm_epilogue e_up = {.bias = ly[l].b_up, .act = TD_GEMM_ACT_GELU_ERF};
            td_gemm_run(pool, M, h1, H, ly[l].up, up, F, &e_up);
            td_gemm_epilogue e_down = {.bias = ly[l].b_down, .residual = h1, .ldr = H};
            td_gemm_run(pool, M, up, F, ly[l].down, t, H, &e_down);
            td_layernorm_args ln2 = {.rows = M, .cols = H, .x = t, .gamma = ly[l].g2, .beta = ly[l].be2,
                                     .eps = 1e-12f, .out = x};
            td_cpu_layernorm(pool, &ln2);
        }
        if (rep >= 0) {
            wall[rep] = clock_s(CLOCK_MONOTONIC) - w0;
            cpu[rep] = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / T;
        }
    }
    qsort(wall, 9, sizeof(double), cmp_d);
    qsort(cpu, 9, sizeof(double), cmp_d);
    printf("layers=%zu hidden=%zu heads=%zu ffn=%zu batch=%zu seq=%zu threads=%d: wall %.2f ms, cpu/threads %.2f ms, "
           "%.2f GFLOP, %.0f GFLOP/s wall, %.0f GFLOP/s cpu (x[0]=%g)\n",
           L, H, NH, F, B, S, T, wall[4] * 1e3, cpu[4] * 1e3, flop / 1e9, flop / wall[4] / 1e9, flop / cpu[4] / 1e9,
           x[0]);
    td_threadpool_free(pool);
    return 0;
}
