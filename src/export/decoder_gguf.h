/* The GGUF weight source of the decoder exporter (decoder_gguf.c serves HF tensor names dequantized to float32,
 * decoder_gguf_q.c keeps block-quantized matrices quantized). */
#ifndef TD_EXPORT_DECODER_GGUF_H
#define TD_EXPORT_DECODER_GGUF_H

#include "export/weights.h"
#include "gguf/gguf.h"

struct td_xw_gguf {
    const td_gguf *f;
    int64_t heads, kv_heads;
    bool unpermute; /* llama.cpp's rope row permutation of attn_q / attn_k is undone at load */
};

/* HF tensor name -> GGUF name; false when the name has no GGUF counterpart. */
bool td_xw_gguf_name(const char *hf, char *out, size_t n);

/* y (..., out) = x (..., in) @ W^T with W (out, in) = GGUF tensor for HF name `hf_weight` kept in its blocks, as a
 * com.microsoft MatMulNBits node (accuracy_level 4: int8 activations, as llama.cpp). Returns NULL without an
 * error when the tensor is not of a type with a lossless re-packing (F32, F16, Q5_*, ...): the caller then takes
 * the float32 path. Errors (missing tensor, wrong shape) are sticky on the builder. */
td_value *td_xw_gguf_qlinear(td_xw *w, td_value *x, int64_t in, int64_t out, const char *hf_weight, const char *hint);

/* Rows of the embedding table (vocab, hidden) = GGUF tensor for HF name `hf_weight`, gathered at ids (batch, seq)
 * straight from the blocks by com.microsoft GatherBlockQuantized -> (batch, seq, hidden). The table shares its
 * codes with a tied lm_head's MatMulNBits. NULL without an error when the type cannot be expressed (float zero
 * points: Q4_1, Q4_K; or not block-quantized): the caller gathers from float32. */
td_value *td_xw_gguf_qembed(td_xw *w, td_value *ids, int64_t vocab, int64_t hidden, const char *hf_weight);

#endif
