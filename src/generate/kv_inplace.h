/* The in-place KV cache of the generator.
 *
 * tdeploy's exported decoder appends each layer's new keys/values with Concat(past_key_values.N, new, axis 2):
 * run as is, every decode step copies the whole cache into present.N (and the caller copies it back), and every
 * step is a new plan (one more past column). td_gen_kv_inplace rewrites the generator's copy of the graph so that
 *   - past_key_values.N is the request's cache buffer itself, (batch, kv_heads, capacity, head_dim) with
 *     capacity = prompt + max_new_tokens, zeroed once, bound with that shape at every decode step (the prefill
 *     binds the prompt's columns packed, and the generator widens the rows to the capacity once after it);
 *   - com.tdeploy::KvCacheAppend(past, new, tdeploy.cache_position) writes the new columns into it in place
 *     (runtime/cpu/op_kvcache.c) and present.N is that same buffer (no copy either way);
 *   - the attention bias is a graph input, tdeploy.attention_bias (batch, 1, seq, capacity), made by the generator
 *     (td_gen_kv_bias: padding, causal and sliding-window masks over cache columns), in place of the graph's mask
 *     subgraph, whose notion of the query's column comes from the mask width and would be wrong for a cache
 *     wider than the columns in use.
 * Decode steps then have fixed shapes (ids (batch, 1), cache (batch, kv_heads, capacity, head_dim)): one plan for
 * the prefill and one for every decode step of the request, no allocation and no cache copy per step.
 *
 * Graphs whose attention was fused (the generator's optimizer does it; convert's model-optimized.onnx comes so):
 * each com.microsoft GroupQueryAttention / MultiHeadAttention over past_key_values.N -> present.N becomes
 * com.tdeploy::GroupQueryAttention (runtime/cpu/op_decoder_attn.c: ORT's op whose present outputs are the past
 * inputs' bytes, TD_OP_IN_PLACE_KV) with seqlens_k = tdeploy.seqlens_k (position + seq - 1 per row),
 * total_sequence_length = tdeploy.total_sequence_length (the bound capacity, fixed per request) and the bias
 * tdeploy.attention_bias. The cache is then bound capacity-wide from the prefill on (no widening), and the op
 * spans only the key columns in use.
 *
 * Graphs with neither pattern (Optimum's exports) are left unchanged and the generator falls back to copying the
 * present outputs into its cache each step; plan->how says which case applied (generate --json). */
#ifndef TD_GENERATE_KV_INPLACE_H
#define TD_GENERATE_KV_INPLACE_H

#include "onnx/ir.h"

#include <float.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_GEN_BIAS_INPUT "tdeploy.attention_bias"
#define TD_GEN_POSITION_INPUT "tdeploy.cache_position"
#define TD_GEN_SEQLENS_INPUT "tdeploy.seqlens_k"
#define TD_GEN_TOTAL_INPUT "tdeploy.total_sequence_length"

typedef struct td_gen_kv_plan {
    bool in_place;  /* the graph was rewritten */
    bool fused;     /* ... its fused attention ops (com.tdeploy::GroupQueryAttention), else its Concat appends */
    int64_t window; /* sliding window of the model (metadata "sliding_window"), 0 = none */
    const char *how; /* static: what was rewritten, or why nothing was (generate --json's runtime.kv_cache) */
} td_gen_kv_plan;

/* Rewrite m in place when it has the exporter's pattern; plan->in_place says whether it did. */
td_status td_gen_kv_inplace(td_ctx *ctx, td_model *m, td_gen_kv_plan *plan);

/* Logits of the last position only: a Slice (batch, seq, hidden) -> (batch, 1, hidden) before the lm_head MatMul,
 * when the graph ends in one (the prefill then makes (batch, 1, vocab) logits, 1/seq of the head's work). */
td_status td_gen_last_logits(td_ctx *ctx, td_model *m, bool *applied);

/* Additive bias (batch, 1, seq, cols) for queries at cache columns first .. first + seq - 1: 0 where key column j
 * is open (mask[b][j] != 0, j <= query column, and within the window), else -FLT_MAX, as the exporter's graph
 * computes it. mask is (batch, cols). */
void td_gen_kv_bias(float *bias, const int64_t *mask, size_t batch, size_t seq, size_t cols, size_t first,
                    int64_t window);

#endif
