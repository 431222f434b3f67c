/* The "reference" backend is independent of the optimized kernels, and it catches a wrong one.
 *
 * This executable is linked with --wrap for every entry point of the optimized kernels (packed GEMM,
 * GEMM packing, softmax, layernorm, vector activations, the broadcast binary kernel, the thread pool;
 * see CMakeLists.txt), so each call from the library lands in a counting wrapper here that then calls
 * the real kernel. No hook exists in the product: the wrappers are this test's link-time interposition.
 *
 * For every encoder fixture, as `convert` does it: export model.onnx (standard ops) and run it on the
 * reference backend, optimize a second export (fused contrib ops) and run that on the cpu backend.
 *   1. the reference run calls no optimized kernel (every counter stays 0), the cpu run does (> 0),
 *      so the wrappers do see the library's calls;
 *   2. the two runs agree within 1e-4 + 1e-4 |ref| on every output element;
 *   3. each optimized kernel sabotaged in turn (the first output element of every call off by 0.5) makes
 *      the cpu run disagree with the reference beyond that tolerance: a wrong kernel cannot pass
 *      (fixtures with per-token outputs; a 2-label head can squash such an error). */
#include "core/ctx.h"
#include "core/threadpool.h"
#include "export/export.h"
#include "onnx/ir.h"
#include "opt/optimize.h"
#include "runtime/cpu/activations.h"
#include "runtime/cpu/binary.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/layernorm.h"
#include "runtime/cpu/softmax.h"
#include "tdeploy/session.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- counting / sabotaging wrappers (ld --wrap) ---- */
enum { K_GEMM, K_GEMM_SERIAL, K_PACK, K_PACK_INTO, K_SOFTMAX, K_SOFTMAX_ROW, K_LOG_SOFTMAX, K_LAYERNORM, K_UNARY,
       K_BIAS_UNARY, K_BINARY, K_PARALLEL, K_COUNT };
static const char *const kernel_names[K_COUNT] = {
    "td_gemm_run", "td_gemm_run_serial", "td_gemm_pack_b", "td_gemm_pack_b_into", "td_cpu_softmax",
    "td_cpu_softmax_row", "td_cpu_log_softmax", "td_cpu_layernorm", "td_cpu_unary", "td_cpu_bias_unary",
    "td_cpu_binary", "td_parallel_for_n"};
static long calls[K_COUNT];
static int sabotage = -1; /* kernel whose output gets nudged, -1 = none */

static void nudge(int k, float *p) {
    if (sabotage == k && p)
        p[0] += 0.5f;
}

void __real_td_gemm_run(td_threadpool *pool, size_t M, const float *A, size_t lda, const td_gemm_packed *Bp, float *C,
                        size_t ldc, const td_gemm_epilogue *ep);
void __wrap_td_gemm_run(td_threadpool *pool, size_t M, const float *A, size_t lda, const td_gemm_packed *Bp, float *C,
                        size_t ldc, const td_gemm_epilogue *ep) {
    calls[K_GEMM]++;
    __real_td_gemm_run(pool, M, A, lda, Bp, C, ldc, ep);
    if (M && Bp->N)
        nudge(K_GEMM, C);
}
void __real_td_gemm_run_serial(size_t M, const float *A, size_t lda, const float *Bpacked, size_t K, size_t N, float *C,
                               size_t ldc, const td_gemm_epilogue *ep);
void __wrap_td_gemm_run_serial(size_t M, const float *A, size_t lda, const float *Bpacked, size_t K, size_t N, float *C,
                               size_t ldc, const td_gemm_epilogue *ep) {
    calls[K_GEMM_SERIAL]++;
    __real_td_gemm_run_serial(M, A, lda, Bpacked, K, N, C, ldc, ep);
    if (M && N)
        nudge(K_GEMM_SERIAL, C);
}
td_status __real_td_gemm_pack_b(td_ctx *ctx, const float *B, size_t K, size_t N, size_t ldb, bool trans_b,
                                td_dtype store, td_gemm_packed **out);
td_status __wrap_td_gemm_pack_b(td_ctx *ctx, const float *B, size_t K, size_t N, size_t ldb, bool trans_b,
                                td_dtype store, td_gemm_packed **out) {
    calls[K_PACK]++;
    return __real_td_gemm_pack_b(ctx, B, K, N, ldb, trans_b, store, out);
}
void __real_td_gemm_pack_b_into(float *dst, const float *B, size_t K, size_t N, size_t ldb, bool trans_b);
void __wrap_td_gemm_pack_b_into(float *dst, const float *B, size_t K, size_t N, size_t ldb, bool trans_b) {
    calls[K_PACK_INTO]++;
    __real_td_gemm_pack_b_into(dst, B, K, N, ldb, trans_b);
}
void __real_td_cpu_softmax(td_threadpool *pool, const float *x, float *y, size_t rows, size_t cols);
void __wrap_td_cpu_softmax(td_threadpool *pool, const float *x, float *y, size_t rows, size_t cols) {
    calls[K_SOFTMAX]++;
    __real_td_cpu_softmax(pool, x, y, rows, cols);
    if (rows && cols)
        nudge(K_SOFTMAX, y);
}
void __real_td_cpu_softmax_row(const float *x, float *y, size_t cols);
void __wrap_td_cpu_softmax_row(const float *x, float *y, size_t cols) {
    calls[K_SOFTMAX_ROW]++;
    __real_td_cpu_softmax_row(x, y, cols);
    if (cols)
        nudge(K_SOFTMAX_ROW, y);
}
void __real_td_cpu_log_softmax(td_threadpool *pool, const float *x, float *y, size_t rows, size_t cols);
void __wrap_td_cpu_log_softmax(td_threadpool *pool, const float *x, float *y, size_t rows, size_t cols) {
    calls[K_LOG_SOFTMAX]++;
    __real_td_cpu_log_softmax(pool, x, y, rows, cols);
}
void __real_td_cpu_layernorm(td_threadpool *pool, const td_layernorm_args *a);
void __wrap_td_cpu_layernorm(td_threadpool *pool, const td_layernorm_args *a) {
    calls[K_LAYERNORM]++;
    __real_td_cpu_layernorm(pool, a);
    if (a->rows && a->cols)
        nudge(K_LAYERNORM, a->out);
}
void __real_td_cpu_unary(td_threadpool *pool, td_unary op, const float *x, float *y, size_t n);
void __wrap_td_cpu_unary(td_threadpool *pool, td_unary op, const float *x, float *y, size_t n) {
    calls[K_UNARY]++;
    __real_td_cpu_unary(pool, op, x, y, n);
}
void __real_td_cpu_bias_unary(td_threadpool *pool, td_unary op, const float *x, const float *bias, float *y,
                              size_t rows, size_t cols);
void __wrap_td_cpu_bias_unary(td_threadpool *pool, td_unary op, const float *x, const float *bias, float *y,
                              size_t rows, size_t cols) {
    calls[K_BIAS_UNARY]++;
    __real_td_cpu_bias_unary(pool, op, x, bias, y, rows, cols);
}
td_status __real_td_cpu_binary(td_ctx *ctx, td_threadpool *pool, td_binop op, td_dtype dtype,
                               const td_bcast_plan *plan, const void *a, const void *b, void *out);
td_status __wrap_td_cpu_binary(td_ctx *ctx, td_threadpool *pool, td_binop op, td_dtype dtype,
                               const td_bcast_plan *plan, const void *a, const void *b, void *out) {
    calls[K_BINARY]++;
    return __real_td_cpu_binary(ctx, pool, op, dtype, plan, a, b, out);
}
void __real_td_parallel_for_n(td_threadpool *pool, size_t n, int max_workers, td_parallel_fn fn, void *arg);
void __wrap_td_parallel_for_n(td_threadpool *pool, size_t n, int max_workers, td_parallel_fn fn, void *arg) {
    calls[K_PARALLEL]++;
    __real_td_parallel_for_n(pool, n, max_workers, fn, arg);
}

static long total_calls(void) {
    long t = 0;
    for (int k = 0; k < K_COUNT; k++)
        t += calls[k];
    return t;
}

/* ---- the fixtures, as convert runs them ---- */
#define B 2
#define S 7
typedef struct feeds {
    int64_t ids[B * S], mask[B * S], types[B * S];
} feeds;

static void make_feeds(feeds *f) {
    for (int i = 0; i < B * S; i++) {
        f->ids[i] = 5 + (i * 37) % 700;
        f->mask[i] = (i / S == 1 && i % S >= S - 3) ? 0 : 1; /* row 1 padded at the end */
        f->types[i] = i % S >= 4;
    }
}

static bool bind(td_ctx *ctx, td_session *s, const feeds *f) {
    const int64_t shape[2] = {B, S};
    for (int i = 0; i < td_session_input_count(s); i++) {
        const char *n = td_session_input_name(s, i);
        const int64_t *d = strstr(n, "mask") ? f->mask : strstr(n, "type") ? f->types : f->ids;
        if (td_session_set_input(ctx, s, n, TD_DTYPE_INT64, 2, shape, d, sizeof f->ids) != TD_OK)
            return false;
    }
    return true;
}

static bool export_model(td_ctx *ctx, const char *dir, bool optimized, td_model **m) {
    td_export_options eo = {0};
    eo.model_dir = dir;
    eo.task = TD_TASK_AUTO;
    eo.opset = TD_EXPORT_OPSET_DEFAULT;
    eo.dtype = TD_F32;
    td_export_summary xs;
    if (td_export_build(ctx, &eo, m, &xs) != TD_OK)
        return false;
    if (!optimized)
        return true;
    td_opt_options oo;
    td_opt_options_default(&oo);
    oo.target = TD_OPT_TARGET_FUSED;
    td_opt_report rep;
    memset(&rep, 0, sizeof rep);
    return td_optimize(ctx, *m, &oo, &rep) == TD_OK;
}

/* Outputs of one run, copied (session memory is reused by the next run). */
typedef struct outs {
    int n;
    float *data[8];
    size_t numel[8];
} outs;

static void outs_free(outs *o) {
    for (int i = 0; i < o->n; i++)
        free(o->data[i]);
    o->n = 0;
}

static bool run_copy(td_ctx *ctx, td_session *s, const feeds *f, outs *o) {
    if (!bind(ctx, s, f) || td_session_run(ctx, s) != TD_OK)
        return false;
    o->n = td_session_output_count(s) < 8 ? td_session_output_count(s) : 8;
    for (int i = 0; i < o->n; i++) {
        td_session_output so;
        if (td_session_get_output(ctx, s, i, &so) != TD_OK || so.dtype != TD_DTYPE_FLOAT32)
            return false;
        o->numel[i] = so.nbytes / sizeof(float);
        o->data[i] = malloc(so.nbytes ? so.nbytes : 1);
        memcpy(o->data[i], so.data, so.nbytes);
    }
    return true;
}

/* Largest violation of |got - ref| <= 1e-4 + 1e-4 |ref| over all outputs, as (excess / tolerance); <= 1 passes. */
static double worst(const outs *got, const outs *ref) {
    double w = 0.0;
    for (int i = 0; i < ref->n && i < got->n; i++)
        for (size_t j = 0; j < ref->numel[i] && j < got->numel[i]; j++) {
            double r = ref->data[i][j], g = got->data[i][j], tol = 1e-4 + 1e-4 * fabs(r);
            double e = isnan(r) || isnan(g) ? INFINITY : fabs(g - r) / tol;
            if (e > w)
                w = e;
        }
    return w;
}

static void check_fixture(td_ctx *ctx, const char *root, const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/hf/%s", root, name);
    td_model *plain = NULL, *fused = NULL;
    td_session *ref = NULL, *cpu = NULL;
    outs r = {0}, c = {0};
    feeds f;
    make_feeds(&f);
    bool ok = export_model(ctx, dir, false, &plain) && export_model(ctx, dir, true, &fused);
    CHECK_MSG(ok, "%s: export/optimize: %s", name, td_error_message(ctx));
    if (!ok)
        goto out;

    td_session_options ro, co;
    td_session_options_init(&ro);
    ro.backend = "reference";
    ro.threads = 4; /* asked for threads: the reference backend still runs one */
    memset(calls, 0, sizeof calls);
    ok = td_session_create_model(ctx, plain, &ro, &ref) == TD_OK && run_copy(ctx, ref, &f, &r);
    CHECK_MSG(ok, "%s: reference run: %s", name, td_error_message(ctx));
    if (!ok)
        goto out;
    for (int k = 0; k < K_COUNT; k++)
        CHECK_MSG(calls[k] == 0, "%s: the reference backend called %s %ld times", name, kernel_names[k], calls[k]);

    td_session_options_init(&co);
    co.threads = 2;
    ok = td_session_create_model(ctx, fused, &co, &cpu) == TD_OK && run_copy(ctx, cpu, &f, &c);
    CHECK_MSG(ok, "%s: cpu run: %s", name, td_error_message(ctx));
    if (!ok)
        goto out;
    CHECK_MSG(calls[K_GEMM] > 0 && calls[K_LAYERNORM] > 0 && calls[K_SOFTMAX_ROW] > 0,
              "%s: the wrappers saw no optimized kernel call (gemm %ld, layernorm %ld, softmax %ld)", name,
              calls[K_GEMM], calls[K_LAYERNORM], calls[K_SOFTMAX_ROW]);
    double w = worst(&c, &r);
    CHECK_MSG(w <= 1.0, "%s: optimized cpu vs reference: error %.3g x the tolerance", name, w);

    /* a wrong optimized kernel is caught: each one sabotaged in turn. Only on fixtures with per-token
     * outputs: the tiny random 2-label heads of the *-seqcls fixtures squash some of these errors below
     * the tolerance (the same kernels are caught on the other fixtures). */
    const int victims[] = {K_GEMM, K_GEMM_SERIAL, K_LAYERNORM, K_SOFTMAX_ROW};
    for (size_t v = 0; !strstr(name, "seqcls") && v < sizeof victims / sizeof victims[0]; v++) {
        outs bad = {0};
        sabotage = victims[v];
        ok = run_copy(ctx, cpu, &f, &bad);
        sabotage = -1;
        CHECK_MSG(ok, "%s: sabotaged run: %s", name, td_error_message(ctx));
        double wb = worst(&bad, &r);
        CHECK_MSG(wb > 1.0, "%s: a nudged %s went unnoticed (error %.3g x the tolerance)", name,
                  kernel_names[victims[v]], wb);
        outs_free(&bad);
    }
    printf("%s: reference vs optimized cpu: worst %.3g x tolerance; %ld optimized kernel calls on the cpu run\n",
           name, w, total_calls());
out:
    outs_free(&r);
    outs_free(&c);
    td_session_free(ref);
    td_session_free(cpu);
    td_model_free(plain);
    td_model_free(fused);
}

int main(void) {
    const char *root = td_test_env("TD_FIXTURES", "tests/fixtures");
    td_ctx *ctx = td_ctx_new();
    const char *fixtures[] = {"bert-base", "bert-seqcls", "bert-qa", "bert-tokcls", "distilbert-seqcls",
                              "roberta-seqcls", "electra-base", "xlmr-base", "minilm-st"};
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++)
        check_fixture(ctx, root, fixtures[i]);
    td_ctx_free(ctx);
    return td_test_finish("test_ref_backend");
}
