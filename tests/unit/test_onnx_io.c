/* ONNX load/save/check: a model built with the IR API (subgraph with an
 * outer-scope reference, symbolic dims, metadata, string tensor, attributes)
 * survives save -> load; external data write/read; validation errors. */
#define _GNU_SOURCE
#include "onnx.pb-c.h"
#include "onnx/onnx_io.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static td_value *val(td_graph *g, const char *name) {
    td_value *v = NULL;
    CHECK(td_graph_get_value(NULL, g, name, &v) == TD_OK);
    return v;
}

static td_node *node1(td_graph *g, const char *op, const char *domain, const char *name, td_value *a, td_value *b,
                      td_value *out) {
    td_value *ins[2] = {a, b};
    td_node *n = NULL;
    CHECK(td_graph_add_node(NULL, g, op, domain, name, ins, b ? 2 : 1, &out, 1, &n) == TD_OK);
    return n;
}

static bool contains(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

/* x (batch, 4) + w -> y; If(cond) { then: Identity(y) ; else: Neg(y) } -> z. */
static td_model *build_model(void) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = td_model_new();
    td_graph *g = m->graph;
    free(g->name);
    g->name = strdup("main");
    CHECK(td_model_set_opset(ctx, m, "", 17) == TD_OK);
    CHECK(td_model_set_metadata(ctx, m, "author", "test") == TD_OK);
    CHECK(td_model_set_metadata(ctx, m, "license", "none") == TD_OK);
    m->producer_name = strdup("test_onnx_io");
    td_value *x = val(g, "x"), *w = val(g, "w"), *y = val(g, "y"), *cond = val(g, "cond"), *z = val(g, "z");
    td_value *words = val(g, "words");
    const char *params[2] = {"batch", NULL};
    int64_t dims[2] = {-1, 4};
    CHECK(td_value_set_tensor_type(ctx, x, TD_F32, 2, dims, params) == TD_OK);
    CHECK(td_value_set_tensor_type(ctx, cond, TD_BOOL, 0, NULL, NULL) == TD_OK);
    CHECK(td_value_set_tensor_type(ctx, z, TD_F32, 2, dims, params) == TD_OK);
    CHECK(td_graph_add_input(ctx, g, x) == TD_OK);
    CHECK(td_graph_add_input(ctx, g, cond) == TD_OK);
    float wdata[4] = {1.5f, -2.0f, 3.25f, 0.0f};
    int64_t wd[1] = {4};
    td_tensor *t = NULL;
    CHECK(td_tensor_new_copy(ctx, "w", TD_F32, 1, wd, wdata, sizeof wdata, &t) == TD_OK);
    CHECK(td_graph_set_initializer(ctx, g, w, t) == TD_OK);
    /* string initializer */
    int64_t sd[1] = {2};
    CHECK(td_tensor_new_owned(ctx, "words", TD_STRING, 1, sd, NULL, 0, &t) == TD_OK);
    t->strings = calloc(2, sizeof(char *));
    t->string_lens = calloc(2, sizeof(size_t));
    t->strings[0] = strdup("hello");
    t->string_lens[0] = 5;
    t->strings[1] = malloc(3);
    memcpy(t->strings[1], "a\0b", 3); /* embedded NUL survives */
    t->string_lens[1] = 3;
    CHECK(td_graph_set_initializer(ctx, g, words, t) == TD_OK);
    td_node *add = node1(g, "Add", "", "add", x, w, y);
    CHECK(td_node_add_attr_int(ctx, add, "dummy_int", 7) == TD_OK);
    int64_t ints[3] = {1, -2, 3};
    float floats[2] = {0.5f, 2.5f};
    CHECK(td_node_add_attr_ints(ctx, add, "dummy_ints", ints, 3) == TD_OK);
    CHECK(td_node_add_attr_floats(ctx, add, "dummy_floats", floats, 2) == TD_OK);
    CHECK(td_node_add_attr_string(ctx, add, "dummy_s", "text") == TD_OK);
    td_node *iff = NULL;
    td_value *if_in[1] = {cond};
    CHECK(td_graph_add_node(ctx, g, "If", "", "if", if_in, 1, &z, 1, &iff) == TD_OK);
    const char *branch_op[2] = {"Identity", "Neg"};
    const char *branch_name[2] = {"then_branch", "else_branch"};
    for (int b = 0; b < 2; b++) {
        td_graph *sub = td_graph_new(g);
        free(sub->name);
        sub->name = strdup(branch_name[b]);
        td_value *so = val(sub, b ? "else_out" : "then_out");
        CHECK(td_value_set_tensor_type(ctx, so, TD_F32, 2, dims, params) == TD_OK);
        node1(sub, branch_op[b], "", branch_op[b], y, NULL, so); /* y is an outer-scope value */
        CHECK(td_graph_add_output(ctx, sub, so) == TD_OK);
        td_attr *a = NULL;
        CHECK(td_node_new_attr(ctx, iff, &a) == TD_OK);
        a->name = strdup(branch_name[b]);
        a->type = TD_ATTR_GRAPH;
        a->g = sub;
    }
    CHECK(td_graph_add_output(ctx, g, z) == TD_OK);
    td_ctx_free(ctx);
    return m;
}

static void test_roundtrip(void) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = build_model();
    CHECK_MSG(td_onnx_check(ctx, m) == TD_OK, "%s", td_error_message(ctx));
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    CHECK(td_onnx_save_buffer(ctx, m, &buf, &len) == TD_OK);
    td_model *r = NULL;
    CHECK_MSG(td_onnx_load_buffer(ctx, buf, len, NULL, &r) == TD_OK, "%s", td_error_message(ctx));
    if (!r)
        goto out;
    CHECK(r->ir_version == m->ir_version);
    CHECK(td_model_opset(r, "") == 17);
    CHECK(r->n_metadata == 2 && !strcmp(td_model_metadata(r, "license"), "none"));
    CHECK(!strcmp(r->producer_name, "test_onnx_io"));
    td_graph *g = r->graph;
    CHECK(!strcmp(g->name, "main"));
    CHECK(g->n_inputs == 2 && g->n_outputs == 1 && g->n_initializers == 2 && g->n_nodes == 2);
    td_value *x = td_graph_find(g, "x");
    CHECK(x && x->type.elem == TD_F32 && x->type.rank == 2 && x->type.dims[0].param &&
          !strcmp(x->type.dims[0].param, "batch") && x->type.dims[1].value == 4);
    td_value *w = td_graph_find(g, "w");
    CHECK(w && w->initializer && w->initializer->nbytes == 16);
    float expect[4] = {1.5f, -2.0f, 3.25f, 0.0f};
    CHECK(w && w->initializer && memcmp(w->initializer->data, expect, 16) == 0);
    td_value *words = td_graph_find(g, "words");
    CHECK(words && words->initializer && words->initializer->dtype == TD_STRING);
    if (words && words->initializer && words->initializer->strings) {
        CHECK(!strcmp(words->initializer->strings[0], "hello"));
        CHECK(words->initializer->string_lens[1] == 3 && !memcmp(words->initializer->strings[1], "a\0b", 3));
    }
    td_node *add = g->nodes[0];
    size_t n_ints = 0;
    const int64_t *ints = td_node_attr_ints(add, "dummy_ints", &n_ints);
    CHECK(n_ints == 3 && ints && ints[1] == -2);
    CHECK(td_node_attr_int(add, "dummy_int", 0) == 7);
    CHECK(!strcmp(td_node_attr_string(add, "dummy_s", ""), "text"));
    const td_attr *fl = td_node_attr(add, "dummy_floats");
    CHECK(fl && fl->count == 2 && fl->floats[1] == 2.5f);
    td_node *iff = g->nodes[1];
    const td_attr *then_b = td_node_attr(iff, "then_branch");
    CHECK(then_b && then_b->type == TD_ATTR_GRAPH && then_b->g);
    if (then_b && then_b->g) {
        td_node *idn = then_b->g->nodes[0];
        CHECK(!strcmp(idn->op_type, "Identity"));
        CHECK(idn->inputs[0] == td_graph_find(g, "y")); /* resolved to the outer value */
        CHECK(then_b->g->parent == g);
    }
    /* save again: identical bytes (save is deterministic and load lossless) */
    CHECK(td_onnx_save_buffer(ctx, r, &buf2, &len2) == TD_OK);
    CHECK(len2 == len && buf2 && memcmp(buf, buf2, len) == 0);
out:
    free(buf);
    free(buf2);
    td_model_free(r);
    td_model_free(m);
    td_ctx_free(ctx);
}

static void test_external(void) {
    td_ctx *ctx = td_ctx_new();
    const char *tmp = td_test_env("TD_TMP", "/tmp");
    char dir[512], path[600], data[600];
    snprintf(dir, sizeof dir, "%s/test_onnx_io_ext_%d", tmp, (int)getpid());
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    snprintf(data, sizeof data, "%s/weights.bin", dir);
    td_model *m = build_model();
    /* a bigger initializer so that the threshold matters */
    float big[300];
    for (int i = 0; i < 300; i++)
        big[i] = (float)i * 0.25f;
    int64_t bd[1] = {300};
    td_tensor *t = NULL;
    CHECK(td_tensor_new_copy(ctx, "big", TD_F32, 1, bd, big, sizeof big, &t) == TD_OK);
    CHECK(td_graph_set_initializer(ctx, m->graph, val(m->graph, "big"), t) == TD_OK);
    td_onnx_save_options o = {.external = TD_ONNX_EXTERNAL_ALWAYS, .data_file = "weights.bin", .size_threshold = 100};
    CHECK_MSG(td_onnx_save(ctx, m, path, &o) == TD_OK, "%s", td_error_message(ctx));
    struct stat st;
    CHECK(stat(data, &st) == 0 && st.st_size == (off_t)sizeof big); /* only "big"; "w" (16 B) stays inline */
    td_model *r = NULL;
    CHECK_MSG(td_onnx_load(ctx, path, &r) == TD_OK, "%s", td_error_message(ctx));
    if (r) {
        td_value *v = td_graph_find(r->graph, "big");
        CHECK(v && v->initializer && v->initializer->external_location &&
              !strcmp(v->initializer->external_location, "weights.bin"));
        CHECK(v && v->initializer && v->initializer->map != NULL); /* mapped, not copied */
        CHECK(v && v->initializer && memcmp(v->initializer->data, big, sizeof big) == 0);
        td_value *w = td_graph_find(r->graph, "w");
        CHECK(w && w->initializer && !w->initializer->external_location);
        CHECK(r->base_dir && !strcmp(r->base_dir, dir));
        /* save it back inline: data comes from the mapping */
        char inl[600];
        snprintf(inl, sizeof inl, "%s/inline.onnx", dir);
        td_onnx_save_options never = {.external = TD_ONNX_EXTERNAL_NEVER};
        CHECK(td_onnx_save(ctx, r, inl, &never) == TD_OK);
        td_model *r2 = NULL;
        CHECK(td_onnx_load(ctx, inl, &r2) == TD_OK);
        td_value *v2 = r2 ? td_graph_find(r2->graph, "big") : NULL;
        CHECK(v2 && v2->initializer && !v2->initializer->external_location &&
              memcmp(v2->initializer->data, big, sizeof big) == 0);
        td_model_free(r2);
        unlink(inl);
        /* AUTO with a tiny limit switches to external data by itself */
        td_onnx_save_options autoo = {.auto_limit = 64, .data_file = "auto.data"};
        snprintf(inl, sizeof inl, "%s/auto.onnx", dir);
        CHECK(td_onnx_save(ctx, r, inl, &autoo) == TD_OK);
        snprintf(data, sizeof data, "%s/auto.data", dir);
        CHECK(td_is_file(data));
        unlink(inl);
        unlink(data);
    }
    td_model_free(r);
    /* bad data file names */
    td_onnx_save_options bad = {.external = TD_ONNX_EXTERNAL_ALWAYS, .data_file = "../escape.bin"};
    CHECK(td_onnx_save(ctx, m, path, &bad) != TD_OK && contains(td_error_message(ctx), ".."));
    snprintf(data, sizeof data, "%s/weights.bin", dir);
    unlink(data);
    unlink(path);
    rmdir(dir);
    td_model_free(m);
    td_ctx_free(ctx);
}

/* ---- validation ---- */

static void test_check_errors(void) {
    td_ctx *ctx = td_ctx_new();
    /* cycle: a = Relu(b), b = Relu(a) */
    td_model *m = td_model_new();
    td_model_set_opset(ctx, m, "", 17);
    td_graph *g = m->graph;
    td_value *x = val(g, "x"), *a = val(g, "a"), *b = val(g, "b");
    td_graph_add_input(ctx, g, x);
    td_node *n1 = node1(g, "Relu", "", "first", x, NULL, a);
    node1(g, "Relu", "", "second", a, NULL, b);
    CHECK(td_node_set_input(ctx, n1, 0, b) == TD_OK);
    td_graph_add_output(ctx, g, b);
    CHECK(td_onnx_check(ctx, m) == TD_ERR_GRAPH && contains(td_error_message(ctx), "cycle") &&
          contains(td_error_message(ctx), "Relu"));
    td_model_free(m);

    /* missing producer */
    m = td_model_new();
    td_model_set_opset(ctx, m, "", 17);
    g = m->graph;
    x = val(g, "x"), a = val(g, "ghost"), b = val(g, "out");
    td_graph_add_input(ctx, g, x);
    node1(g, "Add", "", "adder", x, a, b);
    td_graph_add_output(ctx, g, b);
    CHECK(td_onnx_check(ctx, m) == TD_ERR_GRAPH && contains(td_error_message(ctx), "'ghost' has no producer") &&
          contains(td_error_message(ctx), "adder") && contains(td_error_message(ctx), "Add"));

    /* missing opset: none at all, then a custom domain without an import */
    td_opset *saved = m->opsets;
    m->opsets = NULL;
    m->n_opsets = 0;
    td_value_replace_uses(ctx, a, x);
    CHECK(td_onnx_check(ctx, m) == TD_ERR_FORMAT && contains(td_error_message(ctx), "no opset_import"));
    m->opsets = saved;
    m->n_opsets = 1;
    CHECK_MSG(td_onnx_check(ctx, m) == TD_OK, "%s", td_error_message(ctx));
    td_value *c = val(g, "c");
    node1(g, "Fancy", "com.example", "fancy", b, NULL, c);
    CHECK(td_onnx_check(ctx, m) == TD_ERR_GRAPH && contains(td_error_message(ctx), "com.example") &&
          contains(td_error_message(ctx), "fancy"));
    td_model_set_opset(ctx, m, "com.example", 1);
    CHECK(td_onnx_check(ctx, m) == TD_OK);
    /* node output that is also a graph input */
    td_value *d = val(g, "d");
    td_graph_add_input(ctx, g, d);
    node1(g, "Relu", "", "overwrites_input", x, NULL, d);
    CHECK(td_onnx_check(ctx, m) == TD_ERR_GRAPH && contains(td_error_message(ctx), "SSA"));
    m->ir_version = 0;
    CHECK(td_onnx_check(ctx, m) == TD_ERR_FORMAT && contains(td_error_message(ctx), "ir_version"));
    td_model_free(m);
    td_ctx_free(ctx);
}

/* Hand-built protobuf for cases the IR API refuses to build. */
typedef struct pb_model {
    Onnx__ModelProto m;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto op;
    Onnx__OperatorSetIdProto *ops[1];
    Onnx__NodeProto nodes[3];
    Onnx__NodeProto *node_ptrs[3];
    Onnx__ValueInfoProto in, out;
    Onnx__ValueInfoProto *in_ptrs[1], *out_ptrs[1];
    Onnx__TensorProto init;
    Onnx__TensorProto *init_ptrs[1];
    char *io[3][2];
} pb_model;

static void pb_init(pb_model *p, int n_nodes) {
    memset(p, 0, sizeof *p);
    onnx__model_proto__init(&p->m);
    onnx__graph_proto__init(&p->g);
    onnx__operator_set_id_proto__init(&p->op);
    onnx__value_info_proto__init(&p->in);
    onnx__value_info_proto__init(&p->out);
    p->op.domain = "";
    p->op.has_version = 1;
    p->op.version = 17;
    p->ops[0] = &p->op;
    p->m.has_ir_version = 1;
    p->m.ir_version = 8;
    p->m.n_opset_import = 1;
    p->m.opset_import = p->ops;
    p->m.graph = &p->g;
    p->g.name = "g";
    p->in.name = "x";
    p->out.name = "y";
    p->in_ptrs[0] = &p->in;
    p->out_ptrs[0] = &p->out;
    p->g.n_input = 1;
    p->g.input = p->in_ptrs;
    p->g.n_output = 1;
    p->g.output = p->out_ptrs;
    static char *names[3] = {"n0", "n1", "n2"};
    for (int i = 0; i < n_nodes; i++) {
        onnx__node_proto__init(&p->nodes[i]);
        p->nodes[i].name = names[i];
        p->nodes[i].op_type = "Relu";
        p->nodes[i].n_input = 1;
        p->nodes[i].input = &p->io[i][0];
        p->nodes[i].n_output = 1;
        p->nodes[i].output = &p->io[i][1];
        p->node_ptrs[i] = &p->nodes[i];
    }
    p->g.n_node = (size_t)n_nodes;
    p->g.node = p->node_ptrs;
}

static td_status pb_load(td_ctx *ctx, pb_model *p) {
    size_t len = onnx__model_proto__get_packed_size(&p->m);
    uint8_t *buf = malloc(len);
    onnx__model_proto__pack(&p->m, buf);
    td_model *m = NULL;
    td_status s = td_onnx_load_buffer(ctx, buf, len, NULL, &m);
    td_model_free(m);
    free(buf);
    return s;
}

static void test_load_errors(void) {
    td_ctx *ctx = td_ctx_new();
    pb_model p;
    /* two nodes produce y */
    pb_init(&p, 2);
    p.io[0][0] = "x", p.io[0][1] = "y", p.io[1][0] = "x", p.io[1][1] = "y";
    CHECK(pb_load(ctx, &p) == TD_ERR_GRAPH && contains(td_error_message(ctx), "produced twice") &&
          contains(td_error_message(ctx), "'n0'") && contains(td_error_message(ctx), "'n1'"));
    /* not in topological order but acyclic: fine */
    pb_init(&p, 2);
    p.io[0][0] = "t", p.io[0][1] = "y", p.io[1][0] = "x", p.io[1][1] = "t";
    CHECK_MSG(pb_load(ctx, &p) == TD_OK, "%s", td_error_message(ctx));
    /* cycle in the file */
    pb_init(&p, 2);
    p.io[0][0] = "t", p.io[0][1] = "y", p.io[1][0] = "y", p.io[1][1] = "t";
    CHECK(pb_load(ctx, &p) == TD_ERR_GRAPH && contains(td_error_message(ctx), "cycle"));
    /* empty opset_import */
    pb_init(&p, 1);
    p.io[0][0] = "x", p.io[0][1] = "y";
    p.m.n_opset_import = 0;
    CHECK(pb_load(ctx, &p) == TD_ERR_FORMAT && contains(td_error_message(ctx), "opset_import"));
    /* initializer whose data does not match its dims */
    pb_init(&p, 1);
    p.io[0][0] = "w", p.io[0][1] = "y";
    onnx__tensor_proto__init(&p.init);
    int64_t dims[2] = {2, 3};
    float vals[5] = {0};
    p.init.name = "w";
    p.init.has_data_type = 1;
    p.init.data_type = 1;
    p.init.n_dims = 2;
    p.init.dims = dims;
    p.init.n_float_data = 5;
    p.init.float_data = vals;
    p.init_ptrs[0] = &p.init;
    p.g.n_initializer = 1;
    p.g.initializer = p.init_ptrs;
    CHECK(pb_load(ctx, &p) == TD_ERR_FORMAT && contains(td_error_message(ctx), "'w'") &&
          contains(td_error_message(ctx), "float_data has 5 values"));
    /* raw_data of the wrong length */
    uint8_t raw[20] = {0};
    p.init.n_float_data = 0;
    p.init.has_raw_data = 1;
    p.init.raw_data = (ProtobufCBinaryData){sizeof raw, raw};
    CHECK(pb_load(ctx, &p) == TD_ERR_FORMAT && contains(td_error_message(ctx), "raw_data has 20 bytes"));
    /* negative dim */
    dims[0] = -2;
    CHECK(pb_load(ctx, &p) == TD_ERR_FORMAT && contains(td_error_message(ctx), "negative dimension"));
    /* overflowing dims */
    dims[0] = INT64_MAX / 2;
    dims[1] = 1000;
    CHECK(pb_load(ctx, &p) == TD_ERR_FORMAT && contains(td_error_message(ctx), "overflow"));
    /* external data without a base directory */
    dims[0] = 2, dims[1] = 3;
    p.init.has_raw_data = 0;
    p.init.has_data_location = 1;
    p.init.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    Onnx__StringStringEntryProto kv = ONNX__STRING_STRING_ENTRY_PROTO__INIT, *kvs[1] = {&kv};
    kv.key = "location";
    kv.value = "w.bin";
    p.init.n_external_data = 1;
    p.init.external_data = kvs;
    CHECK(pb_load(ctx, &p) == TD_ERR_INVALID_ARGUMENT && contains(td_error_message(ctx), "w.bin"));
    /* garbage */
    td_model *m = NULL;
    CHECK(td_onnx_load_buffer(ctx, "\x0a\xff\xff\xff\xff\x0f", 6, NULL, &m) == TD_ERR_FORMAT && !m);
    td_ctx_free(ctx);
}

int main(void) {
    test_roundtrip();
    test_external();
    test_check_errors();
    test_load_errors();
    return td_test_finish("test_onnx_io");
}
