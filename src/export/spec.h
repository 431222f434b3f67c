/* What the exporter builds, read from a model directory: the encoder family and
 * its hyper-parameters (config.json with transformers' defaults for absent keys),
 * the head the architecture carries, the tokenizer's input names and the
 * sentence-transformers pipeline (modules.json, 1_Pooling/config.json). */
#ifndef TD_EXPORT_SPEC_H
#define TD_EXPORT_SPEC_H

#include "export/export.h"

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

/* sentence-transformers pooling modes (flags, concatenated in this order like ST does). */
enum {
    TD_POOL_CLS = 1,
    TD_POOL_MAX = 2,
    TD_POOL_MEAN = 4,
    TD_POOL_MEAN_SQRT_LEN = 8,
};

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
    char *transformer_dir;   /* directory holding config.json + weights (malloc'd) */
    int pooling;             /* TD_POOL_* flags, 0 when not a sentence-transformer */
    bool normalize;
} td_encoder_spec;

/* Read dir's configuration. Errors name the file and the key. */
td_status td_encoder_spec_load(td_ctx *ctx, const char *dir, td_encoder_spec *spec);
void td_encoder_spec_free(td_encoder_spec *spec);

/* Resolve the task (TD_TASK_AUTO -> the architecture's task) and check it is
 * possible; an impossible one gets an error listing the possible tasks. */
td_status td_encoder_spec_task(td_ctx *ctx, const td_encoder_spec *spec, td_export_task requested,
                               td_export_task *out);

#endif
