/* Export graph builder: opset-dependent op forms, dtype tracking for Casts, the
 * sticky error, activation names and task parsing. Numerics are covered by the
 * Python tests (ONNX Runtime vs golden outputs and a numpy reference). */
#include "test.h"

#include "core/ctx.h"
#include "export/builder.h"
#include "export/export.h"

#include <string.h>

static int count_ops(const td_graph *g, const char *op) {
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i]->dead && strcmp(g->nodes[i]->op_type, op) == 0)
            n++;
    return n;
}

static const td_node *first_op(const td_graph *g, const char *op) {
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i]->op_type, op) == 0)
            return g->nodes[i];
    return NULL;
}

static void test_reduce_forms(void) {
    static const int64_t axes[1] = {-1};
    static const char *const params[2] = {"batch", "sequence"};
    const int64_t dims[2] = {-1, -1};
    for (int opset = 14; opset <= 21; opset++) {
        td_ctx *ctx = td_ctx_new();
        td_model *m = td_model_new();
        td_eb b;
        td_eb_init(&b, ctx, m, opset, TD_F32);
        td_value *x = td_eb_input(&b, "x", TD_F32, 2, dims, params);
        td_eb_reduce(&b, "ReduceMean", x, "mean", 1, axes, true);
        td_eb_reduce(&b, "ReduceSum", x, "sum", 1, axes, false);
        CHECK(td_eb_status(&b) == TD_OK);
        const td_node *mean = first_op(m->graph, "ReduceMean");
        const td_node *sum = first_op(m->graph, "ReduceSum");
        CHECK(mean && sum);
        if (mean && sum) {
            /* ReduceMean: axes attribute before opset 18, input from 18; ReduceSum: input since 13 */
            CHECK_MSG(mean->n_inputs == (opset >= 18 ? 2 : 1), "opset %d ReduceMean inputs %d", opset, mean->n_inputs);
            CHECK_MSG((td_node_attr(mean, "axes") != NULL) == (opset < 18), "opset %d ReduceMean axes attr", opset);
            CHECK(sum->n_inputs == 2 && td_node_attr(sum, "axes") == NULL);
            CHECK(td_node_attr_int(sum, "keepdims", 1) == 0);
        }
        td_model_free(m);
        td_ctx_free(ctx);
    }
}

static void test_layer_norm_and_casts(void) {
    static const char *const params[3] = {"batch", "sequence", NULL};
    const int64_t dims[3] = {-1, -1, 8};
    float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int opset = 16; opset <= 17; opset++) {
        td_ctx *ctx = td_ctx_new();
        td_model *m = td_model_new();
        td_eb b;
        td_eb_init(&b, ctx, m, opset, TD_F16);
        td_value *x = td_eb_input(&b, "x", TD_F16, 3, dims, params);
        int64_t d8[1] = {8};
        td_tensor *tg = NULL, *tb = NULL;
        CHECK(td_tensor_new_copy(ctx, "g", TD_F32, 1, d8, ones, sizeof ones, &tg) == TD_OK);
        CHECK(td_tensor_new_copy(ctx, "b", TD_F32, 1, d8, ones, sizeof ones, &tb) == TD_OK);
        td_value *g = td_eb_initializer(&b, tg), *beta = td_eb_initializer(&b, tb);
        td_value *y = td_eb_layer_norm(&b, x, g, beta, 1e-5f, "ln");
        CHECK(td_eb_status(&b) == TD_OK && y);
        /* fp16 in, fp32 normalization, fp16 out: exactly two Casts */
        CHECK(y && y->type.elem == TD_F16);
        CHECK_MSG(count_ops(m->graph, "Cast") == 2, "opset %d casts %d", opset, count_ops(m->graph, "Cast"));
        CHECK((count_ops(m->graph, "LayerNormalization") == 1) == (opset >= 17));
        /* a Cast to the dtype a value already has is not emitted */
        int before = count_ops(m->graph, "Cast");
        CHECK(td_eb_cast(&b, y, TD_F16) == y);
        CHECK(count_ops(m->graph, "Cast") == before);
        td_model_free(m);
        td_ctx_free(ctx);
    }
}

static void test_sticky_error(void) {
    static const char *const params[2] = {"batch", "sequence"};
    const int64_t dims[2] = {-1, -1};
    td_ctx *ctx = td_ctx_new();
    td_model *m = td_model_new();
    td_eb b;
    td_eb_init(&b, ctx, m, 17, TD_F32);
    td_value *x = td_eb_input(&b, "x", TD_F32, 2, dims, params);
    CHECK(td_eb_activation(&b, "prelu", x) == NULL);
    CHECK(td_eb_status(&b) == TD_ERR_UNSUPPORTED);
    CHECK(strstr(td_error_message(ctx), "prelu") != NULL);
    int nodes = m->graph->n_nodes;
    /* after a failure nothing more is built and the first error stays */
    CHECK(td_eb_activation(&b, "gelu", x) == NULL);
    CHECK(td_eb_op1(&b, "Relu", "r", x) == NULL);
    CHECK(m->graph->n_nodes == nodes);
    CHECK(td_eb_status(&b) == TD_ERR_UNSUPPORTED);
    CHECK(strstr(td_error_message(ctx), "prelu") != NULL);
    td_model_free(m);
    td_ctx_free(ctx);
}

static void test_names(void) {
    CHECK(td_eb_activation_supported("gelu_new") && td_eb_activation_supported("quick_gelu"));
    CHECK(!td_eb_activation_supported("prelu") && !td_eb_activation_supported(""));
    td_export_task t = TD_TASK_AUTO;
    CHECK(td_export_task_parse("question-answering", &t) && t == TD_TASK_QUESTION_ANSWERING);
    CHECK(td_export_task_parse("text-classification", &t) && t == TD_TASK_CLASSIFICATION);
    CHECK(!td_export_task_parse("translation", &t));
    CHECK(strcmp(td_export_task_name(TD_TASK_EMBEDDING), "embedding") == 0);
}

int main(void) {
    test_reduce_forms();
    test_layer_norm_and_casts();
    test_sticky_error();
    test_names();
    return td_test_finish("export_builder");
}
