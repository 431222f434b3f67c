/* Decoder graphs with a KV cache, in the layout Optimum and ONNX Runtime GenAI use,
 * one graph for prefill and decode:
 *
 *   inputs  input_ids            (batch_size, sequence_length) int64
 *           attention_mask       (batch_size, past_sequence_length + sequence_length) int64
 *           position_ids         (batch_size, sequence_length) int64
 *           past_key_values.N.key / .value  (batch_size, kv_heads, past_sequence_length, head_dim) float32
 *   outputs logits               (batch_size, sequence_length, vocab) float32
 *           present.N.key / .value (batch_size, kv_heads, past_sequence_length + sequence_length, head_dim)
 *
 * The prefill passes past tensors with past_sequence_length 0. Attention of
 * query i (cache column P + i) to key column j is allowed when attention_mask[j]
 * is 1 and j <= P + i (and P + i - j < sliding_window when the model has one),
 * which is transformers' mask for left- or right-padded batches. Standard ONNX ops
 * only; the optimizer fuses them later. */
#ifndef TD_EXPORT_DECODER_H
#define TD_EXPORT_DECODER_H

#include "export/builder.h"
#include "export/decoder_spec.h"
#include "export/weights.h"

/* Inputs, layers, final norm, lm head and outputs into b's graph. sum gets the IO names. */
td_status td_decoder_build(td_eb *b, td_xw *w, const td_decoder_spec *s, bool int32_inputs, td_export_summary *sum);

/* Metadata the generation runtime reads back from the file (task, model_type, eos ids, ...). */
td_status td_decoder_set_metadata(td_ctx *ctx, td_model *m, const td_decoder_spec *s);

#endif
