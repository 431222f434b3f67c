/* Elementwise ops: unary math, binary arithmetic / comparison / logic with
 * numpy broadcasting, Where. Floats (f32/f16/bf16) compute in fp32. */
#include "runtime/cpu/binary.h"
#include "runtime/cpu/kern.h"
#include "runtime/cpu/op_util.h"
#include "runtime/cpu/ops.h"

#include <float.h>

typedef enum ew_code {
    /* unary */
    U_SQRT, U_RECIP, U_ERF, U_TANH, U_SIGMOID, U_RELU, U_NEG, U_EXP, U_LOG, U_COS, U_SIN, U_ABS, U_FLOOR, U_CEIL,
    U_ISNAN, U_NOT, U_GELU_ERF, U_GELU_TANH, U_ISINF, U_SIGN,
    /* binary */
    B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_EQ, B_LT, B_GT, B_LE, B_GE, B_AND, B_OR, B_XOR, B_MAX, B_MIN,
} ew_code;

typedef struct ew_state {
    ew_code code;
    bool detect_neg, detect_pos; /* IsInf */
} ew_state;

static const struct {
    const char *name;
    ew_code code;
} unary_names[] = {
    {"Sqrt", U_SQRT}, {"Reciprocal", U_RECIP}, {"Erf", U_ERF},     {"Tanh", U_TANH}, {"Sigmoid", U_SIGMOID},
    {"Relu", U_RELU}, {"Neg", U_NEG},          {"Exp", U_EXP},     {"Log", U_LOG},   {"Cos", U_COS},
    {"Sin", U_SIN},   {"Abs", U_ABS},          {"Floor", U_FLOOR}, {"Ceil", U_CEIL}, {"IsNaN", U_ISNAN},
    {"Not", U_NOT},   {"Gelu", U_GELU_ERF},    {"IsInf", U_ISINF}, {"Sign", U_SIGN},
    {"Add", B_ADD},   {"Sub", B_SUB},          {"Mul", B_MUL},     {"Div", B_DIV},   {"Pow", B_POW},
    {"Equal", B_EQ},  {"Less", B_LT},          {"Greater", B_GT},  {"LessOrEqual", B_LE},
    {"GreaterOrEqual", B_GE}, {"And", B_AND},  {"Or", B_OR},       {"Xor", B_XOR},   {"Max", B_MAX},
    {"Min", B_MIN},
};

static td_status set_code(td_ctx *ctx, td_rt_node *rn) {
    ew_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    for (size_t i = 0; i < sizeof unary_names / sizeof unary_names[0]; i++)
        if (strcmp(unary_names[i].name, rn->node->op_type) == 0) {
            st->code = unary_names[i].code;
            return TD_OK;
        }
    return td_node_fail(ctx, rn, TD_ERR_INTERNAL, "no elementwise code");
}

static inline float unary_f(ew_code c, float x) {
    switch (c) {
    case U_SQRT: return sqrtf(x);
    case U_RECIP: return 1.0f / x;
    case U_ERF: return erff(x);
    case U_TANH: return tanhf(x);
    case U_SIGMOID: return x >= 0 ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
    case U_RELU: return x > 0 ? x : 0.0f;
    case U_NEG: return -x;
    case U_EXP: return expf(x);
    case U_LOG: return logf(x);
    case U_COS: return cosf(x);
    case U_SIN: return sinf(x);
    case U_ABS: return fabsf(x);
    case U_FLOOR: return floorf(x);
    case U_CEIL: return ceilf(x);
    case U_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case U_GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case U_SIGN: return x > 0 ? 1.0f : (x < 0 ? -1.0f : 0.0f);
    default: return x;
    }
}

/* ---- unary ---- */

static bool is_bool_dt(td_dtype t) { return t == TD_BOOL; }

static td_status unary_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 1, 1, 1, 1));
    TD_TRY(set_code(ctx, rn));
    ew_state *st = rn->state;
    switch (st->code) {
    case U_RELU: case U_NEG: case U_ABS: case U_SIGN:
        TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_num_dt, "float, float16, bfloat16, int32, int64"));
        break;
    case U_NOT:
        TD_TRY(td_check_dtype(ctx, rn, 0, in[0], is_bool_dt, "bool"));
        break;
    default:
        TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_float_dt, "float, float16, bfloat16"));
    }
    if (st->code == U_GELU_ERF) {
        const char *approx = td_node_attr_string(rn->node, "approximate", "none");
        if (strcmp(approx, "tanh") == 0)
            st->code = U_GELU_TANH;
        else if (strcmp(approx, "none") != 0)
            return td_unsupported_attr(ctx, rn, "approximate", approx);
    }
    if (st->code == U_ISINF) {
        st->detect_neg = td_node_attr_int(rn->node, "detect_negative", 1) != 0;
        st->detect_pos = td_node_attr_int(rn->node, "detect_positive", 1) != 0;
    }
    out[0] = (st->code == U_ISNAN || st->code == U_ISINF) ? TD_BOOL : in[0];
    return TD_OK;
}

static td_status same_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    out[0]->rank = in[0]->rank;
    td_memcpy(out[0]->shape, in[0]->shape, sizeof out[0]->shape);
    return TD_OK;
}

static td_status unary_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                            td_rt_env *env) {
    const ew_state *es = rn->state;
    ew_code c = es->code;
    const td_rt_tensor *x = in[0];
    td_rt_tensor *y = out[0];
    int64_t n = td_rt_numel(x);
    if (c == U_NOT) {
        for (int64_t i = 0; i < n; i++)
            ((uint8_t *)y->data)[i] = !((const uint8_t *)x->data)[i];
    } else if (c == U_ISNAN || c == U_ISINF) {
        for (int64_t i = 0; i < n; i++) {
            float v = td_ldf(x->data, x->dtype, i);
            ((uint8_t *)y->data)[i] = c == U_ISNAN ? isnan(v) != 0
                                                   : isinf(v) && (v > 0 ? es->detect_pos : es->detect_neg);
        }
    } else if (td_is_int_dt(x->dtype)) {
        for (int64_t i = 0; i < n; i++) {
            int64_t v = td_ldi(x->data, x->dtype, i), r;
            switch (c) {
            case U_RELU: r = v > 0 ? v : 0; break;
            case U_NEG: r = (int64_t)(0u - (uint64_t)v); break;
            case U_ABS: r = v < 0 ? (int64_t)(0u - (uint64_t)v) : v; break;
            default: r = v > 0 ? 1 : (v < 0 ? -1 : 0); break;
            }
            td_sti(y->data, y->dtype, i, r);
        }
    } else if (x->dtype == TD_F32) {
        const float *xp = x->data;
        float *yp = y->data;
        int ku = c == U_GELU_ERF ? TD_UNARY_GELU_ERF : c == U_GELU_TANH ? TD_UNARY_GELU_TANH : c == U_EXP ? TD_UNARY_EXP
               : c == U_TANH ? TD_UNARY_TANH : c == U_ERF ? TD_UNARY_ERF : c == U_SIGMOID ? TD_UNARY_SIGMOID
               : c == U_RELU ? TD_UNARY_RELU : -1;
        if (ku >= 0)
            td_kern_unary_f32((td_unary)ku, xp, yp, n, env);
        else
            for (int64_t i = 0; i < n; i++)
                yp[i] = unary_f(c, xp[i]);
    } else {
        for (int64_t i = 0; i < n; i++)
            td_stf(y->data, y->dtype, i, unary_f(c, td_ldf(x->data, x->dtype, i)));
    }
    return TD_OK;
}

/* ---- binary (broadcasting) ---- */

static td_status binary_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(set_code(ctx, rn));
    ew_code c = ((ew_state *)rn->state)->code;
    if (c == B_MAX || c == B_MIN) {
        TD_TRY(td_check_inputs(ctx, rn, 1, 64, 1, 1));
    } else {
        TD_TRY(td_check_inputs(ctx, rn, 2, 2, 1, 1));
    }
    switch (c) {
    case B_AND: case B_OR: case B_XOR:
        TD_TRY(td_check_dtype(ctx, rn, 0, in[0], is_bool_dt, "bool"));
        TD_TRY(td_check_same(ctx, rn, in, 0, 2));
        out[0] = TD_BOOL;
        break;
    case B_EQ:
        TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_any_dt, "float, float16, bfloat16, int32, int64, bool"));
        TD_TRY(td_check_same(ctx, rn, in, 0, 2));
        out[0] = TD_BOOL;
        break;
    case B_LT: case B_GT: case B_LE: case B_GE:
        TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_num_dt, "float, float16, bfloat16, int32, int64"));
        TD_TRY(td_check_same(ctx, rn, in, 0, 2));
        out[0] = TD_BOOL;
        break;
    case B_POW:
        TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_num_dt, "float, float16, bfloat16, int32, int64"));
        TD_TRY(td_check_dtype(ctx, rn, 1, in[1], td_is_num_dt, "float, float16, bfloat16, int32, int64"));
        out[0] = in[0];
        break;
    default:
        TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_num_dt, "float, float16, bfloat16, int32, int64"));
        TD_TRY(td_check_same(ctx, rn, in, 0, rn->n_in));
        out[0] = in[0];
    }
    return TD_OK;
}

static td_status bcast_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    return td_broadcast_shape(ctx, rn, in, rn->n_in, out[0]);
}

typedef struct bin_job {
    ew_code c;
    const td_rt_tensor *a, *b;
    td_rt_tensor *o;
    bool div_by_zero;
} bin_job;

static inline int64_t ipow(int64_t base, int64_t e) {
    if (e < 0)
        return base == 1 ? 1 : (base == -1 ? ((e & 1) ? -1 : 1) : 0);
    uint64_t r = 1, b = (uint64_t)base;
    while (e) {
        if (e & 1)
            r *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)r;
}

static void bin_row(void *user, const int64_t *off, const int64_t *st, int64_t oo, int64_t n) {
    bin_job *j = user;
    const td_rt_tensor *a = j->a, *b = j->b;
    td_rt_tensor *o = j->o;
    ew_code c = j->c;
    /* fp32 Add/Sub/Mul/Div never get here: binary_exec gives them the threaded broadcast kernel */
    bool as_float = td_is_float_dt(a->dtype) || (c == B_POW && td_is_float_dt(b->dtype) && o->dtype != a->dtype);
    if (c == B_POW && td_is_int_dt(a->dtype) && td_is_float_dt(b->dtype))
        as_float = true;
    for (int64_t i = 0; i < n; i++) {
        int64_t ia = off[0] + i * st[0], ib = off[1] + i * st[1], io = oo + i;
        if (c == B_AND || c == B_OR || c == B_XOR) {
            uint8_t x = ((const uint8_t *)a->data)[ia] != 0, y = ((const uint8_t *)b->data)[ib] != 0;
            ((uint8_t *)o->data)[io] = c == B_AND ? (x && y) : c == B_OR ? (x || y) : (x != y);
        } else if (as_float) {
            float x = td_ldf(a->data, a->dtype, ia), y = td_ldf(b->data, b->dtype, ib);
            switch (c) {
            case B_ADD: td_stf(o->data, o->dtype, io, x + y); break;
            case B_SUB: td_stf(o->data, o->dtype, io, x - y); break;
            case B_MUL: td_stf(o->data, o->dtype, io, x * y); break;
            case B_DIV: td_stf(o->data, o->dtype, io, x / y); break;
            case B_MAX: td_stf(o->data, o->dtype, io, isnan(x) || isnan(y) ? NAN : (x > y ? x : y)); break;
            case B_MIN: td_stf(o->data, o->dtype, io, isnan(x) || isnan(y) ? NAN : (x < y ? x : y)); break;
            case B_POW:
                if (td_is_int_dt(o->dtype))
                    td_sti(o->data, o->dtype, io, (int64_t)powf(x, y));
                else
                    td_stf(o->data, o->dtype, io, powf(x, y));
                break;
            case B_EQ: ((uint8_t *)o->data)[io] = x == y; break;
            case B_LT: ((uint8_t *)o->data)[io] = x < y; break;
            case B_GT: ((uint8_t *)o->data)[io] = x > y; break;
            case B_LE: ((uint8_t *)o->data)[io] = x <= y; break;
            case B_GE: ((uint8_t *)o->data)[io] = x >= y; break;
            default: break;
            }
        } else {
            int64_t x = td_ldi(a->data, a->dtype, ia), y = td_ldi(b->data, b->dtype, ib), r = 0;
            switch (c) {
            case B_ADD: r = (int64_t)((uint64_t)x + (uint64_t)y); break;
            case B_SUB: r = (int64_t)((uint64_t)x - (uint64_t)y); break;
            case B_MUL: r = (int64_t)((uint64_t)x * (uint64_t)y); break;
            case B_DIV:
                if (y == 0 || (y == -1 && x == INT64_MIN)) {
                    j->div_by_zero = true;
                    r = 0;
                } else {
                    r = x / y;
                }
                break;
            case B_MAX: r = x > y ? x : y; break;
            case B_MIN: r = x < y ? x : y; break;
            case B_POW: r = ipow(x, y); break;
            case B_EQ: ((uint8_t *)o->data)[io] = x == y; continue;
            case B_LT: ((uint8_t *)o->data)[io] = x < y; continue;
            case B_GT: ((uint8_t *)o->data)[io] = x > y; continue;
            case B_LE: ((uint8_t *)o->data)[io] = x <= y; continue;
            case B_GE: ((uint8_t *)o->data)[io] = x >= y; continue;
            default: break;
            }
            td_sti(o->data, o->dtype, io, r);
        }
    }
}

static td_status binary_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                             td_rt_env *env) {
    ew_code c = ((ew_state *)rn->state)->code;
    bin_job j = {c, in[0], in[1 % rn->n_in], out[0], false};
    if (rn->n_in == 1) { /* Max/Min of one input: copy */
        td_memcpy(out[0]->data, in[0]->data, td_rt_nbytes(in[0]));
        return TD_OK;
    }
    if (rn->n_in == 2 && c >= B_ADD && c <= B_DIV && in[0]->dtype == TD_F32 && in[1]->dtype == TD_F32 &&
        !env->reference) {
        /* float arithmetic: the threaded broadcast kernel (the reference backend takes the plain loop below) */
        static const td_binop ops[] = {TD_BINOP_ADD, TD_BINOP_SUB, TD_BINOP_MUL, TD_BINOP_DIV};
        const int64_t *dims[2] = {in[0]->shape, in[1]->shape};
        const int ranks[2] = {in[0]->rank, in[1]->rank};
        td_bcast_plan plan;
        TD_TRY(td_bcast_plan_make(ctx, 2, dims, ranks, &plan));
        return td_cpu_binary(ctx, env->pool, ops[c - B_ADD], TD_F32, &plan, in[0]->data, in[1]->data, out[0]->data);
    }
    td_ewb b;
    td_rt_tensor *pair[2] = {in[0], in[1]};
    td_ewb_init(&b, out[0], pair, 2);
    td_ewb_run(&b, bin_row, &j);
    /* Variadic Max/Min: fold the remaining inputs into the output. */
    for (int k = 2; k < rn->n_in; k++) {
        td_rt_tensor acc = *out[0];
        td_rt_tensor *p2[2] = {&acc, in[k]};
        bin_job j2 = {c, &acc, in[k], out[0], false};
        td_ewb_init(&b, out[0], p2, 2);
        td_ewb_run(&b, bin_row, &j2);
    }
    if (j.div_by_zero)
        return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT, "integer division by zero (or INT_MIN / -1)");
    return TD_OK;
}

/* ---- Where ---- */

static td_status where_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 3, 3, 1, 1));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], is_bool_dt, "bool"));
    TD_TRY(td_check_dtype(ctx, rn, 1, in[1], td_is_any_dt, "float, float16, bfloat16, int32, int64, bool"));
    TD_TRY(td_check_same(ctx, rn, in, 1, 3));
    out[0] = in[1];
    return TD_OK;
}

typedef struct where_job {
    const td_rt_tensor *c, *x, *y;
    td_rt_tensor *o;
    size_t es;
} where_job;

static void where_row(void *user, const int64_t *off, const int64_t *st, int64_t oo, int64_t n) {
    where_job *j = user;
    const uint8_t *c = j->c->data;
    size_t es = j->es;
    if (es == 4) {
        const float *x = j->x->data, *y = j->y->data;
        float *o = (float *)j->o->data + oo;
        for (int64_t i = 0; i < n; i++)
            o[i] = c[off[0] + i * st[0]] ? x[off[1] + i * st[1]] : y[off[2] + i * st[2]];
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *src = c[off[0] + i * st[0]] ? (const uint8_t *)j->x->data + (size_t)(off[1] + i * st[1]) * es
                                                   : (const uint8_t *)j->y->data + (size_t)(off[2] + i * st[2]) * es;
        td_memcpy((uint8_t *)j->o->data + (size_t)(oo + i) * es, src, es);
    }
}

static td_status where_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                            td_rt_env *env) {
    td_ewb b;
    td_ewb_init(&b, out[0], in, 3);
    where_job j = {in[0], in[1], in[2], out[0], td_dtype_size(out[0]->dtype)};
    td_ewb_run(&b, where_row, &j);
    return TD_OK;
}

#define UNARY(name) {"", name, 1, TD_MAX_ONNX_OPSET, unary_init, same_shape, unary_exec, 0, 0, NULL}
#define BINARY(name) {"", name, 1, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL}

const td_op_def td_ops_elementwise[] = {
    UNARY("Sqrt"), UNARY("Reciprocal"), UNARY("Erf"), UNARY("Tanh"), UNARY("Sigmoid"), UNARY("Relu"),
    UNARY("Neg"), UNARY("Exp"), UNARY("Log"), UNARY("Cos"), UNARY("Sin"), UNARY("Abs"), UNARY("Floor"),
    UNARY("Ceil"), UNARY("IsNaN"), UNARY("Not"), UNARY("IsInf"), UNARY("Sign"),
    {"", "Gelu", 20, TD_MAX_ONNX_OPSET, unary_init, same_shape, unary_exec, 0, 0, NULL},
    /* Broadcasting arithmetic needs opset >= 7 (earlier versions used the broadcast attribute). */
    {"", "Add", 7, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    {"", "Sub", 7, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    {"", "Mul", 7, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    {"", "Div", 7, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    {"", "Pow", 7, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    {"", "Equal", 7, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    {"", "Less", 7, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    {"", "Greater", 7, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    BINARY("LessOrEqual"), BINARY("GreaterOrEqual"),
    {"", "And", 7, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    {"", "Or", 7, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    {"", "Xor", 7, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    {"", "Max", 8, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    {"", "Min", 8, TD_MAX_ONNX_OPSET, binary_init, bcast_shape, binary_exec, 0, 0, NULL},
    {"", "Where", 9, TD_MAX_ONNX_OPSET, where_init, bcast_shape, where_exec, 0, 0, NULL},
};
const int td_ops_elementwise_count = (int)(sizeof td_ops_elementwise / sizeof td_ops_elementwise[0]);
