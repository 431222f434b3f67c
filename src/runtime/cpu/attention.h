/* Fused multi-head attention for encoders:
 *   out[b, i, h*D:(h+1)*D] = softmax(scale * Q_bh K_bh^T + mask) V_bh
 * Q (batch, q_seq, heads*D), K and V (batch, kv_seq, heads*D): each row of
 * heads*D values starts ld_q / ld_k / ld_v floats after the previous one (so a
 * packed QKV projection output can be passed as three offset pointers with
 * ld = 3*heads*D); rows of one batch item are consecutive, batch items are
 * q_seq*ld_q (kv_seq*ld_k ...) apart. out (batch, q_seq, heads*D) with row
 * stride ld_out.
 *
 * Masks:
 *   KEY_LENS      int32 (batch): keys >= len[b] are masked
 *   KEY_PADDING   int32 (batch, kv_seq): 0 = masked, anything else = attend
 *   ADDITIVE      float (batch or 1, 1 or q_seq, kv_seq) added to the scores;
 *                 mask_batch_stride 0 broadcasts over batch, mask_rows is 1
 *                 (broadcast over queries) or q_seq
 * Masked keys (LENS / PADDING) get zero weight; a query whose keys are all masked
 * gets the uniform average of all V rows, which is what adding a large negative
 * number (HF's finfo.min, ORT's mask_filter_value) produces.
 * Works per (batch, head) in tiles of query rows so the scores stay in cache.
 * Fails only on allocation of per-thread scratch. */
#ifndef TD_RUNTIME_CPU_ATTENTION_H
#define TD_RUNTIME_CPU_ATTENTION_H

#include "core/ctx.h"
#include "core/threadpool.h"

#include <stddef.h>
#include <stdint.h>

typedef enum td_attn_mask_kind {
    TD_ATTN_MASK_NONE = 0,
    TD_ATTN_MASK_KEY_LENS,
    TD_ATTN_MASK_KEY_PADDING,
    TD_ATTN_MASK_ADDITIVE,
} td_attn_mask_kind;

typedef struct td_attention_args {
    size_t batch, heads, q_seq, kv_seq, head_dim;
    const float *q, *k, *v;
    size_t ld_q, ld_k, ld_v;
    float *out;
    size_t ld_out;
    float scale; /* usually 1/sqrt(head_dim) */
    td_attn_mask_kind mask_kind;
    const int32_t *key_lens;    /* KEY_LENS */
    const int32_t *key_padding; /* KEY_PADDING */
    const float *additive;      /* ADDITIVE */
    size_t mask_batch_stride;   /* ADDITIVE: floats between batch items (0 = shared) */
    size_t mask_rows;           /* ADDITIVE: 1 or q_seq */
} td_attention_args;

td_status td_cpu_attention(td_ctx *ctx, td_threadpool *pool, const td_attention_args *a);

#endif
