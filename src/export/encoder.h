/* The encoder graph of the supported families: embeddings, transformer layers,
 * and the task heads/pooling on top. All functions use the builder's sticky
 * error (see builder.h). Shapes: (batch, seq) ids, (batch, seq, hidden) states. */
#ifndef TD_EXPORT_ENCODER_H
#define TD_EXPORT_ENCODER_H

#include "export/spec.h"
#include "export/weights.h"

typedef struct td_enc_inputs {
    td_value *ids;         /* (batch, seq) int64 */
    td_value *token_types; /* (batch, seq) int64, or NULL (then type 0 everywhere, as transformers does) */
    td_value *mask;        /* (batch, seq) the graph's attention_mask (any integer dtype) */
    td_value *mask_bias;   /* (batch, 1, 1, seq) float32 additive mask */
} td_enc_inputs;

/* Embeddings (+ ELECTRA's projection): (batch, seq, hidden) in compute dtype. */
td_value *td_enc_embeddings(td_eb *b, td_xw *w, const td_encoder_spec *s, const td_enc_inputs *in);
/* All transformer layers: (batch, seq, hidden) -> (batch, seq, hidden). */
td_value *td_enc_layers(td_eb *b, td_xw *w, const td_encoder_spec *s, td_value *h, td_value *mask_bias);

/* Heads: add the graph outputs of task on top of the last hidden state h.
 * names receive the output names (up to TD_EXPORT_MAX_IO). */
td_status td_enc_heads(td_eb *b, td_xw *w, const td_encoder_spec *s, td_export_task task, td_value *h,
                       const td_enc_inputs *in, td_export_summary *summary);

#endif
