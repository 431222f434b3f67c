/* GEMM driver: weight packing, cache blocking and the split over threads.
 *
 * Loop nest per thread (GotoBLAS/BLIS order, B already packed):
 *   for each K block of KC rows            (partial sums stay in C between blocks)
 *     for each M block of MC rows          (A block MC x KC stays in L2)
 *       for each NR panel of this thread   (panel block KC x NR stays in L2, read through L1)
 *         for each MR rows in the M block  -> microkernel
 * The epilogue runs in the microkernel on the last K block, while the tile is
 * still in registers. Threads split the (M blocks) x (panels) grid into
 * rectangles picked to balance the work. */
#include "runtime/cpu/gemm.h"

#include "core/checked.h"
#include "core/large_alloc.h"
#include "runtime/cpu/gemm_kernel.h"

#include <stdlib.h>
#include <string.h>

/* Largest K block. K is cut into equal blocks no longer than this (K = 3072 ->
 * 4 x 768, not 6 x 512 or 512 + 256 for K = 768): every block then does the
 * same work per C tile load/store, and a KC x NR panel block (192 KB at 768)
 * plus an MC x KC A block (384 KB) still fit the 1 MB L2 of the cores this was
 * tuned on (Zen 4; measured with bench/cpu/gemm_bench.c: 128 x 3072 x 768 went
 * from 101 to 107 GFLOP/s on one core, 768 x 768 unchanged). */
#ifndef TD_GEMM_KC
#define TD_GEMM_KC 768
#endif
#ifndef TD_GEMM_MC
#define TD_GEMM_MC 128
#endif

static size_t div_up(size_t a, size_t b) { return (a + b - 1) / b; }

size_t td_gemm_pack_bytes(size_t K, size_t N) {
    size_t n;
    if (!td_mul_size(div_up(N, TD_GEMM_NR) * TD_GEMM_NR, K, &n) || !td_mul_size(n, sizeof(float), &n))
        return SIZE_MAX;
    return n;
}

static float b_at(const float *B, size_t ldb, bool trans_b, size_t k, size_t n) {
    return trans_b ? B[n * ldb + k] : B[k * ldb + n];
}

void td_gemm_pack_b_into(float *dst, const float *B, size_t K, size_t N, size_t ldb, bool trans_b) {
    size_t panels = div_up(N, TD_GEMM_NR);
    for (size_t p = 0; p < panels; p++) {
        float *panel = dst + p * K * TD_GEMM_NR;
        size_t n0 = p * TD_GEMM_NR, nr = N - n0 < TD_GEMM_NR ? N - n0 : TD_GEMM_NR;
        if (trans_b) {
            /* rows of the stored (N, K) matrix are read contiguously */
            for (size_t j = 0; j < TD_GEMM_NR; j++)
                for (size_t k = 0; k < K; k++)
                    panel[k * TD_GEMM_NR + j] = j < nr ? B[(n0 + j) * ldb + k] : 0.0f;
        } else {
            for (size_t k = 0; k < K; k++) {
                memcpy(panel + k * TD_GEMM_NR, B + k * ldb + n0, nr * sizeof(float));
                memset(panel + k * TD_GEMM_NR + nr, 0, (TD_GEMM_NR - nr) * sizeof(float));
            }
        }
    }
}

td_status td_gemm_pack_b(td_ctx *ctx, const float *B, size_t K, size_t N, size_t ldb, bool trans_b, td_dtype store,
                         td_gemm_packed **out) {
    *out = NULL;
    if (store != TD_F32 && store != TD_F16 && store != TD_BF16)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "GEMM weight packing: storage type %s not supported (use float, "
                       "float16 or bfloat16)", td_dtype_name(store));
    if (ldb < (trans_b ? K : N) && (trans_b ? N : K) > 1)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "GEMM weight packing: row stride %zu shorter than row length %zu",
                       ldb, trans_b ? K : N);
    size_t panels = div_up(N, TD_GEMM_NR), elems, bytes;
    if (!td_mul_size(panels * TD_GEMM_NR, K, &elems) || !td_mul_size(elems, td_dtype_size(store), &bytes) ||
        !td_add_size(bytes, 63, &bytes))
        return td_fail(ctx, TD_ERR_OVERFLOW, "GEMM weight packing: K=%zu x N=%zu overflows the address space", K, N);
    bytes = bytes / 64 * 64;
    td_gemm_packed *p = calloc(1, sizeof *p);
    void *data = td_large_alloc(bytes); /* streamed by every GEMM: huge pages */
    if (!p || !data) {
        free(p);
        free(data);
        return td_fail_oom(ctx, bytes, "packed GEMM weights");
    }
    p->K = K;
    p->N = N;
    p->panels = panels;
    p->store = store;
    p->data = data;
    if (store == TD_F32) {
        td_gemm_pack_b_into(data, B, K, N, ldb, trans_b);
    } else {
        uint16_t *h = data;
        for (size_t pi = 0; pi < panels; pi++)
            for (size_t k = 0; k < K; k++)
                for (size_t j = 0; j < TD_GEMM_NR; j++) {
                    size_t n = pi * TD_GEMM_NR + j;
                    float v = n < N ? b_at(B, ldb, trans_b, k, n) : 0.0f;
                    h[(pi * K + k) * TD_GEMM_NR + j] = store == TD_F16 ? td_f32_to_f16(v) : td_f32_to_bf16(v);
                }
    }
    *out = p;
    return TD_OK;
}

void td_gemm_packed_free(td_gemm_packed *p) {
    if (!p)
        return;
    free(p->data);
    free(p);
}

/* One rectangle of the product: rows [m0, m1), panels [p0, p1). */
typedef struct {
    size_t M, N, K;
    const float *A;
    size_t lda;
    const void *B; /* packed panels */
    size_t esize;  /* bytes per packed element */
    td_gemm_kernel_fn kernel;
    float *C;
    size_t ldc;
    td_gemm_epilogue ep;
    size_t kc; /* K block length (see TD_GEMM_KC) */
} gemm_job;

/* Equal K blocks of at most TD_GEMM_KC. */
static size_t k_block(size_t K) {
    size_t nk = K ? div_up(K, TD_GEMM_KC) : 1;
    return K ? div_up(K, nk) : 1;
}

static void run_block(const gemm_job *j, size_t m0, size_t m1, size_t p0, size_t p1) {
    const char *Bb = j->B;
    if (m0 >= m1 || p0 >= p1)
        return;
    size_t k0 = 0;
    do { /* runs once for K == 0 so the epilogue still writes C */
        size_t kc = j->K - k0 < j->kc ? j->K - k0 : j->kc;
        bool first = k0 == 0, last = k0 + kc >= j->K;
        for (size_t mb = m0; mb < m1; mb += TD_GEMM_MC) {
            size_t me = m1 - mb < TD_GEMM_MC ? m1 : mb + TD_GEMM_MC;
            for (size_t p = p0; p < p1; p++) {
                size_t n0 = p * TD_GEMM_NR, nr = j->N - n0 < TD_GEMM_NR ? j->N - n0 : TD_GEMM_NR;
                const void *Bp = Bb + ((p * j->K + k0) * TD_GEMM_NR) * j->esize;
                for (size_t i = mb; i < me; i += TD_GEMM_MR) {
                    size_t mr = me - i < TD_GEMM_MR ? me - i : TD_GEMM_MR;
                    td_gemm_tile_epilogue te = {
                        .scale = j->ep.scale == 0.0f ? 1.0f : j->ep.scale,
                        .bias = j->ep.bias ? j->ep.bias + n0 : NULL,
                        .act = (int)j->ep.act,
                        .residual = j->ep.residual ? j->ep.residual + i * j->ep.ldr + n0 : NULL,
                        .ldr = j->ep.ldr,
                    };
                    /* A is NULL when K == 0 (nothing to read): no pointer arithmetic on it then */
                    const float *a = j->A ? j->A + i * j->lda + k0 : NULL;
                    j->kernel(mr, nr, kc, a, j->lda, Bp, j->C + i * j->ldc + n0, j->ldc, first, last, &te);
                }
            }
        }
        k0 += kc;
    } while (k0 < j->K);
}

/* Thread t of tn x tm gets panel slice t % tn and M slice t / tn. */
typedef struct {
    const gemm_job *job;
    size_t tn, tm, mblocks, panels;
} split_job;

static void slice(size_t n, size_t parts, size_t idx, size_t *b, size_t *e) {
    size_t q = n / parts, r = n % parts;
    *b = idx * q + (idx < r ? idx : r);
    *e = *b + q + (idx < r ? 1 : 0);
}

static void split_worker(void *arg, size_t begin, size_t end, int thread) {
    const split_job *s = arg;
    for (size_t t = begin; t < end; t++) {
        size_t pb, pe, mb, me;
        slice(s->panels, s->tn, t % s->tn, &pb, &pe);
        slice(s->mblocks, s->tm, t / s->tn, &mb, &me);
        size_t m0 = mb * TD_GEMM_MR, m1 = me * TD_GEMM_MR;
        if (m1 > s->job->M)
            m1 = s->job->M;
        run_block(s->job, m0, m1, pb, pe);
    }
}

static void run_job(td_threadpool *pool, const gemm_job *j) {
    size_t panels = div_up(j->N, TD_GEMM_NR), mblocks = div_up(j->M, TD_GEMM_MR);
    if (j->M == 0 || j->N == 0)
        return;
    size_t threads = (size_t)td_threadpool_threads(pool);
    /* tiny products are not worth waking a thread for */
    if ((double)j->M * (double)j->N * (double)(j->K + 1) < 32768.0)
        threads = 1;
    size_t best_tn = 1, best_tm = 1;
    double best = -1.0;
    for (size_t tn = 1; tn <= threads; tn++) {
        if (threads % tn)
            continue;
        size_t tm = threads / tn;
        /* work of the largest rectangle, panels weigh NR/MR times an M block */
        double w = (double)div_up(panels, tn) * TD_GEMM_NR * (double)div_up(mblocks, tm) * TD_GEMM_MR;
        /* prefer splitting N on ties: each thread then reads only its share of B */
        if (best < 0 || w < best) {
            best = w;
            best_tn = tn;
            best_tm = tm;
        }
    }
    /* Cut the rectangles finer (up to 4x) so the pool can hand a stalled
     * thread's share to the others on a busy machine; every piece keeps >= 2
     * panels and >= 4 M blocks. Cutting N re-reads A (M x K) once more per cut,
     * cutting M re-reads B (K x N): cut the side whose re-read is smaller. */
    bool m_first = j->M > j->N;
    if (threads > 1)
        for (int g = 0; g < 2; g++) {
            bool can_n = panels >= best_tn * 2 * 2, can_m = mblocks >= best_tm * 2 * 4;
            if (can_m && (m_first || !can_n))
                best_tm *= 2;
            else if (can_n)
                best_tn *= 2;
        }
    split_job s = {.job = j, .tn = best_tn, .tm = best_tm, .mblocks = mblocks, .panels = panels};
    td_parallel_for_n(pool, best_tn * best_tm, (int)threads, split_worker, &s);
}

static td_gemm_kernel_fn kernel_for(td_dtype store) {
    return store == TD_F16 ? td_gemm_kernel_f16 : store == TD_BF16 ? td_gemm_kernel_bf16 : td_gemm_kernel_f32;
}

void td_gemm_run(td_threadpool *pool, size_t M, const float *A, size_t lda, const td_gemm_packed *Bp, float *C,
                 size_t ldc, const td_gemm_epilogue *ep) {
    gemm_job j = {.M = M, .N = Bp->N, .K = Bp->K, .A = A, .lda = lda, .B = Bp->data,
                  .esize = td_dtype_size(Bp->store), .kernel = kernel_for(Bp->store), .C = C, .ldc = ldc,
                  .kc = k_block(Bp->K)};
    if (ep)
        j.ep = *ep;
    run_job(pool, &j);
}

void td_gemm_run_serial(size_t M, const float *A, size_t lda, const float *Bpacked, size_t K, size_t N, float *C,
                        size_t ldc, const td_gemm_epilogue *ep) {
    gemm_job j = {.M = M, .N = N, .K = K, .A = A, .lda = lda, .B = Bpacked, .esize = sizeof(float),
                  .kernel = td_gemm_kernel_f32, .C = C, .ldc = ldc, .kc = k_block(K)};
    if (ep)
        j.ep = *ep;
    if (M && N)
        run_block(&j, 0, M, 0, div_up(N, TD_GEMM_NR));
}

/* copies x (packed (K, N) rounded up to 64 bytes); *stride_floats = floats per copy. */
static td_status alloc_pack(td_ctx *ctx, size_t K, size_t N, size_t copies, float **out, size_t *stride_floats) {
    size_t bytes = td_gemm_pack_bytes(K, N);
    if (bytes != SIZE_MAX && td_add_size(bytes, 63, &bytes))
        bytes = bytes / 64 * 64;
    else
        bytes = SIZE_MAX;
    *stride_floats = bytes / sizeof(float);
    if (bytes == SIZE_MAX || !td_mul_size(bytes, copies, &bytes))
        return td_fail(ctx, TD_ERR_OVERFLOW, "GEMM: packing K=%zu x N=%zu overflows the address space", K, N);
    *out = aligned_alloc(64, bytes ? bytes : 64);
    if (!*out)
        return td_fail_oom(ctx, bytes, "GEMM packing buffer");
    return TD_OK;
}

td_status td_gemm(td_ctx *ctx, td_threadpool *pool, size_t M, size_t N, size_t K, const float *A, size_t lda,
                  const float *B, size_t ldb, bool trans_b, float *C, size_t ldc, const td_gemm_epilogue *ep) {
    if (M == 0 || N == 0)
        return TD_OK;
    float *buf = NULL;
    size_t per;
    TD_TRY(alloc_pack(ctx, K, N, 1, &buf, &per));
    td_gemm_pack_b_into(buf, B, K, N, ldb, trans_b);
    td_gemm_packed p = {.K = K, .N = N, .panels = div_up(N, TD_GEMM_NR), .store = TD_F32, .data = buf};
    td_gemm_run(pool, M, A, lda, &p, C, ldc, ep);
    free(buf);
    return TD_OK;
}

typedef struct {
    size_t M, N, K;
    const float *A;
    size_t lda, stride_a;
    const float *B;
    size_t ldb, stride_b;
    bool trans_b;
    float *C;
    size_t ldc, stride_c;
    const td_gemm_epilogue *ep;
    float *scratch;
    size_t scratch_floats; /* per thread */
} batched_job;

static void batched_worker(void *arg, size_t begin, size_t end, int thread) {
    const batched_job *b = arg;
    float *pack = b->scratch + (size_t)thread * b->scratch_floats;
    for (size_t i = begin; i < end; i++) {
        td_gemm_epilogue ep = {0};
        if (b->ep) {
            ep = *b->ep;
            if (ep.residual)
                ep.residual += i * b->stride_c;
        }
        td_gemm_pack_b_into(pack, b->B + i * b->stride_b, b->K, b->N, b->ldb, b->trans_b);
        td_gemm_run_serial(b->M, b->A + i * b->stride_a, b->lda, pack, b->K, b->N, b->C + i * b->stride_c, b->ldc,
                           &ep);
    }
}

td_status td_gemm_batched(td_ctx *ctx, td_threadpool *pool, size_t batch, size_t M, size_t N, size_t K,
                          const float *A, size_t lda, size_t stride_a, const float *B, size_t ldb, size_t stride_b,
                          bool trans_b, float *C, size_t ldc, size_t stride_c, const td_gemm_epilogue *ep) {
    if (batch == 0 || M == 0 || N == 0)
        return TD_OK;
    size_t threads = (size_t)td_threadpool_threads(pool);
    if (batch < threads) {
        /* too few items to go around: parallelize inside each product instead */
        for (size_t i = 0; i < batch; i++) {
            td_gemm_epilogue e = {0};
            if (ep) {
                e = *ep;
                if (e.residual)
                    e.residual += i * stride_c;
            }
            TD_TRY(td_gemm(ctx, pool, M, N, K, A + i * stride_a, lda, B + i * stride_b, ldb, trans_b,
                           C + i * stride_c, ldc, &e));
        }
        return TD_OK;
    }
    size_t per;
    float *scratch = NULL;
    TD_TRY(alloc_pack(ctx, K, N, threads, &scratch, &per)); /* one 64-byte aligned slice per thread */
    batched_job b = {.M = M, .N = N, .K = K, .A = A, .lda = lda, .stride_a = stride_a, .B = B, .ldb = ldb,
                     .stride_b = stride_b, .trans_b = trans_b, .C = C, .ldc = ldc, .stride_c = stride_c, .ep = ep,
                     .scratch = scratch, .scratch_floats = per};
    td_parallel_for(pool, batch, batched_worker, &b);
    free(scratch);
    return TD_OK;
}
