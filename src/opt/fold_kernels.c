/* Reference kernels for constant folding (see fold_kernels.h). Every op reads
 * its inputs through get_f/get_i and writes through set_f/set_i so one loop
 * serves all numeric dtypes; float math runs in double, integer math in int64. */
#include "opt/fold_kernels.h"

#include "core/checked.h"
#include "opt/opt_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXR 8

static bool dtype_ok(td_dtype t) {
    switch (t) {
    case TD_F32: case TD_F64: case TD_F16: case TD_BF16: case TD_I64: case TD_I32: case TD_I16: case TD_I8:
    case TD_U8: case TD_U16: case TD_U32: case TD_U64: case TD_BOOL:
        return true;
    default:
        return false;
    }
}

static double get_f(const td_tensor *t, int64_t i) { return opt_tensor_get(t, i); }

static int64_t get_i(const td_tensor *t, int64_t i) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case TD_I64: { int64_t x; memcpy(&x, p + 8 * i, 8); return x; }
    case TD_I32: { int32_t x; memcpy(&x, p + 4 * i, 4); return x; }
    case TD_I16: { int16_t x; memcpy(&x, p + 2 * i, 2); return x; }
    case TD_U16: { uint16_t x; memcpy(&x, p + 2 * i, 2); return x; }
    case TD_U32: { uint32_t x; memcpy(&x, p + 4 * i, 4); return x; }
    case TD_U64: { uint64_t x; memcpy(&x, p + 8 * i, 8); return (int64_t)x; }
    case TD_I8: return ((const int8_t *)p)[i];
    case TD_U8: case TD_BOOL: return p[i];
    default: {
        double d = get_f(t, i);
        /* float -> int casts truncate; out-of-range is undefined in ONNX, clamp here */
        if (!(d == d))
            return 0;
        if (d >= 9.2e18)
            return INT64_MAX;
        if (d <= -9.2e18)
            return INT64_MIN;
        return (int64_t)d;
    }
    }
}

static void set_f(td_tensor *t, int64_t i, double v) {
    uint8_t *p = t->owned;
    switch (t->dtype) {
    case TD_F32: { float f = (float)v; memcpy(p + 4 * i, &f, 4); break; }
    case TD_F64: memcpy(p + 8 * i, &v, 8); break;
    case TD_F16: { uint16_t h = td_f32_to_f16((float)v); memcpy(p + 2 * i, &h, 2); break; }
    case TD_BF16: { uint16_t h = td_f32_to_bf16((float)v); memcpy(p + 2 * i, &h, 2); break; }
    case TD_BOOL: p[i] = v != 0; break;
    default: break;
    }
}

static void set_i(td_tensor *t, int64_t i, int64_t v) {
    uint8_t *p = t->owned;
    switch (t->dtype) {
    case TD_I64: memcpy(p + 8 * i, &v, 8); break;
    case TD_I32: { int32_t x = (int32_t)v; memcpy(p + 4 * i, &x, 4); break; }
    case TD_I16: { int16_t x = (int16_t)v; memcpy(p + 2 * i, &x, 2); break; }
    case TD_U16: { uint16_t x = (uint16_t)v; memcpy(p + 2 * i, &x, 2); break; }
    case TD_U32: { uint32_t x = (uint32_t)v; memcpy(p + 4 * i, &x, 4); break; }
    case TD_U64: { uint64_t x = (uint64_t)v; memcpy(p + 8 * i, &x, 8); break; }
    case TD_I8: ((int8_t *)p)[i] = (int8_t)v; break;
    case TD_U8: p[i] = (uint8_t)v; break;
    case TD_BOOL: p[i] = v != 0; break;
    default: set_f(t, i, (double)v); break;
    }
}

static bool is_float(td_dtype t) { return td_dtype_is_float(t); }

static td_status refuse(td_ctx *ctx, const td_node *n, const char *why) {
    return td_fail(ctx, TD_ERR_UNSUPPORTED, "fold: %s node '%s': %s", n->op_type, n->name, why);
}

/* New zeroed tensor of dtype and shape, refusing more than max elements. */
static td_status new_out(td_ctx *ctx, const td_node *n, td_dtype dt, int rank, const int64_t *dims, int64_t max,
                         td_tensor **out) {
    int64_t numel;
    if (rank > MAXR || !td_shape_numel(dims, rank, &numel))
        return refuse(ctx, n, "output shape invalid or too large");
    if (numel > max)
        return refuse(ctx, n, "output larger than the folding limit");
    size_t es = td_dtype_size(dt), nb = (size_t)numel * es;
    void *buf = calloc(nb ? nb : 1, 1);
    if (!buf)
        return td_fail_oom(ctx, nb, "a folded tensor");
    return td_tensor_new_owned(ctx, n->outputs[0] ? n->outputs[0]->name : "", dt, rank, dims, buf, nb, out);
}

static void copy_elem(td_tensor *dst, int64_t di, const td_tensor *src, int64_t si) {
    size_t es = td_dtype_size(src->dtype);
    memcpy((uint8_t *)dst->owned + di * es, (const uint8_t *)src->data + si * es, es);
}

/* ---- broadcasting ---- */

static bool broadcast_shape(const td_tensor *const *ts, int k, int *rank, int64_t *dims) {
    int r = 0;
    for (int i = 0; i < k; i++)
        if (ts[i]->rank > r)
            r = ts[i]->rank;
    if (r > MAXR)
        return false;
    for (int d = 0; d < r; d++) {
        int64_t v = 1;
        for (int i = 0; i < k; i++) {
            int off = d - (r - ts[i]->rank);
            if (off < 0)
                continue;
            int64_t x = ts[i]->dims[off];
            if (x == v || x == 1)
                continue;
            if (v != 1)
                return false;
            v = x;
        }
        dims[d] = v;
    }
    *rank = r;
    return true;
}

/* Linear index into t for output multi-index idx (rank r). */
static int64_t bcast_index(const td_tensor *t, const int64_t *idx, int r) {
    int64_t li = 0;
    for (int d = 0; d < t->rank; d++) {
        int64_t x = idx[r - t->rank + d];
        li = li * t->dims[d] + (t->dims[d] == 1 ? 0 : x);
    }
    return li;
}

static void next_index(int64_t *idx, const int64_t *dims, int r) {
    for (int d = r - 1; d >= 0; d--) {
        if (++idx[d] < dims[d])
            return;
        idx[d] = 0;
    }
}

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_MAX, OP_MIN, OP_EQ, OP_LT, OP_GT, OP_LE, OP_GE,
               OP_AND, OP_OR, OP_XOR, OP_MOD } binop;

static bool binop_of(const char *op, binop *b) {
    static const struct { const char *name; binop op; } tab[] = {
        {"Add", OP_ADD}, {"Sub", OP_SUB}, {"Mul", OP_MUL}, {"Div", OP_DIV}, {"Pow", OP_POW}, {"Max", OP_MAX},
        {"Min", OP_MIN}, {"Equal", OP_EQ}, {"Less", OP_LT}, {"Greater", OP_GT}, {"LessOrEqual", OP_LE},
        {"GreaterOrEqual", OP_GE}, {"And", OP_AND}, {"Or", OP_OR}, {"Xor", OP_XOR}, {"Mod", OP_MOD}};
    for (size_t i = 0; i < sizeof tab / sizeof *tab; i++)
        if (strcmp(op, tab[i].name) == 0) {
            *b = tab[i].op;
            return true;
        }
    return false;
}

static td_status eval_binary(td_ctx *ctx, const td_node *n, binop op, const td_tensor *a, const td_tensor *b,
                             int64_t max, td_tensor **out) {
    const td_tensor *ts[2] = {a, b};
    int r;
    int64_t dims[MAXR], idx[MAXR] = {0};
    if (!broadcast_shape(ts, 2, &r, dims))
        return refuse(ctx, n, "inputs do not broadcast");
    bool cmp = op >= OP_EQ;
    if (op == OP_MOD && (is_float(a->dtype) || td_node_attr_int(n, "fmod", 0)))
        return refuse(ctx, n, "float Mod");
    td_dtype odt = cmp ? TD_BOOL : a->dtype;
    if (op != OP_POW && a->dtype != b->dtype)
        return refuse(ctx, n, "input dtypes differ");
    TD_TRY(new_out(ctx, n, odt, r, dims, max, out));
    int64_t numel = td_tensor_numel(*out);
    bool fl = is_float(a->dtype) || (op == OP_POW && is_float(b->dtype));
    for (int64_t i = 0; i < numel; i++, next_index(idx, dims, r)) {
        int64_t ia = bcast_index(a, idx, r), ib = bcast_index(b, idx, r);
        if (fl) {
            double x = get_f(a, ia), y = get_f(b, ib), z = 0;
            switch (op) {
            case OP_ADD: z = x + y; break;
            case OP_SUB: z = x - y; break;
            case OP_MUL: z = x * y; break;
            case OP_DIV: z = x / y; break;
            case OP_POW: z = pow(x, y); break;
            case OP_MAX: z = fmax(x, y); break;
            case OP_MIN: z = fmin(x, y); break;
            case OP_EQ: z = x == y; break;
            case OP_LT: z = x < y; break;
            case OP_GT: z = x > y; break;
            case OP_LE: z = x <= y; break;
            case OP_GE: z = x >= y; break;
            default: td_tensor_free(*out); *out = NULL; return refuse(ctx, n, "logical op on floats");
            }
            if (cmp)
                set_i(*out, i, (int64_t)z);
            else if (is_float(odt))
                set_f(*out, i, z);
            else
                set_i(*out, i, (int64_t)z);
        } else {
            int64_t x = get_i(a, ia), y = get_i(b, ib), z = 0;
            switch (op) {
            case OP_ADD: z = (int64_t)((uint64_t)x + (uint64_t)y); break;
            case OP_SUB: z = (int64_t)((uint64_t)x - (uint64_t)y); break;
            case OP_MUL: z = (int64_t)((uint64_t)x * (uint64_t)y); break;
            case OP_DIV:
            case OP_MOD:
                if (y == 0 || (x == INT64_MIN && y == -1)) {
                    td_tensor_free(*out);
                    *out = NULL;
                    return refuse(ctx, n, "integer division by zero");
                }
                if (op == OP_DIV) {
                    z = x / y; /* C truncation, as ONNX Runtime computes integer Div */
                } else {
                    z = x % y; /* Mod with fmod=0: result takes the divisor's sign */
                    if (z != 0 && ((z < 0) != (y < 0)))
                        z += y;
                }
                break;
            case OP_POW: {
                double p = pow((double)x, (double)y);
                z = (int64_t)p;
                break;
            }
            case OP_MAX: z = x > y ? x : y; break;
            case OP_MIN: z = x < y ? x : y; break;
            case OP_EQ: z = x == y; break;
            case OP_LT: z = x < y; break;
            case OP_GT: z = x > y; break;
            case OP_LE: z = x <= y; break;
            case OP_GE: z = x >= y; break;
            case OP_AND: z = x && y; break;
            case OP_OR: z = x || y; break;
            case OP_XOR: z = (!x) != (!y); break;
            }
            set_i(*out, i, z);
        }
    }
    return TD_OK;
}

static double f_neg(double x) { return -x; }
static double f_recip(double x) { return 1.0 / x; }
static double f_relu(double x) { return x > 0 ? x : 0; }
static double f_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double f_sign(double x) { return (x > 0) - (x < 0); }

static td_status eval_unary(td_ctx *ctx, const td_node *n, const td_tensor *x, int64_t max, td_tensor **out) {
    static const struct { const char *name; double (*f)(double); bool int_ok; } tab[] = {
        {"Sqrt", sqrt, false}, {"Neg", f_neg, true}, {"Abs", fabs, true}, {"Reciprocal", f_recip, false},
        {"Exp", exp, false}, {"Log", log, false}, {"Erf", erf, false}, {"Floor", floor, false},
        {"Ceil", ceil, false}, {"Tanh", tanh, false}, {"Sigmoid", f_sigmoid, false}, {"Relu", f_relu, true},
        {"Sign", f_sign, true}, {"Round", nearbyint, false}};
    double (*f)(double) = NULL;
    bool int_ok = false;
    for (size_t i = 0; i < sizeof tab / sizeof *tab; i++)
        if (strcmp(n->op_type, tab[i].name) == 0) {
            f = tab[i].f;
            int_ok = tab[i].int_ok;
        }
    bool is_not = strcmp(n->op_type, "Not") == 0;
    if (!f && !is_not)
        return refuse(ctx, n, "op not implemented");
    if (!is_not && !is_float(x->dtype) && !int_ok)
        return refuse(ctx, n, "integer input");
    TD_TRY(new_out(ctx, n, x->dtype, x->rank, x->dims, max, out));
    int64_t numel = td_tensor_numel(x);
    for (int64_t i = 0; i < numel; i++) {
        if (is_not)
            set_i(*out, i, !get_i(x, i));
        else if (is_float(x->dtype))
            set_f(*out, i, f(get_f(x, i)));
        else
            set_i(*out, i, (int64_t)f((double)get_i(x, i)));
    }
    return TD_OK;
}

static td_status eval_cast(td_ctx *ctx, const td_node *n, const td_tensor *x, int64_t max, td_tensor **out) {
    td_dtype to = (td_dtype)td_node_attr_int(n, "to", 0);
    if (!dtype_ok(to))
        return refuse(ctx, n, "target dtype");
    TD_TRY(new_out(ctx, n, to, x->rank, x->dims, max, out));
    int64_t numel = td_tensor_numel(x);
    for (int64_t i = 0; i < numel; i++) {
        if (to == TD_BOOL)
            set_i(*out, i, is_float(x->dtype) ? get_f(x, i) != 0 : get_i(x, i) != 0);
        else if (is_float(to))
            set_f(*out, i, is_float(x->dtype) ? get_f(x, i) : (double)get_i(x, i));
        else
            set_i(*out, i, get_i(x, i));
    }
    return TD_OK;
}

/* Same data, new shape (Reshape, Flatten, Squeeze, Unsqueeze, Identity). */
static td_status with_shape(td_ctx *ctx, const td_node *n, const td_tensor *x, int rank, const int64_t *dims,
                            int64_t max, td_tensor **out) {
    int64_t numel;
    if (rank > MAXR || !td_shape_numel(dims, rank, &numel) || numel != td_tensor_numel(x))
        return refuse(ctx, n, "element count changes");
    TD_TRY(new_out(ctx, n, x->dtype, rank, dims, max, out));
    if (x->nbytes)
        memcpy((*out)->owned, x->data, x->nbytes);
    return TD_OK;
}

static td_status eval_reshape(td_ctx *ctx, const td_node *n, const td_tensor *x, const td_tensor *s, int64_t max,
                              td_tensor **out) {
    if (!s || s->rank != 1 || s->dims[0] > MAXR || (s->dtype != TD_I64))
        return refuse(ctx, n, "shape input");
    int r = (int)s->dims[0], neg = -1;
    int64_t dims[MAXR], known = 1;
    bool allowzero = td_node_attr_int(n, "allowzero", 0) != 0;
    for (int i = 0; i < r; i++) {
        dims[i] = get_i(s, i);
        if (dims[i] == 0 && !allowzero) {
            if (i >= x->rank)
                return refuse(ctx, n, "0 beyond input rank");
            dims[i] = x->dims[i];
        }
        if (dims[i] == -1) {
            if (neg >= 0)
                return refuse(ctx, n, "two -1 dims");
            neg = i;
            continue;
        }
        if (dims[i] < 0 || !td_mul_i64(known, dims[i], &known))
            return refuse(ctx, n, "bad dim");
    }
    if (neg >= 0) {
        if (known == 0 || td_tensor_numel(x) % known)
            return refuse(ctx, n, "-1 cannot be inferred");
        dims[neg] = td_tensor_numel(x) / known;
    }
    return with_shape(ctx, n, x, r, dims, max, out);
}

/* Axes from the attribute or (newer opsets) the second input. */
static bool read_axes(const td_node *n, const td_tensor *const *in, int n_in, int idx, int64_t *axes, int *cnt) {
    size_t ac = 0;
    const int64_t *a = td_node_attr_ints(n, "axes", &ac);
    if (a) {
        if (ac > MAXR)
            return false;
        memcpy(axes, a, ac * sizeof *a);
        *cnt = (int)ac;
        return true;
    }
    if (n_in > idx && in[idx]) {
        int64_t c = td_tensor_numel(in[idx]);
        if (c > MAXR || td_dtype_is_float(in[idx]->dtype))
            return false;
        for (int64_t i = 0; i < c; i++)
            axes[i] = get_i(in[idx], i);
        *cnt = (int)c;
        return true;
    }
    *cnt = -1; /* absent */
    return true;
}

static td_status eval_unsqueeze(td_ctx *ctx, const td_node *n, const td_tensor *const *in, int n_in, int64_t max,
                                td_tensor **out) {
    int64_t axes[MAXR];
    int cnt;
    if (!read_axes(n, in, n_in, 1, axes, &cnt) || cnt < 0)
        return refuse(ctx, n, "axes");
    int r = in[0]->rank + cnt;
    if (r > MAXR)
        return refuse(ctx, n, "rank too large");
    bool ins[MAXR] = {false};
    for (int i = 0; i < cnt; i++) {
        int64_t a = axes[i] < 0 ? axes[i] + r : axes[i];
        if (a < 0 || a >= r || ins[a])
            return refuse(ctx, n, "bad axis");
        ins[a] = true;
    }
    int64_t dims[MAXR];
    for (int i = 0, j = 0; i < r; i++)
        dims[i] = ins[i] ? 1 : in[0]->dims[j++];
    return with_shape(ctx, n, in[0], r, dims, max, out);
}

static td_status eval_squeeze(td_ctx *ctx, const td_node *n, const td_tensor *const *in, int n_in, int64_t max,
                              td_tensor **out) {
    int64_t axes[MAXR];
    int cnt;
    if (!read_axes(n, in, n_in, 1, axes, &cnt))
        return refuse(ctx, n, "axes");
    const td_tensor *x = in[0];
    bool drop[MAXR] = {false};
    if (cnt < 0) {
        for (int i = 0; i < x->rank; i++)
            drop[i] = x->dims[i] == 1;
    } else {
        for (int i = 0; i < cnt; i++) {
            int64_t a = axes[i] < 0 ? axes[i] + x->rank : axes[i];
            if (a < 0 || a >= x->rank || x->dims[a] != 1)
                return refuse(ctx, n, "bad axis");
            drop[a] = true;
        }
    }
    int64_t dims[MAXR];
    int r = 0;
    for (int i = 0; i < x->rank; i++)
        if (!drop[i])
            dims[r++] = x->dims[i];
    return with_shape(ctx, n, x, r, dims, max, out);
}

static td_status eval_flatten(td_ctx *ctx, const td_node *n, const td_tensor *x, int64_t max, td_tensor **out) {
    int64_t axis = td_node_attr_int(n, "axis", 1);
    if (axis < 0)
        axis += x->rank;
    if (axis < 0 || axis > x->rank)
        return refuse(ctx, n, "axis");
    int64_t d[2] = {1, 1};
    for (int i = 0; i < x->rank; i++)
        d[i >= axis] *= x->dims[i];
    return with_shape(ctx, n, x, 2, d, max, out);
}

static td_status eval_concat(td_ctx *ctx, const td_node *n, const td_tensor *const *in, int n_in, int64_t max,
                             td_tensor **out) {
    const td_tensor *x0 = in[0];
    int r = x0->rank;
    int64_t axis = td_node_attr_int(n, "axis", 0);
    if (axis < 0)
        axis += r;
    if (axis < 0 || axis >= r)
        return refuse(ctx, n, "axis");
    int64_t dims[MAXR];
    memcpy(dims, x0->dims, sizeof(int64_t) * (size_t)r);
    dims[axis] = 0;
    for (int i = 0; i < n_in; i++) {
        if (!in[i] || in[i]->rank != r || in[i]->dtype != x0->dtype)
            return refuse(ctx, n, "inputs differ in rank or dtype");
        for (int d = 0; d < r; d++)
            if (d != axis && in[i]->dims[d] != x0->dims[d])
                return refuse(ctx, n, "inputs differ in shape");
        dims[axis] += in[i]->dims[axis];
    }
    TD_TRY(new_out(ctx, n, x0->dtype, r, dims, max, out));
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++)
        outer *= dims[d];
    for (int d = (int)axis + 1; d < r; d++)
        inner *= dims[d];
    size_t es = td_dtype_size(x0->dtype);
    uint8_t *dst = (*out)->owned;
    for (int64_t o = 0; o < outer; o++)
        for (int i = 0; i < n_in; i++) {
            size_t chunk = (size_t)(in[i]->dims[axis] * inner) * es;
            if (chunk)
                memcpy(dst, (const uint8_t *)in[i]->data + (size_t)o * chunk, chunk);
            dst += chunk;
        }
    return TD_OK;
}

static td_status eval_gather(td_ctx *ctx, const td_node *n, const td_tensor *x, const td_tensor *idx, int64_t max,
                             td_tensor **out) {
    int64_t axis = td_node_attr_int(n, "axis", 0);
    if (axis < 0)
        axis += x->rank;
    if (axis < 0 || axis >= x->rank || is_float(idx->dtype))
        return refuse(ctx, n, "axis or index dtype");
    int r = x->rank - 1 + idx->rank;
    if (r > MAXR)
        return refuse(ctx, n, "rank");
    int64_t dims[MAXR];
    int k = 0;
    for (int d = 0; d < axis; d++)
        dims[k++] = x->dims[d];
    for (int d = 0; d < idx->rank; d++)
        dims[k++] = idx->dims[d];
    for (int d = (int)axis + 1; d < x->rank; d++)
        dims[k++] = x->dims[d];
    int64_t outer = 1, inner = 1, ax = x->dims[axis], ni = td_tensor_numel(idx);
    for (int d = 0; d < axis; d++)
        outer *= x->dims[d];
    for (int d = (int)axis + 1; d < x->rank; d++)
        inner *= x->dims[d];
    for (int64_t j = 0; j < ni; j++) {
        int64_t v = get_i(idx, j);
        if (v < -ax || v >= ax)
            return refuse(ctx, n, "index out of range");
    }
    TD_TRY(new_out(ctx, n, x->dtype, r, dims, max, out));
    int64_t o_i = 0;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < ni; j++) {
            int64_t v = get_i(idx, j);
            if (v < 0)
                v += ax;
            for (int64_t e = 0; e < inner; e++)
                copy_elem(*out, o_i++, x, (o * ax + v) * inner + e);
        }
    return TD_OK;
}

static td_status eval_slice(td_ctx *ctx, const td_node *n, const td_tensor *const *in, int n_in, int64_t max,
                            td_tensor **out) {
    const td_tensor *x = in[0];
    if (n_in < 3 || !in[1] || !in[2])
        return refuse(ctx, n, "opset-1 Slice (attributes)");
    int r = x->rank, cnt = (int)td_tensor_numel(in[1]);
    if (r > MAXR || cnt != td_tensor_numel(in[2]) || cnt > r)
        return refuse(ctx, n, "starts/ends");
    int64_t start[MAXR], step[MAXR], dims[MAXR];
    for (int d = 0; d < r; d++) {
        start[d] = 0;
        step[d] = 1;
        dims[d] = x->dims[d];
    }
    for (int i = 0; i < cnt; i++) {
        int64_t a = (n_in > 3 && in[3]) ? get_i(in[3], i) : i;
        if (a < 0)
            a += r;
        if (a < 0 || a >= r)
            return refuse(ctx, n, "axis");
        int64_t st = (n_in > 4 && in[4]) ? get_i(in[4], i) : 1, len = x->dims[a];
        if (st == 0)
            return refuse(ctx, n, "zero step");
        int64_t s = get_i(in[1], i), e = get_i(in[2], i);
        if (s < 0)
            s += len;
        if (e < 0)
            e += len;
        if (st > 0) {
            s = s < 0 ? 0 : (s > len ? len : s);
            e = e < 0 ? 0 : (e > len ? len : e);
            dims[a] = e > s ? (e - s + st - 1) / st : 0;
        } else {
            s = s < 0 ? -1 : (s > len - 1 ? len - 1 : s);
            e = e < -1 ? -1 : (e > len - 1 ? len - 1 : e);
            dims[a] = s > e ? (s - e + (-st) - 1) / (-st) : 0;
        }
        start[a] = s;
        step[a] = st;
    }
    TD_TRY(new_out(ctx, n, x->dtype, r, dims, max, out));
    int64_t numel = td_tensor_numel(*out), idx[MAXR] = {0};
    for (int64_t i = 0; i < numel; i++, next_index(idx, dims, r)) {
        int64_t li = 0;
        for (int d = 0; d < r; d++)
            li = li * x->dims[d] + start[d] + idx[d] * step[d];
        copy_elem(*out, i, x, li);
    }
    return TD_OK;
}

static td_status eval_transpose(td_ctx *ctx, const td_node *n, const td_tensor *x, int64_t max, td_tensor **out) {
    int r = x->rank;
    int64_t perm[MAXR], dims[MAXR];
    size_t pc = 0;
    const int64_t *p = td_node_attr_ints(n, "perm", &pc);
    if (r > MAXR || (p && (int)pc != r))
        return refuse(ctx, n, "perm");
    bool seen[MAXR] = {false};
    for (int d = 0; d < r; d++) {
        perm[d] = p ? p[d] : r - 1 - d;
        if (perm[d] < 0 || perm[d] >= r || seen[perm[d]])
            return refuse(ctx, n, "perm");
        seen[perm[d]] = true;
        dims[d] = x->dims[perm[d]];
    }
    TD_TRY(new_out(ctx, n, x->dtype, r, dims, max, out));
    int64_t stride[MAXR], numel = td_tensor_numel(x), idx[MAXR] = {0};
    int64_t s = 1;
    for (int d = r - 1; d >= 0; d--) {
        stride[d] = s;
        s *= x->dims[d];
    }
    for (int64_t i = 0; i < numel; i++, next_index(idx, dims, r)) {
        int64_t li = 0;
        for (int d = 0; d < r; d++)
            li += idx[d] * stride[perm[d]];
        copy_elem(*out, i, x, li);
    }
    return TD_OK;
}

static td_status eval_where(td_ctx *ctx, const td_node *n, const td_tensor *const *in, int64_t max,
                            td_tensor **out) {
    int r;
    int64_t dims[MAXR], idx[MAXR] = {0};
    if (in[1]->dtype != in[2]->dtype || !broadcast_shape(in, 3, &r, dims))
        return refuse(ctx, n, "inputs do not broadcast");
    TD_TRY(new_out(ctx, n, in[1]->dtype, r, dims, max, out));
    int64_t numel = td_tensor_numel(*out);
    for (int64_t i = 0; i < numel; i++, next_index(idx, dims, r)) {
        bool c = get_i(in[0], bcast_index(in[0], idx, r)) != 0;
        const td_tensor *src = c ? in[1] : in[2];
        copy_elem(*out, i, src, bcast_index(src, idx, r));
    }
    return TD_OK;
}

static td_status eval_expand(td_ctx *ctx, const td_node *n, const td_tensor *x, const td_tensor *s, int64_t max,
                             td_tensor **out) {
    int64_t sd[MAXR];
    int sr = (int)td_tensor_numel(s);
    if (sr > MAXR || s->rank != 1)
        return refuse(ctx, n, "shape");
    for (int i = 0; i < sr; i++)
        sd[i] = get_i(s, i);
    td_tensor shape_t = {.rank = sr, .dims = sd};
    const td_tensor *ts[2] = {x, &shape_t};
    int r;
    int64_t dims[MAXR], idx[MAXR] = {0};
    if (!broadcast_shape(ts, 2, &r, dims))
        return refuse(ctx, n, "shape does not broadcast");
    TD_TRY(new_out(ctx, n, x->dtype, r, dims, max, out));
    int64_t numel = td_tensor_numel(*out);
    for (int64_t i = 0; i < numel; i++, next_index(idx, dims, r))
        copy_elem(*out, i, x, bcast_index(x, idx, r));
    return TD_OK;
}

static td_status eval_constant_of_shape(td_ctx *ctx, const td_node *n, const td_tensor *s, int64_t max,
                                        td_tensor **out) {
    int64_t dims[MAXR];
    int r = (int)td_tensor_numel(s);
    if (r > MAXR || s->rank != 1)
        return refuse(ctx, n, "shape");
    for (int i = 0; i < r; i++)
        dims[i] = get_i(s, i);
    const td_attr *va = td_node_attr(n, "value");
    const td_tensor *v = va ? va->t : NULL;
    td_dtype dt = v ? v->dtype : TD_F32;
    if (!dtype_ok(dt) || (v && td_tensor_numel(v) != 1))
        return refuse(ctx, n, "value attribute");
    TD_TRY(new_out(ctx, n, dt, r, dims, max, out));
    if (v) {
        int64_t numel = td_tensor_numel(*out);
        for (int64_t i = 0; i < numel; i++)
            copy_elem(*out, i, v, 0);
    }
    return TD_OK;
}

static td_status eval_range(td_ctx *ctx, const td_node *n, const td_tensor *const *in, int64_t max,
                            td_tensor **out) {
    td_dtype dt = in[0]->dtype;
    if (td_tensor_numel(in[0]) != 1 || td_tensor_numel(in[1]) != 1 || td_tensor_numel(in[2]) != 1)
        return refuse(ctx, n, "scalar inputs");
    double s = is_float(dt) ? get_f(in[0], 0) : (double)get_i(in[0], 0);
    double l = is_float(dt) ? get_f(in[1], 0) : (double)get_i(in[1], 0);
    double d = is_float(dt) ? get_f(in[2], 0) : (double)get_i(in[2], 0);
    if (d == 0)
        return refuse(ctx, n, "zero delta");
    double cnt = ceil((l - s) / d);
    if (!(cnt >= 0))
        cnt = 0;
    if (cnt > (double)max)
        return refuse(ctx, n, "output larger than the folding limit");
    int64_t dims[1] = {(int64_t)cnt};
    TD_TRY(new_out(ctx, n, dt, 1, dims, max, out));
    for (int64_t i = 0; i < dims[0]; i++) {
        if (is_float(dt))
            set_f(*out, i, s + (double)i * d);
        else
            set_i(*out, i, get_i(in[0], 0) + i * get_i(in[2], 0));
    }
    return TD_OK;
}

static td_status eval_shape(td_ctx *ctx, const td_node *n, const td_tensor *x, int64_t max, td_tensor **out) {
    int64_t r = x->rank, start = td_node_attr_int(n, "start", 0), end = td_node_attr_int(n, "end", r);
    if (start < 0)
        start += r;
    if (end < 0)
        end += r;
    start = start < 0 ? 0 : (start > r ? r : start);
    end = end < start ? start : (end > r ? r : end);
    int64_t dims[1] = {end - start};
    TD_TRY(new_out(ctx, n, TD_I64, 1, dims, max, out));
    for (int64_t i = start; i < end; i++)
        set_i(*out, i - start, x->dims[i]);
    return TD_OK;
}

td_status td_fold_eval(void *user, td_ctx *ctx, const td_node *n, const td_tensor *const *in, int n_in,
                       td_tensor **outs, int n_out, int64_t max) {
    (void)user;
    if (!opt_is_onnx_domain(n->domain) || n_out != 1 || n_in < 1)
        return refuse(ctx, n, "op not implemented");
    for (int i = 0; i < n_in; i++)
        if (in[i] && (!dtype_ok(in[i]->dtype) || in[i]->rank > MAXR || (in[i]->nbytes && !in[i]->data)))
            return refuse(ctx, n, "input dtype or rank");
    const char *op = n->op_type;
    td_tensor **out = &outs[0];
    binop b;
    if (!in[0])
        return refuse(ctx, n, "first input omitted");
    if (binop_of(op, &b)) {
        if (n_in != 2 || !in[1])
            return refuse(ctx, n, "needs two inputs");
        return eval_binary(ctx, n, b, in[0], in[1], max, out);
    }
    if (strcmp(op, "Cast") == 0)
        return eval_cast(ctx, n, in[0], max, out);
    if (strcmp(op, "Identity") == 0)
        return with_shape(ctx, n, in[0], in[0]->rank, in[0]->dims, max, out);
    if (strcmp(op, "Reshape") == 0)
        return eval_reshape(ctx, n, in[0], n_in > 1 ? in[1] : NULL, max, out);
    if (strcmp(op, "Unsqueeze") == 0)
        return eval_unsqueeze(ctx, n, in, n_in, max, out);
    if (strcmp(op, "Squeeze") == 0)
        return eval_squeeze(ctx, n, in, n_in, max, out);
    if (strcmp(op, "Flatten") == 0)
        return eval_flatten(ctx, n, in[0], max, out);
    if (strcmp(op, "Concat") == 0)
        return eval_concat(ctx, n, in, n_in, max, out);
    if (strcmp(op, "Gather") == 0 && n_in == 2 && in[1])
        return eval_gather(ctx, n, in[0], in[1], max, out);
    if (strcmp(op, "Slice") == 0)
        return eval_slice(ctx, n, in, n_in, max, out);
    if (strcmp(op, "Transpose") == 0)
        return eval_transpose(ctx, n, in[0], max, out);
    if (strcmp(op, "Where") == 0 && n_in == 3 && in[1] && in[2])
        return eval_where(ctx, n, in, max, out);
    if (strcmp(op, "Expand") == 0 && n_in == 2 && in[1])
        return eval_expand(ctx, n, in[0], in[1], max, out);
    if (strcmp(op, "ConstantOfShape") == 0)
        return eval_constant_of_shape(ctx, n, in[0], max, out);
    if (strcmp(op, "Range") == 0 && n_in == 3 && in[1] && in[2])
        return eval_range(ctx, n, in, max, out);
    if (strcmp(op, "Shape") == 0)
        return eval_shape(ctx, n, in[0], max, out);
    if (n_in == 1)
        return eval_unary(ctx, n, in[0], max, out);
    return refuse(ctx, n, "op not implemented");
}
