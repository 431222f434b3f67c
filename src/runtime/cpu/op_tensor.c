/* Shape and data-movement ops: Reshape, Flatten, Squeeze, Unsqueeze, Identity,
 * Shape, Size, Transpose, Concat, Split, Slice, Expand, Gather, GatherElements,
 * ConstantOfShape, Constant, Range, Cast, CastLike, Trilu, CumSum. */
#include "runtime/cpu/op_util.h"
#include "runtime/cpu/ops.h"

#include <stdio.h>

typedef struct ax_state {
    int64_t axis;
    int64_t ints[TD_MAX_RANK];
    int n_ints;
    bool has_ints;
    int64_t a, b; /* op-specific extra attributes */
} ax_state;

static td_status new_state(td_ctx *ctx, td_rt_node *rn, ax_state **out) {
    *out = calloc(1, sizeof **out);
    if (!*out)
        return td_fail_oom(ctx, sizeof **out, "op state");
    rn->state = *out;
    return TD_OK;
}

/* ints attribute into the state (at most TD_MAX_RANK entries). */
static td_status attr_ints(td_ctx *ctx, td_rt_node *rn, const char *name, ax_state *st) {
    size_t cnt = 0;
    const int64_t *v = td_node_attr_ints(rn->node, name, &cnt);
    st->has_ints = td_node_attr(rn->node, name) != NULL;
    if (cnt > TD_MAX_RANK)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "attribute %s has %zu entries (max %d)", name, cnt, TD_MAX_RANK);
    for (size_t i = 0; i < cnt; i++)
        st->ints[i] = v[i];
    st->n_ints = (int)cnt;
    return TD_OK;
}

static void copy_shape(td_rt_tensor *dst, const td_rt_tensor *src) {
    dst->rank = src->rank;
    td_memcpy(dst->shape, src->shape, sizeof dst->shape);
}

/* View ops: output bytes equal input bytes. Planned as aliases; when hoisted
 * (own buffer) this copies. */
static td_status view_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                           td_rt_env *env) {
    if (out[0]->data != in[0]->data && td_rt_nbytes(in[0]))
        td_memcpy(out[0]->data, in[0]->data, td_rt_nbytes(in[0]));
    return TD_OK;
}

static td_status any_first_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out, int min_in,
                                int max_in) {
    TD_TRY(td_check_inputs(ctx, rn, min_in, max_in, 1, 1));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_any_dt, "float, float16, bfloat16, int32, int64, bool"));
    out[0] = in[0];
    return TD_OK;
}

/* ---- Identity ---- */
static td_status identity_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    return any_first_init(ctx, rn, in, out, 1, 1);
}
static td_status identity_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    copy_shape(out[0], in[0]);
    return TD_OK;
}

/* ---- Reshape ---- */
static td_status reshape_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    ax_state *st;
    TD_TRY(any_first_init(ctx, rn, in, out, 2, 2));
    TD_TRY(new_state(ctx, rn, &st));
    st->a = td_node_attr_int(rn->node, "allowzero", 0);
    return TD_OK;
}

static td_status reshape_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    ax_state *st = rn->state;
    int64_t dims[TD_MAX_RANK];
    int n;
    TD_TRY(td_read_int_list(ctx, rn, in[1], "shape", dims, TD_MAX_RANK, &n));
    int infer = -1;
    int64_t known = 1, total = td_rt_numel(in[0]);
    for (int i = 0; i < n; i++) {
        if (dims[i] == 0 && !st->a) {
            if (i >= in[0]->rank)
                return td_node_fail(ctx, rn, TD_ERR_SHAPE, "shape[%d] = 0 copies a dim the input (rank %d) lacks", i,
                                    in[0]->rank);
            dims[i] = in[0]->shape[i];
        }
        if (dims[i] == -1) {
            if (infer >= 0)
                return td_node_fail(ctx, rn, TD_ERR_SHAPE, "shape has more than one -1");
            infer = i;
            continue;
        }
        if (dims[i] < 0)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "shape[%d] = %lld is negative", i, (long long)dims[i]);
        if (__builtin_mul_overflow(known, dims[i], &known))
            return td_node_fail(ctx, rn, TD_ERR_OVERFLOW, "shape overflows");
    }
    if (infer >= 0) {
        if (known == 0 || total % known)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "cannot infer the -1 dim: %lld elements into parts of %lld",
                                (long long)total, (long long)known);
        dims[infer] = total / known;
        known *= dims[infer];
    }
    if (known != total) {
        char a[128], b[128];
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "cannot reshape %s (%lld elements) to %s",
                            td_shape_str(in[0]->shape, in[0]->rank, a, sizeof a), (long long)total,
                            td_shape_str(dims, n, b, sizeof b));
    }
    out[0]->rank = n;
    td_memcpy(out[0]->shape, dims, (size_t)n * sizeof dims[0]);
    return TD_OK;
}

/* ---- Flatten ---- */
static td_status flatten_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    ax_state *st;
    TD_TRY(any_first_init(ctx, rn, in, out, 1, 1));
    TD_TRY(new_state(ctx, rn, &st));
    st->axis = td_node_attr_int(rn->node, "axis", 1);
    return TD_OK;
}
static td_status flatten_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    ax_state *st = rn->state;
    int r = in[0]->rank;
    int64_t axis = st->axis < 0 ? st->axis + r : st->axis;
    if (axis < 0 || axis > r)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is outside [-%d, %d]", (long long)st->axis, r, r);
    int64_t a = 1, b = 1;
    for (int i = 0; i < r; i++)
        *(i < axis ? &a : &b) *= in[0]->shape[i];
    out[0]->rank = 2;
    out[0]->shape[0] = a;
    out[0]->shape[1] = b;
    return TD_OK;
}

/* ---- Squeeze / Unsqueeze (axes attribute before opset 13, input since) ---- */
static td_status squeeze_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    ax_state *st;
    bool unsq = strcmp(rn->node->op_type, "Unsqueeze") == 0;
    TD_TRY(any_first_init(ctx, rn, in, out, rn->opset >= 13 && unsq ? 2 : 1, rn->opset >= 13 ? 2 : 1));
    TD_TRY(new_state(ctx, rn, &st));
    if (rn->opset < 13)
        TD_TRY(attr_ints(ctx, rn, "axes", st));
    if (unsq && rn->opset < 13 && !st->has_ints)
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "Unsqueeze needs the axes attribute");
    return TD_OK;
}

static td_status get_axes(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, int64_t *axes, int *n) {
    ax_state *st = rn->state;
    if (rn->opset < 13) {
        td_memcpy(axes, st->ints, sizeof st->ints);
        *n = st->n_ints;
        return TD_OK;
    }
    if (rn->n_in < 2 || !in[1]) {
        *n = -1; /* absent */
        return TD_OK;
    }
    return td_read_int_list(ctx, rn, in[1], "axes", axes, TD_MAX_RANK, n);
}

static td_status squeeze_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    int64_t axes[TD_MAX_RANK];
    int n, r = in[0]->rank;
    bool drop[TD_MAX_RANK] = {false};
    TD_TRY(get_axes(ctx, rn, in, axes, &n));
    if (n < 0 || (n == 0 && rn->opset < 13)) {
        for (int i = 0; i < r; i++)
            drop[i] = in[0]->shape[i] == 1;
    }
    for (int i = 0; i < n; i++) {
        int a;
        if (!td_norm_axis(axes[i], r, &a))
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is outside the input's rank %d", (long long)axes[i], r);
        if (in[0]->shape[a] != 1)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "cannot squeeze axis %d of size %lld", a,
                                (long long)in[0]->shape[a]);
        drop[a] = true;
    }
    int k = 0;
    for (int i = 0; i < r; i++)
        if (!drop[i])
            out[0]->shape[k++] = in[0]->shape[i];
    out[0]->rank = k;
    return TD_OK;
}

static td_status unsqueeze_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    int64_t axes[TD_MAX_RANK];
    int n;
    bool ins[TD_MAX_RANK] = {false};
    TD_TRY(get_axes(ctx, rn, in, axes, &n));
    int r = in[0]->rank + (n > 0 ? n : 0);
    if (r > TD_MAX_RANK)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "output rank %d exceeds %d", r, TD_MAX_RANK);
    for (int i = 0; i < n; i++) {
        int a;
        if (!td_norm_axis(axes[i], r, &a) || ins[a])
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is invalid or repeated for output rank %d",
                                (long long)axes[i], r);
        ins[a] = true;
    }
    int k = 0;
    for (int i = 0; i < r; i++)
        out[0]->shape[i] = ins[i] ? 1 : in[0]->shape[k++];
    out[0]->rank = r;
    return TD_OK;
}

/* ---- Shape / Size ---- */
static td_status shape_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    ax_state *st;
    TD_TRY(td_check_inputs(ctx, rn, 1, 1, 1, 1));
    TD_TRY(new_state(ctx, rn, &st));
    st->a = td_node_attr_int(rn->node, "start", 0);
    st->b = td_node_attr_int(rn->node, "end", INT64_MAX);
    out[0] = TD_I64;
    return TD_OK;
}
static void shape_range(const ax_state *st, int r, int64_t *s, int64_t *e) {
    *s = st->a < 0 ? st->a + r : st->a;
    *e = st->b < 0 ? st->b + r : st->b;
    if (*s < 0) *s = 0;
    if (*s > r) *s = r;
    if (*e < 0) *e = 0;
    if (*e > r) *e = r;
    if (*e < *s) *e = *s;
}
static td_status shape_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    int64_t s, e;
    shape_range(rn->state, in[0]->rank, &s, &e);
    out[0]->rank = 1;
    out[0]->shape[0] = e - s;
    return TD_OK;
}
static td_status shape_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                            td_rt_env *env) {
    int64_t s, e;
    shape_range(rn->state, in[0]->rank, &s, &e);
    for (int64_t i = s; i < e; i++)
        ((int64_t *)out[0]->data)[i - s] = in[0]->shape[i];
    return TD_OK;
}
static td_status size_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 1, 1, 1, 1));
    out[0] = TD_I64;
    return TD_OK;
}
static td_status size_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    out[0]->rank = 0;
    return TD_OK;
}
static td_status size_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                           td_rt_env *env) {
    *(int64_t *)out[0]->data = td_rt_numel(in[0]);
    return TD_OK;
}

/* ---- Transpose ---- */
static td_status transpose_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    ax_state *st;
    TD_TRY(any_first_init(ctx, rn, in, out, 1, 1));
    TD_TRY(new_state(ctx, rn, &st));
    return attr_ints(ctx, rn, "perm", st);
}
static td_status get_perm(td_ctx *ctx, td_rt_node *rn, int r, int *perm) {
    ax_state *st = rn->state;
    bool seen[TD_MAX_RANK] = {false};
    if (!st->has_ints) {
        for (int i = 0; i < r; i++)
            perm[i] = r - 1 - i;
        return TD_OK;
    }
    if (st->n_ints != r)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "perm has %d entries for an input of rank %d", st->n_ints, r);
    for (int i = 0; i < r; i++) {
        int a;
        if (!td_norm_axis(st->ints[i], r, &a) || seen[a])
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "perm is not a permutation of 0..%d", r - 1);
        seen[a] = true;
        perm[i] = a;
    }
    return TD_OK;
}
static td_status transpose_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    int perm[TD_MAX_RANK];
    TD_TRY(get_perm(ctx, rn, in[0]->rank, perm));
    out[0]->rank = in[0]->rank;
    for (int i = 0; i < in[0]->rank; i++)
        out[0]->shape[i] = in[0]->shape[perm[i]];
    return TD_OK;
}
static void contiguous_strides(const td_rt_tensor *t, int64_t *st) {
    int64_t s = 1;
    for (int d = t->rank - 1; d >= 0; d--) {
        st[d] = s;
        s *= t->shape[d];
    }
}
static td_status transpose_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                                td_rt_env *env) {
    int perm[TD_MAX_RANK];
    int64_t ist[TD_MAX_RANK], sst[TD_MAX_RANK];
    TD_TRY(get_perm(ctx, rn, in[0]->rank, perm));
    contiguous_strides(in[0], ist);
    for (int i = 0; i < in[0]->rank; i++)
        sst[i] = ist[perm[i]];
    td_strided_copy(out[0]->data, in[0]->data, td_dtype_size(in[0]->dtype), out[0]->rank, out[0]->shape, sst);
    return TD_OK;
}

/* ---- Concat ---- */
static td_status concat_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    ax_state *st;
    TD_TRY(any_first_init(ctx, rn, in, out, 1, 1 << 20));
    TD_TRY(td_check_same(ctx, rn, in, 0, rn->n_in));
    TD_TRY(new_state(ctx, rn, &st));
    if (!td_node_attr(rn->node, "axis"))
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "Concat needs the axis attribute");
    st->axis = td_node_attr_int(rn->node, "axis", 0);
    return TD_OK;
}
static td_status concat_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    ax_state *st = rn->state;
    int r = in[0]->rank, a;
    if (!td_norm_axis(st->axis, r, &a))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is outside rank %d", (long long)st->axis, r);
    copy_shape(out[0], in[0]);
    out[0]->shape[a] = 0;
    for (int i = 0; i < rn->n_in; i++) {
        if (!in[i])
            return td_node_fail(ctx, rn, TD_ERR_FORMAT, "input %d is missing", i);
        if (in[i]->rank != r)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "input %d has rank %d, input 0 has rank %d", i, in[i]->rank, r);
        for (int d = 0; d < r; d++)
            if (d != a && in[i]->shape[d] != in[0]->shape[d])
                return td_node_fail(ctx, rn, TD_ERR_SHAPE, "input %d axis %d is %lld, input 0 has %lld", i, d,
                                    (long long)in[i]->shape[d], (long long)in[0]->shape[d]);
        out[0]->shape[a] += in[i]->shape[a];
    }
    return TD_OK;
}
static td_status concat_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                             td_rt_env *env) {
    ax_state *st = rn->state;
    int a;
    td_norm_axis(st->axis, out[0]->rank, &a);
    size_t es = td_dtype_size(out[0]->dtype);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < a; d++)
        outer *= out[0]->shape[d];
    for (int d = a + 1; d < out[0]->rank; d++)
        inner *= out[0]->shape[d];
    size_t orow = (size_t)(out[0]->shape[a] * inner) * es, pos = 0;
    for (int i = 0; i < rn->n_in; i++) {
        size_t irow = (size_t)(in[i]->shape[a] * inner) * es;
        for (int64_t o = 0; o < outer && irow; o++)
            td_memcpy((uint8_t *)out[0]->data + (size_t)o * orow + pos, (const uint8_t *)in[i]->data + (size_t)o * irow,
                   irow);
        pos += irow;
    }
    return TD_OK;
}

/* ---- Split ---- */
static td_status split_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 1, rn->opset >= 13 ? 2 : 1, 1, 1 << 20));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_any_dt, "float, float16, bfloat16, int32, int64, bool"));
    /* state + per-plan split sizes (one per output) in one allocation */
    ax_state *st = calloc(1, sizeof *st + (size_t)rn->n_out * sizeof(int64_t));
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    st->axis = td_node_attr_int(rn->node, "axis", 0);
    st->b = td_node_attr_int(rn->node, "num_outputs", 0);
    if (rn->opset < 13) {
        size_t cnt = 0;
        td_node_attr_ints(rn->node, "split", &cnt);
        if (cnt && (int)cnt != rn->n_out)
            return td_node_fail(ctx, rn, TD_ERR_FORMAT, "split has %zu entries for %d outputs", cnt, rn->n_out);
    }
    for (int k = 0; k < rn->n_out; k++)
        out[k] = in[0];
    return TD_OK;
}
static td_status split_sizes(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, int64_t *sizes) {
    ax_state *st = rn->state;
    int a;
    if (!td_norm_axis(st->axis, in[0]->rank, &a))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is outside rank %d", (long long)st->axis, in[0]->rank);
    int64_t dim = in[0]->shape[a], sum = 0;
    const int64_t *given = NULL;
    size_t cnt = 0;
    int64_t *buf = NULL;
    td_status s = TD_OK;
    if (rn->opset < 13) {
        given = td_node_attr_ints(rn->node, "split", &cnt);
    } else if (rn->n_in > 1 && in[1]) {
        int64_t n1 = td_rt_numel(in[1]);
        buf = malloc((size_t)(n1 > 0 ? n1 : 1) * sizeof *buf);
        if (!buf)
            return td_fail_oom(ctx, 0, "split sizes");
        int n;
        s = td_read_int_list(ctx, rn, in[1], "split", buf, (int)(n1 < 1 << 20 ? n1 : 1 << 20), &n);
        given = buf;
        cnt = (size_t)n;
        if (s == TD_OK && (int)cnt != rn->n_out)
            s = td_node_fail(ctx, rn, TD_ERR_SHAPE, "split has %zu entries for %d outputs", cnt, rn->n_out);
    }
    if (s == TD_OK && given) {
        for (int k = 0; k < rn->n_out; k++) {
            if (given[k] < 0) {
                s = td_node_fail(ctx, rn, TD_ERR_SHAPE, "split[%d] = %lld is negative", k, (long long)given[k]);
                break;
            }
            sizes[k] = given[k];
            sum += given[k];
        }
        if (s == TD_OK && sum != dim)
            s = td_node_fail(ctx, rn, TD_ERR_SHAPE, "split sizes sum to %lld but axis %d has %lld", (long long)sum, a,
                             (long long)dim);
    } else if (s == TD_OK) {
        int n = rn->n_out;
        int64_t part = rn->opset >= 18 ? (dim + n - 1) / n : dim / n;
        if (rn->opset < 18 && dim % n)
            s = td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %d of size %lld does not split evenly into %d outputs", a,
                             (long long)dim, n);
        for (int k = 0; k < n; k++) {
            int64_t left = dim - part * k;
            sizes[k] = left < part ? (left > 0 ? left : 0) : part;
        }
    }
    free(buf);
    return s;
}
static td_status split_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    ax_state *st = rn->state;
    int a;
    int64_t *sizes = (int64_t *)(st + 1);
    td_status s = split_sizes(ctx, rn, in, sizes);
    td_norm_axis(st->axis, in[0]->rank, &a);
    for (int k = 0; s == TD_OK && k < rn->n_out; k++) {
        if (!out[k])
            continue;
        copy_shape(out[k], in[0]);
        out[k]->shape[a] = sizes[k];
    }
    return s;
}
static td_status split_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                            td_rt_env *env) {
    ax_state *st = rn->state;
    int a;
    td_norm_axis(st->axis, in[0]->rank, &a);
    size_t es = td_dtype_size(in[0]->dtype);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < a; d++)
        outer *= in[0]->shape[d];
    for (int d = a + 1; d < in[0]->rank; d++)
        inner *= in[0]->shape[d];
    size_t irow = (size_t)(in[0]->shape[a] * inner) * es, pos = 0;
    for (int k = 0; k < rn->n_out; k++) {
        int64_t part = ((const int64_t *)(st + 1))[k]; /* sizes of the current plan */
        size_t orow = (size_t)(part * inner) * es;
        for (int64_t o = 0; o < outer && out[k] && orow; o++)
            td_memcpy((uint8_t *)out[k]->data + (size_t)o * orow, (const uint8_t *)in[0]->data + (size_t)o * irow + pos,
                   orow);
        pos += orow;
    }
    return TD_OK;
}

/* ---- Slice ---- */
static td_status slice_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    ax_state *st;
    if (rn->opset < 10) {
        TD_TRY(any_first_init(ctx, rn, in, out, 1, 1));
        TD_TRY(new_state(ctx, rn, &st));
        size_t ns = 0, ne = 0;
        td_node_attr_ints(rn->node, "starts", &ns);
        td_node_attr_ints(rn->node, "ends", &ne);
        if (ns != ne || ns > TD_MAX_RANK)
            return td_node_fail(ctx, rn, TD_ERR_FORMAT, "starts/ends attributes differ in length or are too long");
        return TD_OK;
    }
    return any_first_init(ctx, rn, in, out, 3, 5);
}

/* Per-axis start and step of the slice, and the output shape (also the CUDA backend's Slice). */
td_status td_slice_plan(td_ctx *ctx, const td_rt_node *rn, td_rt_tensor *const *in, int64_t *start, int64_t *step,
                        int64_t *shape) {
    int r = in[0]->rank;
    int64_t starts[TD_MAX_RANK], ends[TD_MAX_RANK], axes[TD_MAX_RANK], steps[TD_MAX_RANK];
    int ns, ne, na = -1, nst = -1;
    if (rn->opset < 10) {
        size_t c1 = 0, c2 = 0, c3 = 0;
        const int64_t *s = td_node_attr_ints(rn->node, "starts", &c1), *e = td_node_attr_ints(rn->node, "ends", &c2);
        const int64_t *ax = td_node_attr_ints(rn->node, "axes", &c3);
        ns = (int)c1;
        ne = (int)c2;
        td_memcpy(starts, s, c1 * sizeof *s);
        td_memcpy(ends, e, c2 * sizeof *e);
        if (ax) {
            if (c3 != c1)
                return td_node_fail(ctx, rn, TD_ERR_FORMAT, "axes and starts differ in length");
            td_memcpy(axes, ax, c3 * sizeof *ax);
            na = (int)c3;
        }
    } else {
        TD_TRY(td_read_int_list(ctx, rn, in[1], "starts", starts, TD_MAX_RANK, &ns));
        TD_TRY(td_read_int_list(ctx, rn, in[2], "ends", ends, TD_MAX_RANK, &ne));
        if (rn->n_in > 3 && in[3])
            TD_TRY(td_read_int_list(ctx, rn, in[3], "axes", axes, TD_MAX_RANK, &na));
        if (rn->n_in > 4 && in[4])
            TD_TRY(td_read_int_list(ctx, rn, in[4], "steps", steps, TD_MAX_RANK, &nst));
    }
    if (ns != ne || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "starts, ends, axes and steps must have the same length");
    bool seen[TD_MAX_RANK] = {false};
    for (int d = 0; d < r; d++) {
        start[d] = 0;
        step[d] = 1;
        shape[d] = in[0]->shape[d];
    }
    for (int i = 0; i < ns; i++) {
        int a;
        int64_t ax = na >= 0 ? axes[i] : i;
        if (!td_norm_axis(ax, r, &a) || seen[a])
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is invalid or repeated for rank %d", (long long)ax, r);
        seen[a] = true;
        int64_t dim = in[0]->shape[a], sp = nst >= 0 ? steps[i] : 1, s = starts[i], e = ends[i];
        if (sp == 0)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "step 0 on axis %d", a);
        if (s < 0)
            s = s < -dim ? 0 : s + dim; /* s + dim when in range */
        if (e < 0)
            e = e < -dim ? -1 : e + dim;
        if (sp > 0) {
            if (s > dim) s = dim;
            if (e > dim) e = dim;
            if (e < 0) e = 0;
            shape[a] = e > s ? (e - s - 1) / sp + 1 : 0; /* no overflow for huge steps */
        } else {
            if (s > dim - 1) s = dim - 1;
            if (e > dim - 1) e = dim - 1;
            if (e < -1) e = -1;
            if (s < 0) s = -1; /* empty */
            int64_t nstep = sp == INT64_MIN ? INT64_MAX : -sp;
            shape[a] = s > e ? (s - e - 1) / nstep + 1 : 0;
        }
        start[a] = shape[a] ? s : 0;
        step[a] = sp;
    }
    return TD_OK;
}
static td_status slice_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    int64_t start[TD_MAX_RANK], step[TD_MAX_RANK];
    TD_TRY(td_slice_plan(ctx, rn, in, start, step, out[0]->shape));
    out[0]->rank = in[0]->rank;
    return TD_OK;
}
static td_status slice_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                            td_rt_env *env) {
    int64_t start[TD_MAX_RANK], step[TD_MAX_RANK], shape[TD_MAX_RANK], ist[TD_MAX_RANK], sst[TD_MAX_RANK];
    TD_TRY(td_slice_plan(ctx, rn, in, start, step, shape));
    if (td_rt_numel(out[0]) == 0)
        return TD_OK;
    contiguous_strides(in[0], ist);
    int64_t off = 0;
    for (int d = 0; d < in[0]->rank; d++) {
        off += start[d] * ist[d];
        sst[d] = shape[d] > 1 ? ist[d] * step[d] : 0; /* (shape-1)*|step| < dim: no overflow */
    }
    size_t es = td_dtype_size(in[0]->dtype);
    td_strided_copy(out[0]->data, (const uint8_t *)in[0]->data + (ptrdiff_t)off * (ptrdiff_t)es, es, out[0]->rank,
                    out[0]->shape, sst);
    return TD_OK;
}

/* ---- Expand ---- */
static td_status expand_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    return any_first_init(ctx, rn, in, out, 2, 2);
}
static td_status expand_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    td_rt_tensor shp = {TD_F32, 0, {0}, NULL};
    int n;
    TD_TRY(td_read_int_list(ctx, rn, in[1], "shape", shp.shape, TD_MAX_RANK, &n));
    shp.rank = n;
    for (int i = 0; i < n; i++)
        if (shp.shape[i] < 0)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "shape[%d] = %lld is negative", i, (long long)shp.shape[i]);
    td_rt_tensor *pair[2] = {in[0], &shp};
    return td_broadcast_shape(ctx, rn, pair, 2, out[0]);
}
static void bcast_strides(const td_rt_tensor *in, const td_rt_tensor *out, int64_t *st) {
    int64_t s = 1;
    for (int d = out->rank - 1; d >= 0; d--) {
        int k = d - (out->rank - in->rank);
        int64_t dim = k >= 0 ? in->shape[k] : 1;
        st[d] = dim == 1 ? 0 : s;
        s *= dim;
    }
}
static td_status expand_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                             td_rt_env *env) {
    int64_t st[TD_MAX_RANK];
    bcast_strides(in[0], out[0], st);
    td_strided_copy(out[0]->data, in[0]->data, td_dtype_size(in[0]->dtype), out[0]->rank, out[0]->shape, st);
    return TD_OK;
}

/* ---- Gather / GatherElements ---- */
static td_status gather_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    ax_state *st;
    TD_TRY(any_first_init(ctx, rn, in, out, 2, 2));
    TD_TRY(td_check_dtype(ctx, rn, 1, in[1], td_is_int_dt, "int32, int64"));
    TD_TRY(new_state(ctx, rn, &st));
    st->axis = td_node_attr_int(rn->node, "axis", 0);
    return TD_OK;
}
static td_status gather_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    ax_state *st = rn->state;
    int a, r = in[0]->rank;
    if (!td_norm_axis(st->axis, r, &a))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is outside rank %d", (long long)st->axis, r);
    int orank = r - 1 + in[1]->rank;
    if (orank > TD_MAX_RANK)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "output rank %d exceeds %d", orank, TD_MAX_RANK);
    int k = 0;
    for (int d = 0; d < a; d++)
        out[0]->shape[k++] = in[0]->shape[d];
    for (int d = 0; d < in[1]->rank; d++)
        out[0]->shape[k++] = in[1]->shape[d];
    for (int d = a + 1; d < r; d++)
        out[0]->shape[k++] = in[0]->shape[d];
    out[0]->rank = orank;
    return TD_OK;
}
static td_status gather_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                             td_rt_env *env) {
    ax_state *st = rn->state;
    int a;
    td_norm_axis(st->axis, in[0]->rank, &a);
    size_t es = td_dtype_size(in[0]->dtype);
    int64_t outer = 1, inner = 1, dim = in[0]->shape[a], ni = td_rt_numel(in[1]);
    for (int d = 0; d < a; d++)
        outer *= in[0]->shape[d];
    for (int d = a + 1; d < in[0]->rank; d++)
        inner *= in[0]->shape[d];
    size_t blk = (size_t)inner * es;
    for (int64_t i = 0; i < ni; i++) {
        int64_t idx = td_ldi(in[1]->data, in[1]->dtype, i);
        if (idx < -dim || idx >= dim)
            return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT, "index %lld at position %lld is outside [-%lld, %lld)",
                                (long long)idx, (long long)i, (long long)dim, (long long)dim);
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < ni; i++) {
            int64_t idx = td_ldi(in[1]->data, in[1]->dtype, i);
            if (idx < 0)
                idx += dim;
            td_memcpy((uint8_t *)out[0]->data + (size_t)(o * ni + i) * blk,
                   (const uint8_t *)in[0]->data + (size_t)(o * dim + idx) * blk, blk);
        }
    return TD_OK;
}
static td_status gather_el_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    ax_state *st = rn->state;
    int a;
    if (in[1]->rank != in[0]->rank || !td_norm_axis(st->axis, in[0]->rank, &a))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "indices rank %d must equal data rank %d and axis %lld be valid",
                            in[1]->rank, in[0]->rank, (long long)st->axis);
    for (int d = 0; d < in[0]->rank; d++)
        if (d != a && in[1]->shape[d] > in[0]->shape[d])
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "indices axis %d (%lld) exceeds data's (%lld)", d,
                                (long long)in[1]->shape[d], (long long)in[0]->shape[d]);
    copy_shape(out[0], in[1]);
    return TD_OK;
}
static td_status gather_el_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                                td_rt_env *env) {
    ax_state *st = rn->state;
    int a, r = in[0]->rank;
    td_norm_axis(st->axis, r, &a);
    int64_t dst[TD_MAX_RANK], idx[TD_MAX_RANK] = {0}, n = td_rt_numel(in[1]), dim = in[0]->shape[a];
    contiguous_strides(in[0], dst);
    size_t es = td_dtype_size(in[0]->dtype);
    for (int64_t i = 0; i < n; i++) {
        int64_t j = td_ldi(in[1]->data, in[1]->dtype, i);
        if (j < -dim || j >= dim)
            return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT, "index %lld is outside [-%lld, %lld)", (long long)j,
                                (long long)dim, (long long)dim);
        if (j < 0)
            j += dim;
        int64_t off = 0;
        for (int d = 0; d < r; d++)
            off += (d == a ? j : idx[d]) * dst[d];
        td_memcpy((uint8_t *)out[0]->data + (size_t)i * es, (const uint8_t *)in[0]->data + (size_t)off * es, es);
        for (int d = r - 1; d >= 0; d--) {
            if (++idx[d] < in[1]->shape[d])
                break;
            idx[d] = 0;
        }
    }
    return TD_OK;
}

/* ---- Constant / ConstantOfShape ---- */
typedef struct const_state {
    const td_tensor *t; /* borrowed from the node's attribute */
    td_dtype dtype;
    int rank;
    int64_t dims[TD_MAX_RANK];
    union {
        float f;
        int64_t i;
        float fs[1];
    } scalar;
    const void *data;
    size_t nbytes;
} const_state;

static td_status constant_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 0, 0, 1, 1));
    const_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    const td_attr *a = NULL;
    for (int i = 0; i < rn->node->n_attrs; i++) {
        const td_attr *x = &rn->node->attrs[i];
        if (a)
            return td_node_fail(ctx, rn, TD_ERR_FORMAT, "Constant must have exactly one attribute");
        a = x;
    }
    if (!a)
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "Constant has no value attribute");
    if (strcmp(a->name, "value") == 0 && a->type == TD_ATTR_TENSOR && a->t) {
        const td_tensor *t = a->t;
        if (!td_is_any_dt(t->dtype))
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "value has dtype %s, which the runtime does not support",
                                td_dtype_name(t->dtype));
        int64_t numel;
        if (t->rank > TD_MAX_RANK || !td_shape_numel(t->dims, t->rank, &numel) ||
            (uint64_t)numel * td_dtype_size(t->dtype) != t->nbytes)
            return td_node_fail(ctx, rn, TD_ERR_FORMAT, "value tensor's data does not match its shape");
        st->dtype = t->dtype;
        st->rank = t->rank;
        td_memcpy(st->dims, t->dims, (size_t)t->rank * sizeof *t->dims);
        st->data = t->data;
        st->nbytes = t->nbytes;
    } else if (strcmp(a->name, "value_float") == 0 && a->type == TD_ATTR_FLOAT) {
        st->dtype = TD_F32;
        st->scalar.f = a->f;
        st->data = &st->scalar.f;
        st->nbytes = 4;
    } else if (strcmp(a->name, "value_int") == 0 && a->type == TD_ATTR_INT) {
        st->dtype = TD_I64;
        st->scalar.i = a->i;
        st->data = &st->scalar.i;
        st->nbytes = 8;
    } else if (strcmp(a->name, "value_floats") == 0 && a->type == TD_ATTR_FLOATS) {
        st->dtype = TD_F32;
        st->rank = 1;
        st->dims[0] = (int64_t)a->count;
        st->data = a->floats;
        st->nbytes = a->count * 4;
    } else if (strcmp(a->name, "value_ints") == 0 && a->type == TD_ATTR_INTS) {
        st->dtype = TD_I64;
        st->rank = 1;
        st->dims[0] = (int64_t)a->count;
        st->data = a->ints;
        st->nbytes = a->count * 8;
    } else {
        return td_unsupported_attr(ctx, rn, a->name, "(sparse or string constants)");
    }
    out[0] = st->dtype;
    /* The value is known now: the session treats it like an initializer (no copy). */
    rn->const_output = true;
    rn->const_val.dtype = st->dtype;
    rn->const_val.rank = st->rank;
    memcpy(rn->const_val.shape, st->dims, sizeof st->dims);
    rn->const_val.data = (void *)st->data;
    return TD_OK;
}
static td_status constant_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    const_state *st = rn->state;
    out[0]->rank = st->rank;
    td_memcpy(out[0]->shape, st->dims, sizeof st->dims);
    return TD_OK;
}
static td_status constant_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                               td_rt_env *env) {
    const_state *st = rn->state;
    if (st->nbytes)
        td_memcpy(out[0]->data, st->data, st->nbytes);
    return TD_OK;
}

static td_status cos_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 1, 1, 1, 1));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_int_dt, "int64"));
    const_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    st->dtype = TD_F32;
    st->data = &st->scalar.f;
    st->nbytes = 4;
    const td_attr *a = td_node_attr(rn->node, "value");
    if (a) {
        const td_tensor *t = a->t;
        if (a->type != TD_ATTR_TENSOR || !t)
            return td_node_fail(ctx, rn, TD_ERR_FORMAT, "value must be a tensor");
        int64_t numel;
        if (!td_shape_numel(t->dims, t->rank, &numel) || numel != 1 || !td_is_any_dt(t->dtype) ||
            t->nbytes != td_dtype_size(t->dtype))
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "value must be a one-element tensor of a supported dtype (got %s)",
                                td_dtype_name(t->dtype));
        st->dtype = t->dtype;
        st->data = t->data;
        st->nbytes = t->nbytes;
    }
    out[0] = st->dtype;
    return TD_OK;
}
static td_status cos_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    int n;
    TD_TRY(td_read_int_list(ctx, rn, in[0], "shape", out[0]->shape, TD_MAX_RANK, &n));
    for (int i = 0; i < n; i++)
        if (out[0]->shape[i] < 0)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "shape[%d] = %lld is negative", i, (long long)out[0]->shape[i]);
    out[0]->rank = n;
    return TD_OK;
}
static td_status cos_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                          td_rt_env *env) {
    const_state *st = rn->state;
    int64_t n = td_rt_numel(out[0]);
    for (int64_t i = 0; i < n; i++)
        td_memcpy((uint8_t *)out[0]->data + (size_t)i * st->nbytes, st->data, st->nbytes);
    return TD_OK;
}

/* ---- Range ---- */
static td_status range_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 3, 3, 1, 1));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_num_dt, "float, float16, bfloat16, int32, int64"));
    TD_TRY(td_check_same(ctx, rn, in, 0, 3));
    out[0] = in[0];
    return TD_OK;
}
static td_status range_count(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, int64_t *n) {
    for (int i = 0; i < 3; i++)
        if (td_rt_numel(in[i]) != 1)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "input %d must be a scalar", i);
    td_dtype t = in[0]->dtype;
    double cnt;
    if (td_is_float_dt(t)) {
        double s = td_ldf(in[0]->data, t, 0), l = td_ldf(in[1]->data, t, 0), d = td_ldf(in[2]->data, t, 0);
        cnt = ceil((l - s) / d);
    } else {
        int64_t s = td_ldi(in[0]->data, t, 0), l = td_ldi(in[1]->data, t, 0), d = td_ldi(in[2]->data, t, 0);
        if (d == 0)
            return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT, "delta is 0");
        cnt = ceil(((double)l - (double)s) / (double)d);
    }
    if (!(cnt == cnt) || cnt > 1e12) /* NaN or absurd */
        return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT, "range has an invalid or huge element count");
    *n = cnt > 0 ? (int64_t)cnt : 0;
    return TD_OK;
}
static td_status range_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    out[0]->rank = 1;
    return range_count(ctx, rn, in, &out[0]->shape[0]);
}
static td_status range_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                            td_rt_env *env) {
    td_dtype t = in[0]->dtype;
    int64_t n = out[0]->shape[0];
    if (td_is_float_dt(t)) {
        float s = td_ldf(in[0]->data, t, 0), d = td_ldf(in[2]->data, t, 0);
        for (int64_t i = 0; i < n; i++)
            td_stf(out[0]->data, t, i, s + (float)i * d);
    } else {
        int64_t s = td_ldi(in[0]->data, t, 0), d = td_ldi(in[2]->data, t, 0);
        for (int64_t i = 0; i < n; i++)
            td_sti(out[0]->data, t, i, s + i * d);
    }
    return TD_OK;
}

/* ---- Cast / CastLike ---- */
static td_status cast_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    bool like = strcmp(rn->node->op_type, "CastLike") == 0;
    TD_TRY(td_check_inputs(ctx, rn, like ? 2 : 1, like ? 2 : 1, 1, 1));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_any_dt, "float, float16, bfloat16, int32, int64, bool"));
    td_dtype to = like ? in[1] : (td_dtype)td_node_attr_int(rn->node, "to", 0);
    if (!td_is_any_dt(to))
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "cast to %s is not supported (supported: float, float16, "
                            "bfloat16, int32, int64, bool)", td_dtype_name(to));
    out[0] = to;
    return TD_OK;
}
static td_status cast_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                           td_rt_env *env) {
    td_dtype a = in[0]->dtype, b = out[0]->dtype;
    int64_t n = td_rt_numel(in[0]);
    if (a == b) {
        td_memcpy(out[0]->data, in[0]->data, td_rt_nbytes(in[0]));
    } else if (td_is_float_dt(b)) {
        for (int64_t i = 0; i < n; i++)
            td_stf(out[0]->data, b, i, td_ldf(in[0]->data, a, i));
    } else if (b == TD_BOOL) {
        for (int64_t i = 0; i < n; i++)
            ((uint8_t *)out[0]->data)[i] = td_is_float_dt(a) ? td_ldf(in[0]->data, a, i) != 0.0f
                                                              : td_ldi(in[0]->data, a, i) != 0;
    } else {
        for (int64_t i = 0; i < n; i++)
            td_sti(out[0]->data, b, i, td_ldi(in[0]->data, a, i));
    }
    return TD_OK;
}

/* ---- Trilu ---- */
static td_status trilu_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    ax_state *st;
    TD_TRY(any_first_init(ctx, rn, in, out, 1, 2));
    if (rn->n_in > 1 && rn->in[1] >= 0)
        TD_TRY(td_check_dtype(ctx, rn, 1, in[1], td_is_int_dt, "int64"));
    TD_TRY(new_state(ctx, rn, &st));
    st->a = td_node_attr_int(rn->node, "upper", 1);
    return TD_OK;
}
static td_status trilu_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    if (in[0]->rank < 2)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "input rank %d is below 2", in[0]->rank);
    copy_shape(out[0], in[0]);
    return TD_OK;
}
static td_status trilu_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                            td_rt_env *env) {
    ax_state *st = rn->state;
    int64_t k = 0;
    if (rn->n_in > 1 && in[1]) {
        if (td_rt_numel(in[1]) != 1)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "k must be a scalar");
        k = td_ldi(in[1]->data, in[1]->dtype, 0);
    }
    int r = in[0]->rank;
    int64_t R = in[0]->shape[r - 2], C = in[0]->shape[r - 1], mats = R * C != 0 ? td_rt_numel(in[0]) / (R * C) : 0;
    size_t es = td_dtype_size(in[0]->dtype);
    td_memcpy(out[0]->data, in[0]->data, td_rt_nbytes(in[0]));
    if (R * C == 0)
        return TD_OK;
    for (int64_t m = 0; m < mats; m++)
        for (int64_t i = 0; i < R; i++)
            for (int64_t j = 0; j < C; j++) {
                bool keep = st->a ? (j - i >= k) : (j - i <= k);
                if (!keep)
                    memset((uint8_t *)out[0]->data + (size_t)((m * R + i) * C + j) * es, 0, es);
            }
    return TD_OK;
}

/* ---- CumSum ---- */
static td_status cumsum_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    ax_state *st;
    TD_TRY(td_check_inputs(ctx, rn, 2, 2, 1, 1));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_num_dt, "float, float16, bfloat16, int32, int64"));
    TD_TRY(td_check_dtype(ctx, rn, 1, in[1], td_is_int_dt, "int32, int64"));
    TD_TRY(new_state(ctx, rn, &st));
    st->a = td_node_attr_int(rn->node, "exclusive", 0);
    st->b = td_node_attr_int(rn->node, "reverse", 0);
    out[0] = in[0];
    return TD_OK;
}
static td_status cumsum_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                             td_rt_env *env) {
    ax_state *st = rn->state;
    if (td_rt_numel(in[1]) != 1)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis must be a scalar");
    int a;
    int64_t ax = td_ldi(in[1]->data, in[1]->dtype, 0);
    if (!td_norm_axis(ax, in[0]->rank, &a))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is outside rank %d", (long long)ax, in[0]->rank);
    int64_t outer = 1, inner = 1, dim = in[0]->shape[a];
    for (int d = 0; d < a; d++)
        outer *= in[0]->shape[d];
    for (int d = a + 1; d < in[0]->rank; d++)
        inner *= in[0]->shape[d];
    td_dtype t = in[0]->dtype;
    bool fl = td_is_float_dt(t);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double accf = 0;
            int64_t acci = 0;
            for (int64_t s = 0; s < dim; s++) {
                int64_t j = st->b ? dim - 1 - s : s;
                int64_t idx = (o * dim + j) * inner + i;
                double vf = fl ? td_ldf(in[0]->data, t, idx) : 0;
                int64_t vi = fl ? 0 : td_ldi(in[0]->data, t, idx);
                if (!st->a) {
                    accf += vf;
                    acci = (int64_t)((uint64_t)acci + (uint64_t)vi);
                }
                if (fl)
                    td_stf(out[0]->data, t, idx, (float)accf);
                else
                    td_sti(out[0]->data, t, idx, acci);
                if (st->a) {
                    accf += vf;
                    acci = (int64_t)((uint64_t)acci + (uint64_t)vi);
                }
            }
        }
    return TD_OK;
}

static td_status same_shape0(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    copy_shape(out[0], in[0]);
    return TD_OK;
}

#define M TD_MAX_ONNX_OPSET
const td_op_def td_ops_tensor[] = {
    {"", "Identity", 1, M, identity_init, identity_shape, view_exec, 0, TD_OP_VIEW, NULL},
    {"", "Reshape", 5, M, reshape_init, reshape_shape, view_exec, 1u << 1, TD_OP_VIEW, NULL},
    {"", "Flatten", 1, M, flatten_init, flatten_shape, view_exec, 0, TD_OP_VIEW, NULL},
    {"", "Squeeze", 1, M, squeeze_init, squeeze_shape, view_exec, 1u << 1, TD_OP_VIEW, NULL},
    {"", "Unsqueeze", 1, M, squeeze_init, unsqueeze_shape, view_exec, 1u << 1, TD_OP_VIEW, NULL},
    {"", "Shape", 1, M, shape_init, shape_shape, shape_exec, 0, TD_OP_SHAPE_ONLY, NULL},
    {"", "Size", 1, M, size_init, size_shape, size_exec, 0, TD_OP_SHAPE_ONLY, NULL},
    {"", "Transpose", 1, M, transpose_init, transpose_shape, transpose_exec, 0, 0, NULL},
    {"", "Concat", 4, M, concat_init, concat_shape, concat_exec, 0, 0, NULL},
    {"", "Split", 2, M, split_init, split_shape, split_exec, 1u << 1, 0, NULL},
    {"", "Slice", 1, M, slice_init, slice_shape, slice_exec, 0x1eu, 0, NULL},
    {"", "Expand", 8, M, expand_init, expand_shape, expand_exec, 1u << 1, 0, NULL},
    {"", "Gather", 1, M, gather_init, gather_shape, gather_exec, 0, 0, NULL},
    {"", "GatherElements", 11, M, gather_init, gather_el_shape, gather_el_exec, 0, 0, NULL},
    {"", "Constant", 1, M, constant_init, constant_shape, constant_exec, 0, 0, NULL},
    {"", "ConstantOfShape", 9, M, cos_init, cos_shape, cos_exec, 1u << 0, 0, NULL},
    {"", "Range", 11, M, range_init, range_shape, range_exec, 0x7u, 0, NULL},
    {"", "Cast", 6, M, cast_init, same_shape0, cast_exec, 0, 0, NULL},
    {"", "CastLike", 15, M, cast_init, same_shape0, cast_exec, 0, 0, NULL},
    {"", "Trilu", 14, M, trilu_init, trilu_shape, trilu_exec, 0, 0, NULL},
    {"", "CumSum", 11, M, cumsum_init, same_shape0, cumsum_exec, 0, 0, NULL},
};
const int td_ops_tensor_count = (int)(sizeof td_ops_tensor / sizeof td_ops_tensor[0]);
