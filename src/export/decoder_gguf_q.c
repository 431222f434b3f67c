/* GGUF block-quantized matrices kept quantized in the decoder graph (decoder_gguf.h).
 *
 * Each matrix W (N = out rows, K = in) of a type with a lossless re-packing (quant/qblock.h: Q4_0, Q4_1, Q8_0,
 * Q4_K, Q6_K) is moved once into MatMulNBits' block layout, three initializers named after the HF tensor:
 *   NAME.qweight  uint8 (N, kb, blob)        codes (kb = K / block_size, blob = block_size * bits / 8)
 *   NAME.qscales  float (N, kb)              per-block scale
 *   NAME.qzeros   float (N, kb)              per-block zero point (Q4_1, Q4_K: x = d q + m); absent for the
 *                                            default 2^(bits-1) (Q4_0, Q8_0, Q6_K)
 * A tied embedding table is the same NAME.qweight, gathered by GatherBlockQuantized with NAME.qscales3
 * (N, kb, 1): that op wants scales of the data's rank (ONNX Runtime checks it). llama.cpp's rope permutation of
 * attn_q / attn_k rows is undone on the packed rows (rows are whole: the permutation moves rows, not blocks). */
#include "export/decoder_gguf.h"
#include "quant/qblock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS "com.microsoft"

typedef struct qparams {
    td_value *b, *scales, *zeros; /* zeros NULL: default zero point */
    int bits, block_size;
    int64_t kb;
} qparams;

static bool repackable(uint32_t type) {
    return type == TD_GGML_Q4_0 || type == TD_GGML_Q4_1 || type == TD_GGML_Q8_0 || type == TD_GGML_Q4_K ||
           type == TD_GGML_Q6_K;
}

/* Rows stored in llama.cpp's rope order -> HF order, in place (tmp holds the whole array):
 * within each head of d rows, HF row a * d/2 + b is stored as row 2b + a. */
static void unpermute_rows(uint8_t *data, uint8_t *tmp, size_t row_bytes, int64_t heads, int64_t d) {
    memcpy(tmp, data, (size_t)(heads * d) * row_bytes);
    int64_t half = d / 2;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t a = 0; a < 2; a++)
            for (int64_t b = 0; b < half; b++)
                memcpy(data + (size_t)(h * d + a * half + b) * row_bytes, tmp + (size_t)(h * d + 2 * b + a) * row_bytes,
                       row_bytes);
}

static td_status unpermute_q(td_ctx *ctx, td_qblock *q, int64_t heads, const char *gg) {
    if (q->N % heads != 0 || (q->N / heads) % 2 != 0)
        return td_fail(ctx, TD_ERR_SHAPE, "'%s' has %lld rows, not %lld heads of an even size", gg, (long long)q->N,
                       (long long)heads);
    int64_t kb = q->K / q->block_size, d = q->N / heads;
    size_t rb = (size_t)(kb * q->block_size * q->bits / 8), rs = (size_t)kb * sizeof(float);
    uint8_t *tmp = malloc((size_t)q->N * (rb > rs ? rb : rs));
    if (!tmp)
        return td_fail_oom(ctx, (size_t)q->N * rb, gg);
    unpermute_rows(q->b, tmp, rb, heads, d);
    unpermute_rows((uint8_t *)q->scales, tmp, rs, heads, d);
    if (q->zp_f32)
        unpermute_rows((uint8_t *)q->zp_f32, tmp, rs, heads, d);
    free(tmp);
    return TD_OK; /* zp_u8 is never set by the GGUF re-packing */
}

/* An owned initializer (takes buf, also on failure). */
static td_value *owned_init(td_xw *w, const char *name, td_dtype dt, int rank, const int64_t *dims, void *buf,
                            size_t nbytes) {
    td_tensor *t = NULL;
    td_status s = td_tensor_new_owned(w->b->ctx, name, dt, rank, dims, buf, nbytes, &t);
    if (s != TD_OK) {
        td_eb_fail(w->b, s);
        return NULL;
    }
    w->bytes += nbytes;
    return td_eb_initializer(w->b, t);
}

/* Scales of a packed weight in the form an op wants: (N, kb) for MatMulNBits, (N, kb, 1) for GatherBlockQuantized
 * (ONNX Runtime checks both shapes), made from the other form when a tied table needs both. */
static td_value *scales_of(td_xw *w, const char *hf, int64_t N, int64_t kb, bool gather) {
    char want[600], other[600];
    snprintf(want, sizeof want, "%s.%s", hf, gather ? "qscales3" : "qscales");
    snprintf(other, sizeof other, "%s.%s", hf, gather ? "qscales" : "qscales3");
    td_value *v = td_graph_find(w->b->g, want);
    if (v && v->initializer)
        return v;
    td_value *o = td_graph_find(w->b->g, other);
    size_t bytes = (size_t)(N * kb) * sizeof(float);
    float *copy = o && o->initializer && o->initializer->nbytes == bytes ? malloc(bytes) : NULL;
    if (!copy) {
        td_eb_fail(w->b, td_fail(w->b->ctx, TD_ERR_INTERNAL, "scales of '%s' missing", hf));
        return NULL;
    }
    memcpy(copy, o->initializer->data, bytes);
    const int64_t d[3] = {N, kb, 1};
    return owned_init(w, want, TD_F32, gather ? 3 : 2, d, copy, bytes);
}

/* The packed initializers of hf (created on first use), scales in the form `gather` says (scales_of). false: not
 * re-packable (no error) or failed (sticky). */
static bool qparams_of(td_xw *w, const char *hf, int64_t N, int64_t K, bool gather, qparams *p) {
    td_eb *b = w->b;
    memset(p, 0, sizeof *p);
    if (td_eb_status(b) != TD_OK)
        return false;
    char nm[600];
    snprintf(nm, sizeof nm, "%s.qweight", hf);
    td_value *have = td_graph_find(b->g, nm);
    if (have && have->initializer) { /* tied weight: already packed */
        const td_tensor *t = have->initializer;
        p->b = have;
        p->kb = t->dims[1];
        p->block_size = (int)(K / p->kb);
        p->bits = (int)(t->dims[2] * 8 / p->block_size);
        snprintf(nm, sizeof nm, "%s.qzeros", hf);
        p->zeros = td_graph_find(b->g, nm);
        p->scales = scales_of(w, hf, N, p->kb, gather);
        return p->scales != NULL;
    }
    const td_gguf *f = w->gguf->f;
    char gg[160];
    const td_gguf_tensor *t = td_xw_gguf_name(hf, gg, sizeof gg) ? td_gguf_tensor_find(f, gg) : NULL;
    if (!t) {
        td_eb_fail(b, td_fail(b->ctx, TD_ERR_NOT_FOUND, "%s: tensor '%s' (for %s) is missing from the GGUF file",
                              f->path, td_xw_gguf_name(hf, gg, sizeof gg) ? gg : "?", hf));
        return false;
    }
    if (!repackable(t->type))
        return false;
    if (t->n_dims != 2 || t->dims[0] != K || t->dims[1] != N) {
        td_eb_fail(b, td_fail(b->ctx, TD_ERR_SHAPE, "%s: tensor '%s' has shape (%lld, %lld) but the metadata "
                              "implies (%lld, %lld)", f->path, gg, (long long)t->dims[t->n_dims > 1 ? 1 : 0],
                              (long long)t->dims[0], (long long)N, (long long)K));
        return false;
    }
    td_qblock q = {0};
    td_status s = td_qblock_from_gguf(b->ctx, (int)t->type, t->data, (size_t)t->nbytes, N, K, &q);
    bool is_q = strstr(hf, "q_proj") != NULL, is_k = strstr(hf, "k_proj") != NULL;
    if (s == TD_OK && w->gguf->unpermute && (is_q || is_k))
        s = unpermute_q(b->ctx, &q, is_q ? w->gguf->heads : w->gguf->kv_heads, gg);
    if (s != TD_OK) {
        td_qblock_free(&q);
        td_eb_fail(b, td_wrap(b->ctx, "%s: re-packing '%s'", f->path, gg));
        return false;
    }
    int64_t kb = K / q.block_size, blob = (int64_t)q.block_size * q.bits / 8;
    const int64_t bd[3] = {N, kb, blob}, sd[3] = {N, kb, 1};
    p->bits = q.bits;
    p->block_size = q.block_size;
    p->kb = kb;
    snprintf(nm, sizeof nm, "%s.qweight", hf);
    p->b = owned_init(w, nm, TD_U8, 3, bd, q.b, (size_t)(N * kb * blob));
    snprintf(nm, sizeof nm, "%s.%s", hf, gather ? "qscales3" : "qscales");
    p->scales = owned_init(w, nm, TD_F32, gather ? 3 : 2, sd, q.scales, (size_t)(N * kb) * sizeof(float));
    snprintf(nm, sizeof nm, "%s.qzeros", hf);
    if (q.zp_f32)
        p->zeros = owned_init(w, nm, TD_F32, 2, sd, q.zp_f32, (size_t)(N * kb) * sizeof(float));
    free(q.zp_u8); /* never set by the GGUF re-packing */
    return p->b && p->scales && (!q.zp_f32 || p->zeros);
}

td_value *td_xw_gguf_qlinear(td_xw *w, td_value *x, int64_t in, int64_t out, const char *hf_weight, const char *hint) {
    qparams p;
    if (!qparams_of(w, hf_weight, out, in, false, &p))
        return NULL;
    td_value *ins[4] = {x, p.b, p.scales, p.zeros};
    td_node *n = NULL;
    char h[128];
    snprintf(h, sizeof h, "%s_matmulnbits", hint);
    td_value *y = td_eb_op_domain(w->b, MS, "MatMulNBits", h, ins, p.zeros ? 4 : 3, &n); // (..., out)
    td_eb_attr_int(w->b, n, "K", in);
    td_eb_attr_int(w->b, n, "N", out);
    td_eb_attr_int(w->b, n, "bits", p.bits);
    td_eb_attr_int(w->b, n, "block_size", p.block_size);
    /* 4: int8 activations per block (llama.cpp's Q8 dot products); 0: fp32 activations, each weight dequantized
     * in the kernel, so the results are the dequantized model's (on SmolLM2-135M Q4_1 the int8 form changes the
     * answer to "What is the capital of France?") */
    td_eb_attr_int(w->b, n, "accuracy_level", w->gguf_int8_act ? 4 : 0);
    return y;
}

td_value *td_xw_gguf_qembed(td_xw *w, td_value *ids, int64_t vocab, int64_t hidden, const char *hf_weight) {
    td_eb *b = w->b;
    char gg[160];
    const td_gguf_tensor *t =
        td_xw_gguf_name(hf_weight, gg, sizeof gg) ? td_gguf_tensor_find(w->gguf->f, gg) : NULL;
    /* float zero points (x = d q + m) have no GatherBlockQuantized form: those tables are gathered in float32 */
    if (!t || t->type == TD_GGML_Q4_1 || t->type == TD_GGML_Q4_K)
        return NULL;
    qparams p;
    if (!qparams_of(w, hf_weight, vocab, hidden, true, &p) || p.zeros)
        return NULL;
    td_value *ins[3] = {p.b, ids, p.scales};
    td_node *n = NULL;
    td_value *rows = td_eb_op_domain(b, MS, "GatherBlockQuantized", "tokens_blocks", ins, 3, &n); // (b, s, kb, bs)
    td_eb_attr_int(b, n, "gather_axis", 0);
    td_eb_attr_int(b, n, "quantize_axis", 2);
    td_eb_attr_int(b, n, "block_size", p.block_size);
    td_eb_attr_int(b, n, "bits", p.bits);
    const int64_t shape[3] = {0, 0, hidden};
    return td_eb_reshape(b, rows, "tokens", 3, shape); // (batch, seq, hidden)
}
