/* Graph-building helpers: sticky-error node/constant creation and the standard-op
 * patterns of transformer encoders (see builder.h). */
#define _GNU_SOURCE
#include "export/builder.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void td_eb_init(td_eb *b, td_ctx *ctx, td_model *model, int opset, td_dtype compute) {
    memset(b, 0, sizeof *b);
    b->ctx = ctx;
    b->model = model;
    b->g = model->graph;
    b->opset = opset;
    b->compute = compute;
    b->status = TD_OK;
}

td_status td_eb_status(const td_eb *b) { return b->status; }

td_status td_eb_fail(td_eb *b, td_status s) {
    if (b->status == TD_OK)
        b->status = s;
    return b->status;
}

void td_eb_scope(td_eb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->scope, sizeof b->scope, fmt, ap);
    va_end(ap);
}

static bool ok(const td_eb *b) { return b->status == TD_OK; }

/* A fresh value named "<scope>/<hint>" (unique). */
static td_value *new_value(td_eb *b, const char *hint, td_dtype elem) {
    if (!ok(b))
        return NULL;
    char base[512];
    if (b->scope[0])
        snprintf(base, sizeof base, "%s/%s", b->scope, hint);
    else
        snprintf(base, sizeof base, "%s", hint);
    char *name = td_graph_unique_name(b->g, base);
    if (!name) {
        td_eb_fail(b, td_fail_oom(b->ctx, 0, "a value name"));
        return NULL;
    }
    td_value *v = NULL;
    td_status s = td_graph_add_value(b->ctx, b->g, name, &v);
    free(name);
    if (s != TD_OK) {
        td_eb_fail(b, s);
        return NULL;
    }
    v->type.elem = elem; /* dtype tracked for td_eb_cast; shape left unknown (rank -1) */
    return v;
}

/* ---------------- graph interface ---------------- */

td_value *td_eb_input(td_eb *b, const char *name, td_dtype dtype, int rank, const int64_t *dims,
                      const char *const *params) {
    if (!ok(b))
        return NULL;
    td_value *v = NULL;
    td_status s = td_graph_add_value(b->ctx, b->g, name, &v);
    if (s == TD_OK)
        s = td_value_set_tensor_type(b->ctx, v, dtype, rank, dims, params);
    if (s == TD_OK)
        s = td_graph_add_input(b->ctx, b->g, v);
    if (s != TD_OK) {
        td_eb_fail(b, s);
        return NULL;
    }
    return v;
}

td_value *td_eb_output(td_eb *b, td_value *v, const char *name, td_dtype dtype, int rank, const int64_t *dims,
                       const char *const *params) {
    if (!ok(b) || !v)
        return NULL;
    td_value *out = NULL;
    td_status s = td_graph_add_value(b->ctx, b->g, name, &out);
    if (s == TD_OK) {
        td_value *in[1] = {v};
        s = td_graph_add_node(b->ctx, b->g, "Identity", "", name, in, 1, &out, 1, NULL);
    }
    if (s == TD_OK)
        s = td_value_set_tensor_type(b->ctx, out, dtype, rank, dims, params);
    if (s == TD_OK)
        s = td_graph_add_output(b->ctx, b->g, out);
    if (s != TD_OK) {
        td_eb_fail(b, s);
        return NULL;
    }
    return out;
}

/* ---------------- constants ---------------- */

td_value *td_eb_initializer(td_eb *b, td_tensor *t) {
    if (!ok(b) || !t) {
        td_tensor_free(t);
        return NULL;
    }
    td_value *v = NULL;
    td_status s = td_graph_add_value(b->ctx, b->g, t->name, &v);
    if (s != TD_OK) {
        td_tensor_free(t);
        td_eb_fail(b, s);
        return NULL;
    }
    s = td_graph_set_initializer(b->ctx, b->g, v, t); /* takes t */
    if (s != TD_OK) {
        td_eb_fail(b, s);
        return NULL;
    }
    return v;
}

static td_value *const_tensor(td_eb *b, const char *hint, td_dtype dtype, int rank, const int64_t *dims,
                              const void *data, size_t nbytes) {
    td_value *v = new_value(b, hint, dtype);
    if (!v)
        return NULL;
    td_tensor *t = NULL;
    td_status s = td_tensor_new_copy(b->ctx, v->name, dtype, rank, dims, data, nbytes, &t);
    if (s == TD_OK)
        s = td_graph_set_initializer(b->ctx, b->g, v, t);
    if (s != TD_OK) {
        td_eb_fail(b, s);
        return NULL;
    }
    return v;
}

td_value *td_eb_const_i64(td_eb *b, const char *hint, int rank, const int64_t *dims, const int64_t *data) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    return const_tensor(b, hint, TD_I64, rank, dims, data, (size_t)n * sizeof(int64_t));
}

td_value *td_eb_scalar_i64(td_eb *b, const char *hint, int64_t v) {
    return const_tensor(b, hint, TD_I64, 0, NULL, &v, sizeof v);
}

td_value *td_eb_vec_i64(td_eb *b, const char *hint, int n, const int64_t *data) {
    int64_t dims[1] = {n};
    return const_tensor(b, hint, TD_I64, 1, dims, data, (size_t)n * sizeof(int64_t));
}

td_value *td_eb_vec_f32(td_eb *b, const char *hint, int64_t n, const float *data) {
    int64_t dims[1] = {n};
    return const_tensor(b, hint, TD_F32, 1, dims, data, (size_t)n * sizeof(float));
}

td_value *td_eb_scalar_f(td_eb *b, const char *hint, td_dtype dtype, float v) {
    if (dtype == TD_F16) {
        uint16_t h = td_f32_to_f16(v);
        return const_tensor(b, hint, TD_F16, 0, NULL, &h, sizeof h);
    }
    return const_tensor(b, hint, TD_F32, 0, NULL, &v, sizeof v);
}

/* ---------------- nodes ---------------- */

/* Element type of a node's output, tracked so td_eb_cast knows when a Cast is
 * needed: comparisons make bool, Shape makes int64, Where follows its branches,
 * everything else here follows its first input. */
static td_dtype result_dtype(const char *op, td_value *const *in, int n_in) {
    static const char *const bool_ops[] = {"Equal", "Not", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
                                           "And", "Or", "Xor", "IsNaN", "IsInf"};
    for (size_t i = 0; i < sizeof bool_ops / sizeof bool_ops[0]; i++)
        if (strcmp(op, bool_ops[i]) == 0)
            return TD_BOOL;
    if (strcmp(op, "Shape") == 0 || strcmp(op, "Size") == 0)
        return TD_I64;
    if (strcmp(op, "Where") == 0 && n_in == 3)
        return in[1]->type.elem;
    if (strcmp(op, "GatherBlockQuantized") == 0 && n_in >= 3) /* uint8 codes in, the scales' float type out */
        return in[2]->type.elem;
    return n_in > 0 ? in[0]->type.elem : TD_UNDEFINED;
}

td_value *td_eb_op(td_eb *b, const char *op, const char *hint, td_value *const *in, int n_in, td_node **node_out) {
    return td_eb_op_domain(b, "", op, hint, in, n_in, node_out);
}

td_value *td_eb_op_domain(td_eb *b, const char *domain, const char *op, const char *hint, td_value *const *in,
                          int n_in, td_node **node_out) {
    if (node_out)
        *node_out = NULL;
    if (!ok(b))
        return NULL;
    for (int i = 0; i < n_in; i++)
        if (!in[i]) {
            /* a NULL input here means an earlier step failed without recording it */
            td_eb_fail(b, td_fail(b->ctx, TD_ERR_INTERNAL, "export builder: %s node '%s' got a missing input %d",
                                  op, hint, i));
            return NULL;
        }
    td_value *out = new_value(b, hint, result_dtype(op, in, n_in));
    if (!out)
        return NULL;
    td_node *n = NULL;
    td_status s = td_graph_add_node(b->ctx, b->g, op, domain, out->name, in, n_in, &out, 1, &n);
    if (s != TD_OK) {
        td_eb_fail(b, s);
        return NULL;
    }
    if (node_out)
        *node_out = n;
    return out;
}

td_value *td_eb_op1(td_eb *b, const char *op, const char *hint, td_value *a) {
    td_value *in[1] = {a};
    return td_eb_op(b, op, hint, in, 1, NULL);
}

td_value *td_eb_op2(td_eb *b, const char *op, const char *hint, td_value *a, td_value *c) {
    td_value *in[2] = {a, c};
    return td_eb_op(b, op, hint, in, 2, NULL);
}

void td_eb_attr_int(td_eb *b, td_node *n, const char *name, int64_t v) {
    if (ok(b) && n)
        td_eb_fail(b, td_node_add_attr_int(b->ctx, n, name, v));
}

void td_eb_attr_float(td_eb *b, td_node *n, const char *name, float v) {
    if (ok(b) && n)
        td_eb_fail(b, td_node_add_attr_float(b->ctx, n, name, v));
}

void td_eb_attr_ints(td_eb *b, td_node *n, const char *name, const int64_t *v, size_t count) {
    if (ok(b) && n)
        td_eb_fail(b, td_node_add_attr_ints(b->ctx, n, name, v, count));
}

/* ---------------- shape patterns ---------------- */

td_value *td_eb_cast(td_eb *b, td_value *x, td_dtype dtype) {
    if (!ok(b) || !x)
        return NULL;
    if (x->type.elem == dtype)
        return x;
    td_node *n = NULL;
    char hint[64];
    snprintf(hint, sizeof hint, "to_%s", td_dtype_name(dtype));
    td_value *y = td_eb_op(b, "Cast", hint, &x, 1, &n);
    td_eb_attr_int(b, n, "to", dtype);
    if (y)
        y->type.elem = dtype;
    return y;
}

td_value *td_eb_transpose(td_eb *b, td_value *x, const char *hint, int rank, const int64_t *perm) {
    td_node *n = NULL;
    td_value *y = td_eb_op(b, "Transpose", hint, &x, 1, &n);
    td_eb_attr_ints(b, n, "perm", perm, (size_t)rank);
    return y;
}

td_value *td_eb_reshape(td_eb *b, td_value *x, const char *hint, int rank, const int64_t *shape) {
    td_value *s = td_eb_vec_i64(b, "shape", rank, shape);
    return td_eb_op2(b, "Reshape", hint, x, s);
}

td_value *td_eb_unsqueeze(td_eb *b, td_value *x, const char *hint, int n_axes, const int64_t *axes) {
    td_value *a = td_eb_vec_i64(b, "axes", n_axes, axes);
    return td_eb_op2(b, "Unsqueeze", hint, x, a); /* axes is an input since opset 13 */
}

td_value *td_eb_reduce(td_eb *b, const char *op, td_value *x, const char *hint, int n_axes, const int64_t *axes,
                       bool keepdims) {
    /* ReduceSum moved axes to an input in opset 13, the other reductions in 18. */
    bool axes_input = strcmp(op, "ReduceSum") == 0 ? b->opset >= 13 : b->opset >= 18;
    td_node *n = NULL;
    td_value *y;
    if (axes_input) {
        td_value *a = td_eb_vec_i64(b, "axes", n_axes, axes);
        td_value *in[2] = {x, a};
        y = td_eb_op(b, op, hint, in, 2, &n);
    } else {
        y = td_eb_op(b, op, hint, &x, 1, &n);
        td_eb_attr_ints(b, n, "axes", axes, (size_t)n_axes);
    }
    td_eb_attr_int(b, n, "keepdims", keepdims ? 1 : 0);
    return y;
}

td_value *td_eb_select(td_eb *b, td_value *x, const char *hint, int axis, int64_t index) {
    td_value *idx = td_eb_scalar_i64(b, "index", index);
    td_node *n = NULL;
    td_value *in[2] = {x, idx};
    td_value *y = td_eb_op(b, "Gather", hint, in, 2, &n);
    td_eb_attr_int(b, n, "axis", axis);
    return y;
}

/* ---------------- layers ---------------- */

td_value *td_eb_linear(td_eb *b, td_value *x, td_value *weight, td_value *bias, const char *hint) {
    static const int64_t perm[2] = {1, 0};
    char h[128];
    snprintf(h, sizeof h, "%s_wT", hint);
    td_value *wt = td_eb_transpose(b, weight, h, 2, perm); /* (in, out) */
    snprintf(h, sizeof h, "%s_matmul", hint);
    td_value *y = td_eb_op2(b, "MatMul", h, x, wt);
    if (!bias)
        return y;
    snprintf(h, sizeof h, "%s", hint);
    return td_eb_op2(b, "Add", h, y, bias);
}

td_value *td_eb_layer_norm(td_eb *b, td_value *x, td_value *gamma, td_value *beta, float eps, const char *hint) {
    if (!ok(b) || !x)
        return NULL;
    td_dtype in_dtype = x->type.elem;
    td_value *x32 = td_eb_cast(b, x, TD_F32);
    td_value *y;
    if (b->opset >= 17) {
        td_node *n = NULL;
        td_value *in[3] = {x32, gamma, beta};
        y = td_eb_op(b, "LayerNormalization", hint, in, 3, &n);
        td_eb_attr_int(b, n, "axis", -1);
        td_eb_attr_float(b, n, "epsilon", eps);
    } else {
        /* (x - mean) / sqrt(var + eps) * gamma + beta, biased variance like torch */
        static const int64_t last[1] = {-1};
        td_value *mean = td_eb_reduce(b, "ReduceMean", x32, "ln_mean", 1, last, true);
        td_value *d = td_eb_op2(b, "Sub", "ln_centered", x32, mean);
        td_value *sq = td_eb_op2(b, "Mul", "ln_sq", d, d);
        td_value *var = td_eb_reduce(b, "ReduceMean", sq, "ln_var", 1, last, true);
        td_value *ve = td_eb_op2(b, "Add", "ln_var_eps", var, td_eb_scalar_f(b, "ln_eps", TD_F32, eps));
        td_value *sd = td_eb_op1(b, "Sqrt", "ln_std", ve);
        td_value *nrm = td_eb_op2(b, "Div", "ln_norm", d, sd);
        td_value *sc = td_eb_op2(b, "Mul", "ln_scaled", nrm, gamma);
        y = td_eb_op2(b, "Add", hint, sc, beta);
    }
    if (y)
        y->type.elem = TD_F32;
    return td_eb_cast(b, y, in_dtype);
}

/* ---------------- activations ---------------- */

/* Names follow transformers' ACT2FN table. prelu and xielu carry learned
 * parameters outside the config and are not expressible here. */
static const char *const k_activations[] = {
    "gelu",  "gelu_python", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate", "gelu_10",
    "quick_gelu", "relu", "relu6", "relu2", "leaky_relu", "silu", "swish", "sigmoid", "tanh", "mish",
    "linear", "laplace",
};

bool td_eb_activation_supported(const char *name) {
    for (size_t i = 0; i < sizeof k_activations / sizeof k_activations[0]; i++)
        if (strcmp(name, k_activations[i]) == 0)
            return true;
    return false;
}

const char *td_eb_activation_names(void) {
    return "gelu, gelu_python, gelu_new, gelu_pytorch_tanh, gelu_fast, gelu_accurate, gelu_10, quick_gelu, relu, "
           "relu6, relu2, leaky_relu, silu, swish, sigmoid, tanh, mish, linear, laplace";
}

/* 0.5 * x * (1 + erf(x / sqrt(2))) */
static td_value *gelu_erf(td_eb *b, td_value *x) {
    td_dtype t = x->type.elem;
    td_value *s = td_eb_op2(b, "Mul", "gelu_scaled", x, td_eb_scalar_f(b, "inv_sqrt2", t, (float)M_SQRT1_2));
    td_value *e = td_eb_op1(b, "Erf", "gelu_erf", s);
    td_value *p = td_eb_op2(b, "Add", "gelu_1p", e, td_eb_scalar_f(b, "one", t, 1.0f));
    td_value *h = td_eb_op2(b, "Mul", "gelu_half_x", x, td_eb_scalar_f(b, "half", t, 0.5f));
    return td_eb_op2(b, "Mul", "gelu", h, p);
}

/* 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) */
static td_value *gelu_tanh(td_eb *b, td_value *x) {
    td_dtype t = x->type.elem;
    td_value *x2 = td_eb_op2(b, "Mul", "gelu_x2", x, x);
    td_value *x3 = td_eb_op2(b, "Mul", "gelu_x3", x2, x);
    td_value *c3 = td_eb_op2(b, "Mul", "gelu_cx3", x3, td_eb_scalar_f(b, "gelu_c", t, 0.044715f));
    td_value *in = td_eb_op2(b, "Add", "gelu_inner", x, c3);
    td_value *sc = td_eb_op2(b, "Mul", "gelu_scaled", in,
                             td_eb_scalar_f(b, "sqrt_2_over_pi", t, (float)sqrt(2.0 / M_PI)));
    td_value *th = td_eb_op1(b, "Tanh", "gelu_tanh", sc);
    td_value *p = td_eb_op2(b, "Add", "gelu_1p", th, td_eb_scalar_f(b, "one", t, 1.0f));
    td_value *h = td_eb_op2(b, "Mul", "gelu_half_x", x, td_eb_scalar_f(b, "half", t, 0.5f));
    return td_eb_op2(b, "Mul", "gelu", h, p);
}

static td_value *clip(td_eb *b, td_value *x, float lo, float hi, const char *hint) {
    td_dtype t = x->type.elem;
    td_value *in[3] = {x, td_eb_scalar_f(b, "clip_min", t, lo), td_eb_scalar_f(b, "clip_max", t, hi)};
    return td_eb_op(b, "Clip", hint, in, 3, NULL);
}

static td_value *x_sigmoid(td_eb *b, td_value *x, float k, const char *hint) {
    td_value *arg = x;
    if (k != 1.0f)
        arg = td_eb_op2(b, "Mul", "sig_arg", x, td_eb_scalar_f(b, "sig_k", x->type.elem, k));
    td_value *s = td_eb_op1(b, "Sigmoid", "sigmoid", arg);
    return td_eb_op2(b, "Mul", hint, x, s);
}

td_value *td_eb_activation(td_eb *b, const char *name, td_value *x) {
    if (!ok(b) || !x)
        return NULL;
    td_dtype t = x->type.elem;
    if (!strcmp(name, "gelu") || !strcmp(name, "gelu_python"))
        return gelu_erf(b, x);
    if (!strcmp(name, "gelu_new") || !strcmp(name, "gelu_pytorch_tanh") || !strcmp(name, "gelu_fast") ||
        !strcmp(name, "gelu_accurate"))
        return gelu_tanh(b, x);
    if (!strcmp(name, "gelu_10"))
        return clip(b, gelu_erf(b, x), -10.0f, 10.0f, "gelu_10");
    if (!strcmp(name, "quick_gelu"))
        return x_sigmoid(b, x, 1.702f, "quick_gelu");
    if (!strcmp(name, "silu") || !strcmp(name, "swish"))
        return x_sigmoid(b, x, 1.0f, "silu");
    if (!strcmp(name, "relu"))
        return td_eb_op1(b, "Relu", "relu", x);
    if (!strcmp(name, "relu6"))
        return clip(b, x, 0.0f, 6.0f, "relu6");
    if (!strcmp(name, "relu2")) {
        td_value *r = td_eb_op1(b, "Relu", "relu", x);
        return td_eb_op2(b, "Mul", "relu2", r, r);
    }
    if (!strcmp(name, "leaky_relu")) {
        td_node *n = NULL;
        td_value *y = td_eb_op(b, "LeakyRelu", "leaky_relu", &x, 1, &n);
        td_eb_attr_float(b, n, "alpha", 0.01f); /* torch.nn.LeakyReLU default slope */
        return y;
    }
    if (!strcmp(name, "sigmoid"))
        return td_eb_op1(b, "Sigmoid", "sigmoid", x);
    if (!strcmp(name, "tanh"))
        return td_eb_op1(b, "Tanh", "tanh", x);
    if (!strcmp(name, "mish")) {
        td_value *sp = td_eb_op1(b, "Softplus", "softplus", x);
        return td_eb_op2(b, "Mul", "mish", x, td_eb_op1(b, "Tanh", "mish_tanh", sp));
    }
    if (!strcmp(name, "linear"))
        return x;
    if (!strcmp(name, "laplace")) {
        /* 0.5 * (1 + erf((x - mu) / (sigma * sqrt(2)))), mu = 0.707107, sigma = 0.282095 */
        td_value *d = td_eb_op2(b, "Sub", "laplace_centered", x, td_eb_scalar_f(b, "laplace_mu", t, 0.707107f));
        td_value *s = td_eb_op2(b, "Mul", "laplace_scaled", d,
                                td_eb_scalar_f(b, "laplace_inv", t, (float)(1.0 / (0.282095 * M_SQRT2))));
        td_value *e = td_eb_op1(b, "Erf", "laplace_erf", s);
        td_value *p = td_eb_op2(b, "Add", "laplace_1p", e, td_eb_scalar_f(b, "one", t, 1.0f));
        return td_eb_op2(b, "Mul", "laplace", p, td_eb_scalar_f(b, "half", t, 0.5f));
    }
    td_eb_fail(b, td_fail(b->ctx, TD_ERR_UNSUPPORTED, "activation '%s' is not supported (supported: %s)", name,
                          td_eb_activation_names()));
    return NULL;
}

/* ---------------- attention ---------------- */

td_value *td_eb_attention_bias(td_eb *b, td_value *mask) {
    static const int64_t axes[2] = {1, 2};
    td_value *m = td_eb_cast(b, mask, TD_F32);                                              // (batch, seq)
    td_value *inv = td_eb_op2(b, "Sub", "mask_inverted", td_eb_scalar_f(b, "one", TD_F32, 1.0f), m);
    td_value *bias = td_eb_op2(b, "Mul", "mask_bias", inv, td_eb_scalar_f(b, "f32_min", TD_F32, -FLT_MAX));
    td_value *y = td_eb_unsqueeze(b, bias, "attention_bias", 2, axes); // (batch, 1, 1, seq)
    if (y)
        y->type.elem = TD_F32;
    return y;
}

td_value *td_eb_attention(td_eb *b, td_value *q, td_value *k, td_value *v, td_value *mask_bias, int64_t heads,
                          int64_t head_dim) {
    if (!ok(b) || !q)
        return NULL;
    td_dtype t = q->type.elem;
    const int64_t split[4] = {0, 0, heads, head_dim};
    static const int64_t bhsd[4] = {0, 2, 1, 3}, bhds[4] = {0, 2, 3, 1};
    /* scale q before the product (same math as scaling the scores, but keeps fp16 scores small) */
    td_value *scale = td_eb_scalar_f(b, "attn_scale", t, (float)(1.0 / sqrt((double)head_dim)));
    td_value *qs = td_eb_op2(b, "Mul", "q_scaled", q, scale);
    td_value *qh = td_eb_transpose(b, td_eb_reshape(b, qs, "q_split", 4, split), "q_heads", 4, bhsd); // (b, h, s, d)
    td_value *kh = td_eb_transpose(b, td_eb_reshape(b, k, "k_split", 4, split), "k_heads_t", 4, bhds); // (b, h, d, s)
    td_value *vh = td_eb_transpose(b, td_eb_reshape(b, v, "v_split", 4, split), "v_heads", 4, bhsd);  // (b, h, s, d)
    td_value *scores = td_eb_op2(b, "MatMul", "attn_scores", qh, kh);                                  // (b, h, s, s)
    td_value *masked = td_eb_op2(b, "Add", "attn_masked", td_eb_cast(b, scores, TD_F32), mask_bias);
    td_node *n = NULL;
    td_value *probs = td_eb_op(b, "Softmax", "attn_probs", &masked, 1, &n);
    td_eb_attr_int(b, n, "axis", -1);
    td_value *ctxv = td_eb_op2(b, "MatMul", "attn_context", td_eb_cast(b, probs, t), vh);  // (b, h, s, d)
    td_value *merged = td_eb_transpose(b, ctxv, "attn_context_t", 4, bhsd);                // (b, s, h, d)
    const int64_t joined[3] = {0, 0, heads * head_dim};
    return td_eb_reshape(b, merged, "attn_merged", 3, joined);                             // (b, s, hidden)
}
