/* Shape and type inference with symbolic dims. Values without a type get one
 * from their producer: dtype, rank and dims, where a dim is a number, a name
 * carried over from the graph inputs ("batch", "sequence") or unknown.
 * Small int64 shape tensors are tracked element by element (numbers or
 * symbolic dims) through Shape/Gather/Unsqueeze/Concat/Slice/Cast so that
 * Reshape/Expand/ConstantOfShape of computed shapes get their dims too. */
#define _GNU_SOURCE
#include "core/checked.h"
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <stdlib.h>
#include <string.h>

#define MAXR 8

typedef struct {
    td_dtype elem;
    int rank; /* -1 unknown */
    td_dim dims[MAXR];
} shape_t;

/* Symbolic content of a small 1-D int64 tensor (or scalar: rank 0, n 1). */
typedef struct sym_entry {
    const td_value *v;
    int n;
    td_dim e[MAXR];
} sym_entry;

typedef struct {
    sym_entry *items;
    int n, cap;
} sym_table;

static const sym_entry *sym_get(const sym_table *t, const td_value *v) {
    for (int i = t->n - 1; i >= 0; i--)
        if (t->items[i].v == v)
            return &t->items[i];
    return NULL;
}

static td_status sym_put(td_ctx *ctx, sym_table *t, const td_value *v, int n, const td_dim *e) {
    if (n > MAXR)
        return TD_OK;
    td_dim copy[MAXR]; /* e may point into the table, which the realloc below moves */
    memcpy(copy, e, sizeof *e * (size_t)n);
    e = copy;
    if (t->n == t->cap) {
        int nc = t->cap ? t->cap * 2 : 64;
        sym_entry *p = realloc(t->items, sizeof *p * (size_t)nc);
        if (!p)
            return td_fail_oom(ctx, sizeof *p * (size_t)nc, "shape inference");
        t->items = p;
        t->cap = nc;
    }
    sym_entry *s = &t->items[t->n++];
    s->v = v;
    s->n = n;
    memcpy(s->e, e, sizeof *e * (size_t)n);
    return TD_OK;
}

static const td_dim unknown_dim = {-1, NULL};

static bool value_shape(const td_value *v, shape_t *s) {
    if (!v || v->type.rank > MAXR)
        return false;
    s->elem = v->type.elem;
    s->rank = v->type.rank;
    for (int i = 0; i < s->rank; i++)
        s->dims[i] = v->type.dims[i];
    return s->rank >= 0;
}

/* Constant int tensors are their own symbolic content. */
static const sym_entry *sym_of(const sym_table *t, const td_value *v, sym_entry *scratch) {
    const sym_entry *e = sym_get(t, v);
    if (e)
        return e;
    int64_t vals[MAXR];
    int n;
    const td_tensor *c = opt_const(v);
    if (!c || c->rank > 1 || !opt_const_ints(v, vals, MAXR, &n))
        return NULL;
    scratch->v = v;
    scratch->n = n;
    for (int i = 0; i < n; i++)
        scratch->e[i] = (td_dim){vals[i], NULL};
    return scratch;
}

static bool broadcast(const shape_t *a, const shape_t *b, shape_t *o) {
    int r = a->rank > b->rank ? a->rank : b->rank;
    o->rank = r;
    for (int d = 0; d < r; d++) {
        int ia = d - (r - a->rank), ib = d - (r - b->rank);
        const td_dim *x = ia >= 0 ? &a->dims[ia] : NULL, *y = ib >= 0 ? &b->dims[ib] : NULL;
        if (!x || (x->value == 1))
            o->dims[d] = y ? *y : (td_dim){1, NULL};
        else if (!y || y->value == 1)
            o->dims[d] = *x;
        else if (opt_dim_equal(x, y))
            o->dims[d] = *x;
        else if (x->value > 1 || (x->param && y->value < 0 && !y->param))
            o->dims[d] = *x; /* y unknown: must be x or 1, and 1 would give x too (symbolic
                                dims are taken as not 1, as symbolic shape inference does) */
        else if (y->value > 1 || (y->param && x->value < 0 && !x->param))
            o->dims[d] = *y;
        else
            o->dims[d] = unknown_dim;
    }
    return true;
}

static bool is_one_of(const char *op, const char *const *list) {
    for (; *list; list++)
        if (strcmp(op, *list) == 0)
            return true;
    return false;
}

static const char *const same_shape_ops[] = {
    "Relu", "Erf", "Sqrt", "Neg", "Abs", "Exp", "Log", "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "Identity",
    "Dropout", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Clip", "LeakyRelu", "HardSigmoid", "Softplus",
    "Gelu", "FastGelu", "BiasGelu", "LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization", "Trilu", "CumSum", "Sin", "Cos", "HardSwish", "Elu", "Selu", "Celu",
    "QuickGelu", "Mish", "RotaryEmbedding", NULL};
static const char *const broadcast_ops[] = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "PRelu", NULL};
static const char *const compare_ops[] = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or",
                                          "Xor", NULL};
static const char *const reduce_ops[] = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
                                         "ReduceL2", "ReduceL1", "ReduceSumSquare", "ReduceLogSumExp", NULL};

static bool read_axes(const td_node *n, int idx, int64_t *axes, int *cnt) {
    size_t ac = 0;
    const int64_t *a = td_node_attr_ints(n, "axes", &ac);
    if (a) {
        if (ac > MAXR)
            return false;
        memcpy(axes, a, ac * sizeof *a);
        *cnt = (int)ac;
        return true;
    }
    if (n->n_inputs > idx && n->inputs[idx])
        return opt_const_ints(n->inputs[idx], axes, MAXR, cnt);
    *cnt = -1;
    return true;
}

static bool norm_axis(int64_t *a, int r) {
    if (*a < 0)
        *a += r;
    return *a >= 0 && *a < r;
}

/* Dims from a symbolic shape tensor (Reshape semantics when x is given). */
static bool dims_from_sym(const sym_entry *s, const shape_t *x, bool allowzero, shape_t *o) {
    if (s->n > MAXR)
        return false;
    o->rank = s->n;
    int neg = -1;
    for (int i = 0; i < s->n; i++) {
        o->dims[i] = s->e[i];
        if (x && s->e[i].value == 0 && !s->e[i].param && !allowzero) {
            if (i >= x->rank)
                return false;
            o->dims[i] = x->dims[i];
        } else if (x && s->e[i].value == -1 && !s->e[i].param) {
            neg = i;
        }
    }
    if (neg >= 0) {
        /* -1: product of x's dims over product of the others, when both are numbers;
         * or a symbolic dim when all other output dims match x's dims one for one */
        int64_t px = 1, po = 1;
        bool num = true;
        bool fits = true; /* hostile dims can overflow the products: the dim stays unknown then */
        for (int i = 0; i < x->rank; i++)
            num &= x->dims[i].value >= 0, fits &= td_mul_i64(px, x->dims[i].value >= 0 ? x->dims[i].value : 1, &px);
        for (int i = 0; i < o->rank; i++)
            if (i != neg)
                num &= o->dims[i].value >= 0,
                    fits &= td_mul_i64(po, o->dims[i].value >= 0 ? o->dims[i].value : 1, &po);
        o->dims[neg] = unknown_dim;
        if (!fits)
            return true;
        if (num && po > 0 && px % po == 0)
            o->dims[neg] = (td_dim){px / po, NULL};
        else if (!num) {
            /* cancel symbolic dims present on both sides: (b, s, 32) -> (b, s, -1, 8) gives 4 */
            bool used[MAXR] = {false};
            int64_t rx = 1, ro = 1;
            bool ok = true;
            for (int i = 0; i < o->rank && ok; i++) {
                if (i == neg)
                    continue;
                if (o->dims[i].value >= 0) {
                    ok = td_mul_i64(ro, o->dims[i].value, &ro);
                    continue;
                }
                bool found = false;
                for (int j = 0; j < x->rank && !found; j++)
                    if (!used[j] && o->dims[i].param && x->dims[j].param &&
                        strcmp(o->dims[i].param, x->dims[j].param) == 0)
                        used[j] = found = true;
                ok = found;
            }
            int left_sym = -1, n_left_sym = 0;
            for (int j = 0; j < x->rank && ok; j++)
                if (!used[j]) {
                    if (x->dims[j].value >= 0)
                        ok = td_mul_i64(rx, x->dims[j].value, &rx);
                    else if (x->dims[j].param)
                        left_sym = j, n_left_sym++;
                    else
                        ok = false;
                }
            if (ok && n_left_sym == 0 && ro > 0 && rx % ro == 0)
                o->dims[neg] = (td_dim){rx / ro, NULL};
            else if (ok && n_left_sym == 1 && rx == ro) /* (b, s) -> (-1, s) gives b */
                o->dims[neg] = x->dims[left_sym];
        }
    }
    return true;
}

static td_status infer_node(td_ctx *ctx, sym_table *syms, const td_node *n, shape_t *o, bool *ok) {
    *ok = false;
    const char *op = n->op_type;
    shape_t a = {0}, b = {0};
    bool ha = n->n_inputs > 0 && value_shape(n->inputs[0], &a);
    bool hb = n->n_inputs > 1 && value_shape(n->inputs[1], &b);
    o->elem = ha ? a.elem : TD_UNDEFINED;
    o->rank = -1;
    sym_entry scratch;
    if (is_one_of(op, same_shape_ops)) {
        if (!ha)
            return TD_OK;
        *o = a;
    } else if (strcmp(op, "Cast") == 0) {
        if (!ha)
            return TD_OK;
        *o = a;
        o->elem = (td_dtype)td_node_attr_int(n, "to", 0);
        const sym_entry *s = sym_get(syms, n->inputs[0]);
        if (s && !td_dtype_is_float(o->elem))
            TD_TRY(sym_put(ctx, syms, n->outputs[0], s->n, s->e));
    } else if (strcmp(op, "IsNaN") == 0 || strcmp(op, "IsInf") == 0 || strcmp(op, "Not") == 0) {
        if (!ha)
            return TD_OK;
        *o = a;
        o->elem = TD_BOOL;
    } else if (is_one_of(op, broadcast_ops) || is_one_of(op, compare_ops)) {
        if (!ha || !hb)
            return TD_OK;
        broadcast(&a, &b, o);
        o->elem = is_one_of(op, compare_ops) ? TD_BOOL : a.elem;
    } else if (strcmp(op, "Where") == 0) {
        shape_t c;
        if (!ha || !hb || n->n_inputs < 3 || !value_shape(n->inputs[2], &c))
            return TD_OK;
        shape_t t;
        broadcast(&a, &b, &t);
        broadcast(&t, &c, o);
        o->elem = b.elem;
    } else if (strcmp(op, "MatMul") == 0) {
        if (!ha || !hb || a.rank < 2 || b.rank < 1)
            return TD_OK;
        if (b.rank == 1) {
            *o = a;
            o->rank = a.rank - 1;
        } else {
            shape_t ba = a, bb = b;
            ba.rank -= 2;
            bb.rank -= 2;
            broadcast(&ba, &bb, o);
            o->dims[o->rank] = a.dims[a.rank - 2];
            o->dims[o->rank + 1] = b.dims[b.rank - 1];
            o->rank += 2;
        }
        o->elem = a.elem;
    } else if (strcmp(op, "MatMulNBits") == 0) {
        /* com.microsoft: A (..., K) @ dequant(B)^T -> (..., N), N from the attribute (GGUF exports and
         * optimize --precision int4 write it; without this every value after the first projection is shapeless
         * and no downstream fusion, RMSNorm or rotary, matches) */
        int64_t N = td_node_attr_int(n, "N", -1);
        if (!ha || a.rank < 1 || N <= 0)
            return TD_OK;
        *o = a;
        o->dims[a.rank - 1] = (td_dim){N, NULL};
    } else if (strcmp(op, "GatherBlockQuantized") == 0) {
        /* com.microsoft: gather_axis 0, quantize_axis last (op_gather_bq.c's subset): indices' shape, then data's
         * remaining dims with the last unpacked (bits 4: two codes per byte); the scales' element type */
        shape_t sc;
        int64_t bits = td_node_attr_int(n, "bits", 4), ga = td_node_attr_int(n, "gather_axis", 0);
        int64_t qa = td_node_attr_int(n, "quantize_axis", 1);
        if (!ha || !hb || n->n_inputs < 3 || !value_shape(n->inputs[2], &sc) || a.rank < 2 || ga != 0 ||
            (qa != a.rank - 1 && qa != -1) || (bits != 4 && bits != 8) || b.rank + a.rank - 1 > MAXR)
            return TD_OK;
        o->rank = 0;
        for (int d = 0; d < b.rank; d++)
            o->dims[o->rank++] = b.dims[d];
        for (int d = 1; d < a.rank; d++)
            o->dims[o->rank++] = a.dims[d];
        td_dim *last = &o->dims[o->rank - 1];
        if (last->param || last->value < 0)
            *last = unknown_dim;
        else
            last->value *= 8 / bits;
        o->elem = sc.elem;
    } else if (strcmp(op, "Gemm") == 0) {
        if (!ha || !hb || a.rank != 2 || b.rank != 2)
            return TD_OK;
        o->rank = 2;
        o->dims[0] = a.dims[td_node_attr_int(n, "transA", 0) ? 1 : 0];
        o->dims[1] = b.dims[td_node_attr_int(n, "transB", 0) ? 0 : 1];
    } else if (strcmp(op, "Transpose") == 0) {
        if (!ha)
            return TD_OK;
        size_t pc = 0;
        const int64_t *p = td_node_attr_ints(n, "perm", &pc);
        if (p && (int)pc != a.rank)
            return TD_OK;
        o->rank = a.rank;
        for (int d = 0; d < a.rank; d++) {
            int64_t src = p ? p[d] : a.rank - 1 - d;
            if (src < 0 || src >= a.rank)
                return TD_OK;
            o->dims[d] = a.dims[src];
        }
    } else if (strcmp(op, "Shape") == 0) {
        o->elem = TD_I64;
        o->rank = 1;
        o->dims[0] = unknown_dim;
        if (ha) {
            int64_t r = a.rank, s = td_node_attr_int(n, "start", 0), e = td_node_attr_int(n, "end", r);
            if (s < 0)
                s += r;
            if (e < 0)
                e += r;
            s = s < 0 ? 0 : (s > r ? r : s);
            e = e < s ? s : (e > r ? r : e);
            o->dims[0] = (td_dim){e - s, NULL};
            TD_TRY(sym_put(ctx, syms, n->outputs[0], (int)(e - s), a.dims + s));
        }
    } else if (strcmp(op, "Size") == 0) {
        o->elem = TD_I64;
        o->rank = 0;
    } else if (strcmp(op, "Gather") == 0) {
        if (!ha || !hb)
            return TD_OK;
        int64_t axis = td_node_attr_int(n, "axis", 0);
        if (!norm_axis(&axis, a.rank) || a.rank - 1 + b.rank > MAXR)
            return TD_OK;
        o->rank = 0;
        for (int d = 0; d < axis; d++)
            o->dims[o->rank++] = a.dims[d];
        for (int d = 0; d < b.rank; d++)
            o->dims[o->rank++] = b.dims[d];
        for (int d = (int)axis + 1; d < a.rank; d++)
            o->dims[o->rank++] = a.dims[d];
        /* gathering from a tracked shape tensor with constant indices */
        const sym_entry *s = sym_of(syms, n->inputs[0], &scratch);
        int64_t idx[MAXR];
        int cnt;
        if (s && a.rank == 1 && opt_const_ints(n->inputs[1], idx, MAXR, &cnt)) {
            td_dim e[MAXR];
            bool good = true;
            for (int i = 0; i < cnt; i++) {
                int64_t k = idx[i] < 0 ? idx[i] + s->n : idx[i];
                good &= k >= 0 && k < s->n;
                if (good)
                    e[i] = s->e[k];
            }
            if (good)
                TD_TRY(sym_put(ctx, syms, n->outputs[0], cnt, e));
        }
    } else if (strcmp(op, "Unsqueeze") == 0 || strcmp(op, "Squeeze") == 0) {
        if (!ha)
            return TD_OK;
        int64_t axes[MAXR];
        int cnt;
        if (!read_axes(n, 1, axes, &cnt))
            return TD_OK;
        bool unsq = op[0] == 'U';
        if (unsq) {
            if (cnt < 0 || a.rank + cnt > MAXR)
                return TD_OK;
            int r = a.rank + cnt;
            bool ins[MAXR] = {false};
            for (int i = 0; i < cnt; i++) {
                if (!norm_axis(&axes[i], r))
                    return TD_OK;
                ins[axes[i]] = true;
            }
            o->rank = r;
            for (int i = 0, j = 0; i < r; i++)
                o->dims[i] = ins[i] ? (td_dim){1, NULL} : a.dims[j++];
        } else {
            bool drop[MAXR] = {false};
            if (cnt < 0) {
                for (int i = 0; i < a.rank; i++) {
                    if (a.dims[i].value < 0)
                        return TD_OK; /* cannot tell whether it is 1 */
                    drop[i] = a.dims[i].value == 1;
                }
            } else {
                for (int i = 0; i < cnt; i++) {
                    if (!norm_axis(&axes[i], a.rank))
                        return TD_OK;
                    drop[axes[i]] = true;
                }
            }
            o->rank = 0;
            for (int i = 0; i < a.rank; i++)
                if (!drop[i])
                    o->dims[o->rank++] = a.dims[i];
        }
        const sym_entry *s = sym_get(syms, n->inputs[0]);
        if (s)
            TD_TRY(sym_put(ctx, syms, n->outputs[0], s->n, s->e));
    } else if (strcmp(op, "Concat") == 0) {
        if (!ha)
            return TD_OK;
        int64_t axis = td_node_attr_int(n, "axis", 0);
        if (!norm_axis(&axis, a.rank))
            return TD_OK;
        *o = a;
        int64_t total = 0;
        bool known = true;
        td_dim e[MAXR];
        int ne = 0;
        bool symok = a.rank == 1;
        for (int i = 0; i < n->n_inputs; i++) {
            shape_t x;
            if (!n->inputs[i] || !value_shape(n->inputs[i], &x) || x.rank != a.rank)
                return TD_OK;
            known &= x.dims[axis].value >= 0;
            total += x.dims[axis].value;
            const sym_entry *s = symok ? sym_of(syms, n->inputs[i], &scratch) : NULL;
            if (s && ne + s->n <= MAXR) {
                memcpy(e + ne, s->e, sizeof *e * (size_t)s->n);
                ne += s->n;
            } else {
                symok = false;
            }
        }
        o->dims[axis] = known ? (td_dim){total, NULL} : unknown_dim;
        if (symok)
            TD_TRY(sym_put(ctx, syms, n->outputs[0], ne, e));
    } else if (strcmp(op, "Reshape") == 0) {
        if (!ha)
            return TD_OK;
        const sym_entry *s = n->n_inputs > 1 ? sym_of(syms, n->inputs[1], &scratch) : NULL;
        if (s) {
            if (!dims_from_sym(s, &a, td_node_attr_int(n, "allowzero", 0) != 0, o))
                return TD_OK;
        } else if (hb && b.rank == 1 && b.dims[0].value >= 0 && b.dims[0].value <= MAXR) {
            o->rank = (int)b.dims[0].value;
            for (int i = 0; i < o->rank; i++)
                o->dims[i] = unknown_dim;
        }
        o->elem = a.elem;
        const sym_entry *xs = sym_get(syms, n->inputs[0]);
        if (xs && o->rank >= 0 && o->rank <= 1)
            TD_TRY(sym_put(ctx, syms, n->outputs[0], xs->n, xs->e));
    } else if (strcmp(op, "Flatten") == 0) {
        if (!ha)
            return TD_OK;
        int64_t axis = td_node_attr_int(n, "axis", 1);
        if (axis < 0)
            axis += a.rank;
        if (axis < 0 || axis > a.rank)
            return TD_OK;
        int64_t p[2] = {1, 1};
        bool k[2] = {true, true};
        for (int i = 0; i < a.rank; i++) {
            k[i >= axis] &= a.dims[i].value >= 0;
            p[i >= axis] *= a.dims[i].value >= 0 ? a.dims[i].value : 1;
        }
        o->rank = 2;
        for (int i = 0; i < 2; i++)
            o->dims[i] = k[i] ? (td_dim){p[i], NULL} : unknown_dim;
        if (axis == 1 && a.rank >= 1 && !k[0])
            o->dims[0] = a.dims[0];
    } else if (is_one_of(op, reduce_ops)) {
        if (!ha)
            return TD_OK;
        int64_t axes[MAXR];
        int cnt;
        if (!read_axes(n, 1, axes, &cnt))
            return TD_OK;
        bool keep = td_node_attr_int(n, "keepdims", 1) != 0, red[MAXR] = {false};
        if (cnt < 0) {
            if (td_node_attr_int(n, "noop_with_empty_axes", 0))
                return TD_OK;
            for (int i = 0; i < a.rank; i++)
                red[i] = true;
        }
        for (int i = 0; i < cnt; i++) {
            if (!norm_axis(&axes[i], a.rank))
                return TD_OK;
            red[axes[i]] = true;
        }
        o->rank = 0;
        for (int i = 0; i < a.rank; i++) {
            if (!red[i])
                o->dims[o->rank++] = a.dims[i];
            else if (keep)
                o->dims[o->rank++] = (td_dim){1, NULL};
        }
    } else if (strcmp(op, "Slice") == 0) {
        if (!ha)
            return TD_OK;
        *o = a;
        int64_t st[MAXR], en[MAXR], ax[MAXR], sp[MAXR];
        int cs, ce, ca = -1, cp = -1;
        bool consts = n->n_inputs >= 3 && opt_const_ints(n->inputs[1], st, MAXR, &cs) &&
                      opt_const_ints(n->inputs[2], en, MAXR, &ce) && cs == ce;
        if (consts && n->n_inputs > 3 && n->inputs[3])
            consts = opt_const_ints(n->inputs[3], ax, MAXR, &ca) && ca == cs;
        if (consts && n->n_inputs > 4 && n->inputs[4])
            consts = opt_const_ints(n->inputs[4], sp, MAXR, &cp) && cp == cs;
        if (!consts) {
            /* Slice(x, 0, n) along one axis with n a tracked dim: that axis becomes n
             * (position ids sliced to the sequence length) */
            const sym_entry *es = n->n_inputs >= 3 ? sym_of(syms, n->inputs[2], &scratch) : NULL;
            int64_t st0[MAXR], ax0[MAXR] = {0};
            int c0 = 0, ca0 = 1;
            bool simple = es && es->n == 1 && opt_const_ints(n->inputs[1], st0, MAXR, &c0) && c0 == 1 &&
                          st0[0] == 0 && (n->n_inputs < 5 || !n->inputs[4] || (opt_const_ints(n->inputs[4], sp, MAXR, &cp) && cp == 1 && sp[0] == 1)) &&
                          (n->n_inputs < 4 || !n->inputs[3] || (opt_const_ints(n->inputs[3], ax0, MAXR, &ca0) && ca0 == 1));
            for (int i = 0; i < a.rank; i++)
                o->dims[i] = a.dims[i];
            if (simple && norm_axis(&ax0[0], a.rank))
                o->dims[ax0[0]] = (es->e[0].value >= 0 || es->e[0].param) ? es->e[0] : unknown_dim;
            else
                for (int i = 0; i < a.rank; i++)
                    o->dims[i] = unknown_dim;
            return *ok = true, TD_OK;
        }
        for (int i = 0; i < cs; i++) {
            int64_t axis = ca >= 0 ? ax[i] : i, step = cp >= 0 ? sp[i] : 1;
            if (!norm_axis(&axis, a.rank) || step == 0)
                return TD_OK;
            int64_t len = a.dims[axis].value;
            o->dims[axis] = unknown_dim;
            if (step == 1 && st[i] == 0 && en[i] >= INT64_MAX / 2)
                o->dims[axis] = a.dims[axis]; /* whole axis */
            else if (len >= 0) {
                int64_t s = st[i] < 0 ? st[i] + len : st[i], e = en[i] < 0 ? en[i] + len : en[i];
                if (step > 0) {
                    s = s < 0 ? 0 : (s > len ? len : s);
                    e = e < 0 ? 0 : (e > len ? len : e);
                    o->dims[axis] = (td_dim){e > s ? (e - s + step - 1) / step : 0, NULL};
                } else {
                    s = s < 0 ? -1 : (s > len - 1 ? len - 1 : s);
                    e = e < -1 ? -1 : (e > len - 1 ? len - 1 : e);
                    o->dims[axis] = (td_dim){s > e ? (s - e - step - 1) / (-step) : 0, NULL};
                }
            }
        }
        const sym_entry *s = sym_get(syms, n->inputs[0]);
        if (s && a.rank == 1 && cs == 1 && (cp < 0 || sp[0] == 1)) {
            int64_t b0 = st[0] < 0 ? st[0] + s->n : st[0], e0 = en[0] < 0 ? en[0] + s->n : en[0];
            b0 = b0 < 0 ? 0 : (b0 > s->n ? s->n : b0);
            e0 = e0 < b0 ? b0 : (e0 > s->n ? s->n : e0);
            TD_TRY(sym_put(ctx, syms, n->outputs[0], (int)(e0 - b0), s->e + b0));
        }
    } else if (strcmp(op, "Expand") == 0) {
        const sym_entry *s = n->n_inputs > 1 ? sym_of(syms, n->inputs[1], &scratch) : NULL;
        if (!ha || (!s && !(hb && b.rank == 1 && b.dims[0].value >= 0 && b.dims[0].value <= MAXR)))
            return TD_OK;
        shape_t t;
        if (s && !dims_from_sym(s, NULL, true, &t))
            return TD_OK;
        if (!s) { /* shape tensor of known length, values unknown */
            t.rank = (int)b.dims[0].value;
            for (int i = 0; i < t.rank; i++)
                t.dims[i] = unknown_dim;
        }
        broadcast(&a, &t, o);
        o->elem = a.elem;
    } else if (strcmp(op, "ConstantOfShape") == 0) {
        const td_attr *va = td_node_attr(n, "value");
        o->elem = va && va->t ? va->t->dtype : TD_F32;
        const sym_entry *s = n->n_inputs > 0 ? sym_of(syms, n->inputs[0], &scratch) : NULL;
        if (s && !dims_from_sym(s, NULL, true, o))
            return TD_OK;
        if (!s && ha && a.rank == 1 && a.dims[0].value >= 0 && a.dims[0].value <= MAXR) {
            o->rank = (int)a.dims[0].value;
            for (int i = 0; i < o->rank; i++)
                o->dims[i] = unknown_dim;
        }
    } else if (strcmp(op, "GatherElements") == 0) {
        if (!ha || !hb)
            return TD_OK;
        *o = b;
        o->elem = a.elem;
    } else if (strcmp(op, "Range") == 0) {
        o->rank = 1;
        o->dims[0] = unknown_dim;
        double start, delta;
        const sym_entry *lim = n->n_inputs == 3 ? sym_of(syms, n->inputs[1], &scratch) : NULL;
        if (lim && lim->n == 1 && opt_const_scalar(n->inputs[0], &start) && start == 0 &&
            opt_const_scalar(n->inputs[2], &delta) && delta == 1)
            o->dims[0] = lim->e[0]; /* Range(0, n, 1) has n elements */
    } else if (strcmp(op, "Attention") == 0 || strcmp(op, "MultiHeadAttention") == 0 ||
               strcmp(op, "GroupQueryAttention") == 0) {
        if (!ha || a.rank != 3)
            return TD_OK;
        *o = a;
        size_t qc = 0;
        const int64_t *q = td_node_attr_ints(n, "qkv_hidden_sizes", &qc);
        if (strcmp(op, "Attention") == 0) {
            if (q && qc == 3)
                o->dims[2] = (td_dim){q[2], NULL};
            else if (hb && b.rank == 2 && b.dims[1].value > 0)
                o->dims[2] = (td_dim){b.dims[1].value / 3, NULL};
            else
                o->dims[2] = unknown_dim;
        }
    } else {
        return TD_OK;
    }
    *ok = o->rank >= 0 || o->elem != TD_UNDEFINED;
    return TD_OK;
}

static td_status set_type(td_ctx *ctx, td_value *v, const shape_t *s) {
    int64_t dims[MAXR];
    const char *params[MAXR];
    for (int i = 0; i < s->rank; i++) {
        dims[i] = s->dims[i].value;
        params[i] = s->dims[i].param;
    }
    /* dims may point into this very value's type (same-shape ops on itself never
     * happen, but Reshape/Identity chains share strings): copy first */
    char *copies[MAXR] = {0};
    for (int i = 0; i < s->rank; i++)
        if (params[i]) {
            copies[i] = strdup(params[i]);
            if (!copies[i]) {
                for (int j = 0; j < i; j++)
                    free(copies[j]);
                return td_fail_oom(ctx, 0, "a dim name");
            }
            params[i] = copies[i];
        }
    td_status st = td_value_set_tensor_type(ctx, v, s->elem, s->rank, s->rank > 0 ? dims : NULL, params);
    for (int i = 0; i < s->rank; i++)
        free(copies[i]);
    return st;
}

/* No shape yet (a dtype alone, as graph outputs often declare, is completed too). */
static bool untyped(const td_value *v) { return v->type.rank < 0 && !v->type.raw && !v->initializer; }

/* Split: each output is the input with the split axis cut to its part. */
static td_status infer_split(td_ctx *ctx, td_node *n, int *changes) {
    shape_t a;
    if (!value_shape(n->inputs[0], &a))
        return TD_OK;
    int64_t axis = td_node_attr_int(n, "axis", 0);
    if (!norm_axis(&axis, a.rank))
        return TD_OK;
    int64_t parts[16];
    int cnt = 0;
    size_t ac = 0;
    const int64_t *attr = td_node_attr_ints(n, "split", &ac);
    if (attr && ac <= 16) {
        memcpy(parts, attr, ac * sizeof *attr);
        cnt = (int)ac;
    } else if (n->n_inputs > 1 && n->inputs[1]) {
        if (!opt_const_ints(n->inputs[1], parts, 16, &cnt))
            return TD_OK;
    } else if (a.dims[axis].value >= 0 && n->n_outputs > 0 && a.dims[axis].value % n->n_outputs == 0) {
        cnt = n->n_outputs;
        for (int i = 0; i < cnt; i++)
            parts[i] = a.dims[axis].value / cnt;
    }
    if (cnt != n->n_outputs)
        return TD_OK;
    for (int j = 0; j < n->n_outputs; j++) {
        td_value *v = n->outputs[j];
        if (!v || !untyped(v))
            continue;
        shape_t o = a;
        o.dims[axis] = (td_dim){parts[j], NULL};
        TD_TRY(set_type(ctx, v, &o));
        v->has_value_info = !v->is_output;
        (*changes)++;
    }
    return TD_OK;
}

/* A constant's shape is its data's. The IR gives initializers that type when they
 * are set, but a value's type may be edited afterwards and graphs can come from
 * any builder: both a typed and a shapeless constant are legal, and matchers that
 * read value types must see the same shapes either way. */
static td_status type_constants(td_ctx *ctx, td_graph *g, int *changes) {
    for (int i = 0; i < g->n_initializers; i++) {
        td_value *v = g->initializers[i];
        const td_tensor *t = opt_const(v);
        if (!t || v->type.rank >= 0 || v->type.raw)
            continue;
        TD_TRY(td_value_set_tensor_type(ctx, v, t->dtype, t->rank, t->dims, NULL));
        (*changes)++;
    }
    return TD_OK;
}

td_status td_pass_shape(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    TD_TRY(td_graph_toposort(ctx, g));
    TD_TRY(type_constants(ctx, g, changes));
    sym_table syms = {0};
    td_status s = TD_OK;
    for (int i = 0; i < g->n_nodes && s == TD_OK; i++) {
        td_node *n = g->nodes[i];
        if (n->dead || n->n_outputs < 1 || !n->outputs[0])
            continue;
        bool com = strcmp(n->domain, "com.microsoft") == 0;
        if (!opt_is_onnx_domain(n->domain) && !com)
            continue;
        if (opt_is_op(n, "Split")) {
            s = infer_split(ctx, n, changes);
            continue;
        }
        shape_t o;
        bool ok;
        s = infer_node(ctx, &syms, n, &o, &ok);
        if (s != TD_OK || !ok)
            continue;
        /* SkipLayerNormalization's 4th output (input+skip+bias) has the input's shape too */
        for (int j = 0; j < n->n_outputs; j++) {
            td_value *v = n->outputs[j];
            if (!v || !untyped(v))
                continue;
            bool applies = j == 0 || (strcmp(n->op_type, "SkipLayerNormalization") == 0 && j == 3);
            if (!applies)
                continue;
            if (o.rank < 0) {
                s = td_value_set_tensor_type(ctx, v, o.elem, -1, NULL, NULL);
            } else {
                s = set_type(ctx, v, &o);
            }
            if (s != TD_OK)
                break;
            v->has_value_info = !v->is_output && !v->is_input && !v->initializer;
            (*changes)++;
        }
    }
    free(syms.items);
    return s;
}
