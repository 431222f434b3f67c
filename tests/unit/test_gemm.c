/* GEMM vs a naive double-precision reference on many odd shapes: packed and
 * unpacked B, transposed or not, bias, every epilogue, residual, scale, padded
 * strides, 1 and 2 threads, fp32/fp16/bf16 weight storage, and batched products. */
#include "core/threadpool.h"
#include "runtime/cpu/gemm.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float uniform(void) { return (float)(next_u32() % 2000001) / 1000000.0f - 1.0f; }
static size_t pick(size_t lo, size_t hi) { return lo + next_u32() % (hi - lo + 1); }

static float *rand_floats(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = uniform();
    return p;
}

static double act_ref(td_gemm_act act, double v) {
    switch (act) {
    case TD_GEMM_ACT_RELU: return v > 0 ? v : 0;
    case TD_GEMM_ACT_GELU_ERF: return 0.5 * v * erfc(-v / sqrt(2.0));
    case TD_GEMM_ACT_GELU_TANH: return 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    default: return v;
    }
}

static double round_w(td_dtype store, float w) {
    if (store == TD_F16)
        return td_f16_to_f32(td_f32_to_f16(w));
    if (store == TD_BF16)
        return td_bf16_to_f32(td_f32_to_bf16(w));
    return w;
}

typedef struct {
    size_t M, N, K, lda, ldb, ldc, ldr;
    bool trans_b, packed;
    td_dtype store;
    td_gemm_epilogue ep;
    int threads;
} gemm_case;

static double worst_rel[3]; /* by storage: f32, f16, bf16 */

static int store_idx(td_dtype s) { return s == TD_F32 ? 0 : s == TD_F16 ? 1 : 2; }

static void run_case(td_threadpool *pools[3], const gemm_case *c) {
    size_t brows = c->trans_b ? c->N : c->K, bcols = c->trans_b ? c->K : c->N;
    float *A = rand_floats(c->M * c->lda), *B = rand_floats(brows * c->ldb);
    float *C = rand_floats(c->M * c->ldc), *R = rand_floats(c->M * c->ldr);
    float *bias = rand_floats(c->N);
    size_t c_elems = c->M * c->ldc;
    float *C0 = malloc((c_elems ? c_elems : 1) * sizeof(float));
    memcpy(C0, C, c->M * c->ldc * sizeof(float));
    td_gemm_epilogue ep = c->ep;
    if (ep.bias)
        ep.bias = bias;
    if (ep.residual) {
        ep.residual = R;
        ep.ldr = c->ldr;
    }
    td_threadpool *pool = pools[c->threads];
    td_status st;
    if (c->packed) {
        td_gemm_packed *P = NULL;
        st = td_gemm_pack_b(NULL, B, c->K, c->N, c->ldb, c->trans_b, c->store, &P);
        CHECK(st == TD_OK);
        if (st == TD_OK)
            td_gemm_run(pool, c->M, A, c->lda, P, C, c->ldc, &ep);
        td_gemm_packed_free(P);
    } else {
        st = td_gemm(NULL, pool, c->M, c->N, c->K, A, c->lda, B, c->ldb, c->trans_b, C, c->ldc, &ep);
        CHECK(st == TD_OK);
    }
    double scale = ep.scale == 0.0f ? 1.0 : ep.scale;
    bool ok = true;
    for (size_t i = 0; i < c->M && ok; i++) {
        for (size_t j = 0; j < c->ldc; j++) {
            double got = C[i * c->ldc + j];
            if (j >= c->N) { /* padding columns must be untouched */
                if (got != C0[i * c->ldc + j]) {
                    CHECK_MSG(0, "M=%zu N=%zu K=%zu: column %zu past N was written", c->M, c->N, c->K, j);
                    ok = false;
                    break;
                }
                continue;
            }
            /* ref: the exact weights; ref_r: the weights rounded to the storage type. The
             * product must match ref_r to fp32 accuracy and ref within the storage precision. */
            double acc = 0, acc_r = 0, mag = 0;
            for (size_t k = 0; k < c->K; k++) {
                double a = A[i * c->lda + k];
                float w = c->trans_b ? B[j * c->ldb + k] : B[k * c->ldb + j];
                acc += a * w;
                acc_r += a * round_w(c->store, w);
                mag += fabs(a * w);
            }
            acc *= scale;
            acc_r *= scale;
            mag *= fabs(scale);
            if (ep.bias) {
                acc += bias[j];
                acc_r += bias[j];
                mag += fabs(bias[j]);
            }
            double ref = act_ref(ep.act, acc), ref_r = act_ref(ep.act, acc_r);
            if (ep.residual) {
                ref += R[i * c->ldr + j];
                ref_r += R[i * c->ldr + j];
                mag += fabs(R[i * c->ldr + j]);
            }
            /* error of a K-term fp32 dot product: ~sqrt(K) eps (random rounding) times sum |terms| */
            double bound_r = 2e-6 * (mag + 1e-3) * sqrt((double)c->K + 1);
            double bound = c->store == TD_F32 ? bound_r : c->store == TD_F16 ? 1e-3 * (mag + 1e-3)
                                                                             : 8e-3 * (mag + 1e-3);
            double err = fabs(got - ref), err_r = fabs(got - ref_r);
            double rel = err / (mag + 1e-3);
            if (rel > worst_rel[store_idx(c->store)])
                worst_rel[store_idx(c->store)] = rel;
            if (!(err <= bound) || !(err_r <= bound_r)) {
                CHECK_MSG(0, "M=%zu N=%zu K=%zu trans=%d packed=%d store=%s act=%d bias=%d res=%d threads=%d: "
                          "C[%zu,%zu]=%.9g want %.9g (exact weights, err %.3g, bound %.3g) / %.9g (rounded "
                          "weights, err %.3g, bound %.3g)", c->M, c->N, c->K, c->trans_b, c->packed,
                          td_dtype_name(c->store), ep.act, !!ep.bias, !!ep.residual, c->threads, i, j, got, ref, err,
                          bound, ref_r, err_r, bound_r);
                ok = false;
                break;
            }
        }
    }
    CHECK(ok);
    (void)bcols;
    free(A), free(B), free(C), free(C0), free(R), free(bias);
}

static void random_case(td_threadpool *pools[3], size_t maxdim) {
    gemm_case c = {0};
    c.M = pick(1, maxdim);
    c.N = pick(1, maxdim);
    c.K = pick(1, maxdim);
    c.trans_b = next_u32() & 1;
    c.packed = next_u32() % 4 != 0;
    c.store = !c.packed ? TD_F32 : (const td_dtype[]){TD_F32, TD_F32, TD_F16, TD_BF16}[next_u32() % 4];
    c.lda = c.K + pick(0, 3);
    c.ldb = (c.trans_b ? c.K : c.N) + pick(0, 3);
    c.ldc = c.N + pick(0, 3);
    c.ldr = c.N + pick(0, 2);
    c.ep.bias = next_u32() & 1 ? (const float *)1 : NULL;     /* replaced by run_case */
    c.ep.residual = next_u32() % 3 == 0 ? (const float *)1 : NULL;
    c.ep.act = (td_gemm_act)(next_u32() % 4);
    c.ep.scale = next_u32() % 3 == 0 ? 0.125f : 0.0f;
    c.threads = 1 + (int)(next_u32() & 1);
    run_case(pools, &c);
}

static void test_edges(td_threadpool *pools[3]) {
    /* K == 0: C = epilogue(bias); M == 0 / N == 0: nothing written */
    float bias[5] = {-1, 0.5f, 2, -3, 0}, C[10];
    td_gemm_epilogue ep = {.bias = bias, .act = TD_GEMM_ACT_RELU};
    CHECK(td_gemm(NULL, pools[2], 2, 5, 0, NULL, 0, NULL, 5, false, C, 5, &ep) == TD_OK);
    for (int i = 0; i < 10; i++)
        CHECK(C[i] == (bias[i % 5] > 0 ? bias[i % 5] : 0.0f));
    float D[4] = {7, 7, 7, 7};
    CHECK(td_gemm(NULL, pools[2], 0, 4, 3, NULL, 3, NULL, 4, false, D, 4, NULL) == TD_OK);
    CHECK(td_gemm(NULL, pools[2], 1, 0, 3, NULL, 3, NULL, 0, false, D, 4, NULL) == TD_OK);
    CHECK(D[0] == 7 && D[3] == 7);
    td_gemm_packed *P = NULL;
    CHECK(td_gemm_pack_b(NULL, bias, 1, 5, 5, false, TD_I8, &P) == TD_ERR_UNSUPPORTED && P == NULL);
    /* every (M, N, K) in 1..67 on a coarse lattice plus the tile boundaries */
    static const size_t dims[] = {1, 2, 7, 8, 9, 15, 16, 17, 47, 48, 49, 63, 64, 65, 67};
    for (size_t a = 0; a < sizeof dims / sizeof *dims; a++)
        for (size_t b = 0; b < sizeof dims / sizeof *dims; b += 2) {
            gemm_case c = {.M = dims[a], .N = dims[b], .K = dims[(a + b) % 15], .packed = true, .store = TD_F32,
                           .threads = (int)(1 + (a & 1))};
            c.lda = c.K;
            c.ldb = c.N;
            c.ldc = c.N;
            c.ldr = c.N;
            run_case(pools, &c);
        }
    /* long K crosses the K blocking (partial sums kept in C between blocks) */
    for (int t = 1; t <= 2; t++) {
        gemm_case c = {.M = 19, .N = 100, .K = 1300, .lda = 1301, .ldb = 1300, .ldc = 101, .ldr = 100,
                       .trans_b = true, .packed = true, .store = TD_F32, .threads = t};
        c.ep.bias = (const float *)1;
        c.ep.residual = (const float *)1;
        c.ep.act = TD_GEMM_ACT_GELU_ERF;
        run_case(pools, &c);
    }
}

/* Every register-tile shape the microkernel can get (mr 1..MR rows x nr 1..NR+1
 * columns, so the column tails, the full tile and a second panel are all
 * used) with every storage type and every epilogue, bias and residual on and
 * off, stored into a padded C whose padding must stay untouched. Whatever tile
 * the build compiled in (AVX-512 8 x 48, AVX2 6 x 16, portable 8 x 48). */
static void test_tiles(td_threadpool *pools[3]) {
    static const td_dtype stores[] = {TD_F32, TD_F16, TD_BF16};
    for (size_t mr = 1; mr <= TD_GEMM_MR; mr++)
        for (size_t nr = 1; nr <= TD_GEMM_NR + 1; nr++)
            for (int st = 0; st < 3; st++)
                for (int act = 0; act < 4; act++) {
                    gemm_case c = {.M = mr, .N = nr, .K = 5 + nr % 3, .packed = true, .store = stores[st],
                                   .threads = 1, .trans_b = (nr & 1) != 0};
                    c.lda = c.K + 1;
                    c.ldb = (c.trans_b ? c.K : c.N) + 1;
                    c.ldc = c.N + 3;
                    c.ldr = c.N + 2;
                    c.ep.act = (td_gemm_act)act;
                    c.ep.bias = (mr + (size_t)act) & 1 ? (const float *)1 : NULL;
                    c.ep.residual = (nr + (size_t)st) & 1 ? (const float *)1 : NULL;
                    c.ep.scale = act == 2 ? 0.25f : 0.0f;
                    run_case(pools, &c);
                }
    /* the same tile shapes across two K blocks (partial sums reloaded from C) */
    for (size_t mr = 1; mr <= TD_GEMM_MR; mr++)
        for (size_t nr = 1; nr <= TD_GEMM_NR + 1; nr += 3) {
            gemm_case c = {.M = mr, .N = nr, .K = 1000, .packed = true, .store = TD_F32, .threads = 1};
            c.lda = c.K;
            c.ldb = c.N;
            c.ldc = c.N + 1;
            c.ldr = c.N;
            c.ep.bias = (const float *)1;
            c.ep.residual = (const float *)1;
            c.ep.act = TD_GEMM_ACT_GELU_TANH;
            run_case(pools, &c);
        }
}

static void test_batched(td_threadpool *pools[3]) {
    /* (batch, M, K) @ (batch, K, N) and Q @ K^T with row strides of an interleaved (seq, heads*dim) layout */
    for (int t = 1; t <= 2; t++)
        for (int trans = 0; trans <= 1; trans++) {
            size_t batch = 3 + (size_t)t, M = 13, N = 29, K = 24, heads = batch;
            size_t lda = heads * K, ldb = trans ? heads * K : heads * N, ldc = N + 1;
            float *A = rand_floats(M * lda), *B = rand_floats((trans ? N : K) * ldb);
            float *C = rand_floats(batch * M * ldc);
            td_gemm_epilogue ep = {.scale = 0.5f};
            CHECK(td_gemm_batched(NULL, pools[t], batch, M, N, K, A, lda, K, B, ldb, trans ? K : N, trans, C, ldc,
                                  M * ldc, &ep) == TD_OK);
            double worst = 0;
            for (size_t h = 0; h < batch; h++)
                for (size_t i = 0; i < M; i++)
                    for (size_t j = 0; j < N; j++) {
                        double acc = 0;
                        for (size_t k = 0; k < K; k++) {
                            double b = trans ? B[j * ldb + h * K + k] : B[k * ldb + h * N + j];
                            acc += (double)A[i * lda + h * K + k] * b;
                        }
                        double e = fabs(C[h * M * ldc + i * ldc + j] - 0.5 * acc);
                        worst = e > worst ? e : worst;
                    }
            CHECK_MSG(worst < 1e-5, "batched trans=%d threads=%d: max abs error %g", trans, t, worst);
            free(A), free(B), free(C);
        }
}

int main(void) {
    td_threadpool *pools[3] = {NULL, NULL, NULL};
    CHECK(td_threadpool_create(NULL, 1, &pools[1]) == TD_OK);
    CHECK(td_threadpool_create(NULL, 2, &pools[2]) == TD_OK);
    test_edges(pools);
    test_tiles(pools);
    test_batched(pools);
    for (int i = 0; i < 400; i++)
        random_case(pools, 67);
    for (int i = 0; i < 12; i++) /* a few bigger ones so the M/N thread split and M blocking are used */
        random_case(pools, 300);
    printf("max error / sum|a*b| vs exact fp32 weights: f32 %.3g, f16 weights %.3g, bf16 weights %.3g\n", worst_rel[0], worst_rel[1],
           worst_rel[2]);
    td_threadpool_free(pools[1]);
    td_threadpool_free(pools[2]);
    return td_test_finish("test_gemm");
}
