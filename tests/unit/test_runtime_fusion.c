/* Plan-time GEMM epilogue fusion (runtime/cpu/backend_cpu.c): MatMul ->
 * BiasGelu / Gelu / FastGelu run as one GEMM with bias + activation in the
 * epilogue; MatMul -> SkipLayerNormalization adds the residual in the epilogue. Each case runs the same graph twice: once fusable, once with the
 * MatMul output also a graph output (which forbids fusion, so the two nodes run
 * separately), and checks that the fused session really fused, that both give
 * the same numbers, and that both match a double-precision reference. Shapes are
 * odd (M, N, K not multiples of the 8 x 48 tile, K above one K block), the input
 * has a batch dim, and sessions run with 1 and 2 threads (and bf16 weight storage). */
#include "onnx/ir.h"
#include "tdeploy/session.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rng = 12345u;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static td_value *val(td_graph *g, const char *name) {
    td_value *v = NULL;
    CHECK(td_graph_get_value(NULL, g, name, &v) == TD_OK);
    return v;
}

static void init_f32(td_graph *g, td_value *v, int rank, const int64_t *dims, const float *data, size_t n) {
    td_tensor *t = NULL;
    CHECK(td_tensor_new_copy(NULL, v->name, TD_F32, rank, dims, data, n * sizeof(float), &t) == TD_OK);
    CHECK(td_graph_set_initializer(NULL, g, v, t) == TD_OK);
}

/* y = op(MatMul(x, W) [, b])   x: (batch, seq, K)  W: (K, N)  b: (N); with
 * expose_mm the MatMul output is a second graph output. */
static td_model *build(const char *op, bool with_bias, size_t K, size_t N, const float *W, const float *b,
                       bool expose_mm) {
    td_model *m = td_model_new();
    td_model_set_opset(NULL, m, "", 17);
    td_model_set_opset(NULL, m, "com.microsoft", 1);
    td_graph *g = m->graph;
    td_value *x = val(g, "x"), *w = val(g, "W"), *bv = val(g, "b"), *mm = val(g, "mm"), *y = val(g, "y");
    const char *params[3] = {"batch", "seq", NULL};
    int64_t xd[3] = {-1, -1, (int64_t)K}, wd[2] = {(int64_t)K, (int64_t)N}, bd[1] = {(int64_t)N};
    CHECK(td_value_set_tensor_type(NULL, x, TD_F32, 3, xd, params) == TD_OK);
    CHECK(td_graph_add_input(NULL, g, x) == TD_OK);
    init_f32(g, w, 2, wd, W, K * N);
    td_node *n = NULL;
    CHECK(td_graph_add_node(NULL, g, "MatMul", "", "mm", (td_value *[]){x, w}, 2, &mm, 1, &n) == TD_OK);
    if (with_bias) {
        init_f32(g, bv, 1, bd, b, N);
        CHECK(td_graph_add_node(NULL, g, op, "com.microsoft", "act", (td_value *[]){mm, bv}, 2, &y, 1, &n) == TD_OK);
    } else {
        CHECK(td_graph_add_node(NULL, g, op, "com.microsoft", "act", &mm, 1, &y, 1, &n) == TD_OK);
    }
    CHECK(td_graph_add_output(NULL, g, y) == TD_OK);
    if (expose_mm)
        CHECK(td_graph_add_output(NULL, g, mm) == TD_OK);
    return m;
}

/* Runs the model on x (batch, seq, K); copies output 0 into y. Returns fused_nodes or -1. */
static int run(td_model *m, int threads, td_precision precision, const float *x, size_t batch, size_t seq, size_t K,
               float *y, size_t ny) {
    td_ctx *ctx = td_ctx_new();
    td_session_options opt;
    td_session_options_init(&opt);
    opt.threads = threads;
    opt.precision = precision;
    td_session *s = NULL;
    int fused = -1;
    CHECK_MSG(td_session_create_model(ctx, m, &opt, &s) == TD_OK, "%s", td_error_message(ctx));
    if (!s)
        goto out;
    int64_t shape[3] = {(int64_t)batch, (int64_t)seq, (int64_t)K};
    /* twice: the second run reuses the plan (fused output still right) */
    for (int rep = 0; rep < 2; rep++) {
        CHECK(td_session_set_input(ctx, s, "x", TD_DTYPE_FLOAT32, 3, shape, x, batch * seq * K * sizeof(float)) ==
              TD_OK);
        CHECK_MSG(td_session_run(ctx, s) == TD_OK, "%s", td_error_message(ctx));
    }
    td_session_output o;
    CHECK(td_session_get_output(ctx, s, 0, &o) == TD_OK);
    CHECK(o.nbytes == ny * sizeof(float) && o.rank == 3);
    if (o.nbytes == ny * sizeof(float))
        memcpy(y, o.data, o.nbytes);
    td_session_stats st;
    td_session_get_stats(s, &st);
    fused = st.fused_nodes;
out:
    td_session_free(s);
    td_ctx_free(ctx);
    return fused;
}

static double gelu_ref(double v, bool tanh_form) {
    if (tanh_form)
        return 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
    return 0.5 * v * (1.0 + erf(v * 0.70710678118654752));
}

static void check_case(const char *op, bool with_bias, size_t batch, size_t seq, size_t K, size_t N) {
    size_t M = batch * seq;
    float *W = malloc(K * N * sizeof(float)), *b = malloc(N * sizeof(float)), *x = malloc(M * K * sizeof(float));
    float *y_fused = calloc(M * N, sizeof(float)), *y_plain = calloc(M * N, sizeof(float));
    if (!W || !b || !x || !y_fused || !y_plain) {
        CHECK(!"out of memory");
        goto out;
    }
    for (size_t i = 0; i < K * N; i++)
        W[i] = frand() / sqrtf((float)K) * 2.0f;
    for (size_t i = 0; i < N; i++)
        b[i] = frand();
    for (size_t i = 0; i < M * K; i++)
        x[i] = frand() * 2.0f;
    bool tanh_form = strcmp(op, "FastGelu") == 0;
    td_model *fusable = build(op, with_bias, K, N, W, b, false), *exposed = build(op, with_bias, K, N, W, b, true);
    /* fp32 weights with 1 and 2 threads, then bf16 weight storage (its own kernel, same epilogue) */
    for (int variant = 0; variant < 3; variant++) {
        int threads = variant == 1 ? 2 : 1;
        td_precision prec = variant == 2 ? TD_PRECISION_BF16 : TD_PRECISION_FP32;
        int f = run(fusable, threads, prec, x, batch, seq, K, y_fused, M * N);
        int p = run(exposed, threads, prec, x, batch, seq, K, y_plain, M * N);
        CHECK_MSG(f == 1, "%s %zux%zux%zu: fused_nodes %d, want 1", op, M, N, K, f);
        CHECK_MSG(p == 0, "%s %zux%zux%zu: fused_nodes %d with the MatMul output exposed, want 0", op, M, N, K, p);
        double worst_ref = 0, worst_plain = 0;
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < N; j++) {
                double acc = with_bias ? b[j] : 0.0;
                for (size_t k = 0; k < K; k++)
                    acc += (double)x[i * K + k] * W[k * N + j];
                double want = gelu_ref(acc, tanh_form), got = y_fused[i * N + j];
                double e = fabs(got - want) / (1.0 + fabs(want));
                worst_ref = e > worst_ref ? e : worst_ref;
                e = fabs(got - y_plain[i * N + j]) / (1.0 + fabs(want));
                worst_plain = e > worst_plain ? e : worst_plain;
            }
        /* bf16 weights: 8 mantissa bits, errors average out over K */
        CHECK_MSG(worst_ref < (prec == TD_PRECISION_BF16 ? 3e-2 : 1e-4),
                  "%s %zux%zux%zu threads %d precision %d: fused vs fp64 reference rel. error %g", op, M, N, K, threads,
                  (int)prec, worst_ref);
        /* same kernels, same order of operations: only a last-bit difference is allowed */
        CHECK_MSG(worst_plain < 1e-6, "%s %zux%zux%zu threads %d precision %d: fused vs unfused rel. difference %g", op,
                  M, N, K, threads, (int)prec, worst_plain);
    }
    td_model_free(fusable);
    td_model_free(exposed);
out:
    free(W);
    free(b);
    free(x);
    free(y_fused);
    free(y_plain);
}

/* A Gelu whose bias is a graph input (not a constant) must not be fused. */
static void check_nonconst_bias_not_fused(void) {
    td_model *m = td_model_new();
    td_model_set_opset(NULL, m, "", 17);
    td_model_set_opset(NULL, m, "com.microsoft", 1);
    td_graph *g = m->graph;
    td_value *x = val(g, "x"), *w = val(g, "W"), *bv = val(g, "b"), *mm = val(g, "mm"), *y = val(g, "y");
    int64_t xd[2] = {3, 5}, bd[1] = {4}, wd[2] = {5, 4};
    float W[20], bias[4] = {1, -1, 0.5f, 0}, xin[15];
    for (int i = 0; i < 20; i++)
        W[i] = frand();
    for (int i = 0; i < 15; i++)
        xin[i] = frand();
    CHECK(td_value_set_tensor_type(NULL, x, TD_F32, 2, xd, NULL) == TD_OK);
    CHECK(td_value_set_tensor_type(NULL, bv, TD_F32, 1, bd, NULL) == TD_OK);
    CHECK(td_graph_add_input(NULL, g, x) == TD_OK);
    CHECK(td_graph_add_input(NULL, g, bv) == TD_OK);
    init_f32(g, w, 2, wd, W, 20);
    td_node *n = NULL;
    CHECK(td_graph_add_node(NULL, g, "MatMul", "", "mm", (td_value *[]){x, w}, 2, &mm, 1, &n) == TD_OK);
    CHECK(td_graph_add_node(NULL, g, "BiasGelu", "com.microsoft", "act", (td_value *[]){mm, bv}, 2, &y, 1, &n) ==
          TD_OK);
    CHECK(td_graph_add_output(NULL, g, y) == TD_OK);
    td_ctx *ctx = td_ctx_new();
    td_session *s = NULL;
    CHECK_MSG(td_session_create_model(ctx, m, NULL, &s) == TD_OK, "%s", td_error_message(ctx));
    if (s) {
        td_session_stats st;
        td_session_get_stats(s, &st);
        CHECK(st.fused_nodes == 0);
        CHECK(td_session_set_input(ctx, s, "x", TD_DTYPE_FLOAT32, 2, xd, xin, sizeof xin) == TD_OK);
        CHECK(td_session_set_input(ctx, s, "b", TD_DTYPE_FLOAT32, 1, bd, bias, sizeof bias) == TD_OK);
        CHECK_MSG(td_session_run(ctx, s) == TD_OK, "%s", td_error_message(ctx));
        td_session_output o;
        CHECK(td_session_get_output(ctx, s, 0, &o) == TD_OK);
        for (int i = 0; i < 3 && o.data; i++)
            for (int j = 0; j < 4; j++) {
                double acc = bias[j];
                for (int k = 0; k < 5; k++)
                    acc += (double)xin[i * 5 + k] * W[k * 4 + j];
                CHECK(fabs(((const float *)o.data)[i * 4 + j] - gelu_ref(acc, false)) < 1e-5);
            }
    }
    td_session_free(s);
    td_ctx_free(ctx);
    td_model_free(m);
}

/* y = SkipLayerNormalization(mm, r, gamma, beta, bias) with mm = MatMul(x, W) in input slot `slot` and
 * r a graph input of shape r_dims (the full (batch, seq, N), or (seq, N) broadcast over the batch). */
static td_model *build_sln(int slot, size_t K, size_t N, const float *W, const float *gb, int r_rank,
                           const int64_t *r_dims, bool expose_mm) {
    td_model *m = td_model_new();
    td_model_set_opset(NULL, m, "", 17);
    td_model_set_opset(NULL, m, "com.microsoft", 1);
    td_graph *g = m->graph;
    td_value *x = val(g, "x"), *r = val(g, "r"), *w = val(g, "W"), *mm = val(g, "mm"), *y = val(g, "y");
    td_value *gamma = val(g, "gamma"), *beta = val(g, "beta"), *bias = val(g, "bias");
    const char *params[3] = {"batch", "seq", NULL};
    int64_t xd[3] = {-1, -1, (int64_t)K}, wd[2] = {(int64_t)K, (int64_t)N}, hd[1] = {(int64_t)N};
    CHECK(td_value_set_tensor_type(NULL, x, TD_F32, 3, xd, params) == TD_OK);
    CHECK(td_value_set_tensor_type(NULL, r, TD_F32, r_rank, r_dims, NULL) == TD_OK);
    CHECK(td_graph_add_input(NULL, g, x) == TD_OK);
    CHECK(td_graph_add_input(NULL, g, r) == TD_OK);
    init_f32(g, w, 2, wd, W, K * N);
    init_f32(g, gamma, 1, hd, gb, N);
    init_f32(g, beta, 1, hd, gb + N, N);
    init_f32(g, bias, 1, hd, gb + 2 * N, N);
    td_node *n = NULL;
    CHECK(td_graph_add_node(NULL, g, "MatMul", "", "mm", (td_value *[]){x, w}, 2, &mm, 1, &n) == TD_OK);
    td_value *ins[5] = {slot == 0 ? mm : r, slot == 0 ? r : mm, gamma, beta, bias};
    CHECK(td_graph_add_node(NULL, g, "SkipLayerNormalization", "com.microsoft", "sln", ins, 5, &y, 1, &n) == TD_OK);
    CHECK(td_node_add_attr_float(NULL, n, "epsilon", 1e-5f) == TD_OK);
    CHECK(td_graph_add_output(NULL, g, y) == TD_OK);
    if (expose_mm)
        CHECK(td_graph_add_output(NULL, g, mm) == TD_OK);
    return m;
}

static int run_sln(td_model *m, int threads, const float *x, const float *r, const int64_t *xs, int r_rank,
                   const int64_t *r_dims, float *y, size_t ny) {
    td_ctx *ctx = td_ctx_new();
    td_session_options opt;
    td_session_options_init(&opt);
    opt.threads = threads;
    td_session *s = NULL;
    int fused = -1;
    size_t nr = 1;
    for (int d = 0; d < r_rank; d++)
        nr *= (size_t)r_dims[d];
    CHECK_MSG(td_session_create_model(ctx, m, &opt, &s) == TD_OK, "%s", td_error_message(ctx));
    if (!s)
        goto out;
    CHECK(td_session_set_input(ctx, s, "x", TD_DTYPE_FLOAT32, 3, xs, x, (size_t)(xs[0] * xs[1] * xs[2]) * 4) == TD_OK);
    CHECK(td_session_set_input(ctx, s, "r", TD_DTYPE_FLOAT32, r_rank, r_dims, r, nr * 4) == TD_OK);
    CHECK_MSG(td_session_run(ctx, s) == TD_OK, "%s", td_error_message(ctx));
    td_session_output o;
    CHECK(td_session_get_output(ctx, s, 0, &o) == TD_OK);
    CHECK(o.nbytes == ny * sizeof(float));
    if (o.nbytes == ny * sizeof(float))
        memcpy(y, o.data, o.nbytes);
    td_session_stats st;
    td_session_get_stats(s, &st);
    fused = st.fused_nodes;
out:
    td_session_free(s);
    td_ctx_free(ctx);
    return fused;
}

/* MatMul -> SkipLayerNormalization: residual add in the GEMM epilogue, in either SLN input slot; a
 * broadcast residual (seq, N) makes the same session run unfused for that plan. */
static void check_sln(int slot, bool broadcast, size_t batch, size_t seq, size_t K, size_t N) {
    size_t M = batch * seq;
    float *W = malloc(K * N * sizeof(float)), *gb = malloc(3 * N * sizeof(float)), *x = malloc(M * K * sizeof(float));
    float *r = malloc(M * N * sizeof(float)), *y_f = calloc(M * N, sizeof(float)), *y_p = calloc(M * N, sizeof(float));
    if (!W || !gb || !x || !r || !y_f || !y_p) {
        CHECK(!"out of memory");
        goto out;
    }
    for (size_t i = 0; i < K * N; i++)
        W[i] = frand() / sqrtf((float)K);
    for (size_t i = 0; i < 3 * N; i++)
        gb[i] = frand();
    for (size_t i = 0; i < M * K; i++)
        x[i] = frand();
    for (size_t i = 0; i < M * N; i++)
        r[i] = frand();
    int64_t full[3] = {(int64_t)batch, (int64_t)seq, (int64_t)N}, bc[2] = {(int64_t)seq, (int64_t)N};
    int r_rank = broadcast ? 2 : 3;
    const int64_t *r_dims = broadcast ? bc : full, xs[3] = {(int64_t)batch, (int64_t)seq, (int64_t)K};
    td_model *fusable = build_sln(slot, K, N, W, gb, r_rank, r_dims, false);
    td_model *exposed = build_sln(slot, K, N, W, gb, r_rank, r_dims, true);
    for (int threads = 1; threads <= 2; threads++) {
        int f = run_sln(fusable, threads, x, r, xs, r_rank, r_dims, y_f, M * N);
        int p = run_sln(exposed, threads, x, r, xs, r_rank, r_dims, y_p, M * N);
        CHECK_MSG(f == 1 && p == 0, "SLN slot %d: fused_nodes %d / %d, want 1 / 0", slot, f, p);
        double worst_ref = 0, worst_plain = 0;
        for (size_t i = 0; i < M; i++) {
            double s[512], mean = 0, var = 0;
            for (size_t j = 0; j < N && N <= 512; j++) {
                double acc = 0;
                for (size_t k = 0; k < K; k++)
                    acc += (double)x[i * K + k] * W[k * N + j];
                s[j] = acc + r[(broadcast ? i % seq : i) * N + j] + gb[2 * N + j];
                mean += s[j] / (double)N;
            }
            for (size_t j = 0; j < N && N <= 512; j++)
                var += (s[j] - mean) * (s[j] - mean) / (double)N;
            for (size_t j = 0; j < N && N <= 512; j++) {
                double want = (s[j] - mean) / sqrt(var + 1e-5) * gb[j] + gb[N + j];
                double e = fabs(y_f[i * N + j] - want) / (1.0 + fabs(want));
                worst_ref = e > worst_ref ? e : worst_ref;
                e = fabs(y_f[i * N + j] - y_p[i * N + j]);
                worst_plain = e > worst_plain ? e : worst_plain;
            }
        }
        CHECK_MSG(worst_ref < 1e-4, "SLN slot %d broadcast %d %zux%zux%zu threads %d: vs fp64 %g", slot, broadcast,
                  M, N, K, threads, worst_ref);
        /* same additions in the same order: identical results */
        CHECK_MSG(worst_plain == 0.0, "SLN slot %d broadcast %d %zux%zux%zu threads %d: fused vs unfused differ by %g",
                  slot, broadcast, M, N, K, threads, worst_plain);
    }
    td_model_free(fusable);
    td_model_free(exposed);
out:
    free(W), free(gb), free(x), free(r), free(y_f), free(y_p);
}

int main(void) {
    /* (batch, seq, K, N): tails in M, N and K; K = 1300 spans two K blocks */
    static const size_t shapes[][4] = {{2, 7, 67, 53}, {3, 5, 1300, 100}, {1, 9, 16, 17}, {2, 4, 48, 96}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_case("BiasGelu", true, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]);
        check_case("FastGelu", true, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]);
    }
    check_case("Gelu", false, 2, 7, 67, 53);
    check_case("FastGelu", false, 3, 3, 31, 65);
    check_nonconst_bias_not_fused();
    check_sln(0, false, 2, 7, 67, 53);
    check_sln(1, false, 3, 5, 1300, 100);
    check_sln(0, true, 2, 9, 40, 49);
    check_sln(1, false, 1, 3, 17, 96);
    return td_test_finish("test_runtime_fusion");
}
