/* kern.h on the optimized kernels and the session's thread pool, or on the
 * reference loops (ref_kern.h) when env->reference is set. */
#include "runtime/cpu/kern.h"

#include "runtime/cpu/activations.h"
#include "runtime/cpu/gemm_int8.h"
#include "runtime/cpu/layernorm.h"
#include "runtime/cpu/ref_kern.h"
#include "runtime/cpu/softmax.h"
#include "core/threadpool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

td_status td_kern_pack_b(td_ctx *ctx, const void *b, td_dtype src_dtype, int64_t K, int64_t N, bool trans_b,
                         td_dtype dst_dtype, td_kern_packed **out) {
    *out = NULL;
    td_status st = TD_OK;
    float *tmp = NULL;
    const float *src = b;
    size_t n = (size_t)K * (size_t)N;
    if (K < 0 || N < 0 || (K && (size_t)N > SIZE_MAX / (size_t)K / sizeof(float)))
        return td_fail(ctx, TD_ERR_OVERFLOW, "weight matrix %lld x %lld is too large", (long long)K, (long long)N);
    if (src_dtype != TD_F32) { /* f16/bf16 weights: widen once, then pack */
        tmp = malloc(n ? n * sizeof *tmp : 1);
        if (!tmp)
            return td_fail_oom(ctx, n * sizeof *tmp, "weight conversion");
        if (src_dtype == TD_F16)
            td_f16_to_f32_array(b, tmp, n);
        else
            td_bf16_to_f32_array(b, tmp, n);
        src = tmp;
    }
    td_kern_packed *p = calloc(1, sizeof *p);
    if (!p) {
        st = td_fail_oom(ctx, sizeof *p, "packed weights");
        goto out;
    }
    st = td_gemm_pack_b(ctx, src, (size_t)K, (size_t)N, trans_b ? (size_t)K : (size_t)N, trans_b, dst_dtype, &p->g);
    if (st != TD_OK) {
        free(p);
        goto out;
    }
    p->K = K;
    p->N = N;
    p->nbytes = p->g->panels * (size_t)K * TD_GEMM_NR * td_dtype_size(dst_dtype);
    *out = p;
out:
    free(tmp);
    return st;
}

void td_kern_packed_free(void *pv) {
    td_kern_packed *p = pv;
    if (!p)
        return;
    td_gemm_packed_free(p->g);
    td_gemm_i8_packed_free(p->q);
    free(p);
}

void td_kern_gemm_packed(const float *A, int64_t lda, int64_t M, const td_kern_packed *B, const float *bias,
                         float *C, int64_t ldc, td_rt_env *env) {
    td_kern_gemm_packed_ep(A, lda, M, B, bias, TD_GEMM_ACT_NONE, NULL, C, ldc, env);
}

void td_kern_gemm_packed_ep(const float *A, int64_t lda, int64_t M, const td_kern_packed *B, const float *bias,
                            int act, const float *residual, float *C, int64_t ldc, td_rt_env *env) {
    /* never reached with env->reference: the reference backend packs no weights (backend_ref.c) */
    td_gemm_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.bias = bias;
    ep.act = (td_gemm_act)act;
    ep.residual = residual;
    ep.ldr = (size_t)ldc;
    td_gemm_run(env->pool, (size_t)M, A, (size_t)lda, B->g, C, (size_t)ldc, &ep);
}

size_t td_kern_gemm_scratch(int64_t K, int64_t N) { return td_gemm_pack_bytes((size_t)K, (size_t)N) + 64; }

void td_kern_gemm(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                  int64_t ldb, bool trans_b, float *C, int64_t ldc, void *pack_scratch, td_rt_env *env) {
    if (env->reference) {
        td_ref_gemm(false, trans_b, M, N, K, alpha, A, lda, B, ldb, NULL, C, ldc);
        return;
    }
    float *pack = (float *)(((uintptr_t)pack_scratch + 63) & ~(uintptr_t)63);
    td_gemm_pack_b_into(pack, B, (size_t)K, (size_t)N, (size_t)ldb, trans_b);
    td_gemm_packed p = {.K = (size_t)K, .N = (size_t)N, .panels = ((size_t)N + TD_GEMM_NR - 1) / TD_GEMM_NR,
                        .store = TD_F32, .data = pack};
    td_gemm_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.scale = alpha;
    td_gemm_run(env->pool, (size_t)M, A, (size_t)lda, &p, C, (size_t)ldc, &ep);
}

size_t td_kern_gemm_batched_scratch(int64_t K, int64_t N, int threads) {
    return ((td_gemm_pack_bytes((size_t)K, (size_t)N) + 63) / 64 * 64) * (size_t)(threads > 0 ? threads : 1) + 64;
}

typedef struct batched_job {
    int64_t M, N, K, lda, ldb, ldc, c_stride;
    const float *A, *B;
    const int64_t *a_off, *b_off;
    float *C;
    uint8_t *scratch;
    size_t slice;
} batched_job;

/* C (M, N) = A (M, K) @ B (K, N) for a few rows of A, B read in place: the rows of C are accumulated over k with
 * one FMA per element, in k order as the packed microkernel does, so packing B (a read and a write of all of it,
 * then a read of the copy) is not paid for M rows of work. Decode attention is this case: M = queries per kv
 * head, B = the K^T or V cache of a head. */
#define SMALL_M 4
static void small_m_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                         float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        memset(C + i * ldc, 0, (size_t)N * sizeof *C);
    for (int64_t k = 0; k < K; k++) {
        const float *b = B + k * ldb;
        for (int64_t i = 0; i < M; i++) {
            float a = A[i * lda + k], *c = C + i * ldc;
            int64_t n = 0;
#if defined(__AVX2__) && defined(__FMA__)
            __m256 av = _mm256_set1_ps(a);
            for (; n + 8 <= N; n += 8)
                _mm256_storeu_ps(c + n, _mm256_fmadd_ps(av, _mm256_loadu_ps(b + n), _mm256_loadu_ps(c + n)));
#endif
            for (; n < N; n++)
                c[n] = fmaf(a, b[n], c[n]);
        }
    }
}

static void batched_range(void *arg, size_t begin, size_t end, int thread) {
    const batched_job *j = arg;
    float *pack = (float *)(j->scratch + (size_t)thread * j->slice);
    if (j->M <= SMALL_M) {
        for (size_t i = begin; i < end; i++)
            small_m_gemm(j->M, j->N, j->K, j->A + j->a_off[i], j->lda, j->B + j->b_off[i], j->ldb,
                         j->C + (int64_t)i * j->c_stride, j->ldc);
        return;
    }
    for (size_t i = begin; i < end; i++) {
        td_gemm_pack_b_into(pack, j->B + j->b_off[i], (size_t)j->K, (size_t)j->N, (size_t)j->ldb, false);
        td_gemm_run_serial((size_t)j->M, j->A + j->a_off[i], (size_t)j->lda, pack, (size_t)j->K, (size_t)j->N,
                           j->C + (int64_t)i * j->c_stride, (size_t)j->ldc, NULL);
    }
}

void td_kern_gemm_batched(int64_t nb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const int64_t *a_off, const float *B, int64_t ldb, const int64_t *b_off, float *C,
                          int64_t ldc, int64_t c_stride, void *pack_scratch, td_rt_env *env) {
    if (env->reference) {
        td_ref_gemm_batched(nb, M, N, K, A, lda, a_off, B, ldb, b_off, C, ldc, c_stride);
        return;
    }
    batched_job j = {M, N, K, lda, ldb, ldc, c_stride, A, B, a_off, b_off, C,
                     (uint8_t *)(((uintptr_t)pack_scratch + 63) & ~(uintptr_t)63),
                     (td_gemm_pack_bytes((size_t)K, (size_t)N) + 63) / 64 * 64};
    td_parallel_for_n(env->pool, (size_t)nb, env->threads, batched_range, &j); /* clamps to the pool */
}

void td_kern_softmax_rows(float *x, int64_t rows, int64_t n, td_rt_env *env) {
    if (env->reference)
        td_ref_softmax_rows(x, rows, n);
    else
        td_cpu_softmax(env->pool, x, x, (size_t)rows, (size_t)n);
}

void td_kern_log_softmax_rows(float *x, int64_t rows, int64_t n, td_rt_env *env) {
    if (env->reference)
        td_ref_log_softmax_rows(x, rows, n);
    else
        td_cpu_log_softmax(env->pool, x, x, (size_t)rows, (size_t)n);
}

void td_kern_skip_layernorm_rows(const float *x, const float *skip, int64_t skip_rows, const float *bias,
                                 const float *gamma, const float *beta, float *y, float *sum, int64_t rows,
                                 int64_t n, float eps, float *mean, float *inv_std, td_rt_env *env) {
    if (env->reference) {
        td_ref_skip_layernorm_rows(x, skip, skip_rows, bias, gamma, beta, y, sum, rows, n, eps, mean, inv_std);
        return;
    }
    td_layernorm_args a;
    memset(&a, 0, sizeof a);
    a.rows = (size_t)rows;
    a.cols = (size_t)n;
    a.x = x;
    a.skip = skip;
    a.skip_rows = (size_t)skip_rows;
    a.bias = bias;
    a.gamma = gamma;
    a.beta = beta;
    a.eps = eps;
    a.out = y;
    a.sum_out = sum;
    a.mean_out = mean;
    a.inv_std_out = inv_std;
    td_cpu_layernorm(env->pool, &a);
}

/* Plain LayerNormalization is the skip form without skip, bias or sum output. */
void td_kern_layernorm_rows(const float *x, const float *gamma, const float *beta, float *y, int64_t rows, int64_t n,
                            float eps, float *mean, float *inv_std, td_rt_env *env) {
    td_kern_skip_layernorm_rows(x, NULL, 0, NULL, gamma, beta, y, NULL, rows, n, eps, mean, inv_std, env);
}

void td_kern_rmsnorm_rows(const float *x, const float *gamma, float *y, int64_t rows, int64_t n, float eps,
                          float *inv_std, td_rt_env *env) {
    td_ref_rmsnorm_rows(x, gamma, y, rows, n, eps, inv_std); /* memory-bound and small: no fast kernel yet */
}

static size_t mha_slice(int64_t S, int64_t T, int64_t D, int64_t Dv) {
    size_t pk = td_gemm_pack_bytes((size_t)D, (size_t)T), pv = td_gemm_pack_bytes((size_t)T, (size_t)Dv);
    size_t scores = (size_t)S * (size_t)T * sizeof(float);
    return (scores + 63) / 64 * 64 + ((pk > pv ? pk : pv) + 63) / 64 * 64;
}

size_t td_kern_mha_scratch(int64_t S, int64_t T, int64_t D, int64_t Dv, int threads) {
    return mha_slice(S, T, D, Dv) * (size_t)(threads > 0 ? threads : 1) + 64;
}

typedef struct mha_job {
    const td_kern_mha *a;
    uint8_t *scratch;
    size_t slice;
} mha_job;

static void mha_pairs(void *arg, size_t begin, size_t end, int thread) {
    const mha_job *j = arg;
    const td_kern_mha *a = j->a;
    int64_t S = a->S, T = a->T, D = a->D, Dv = a->Dv;
    float *scores = (float *)(j->scratch + (size_t)thread * j->slice);
    float *pack = (float *)((uint8_t *)scores + ((size_t)S * (size_t)T * sizeof(float) + 63) / 64 * 64);
    td_gemm_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.scale = a->scale;
    for (size_t p = begin; p < end; p++) {
        int64_t b = (int64_t)p / a->N, h = (int64_t)p % a->N;
        const float *q = a->q + b * a->q_bstride + h * D;
        int64_t kvh = a->kv_heads > 0 ? a->kv_heads : a->N, g = h / (a->N / kvh); /* K/V head of query head h */
        int64_t rows = a->kv_rows > 0 ? a->kv_rows : T;
        const float *k = a->k + (b * kvh + g) * rows * D, *v = a->v + (b * kvh + g) * rows * Dv;
        size_t ldk = (size_t)D, ldv = (size_t)Dv;
        if (a->kv_ld > 0) {
            k = a->k + b * T * a->kv_ld + g * D;
            v = a->v + b * T * a->kv_ld + g * Dv;
            ldk = ldv = (size_t)a->kv_ld;
        }
        float *o = a->out + b * a->o_bstride + h * Dv;
        /* scores = scale * Q K^T: K stored (T, D) is B transposed */
        td_gemm_pack_b_into(pack, k, (size_t)D, (size_t)T, ldk, true);
        td_gemm_run_serial((size_t)S, q, (size_t)a->ldq, pack, (size_t)D, (size_t)T, scores, (size_t)T, &ep);
        const float *m = a->mask ? a->mask + b * a->mask_bstride : NULL;
        const float *bi = a->bias ? a->bias + b * a->bias_bstride + h * a->bias_hstride : NULL;
        for (int64_t i = 0; i < S; i++) {
            float *row = scores + i * T;
            if (m) {
                const float *mr = a->mask_one_row ? m : m + i * T;
                for (int64_t t = 0; t < T; t++)
                    row[t] += mr[t];
            }
            if (bi)
                for (int64_t t = 0; t < T; t++)
                    row[t] += bi[i * T + t];
            td_cpu_softmax_row(row, row, (size_t)T);
        }
        td_gemm_pack_b_into(pack, v, (size_t)T, (size_t)Dv, ldv, false);
        td_gemm_run_serial((size_t)S, scores, (size_t)T, pack, (size_t)T, (size_t)Dv, o, (size_t)a->ldo, NULL);
    }
}

/* One decode token (S = 1) of grouped-query attention: the G = N / kv_heads query
 * heads that read kv head g are G adjacent D-wide blocks of the one query row, so
 * they run as a G-row GEMM against K/V packed once per (b, g) instead of once per
 * query head; the mask and bias row (no per-head bias) serve all G rows. */
static void mha_groups(void *arg, size_t begin, size_t end, int thread) {
    const mha_job *j = arg;
    const td_kern_mha *a = j->a;
    int64_t T = a->T, D = a->D, Dv = a->Dv, KV = a->kv_heads, G = a->N / KV;
    int64_t rows = a->kv_rows > 0 ? a->kv_rows : T;
    float *scores = (float *)(j->scratch + (size_t)thread * j->slice);
    float *pack = (float *)((uint8_t *)scores + ((size_t)G * (size_t)T * sizeof(float) + 63) / 64 * 64);
    td_gemm_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.scale = a->scale;
    for (size_t p = begin; p < end; p++) {
        int64_t b = (int64_t)p / KV, g = (int64_t)p % KV;
        const float *q = a->q + b * a->q_bstride + g * G * D;                  /* (G, D), rows D apart */
        const float *k = a->k + (b * KV + g) * rows * D, *v = a->v + (b * KV + g) * rows * Dv; /* (T, D) */
        float *o = a->out + b * a->o_bstride + g * G * Dv;                      /* (G, Dv), rows Dv apart */
        td_gemm_pack_b_into(pack, k, (size_t)D, (size_t)T, (size_t)D, true);
        td_gemm_run_serial((size_t)G, q, (size_t)D, pack, (size_t)D, (size_t)T, scores, (size_t)T, &ep);
        const float *m = a->mask ? a->mask + b * a->mask_bstride : NULL;
        const float *bi = a->bias ? a->bias + b * a->bias_bstride : NULL;
        for (int64_t i = 0; i < G; i++) {
            float *row = scores + i * T;
            if (m)
                for (int64_t t = 0; t < T; t++)
                    row[t] += m[t];
            if (bi)
                for (int64_t t = 0; t < T; t++)
                    row[t] += bi[t];
            td_cpu_softmax_row(row, row, (size_t)T);
        }
        td_gemm_pack_b_into(pack, v, (size_t)T, (size_t)Dv, (size_t)Dv, false);
        td_gemm_run_serial((size_t)G, scores, (size_t)T, pack, (size_t)T, (size_t)Dv, o, (size_t)Dv, NULL);
    }
}

void td_kern_mha_run(const td_kern_mha *a, void *scratch, td_rt_env *env) {
    if (env->reference) { /* one thread's slice holds the S x T scores */
        td_ref_mha(a, (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63));
        return;
    }
    if (a->S == 1 && a->kv_heads > 0 && a->kv_heads < a->N && a->kv_ld == 0 && (!a->bias || a->bias_hstride == 0)) {
        int64_t G = a->N / a->kv_heads;
        mha_job j = {a, (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63), mha_slice(G, a->T, a->D, a->Dv)};
        td_parallel_for_n(env->pool, (size_t)(a->B * a->kv_heads), env->threads, mha_groups, &j);
        return;
    }
    mha_job j = {a, (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63), mha_slice(a->S, a->T, a->D, a->Dv)};
    td_parallel_for_n(env->pool, (size_t)(a->B * a->N), env->threads, mha_pairs, &j);
}

void td_kern_unary_f32(td_unary op, const float *x, float *y, int64_t n, td_rt_env *env) {
    if (env->reference) {
        td_ref_unary(op, x, y, n);
        return;
    }
    td_cpu_unary(env->pool, op, x, y, (size_t)n);
}

void td_kern_bias_unary_f32(td_unary op, const float *x, const float *bias, float *y, int64_t rows, int64_t cols,
                            td_rt_env *env) {
    if (env->reference) {
        td_ref_bias_unary(op, x, bias, y, rows, cols);
        return;
    }
    td_cpu_bias_unary(env->pool, op, x, bias, y, (size_t)rows, (size_t)cols);
}

