/* Runtime unit tests: arena planner invariants, session shape validation,
 * unsupported-op errors at creation, plan reuse, a hand-built graph's values,
 * hoisting of shape computations and fp16 weight precision. */
#include "onnx/ir.h"
#include "runtime/arena.h"
#include "runtime/session_impl.h"
#include "tdeploy/session.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena planner ---- */

static void check_no_overlap(const td_arena_buf *b, size_t n, size_t total) {
    for (size_t i = 0; i < n; i++) {
        CHECK(b[i].offset % TD_ARENA_ALIGN == 0);
        CHECK(b[i].offset + b[i].size <= total);
        for (size_t j = i + 1; j < n; j++) {
            bool live_together = b[i].first <= b[j].last && b[j].first <= b[i].last;
            bool mem_overlap = b[i].size && b[j].size && b[i].offset < b[j].offset + b[j].size &&
                               b[j].offset < b[i].offset + b[i].size;
            CHECK_MSG(!(live_together && mem_overlap), "buffers %zu [%d,%d] @%zu+%zu and %zu [%d,%d] @%zu+%zu overlap", i,
                      b[i].first, b[i].last, b[i].offset, b[i].size, j, b[j].first, b[j].last, b[j].offset, b[j].size);
        }
    }
}

static void test_arena_chain(void) {
    /* a chain: each buffer lives for two steps; only two are ever live together */
    td_arena_buf b[10];
    size_t sum = 0, total = 0;
    for (int i = 0; i < 10; i++) {
        b[i] = (td_arena_buf){(size_t)(100 + 10 * i), i, i + 1, 0};
        sum += b[i].size;
    }
    CHECK(td_arena_plan(NULL, b, 10, &total) == TD_OK);
    check_no_overlap(b, 10, total);
    CHECK_MSG(total < sum / 2, "chain arena %zu should be far below the sum %zu", total, sum);
    CHECK(total >= 2 * 192); /* the two largest neighbours, rounded */
}

static void test_arena_random(void) {
    srand(7);
    for (int round = 0; round < 50; round++) {
        size_t n = 1 + (size_t)(rand() % 60), sum = 0, total = 0;
        td_arena_buf *b = calloc(n, sizeof *b);
        for (size_t i = 0; i < n; i++) {
            int first = rand() % 40;
            b[i] = (td_arena_buf){(size_t)(rand() % 5000), first, first + rand() % 10, 0};
            sum += (b[i].size + 63) / 64 * 64;
        }
        CHECK(td_arena_plan(NULL, b, n, &total) == TD_OK);
        check_no_overlap(b, n, total);
        CHECK(total <= sum);
        /* peak of simultaneously live bytes is a lower bound */
        size_t peak = 0;
        for (int t = 0; t < 50; t++) {
            size_t live = 0;
            for (size_t i = 0; i < n; i++)
                if (b[i].first <= t && t <= b[i].last)
                    live += b[i].size;
            if (live > peak)
                peak = live;
        }
        CHECK(total >= peak);
        free(b);
    }
    size_t total = 1;
    CHECK(td_arena_plan(NULL, NULL, 0, &total) == TD_OK && total == 0);
    td_arena_buf huge = {SIZE_MAX - 10, 0, 0, 0};
    td_ctx *ctx = td_ctx_new();
    CHECK(td_arena_plan(ctx, &huge, 1, &total) == TD_ERR_OVERFLOW);
    td_ctx_free(ctx);
}

/* ---- graphs built with the IR ---- */

static td_value *val(td_graph *g, const char *name) {
    td_value *v = NULL;
    CHECK(td_graph_get_value(NULL, g, name, &v) == TD_OK);
    return v;
}

static td_node *add_node(td_graph *g, const char *op, const char *domain, td_value **ins, int n_in, td_value **outs,
                         int n_out) {
    td_node *n = NULL;
    CHECK(td_graph_add_node(NULL, g, op, domain, op, ins, n_in, outs, n_out, &n) == TD_OK);
    return n;
}

static void init_f32(td_graph *g, td_value *v, int rank, const int64_t *dims, const float *data, size_t n) {
    td_tensor *t = NULL;
    CHECK(td_tensor_new_copy(NULL, v->name, TD_F32, rank, dims, data, n * sizeof(float), &t) == TD_OK);
    CHECK(td_graph_set_initializer(NULL, g, v, t) == TD_OK);
}

/* y = Reshape(MatMul(x, W) + b, Concat(Shape(x)[0:1], [-1]))   x: (batch, seq, 4)  W: (4, 3) */
static td_model *build_mlp(void) {
    td_model *m = td_model_new();
    td_model_set_opset(NULL, m, "", 17);
    td_graph *g = m->graph;
    td_value *x = val(g, "x"), *w = val(g, "W"), *b = val(g, "b"), *mm = val(g, "mm"), *h = val(g, "h");
    td_value *shp = val(g, "shp"), *first = val(g, "first"), *minus1 = val(g, "minus1"), *target = val(g, "target");
    td_value *y = val(g, "y"), *zero = val(g, "zero"), *one = val(g, "one");
    const char *params[3] = {"batch", "seq", NULL};
    int64_t xd[3] = {-1, -1, 4};
    CHECK(td_value_set_tensor_type(NULL, x, TD_F32, 3, xd, params) == TD_OK);
    CHECK(td_graph_add_input(NULL, g, x) == TD_OK);
    float wd[12], bd[3] = {0.5f, -1.0f, 2.0f};
    for (int i = 0; i < 12; i++)
        wd[i] = (float)(i - 6) * 0.25f;
    int64_t wdims[2] = {4, 3}, bdims[1] = {3}, one_dim[1] = {1};
    init_f32(g, w, 2, wdims, wd, 12);
    init_f32(g, b, 1, bdims, bd, 3);
    int64_t z = 0, o = 1, m1 = -1;
    td_tensor *t = NULL;
    CHECK(td_tensor_new_copy(NULL, "zero", TD_I64, 1, one_dim, &z, 8, &t) == TD_OK && td_graph_set_initializer(NULL, g, zero, t) == TD_OK);
    CHECK(td_tensor_new_copy(NULL, "one", TD_I64, 1, one_dim, &o, 8, &t) == TD_OK && td_graph_set_initializer(NULL, g, one, t) == TD_OK);
    CHECK(td_tensor_new_copy(NULL, "minus1", TD_I64, 1, one_dim, &m1, 8, &t) == TD_OK && td_graph_set_initializer(NULL, g, minus1, t) == TD_OK);
    add_node(g, "MatMul", "", (td_value *[]){x, w}, 2, &mm, 1);
    add_node(g, "Add", "", (td_value *[]){mm, b}, 2, &h, 1);
    add_node(g, "Shape", "", &x, 1, &shp, 1);
    add_node(g, "Slice", "", (td_value *[]){shp, zero, one}, 3, &first, 1);
    td_node *cat = add_node(g, "Concat", "", (td_value *[]){first, minus1}, 2, &target, 1);
    CHECK(td_node_add_attr_int(NULL, cat, "axis", 0) == TD_OK);
    add_node(g, "Reshape", "", (td_value *[]){h, target}, 2, &y, 1);
    CHECK(td_graph_add_output(NULL, g, y) == TD_OK);
    return m;
}

static void test_session_values_and_plans(void) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = build_mlp();
    td_session *s = NULL;
    td_session_options opt;
    td_session_options_init(&opt);
    opt.threads = 2;
    CHECK_MSG(td_session_create_model(ctx, m, &opt, &s) == TD_OK, "%s", td_error_message(ctx));
    if (!s)
        goto out;
    CHECK(td_session_input_count(s) == 1 && td_session_output_count(s) == 1);
    td_session_stats st;
    td_session_get_stats(s, &st);
    CHECK(st.hoisted_nodes == 3); /* Shape, Slice, Concat: computed once per plan */
    for (int seq = 1; seq <= 3; seq++) {
        float x[2 * 3 * 4];
        for (int i = 0; i < 2 * seq * 4; i++)
            x[i] = (float)(i % 7) - 3.0f;
        int64_t shape[3] = {2, seq, 4};
        for (int rep = 0; rep < 2; rep++) {
            CHECK(td_session_set_input(ctx, s, "x", TD_DTYPE_FLOAT32, 3, shape, x, sizeof(float) * 2 * seq * 4) == TD_OK);
            CHECK_MSG(td_session_run(ctx, s) == TD_OK, "%s", td_error_message(ctx));
        }
        td_session_get_stats(s, &st);
        CHECK_MSG(st.plans == (uint64_t)seq, "plans %llu after shape %d (same shape must not re-plan)",
                  (unsigned long long)st.plans, seq);
        td_session_output o;
        CHECK(td_session_get_output(ctx, s, 0, &o) == TD_OK);
        CHECK(o.rank == 2 && o.shape[0] == 2 && o.shape[1] == seq * 3);
        const float *y = o.data;
        for (int r = 0; r < 2 * seq; r++)
            for (int c = 0; c < 3; c++) {
                float want = c == 0 ? 0.5f : c == 1 ? -1.0f : 2.0f;
                for (int k = 0; k < 4; k++)
                    want += x[r * 4 + k] * (float)(k * 3 + c - 6) * 0.25f;
                CHECK_MSG(fabsf(y[r * 3 + c] - want) < 1e-5f, "y[%d,%d] = %g, want %g", r, c, y[r * 3 + c], want);
            }
    }
    /* shape validation: fixed dim, rank, dtype, size, unknown name */
    float x[8] = {0};
    CHECK(td_session_set_input(ctx, s, "x", TD_DTYPE_FLOAT32, 3, (int64_t[]){1, 2, 5}, x, 40) == TD_ERR_SHAPE);
    CHECK(strstr(td_error_message(ctx), "'x'") && strstr(td_error_message(ctx), "axis 2") &&
          strstr(td_error_message(ctx), "5") && strstr(td_error_message(ctx), "4"));
    CHECK(td_session_set_input(ctx, s, "x", TD_DTYPE_FLOAT32, 2, (int64_t[]){2, 4}, x, 32) == TD_ERR_SHAPE);
    CHECK(strstr(td_error_message(ctx), "rank") != NULL);
    CHECK(td_session_set_input(ctx, s, "x", TD_DTYPE_INT64, 3, (int64_t[]){1, 1, 4}, x, 32) == TD_ERR_DTYPE);
    CHECK(td_session_set_input(ctx, s, "x", TD_DTYPE_FLOAT32, 3, (int64_t[]){1, 1, 4}, x, 12) == TD_ERR_SHAPE);
    CHECK(td_session_set_input(ctx, s, "nope", TD_DTYPE_FLOAT32, 3, (int64_t[]){1, 1, 4}, x, 16) == TD_ERR_NOT_FOUND);
    CHECK(strstr(td_error_message(ctx), "'nope'") && strstr(td_error_message(ctx), "x"));
    CHECK(td_session_set_input(ctx, s, "x", TD_DTYPE_FLOAT32, 3, (int64_t[]){-1, 1, 4}, x, 16) == TD_ERR_SHAPE);
out:
    td_session_free(s);
    td_model_free(m);
    td_ctx_free(ctx);
}

/* Two inputs sharing the symbol "seq" must agree. */
static void test_symbol_agreement(void) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = td_model_new();
    td_model_set_opset(NULL, m, "", 17);
    td_graph *g = m->graph;
    td_value *a = val(g, "a"), *b = val(g, "b"), *c = val(g, "c");
    const char *pa[2] = {"batch", "seq"};
    int64_t d[2] = {-1, -1};
    td_value_set_tensor_type(NULL, a, TD_F32, 2, d, pa);
    td_value_set_tensor_type(NULL, b, TD_F32, 2, d, pa);
    td_graph_add_input(NULL, g, a);
    td_graph_add_input(NULL, g, b);
    add_node(g, "Add", "", (td_value *[]){a, b}, 2, &c, 1);
    td_graph_add_output(NULL, g, c);
    td_session *s = NULL;
    CHECK(td_session_create_model(ctx, m, NULL, &s) == TD_OK);
    float x[6] = {0};
    CHECK(td_session_run(ctx, s) == TD_ERR_INVALID_ARGUMENT); /* inputs not set */
    CHECK(td_session_set_input(ctx, s, "a", TD_DTYPE_FLOAT32, 2, (int64_t[]){1, 3}, x, 12) == TD_OK);
    CHECK(td_session_set_input(ctx, s, "b", TD_DTYPE_FLOAT32, 2, (int64_t[]){1, 2}, x, 8) == TD_OK);
    CHECK(td_session_run(ctx, s) == TD_ERR_SHAPE);
    td_session_output o;
    CHECK(td_session_get_output(ctx, s, 0, &o) == TD_ERR_INVALID_ARGUMENT); /* no stale outputs after a failure */
    CHECK(td_session_run(ctx, s) == TD_ERR_SHAPE);
    const char *msg = td_error_message(ctx);
    CHECK_MSG(strstr(msg, "'seq'") && strstr(msg, "'a'") && strstr(msg, "'b'") && strstr(msg, "axis 1"), "%s", msg);
    td_session_free(s);
    td_model_free(m);
    td_ctx_free(ctx);
}

/* Unsupported op, opset, attribute and dtype fail at creation naming the node. */
static void test_unsupported(void) {
    td_ctx *ctx = td_ctx_new();
    struct {
        const char *op, *domain;
        int64_t opset;
        td_dtype dt;
        const char *attr;
        const char *needle;
    } cases[] = {
        {"Conv", "", 17, TD_F32, NULL, "Conv"},
        {"Relu", "", 99, TD_F32, NULL, "opset 99"},
        {"Sqrt", "", 17, TD_F64, NULL, "double"},
        {"Gelu", "", 20, TD_F32, "approximate", "approximate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        td_model *m = td_model_new();
        td_model_set_opset(NULL, m, cases[i].domain, cases[i].opset);
        td_graph *g = m->graph;
        td_value *x = val(g, "x"), *y = val(g, "y");
        int64_t d[1] = {4};
        td_value_set_tensor_type(NULL, x, cases[i].dt, 1, d, NULL);
        td_graph_add_input(NULL, g, x);
        td_node *n = add_node(g, cases[i].op, cases[i].domain, &x, 1, &y, 1);
        if (cases[i].attr)
            td_node_add_attr_string(NULL, n, cases[i].attr, "sigmoid");
        td_graph_add_output(NULL, g, y);
        td_session *s = NULL;
        td_status st = td_session_create_model(ctx, m, NULL, &s);
        const char *msg = td_error_message(ctx);
        CHECK_MSG(st == TD_ERR_UNSUPPORTED && s == NULL, "%s: status %d", cases[i].op, (int)st);
        CHECK_MSG(strstr(msg, cases[i].needle) && strstr(msg, cases[i].op) && strstr(msg, "opset"), "%s", msg);
        td_model_free(m);
    }
    td_ctx_free(ctx);
}

/* fp16 weight storage: MatMul with prepacked fp16 B stays close to fp32. */
static void test_precision(void) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = build_mlp();
    float x[12];
    for (int i = 0; i < 12; i++)
        x[i] = 0.1f * (float)i;
    float ref[9];
    size_t fp32_bytes = 0;
    for (int p = 0; p < 3; p++) {
        td_session_options opt;
        td_session_options_init(&opt);
        opt.precision = (td_precision)p;
        td_session *s = NULL;
        CHECK(td_session_create_model(ctx, m, &opt, &s) == TD_OK);
        if (!s)
            continue;
        td_session_stats st;
        td_session_get_stats(s, &st);
        if (p == 0)
            fp32_bytes = st.weight_bytes;
        CHECK(st.weight_bytes >= 48 && st.weight_bytes == (p == 0 ? fp32_bytes : fp32_bytes / 2));
        CHECK(td_session_set_input(ctx, s, "x", TD_DTYPE_FLOAT32, 3, (int64_t[]){1, 3, 4}, x, sizeof x) == TD_OK);
        CHECK(td_session_run(ctx, s) == TD_OK);
        td_session_output o;
        CHECK(td_session_get_output(ctx, s, 0, &o) == TD_OK);
        for (int i = 0; i < 9; i++) {
            if (p == 0)
                ref[i] = ((const float *)o.data)[i];
            else
                CHECK(fabsf(((const float *)o.data)[i] - ref[i]) < 1e-2f);
        }
        td_session_free(s);
    }
    td_model_free(m);
    td_ctx_free(ctx);
}

int main(void) {
    test_arena_chain();
    test_arena_random();
    test_session_values_and_plans();
    test_symbol_agreement();
    test_unsupported();
    test_precision();
    return td_test_finish("test_runtime");
}
