/* MatMulNBits kernel microbenchmark on SmolLM2-135M's matrix shapes: the GEMVs of one decode token (M=1)
 * and the GEMMs of a 128-token prefill, 4-bit blocks of 32 with float zero points (the Q4_1 mapping), so
 * the figures are "tokens/s if the model were only its linear layers" (attention, norms, rope excluded).
 * Prints, per compute path, ms per token (min / median / max over the repetitions) and tokens/s.
 *
 * Also the median CPU time of the process per token (cpu_ms_median: busy hosts inflate wall time, not it).
 * Usage: qgemv_bench [threads=2] [reps=30] [bits=4] [block=32] [phases=all|decode]
 * SmolLM2-135M: 30 layers of q (576x576), k, v (192x576), o (576x576), gate, up (1536x576), down
 * (576x1536), then the tied lm_head (49152x576). */
#include "core/threadpool.h"
#include "runtime/cpu/qnbits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct mat {
    int64_t N, K;
    td_qnbits_w *w;
} mat;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t seed = 88172645463325252ull;
static uint32_t rnd(void) {
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    return (uint32_t)(seed >> 16);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 2 ? atoi(argv[2]) : 30;
    int bits = argc > 3 ? atoi(argv[3]) : 4, bs = argc > 4 ? atoi(argv[4]) : 32;
    bool decode_only = argc > 5 && strcmp(argv[5], "decode") == 0;
    const int layers = 30, prefill = 128;
    const int64_t shapes[7][2] = {{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536}};
    /* without AVX-512 only the AVX2 int8 path of 4-bit weights is optimized: time that alone */
    bool int8_only = !td_qnbits_have_avx512() && td_qnbits_have_avx2() && bits == 4;
    if (!td_qnbits_have_avx512() && !int8_only && !getenv("TD_QGEMV_SCALAR")) {
        /* the scalar references are correctness tools, not what this benchmark is about */
        printf("{\"kernel\": \"MatMulNBits\", \"skipped\": \"this CPU lacks AVX-512 BW/VL/DQ/VNNI; set "
               "TD_QGEMV_SCALAR=1 to time the scalar fallback\"}\n");
        return 0;
    }
    int nm = layers * 7 + 1;
    mat *mats = calloc((size_t)nm, sizeof *mats);
    size_t weight_bytes = 0, max_scratch = 0;
    for (int i = 0; i < nm; i++) {
        int64_t N = i < layers * 7 ? shapes[i % 7][0] : 49152, K = i < layers * 7 ? shapes[i % 7][1] : 576;
        int64_t kb = td_qnbits_kb(K, bs), blob = (int64_t)bs * bits / 8;
        uint8_t *b = malloc((size_t)(N * kb * blob));
        float *s = malloc((size_t)(N * kb) * 4), *z = malloc((size_t)(N * kb) * 4);
        for (int64_t j = 0; j < N * kb * blob; j++)
            b[j] = (uint8_t)rnd();
        for (int64_t j = 0; j < N * kb; j++)
            s[j] = (float)(rnd() % 1000) * 1e-5f, z[j] = (float)(rnd() % 16);
        td_qnbits_raw raw = {K, N, bits, bs, b, s, NULL, bits == 4 ? z : NULL};
        if (td_qnbits_prepare(NULL, &raw, &mats[i].w) != TD_OK)
            return 1;
        free(s), free(z); /* the prepared weight keeps b */
        mats[i].N = N, mats[i].K = K;
        weight_bytes += (size_t)(N * kb * blob) + (size_t)(N * kb) * 8;
        size_t sc = td_qnbits_scratch(mats[i].w, prefill, threads);
        max_scratch = sc > max_scratch ? sc : max_scratch;
    }
    td_threadpool *pool = NULL;
    if (td_threadpool_create(NULL, threads, &pool) != TD_OK)
        return 1;
    td_rt_env env = {.threads = threads, .pool = pool};
    float *x = malloc((size_t)prefill * 1536 * 4), *y = malloc((size_t)prefill * 49152 * 4);
    void *scratch = malloc(max_scratch);
    for (int i = 0; i < prefill * 1536; i++)
        x[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
    printf("{\"kernel\": \"MatMulNBits\", \"avx512_vnni\": %s, \"avx2_only\": %s, \"threads\": %d, \"bits\": %d, \"block\": %d, "
           "\"weights_mb_read_per_token\": %.1f}\n",
           td_qnbits_have_avx512() ? "true" : "false", int8_only ? "true" : "false", threads, bits, bs, weight_bytes / 1e6);
    double *t = malloc((size_t)reps * sizeof *t), *tc = malloc((size_t)reps * sizeof *tc);
    for (int mode = 0; mode < 4; mode++) {
        bool int8 = mode % 2 == 0;
        if (int8_only && !int8)
            continue;
        int64_t M = mode < 2 ? 1 : prefill;
        if (decode_only && M != 1)
            continue;
        for (int r = -2; r < reps; r++) { /* 2 warm-up runs */
            double t0 = now_ms(), c0 = cpu_ms();
            for (int i = 0; i < nm; i++)
                td_qnbits_gemm(mats[i].w, x, M, NULL, y, int8, scratch, &env);
            if (r >= 0)
                t[r] = now_ms() - t0, tc[r] = cpu_ms() - c0;
        }
        qsort(t, (size_t)reps, sizeof *t, cmp);
        qsort(tc, (size_t)reps, sizeof *tc, cmp);
        double med = t[reps / 2];
        printf("{\"phase\": \"%s\", \"path\": \"%s\", \"ms_min\": %.3f, \"ms_median\": %.3f, \"ms_max\": %.3f, "
               "\"cpu_ms_median\": %.3f, \"tokens_per_s_median\": %.1f, \"weight_gb_per_s_median\": %.1f}\n",
               M == 1 ? "decode" : "prefill128", int8 ? (int8_only ? "int8-activations(AVX2)" : "int8-activations(VNNI)") : "fp32-dequant", t[0], med,
               t[reps - 1], tc[reps / 2], (double)M * 1e3 / med, weight_bytes / med / 1e6);
    }
    td_threadpool_free(pool);
    free(t);
    free(tc);
    return 0;
}
