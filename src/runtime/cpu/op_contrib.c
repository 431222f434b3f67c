/* com.microsoft contrib ops the optimizer emits, with ONNX Runtime's
 * documented semantics: Gelu, BiasGelu, FastGelu, SkipLayerNormalization,
 * EmbedLayerNormalization, Attention, MultiHeadAttention. */
#include "runtime/cpu/kern.h"
#include "runtime/cpu/op_util.h"
#include "runtime/cpu/ops.h"

#define MS "com.microsoft"

static td_status float_inputs(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, int from, int to) {
    for (int i = from; i < to && i < rn->n_in; i++)
        if (rn->in[i] >= 0) {
            TD_TRY(td_check_dtype(ctx, rn, i, in[i], td_is_float_dt, "float, float16, bfloat16"));
            if (in[i] != in[from])
                return td_node_fail(ctx, rn, TD_ERR_DTYPE, "input %d is %s but input %d is %s", i,
                                    td_dtype_name(in[i]), from, td_dtype_name(in[from]));
        }
    return TD_OK;
}

static td_status first_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    out[0]->rank = in[0]->rank;
    td_memcpy(out[0]->shape, in[0]->shape, sizeof out[0]->shape);
    return TD_OK;
}

/* ---- Gelu / BiasGelu / FastGelu ---- */
typedef struct gelu_state {
    bool tanh_form;
} gelu_state;

static td_status gelu_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    bool bias_op = strcmp(rn->node->op_type, "BiasGelu") == 0, fast = strcmp(rn->node->op_type, "FastGelu") == 0;
    TD_TRY(td_check_inputs(ctx, rn, bias_op ? 2 : 1, bias_op || fast ? 2 : 1, 1, 1));
    TD_TRY(float_inputs(ctx, rn, in, 0, rn->n_in));
    gelu_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    st->tanh_form = fast;
    out[0] = in[0];
    return TD_OK;
}
static td_status gelu_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    if (rn->n_in > 1 && in[1]) {
        int64_t h = in[0]->rank ? in[0]->shape[in[0]->rank - 1] : 1;
        if (in[1]->rank != 1 || in[1]->shape[0] != h)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "bias must be 1-D of the last dim (%lld)", (long long)h);
    }
    return first_shape(ctx, rn, in, out);
}
static td_status gelu_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                           td_rt_env *env) {
    gelu_state *st = rn->state;
    const td_rt_tensor *x = in[0], *b = rn->n_in > 1 ? in[1] : NULL;
    int64_t n = td_rt_numel(x), h = b ? b->shape[0] : 1;
    if (x->dtype == TD_F32 && !b) {
        td_kern_unary_f32(st->tanh_form ? TD_UNARY_GELU_TANH : TD_UNARY_GELU_ERF, x->data, out[0]->data, n, env);
        return TD_OK;
    }
    if (x->dtype == TD_F32 && b->dtype == TD_F32 && out[0]->dtype == TD_F32 && h > 0) {
        /* BiasGelu / FastGelu with bias: vectorized and parallel over rows of h */
        td_kern_bias_unary_f32(st->tanh_form ? TD_UNARY_GELU_TANH : TD_UNARY_GELU_ERF, x->data, b->data, out[0]->data,
                               n / h, h, env);
        return TD_OK;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = td_ldf(x->data, x->dtype, i) + (b ? td_ldf(b->data, b->dtype, i % h) : 0.0f);
        float r = st->tanh_form ? 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)))
                                : 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        td_stf(out[0]->data, out[0]->dtype, i, r);
    }
    return TD_OK;
}

/* ---- QuickGelu: y = x * Sigmoid(alpha * x) (SiLU for alpha 1) ---- */
static td_status quick_gelu_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 1, 1, 1, 1));
    TD_TRY(float_inputs(ctx, rn, in, 0, 1));
    out[0] = in[0];
    return TD_OK;
}
static td_status quick_gelu_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                                 td_rt_env *env) {
    float alpha = td_node_attr_float(rn->node, "alpha", 1.702f);
    const td_rt_tensor *x = in[0];
    int64_t n = td_rt_numel(x);
    if (x->dtype == TD_F32 && out[0]->dtype == TD_F32) {
        const float *xv = x->data;
        float *y = out[0]->data;
        const float *arg = xv;
        if (alpha != 1.0f) {
            for (int64_t i = 0; i < n; i++)
                y[i] = alpha * xv[i];
            arg = y;
        }
        td_kern_unary_f32(TD_UNARY_SIGMOID, arg, y, n, env); /* y = Sigmoid(alpha x), vectorized */
        for (int64_t i = 0; i < n; i++)
            y[i] *= xv[i];
        return TD_OK;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = td_ldf(x->data, x->dtype, i), a = alpha * v;
        float s = a >= 0 ? 1.0f / (1.0f + expf(-a)) : expf(a) / (1.0f + expf(a));
        td_stf(out[0]->data, out[0]->dtype, i, v * s);
    }
    return TD_OK;
}

/* ---- SkipLayerNormalization ---- */
typedef struct sln_state {
    float eps;
} sln_state;

static td_status sln_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 3, 5, 1, 4));
    TD_TRY(float_inputs(ctx, rn, in, 0, rn->n_in));
    sln_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    st->eps = td_node_attr_float(rn->node, "epsilon", 1e-12f);
    out[0] = in[0];
    if (rn->n_out > 1) out[1] = TD_F32;
    if (rn->n_out > 2) out[2] = TD_F32;
    if (rn->n_out > 3) out[3] = in[0];
    return TD_OK;
}
static td_status sln_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    const td_rt_tensor *x = in[0], *skip = in[1];
    if (x->rank < 2)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "input must have rank >= 2 (got %d)", x->rank);
    int64_t h = x->shape[x->rank - 1], n = td_rt_numel(x), ns = td_rt_numel(skip);
    if (skip->rank < 1 || skip->shape[skip->rank - 1] != h || ns == 0 || n % ns)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "skip must end in hidden size %lld and broadcast to the input",
                            (long long)h);
    for (int i = 2; i < rn->n_in; i++)
        if (in[i] && (in[i]->rank != 1 || in[i]->shape[0] != h))
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "input %d must be 1-D of size %lld", i, (long long)h);
    for (int k = 0; k < rn->n_out; k++) {
        if (!out[k])
            continue;
        first_shape(ctx, rn, in, &out[k]);
        if (k == 1 || k == 2)
            out[k]->shape[x->rank - 1] = 1;
    }
    rn->scratch_bytes = (size_t)(n + 3 * h + 64) * sizeof(float) + f32_scratch(out[0]);
    return TD_OK;
}
static td_status sln_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                          td_rt_env *env) {
    sln_state *st = rn->state;
    const td_rt_tensor *x = in[0], *skip = in[1], *gamma = in[2];
    const td_rt_tensor *beta = rn->n_in > 3 ? in[3] : NULL, *bias = rn->n_in > 4 ? in[4] : NULL;
    int64_t h = x->shape[x->rank - 1], n = td_rt_numel(x), ns = td_rt_numel(skip), rows = n / h;
    float *scr = rn->scratch;
    if (x->dtype == TD_F32 && skip->dtype == TD_F32 && gamma->dtype == TD_F32 && (!beta || beta->dtype == TD_F32) &&
        (!bias || bias->dtype == TD_F32) && out[0]->dtype == TD_F32 && (rn->n_out < 4 || !out[3] ||
        out[3]->dtype == TD_F32)) {
        /* all fp32: one fused, parallel pass (skip broadcast by whole rows of h). When
         * the MatMul producing one operand already added the other in its GEMM
         * epilogue (backend_cpu.c), that operand holds x + skip: add only the bias. */
        if (rn->residual_fused && td_rt_residual_fusable(x, skip)) {
            x = rn->residual_fused == 1 ? x : skip; /* (x + skip) + bias, as unfused */
            skip = NULL;
        }
        td_kern_skip_layernorm_rows(x->data, skip ? skip->data : NULL, skip ? ns / h : 0, bias ? bias->data : NULL, gamma->data,
                                    beta ? beta->data : NULL, out[0]->data,
                                    rn->n_out > 3 && out[3] ? out[3]->data : NULL, rows, h, st->eps,
                                    rn->n_out > 1 && out[1] ? out[1]->data : NULL,
                                    rn->n_out > 2 && out[2] ? out[2]->data : NULL, env);
        return TD_OK;
    }
    float *sum = scr, *g = scr + n, *b = g + h;
    scr = b + h + 16;
    for (int64_t j = 0; j < h; j++) {
        g[j] = td_ldf(gamma->data, gamma->dtype, j);
        b[j] = beta ? td_ldf(beta->data, beta->dtype, j) : 0.0f;
    }
    for (int64_t i = 0; i < n; i++)
        sum[i] = td_ldf(x->data, x->dtype, i) + td_ldf(skip->data, skip->dtype, i % ns) +
                 (bias ? td_ldf(bias->data, bias->dtype, i % h) : 0.0f);
    float *Y = out_f32(out[0], &scr);
    float *mean = rn->n_out > 1 && out[1] ? out[1]->data : NULL;
    float *istd = rn->n_out > 2 && out[2] ? out[2]->data : NULL;
    td_kern_layernorm_rows(sum, g, b, Y, rows, h, st->eps, mean, istd, env);
    store_out(out[0], Y);
    if (rn->n_out > 3 && out[3])
        for (int64_t i = 0; i < n; i++)
            td_stf(out[3]->data, out[3]->dtype, i, sum[i]);
    return TD_OK;
}

/* ---- SimplifiedLayerNormalization (RMSNorm; ONNX Runtime registers it in the
 * default domain) and com.microsoft SkipSimplifiedLayerNormalization ---- */
typedef struct rms_state {
    int64_t axis;
    float eps;
    bool skip; /* SkipSimplifiedLayerNormalization */
} rms_state;

static td_status rms_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    bool skip = strcmp(rn->node->op_type, "SkipSimplifiedLayerNormalization") == 0;
    TD_TRY(td_check_inputs(ctx, rn, skip ? 3 : 2, skip ? 4 : 2, 1, skip ? 4 : 2));
    TD_TRY(float_inputs(ctx, rn, in, 0, rn->n_in));
    rms_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    st->skip = skip;
    st->axis = skip ? -1 : td_node_attr_int(rn->node, "axis", -1);
    st->eps = td_node_attr_float(rn->node, "epsilon", skip ? 1e-12f : 1e-5f);
    if (!skip && td_node_attr_int(rn->node, "stash_type", 1) != 1)
        return td_unsupported_attr(ctx, rn, "stash_type", "other than 1 (float)");
    for (int k = 0; k < rn->n_out; k++)
        out[k] = (k == 0 || (skip && k == 3)) ? in[0] : TD_F32;
    return TD_OK;
}
static td_status rms_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    rms_state *st = rn->state;
    const td_rt_tensor *x = in[0];
    int a;
    if (!td_norm_axis(st->axis, x->rank, &a))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "axis %lld is outside rank %d", (long long)st->axis, x->rank);
    int64_t n = 1, total = td_rt_numel(x);
    for (int d = a; d < x->rank; d++)
        n *= x->shape[d];
    const td_rt_tensor *gamma = in[st->skip ? 2 : 1];
    if (td_rt_numel(gamma) != n)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "scale has %lld elements, the normalized shape %lld",
                            (long long)td_rt_numel(gamma), (long long)n);
    if (st->skip) {
        int64_t ns = td_rt_numel(in[1]);
        if (in[1]->rank < 1 || in[1]->shape[in[1]->rank - 1] != n || ns == 0 || total % ns)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "skip must end in hidden size %lld and broadcast to the input",
                                (long long)n);
        if (rn->n_in > 3 && in[3] && td_rt_numel(in[3]) != n)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "bias must have %lld elements", (long long)n);
    }
    for (int k = 0; k < rn->n_out; k++) {
        if (!out[k])
            continue;
        first_shape(ctx, rn, in, &out[k]);
        bool stat = st->skip ? (k == 1 || k == 2) : k == 1;
        for (int d = a; stat && d < x->rank; d++)
            out[k]->shape[d] = 1;
    }
    rn->scratch_bytes = (size_t)(2 * total + n + 64) * sizeof(float);
    return TD_OK;
}
static td_status rms_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                          td_rt_env *env) {
    rms_state *st = rn->state;
    const td_rt_tensor *x = in[0], *gamma = in[st->skip ? 2 : 1];
    int64_t n = td_rt_numel(gamma), total = td_rt_numel(x), rows = n ? total / n : 0;
    float *sum = rn->scratch, *Y = sum + total, *g = Y + total;
    for (int64_t j = 0; j < n; j++)
        g[j] = td_ldf(gamma->data, gamma->dtype, j);
    const td_rt_tensor *skip = st->skip ? in[1] : NULL, *bias = st->skip && rn->n_in > 3 ? in[3] : NULL;
    int64_t ns = skip ? td_rt_numel(skip) : 1;
    for (int64_t i = 0; i < total; i++)
        sum[i] = td_ldf(x->data, x->dtype, i) + (skip ? td_ldf(skip->data, skip->dtype, i % ns) : 0.0f) +
                 (bias ? td_ldf(bias->data, bias->dtype, i % n) : 0.0f);
    int istd_slot = st->skip ? 2 : 1;
    float *istd = rn->n_out > istd_slot && out[istd_slot] ? out[istd_slot]->data : NULL;
    td_kern_rmsnorm_rows(sum, g, Y, rows, n, st->eps, istd, env);
    for (int64_t i = 0; i < total; i++)
        td_stf(out[0]->data, out[0]->dtype, i, Y[i]);
    if (st->skip && rn->n_out > 1 && out[1]) /* mean output of the simplified form: zeros */
        memset(out[1]->data, 0, td_rt_nbytes(out[1]));
    if (st->skip && rn->n_out > 3 && out[3])
        for (int64_t i = 0; i < total; i++)
            td_stf(out[3]->data, out[3]->dtype, i, sum[i]);
    return TD_OK;
}

/* ---- EmbedLayerNormalization ---- */
static td_status eln_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 1, 9, 1, 3));
    /* input_ids, word/position embeddings, gamma, beta are required; segment_ids,
     * segment_embedding, mask, position_ids are optional */
    const int required[] = {0, 2, 3, 5, 6};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (rn->n_in <= required[i] || rn->in[required[i]] < 0)
            return td_node_fail(ctx, rn, TD_ERR_FORMAT, "required input %d is missing", required[i]);
    if ((rn->in[1] >= 0) != (rn->in[4] >= 0))
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "segment_ids and segment_embedding must be given together");
    if (in[0] != TD_I32)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "input_ids must be int32 (got %s)", td_dtype_name(in[0]));
    if (rn->in[1] >= 0 && in[1] != TD_I32)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "segment_ids must be int32 (got %s)", td_dtype_name(in[1]));
    if (rn->n_in > 7 && rn->in[7] >= 0 && in[7] != TD_I32)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "mask must be int32 (got %s)", td_dtype_name(in[7]));
    if (rn->n_in > 8 && rn->in[8] >= 0 && in[8] != TD_I32)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "position_ids must be int32 (got %s)", td_dtype_name(in[8]));
    for (int i = 2; i <= 6; i++) {
        if (rn->in[i] < 0)
            continue;
        TD_TRY(td_check_dtype(ctx, rn, i, in[i], td_is_float_dt, "float, float16, bfloat16"));
        if (in[i] != in[2])
            return td_node_fail(ctx, rn, TD_ERR_DTYPE, "input %d is %s, word_embedding is %s", i, td_dtype_name(in[i]),
                                td_dtype_name(in[2]));
    }
    if (td_node_attr_int(rn->node, "mask_index_type", 1) != 1)
        return td_unsupported_attr(ctx, rn, "mask_index_type", "other than 1");
    sln_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    st->eps = td_node_attr_float(rn->node, "epsilon", 1e-12f);
    out[0] = in[2];
    if (rn->n_out > 1) out[1] = TD_I32;
    if (rn->n_out > 2) out[2] = in[2];
    return TD_OK;
}
static td_status eln_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    const td_rt_tensor *ids = in[0], *we = in[2], *pe = in[3];
    if (ids->rank != 2 || we->rank != 2 || pe->rank != 2 || pe->shape[1] != we->shape[1])
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "expected input_ids (B, S) and embeddings (V, H), (P, H)");
    int64_t B = ids->shape[0], S = ids->shape[1], H = we->shape[1];
    if (in[1] && (in[1]->rank != 2 || in[1]->shape[0] != B || in[1]->shape[1] != S))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "segment_ids must have the shape of input_ids");
    if (rn->n_in > 7 && in[7] && (in[7]->rank != 2 || in[7]->shape[0] != B || in[7]->shape[1] != S))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "mask must have the shape of input_ids");
    out[0]->rank = 3;
    out[0]->shape[0] = B;
    out[0]->shape[1] = S;
    out[0]->shape[2] = H;
    if (rn->n_out > 1 && out[1]) {
        out[1]->rank = 1;
        out[1]->shape[0] = B;
    }
    if (rn->n_out > 2 && out[2])
        *out[2] = (td_rt_tensor){out[2]->dtype, 3, {B, S, H}, NULL};
    rn->scratch_bytes = (size_t)(2 * B * S * H + 2 * H + 64) * sizeof(float);
    return TD_OK;
}
static int64_t idx_at(const td_rt_tensor *t, int64_t i) { return td_ldi(t->data, t->dtype, i); }

static td_status eln_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                          td_rt_env *env) {
    sln_state *st = rn->state;
    const td_rt_tensor *ids = in[0], *seg = in[1], *we = in[2], *pe = in[3], *se = in[4], *gamma = in[5], *beta = in[6];
    const td_rt_tensor *mask = rn->n_in > 7 ? in[7] : NULL, *pos = rn->n_in > 8 ? in[8] : NULL;
    int64_t B = ids->shape[0], S = ids->shape[1], H = we->shape[1], V = we->shape[0], P = pe->shape[0];
    int64_t NS = se ? se->shape[0] : 0;
    float *sum = rn->scratch, *Y = sum + B * S * H, *g = Y + B * S * H, *b = g + H;
    for (int64_t j = 0; j < H; j++) {
        g[j] = td_ldf(gamma->data, gamma->dtype, j);
        b[j] = td_ldf(beta->data, beta->dtype, j);
    }
    if (pos && td_rt_numel(pos) != B * S && td_rt_numel(pos) != S)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "position_ids must be (B, S) or (1, S)");
    bool f32_tables = we->dtype == TD_F32 && pe->dtype == TD_F32 && (!se || se->dtype == TD_F32);
    for (int64_t bi = 0; bi < B; bi++)
        for (int64_t s = 0; s < S; s++) {
            int64_t t = bi * S + s, w = idx_at(ids, t);
            int64_t p = pos ? idx_at(pos, td_rt_numel(pos) == S ? s : t) : s;
            int64_t sg = seg ? idx_at(seg, t) : 0;
            if (w < 0 || w >= V)
                return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT, "input_ids[%lld] = %lld is outside [0, %lld)",
                                    (long long)t, (long long)w, (long long)V);
            if (p < 0 || p >= P)
                return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT, "position %lld is outside [0, %lld)",
                                    (long long)p, (long long)P);
            if (se && (sg < 0 || sg >= NS))
                return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT, "segment id %lld is outside [0, %lld)",
                                    (long long)sg, (long long)NS);
            float *dst = sum + t * H;
            if (f32_tables) { /* the common case, vectorized: no per-element dtype dispatch */
                const float *wr = (const float *)we->data + w * H, *pr = (const float *)pe->data + p * H;
                const float *sr = se ? (const float *)se->data + sg * H : NULL;
                if (sr)
                    for (int64_t j = 0; j < H; j++)
                        dst[j] = wr[j] + pr[j] + sr[j];
                else
                    for (int64_t j = 0; j < H; j++)
                        dst[j] = wr[j] + pr[j];
            } else {
                for (int64_t j = 0; j < H; j++)
                    dst[j] = td_ldf(we->data, we->dtype, w * H + j) + td_ldf(pe->data, pe->dtype, p * H + j) +
                             (se ? td_ldf(se->data, se->dtype, sg * H + j) : 0.0f);
            }
        }
    /* fp32 output: normalize straight into it */
    bool f32_out = out[0]->dtype == TD_F32;
    td_kern_layernorm_rows(sum, g, b, f32_out ? out[0]->data : Y, B * S, H, st->eps, NULL, NULL, env);
    for (int64_t i = 0; i < B * S * H && !f32_out; i++)
        td_stf(out[0]->data, out[0]->dtype, i, Y[i]);
    if (rn->n_out > 1 && out[1])
        for (int64_t bi = 0; bi < B; bi++) {
            int64_t c = 0;
            for (int64_t s = 0; mask && s < S; s++)
                c += idx_at(mask, bi * S + s);
            ((int32_t *)out[1]->data)[bi] = (int32_t)c;
        }
    if (rn->n_out > 2 && out[2])
        for (int64_t i = 0; i < B * S * H; i++)
            td_stf(out[2]->data, out[2]->dtype, i, sum[i]);
    return TD_OK;
}

/* ---- attention core shared by Attention and MultiHeadAttention ---- */

typedef struct attn_state {
    int64_t heads;
    int64_t unidirectional;
    float scale;      /* 0 = 1/sqrt(head_size) */
    float mask_filter;
    int64_t qkv[3];   /* Attention: hidden sizes of q, k, v (0 = equal thirds) */
} attn_state;

/* Additive mask for batch b into m (S x T): key padding / lengths and causal. */
static td_status build_mask(td_ctx *ctx, const td_rt_node *rn, const attn_state *st, const td_rt_tensor *km,
                            int64_t b, int64_t B, int64_t S, int64_t T, float *m) {
    for (int64_t i = 0; i < S * T; i++)
        m[i] = 0.0f;
    if (km) {
        int64_t n = td_rt_numel(km);
        if (km->rank == 1 && n == B) {
            int64_t len = idx_at(km, b);
            for (int64_t i = 0; i < S; i++)
                for (int64_t j = (len < 0 ? 0 : len); j < T; j++)
                    m[i * T + j] += st->mask_filter;
        } else if (km->rank == 1 && n == 2 * B) {
            int64_t end = idx_at(km, b), start = idx_at(km, B + b);
            for (int64_t i = 0; i < S; i++)
                for (int64_t j = 0; j < T; j++)
                    if (j >= end || j < start)
                        m[i * T + j] += st->mask_filter;
        } else if (km->rank == 2 && km->shape[0] == B && km->shape[1] == T) {
            for (int64_t i = 0; i < S; i++)
                for (int64_t j = 0; j < T; j++)
                    if (idx_at(km, b * T + j) == 0)
                        m[i * T + j] += st->mask_filter;
        } else if (km->rank == 3 && km->shape[0] == B && km->shape[1] == S && km->shape[2] == T) {
            for (int64_t i = 0; i < S * T; i++)
                if (idx_at(km, b * S * T + i) == 0)
                    m[i] += st->mask_filter;
        } else {
            char buf[128];
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "mask of shape %s is not supported (supported: (B), (2B), "
                                "(B, T), (B, S, T))", td_shape_str(km->shape, km->rank, buf, sizeof buf));
        }
    }
    if (st->unidirectional)
        for (int64_t i = 0; i < S; i++)
            for (int64_t j = i + (T - S) + 1; j < T; j++)
                m[i * T + j] += st->mask_filter;
    return TD_OK;
}

static td_status check_bias_shape(td_ctx *ctx, const td_rt_node *rn, const td_rt_tensor *ab, int64_t B, int64_t N,
                                  int64_t S, int64_t T) {
    if (!ab)
        return TD_OK;
    if (ab->rank != 4 || (ab->shape[0] != 1 && ab->shape[0] != B) || (ab->shape[1] != 1 && ab->shape[1] != N) ||
        ab->shape[2] != S || ab->shape[3] != T)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "attention_bias must be (B or 1, N or 1, %lld, %lld)", (long long)S,
                            (long long)T);
    return TD_OK;
}

static td_status attn_state_init(td_ctx *ctx, td_rt_node *rn, attn_state **out) {
    attn_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    st->heads = td_node_attr_int(rn->node, "num_heads", 0);
    if (st->heads <= 0)
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "num_heads must be a positive int (required attribute)");
    st->unidirectional = td_node_attr_int(rn->node, "unidirectional", 0);
    st->scale = td_node_attr_float(rn->node, "scale", 0.0f);
    st->mask_filter = td_node_attr_float(rn->node, "mask_filter_value", -10000.0f);
    if (td_node_attr_int(rn->node, "do_rotary", 0) != 0)
        return td_unsupported_attr(ctx, rn, "do_rotary", "1");
    if (td_node_attr_int(rn->node, "past_present_share_buffer", 0) != 0)
        return td_unsupported_attr(ctx, rn, "past_present_share_buffer", "1");
    *out = st;
    return TD_OK;
}

/* Scratch floats attn_run needs: the (B, S, T) mask plus the kernel's per-thread space. */
static size_t attn_scratch_floats(const td_rt_node *rn, int64_t B, int64_t S, int64_t T, int64_t D, int64_t Dv) {
    return (size_t)(B * S * T + 16) + td_kern_mha_scratch(S, T, D, Dv, rn->threads) / sizeof(float) + 16;
}

/* Run all heads: Q (B, S, N*D) with row stride ldq; K, V (B, N, T, D) contiguous,
 * or with kv_ld > 0 (B, T, N*D) rows kv_ld apart; out (B, S, N*Dv). */
static td_status attn_run(td_ctx *ctx, const td_rt_node *rn, const attn_state *st, const float *Q, int64_t ldq,
                          const float *K, const float *V, int64_t kv_ld, float *O, int64_t B, int64_t N, int64_t S, int64_t T,
                          int64_t D, int64_t Dv, const td_rt_tensor *km, const td_rt_tensor *ab, const float *ab_f,
                          float *scratch, td_rt_env *env) {
    float *mask = NULL;
    /* key padding / lengths mask every query alike: build and add one T row per batch item */
    bool one_row = !st->unidirectional && !(km && km->rank == 3);
    int64_t mrows = one_row ? 1 : S;
    if (km || st->unidirectional) {
        mask = scratch;
        for (int64_t b = 0; b < B; b++)
            TD_TRY(build_mask(ctx, rn, st, km, b, B, mrows, T, mask + b * mrows * T));
    }
    td_kern_mha a = {
        .B = B, .N = N, .S = S, .T = T, .D = D, .Dv = Dv,
        .q = Q, .q_bstride = S * ldq, .ldq = ldq, .k = K, .v = V, .kv_ld = kv_ld,
        .out = O, .o_bstride = S * N * Dv, .ldo = N * Dv,
        .scale = st->scale != 0.0f ? st->scale : 1.0f / sqrtf((float)D),
        .mask = mask, .mask_bstride = mrows * T, .mask_one_row = one_row,
        .bias = ab ? ab_f : NULL,
        .bias_bstride = ab && ab->shape[0] != 1 ? ab->shape[1] * S * T : 0,
        .bias_hstride = ab && ab->shape[1] != 1 ? S * T : 0,
    };
    td_kern_mha_run(&a, scratch + B * S * T + 16, env);
    return TD_OK;
}

/* ---- Attention ---- */
static td_status attention_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    attn_state *st;
    TD_TRY(td_check_inputs(ctx, rn, 2, 7, 1, 2));
    TD_TRY(float_inputs(ctx, rn, in, 0, 3));
    if (rn->n_in > 4 && rn->in[4] >= 0 && in[4] != in[0])
        return td_node_fail(ctx, rn, TD_ERR_DTYPE, "past must have the input's dtype");
    if (rn->n_in > 5 && rn->in[5] >= 0 && in[5] != in[0])
        return td_node_fail(ctx, rn, TD_ERR_DTYPE, "attention_bias must have the input's dtype");
    if (rn->n_in > 3 && rn->in[3] >= 0 && in[3] != TD_I32)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "mask_index must be int32 (got %s)", td_dtype_name(in[3]));
    if (rn->n_in > 6 && rn->in[6] >= 0)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "past_sequence_length (shared past/present buffer) is not supported");
    TD_TRY(attn_state_init(ctx, rn, &st));
    size_t cnt = 0;
    const int64_t *q = td_node_attr_ints(rn->node, "qkv_hidden_sizes", &cnt);
    if (cnt && cnt != 3)
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "qkv_hidden_sizes must have 3 entries");
    for (size_t i = 0; i < cnt; i++)
        st->qkv[i] = q[i];
    out[0] = in[0];
    if (rn->n_out > 1)
        out[1] = in[0];
    return TD_OK;
}
static td_status attention_dims(td_ctx *ctx, const td_rt_node *rn, td_rt_tensor *const *in, int64_t *Hq, int64_t *Hk,
                                int64_t *Hv, int64_t *P) {
    const attn_state *st = rn->state;
    const td_rt_tensor *x = in[0], *w = in[1];
    if (x->rank != 3 || w->rank != 2 || w->shape[0] != x->shape[2])
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "expected input (B, S, Hin) and weights (Hin, Hq + Hk + Hv)");
    int64_t tot = w->shape[1];
    if (st->qkv[0]) {
        *Hq = st->qkv[0], *Hk = st->qkv[1], *Hv = st->qkv[2];
    } else {
        *Hq = *Hk = *Hv = tot / 3;
    }
    if (*Hq + *Hk + *Hv != tot || *Hq != *Hk || *Hq % st->heads || *Hv % st->heads || *Hq <= 0)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "hidden sizes %lld/%lld/%lld do not fit weights of width %lld and %lld heads",
                            (long long)*Hq, (long long)*Hk, (long long)*Hv, (long long)tot, (long long)st->heads);
    if (rn->n_in > 2 && in[2] && (in[2]->rank != 1 || in[2]->shape[0] != tot))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "bias must be 1-D of size %lld", (long long)tot);
    *P = 0;
    if (rn->n_in > 4 && in[4]) {
        const td_rt_tensor *p = in[4];
        if (p->rank != 5 || p->shape[0] != 2 || p->shape[1] != x->shape[0] || p->shape[2] != st->heads ||
            p->shape[4] != *Hq / st->heads || *Hv != *Hq)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "past must be (2, B, num_heads, P, head_size)");
        *P = p->shape[3];
    }
    return TD_OK;
}
static td_status attention_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    const attn_state *st = rn->state;
    int64_t Hq = 0, Hk = 0, Hv = 0, P = 0;
    TD_TRY(attention_dims(ctx, rn, in, &Hq, &Hk, &Hv, &P));
    int64_t B = in[0]->shape[0], S = in[0]->shape[1], T = P + S, N = st->heads;
    TD_TRY(check_bias_shape(ctx, rn, rn->n_in > 5 ? in[5] : NULL, B, N, S, T));
    *out[0] = (td_rt_tensor){out[0]->dtype, 3, {B, S, Hv}, NULL};
    if (rn->n_out > 1 && out[1])
        *out[1] = (td_rt_tensor){out[1]->dtype, 5, {2, B, N, T, Hq / N}, NULL};
    size_t f = (size_t)(B * S * (Hq + Hk + Hv) + B * T * (Hq + Hv) + B * S * Hv + 256) +
               attn_scratch_floats(rn, B, S, T, Hq / N, Hv / N);
    rn->scratch_bytes = f * sizeof(float) + f32_scratch(in[0]) + f32_scratch(in[1]) +
                        (rn->n_in > 2 ? f32_scratch(in[2]) : 0) + (rn->n_in > 4 ? f32_scratch(in[4]) : 0) +
                        (rn->n_in > 5 ? f32_scratch(in[5]) : 0) +
                        (rn->packed ? 0 : td_kern_gemm_scratch(in[1]->shape[0], in[1]->shape[1]) + 64);
    return TD_OK;
}
static td_status attention_prepack(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *c, int precision) {
    const td_rt_tensor *w = c[1];
    if (!w || w->rank != 2)
        return TD_OK;
    td_dtype dt = precision == TD_PRECISION_FP16 ? TD_F16 : precision == TD_PRECISION_BF16 ? TD_BF16 : w->dtype;
    return td_kern_pack_b(ctx, w->data, w->dtype, w->shape[0], w->shape[1], false, dt, (td_kern_packed **)&rn->packed);
}
static td_status attention_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                                td_rt_env *env) {
    const attn_state *st = rn->state;
    int64_t Hq = 0, Hk = 0, Hv = 0, P = 0;
    TD_TRY(attention_dims(ctx, rn, in, &Hq, &Hk, &Hv, &P));
    int64_t B = in[0]->shape[0], S = in[0]->shape[1], Hin = in[0]->shape[2], T = P + S, N = st->heads;
    int64_t D = Hq / N, Dv = Hv / N, W = Hq + Hk + Hv;
    float *scr = rn->scratch;
    const float *X = as_f32(in[0], &scr);
    const float *bias = rn->n_in > 2 && in[2] ? as_f32(in[2], &scr) : NULL;
    const float *past = rn->n_in > 4 && in[4] ? as_f32(in[4], &scr) : NULL;
    const float *abf = rn->n_in > 5 && in[5] ? as_f32(in[5], &scr) : NULL;
    float *qkv = scr;
    scr += B * S * W;
    if (rn->packed) {
        td_kern_gemm_packed(X, Hin, B * S, rn->packed, bias, qkv, W, env);
    } else {
        const float *Wt = as_f32(in[1], &scr);
        void *pack = scr;
        scr += td_kern_gemm_scratch(Hin, W) / sizeof(float) + 16;
        td_kern_gemm(B * S, W, Hin, 1.0f, X, Hin, Wt, W, false, qkv, W, pack, env);
        if (bias)
            for (int64_t r = 0; r < B * S; r++)
                for (int64_t j = 0; j < W; j++)
                    qkv[r * W + j] += bias[j];
    }
    /* K and V in (B, N, T, D) with the past first; without past and present
     * the heads read them in place from the QKV projection (rows W apart) */
    bool in_place = !past && !(rn->n_out > 1 && out[1]);
    float *K = scr, *V = scr + B * N * T * D;
    scr = V + B * N * T * Dv;
    for (int64_t b = 0; b < B && !in_place; b++)
        for (int64_t h = 0; h < N; h++) {
            float *kd = K + (b * N + h) * T * D, *vd = V + (b * N + h) * T * Dv;
            if (past) {
                td_memcpy(kd, past + (b * N + h) * P * D, (size_t)(P * D) * sizeof(float));
                td_memcpy(vd, past + ((B + b) * N + h) * P * D, (size_t)(P * Dv) * sizeof(float));
            }
            for (int64_t s = 0; s < S; s++) {
                td_memcpy(kd + (P + s) * D, qkv + (b * S + s) * W + Hq + h * D, (size_t)D * sizeof(float));
                td_memcpy(vd + (P + s) * Dv, qkv + (b * S + s) * W + Hq + Hk + h * Dv, (size_t)Dv * sizeof(float));
            }
        }
    float *O = out_f32(out[0], &scr);
    TD_TRY(attn_run(ctx, rn, st, qkv, W, in_place ? qkv + Hq : K, in_place ? qkv + Hq + Hk : V, in_place ? W : 0, O,
                    B, N, S, T, D, Dv, rn->n_in > 3 ? in[3] : NULL,
                    rn->n_in > 5 ? in[5] : NULL, abf, scr, env));
    store_out(out[0], O);
    if (rn->n_out > 1 && out[1]) {
        int64_t half = B * N * T * D;
        for (int64_t i = 0; i < half; i++) {
            td_stf(out[1]->data, out[1]->dtype, i, K[i]);
            td_stf(out[1]->data, out[1]->dtype, half + i, V[i]);
        }
    }
    return TD_OK;
}

/* ---- MultiHeadAttention ---- */
static td_status mha_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    attn_state *st;
    TD_TRY(td_check_inputs(ctx, rn, 1, 10, 1, 3));
    TD_TRY(float_inputs(ctx, rn, in, 0, 4));
    for (int i = 5; i <= 7 && i < rn->n_in; i++)
        if (rn->in[i] >= 0 && in[i] != in[0])
            return td_node_fail(ctx, rn, TD_ERR_DTYPE, "input %d must have the query's dtype", i);
    if (rn->n_in > 4 && rn->in[4] >= 0 && in[4] != TD_I32)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "key_padding_mask must be int32 (got %s)", td_dtype_name(in[4]));
    if ((rn->n_in > 8 && rn->in[8] >= 0) || (rn->n_in > 9 && rn->in[9] >= 0))
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "past_sequence_length / cache_indirection are not supported");
    if (rn->n_in < 3 || rn->in[1] < 0 || rn->in[2] < 0)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "packed QKV / KV inputs are not supported (give query, key and value)");
    TD_TRY(attn_state_init(ctx, rn, &st));
    for (int k = 0; k < rn->n_out; k++)
        out[k] = in[0];
    return TD_OK;
}
typedef struct mha_dims {
    int64_t B, S, L, P, T, N, D, Dv;
    bool kv4; /* key/value given as (B, N, L, head_size): already projected per head, no bias */
} mha_dims;
static td_status mha_get_dims(td_ctx *ctx, const td_rt_node *rn, td_rt_tensor *const *in, mha_dims *d) {
    const attn_state *st = rn->state;
    const td_rt_tensor *q = in[0], *k = in[1], *v = in[2];
    if (q->rank != 3)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "query must be (B, S, hidden)");
    d->B = q->shape[0];
    d->S = q->shape[1];
    d->N = st->heads;
    if (q->shape[2] % d->N)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "hidden %lld is not a multiple of num_heads", (long long)q->shape[2]);
    d->D = q->shape[2] / d->N;
    if (k->rank == 3 && v->rank == 3) {
        d->kv4 = false;
        if (k->shape[0] != d->B || v->shape[0] != d->B || k->shape[1] != v->shape[1] || k->shape[2] != q->shape[2] ||
            v->shape[2] % d->N)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "key/value must be (B, L, hidden)");
        d->L = k->shape[1];
        d->Dv = v->shape[2] / d->N;
    } else if (k->rank == 4 && v->rank == 4) {
        d->kv4 = true;
        if (k->shape[0] != d->B || k->shape[1] != d->N || k->shape[3] != d->D || v->shape[0] != d->B ||
            v->shape[1] != d->N || v->shape[2] != k->shape[2])
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "key/value must be (B, num_heads, L, head_size)");
        d->L = k->shape[2];
        d->Dv = v->shape[3];
    } else {
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "key rank %d / value rank %d layout is not supported", k->rank,
                            v->rank);
    }
    if (rn->n_in > 3 && in[3] && (in[3]->rank != 1 || in[3]->shape[0] != 2 * d->N * d->D + d->N * d->Dv))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "bias must be 1-D of size hidden + hidden + v_hidden");
    d->P = 0;
    const td_rt_tensor *pk = rn->n_in > 6 ? in[6] : NULL, *pv = rn->n_in > 7 ? in[7] : NULL;
    if ((pk == NULL) != (pv == NULL))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "past_key and past_value must be given together");
    if (pk) {
        if (pk->rank != 4 || pk->shape[0] != d->B || pk->shape[1] != d->N || pk->shape[3] != d->D || pv->rank != 4 ||
            pv->shape[2] != pk->shape[2] || pv->shape[3] != d->Dv)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "past_key/past_value must be (B, num_heads, P, head_size)");
        d->P = pk->shape[2];
    }
    d->T = d->P + d->L;
    return TD_OK;
}
static td_status mha_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    mha_dims d;
    TD_TRY(mha_get_dims(ctx, rn, in, &d));
    TD_TRY(check_bias_shape(ctx, rn, rn->n_in > 5 ? in[5] : NULL, d.B, d.N, d.S, d.T));
    *out[0] = (td_rt_tensor){out[0]->dtype, 3, {d.B, d.S, d.N * d.Dv}, NULL};
    if (rn->n_out > 1 && out[1])
        *out[1] = (td_rt_tensor){out[1]->dtype, 4, {d.B, d.N, d.T, d.D}, NULL};
    if (rn->n_out > 2 && out[2])
        *out[2] = (td_rt_tensor){out[2]->dtype, 4, {d.B, d.N, d.T, d.Dv}, NULL};
    size_t f = (size_t)(d.B * d.S * d.N * d.D + d.B * d.N * d.T * (d.D + d.Dv) + d.B * d.S * d.N * d.Dv + 256) +
               attn_scratch_floats(rn, d.B, d.S, d.T, d.D, d.Dv);
    rn->scratch_bytes = f * sizeof(float);
    for (int i = 0; i < rn->n_in && i < 8; i++)
        if (i != 4)
            rn->scratch_bytes += f32_scratch(in[i]);
    return TD_OK;
}
static td_status mha_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                          td_rt_env *env) {
    const attn_state *st = rn->state;
    mha_dims d;
    TD_TRY(mha_get_dims(ctx, rn, in, &d));
    int64_t B = d.B, S = d.S, L = d.L, P = d.P, T = d.T, N = d.N, D = d.D, Dv = d.Dv, Hq = N * D;
    float *scr = rn->scratch;
    const float *q = as_f32(in[0], &scr), *k = as_f32(in[1], &scr), *v = as_f32(in[2], &scr);
    const float *bias = rn->n_in > 3 && in[3] ? as_f32(in[3], &scr) : NULL;
    const float *abf = rn->n_in > 5 && in[5] ? as_f32(in[5], &scr) : NULL;
    const float *pk = rn->n_in > 6 && in[6] ? as_f32(in[6], &scr) : NULL;
    const float *pv = rn->n_in > 7 && in[7] ? as_f32(in[7], &scr) : NULL;
    bool present = (rn->n_out > 1 && out[1]) || (rn->n_out > 2 && out[2]);
    if (!d.kv4 && !bias && !pk && !present && Dv == D) {
        /* (B, L, N*D) query/key/value without bias or cache (the int8 graphs' projections carry their
         * biases): the heads are read in place, as Attention reads its QKV projection */
        float *O = out_f32(out[0], &scr);
        TD_TRY(attn_run(ctx, rn, st, q, Hq, k, v, Hq, O, B, N, S, T, D, Dv, rn->n_in > 4 ? in[4] : NULL,
                        rn->n_in > 5 ? in[5] : NULL, abf, scr, env));
        store_out(out[0], O);
        return TD_OK;
    }
    float *Q = scr;
    scr += B * S * Hq;
    for (int64_t r = 0; r < B * S; r++)
        for (int64_t j = 0; j < Hq; j++)
            Q[r * Hq + j] = q[r * Hq + j] + (bias ? bias[j] : 0.0f);
    float *K = scr, *V = scr + B * N * T * D;
    scr = V + B * N * T * Dv;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < N; h++) {
            float *kd = K + (b * N + h) * T * D, *vd = V + (b * N + h) * T * Dv;
            if (pk) {
                td_memcpy(kd, pk + (b * N + h) * P * D, (size_t)(P * D) * sizeof(float));
                td_memcpy(vd, pv + (b * N + h) * P * Dv, (size_t)(P * Dv) * sizeof(float));
            }
            for (int64_t l = 0; l < L; l++) {
                for (int64_t j = 0; j < D; j++)
                    kd[(P + l) * D + j] = d.kv4 ? k[((b * N + h) * L + l) * D + j]
                                                : k[(b * L + l) * Hq + h * D + j] + (bias ? bias[Hq + h * D + j] : 0.0f);
                for (int64_t j = 0; j < Dv; j++)
                    vd[(P + l) * Dv + j] = d.kv4 ? v[((b * N + h) * L + l) * Dv + j]
                                                 : v[(b * L + l) * N * Dv + h * Dv + j] +
                                                       (bias ? bias[2 * Hq + h * Dv + j] : 0.0f);
            }
        }
    float *O = out_f32(out[0], &scr);
    TD_TRY(attn_run(ctx, rn, st, Q, Hq, K, V, 0, O, B, N, S, T, D, Dv, rn->n_in > 4 ? in[4] : NULL,
                    rn->n_in > 5 ? in[5] : NULL, abf, scr, env));
    store_out(out[0], O);
    if (rn->n_out > 1 && out[1])
        for (int64_t i = 0; i < B * N * T * D; i++)
            td_stf(out[1]->data, out[1]->dtype, i, K[i]);
    if (rn->n_out > 2 && out[2])
        for (int64_t i = 0; i < B * N * T * Dv; i++)
            td_stf(out[2]->data, out[2]->dtype, i, V[i]);
    return TD_OK;
}

const td_op_def td_ops_contrib[] = {
    {MS, "Gelu", 1, 1, gelu_init, gelu_shape, gelu_exec, 0, 0, NULL},
    {MS, "BiasGelu", 1, 1, gelu_init, gelu_shape, gelu_exec, 0, 0, NULL},
    {MS, "FastGelu", 1, 1, gelu_init, gelu_shape, gelu_exec, 0, 0, NULL},
    {MS, "QuickGelu", 1, 1, quick_gelu_init, first_shape, quick_gelu_exec, 0, 0, NULL},
    {MS, "SkipLayerNormalization", 1, 1, sln_init, sln_shape, sln_exec, 0, 0, NULL},
    {"", "SimplifiedLayerNormalization", 1, TD_MAX_ONNX_OPSET, rms_init, rms_shape, rms_exec, 0, 0, NULL},
    {MS, "SkipSimplifiedLayerNormalization", 1, 1, rms_init, rms_shape, rms_exec, 0, 0, NULL},
    {MS, "EmbedLayerNormalization", 1, 1, eln_init, eln_shape, eln_exec, 0, 0, NULL},
    {MS, "Attention", 1, 1, attention_init, attention_shape, attention_exec, 0, 0, attention_prepack},
    {MS, "MultiHeadAttention", 1, 1, mha_init, mha_shape, mha_exec, 0, 0, NULL},
};
const int td_ops_contrib_count = (int)(sizeof td_ops_contrib / sizeof td_ops_contrib[0]);
