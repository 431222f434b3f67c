/* com.microsoft contrib ops of fused decoders, with ONNX Runtime's documented
 * semantics (ContribOperators.md):
 *   RotaryEmbedding      rotate the first rotary_dim features of every head by
 *                        cos/sin caches indexed by position_ids (non-interleaved)
 *   GroupQueryAttention  causal (or bias-only) attention of num_heads query heads
 *                        over kv_num_heads key/value heads with a KV cache:
 *                        present = past ++ new keys/values, BNSH layout.
 * The heavy loop is td_kern_mha (kern.c), whose reference twin td_ref_mha runs
 * on the reference backend; the rotation is one simple loop for both. */
#include "runtime/cpu/kern.h"
#include "runtime/cpu/op_util.h"
#include "runtime/cpu/ops.h"

#include <float.h>

#define MS "com.microsoft"

/* The mask of a row that has no key left (a padding query past its length and
 * window): finite, so the softmax is uniform instead of NaN. */
#define MASKED_SCORE (-1e30f)

static td_status float_input(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, int slot, td_dtype want) {
    if (slot < rn->n_in && rn->in[slot] >= 0 && in[slot] != want)
        return td_node_fail(ctx, rn, TD_ERR_DTYPE, "input %d is %s but the query is %s", slot, td_dtype_name(in[slot]),
                            td_dtype_name(want));
    return TD_OK;
}

static const td_rt_tensor *opt_in(td_rt_tensor *const *in, const td_rt_node *rn, int slot) {
    return slot < rn->n_in ? in[slot] : NULL;
}

/* ---------------- RotaryEmbedding ---------------- */

typedef struct rope_state {
    int64_t heads, rotary_dim;
} rope_state;

typedef struct rope_dims {
    int64_t B, S, N, D, R; /* R: rotated features of each head (even, <= D) */
    bool bnsh;             /* input (B, N, S, D); else (B, S, N * D) */
} rope_dims;

static td_status rope_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 4, 4, 1, 1));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_float_dt, "float, float16, bfloat16"));
    TD_TRY(td_check_dtype(ctx, rn, 1, in[1], td_is_int_dt, "int64, int32"));
    TD_TRY(float_input(ctx, rn, in, 2, in[0]));
    TD_TRY(float_input(ctx, rn, in, 3, in[0]));
    if (td_node_attr_int(rn->node, "interleaved", 0) != 0)
        return td_unsupported_attr(ctx, rn, "interleaved", "1");
    if (td_node_attr_int(rn->node, "is_packed_batching", 0) != 0)
        return td_unsupported_attr(ctx, rn, "is_packed_batching", "1");
    if (td_node_attr_float(rn->node, "scale", 1.0f) != 1.0f)
        return td_unsupported_attr(ctx, rn, "scale", "other than 1");
    rope_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    st->heads = td_node_attr_int(rn->node, "num_heads", 0);
    st->rotary_dim = td_node_attr_int(rn->node, "rotary_embedding_dim", 0);
    if (st->heads < 0 || st->rotary_dim < 0 || (st->rotary_dim > 0 && st->heads == 0))
        return td_node_fail(ctx, rn, TD_ERR_FORMAT,
                            "num_heads and rotary_embedding_dim must be >= 0, and rotary_embedding_dim needs num_heads");
    out[0] = in[0];
    return TD_OK;
}

static td_status rope_get_dims(td_ctx *ctx, const td_rt_node *rn, td_rt_tensor *const *in, rope_dims *d) {
    const rope_state *st = rn->state;
    const td_rt_tensor *x = in[0], *pos = in[1], *c = in[2], *s = in[3];
    if (c->rank != 2 || s->rank != 2 || c->shape[0] != s->shape[0] || c->shape[1] != s->shape[1] || c->shape[1] <= 0)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "cos_cache and sin_cache must both be (max_sequence_length, rotary_dim / 2)");
    d->R = st->rotary_dim > 0 ? st->rotary_dim : 2 * c->shape[1];
    if (d->R != 2 * c->shape[1])
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "rotary_embedding_dim %lld needs caches of width %lld (got %lld)",
                            (long long)d->R, (long long)(d->R / 2), (long long)c->shape[1]);
    if (x->rank == 4) {
        d->bnsh = true;
        d->B = x->shape[0], d->N = x->shape[1], d->S = x->shape[2], d->D = x->shape[3];
    } else if (x->rank == 3) {
        d->bnsh = false;
        d->B = x->shape[0], d->S = x->shape[1];
        d->D = st->heads > 0 ? (x->shape[2] % st->heads ? -1 : x->shape[2] / st->heads) : d->R;
        if (d->D <= 0 || x->shape[2] % d->D)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "hidden size %lld is not num_heads x head_size",
                                (long long)x->shape[2]);
        d->N = x->shape[2] / d->D;
    } else {
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "input must be (B, S, hidden) or (B, N, S, head_size)");
    }
    if (d->R > d->D)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "rotary dim %lld exceeds the head size %lld", (long long)d->R,
                            (long long)d->D);
    int64_t np = td_rt_numel(pos);
    if (!(np == 1 && pos->rank <= 1) && !(pos->rank == 2 && pos->shape[0] == d->B && pos->shape[1] == d->S))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "position_ids must be (1) or (B, S) = (%lld, %lld)", (long long)d->B,
                            (long long)d->S);
    return TD_OK;
}

static td_status rope_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    rope_dims d = {0};
    TD_TRY(rope_get_dims(ctx, rn, in, &d));
    out[0]->rank = in[0]->rank;
    td_memcpy(out[0]->shape, in[0]->shape, sizeof out[0]->shape);
    rn->scratch_bytes = f32_scratch(in[0]) * 2 + f32_scratch(in[2]) + f32_scratch(in[3]);
    return TD_OK;
}

/* y = x with features [0, R) of each head rotated (transformers' rotate_half):
 *   y[i]       = x[i] cos[p, i] - x[i + R/2] sin[p, i]
 *   y[i + R/2] = x[i + R/2] cos[p, i] + x[i] sin[p, i]        (i < R/2)
 * x (B, S, N*D) or (B, N, S, D); cos/sin (M, R/2); p = position of (b, s). */
static td_status rope_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                           td_rt_env *env) {
    (void)env;
    rope_dims d = {0};
    TD_TRY(rope_get_dims(ctx, rn, in, &d));
    float *scr = rn->scratch;
    const float *x = as_f32(in[0], &scr), *cs = as_f32(in[2], &scr), *sn = as_f32(in[3], &scr);
    float *y = out_f32(out[0], &scr);
    const td_rt_tensor *pos = in[1];
    int64_t M = in[2]->shape[0], half = d.R / 2;
    bool one = td_rt_numel(pos) == 1;
    for (int64_t b = 0; b < d.B; b++)
        for (int64_t s = 0; s < d.S; s++) {
            int64_t p = one ? td_ldi(pos->data, pos->dtype, 0) + s : td_ldi(pos->data, pos->dtype, b * d.S + s);
            if (p < 0 || p >= M)
                return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT,
                                    "position %lld (batch %lld, token %lld) is outside the cos/sin cache of %lld "
                                    "positions: the sequence is longer than the model's max_position_embeddings",
                                    (long long)p, (long long)b, (long long)s, (long long)M);
            const float *c = cs + p * half, *sv = sn + p * half;
            for (int64_t h = 0; h < d.N; h++) {
                int64_t off = d.bnsh ? ((b * d.N + h) * d.S + s) * d.D : (b * d.S + s) * d.N * d.D + h * d.D;
                const float *xr = x + off;
                float *yr = y + off;
                for (int64_t i = 0; i < half; i++) {
                    float x1 = xr[i], x2 = xr[i + half];
                    yr[i] = x1 * c[i] - x2 * sv[i];
                    yr[i + half] = x2 * c[i] + x1 * sv[i];
                }
                for (int64_t i = d.R; i < d.D; i++)
                    yr[i] = xr[i];
            }
        }
    store_out(out[0], y);
    return TD_OK;
}

/* ---------------- GroupQueryAttention ---------------- */

typedef struct gqa_state {
    int64_t heads, kv_heads, window; /* window: local_window_size, <= 0 none */
    bool causal;
    float scale; /* 0 = 1/sqrt(head_size) */
} gqa_state;

/* Cache geometry (ORT's): past (B, KV, P, D); total_sequence_length `total`
 * keys at most; present (B, KV, Tp, D) with Tp = max(total, P), so a past that
 * is a whole preallocated cache (P = capacity >= total) gives a present of the
 * same shape, which the caller may bind to the same buffer (ORT's
 * past_present_share_buffer). Row b holds L_b = seqlens_k[b] + 1 keys after
 * this step: its past_b = max(0, L_b - S) cached rows are kept and its S new
 * rows written at [past_b, past_b + S). */
typedef struct gqa_dims {
    int64_t B, S, N, KV, D, P, total, Tp;
} gqa_dims;

static td_status gqa_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 7, 11, 1, 3));
    TD_TRY(td_check_dtype(ctx, rn, 0, in[0], td_is_float_dt, "float, float16, bfloat16"));
    if (rn->in[1] < 0 || rn->in[2] < 0)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "packed QKV is not supported (give query, key and value)");
    for (int i = 1; i <= 4; i++)
        TD_TRY(float_input(ctx, rn, in, i, in[0]));
    TD_TRY(float_input(ctx, rn, in, 10, in[0]));
    if ((rn->in[3] < 0) != (rn->n_in <= 4 || rn->in[4] < 0))
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "past_key and past_value must be given together");
    if (rn->in[5] < 0 || rn->in[6] < 0)
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "seqlens_k and total_sequence_length are required inputs");
    if (in[5] != TD_I32 || in[6] != TD_I32)
        return td_node_fail(ctx, rn, TD_ERR_DTYPE, "seqlens_k and total_sequence_length must be int32");
    for (int i = 7; i <= 9 && i < rn->n_in; i++)
        if (rn->in[i] >= 0)
            return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED,
                                "cos_cache / sin_cache / position_ids (do_rotary) are not supported: apply "
                                "RotaryEmbedding to query and key before the op");
    static const char *const refused_int[] = {"do_rotary", "smooth_softmax", "qk_output", "sliding_window_cache",
                                              "kv_cache_bit_width", "rotary_interleaved"};
    for (size_t i = 0; i < sizeof refused_int / sizeof *refused_int; i++)
        if (td_node_attr_int(rn->node, refused_int[i], 0) != 0)
            return td_unsupported_attr(ctx, rn, refused_int[i], "other than 0");
    if (td_node_attr_float(rn->node, "softcap", 0.0f) != 0.0f)
        return td_unsupported_attr(ctx, rn, "softcap", "other than 0");
    gqa_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    rn->state = st;
    st->heads = td_node_attr_int(rn->node, "num_heads", 0);
    st->kv_heads = td_node_attr_int(rn->node, "kv_num_heads", 0);
    st->window = td_node_attr_int(rn->node, "local_window_size", -1);
    int64_t causal = td_node_attr_int(rn->node, "causal", 1);
    st->scale = td_node_attr_float(rn->node, "scale", 0.0f);
    if (st->heads <= 0 || st->kv_heads <= 0 || st->heads % st->kv_heads)
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "num_heads (%lld) must be a positive multiple of kv_num_heads (%lld)",
                            (long long)st->heads, (long long)st->kv_heads);
    if (causal != 0 && causal != 1)
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "causal must be 0 or 1 (got %lld)", (long long)causal);
    st->causal = causal == 1;
    if (!st->causal && st->window > 0)
        return td_node_fail(ctx, rn, TD_ERR_FORMAT, "local_window_size must be -1 when causal is 0");
    for (int k = 0; k < rn->n_out; k++)
        out[k] = in[0];
    return TD_OK;
}

static td_status gqa_get_dims(td_ctx *ctx, const td_rt_node *rn, td_rt_tensor *const *in, gqa_dims *d) {
    const gqa_state *st = rn->state;
    const td_rt_tensor *q = in[0], *k = in[1], *v = in[2], *pk = in[3], *pv = opt_in(in, rn, 4);
    d->N = st->heads;
    d->KV = st->kv_heads;
    if (q->rank != 3 || q->shape[2] % d->N)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "query must be (B, S, num_heads * head_size)");
    d->B = q->shape[0];
    d->S = q->shape[1];
    d->D = q->shape[2] / d->N;
    int64_t kvh = d->KV * d->D;
    if (k->rank != 3 || v->rank != 3 || k->shape[0] != d->B || v->shape[0] != d->B || k->shape[1] != d->S ||
        v->shape[1] != d->S || k->shape[2] != kvh || v->shape[2] != kvh)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "key and value must be (B, S, kv_num_heads * head_size) = "
                            "(%lld, %lld, %lld)", (long long)d->B, (long long)d->S, (long long)kvh);
    d->P = 0;
    if (pk) {
        if (pk->rank != 4 || pv->rank != 4 || pk->shape[0] != d->B || pk->shape[1] != d->KV || pk->shape[3] != d->D ||
            pv->shape[0] != d->B || pv->shape[1] != d->KV || pv->shape[2] != pk->shape[2] || pv->shape[3] != d->D)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "past_key/past_value must be (B, kv_num_heads, P, head_size) = "
                                "(%lld, %lld, P, %lld)", (long long)d->B, (long long)d->KV, (long long)d->D);
        d->P = pk->shape[2];
    }
    if (td_rt_numel(in[5]) != d->B || in[5]->rank != 1)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "seqlens_k must be (B) = (%lld)", (long long)d->B);
    if (td_rt_numel(in[6]) != 1 || !in[6]->data)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "total_sequence_length must be a scalar");
    d->total = ((const int32_t *)in[6]->data)[0];
    if (d->total < d->S || d->total > d->P + d->S)
        return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT,
                            "total_sequence_length %lld must lie in [sequence_length %lld, past %lld + sequence_length]",
                            (long long)d->total, (long long)d->S, (long long)d->P);
    d->Tp = d->total > d->P ? d->total : d->P;
    const td_rt_tensor *ab = opt_in(in, rn, 10);
    if (ab && (ab->rank != 4 || (ab->shape[0] != 1 && ab->shape[0] != d->B) ||
               (ab->shape[1] != 1 && ab->shape[1] != d->N) || ab->shape[2] != d->S || ab->shape[3] != d->total))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "attention_bias must be (B or 1, num_heads or 1, %lld, %lld)",
                            (long long)d->S, (long long)d->total);
    return TD_OK;
}

static td_status gqa_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    gqa_dims d = {0};
    TD_TRY(gqa_get_dims(ctx, rn, in, &d));
    if ((rn->def->flags & TD_OP_IN_PLACE_KV) && (d.P == 0 || d.Tp != d.P))
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "the shared past/present cache has %lld columns but "
                            "total_sequence_length is %lld: bind a cache with room for every key", (long long)d.P,
                            (long long)d.total);
    *out[0] = (td_rt_tensor){out[0]->dtype, 3, {d.B, d.S, d.N * d.D}, NULL};
    for (int k = 1; k < 3 && k < rn->n_out; k++)
        if (out[k])
            *out[k] = (td_rt_tensor){out[k]->dtype, 4, {d.B, d.KV, d.Tp, d.D}, NULL};
    size_t kv = (size_t)(2 * d.B * d.KV * d.Tp * d.D + 32); /* K/V staging when present is absent or not fp32 */
    size_t f = kv + (size_t)(d.B * d.KV * d.P * d.D + 16) /* past staged when it overlaps present oddly */ +
               (size_t)(d.B * d.S * d.total + 16) /* mask */ + (size_t)(d.B * d.S * d.N * d.D + 16) /* out */ + 64;
    rn->scratch_bytes = f * sizeof(float) + 2 * (size_t)d.B * sizeof(int64_t) + 64 +
                        td_kern_mha_scratch(d.S * (d.N / d.KV), d.total, d.D, d.D, rn->threads);
    for (int i = 0; i < rn->n_in && i <= 10; i++)
        if (i != 5 && i != 6)
            rn->scratch_bytes += f32_scratch(opt_in(in, rn, i));
    return TD_OK;
}

/* Rows [0, keep[b]) of each past block (B*KV blocks of P x D) to the head of
 * the present block (Tp x D); the rest of a present block that shares no
 * storage with past is zeroed past its new rows (deterministic outputs).
 * present may alias past's storage (a cache bound to both): rows already in
 * place are not copied, and when present starts at or after past the blocks
 * move last to first so that none overwrites a past row not yet moved. */
static void place_past(float *present, const float *past, const gqa_dims *d, const int64_t *keep, float *staging) {
    int64_t blocks = d->B * d->KV, P = d->P, Tp = d->Tp, D = d->D;
    size_t pb = (size_t)(P * D), tb = (size_t)(Tp * D);
    bool overlap = past && P > 0 && present < past + blocks * (int64_t)pb && past < present + blocks * (int64_t)tb;
    if (overlap && present < past) { /* never made by a cache layout; stage it */
        memcpy(staging, past, (size_t)blocks * pb * sizeof(float));
        past = staging;
        overlap = false;
    }
    for (int64_t i = 0; i < blocks; i++) {
        int64_t bh = overlap ? blocks - 1 - i : i, rows = keep[bh / d->KV];
        float *dst = present + bh * (int64_t)tb;
        const float *src = past ? past + bh * (int64_t)pb : NULL;
        if (rows > 0 && dst != src)
            memmove(dst, src, (size_t)(rows * D) * sizeof(float));
        if (!overlap) /* rows after the new ones: nothing cached there */
            for (int64_t r = rows + d->S; r < Tp; r++)
                memset(dst + r * D, 0, (size_t)D * sizeof(float));
    }
}

/* Per row: L_b = seqlens_k[b] + 1 keys, past_b = max(0, L_b - S) cached rows
 * kept (into keep), L_b into lens, checked against the shapes; *used = max_b L_b, the key
 * columns any row reads (the rest are masked for every row, so the attention
 * skips them: a decode step over a capacity-wide cache spans the columns in use
 * only). */
static td_status gqa_lengths(td_ctx *ctx, const td_rt_node *rn, const gqa_dims *d, const td_rt_tensor *seqlens,
                             int64_t *keep, int64_t *lens, int64_t *used) {
    *used = 0;
    for (int64_t b = 0; b < d->B; b++) {
        int64_t len = (int64_t)((const int32_t *)seqlens->data)[b] + 1, past = len > d->S ? len - d->S : 0;
        if (len < 1 || len > d->total || past > d->P)
            return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT,
                                "seqlens_k[%lld] + 1 = %lld: must lie in [1, total_sequence_length = %lld] with at most "
                                "past %lld + sequence_length %lld keys",
                                (long long)b, (long long)len, (long long)d->total, (long long)d->P, (long long)d->S);
        keep[b] = past;
        lens[b] = len;
        *used = len > *used ? len : *used;
    }
    return TD_OK;
}

/* The additive mask (B, S, T) over the first T key columns: query i of row b at
 * position past_b + i sees keys j < L_b, j <= past_b + i when causal, and
 * past_b + i - j < local_window_size when windowed; plus the attention bias row
 * when one is given per batch item (bias (B or 1, 1, S, total), folded in here so
 * that the kernel reads one T-wide row). */
static void gqa_mask(const gqa_state *st, const gqa_dims *d, const int64_t *keep, const int64_t *lens, int64_t T,
                     const float *bias, int64_t bias_bstride, float *m) {
    for (int64_t b = 0; b < d->B; b++) {
        int64_t len = lens[b];
        for (int64_t i = 0; i < d->S; i++) {
            float *row = m + (b * d->S + i) * T;
            const float *br = bias ? bias + b * bias_bstride + i * d->total : NULL;
            int64_t qpos = keep[b] + i, open = 0;
            for (int64_t j = 0; j < T; j++) {
                bool masked = j >= len || (st->causal && j > qpos) || (st->window > 0 && qpos - j >= st->window);
                row[j] = masked ? -INFINITY : 0.0f; /* excluded outright, as ONNX Runtime does */
                open += !masked;
            }
            if (open == 0) /* a padding row beyond its length and window: any finite result will do */
                for (int64_t j = 0; j < T; j++)
                    row[j] = MASKED_SCORE;
            if (br)
                for (int64_t j = 0; j < T; j++)
                    row[j] += br[j];
        }
    }
}

static td_status gqa_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                          td_rt_env *env) {
    const gqa_state *st = rn->state;
    gqa_dims d = {0};
    TD_TRY(gqa_get_dims(ctx, rn, in, &d));
    int64_t B = d.B, S = d.S, N = d.N, KV = d.KV, D = d.D, P = d.P, Tp = d.Tp, total = d.total;
    float *scr = rn->scratch;
    int64_t *keep = (int64_t *)scr, *lens = keep + B;
    scr += (2 * B * (int64_t)sizeof(int64_t) + 63) / 64 * 64 / (int64_t)sizeof(float);
    float *mask = scr;
    scr += B * S * total + 16;
    int64_t T = total; /* key columns the kernel spans */
    TD_TRY(gqa_lengths(ctx, rn, &d, in[5], keep, lens, &T));
    const td_rt_tensor *ab = opt_in(in, rn, 10);
    td_rt_tensor *pres[2] = {rn->n_out > 1 ? out[1] : NULL, rn->n_out > 2 ? out[2] : NULL};
    /* K/V caches (B, KV, Tp, D): written straight into fp32 present outputs (which
     * may share the past's storage), else staged here. Past is read before any
     * present is written, so a converted (non-fp32) past may alias too. */
    const float *past[2] = {NULL, NULL};
    if (P > 0)
        for (int c = 0; c < 2; c++)
            past[c] = as_f32(in[3 + c], &scr);
    const float *q = as_f32(in[0], &scr), *newkv[2] = {as_f32(in[1], &scr), as_f32(in[2], &scr)};
    const float *abf = ab ? as_f32(ab, &scr) : NULL;
    if (abf && ab->shape[1] != 1) { /* a bias per head stays the kernel's, total columns wide */
        T = total;
    } else if (abf) { /* one bias row per batch item: folded into the mask */
        gqa_mask(st, &d, keep, lens, T, abf, ab->shape[0] != 1 ? S * total : 0, mask);
        abf = NULL;
    }
    if (abf || !ab)
        gqa_mask(st, &d, keep, lens, T, NULL, 0, mask);
    float *cache[2];
    for (int c = 0; c < 2; c++) {
        if (pres[c] && pres[c]->dtype == TD_F32) {
            cache[c] = pres[c]->data;
        } else {
            cache[c] = scr;
            scr += B * KV * Tp * D + 16;
        }
    }
    float *staging = scr;
    scr += B * KV * P * D + 16;
    for (int c = 0; c < 2; c++) {
        place_past(cache[c], past[c], &d, keep, staging);
        for (int64_t b = 0; b < B; b++)
            for (int64_t s = 0; s < S; s++)
                for (int64_t g = 0; g < KV; g++)
                    td_memcpy(cache[c] + ((b * KV + g) * Tp + keep[b] + s) * D, newkv[c] + (b * S + s) * KV * D + g * D,
                              (size_t)D * sizeof(float));
    }
    float *O = out_f32(out[0], &scr);
    td_kern_mha a = {
        .B = B, .N = N, .S = S, .T = T, .D = D, .Dv = D, .kv_heads = KV, .kv_rows = Tp,
        .q = q, .q_bstride = S * N * D, .ldq = N * D, .k = cache[0], .v = cache[1], .kv_ld = 0,
        .out = O, .o_bstride = S * N * D, .ldo = N * D,
        .scale = st->scale != 0.0f ? st->scale : 1.0f / sqrtf((float)D),
        .mask = mask, .mask_bstride = S * T, .mask_one_row = false,
        .bias = abf,
        .bias_bstride = ab && ab->shape[0] != 1 ? ab->shape[1] * S * total : 0,
        .bias_hstride = ab && ab->shape[1] != 1 ? S * total : 0,
    };
    td_kern_mha_run(&a, scr, env);
    store_out(out[0], O);
    for (int c = 0; c < 2; c++)
        if (pres[c] && pres[c]->dtype != TD_F32)
            store_out(pres[c], cache[c]);
    return TD_OK;
}

const td_op_def td_ops_decoder[] = {
    {MS, "RotaryEmbedding", 1, 1, rope_init, rope_shape, rope_exec, 0, 0, NULL},
    {MS, "GroupQueryAttention", 1, 1, gqa_init, gqa_shape, gqa_exec, 1u << 6 /* total_sequence_length */, 0, NULL},
    /* com.microsoft's op with past/present as one buffer (ORT's past_present_share_buffer): present_key/value are
     * past_key/value's bytes, a cache with room for every key (P >= total_sequence_length), whose new rows are
     * written in place; the generator's in-place KV cache (src/generate/kv_inplace.c) */
    {"com.tdeploy", "GroupQueryAttention", 1, 1, gqa_init, gqa_shape, gqa_exec, 1u << 6, TD_OP_IN_PLACE_KV, NULL},
};
const int td_ops_decoder_count = (int)(sizeof td_ops_decoder / sizeof td_ops_decoder[0]);
