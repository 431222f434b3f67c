/* IR: values, nodes, consumers, rewiring, removal, toposort and cycles. */
#include "onnx/ir.h"
#include "test.h"

#include <string.h>

static td_value *val(td_graph *g, const char *name) {
    td_value *v = NULL;
    CHECK(td_graph_get_value(NULL, g, name, &v) == TD_OK);
    return v;
}

static td_node *node(td_graph *g, const char *op, const char *name, td_value *a, td_value *b, td_value *out) {
    td_value *ins[2] = {a, b};
    td_node *n = NULL;
    CHECK(td_graph_add_node(NULL, g, op, "", name, ins, b ? 2 : 1, &out, 1, &n) == TD_OK);
    return n;
}

static void test_build_and_rewire(void) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = td_model_new();
    td_graph *g = m->graph;
    td_value *x = val(g, "x"), *y = val(g, "y"), *z = val(g, "z"), *w = val(g, "w");
    CHECK(td_graph_add_input(ctx, g, x) == TD_OK);
    float data[4] = {1, 2, 3, 4};
    int64_t dims[1] = {4};
    td_tensor *t = NULL;
    CHECK(td_tensor_new_copy(ctx, "c", TD_F32, 1, dims, data, sizeof data, &t) == TD_OK);
    td_value *c = val(g, "c");
    CHECK(td_graph_set_initializer(ctx, g, c, t) == TD_OK);
    CHECK(c->type.elem == TD_F32 && c->type.rank == 1 && c->type.dims[0].value == 4);
    /* add nodes out of order: z = Relu(y) first, then y = Add(x, c) */
    td_node *relu = node(g, "Relu", "relu", y, NULL, z);
    td_node *add = node(g, "Add", "add", x, c, y);
    node(g, "Mul", "mul", z, z, w);
    CHECK(td_graph_add_output(ctx, g, w) == TD_OK);
    CHECK(y->producer == add && z->producer == relu && z->n_consumers == 2);
    CHECK(td_graph_toposort(ctx, g) == TD_OK);
    CHECK(strcmp(g->nodes[0]->name, "add") == 0 && strcmp(g->nodes[1]->name, "relu") == 0);
    /* duplicate value name and double producer are rejected */
    td_value *dup = NULL;
    CHECK(td_graph_add_value(ctx, g, "x", &dup) == TD_ERR_GRAPH);
    td_value *in1[1] = {x};
    CHECK(td_graph_add_node(ctx, g, "Neg", "", "neg", in1, 1, &y, 1, NULL) == TD_ERR_GRAPH);
    CHECK(strstr(td_error_message(ctx), "'y'") != NULL);
    /* bypass relu: uses of z now use y; remove relu; compact drops z */
    CHECK(td_value_replace_uses(ctx, z, y) == TD_OK);
    CHECK(z->n_consumers == 0 && y->n_consumers == 3);
    td_graph_remove_node(g, relu);
    CHECK(y->n_consumers == 2 && td_graph_live_nodes(g) == 2);
    td_graph_compact(g);
    CHECK(g->n_nodes == 2 && td_graph_find(g, "z") == NULL && td_graph_find(g, "y") != NULL);
    /* attributes */
    CHECK(td_node_add_attr_int(ctx, add, "axis", -1) == TD_OK);
    int64_t perm[3] = {0, 2, 1};
    CHECK(td_node_add_attr_ints(ctx, add, "perm", perm, 3) == TD_OK);
    CHECK(td_node_add_attr_string(ctx, add, "mode", "constant") == TD_OK);
    size_t cnt;
    CHECK(td_node_attr_int(add, "axis", 0) == -1 && td_node_attr_int(add, "nope", 7) == 7);
    CHECK(td_node_attr_ints(add, "perm", &cnt)[2] == 1 && cnt == 3);
    CHECK(strcmp(td_node_attr_string(add, "mode", ""), "constant") == 0);
    char *u = td_graph_unique_name(g, "x");
    CHECK(strcmp(u, "x_1") == 0);
    free(u);
    CHECK(td_model_set_opset(ctx, m, "", 17) == TD_OK && td_model_opset(m, "ai.onnx") == 17);
    CHECK(td_model_set_metadata(ctx, m, "k", "v") == TD_OK && strcmp(td_model_metadata(m, "k"), "v") == 0);
    td_model_free(m);
    td_ctx_free(ctx);
}

static void test_cycle(void) {
    td_ctx *ctx = td_ctx_new();
    td_graph *g = td_graph_new(NULL);
    td_value *a = val(g, "a"), *b = val(g, "b");
    node(g, "Relu", "n1", a, NULL, b);
    node(g, "Relu", "n2", b, NULL, a);
    CHECK(td_graph_toposort(ctx, g) == TD_ERR_GRAPH);
    CHECK(strstr(td_error_message(ctx), "cycle") != NULL);
    td_graph_free(g);
    td_ctx_free(ctx);
}

static void test_tensor_checks(void) {
    td_tensor *t = NULL;
    int64_t dims[2] = {2, 3};
    float d[6] = {0};
    CHECK(td_tensor_new_copy(NULL, "t", TD_F32, 2, dims, d, 20, &t) == TD_ERR_FORMAT && t == NULL);
    int64_t neg[1] = {-1};
    CHECK(td_tensor_new_copy(NULL, "t", TD_F32, 1, neg, d, 0, &t) == TD_ERR_FORMAT);
    CHECK(td_tensor_new_copy(NULL, "t", TD_F32, 2, dims, d, 24, &t) == TD_OK && td_tensor_numel(t) == 6);
    td_tensor *c = NULL;
    CHECK(td_tensor_clone(NULL, t, &c) == TD_OK && c->nbytes == 24 && c->data != t->data);
    td_tensor_free(t);
    td_tensor_free(c);
    td_tensor_free(NULL);
}

int main(void) {
    test_build_and_rewire();
    test_cycle();
    test_tensor_checks();
    return td_test_finish("test_ir");
}
