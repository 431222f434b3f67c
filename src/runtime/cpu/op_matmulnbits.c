/* com.microsoft MatMulNBits with ONNX Runtime's semantics (block-quantized weights kept quantized):
 * Y = A @ dequant(B)^T + bias, see qnbits.h for the layout. Constant weights are prepared once (per-block
 * fp32 scales and scale * zero point) and run on the AVX-512 kernels; weights that are not constants run
 * on the scalar reference. accuracy_level 4 selects int8 activations (as in ONNX Runtime), lower levels fp32. */
#include "runtime/cpu/op_util.h"
#include "runtime/cpu/ops.h"
#include "runtime/cpu/qnbits.h"

enum { IN_A, IN_B, IN_SCALES, IN_ZP, IN_GIDX, IN_BIAS };

static bool is_u8(td_dtype t) { return t == TD_U8; }
static bool is_f32(td_dtype t) { return t == TD_F32; }
static bool is_zp(td_dtype t) { return t == TD_U8 || t == TD_F32; }

static bool present(const td_rt_node *rn, int slot) { return slot < rn->n_in && rn->in[slot] >= 0; }

static td_status mnb_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 3, 6, 1, 1));
    TD_TRY(td_check_dtype(ctx, rn, IN_A, in[IN_A], is_f32, "float (float16/bfloat16 activations: not yet)"));
    TD_TRY(td_check_dtype(ctx, rn, IN_B, in[IN_B], is_u8, "uint8"));
    TD_TRY(td_check_dtype(ctx, rn, IN_SCALES, in[IN_SCALES], is_f32, "float (the dtype of A)"));
    if (present(rn, IN_ZP))
        TD_TRY(td_check_dtype(ctx, rn, IN_ZP, in[IN_ZP], is_zp, "uint8 or float"));
    if (present(rn, IN_GIDX))
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED,
                            "input g_idx (deprecated act-order) is not supported; re-quantize without it");
    if (present(rn, IN_BIAS))
        TD_TRY(td_check_dtype(ctx, rn, IN_BIAS, in[IN_BIAS], is_f32, "float (the dtype of A)"));
    int64_t K = td_node_attr_int(rn->node, "K", -1), N = td_node_attr_int(rn->node, "N", -1);
    int64_t bits = td_node_attr_int(rn->node, "bits", 4), bs = td_node_attr_int(rn->node, "block_size", -1);
    int64_t level = td_node_attr_int(rn->node, "accuracy_level", 0);
    if (K <= 0 || N <= 0 || K > ((int64_t)1 << 40) || N > ((int64_t)1 << 40))
        return td_node_fail(ctx, rn, TD_ERR_GRAPH, "attributes K and N must be positive (got K=%lld, N=%lld)",
                            (long long)K, (long long)N);
    if (bits != 4 && bits != 8)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "bits=%lld is not supported (4 or 8)", (long long)bits);
    if (bs < 16 || bs > 256 || (bs & (bs - 1)))
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "block_size=%lld is not supported (a power of two, 16..256)",
                            (long long)bs);
    if (bits == 8 && present(rn, IN_ZP) && in[IN_ZP] == TD_F32) /* as ONNX Runtime's CPU kernel */
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED,
                            "8-bit weights with float zero points are not supported; use uint8 zero points");
    if (level < 0 || level > 4)
        return td_node_fail(ctx, rn, TD_ERR_GRAPH, "accuracy_level=%lld is outside 0..4", (long long)level);
    td_qnbits_w *w = calloc(1, sizeof *w);
    if (!w)
        return td_fail_oom(ctx, sizeof *w, "op state");
    w->K = K;
    w->N = N;
    w->bits = (int)bits;
    w->block_size = (int)bs;
    w->kb = td_qnbits_kb(K, (int)bs);
    w->blob = bs * bits / 8;
    w->row_bytes = w->kb * w->blob;
    w->accuracy_level = (int)level;
    rn->state = w;
    out[0] = in[IN_A];
    return TD_OK;
}

static td_status mnb_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    td_qnbits_w *w = rn->state;
    const td_rt_tensor *a = in[IN_A], *b = in[IN_B], *s = in[IN_SCALES];
    if (a->rank < 1 || a->shape[a->rank - 1] != w->K)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "A's last dim must be K=%lld", (long long)w->K);
    if (b->rank != 3 || b->shape[0] != w->N || b->shape[1] != w->kb || b->shape[2] != w->blob)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "B must have shape (N=%lld, %lld blocks, %lld bytes)",
                            (long long)w->N, (long long)w->kb, (long long)w->blob);
    if (td_rt_numel(s) != w->N * w->kb)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "scales must hold N * blocks = %lld values",
                            (long long)(w->N * w->kb));
    if (present(rn, IN_ZP)) {
        const td_rt_tensor *z = in[IN_ZP];
        int64_t want = z->dtype == TD_U8 ? w->N * ((w->kb * w->bits + 7) / 8) : w->N * w->kb;
        if (td_rt_numel(z) != want)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "zero_points must hold %lld values", (long long)want);
    }
    if (present(rn, IN_BIAS) && td_rt_numel(in[IN_BIAS]) != w->N)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "bias must hold N=%lld values", (long long)w->N);
    out[0]->rank = a->rank;
    td_memcpy(out[0]->shape, a->shape, sizeof out[0]->shape);
    out[0]->shape[a->rank - 1] = w->N;
    int64_t M = td_rt_numel(a) / w->K;
    rn->scratch_bytes = w->b ? td_qnbits_scratch(w, M, rn->threads) : 0;
    return TD_OK;
}

static td_qnbits_raw raw_of(const td_rt_node *rn, const td_qnbits_w *w, td_rt_tensor *const *in) {
    td_qnbits_raw r = {w->K, w->N, w->bits, w->block_size, in[IN_B]->data, in[IN_SCALES]->data, NULL, NULL};
    if (present(rn, IN_ZP) && in[IN_ZP]) {
        if (in[IN_ZP]->dtype == TD_U8)
            r.zp_u8 = in[IN_ZP]->data;
        else
            r.zp_f32 = in[IN_ZP]->data;
    }
    return r;
}

/* Constant B, scales and zero points: prepare once (the state becomes the prepared weight). */
static td_status mnb_prepack(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *c, int precision) {
    td_qnbits_w *w = rn->state;
    if (!c[IN_B] || !c[IN_SCALES] || (present(rn, IN_ZP) && !c[IN_ZP]))
        return TD_OK;
    /* shapes are checked here too: shape() runs later, and the preparation reads these tensors */
    if (c[IN_B]->rank != 3 || c[IN_B]->shape[0] != w->N || c[IN_B]->shape[1] != w->kb ||
        c[IN_B]->shape[2] != w->blob || td_rt_numel(c[IN_SCALES]) != w->N * w->kb)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "B must be (N=%lld, %lld, %lld) and scales hold %lld values",
                            (long long)w->N, (long long)w->kb, (long long)w->blob, (long long)(w->N * w->kb));
    if (present(rn, IN_ZP)) {
        const td_rt_tensor *z = c[IN_ZP];
        int64_t want = z->dtype == TD_U8 ? w->N * ((w->kb * w->bits + 7) / 8) : w->N * w->kb;
        if (td_rt_numel(z) != want)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "zero_points must hold %lld values", (long long)want);
    }
    td_qnbits_raw raw = raw_of(rn, w, c);
    td_qnbits_w *p;
    TD_TRY(td_qnbits_prepare(ctx, &raw, &p));
    p->accuracy_level = w->accuracy_level;
    free(w);
    rn->state = p;
    return TD_OK;
}

static td_status mnb_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                          td_rt_env *env) {
    td_qnbits_w *w = rn->state;
    const float *bias = present(rn, IN_BIAS) ? in[IN_BIAS]->data : NULL;
    int64_t M = td_rt_numel(in[IN_A]) / w->K;
    if (w->b)
        td_qnbits_gemm(w, in[IN_A]->data, M, bias, out[0]->data, w->accuracy_level >= 4, rn->scratch, env);
    else {
        td_qnbits_raw raw = raw_of(rn, w, in);
        td_qnbits_ref(&raw, in[IN_A]->data, M, bias, out[0]->data);
    }
    return TD_OK;
}

const td_op_def td_ops_nbits[] = {
    {"com.microsoft", "MatMulNBits", 1, 1, mnb_init, mnb_shape, mnb_exec, 0, 0, mnb_prepack},
};
const int td_ops_nbits_count = (int)(sizeof td_ops_nbits / sizeof td_ops_nbits[0]);
