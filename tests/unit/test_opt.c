/* Optimizer on IR-built graphs: pass manager, cleanup passes, constant folding
 * (kernels and size limit), CSE, shape inference, fusions (and a perturbed
 * graph they must leave alone), fp16 conversion. */
#include "onnx/ir.h"
#include "opt/fold_kernels.h"
#include "opt/optimize.h"
#include "test.h"

#include <math.h>
#include <string.h>

static td_value *val(td_graph *g, const char *name) {
    td_value *v = NULL;
    CHECK(td_graph_get_value(NULL, g, name, &v) == TD_OK);
    return v;
}

static td_node *node(td_graph *g, const char *op, const char *domain, td_value *a, td_value *b, td_value *out) {
    td_value *ins[2] = {a, b};
    td_node *n = NULL;
    CHECK(td_graph_add_node(NULL, g, op, domain, NULL, ins, b ? 2 : 1, &out, 1, &n) == TD_OK);
    return n;
}

static td_value *cf(td_graph *g, const char *name, int rank, const int64_t *dims, const float *data) {
    td_value *v = val(g, name);
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    td_tensor *t = NULL;
    CHECK(td_tensor_new_copy(NULL, name, TD_F32, rank, dims, data, sizeof(float) * (size_t)n, &t) == TD_OK);
    CHECK(td_graph_set_initializer(NULL, g, v, t) == TD_OK);
    return v;
}

static td_value *ci(td_graph *g, const char *name, int rank, const int64_t *dims, const int64_t *data) {
    td_value *v = val(g, name);
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    td_tensor *t = NULL;
    CHECK(td_tensor_new_copy(NULL, name, TD_I64, rank, dims, data, sizeof(int64_t) * (size_t)n, &t) == TD_OK);
    CHECK(td_graph_set_initializer(NULL, g, v, t) == TD_OK);
    return v;
}

static td_value *input(td_graph *g, const char *name, td_dtype dt, int rank, const int64_t *dims,
                       const char *const *params) {
    td_value *v = val(g, name);
    CHECK(td_value_set_tensor_type(NULL, v, dt, rank, dims, params) == TD_OK);
    CHECK(td_graph_add_input(NULL, g, v) == TD_OK);
    return v;
}

static int count_op(const td_graph *g, const char *op) {
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++)
        c += !g->nodes[i]->dead && strcmp(g->nodes[i]->op_type, op) == 0;
    return c;
}

static td_status run(td_model *m, const char *passes, td_opt_precision prec, td_opt_report *r) {
    td_ctx *ctx = td_ctx_new();
    td_opt_options o;
    td_opt_options_default(&o);
    o.passes = passes;
    o.precision = prec;
    td_status s = td_optimize(ctx, m, &o, r);
    if (s != TD_OK)
        fprintf(stderr, "optimize: %s\n", td_error_message(ctx));
    td_ctx_free(ctx);
    return s;
}

static void test_cleanup_and_report(void) {
    td_model *m = td_model_new();
    td_graph *g = m->graph;
    int64_t d[2] = {2, 3};
    td_value *x = input(g, "x", TD_F32, 2, d, NULL);
    td_value *a = val(g, "a"), *b = val(g, "b"), *c = val(g, "c"), *dead = val(g, "dead"), *y = val(g, "y");
    node(g, "Identity", "", x, NULL, a);
    node(g, "Dropout", "", a, NULL, b);
    node(g, "Relu", "", b, NULL, c);
    node(g, "Exp", "", x, NULL, dead); /* nobody reads it */
    node(g, "Relu", "", b, NULL, y);   /* same as c: CSE merges, y is a graph output so y's node stays */
    td_value *z = val(g, "z");
    node(g, "Add", "", c, y, z);
    CHECK(td_graph_add_output(NULL, g, z) == TD_OK);
    float unused[1] = {1};
    int64_t one[1] = {1};
    cf(g, "unused_w", 1, one, unused);
    td_opt_report r;
    CHECK(run(m, "dce,eliminate,cse", TD_OPT_FP32, &r) == TD_OK);
    CHECK_MSG(td_graph_live_nodes(g) == 2, "live nodes %d", td_graph_live_nodes(g));
    CHECK(count_op(g, "Identity") == 0 && count_op(g, "Dropout") == 0 && count_op(g, "Exp") == 0);
    CHECK(g->n_initializers == 0);
    CHECK(r.nodes_before == 6 && r.nodes_after == 2 && r.n_passes == 3);
    int dce_changes = -1;
    for (int i = 0; i < r.n_passes; i++)
        if (strcmp(r.passes[i].name, "dce") == 0) {
            dce_changes = r.passes[i].changes;
            CHECK(r.passes[i].runs >= 2); /* re-run after rewrites */
        }
    CHECK(dce_changes >= 2);
    /* unknown pass names are refused with the list of known ones */
    td_ctx *ctx = td_ctx_new();
    td_opt_options o;
    td_opt_options_default(&o);
    o.passes = "dce,nosuchpass";
    CHECK(td_optimize(ctx, m, &o, NULL) == TD_ERR_INVALID_ARGUMENT);
    CHECK(strstr(td_error_message(ctx), "nosuchpass") && strstr(td_error_message(ctx), "layernorm"));
    o.passes = "attention";
    o.target = TD_OPT_TARGET_PORTABLE;
    CHECK(td_optimize(ctx, m, &o, NULL) == TD_ERR_INVALID_ARGUMENT);
    td_ctx_free(ctx);
    td_model_free(m);
}

/* Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])) on a static x folds
 * completely, and the Reshape is then recognised as a no-op. */
static void test_fold_shape_arithmetic(void) {
    td_model *m = td_model_new();
    td_graph *g = m->graph;
    int64_t d[2] = {4, 6};
    td_value *x = input(g, "x", TD_F32, 2, d, NULL);
    td_value *sh = val(g, "sh"), *g0 = val(g, "g0"), *u = val(g, "u"), *cat = val(g, "cat"), *r = val(g, "r");
    td_value *y = val(g, "y");
    int64_t zero = 0, axes0[1] = {0}, one[1] = {1}, minus1[1] = {-1};
    node(g, "Shape", "", x, NULL, sh);
    node(g, "Gather", "", sh, ci(g, "idx", 0, NULL, &zero), g0);
    node(g, "Unsqueeze", "", g0, ci(g, "axes", 1, one, axes0), u);
    node(g, "Concat", "", u, ci(g, "m1", 1, one, minus1), cat);
    CHECK(td_node_add_attr_int(NULL, cat->producer, "axis", 0) == TD_OK);
    node(g, "Reshape", "", x, cat, r);
    node(g, "Relu", "", r, NULL, y);
    CHECK(td_graph_add_output(NULL, g, y) == TD_OK);
    CHECK(run(m, "dce,eliminate,fold,cse,shape", TD_OPT_FP32, NULL) == TD_OK);
    CHECK_MSG(td_graph_live_nodes(g) == 1 && count_op(g, "Relu") == 1, "live %d", td_graph_live_nodes(g));
    CHECK(g->nodes[0]->inputs[0] == x);
    td_model_free(m);
}

static void test_fold_kernels(void) {
    td_ctx *ctx = td_ctx_new();
    td_model *m = td_model_new();
    td_graph *g = m->graph;
    /* Slice with negative start and step, Transpose, Where broadcast, Range, Cast */
    int64_t d6[1] = {6}, data[6] = {0, 1, 2, 3, 4, 5};
    td_tensor *x = NULL, *st = NULL, *en = NULL, *ax = NULL, *sp = NULL, *out[1] = {NULL};
    int64_t s0 = -1, e0 = -100, a0 = 0, p0 = -2, one[1] = {1};
    td_tensor_new_copy(ctx, "x", TD_I64, 1, d6, data, sizeof data, &x);
    td_tensor_new_copy(ctx, "s", TD_I64, 1, one, &s0, 8, &st);
    td_tensor_new_copy(ctx, "e", TD_I64, 1, one, &e0, 8, &en);
    td_tensor_new_copy(ctx, "a", TD_I64, 1, one, &a0, 8, &ax);
    td_tensor_new_copy(ctx, "p", TD_I64, 1, one, &p0, 8, &sp);
    td_value *vo = val(g, "o");
    td_node *n = node(g, "Slice", "", NULL, NULL, vo);
    const td_tensor *ins[5] = {x, st, en, ax, sp};
    CHECK(td_fold_eval(NULL, ctx, n, ins, 5, out, 1, 100) == TD_OK);
    CHECK(out[0] && td_tensor_numel(out[0]) == 3);
    if (out[0]) {
        const int64_t *o = out[0]->data;
        CHECK(o[0] == 5 && o[1] == 3 && o[2] == 1);
    }
    td_tensor_free(out[0]);
    /* Transpose (2,3) -> (3,2) */
    float f6[6] = {1, 2, 3, 4, 5, 6};
    int64_t d23[2] = {2, 3};
    td_tensor *tf = NULL;
    td_tensor_new_copy(ctx, "t", TD_F32, 2, d23, f6, sizeof f6, &tf);
    td_value *vt = val(g, "to");
    td_node *tn = node(g, "Transpose", "", NULL, NULL, vt);
    const td_tensor *tin[1] = {tf};
    CHECK(td_fold_eval(NULL, ctx, tn, tin, 1, out, 1, 100) == TD_OK);
    if (out[0]) {
        const float *o = out[0]->data;
        CHECK(out[0]->dims[0] == 3 && out[0]->dims[1] == 2 && o[0] == 1 && o[1] == 4 && o[2] == 2 && o[5] == 6);
    }
    td_tensor_free(out[0]);
    /* Cast float -> int64 truncates, Div of ints truncates toward zero */
    td_value *vc = val(g, "co");
    td_node *cn = node(g, "Cast", "", NULL, NULL, vc);
    td_node_add_attr_int(ctx, cn, "to", TD_I64);
    float neg[2] = {-2.7f, 3.9f};
    int64_t d2[1] = {2};
    td_tensor *tc = NULL;
    td_tensor_new_copy(ctx, "c", TD_F32, 1, d2, neg, sizeof neg, &tc);
    const td_tensor *cin[1] = {tc};
    CHECK(td_fold_eval(NULL, ctx, cn, cin, 1, out, 1, 100) == TD_OK);
    if (out[0]) {
        const int64_t *o = out[0]->data;
        CHECK(out[0]->dtype == TD_I64 && o[0] == -2 && o[1] == 3);
    }
    td_tensor_free(out[0]);
    /* the size limit is a refusal, not an error */
    td_value *vr = val(g, "ro");
    td_node *rn = node(g, "Range", "", NULL, NULL, vr);
    int64_t r0 = 0, r1 = 1000, r2 = 1;
    td_tensor *ra = NULL, *rb = NULL, *rc = NULL;
    td_tensor_new_copy(ctx, "r0", TD_I64, 0, NULL, &r0, 8, &ra);
    td_tensor_new_copy(ctx, "r1", TD_I64, 0, NULL, &r1, 8, &rb);
    td_tensor_new_copy(ctx, "r2", TD_I64, 0, NULL, &r2, 8, &rc);
    const td_tensor *rin[3] = {ra, rb, rc};
    CHECK(td_fold_eval(NULL, ctx, rn, rin, 3, out, 1, 999) == TD_ERR_UNSUPPORTED);
    CHECK(td_fold_eval(NULL, ctx, rn, rin, 3, out, 1, 1000) == TD_OK && td_tensor_numel(out[0]) == 1000);
    td_tensor_free(out[0]);
    /* integer division by zero is refused */
    td_value *vd = val(g, "do");
    td_node *dn = node(g, "Div", "", NULL, NULL, vd);
    const td_tensor *din[2] = {ra, ra};
    CHECK(td_fold_eval(NULL, ctx, dn, din, 2, out, 1, 10) == TD_ERR_UNSUPPORTED);
    td_tensor *all[] = {x, st, en, ax, sp, tf, tc, ra, rb, rc};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        td_tensor_free(all[i]);
    td_model_free(m);
    td_ctx_free(ctx);
}

/* x: (batch, seq, 8) -> erf GELU decomposition; half = 0.5 unless perturbed. */
static td_model *gelu_graph(float half) {
    td_model *m = td_model_new();
    td_graph *g = m->graph;
    int64_t d[3] = {-1, -1, 8};
    const char *p[3] = {"batch", "sequence", NULL};
    td_value *x = input(g, "x", TD_F32, 3, d, p);
    float sq2 = 1.4142135f, onef = 1.0f;
    td_value *dv = val(g, "d"), *e = val(g, "e"), *a = val(g, "a"), *m1 = val(g, "m1"), *y = val(g, "y");
    node(g, "Div", "", x, cf(g, "c_sqrt2", 0, NULL, &sq2), dv);
    node(g, "Erf", "", dv, NULL, e);
    node(g, "Add", "", e, cf(g, "c_one", 0, NULL, &onef), a);
    node(g, "Mul", "", x, a, m1);
    node(g, "Mul", "", m1, cf(g, "c_half", 0, NULL, &half), y);
    CHECK(td_graph_add_output(NULL, g, y) == TD_OK);
    return m;
}

static void test_gelu_fusion(void) {
    td_model *m = gelu_graph(0.5f);
    td_opt_report r;
    CHECK(run(m, NULL, TD_OPT_FP32, &r) == TD_OK);
    CHECK(td_graph_live_nodes(m->graph) == 1 && count_op(m->graph, "Gelu") == 1);
    CHECK(strcmp(m->graph->outputs[0]->name, "y") == 0 && m->graph->outputs[0]->producer);
    CHECK(td_model_opset(m, "com.microsoft") == 1);
    int gelu = -1;
    for (int k = 0; k < TD_OPT_N_FUSION_KINDS; k++)
        if (strcmp(r.fusion_names[k], "Gelu") == 0)
            gelu = r.fusion_counts[k];
    CHECK(gelu == 1);
    td_model_free(m);
    /* a different constant is a different function: nothing fused */
    m = gelu_graph(0.6f);
    CHECK(run(m, NULL, TD_OPT_FP32, NULL) == TD_OK);
    CHECK(count_op(m->graph, "Gelu") == 0 && td_graph_live_nodes(m->graph) == 5);
    td_model_free(m);
    /* portable target: no contrib ops */
    m = gelu_graph(0.5f);
    td_ctx *ctx = td_ctx_new();
    td_opt_options o;
    td_opt_options_default(&o);
    o.target = TD_OPT_TARGET_PORTABLE;
    CHECK(td_optimize(ctx, m, &o, NULL) == TD_OK);
    CHECK(count_op(m->graph, "Gelu") == 0 && td_model_opset(m, "com.microsoft") == 0);
    td_ctx_free(ctx);
    td_model_free(m);
}

static void test_layernorm_fusion(void) {
    td_model *m = td_model_new();
    CHECK(td_model_set_opset(NULL, m, "", 17) == TD_OK);
    td_graph *g = m->graph;
    int64_t d[3] = {-1, -1, 4}, h[1] = {4}, axes[1] = {-1}, one[1] = {1};
    const char *p[3] = {"batch", "sequence", NULL};
    td_value *x = input(g, "x", TD_F32, 3, d, p);
    float gam[4] = {1, 2, 3, 4}, bet[4] = {0, 1, 0, 1}, two = 2, eps = 1e-6f;
    td_value *mean = val(g, "mean"), *sub = val(g, "sub"), *pw = val(g, "pw"), *var = val(g, "var");
    td_value *ve = val(g, "ve"), *sd = val(g, "sd"), *dv = val(g, "dv"), *ml = val(g, "ml"), *y = val(g, "y");
    td_node *m1 = node(g, "ReduceMean", "", x, NULL, mean);
    td_node_add_attr_ints(NULL, m1, "axes", axes, 1);
    node(g, "Sub", "", x, mean, sub);
    node(g, "Pow", "", sub, cf(g, "two", 0, NULL, &two), pw);
    td_node *m2 = node(g, "ReduceMean", "", pw, NULL, var);
    td_node_add_attr_ints(NULL, m2, "axes", axes, 1);
    node(g, "Add", "", var, cf(g, "eps", 0, NULL, &eps), ve);
    node(g, "Sqrt", "", ve, NULL, sd);
    node(g, "Div", "", sub, sd, dv);
    node(g, "Mul", "", dv, cf(g, "gamma", 1, h, gam), ml);
    node(g, "Add", "", ml, cf(g, "beta", 1, h, bet), y);
    CHECK(td_graph_add_output(NULL, g, y) == TD_OK);
    (void)one;
    CHECK(run(m, "dce,eliminate,fold,cse,shape,layernorm", TD_OPT_FP32, NULL) == TD_OK);
    CHECK_MSG(td_graph_live_nodes(g) == 1 && count_op(g, "LayerNormalization") == 1, "live %d",
              td_graph_live_nodes(g));
    if (count_op(g, "LayerNormalization") == 1) {
        td_node *ln = g->nodes[0];
        CHECK(fabsf(td_node_attr_float(ln, "epsilon", 0) - 1e-6f) < 1e-12f);
        CHECK(ln->inputs[0] == x && strcmp(ln->outputs[0]->name, "y") == 0);
        CHECK(ln->outputs[0]->type.rank == 3); /* type kept */
    }
    td_model_free(m);
}

static void test_fp16(void) {
    td_model *m = td_model_new();
    td_graph *g = m->graph;
    int64_t d[2] = {2, 3}, wd[2] = {3, 3};
    td_value *x = input(g, "x", TD_F32, 2, d, NULL);
    float w[9] = {1, 0, 0, 0, 1e6f, 0, 0, 0, -1e6f};
    td_value *mm = val(g, "mm"), *y = val(g, "y");
    node(g, "MatMul", "", x, cf(g, "w", 2, wd, w), mm);
    td_node *sm = node(g, "Softmax", "", mm, NULL, y);
    td_node_add_attr_int(NULL, sm, "axis", -1);
    CHECK(td_graph_add_output(NULL, g, y) == TD_OK);
    CHECK(run(m, "shape,precision", TD_OPT_FP16, NULL) == TD_OK);
    td_value *wv = td_graph_find(g, "w");
    CHECK(wv && wv->initializer && wv->initializer->dtype == TD_F16);
    if (wv && wv->initializer) { /* clamped to the largest finite half */
        uint16_t h[9];
        memcpy(h, wv->initializer->data, sizeof h);
        CHECK(td_f16_to_f32(h[4]) == 65504.0f && td_f16_to_f32(h[8]) == -65504.0f);
    }
    CHECK(count_op(g, "Cast") == 2); /* x to fp16 for MatMul, MatMul result to fp32 for Softmax */
    CHECK(y->type.elem == TD_F32 && x->type.elem == TD_F32);
    td_model_free(m);
}

int main(void) {
    test_cleanup_and_report();
    test_fold_shape_arithmetic();
    test_fold_kernels();
    test_gelu_fusion();
    test_layernorm_fusion();
    test_fp16();
    return td_test_finish("test_opt");
}
