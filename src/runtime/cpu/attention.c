/* Per (batch, head): K^T and V are packed once into GEMM panels (only the keys
 * that can receive weight, for KEY_LENS), then query rows are processed QTILE at
 * a time: scores = scale * Q_tile K^T (GEMM), mask, row softmax, out_tile =
 * P V (GEMM written straight into the strided output). Threads take whole
 * (batch, head) pairs, each with its own scratch. */
#include "runtime/cpu/attention.h"

#include "core/checked.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/softmax.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QTILE 64

typedef struct {
    const td_attention_args *a;
    float *scratch;
    size_t per_thread; /* floats */
    size_t kpack, vpack; /* floats for packed K^T, packed V */
} attn_job;

static size_t floats_aligned(size_t bytes) { return (bytes + 63) / 64 * 64 / sizeof(float); }

static void one_head(const attn_job *j, size_t b, size_t h, float *scratch) {
    const td_attention_args *a = j->a;
    size_t D = a->head_dim, S = a->kv_seq;
    const float *q = a->q + b * a->q_seq * a->ld_q + h * D;
    const float *k = a->k + b * S * a->ld_k + h * D;
    const float *v = a->v + b * S * a->ld_v + h * D;
    float *out = a->out + b * a->q_seq * a->ld_out + h * D;
    float *kp = scratch, *vp = scratch + j->kpack, *scores = vp + j->vpack;

    /* keys that can get weight: with KEY_LENS only the first len */
    size_t n_keys = S;
    if (a->mask_kind == TD_ATTN_MASK_KEY_LENS) {
        int32_t len = a->key_lens[b];
        n_keys = len <= 0 ? 0 : (size_t)len < S ? (size_t)len : S;
    }
    const int32_t *pad = a->mask_kind == TD_ATTN_MASK_KEY_PADDING ? a->key_padding + b * S : NULL;
    if (pad) {
        size_t live = 0;
        for (size_t s = 0; s < S; s++)
            live += pad[s] != 0;
        if (live == 0)
            n_keys = 0;
    }
    if (n_keys == 0) {
        /* every key masked: uniform weights over all keys (see header) */
        for (size_t d = 0; d < D; d++) {
            double acc = 0;
            for (size_t s = 0; s < S; s++)
                acc += v[s * a->ld_v + d];
            float mean = S ? (float)(acc / (double)S) : 0.0f;
            for (size_t i = 0; i < a->q_seq; i++)
                out[i * a->ld_out + d] = mean;
        }
        return;
    }
    td_gemm_pack_b_into(kp, k, D, n_keys, a->ld_k, true); /* B = K^T: (D, n_keys) */
    td_gemm_pack_b_into(vp, v, n_keys, D, a->ld_v, false); /* B = V: (n_keys, D) */
    td_gemm_epilogue ep_qk = {.scale = a->scale};
    for (size_t i0 = 0; i0 < a->q_seq; i0 += QTILE) {
        size_t rows = a->q_seq - i0 < QTILE ? a->q_seq - i0 : QTILE;
        td_gemm_run_serial(rows, q + i0 * a->ld_q, a->ld_q, kp, D, n_keys, scores, n_keys, &ep_qk);
        for (size_t r = 0; r < rows; r++) {
            float *srow = scores + r * n_keys;
            if (a->mask_kind == TD_ATTN_MASK_ADDITIVE) {
                const float *m = a->additive + b * a->mask_batch_stride + (a->mask_rows == 1 ? 0 : (i0 + r) * S);
                for (size_t s = 0; s < n_keys; s++)
                    srow[s] += m[s];
            } else if (pad) {
                for (size_t s = 0; s < n_keys; s++)
                    if (!pad[s])
                        srow[s] = -INFINITY; /* exp gives exactly 0; at least one key is live */
            }
            td_cpu_softmax_row(srow, srow, n_keys);
        }
        td_gemm_run_serial(rows, scores, n_keys, vp, n_keys, D, out + i0 * a->ld_out, a->ld_out, NULL);
    }
}

static void worker(void *arg, size_t begin, size_t end, int thread) {
    const attn_job *j = arg;
    float *scratch = j->scratch + (size_t)thread * j->per_thread;
    for (size_t t = begin; t < end; t++)
        one_head(j, t / j->a->heads, t % j->a->heads, scratch);
}

td_status td_cpu_attention(td_ctx *ctx, td_threadpool *pool, const td_attention_args *a) {
    if (a->batch == 0 || a->heads == 0 || a->q_seq == 0 || a->head_dim == 0)
        return TD_OK;
    if (a->mask_kind == TD_ATTN_MASK_ADDITIVE && a->mask_rows != 1 && a->mask_rows != a->q_seq)
        return td_fail(ctx, TD_ERR_SHAPE, "attention: additive mask has %zu rows; expected 1 or q_seq=%zu",
                       a->mask_rows, a->q_seq);
    size_t kb = td_gemm_pack_bytes(a->head_dim, a->kv_seq), vb = td_gemm_pack_bytes(a->kv_seq, a->head_dim);
    size_t sb, per, total;
    size_t threads = (size_t)td_threadpool_threads(pool);
    if (kb == SIZE_MAX || vb == SIZE_MAX || !td_mul_size(QTILE * sizeof(float), a->kv_seq, &sb) ||
        !td_add_size(floats_aligned(kb), floats_aligned(vb), &per) || !td_add_size(per, floats_aligned(sb), &per) ||
        !td_mul_size(per, threads * sizeof(float), &total))
        return td_fail(ctx, TD_ERR_OVERFLOW, "attention: scratch for kv_seq=%zu head_dim=%zu overflows", a->kv_seq,
                       a->head_dim);
    attn_job j = {.a = a, .per_thread = per, .kpack = floats_aligned(kb), .vpack = floats_aligned(vb)};
    j.scratch = aligned_alloc(64, total ? total : 64);
    if (!j.scratch)
        return td_fail_oom(ctx, total, "attention scratch");
    td_parallel_for(pool, a->batch * a->heads, worker, &j);
    free(j.scratch);
    return TD_OK;
}
