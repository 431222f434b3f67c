/* Quantized ops: com.microsoft DynamicQuantizeMatMul, what `tdeploy optimize
 * --precision int8` writes for every MatMul with a constant weight.
 *
 *   Y (..., N) = dequant(quant(A (..., K)) @ B (K, N) int8) [+ bias (N)]
 *
 * ONNX Runtime's definition quantizes A per tensor (uint8, DynamicQuantizeLinear).
 * This runtime quantizes every row of A on its own (gemm_int8.h): the same
 * formula over a narrower range, so rows of small values keep their precision
 * when another row holds an outlier; results therefore differ from ONNX
 * Runtime's by (smaller) quantization error, not by a different function.
 * B must be int8 with b_scale per tensor or per column and no (or all-zero)
 * b_zero_point: symmetric weights, what the optimizer writes. Constant B is
 * packed once at session creation; a B computed at run time is packed per run. */
#include "runtime/cpu/gemm_int8.h"
#include "runtime/cpu/kern.h"
#include "runtime/cpu/op_util.h"
#include "runtime/cpu/ops.h"

#define MS "com.microsoft"

static td_status dqmm_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 3, 5, 1, 1));
    if (in[0] != TD_F32)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "input A must be float (got %s)", td_dtype_name(in[0]));
    if (in[1] != TD_I8)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "input B must be int8 (got %s; uint8 weights are not "
                            "supported: quantize them symmetrically)", td_dtype_name(in[1]));
    if (in[2] != TD_F32)
        return td_node_fail(ctx, rn, TD_ERR_DTYPE, "b_scale must be float (got %s)", td_dtype_name(in[2]));
    if (rn->n_in > 3 && rn->in[3] >= 0 && in[3] != TD_I8)
        return td_node_fail(ctx, rn, TD_ERR_DTYPE, "b_zero_point must have B's type int8 (got %s)",
                            td_dtype_name(in[3]));
    if (rn->n_in > 4 && rn->in[4] >= 0 && in[4] != TD_F32)
        return td_node_fail(ctx, rn, TD_ERR_DTYPE, "bias must be float (got %s)", td_dtype_name(in[4]));
    out[0] = TD_F32;
    return TD_OK;
}

static td_status dqmm_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    const td_rt_tensor *a = in[0], *b = in[1], *s = in[2];
    if (a->rank < 1 || b->rank != 2)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "A must have rank >= 1 and B rank 2 (got ranks %d and %d)",
                            a->rank, b->rank);
    int64_t K = b->shape[0], N = b->shape[1];
    if (a->shape[a->rank - 1] != K)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "A's last dim %lld does not match B's rows %lld",
                            (long long)a->shape[a->rank - 1], (long long)K);
    int64_t ns = td_rt_numel(s);
    if (s->rank > 1 || (ns != 1 && ns != N))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "b_scale must be a scalar or 1-D of B's %lld columns",
                            (long long)N);
    if (rn->n_in > 3 && in[3] && td_rt_numel(in[3]) != ns)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "b_zero_point must have b_scale's shape");
    if (rn->n_in > 4 && in[4] && (in[4]->rank != 1 || in[4]->shape[0] != N))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "bias must be 1-D of B's %lld columns", (long long)N);
    out[0]->rank = a->rank;
    td_memcpy(out[0]->shape, a->shape, sizeof out[0]->shape);
    out[0]->shape[a->rank - 1] = N;
    int64_t M = 1;
    for (int d = 0; d < a->rank - 1; d++)
        M *= a->shape[d];
    size_t need = td_gemm_i8_scratch_bytes((size_t)M, (size_t)K);
    if (need == SIZE_MAX)
        return td_node_fail(ctx, rn, TD_ERR_OVERFLOW, "quantized activations of %lld x %lld overflow", (long long)M,
                            (long long)K);
    rn->scratch_bytes = need + 64;
    return TD_OK;
}

/* Pack B with its scales; zero points must all be 0 (symmetric weights). */
static td_status pack_weights(td_ctx *ctx, const td_rt_node *rn, const td_rt_tensor *b, const td_rt_tensor *s,
                              const td_rt_tensor *zp, td_kern_packed **out) {
    *out = NULL;
    if (b->rank != 2)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "B must be 2-D (got rank %d)", b->rank);
    int64_t ns = td_rt_numel(s), K = b->shape[0], N = b->shape[1];
    if (s->rank > 1 || (ns != 1 && ns != N))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "b_scale must be a scalar or 1-D of B's %lld columns",
                            (long long)N);
    for (int64_t i = 0; zp && i < td_rt_numel(zp); i++)
        if (((const int8_t *)zp->data)[i] != 0)
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "b_zero_point[%lld] = %d: only symmetric weights (zero "
                                "points 0) are supported", (long long)i, ((const int8_t *)zp->data)[i]);
    const float *sc = s->data;
    for (int64_t i = 0; i < ns; i++)
        if (!(sc[i] > 0.0f) || isinf(sc[i]))
            return td_node_fail(ctx, rn, TD_ERR_FORMAT, "b_scale[%lld] = %g: scales must be positive and finite",
                                (long long)i, (double)sc[i]);
    td_kern_packed *p = calloc(1, sizeof *p);
    if (!p)
        return td_fail_oom(ctx, sizeof *p, "packed weights");
    td_status st = td_gemm_i8_pack(ctx, b->data, (size_t)K, (size_t)N, sc, (size_t)ns, &p->q);
    if (st != TD_OK) {
        free(p);
        return td_wrap(ctx, "node '%s'", rn->node->name ? rn->node->name : "");
    }
    p->K = K;
    p->N = N;
    p->nbytes = p->q->panels * TD_GEMM_I8_NR * (p->q->Kp + sizeof(int32_t) + sizeof(float));
    *out = p;
    return TD_OK;
}

static td_status dqmm_prepack(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *c, int precision) {
    (void)precision; /* int8 whatever the session's float precision */
    if (!c[1] || !c[2] || (rn->n_in > 3 && rn->in[3] >= 0 && !c[3]))
        return TD_OK; /* weights computed at run time: packed per run */
    return pack_weights(ctx, rn, c[1], c[2], rn->n_in > 3 ? c[3] : NULL, (td_kern_packed **)&rn->packed);
}

static td_status dqmm_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                           td_rt_env *env) {
    const td_rt_tensor *a = in[0];
    td_kern_packed *own = NULL, *P = rn->packed;
    if (!P) {
        TD_TRY(pack_weights(ctx, rn, in[1], in[2], rn->n_in > 3 ? in[3] : NULL, &own));
        P = own;
    }
    int64_t K = P->K, N = P->N, M = 1;
    for (int d = 0; d < a->rank - 1; d++)
        M *= a->shape[d];
    /* this node's bias, or the fused consumer's (backend_cpu.c never sets both) */
    const td_rt_tensor *bias = rn->n_in > 4 && in[4] ? in[4] : rn->epi_bias;
    td_gemm_epilogue ep = {
        .bias = bias ? bias->data : NULL,
        .act = (td_gemm_act)rn->epi_act,
        .residual = rn->epi_residual && td_rt_residual_fusable(out[0], rn->epi_residual) ? rn->epi_residual->data
                                                                                       : NULL,
        .ldr = (size_t)N,
    };
    if (env->reference) /* the reference backend (no packing, no fusion): the plain loops on the unpacked weights,
                           with the per-column scales as checked and expanded above */
        td_gemm_i8_ref((size_t)M, (size_t)N, (size_t)K, a->data, (size_t)K, in[1]->data, P->q->scale, out[0]->data,
                       (size_t)N, &ep, td_gemm_i8_act_levels());
    else /* K == 0 needs no special case: every row quantizes to nothing and the epilogue sees zeros */
        td_gemm_i8_run(env->pool, (size_t)M, a->data, (size_t)K, P->q, out[0]->data, (size_t)N, &ep, rn->scratch);
    td_kern_packed_free(own);
    return TD_OK;
}

const td_op_def td_ops_quant[] = {
    {MS, "DynamicQuantizeMatMul", 1, 1, dqmm_init, dqmm_shape, dqmm_exec, 0, 0, dqmm_prepack},
};
const int td_ops_quant_count = (int)(sizeof td_ops_quant / sizeof td_ops_quant[0]);
