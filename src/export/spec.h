/* What the exporter builds, derived from an opened model directory (hf/model_dir.h:
 * typed config.json with transformers' defaults, checkpoint, tokenizer_config.json,
 * sentence-transformers modules): the encoder family and its hyper-parameters, the
 * head the architecture carries, whether token_type_ids is an input, and the
 * embedding pipeline. Everything the exporter cannot express is refused here by
 * name, before any graph is built. */
#ifndef TD_EXPORT_SPEC_H
#define TD_EXPORT_SPEC_H

#include "export/export.h"
#include "hf/model_dir.h" /* TD_POOL_* pooling bits */

typedef enum td_enc_family {
    TD_FAM_BERT,       /* bert */
    TD_FAM_ROBERTA,    /* roberta, xlm-roberta: positions from the padding index */
    TD_FAM_DISTILBERT, /* distilbert: no token types, its own module names */
    TD_FAM_ELECTRA,    /* electra: embedding_size + embeddings_project */
} td_enc_family;

/* The head an architecture carries (transformers' class -> modules). */
typedef enum td_head_kind {
    TD_HEAD_NONE,             /* *Model: the bare encoder */
    TD_HEAD_SEQCLS,           /* *ForSequenceClassification */
    TD_HEAD_TOKCLS,           /* *ForTokenClassification */
    TD_HEAD_QA,               /* *ForQuestionAnswering */
    TD_HEAD_ELECTRA_DISCRIM,  /* ElectraForPreTraining: per-token replaced-token logits */
    TD_HEAD_OTHER,            /* MaskedLM, MultipleChoice, ...: only the encoder is exported */
} td_head_kind;

typedef struct td_encoder_spec {
    td_enc_family family;
    char model_type[32];
    char architecture[96];   /* config.architectures[0] or "" */
    td_head_kind head;
    char prefix[32];         /* tensor name prefix of the encoder: "bert.", "roberta.", ... or "" */

    int64_t vocab, hidden, layers, heads, intermediate, max_positions, type_vocab, embedding_size;
    int64_t pad_token_id;
    int64_t num_labels;
    float layer_norm_eps;
    char hidden_act[32];
    char *id2label_json;     /* JSON object {"0": "NEG", ...} or NULL (malloc'd) */

    bool has_token_types;    /* the model has a token_type_embeddings table */
    bool token_type_input;   /* token_type_ids is a graph input */
    bool tokenizer_names_known; /* tokenizer_config.json listed model_input_names */

    /* sentence-transformers */
    bool is_sentence_transformer;
    unsigned pooling;        /* TD_POOL_* bits (hf/st_modules.h), 0 when not a sentence-transformer */
    bool normalize;

    td_model_dir *md;        /* the opened directory: config, checkpoint (owned) */
} td_encoder_spec;

/* Open model (a directory or an "org/name" in the Hugging Face cache) and derive
 * the spec. Errors name the file and the key or tensor. */
td_status td_encoder_spec_load(td_ctx *ctx, const char *model, td_encoder_spec *spec);
/* The same from a directory already opened (takes md on success and failure). */
td_status td_encoder_spec_from_dir(td_ctx *ctx, td_model_dir *md, td_encoder_spec *spec);
void td_encoder_spec_free(td_encoder_spec *spec);

/* Resolve the task (TD_TASK_AUTO -> the architecture's task) and check it is
 * possible; an impossible one gets an error listing the possible tasks. */
td_status td_encoder_spec_task(td_ctx *ctx, const td_encoder_spec *spec, td_export_task requested,
                               td_export_task *out);

#endif
