/* Compute-heavy ONNX ops: MatMul, Gemm, Softmax/LogSoftmax,
 * LayerNormalization and the Reduce family. They convert float16/bfloat16
 * storage to fp32 in node scratch memory (planned in the arena) and call the
 * kernels in kern.h. */
#include "runtime/cpu/kern.h"
#include "runtime/cpu/ref_kern.h"
#include "runtime/cpu/op_util.h"
#include "runtime/cpu/ops.h"

static td_dtype packed_dtype(int precision, td_dtype src) {
    if (precision == TD_PRECISION_FP16)
        return TD_F16;
    if (precision == TD_PRECISION_BF16)
        return TD_BF16;
    return src == TD_F32 ? TD_F32 : src; /* keep f16/bf16 weights as stored */
}

/* ---- MatMul ---- */
static td_status matmul_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 2, 2, 1, 1));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_num_dt, "float, float16, bfloat16, int32, int64"));
    TD_TRY(td_check_same(ctx, rn, in, 0, 2));
    out[0] = in[0];
    return TD_OK;
}

static td_status matmul_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    const td_rt_tensor *a = in[0], *b = in[1];
    if (a->rank == 0 || b->rank == 0)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "MatMul inputs must have rank >= 1");
    int64_t K = a->shape[a->rank - 1], Kb = b->rank == 1 ? b->shape[0] : b->shape[b->rank - 2];
    if (K != Kb) {
        char x[128], y[128];
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "cannot multiply %s by %s (inner dims %lld and %lld)",
                            td_shape_str(a->shape, a->rank, x, sizeof x), td_shape_str(b->shape, b->rank, y, sizeof y),
                            (long long)K, (long long)Kb);
    }
    /* batch dims broadcast */
    td_rt_tensor ba = {a->dtype, a->rank > 2 ? a->rank - 2 : 0, {0}, NULL};
    td_rt_tensor bb = {b->dtype, b->rank > 2 ? b->rank - 2 : 0, {0}, NULL};
    td_memcpy(ba.shape, a->shape, (size_t)ba.rank * sizeof(int64_t));
    td_memcpy(bb.shape, b->shape, (size_t)bb.rank * sizeof(int64_t));
    td_rt_tensor *pair[2] = {&ba, &bb};
    TD_TRY(td_broadcast_shape(ctx, rn, pair, 2, out[0]));
    int r = out[0]->rank;
    if (a->rank >= 2)
        out[0]->shape[r++] = a->shape[a->rank - 2];
    if (b->rank >= 2)
        out[0]->shape[r++] = b->shape[b->rank - 1];
    out[0]->rank = r;
    int64_t N = b->rank >= 2 ? b->shape[b->rank - 1] : 1, nb = 1;
    for (int d = 0; d < out[0]->rank - (a->rank >= 2) - (b->rank >= 2); d++)
        nb *= out[0]->shape[d];
    /* activation right-hand side: per-thread packing space + the batch offsets */
    size_t act = td_kern_gemm_batched_scratch(K, N, rn->threads) + (size_t)(2 * nb + 16) * sizeof(int64_t);
    rn->scratch_bytes = f32_scratch(a) + (rn->packed ? 0 : f32_scratch(b) + act) + f32_scratch(out[0]);
    if (td_is_int_dt(a->dtype))
        rn->scratch_bytes = 0;
    return TD_OK;
}

static td_status matmul_prepack(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *c, int precision) {
    const td_rt_tensor *b = c[1];
    if (!b || b->rank != 2 || !td_is_float_dt(b->dtype))
        return TD_OK;
    return td_kern_pack_b(ctx, b->data, b->dtype, b->shape[0], b->shape[1], false, packed_dtype(precision, b->dtype),
                          (td_kern_packed **)&rn->packed);
}

static td_status matmul_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                             td_rt_env *env) {
    const td_rt_tensor *a = in[0], *b = in[1];
    td_rt_tensor *o = out[0];
    int64_t M = a->rank >= 2 ? a->shape[a->rank - 2] : 1, K = a->shape[a->rank - 1];
    int64_t N = b->rank >= 2 ? b->shape[b->rank - 1] : 1;
    /* batch iteration over the broadcast batch dims of the output */
    int br = o->rank - (a->rank >= 2) - (b->rank >= 2);
    int64_t nb = 1;
    for (int d = 0; d < br; d++)
        nb *= o->shape[d];
    int64_t sa[TD_MAX_RANK], sb[TD_MAX_RANK];
    {
        int64_t s = M * K;
        for (int d = br - 1; d >= 0; d--) {
            int k = d - (br - (a->rank - 2));
            int64_t dim = (a->rank > 2 && k >= 0) ? a->shape[k] : 1;
            sa[d] = dim == 1 ? 0 : s;
            s *= dim;
        }
        s = K * N;
        for (int d = br - 1; d >= 0; d--) {
            int k = d - (br - (b->rank - 2));
            int64_t dim = (b->rank > 2 && k >= 0) ? b->shape[k] : 1;
            sb[d] = dim == 1 ? 0 : s;
            s *= dim;
        }
    }
    if (td_is_int_dt(a->dtype)) {
        int64_t idx[TD_MAX_RANK] = {0}, oa = 0, ob = 0;
        for (int64_t bi = 0; bi < nb; bi++) {
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    uint64_t acc = 0;
                    for (int64_t k = 0; k < K; k++)
                        acc += (uint64_t)td_ldi(a->data, a->dtype, oa + i * K + k) *
                               (uint64_t)td_ldi(b->data, b->dtype, ob + k * N + j);
                    td_sti(o->data, o->dtype, bi * M * N + i * N + j, (int64_t)acc);
                }
            for (int d = br - 1; d >= 0; d--) {
                idx[d]++;
                oa += sa[d];
                ob += sb[d];
                if (idx[d] < o->shape[d])
                    break;
                oa -= sa[d] * o->shape[d];
                ob -= sb[d] * o->shape[d];
                idx[d] = 0;
            }
        }
        return TD_OK;
    }
    float *scr = rn->scratch;
    const float *A = as_f32(a, &scr);
    const td_kern_packed *P = rn->packed;
    const float *B = P ? NULL : as_f32(b, &scr);
    float *C = out_f32(o, &scr);
    /* fused bias + activation of the consumer (backend_cpu.c; needs P and fp32 C) */
    const float *ep_bias = rn->epi_bias ? rn->epi_bias->data : NULL;
    const float *ep_res = rn->epi_residual && td_rt_residual_fusable(o, rn->epi_residual) ? rn->epi_residual->data
                                                                                         : NULL;
    if (P && nb >= 1 && br >= 0) {
        /* 2-D constant B: every batch row block multiplies the same packed matrix;
         * when A's batch is contiguous the whole thing is one (nb*M) x K GEMM. */
        bool a_contig = true;
        int64_t expect = M * K;
        for (int d = br - 1; d >= 0; d--) {
            if (o->shape[d] != 1 && sa[d] != expect)
                a_contig = false;
            expect *= o->shape[d];
        }
        if (a_contig) {
            td_kern_gemm_packed_ep(A, K, nb * M, P, ep_bias, rn->epi_act, ep_res, C, N, env);
            store_out(o, C);
            return TD_OK;
        }
    }
    /* batch offsets of A and B (broadcast batch dims have stride 0) */
    int64_t *a_off = P ? NULL : (int64_t *)scr, *b_off = P ? NULL : a_off + nb;
    void *pack = P ? NULL : (void *)(b_off + nb + 8);
    int64_t idx[TD_MAX_RANK] = {0}, oa = 0, ob = 0;
    for (int64_t bi = 0; bi < nb; bi++) {
        if (P) {
            td_kern_gemm_packed_ep(A + oa, K, M, P, ep_bias, rn->epi_act, ep_res ? ep_res + bi * M * N : NULL,
                                   C + bi * M * N, N, env);
        } else {
            a_off[bi] = oa;
            b_off[bi] = ob;
        }
        for (int d = br - 1; d >= 0; d--) {
            idx[d]++;
            oa += sa[d];
            ob += sb[d];
            if (idx[d] < o->shape[d])
                break;
            oa -= sa[d] * o->shape[d];
            ob -= sb[d] * o->shape[d];
            idx[d] = 0;
        }
    }
    if (!P)
        td_kern_gemm_batched(nb, M, N, K, A, K, a_off, B, N, b_off, C, N, M * N, pack, env);
    store_out(o, C);
    return TD_OK;
}

/* ---- Gemm ---- */
typedef struct gemm_state {
    float alpha, beta;
    int64_t ta, tb;
} gemm_state;

static td_status gemm_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 2, 3, 1, 1));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_float_dt, "float, float16, bfloat16"));
    TD_TRY(td_check_same(ctx, rn, in, 0, rn->n_in));
    gemm_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    st->alpha = td_node_attr_float(rn->node, "alpha", 1.0f);
    st->beta = td_node_attr_float(rn->node, "beta", 1.0f);
    st->ta = td_node_attr_int(rn->node, "transA", 0);
    st->tb = td_node_attr_int(rn->node, "transB", 0);
    if (rn->opset < 7 && td_node_attr_int(rn->node, "broadcast", 0) == 0 && rn->n_in > 2)
        return td_unsupported_attr(ctx, rn, "broadcast", "0");
    out[0] = in[0];
    return TD_OK;
}
static td_status gemm_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    gemm_state *st = rn->state;
    const td_rt_tensor *a = in[0], *b = in[1];
    if (a->rank != 2 || b->rank != 2)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "Gemm inputs must be 2-D (got ranks %d and %d)", a->rank, b->rank);
    int64_t M = st->ta ? a->shape[1] : a->shape[0], K = st->ta ? a->shape[0] : a->shape[1];
    int64_t Kb = st->tb ? b->shape[1] : b->shape[0], N = st->tb ? b->shape[0] : b->shape[1];
    if (K != Kb)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "inner dims %lld and %lld differ", (long long)K, (long long)Kb);
    out[0]->rank = 2;
    out[0]->shape[0] = M;
    out[0]->shape[1] = N;
    if (rn->n_in > 2 && in[2]) {
        td_rt_tensor *pair[2] = {out[0], in[2]};
        td_rt_tensor tmp;
        TD_TRY(td_broadcast_shape(ctx, rn, pair, 2, &tmp));
        if (tmp.rank != 2 || tmp.shape[0] != M || tmp.shape[1] != N)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "C does not broadcast to (%lld, %lld)", (long long)M, (long long)N);
    }
    rn->scratch_bytes = f32_scratch(a) + (rn->packed ? 0 : f32_scratch(b) + td_kern_gemm_scratch(K, N) + 64) +
                        f32_scratch(out[0]) + (rn->n_in > 2 ? f32_scratch(in[2]) : 0);
    return TD_OK;
}
static td_status gemm_prepack(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *c, int precision) {
    gemm_state *st = rn->state;
    const td_rt_tensor *b = c[1];
    if (!b || b->rank != 2 || st->alpha != 1.0f || st->ta)
        return TD_OK;
    int64_t K = st->tb ? b->shape[1] : b->shape[0], N = st->tb ? b->shape[0] : b->shape[1];
    return td_kern_pack_b(ctx, b->data, b->dtype, K, N, st->tb != 0, packed_dtype(precision, b->dtype),
                          (td_kern_packed **)&rn->packed);
}
static td_status gemm_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                           td_rt_env *env) {
    gemm_state *st = rn->state;
    const td_rt_tensor *a = in[0], *b = in[1];
    td_rt_tensor *o = out[0];
    int64_t M = o->shape[0], N = o->shape[1], K = st->ta ? a->shape[0] : a->shape[1];
    float *scr = rn->scratch;
    const float *A = as_f32(a, &scr);
    const float *Cin = rn->n_in > 2 && in[2] ? as_f32(in[2], &scr) : NULL;
    float *C = out_f32(o, &scr);
    /* product first, then + beta * C (broadcast) */
    if (rn->packed) {
        td_kern_gemm_packed(A, K, M, rn->packed, NULL, C, N, env);
    } else {
        const float *B = as_f32(b, &scr);
        if (st->ta) {
            td_ref_gemm(true, st->tb != 0, M, N, K, st->alpha, A, a->shape[1], B, b->shape[1], NULL, C, N);
        } else {
            void *pack = scr;
            td_kern_gemm(M, N, K, st->alpha, A, a->shape[1], B, b->shape[1], st->tb != 0, C, N, pack, env);
        }
    }
    if (Cin && st->beta != 0.0f) {
        const td_rt_tensor *c = in[2];
        int64_t cr = c->rank >= 2 ? c->shape[c->rank - 2] : 1, cc = c->rank >= 1 ? c->shape[c->rank - 1] : 1;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * N + j] += st->beta * Cin[(cr == 1 ? 0 : i) * cc + (cc == 1 ? 0 : j)];
    }
    store_out(o, C);
    return TD_OK;
}

/* ---- Softmax / LogSoftmax ---- */
typedef struct axis_state {
    int64_t axis;
    bool log;
} axis_state;

static td_status softmax_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 1, 1, 1, 1));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_float_dt, "float, float16, bfloat16"));
    axis_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    st->axis = td_node_attr_int(rn->node, "axis", rn->opset >= 13 ? -1 : 1);
    st->log = strcmp(rn->node->op_type, "LogSoftmax") == 0;
    out[0] = in[0];
    return TD_OK;
}
static td_status softmax_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    axis_state *st = rn->state;
    int a;
    if (!td_norm_axis(st->axis, in[0]->rank > 0 ? in[0]->rank : 1, &a))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is outside rank %d", (long long)st->axis, in[0]->rank);
    out[0]->rank = in[0]->rank;
    td_memcpy(out[0]->shape, in[0]->shape, sizeof out[0]->shape);
    rn->scratch_bytes = (size_t)(td_rt_numel(in[0]) + 16) * sizeof(float);
    return TD_OK;
}
static td_status softmax_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                              td_rt_env *env) {
    axis_state *st = rn->state;
    const td_rt_tensor *x = in[0];
    int r = x->rank, a;
    td_norm_axis(st->axis, r > 0 ? r : 1, &a);
    int64_t outer = 1, dim = 1, inner = 1;
    if (rn->opset < 13) { /* coerced to 2-D: [prod(:axis), prod(axis:)] */
        for (int d = 0; d < r; d++)
            *(d < a ? &outer : &dim) *= x->shape[d];
    } else {
        for (int d = 0; d < r; d++)
            *(d < a ? &outer : d == a ? &dim : &inner) *= x->shape[d];
    }
    if (inner == 1 && x->dtype == TD_F32) { /* softmax axis is the last: in place on the output */
        td_memcpy(out[0]->data, x->data, td_rt_nbytes(x));
        (st->log ? td_kern_log_softmax_rows : td_kern_softmax_rows)(out[0]->data, outer, dim, env);
        return TD_OK;
    }
    float *buf = rn->scratch; /* (outer, inner, dim): softmax axis last */
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < dim; k++)
            for (int64_t i = 0; i < inner; i++)
                buf[(o * inner + i) * dim + k] = td_ldf(x->data, x->dtype, (o * dim + k) * inner + i);
    /* log(softmax(x)) would be -inf wherever exp underflowed: LogSoftmax has its own kernel */
    (st->log ? td_kern_log_softmax_rows : td_kern_softmax_rows)(buf, outer * inner, dim, env);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < dim; k++)
            for (int64_t i = 0; i < inner; i++)
                td_stf(out[0]->data, out[0]->dtype, (o * dim + k) * inner + i, buf[(o * inner + i) * dim + k]);
    return TD_OK;
}

/* ---- LayerNormalization ---- */
typedef struct ln_state {
    int64_t axis;
    float eps;
} ln_state;

static td_status ln_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 2, 3, 1, 3));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_float_dt, "float, float16, bfloat16"));
    for (int i = 1; i < rn->n_in; i++)
        if (rn->in[i] >= 0)
            TD_TRY(td_check_dtype(ctx, rn, i, in[i], td_is_float_dt, "float, float16, bfloat16"));
    ln_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    st->axis = td_node_attr_int(rn->node, "axis", -1);
    st->eps = td_node_attr_float(rn->node, "epsilon", 1e-5f);
    int64_t stash = td_node_attr_int(rn->node, "stash_type", 1);
    if (stash != 1)
        return td_unsupported_attr(ctx, rn, "stash_type", "other than 1 (float)");
    out[0] = in[0];
    for (int k = 1; k < rn->n_out; k++)
        out[k] = TD_F32;
    return TD_OK;
}
static td_status ln_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    ln_state *st = rn->state;
    int a, r = in[0]->rank;
    if (!td_norm_axis(st->axis, r, &a))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is outside rank %d", (long long)st->axis, r);
    int64_t n = 1;
    for (int d = a; d < r; d++)
        n *= in[0]->shape[d];
    for (int i = 1; i < rn->n_in; i++)
        if (in[i] && td_rt_numel(in[i]) != n && td_rt_numel(in[i]) != 1)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "input %d has %lld elements, the normalized shape has %lld", i,
                                (long long)td_rt_numel(in[i]), (long long)n);
    out[0]->rank = r;
    td_memcpy(out[0]->shape, in[0]->shape, sizeof out[0]->shape);
    for (int k = 1; k < rn->n_out; k++) {
        if (!out[k])
            continue;
        out[k]->rank = r;
        for (int d = 0; d < r; d++)
            out[k]->shape[d] = d < a ? in[0]->shape[d] : 1;
    }
    size_t extra = (size_t)(2 * n + 32) * sizeof(float);
    rn->scratch_bytes = f32_scratch(in[0]) + f32_scratch(out[0]) + extra;
    return TD_OK;
}
static td_status ln_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                         td_rt_env *env) {
    ln_state *st = rn->state;
    int a, r = in[0]->rank;
    td_norm_axis(st->axis, r, &a);
    int64_t n = 1, rows = 1;
    for (int d = 0; d < r; d++)
        *(d < a ? &rows : &n) *= in[0]->shape[d];
    float *scr = rn->scratch;
    const float *X = as_f32(in[0], &scr);
    float *Y = out_f32(out[0], &scr);
    float *g = scr, *b = scr + n;
    for (int64_t j = 0; j < n; j++) {
        g[j] = td_ldf(in[1]->data, in[1]->dtype, td_rt_numel(in[1]) == 1 ? 0 : j);
        b[j] = rn->n_in > 2 && in[2] ? td_ldf(in[2]->data, in[2]->dtype, td_rt_numel(in[2]) == 1 ? 0 : j) : 0.0f;
    }
    float *mean = rn->n_out > 1 && out[1] ? out[1]->data : NULL;
    float *istd = rn->n_out > 2 && out[2] ? out[2]->data : NULL;
    td_kern_layernorm_rows(X, g, b, Y, rows, n, st->eps, mean, istd, env);
    store_out(out[0], Y);
    return TD_OK;
}

/* ---- Reduce* ---- */
typedef enum red_kind { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_SUMSQ, R_L1, R_L2, R_LOGSUMEXP, R_LOGSUM } red_kind;
typedef struct red_state {
    red_kind kind;
    int64_t keepdims, noop;
    bool axes_input;
    int64_t axes[TD_MAX_RANK];
    int n_axes;
    bool reduce[TD_MAX_RANK]; /* current plan */
} red_state;

static const struct {
    const char *name;
    red_kind kind;
    int input_since; /* opset from which axes is an input */
} red_ops[] = {
    {"ReduceSum", R_SUM, 13},       {"ReduceMean", R_MEAN, 18}, {"ReduceMax", R_MAX, 18},
    {"ReduceMin", R_MIN, 18},       {"ReduceProd", R_PROD, 18}, {"ReduceSumSquare", R_SUMSQ, 18},
    {"ReduceL1", R_L1, 18},         {"ReduceL2", R_L2, 18},     {"ReduceLogSumExp", R_LOGSUMEXP, 18},
    {"ReduceLogSum", R_LOGSUM, 18},
};

static td_status reduce_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    red_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    int since = 18;
    for (size_t i = 0; i < sizeof red_ops / sizeof red_ops[0]; i++)
        if (strcmp(red_ops[i].name, rn->node->op_type) == 0) {
            st->kind = red_ops[i].kind;
            since = red_ops[i].input_since;
        }
    st->axes_input = rn->opset >= since;
    TD_TRY(td_check_inputs(ctx, rn, 1, st->axes_input ? 2 : 1, 1, 1));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_num_dt, "float, float16, bfloat16, int32, int64"));
    st->keepdims = td_node_attr_int(rn->node, "keepdims", 1);
    st->noop = td_node_attr_int(rn->node, "noop_with_empty_axes", 0);
    if (!st->axes_input) {
        size_t cnt = 0;
        const int64_t *ax = td_node_attr_ints(rn->node, "axes", &cnt);
        if (cnt > TD_MAX_RANK)
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "too many axes (%zu)", cnt);
        td_memcpy(st->axes, ax, cnt * sizeof *ax);
        st->n_axes = (int)cnt;
    }
    out[0] = in[0];
    return TD_OK;
}
static td_status reduce_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    red_state *st = rn->state;
    int64_t axes[TD_MAX_RANK];
    int n = st->n_axes, r = in[0]->rank;
    td_memcpy(axes, st->axes, sizeof axes);
    if (st->axes_input) {
        n = 0;
        if (rn->n_in > 1 && in[1])
            TD_TRY(td_read_int_list(ctx, rn, in[1], "axes", axes, TD_MAX_RANK, &n));
    }
    for (int d = 0; d < r; d++)
        st->reduce[d] = n == 0 && !st->noop;
    for (int i = 0; i < n; i++) {
        int a;
        if (!td_norm_axis(axes[i], r, &a))
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is outside rank %d", (long long)axes[i], r);
        st->reduce[a] = true;
    }
    int k = 0;
    for (int d = 0; d < r; d++) {
        if (!st->reduce[d])
            out[0]->shape[k++] = in[0]->shape[d];
        else if (st->keepdims)
            out[0]->shape[k++] = 1;
    }
    out[0]->rank = k;
    /* accumulators, and for LogSumExp the per-output max that shifts exp into range */
    rn->scratch_bytes = (size_t)(2 * td_rt_numel(out[0]) + 8) * sizeof(double);
    return TD_OK;
}
static td_status reduce_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                             td_rt_env *env) {
    red_state *st = rn->state;
    const td_rt_tensor *x = in[0];
    td_rt_tensor *o = out[0];
    int r = x->rank;
    int64_t no = td_rt_numel(o), nx = td_rt_numel(x);
    double *acc = rn->scratch;
    int64_t *cnt_dummy = NULL;
    (void)cnt_dummy;
    bool is_int = td_is_int_dt(x->dtype);
    double init = st->kind == R_MAX ? -INFINITY : st->kind == R_MIN ? INFINITY : st->kind == R_PROD ? 1.0 : 0.0;
    int64_t *iacc = (int64_t *)acc; /* ints: exact int64 accumulation in the same scratch */
    for (int64_t i = 0; i < no; i++) {
        if (is_int)
            iacc[i] = st->kind == R_MAX ? INT64_MIN : st->kind == R_MIN ? INT64_MAX : st->kind == R_PROD ? 1 : 0;
        else
            acc[i] = init;
    }
    /* strides of the output for kept axes */
    int64_t ost[TD_MAX_RANK], idx[TD_MAX_RANK] = {0};
    {
        int64_t s = 1;
        for (int d = r - 1; d >= 0; d--) {
            ost[d] = st->reduce[d] ? 0 : s;
            if (!st->reduce[d])
                s *= x->shape[d];
        }
    }
    /* LogSumExp = max + log(sum(exp(x - max))): exp(x) alone overflows even fp64 above x = 709. An
     * infinite max shifts by 0 (all -inf gives log(0) = -inf, +inf gives +inf), as ONNX Runtime does. */
    double *shift = acc + no;
    int64_t oo = 0;
    if (st->kind == R_LOGSUMEXP && !is_int) {
        for (int64_t i = 0; i < no; i++)
            shift[i] = -INFINITY;
        for (int64_t i = 0; i < nx; i++) {
            double v = td_ldf(x->data, x->dtype, i);
            if (v > shift[oo] || isnan(v))
                shift[oo] = isnan(shift[oo]) ? shift[oo] : v;
            for (int d = r - 1; d >= 0; d--) {
                idx[d]++;
                oo += ost[d];
                if (idx[d] < x->shape[d])
                    break;
                oo -= ost[d] * x->shape[d];
                idx[d] = 0;
            }
        }
        for (int64_t i = 0; i < no; i++)
            if (isinf(shift[i]))
                shift[i] = 0.0;
        oo = 0;
    }
    for (int64_t i = 0; i < nx; i++) {
        if (is_int) {
            int64_t v = td_ldi(x->data, x->dtype, i), *a = &iacc[oo];
            switch (st->kind) {
            case R_MAX: if (v > *a) *a = v; break;
            case R_MIN: if (v < *a) *a = v; break;
            case R_PROD: *a = (int64_t)((uint64_t)*a * (uint64_t)v); break;
            case R_SUMSQ: *a = (int64_t)((uint64_t)*a + (uint64_t)v * (uint64_t)v); break;
            case R_L1: *a = (int64_t)((uint64_t)*a + (uint64_t)(v < 0 ? -(uint64_t)v : (uint64_t)v)); break;
            default: *a = (int64_t)((uint64_t)*a + (uint64_t)v); break;
            }
        } else {
            double v = td_ldf(x->data, x->dtype, i), *a = &acc[oo];
            switch (st->kind) {
            case R_MAX: if (v > *a || isnan(v)) *a = v; break;
            case R_MIN: if (v < *a || isnan(v)) *a = v; break;
            case R_PROD: *a *= v; break;
            case R_SUMSQ: case R_L2: *a += v * v; break;
            case R_L1: *a += fabs(v); break;
            case R_LOGSUMEXP: *a += exp(v - shift[oo]); break;
            default: *a += v; break;
            }
        }
        for (int d = r - 1; d >= 0; d--) {
            idx[d]++;
            oo += ost[d];
            if (idx[d] < x->shape[d])
                break;
            oo -= ost[d] * x->shape[d];
            idx[d] = 0;
        }
    }
    int64_t group = no ? nx / no : 0;
    for (int64_t i = 0; i < no; i++) {
        if (is_int) {
            int64_t v = iacc[i];
            if (st->kind == R_MEAN)
                v = group ? v / group : 0;
            else if (st->kind == R_L2)
                v = (int64_t)sqrt((double)v);
            td_sti(o->data, o->dtype, i, v);
            continue;
        }
        double v = acc[i];
        switch (st->kind) {
        case R_MEAN: v = group ? v / (double)group : NAN; break;
        case R_L2: v = sqrt(v); break;
        case R_LOGSUMEXP: v = log(v) + shift[i]; break;
        case R_LOGSUM: v = log(v); break;
        default: break;
        }
        td_stf(o->data, o->dtype, i, (float)v);
    }
    return TD_OK;
}

#define M TD_MAX_ONNX_OPSET
#define REDUCE(name) {"", name, 1, M, reduce_init, reduce_shape, reduce_exec, 1u << 1, 0, NULL}
const td_op_def td_ops_nn[] = {
    {"", "MatMul", 1, M, matmul_init, matmul_shape, matmul_exec, 0, 0, matmul_prepack},
    {"", "Gemm", 7, M, gemm_init, gemm_shape, gemm_exec, 0, 0, gemm_prepack},
    {"", "Softmax", 1, M, softmax_init, softmax_shape, softmax_exec, 0, 0, NULL},
    {"", "LogSoftmax", 1, M, softmax_init, softmax_shape, softmax_exec, 0, 0, NULL},
    {"", "LayerNormalization", 17, M, ln_init, ln_shape, ln_exec, 0, 0, NULL},
    REDUCE("ReduceSum"), REDUCE("ReduceMean"), REDUCE("ReduceMax"), REDUCE("ReduceMin"), REDUCE("ReduceProd"),
    REDUCE("ReduceSumSquare"), REDUCE("ReduceL1"), REDUCE("ReduceL2"), REDUCE("ReduceLogSumExp"),
    REDUCE("ReduceLogSum"),
};
const int td_ops_nn_count = (int)(sizeof td_ops_nn / sizeof td_ops_nn[0]);
