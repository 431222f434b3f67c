/* Measured fp32 FMA peak of this CPU: a register-only loop of 12 independent
 * FMA chains (enough to cover FMA latency x throughput), per thread, 1..N threads.
 * Prints GFLOP/s for 512-bit (zmm) and 256-bit (ymm) vectors: the denominator for
 * "fraction of peak" in docs/benchmarks.md.  usage: fma_peak [THREADS] */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ITERS 200000000L
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static volatile float sink;

#ifdef __AVX512F__
static void *run512(void *arg) {
    (void)arg;
    __m512 a[12], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm512_set1_ps((float)i);
    for (long n = 0; n < ITERS / 16; n++)
        for (int i = 0; i < 12; i++)
            a[i] = _mm512_fmadd_ps(a[i], b, c);
    __m512 s = a[0];
    for (int i = 1; i < 12; i++)
        s = _mm512_add_ps(s, a[i]);
    sink = _mm512_reduce_add_ps(s);
    return NULL;
}
#endif

static void *run256(void *arg) {
    (void)arg;
    __m256 a[12], b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_set1_ps((float)i);
    for (long n = 0; n < ITERS / 16; n++)
        for (int i = 0; i < 12; i++)
            a[i] = _mm256_fmadd_ps(a[i], b, c);
    __m256 s = a[0];
    for (int i = 1; i < 12; i++)
        s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    sink = out[0];
    return NULL;
}

static double measure(void *(*fn)(void *), int threads, int lanes) {
    pthread_t t[64];
    double t0 = now();
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, fn, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double s = now() - t0;
    double flops = 2.0 * lanes * 12 * (double)(ITERS / 16) * threads;
    return flops / s / 1e9;
}

int main(int argc, char **argv) {
    int max_threads = argc > 1 ? atoi(argv[1]) : 2;
    if (max_threads < 1 || max_threads > 64)
        max_threads = 2;
    for (int th = 1; th <= max_threads; th++) {
#ifdef __AVX512F__
        printf("threads %d: zmm %.1f GFLOP/s, ", th, measure(run512, th, 16));
#else
        printf("threads %d: ", th);
#endif
        printf("ymm %.1f GFLOP/s\n", measure(run256, th, 8));
    }
    return 0;
}
