/* com.tdeploy::KvCacheAppend: the in-place KV cache of text generation.
 *
 *   KvCacheAppend(cache (B, H, C, D), new (B, H, S, D), position (1) int64) -> cache (B, H, C, D)
 *
 * writes new[:, :, s, :] into cache[:, :, position + s, :] and outputs the cache itself (the same bytes:
 * TD_OP_IN_PLACE), so the attention after it reads all C columns of the request's cache without any copy
 * of the past. The cache is a caller buffer bound as a graph input (the generator's past_key_values.N,
 * capacity prompt + max_new_tokens); columns not written yet must hold finite values (the generator zeroes
 * the buffer once) and are closed by the attention bias. The generator puts this op in place of the
 * exporter's Concat(past, new, axis 2) (src/generate/kv_inplace.c). */
#include "runtime/cpu/op_util.h"
#include "runtime/cpu/ops.h"

static td_status kv_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 3, 3, 1, 1));
    if (in[0] != in[1] || td_dtype_size(in[0]) == 0)
        return td_node_fail(ctx, rn, TD_ERR_DTYPE, "cache and new entries must have one dtype (got %s and %s)",
                            td_dtype_name(in[0]), td_dtype_name(in[1]));
    if (in[2] != TD_I64)
        return td_node_fail(ctx, rn, TD_ERR_DTYPE, "position must be int64 (got %s)", td_dtype_name(in[2]));
    out[0] = in[0];
    return TD_OK;
}

static td_status kv_check(td_ctx *ctx, const td_rt_node *rn, td_rt_tensor *const *in) {
    const td_rt_tensor *c = in[0], *x = in[1];
    if (c->rank != 4 || x->rank != 4 || c->shape[0] != x->shape[0] || c->shape[1] != x->shape[1] ||
        c->shape[3] != x->shape[3] || x->shape[2] > c->shape[2]) {
        char a[96], b[96];
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "cache %s and new entries %s must be (B, H, C, D) and (B, H, S, D) "
                            "with S <= C", td_shape_str(c->shape, c->rank, a, sizeof a),
                            td_shape_str(x->shape, x->rank, b, sizeof b));
    }
    if (td_rt_numel(in[2]) != 1)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "position must hold one value");
    return TD_OK;
}

static td_status kv_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    TD_TRY(kv_check(ctx, rn, in));
    out[0]->rank = 4;
    for (int d = 0; d < 4; d++)
        out[0]->shape[d] = in[0]->shape[d];
    return TD_OK;
}

static td_status kv_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                         td_rt_env *env) {
    (void)env;
    TD_TRY(kv_check(ctx, rn, in));
    const td_rt_tensor *x = in[1];
    int64_t rows = x->shape[0] * x->shape[1], S = x->shape[2], C = in[0]->shape[2], D = x->shape[3];
    int64_t pos = ((const int64_t *)in[2]->data)[0];
    if (pos < 0 || pos > C - S)
        return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT, "position %lld + %lld new entries is outside the cache "
                            "of %lld columns", (long long)pos, (long long)S, (long long)C);
    size_t es = td_dtype_size(x->dtype), row = (size_t)(S * D) * es;
    uint8_t *dst = out[0]->data; /* == in[0]->data: the cache */
    const uint8_t *src = x->data;
    for (int64_t r = 0; r < rows; r++) /* (b, h) rows: C x D in the cache, S x D in new */
        td_memcpy(dst + ((size_t)(r * C + pos) * (size_t)D) * es, src + (size_t)r * row, row);
    return TD_OK;
}

const td_op_def td_ops_kvcache[] = {
    {"com.tdeploy", "KvCacheAppend", 1, 1, kv_init, kv_shape, kv_exec, 0, TD_OP_IN_PLACE, NULL},
};
const int td_ops_kvcache_count = (int)(sizeof td_ops_kvcache / sizeof td_ops_kvcache[0]);
