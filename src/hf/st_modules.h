/* The sentence-transformers layout of a model directory: modules.json listing
 * the pipeline (Transformer -> Pooling -> Normalize ...), the pooling module's
 * config and sentence_bert_config.json. Both the classic pooling config
 * (pooling_mode_mean_tokens: true, word_embedding_dimension) and the newer one
 * (pooling_mode: "mean", embedding_dimension) are read. */
#ifndef TD_HF_ST_MODULES_H
#define TD_HF_ST_MODULES_H

#include "tdeploy/tdeploy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum td_st_module_kind {
    TD_ST_MODULE_OTHER = 0, /* anything else: callers decide whether they support it */
    TD_ST_MODULE_TRANSFORMER,
    TD_ST_MODULE_POOLING,
    TD_ST_MODULE_NORMALIZE,
    TD_ST_MODULE_DENSE,
} td_st_module_kind;

typedef struct td_st_module {
    td_st_module_kind kind;
    char *type; /* full class path, "sentence_transformers.models.Pooling" */
    char *path; /* relative to the model directory; "" for the root */
    char *name;
} td_st_module;

/* Pooling modes, a bit set: sentence-transformers concatenates the selected poolings. */
enum {
    TD_POOL_CLS = 1 << 0,           /* pooling_mode_cls_token / "cls" */
    TD_POOL_MEAN = 1 << 1,          /* pooling_mode_mean_tokens / "mean" */
    TD_POOL_MAX = 1 << 2,           /* pooling_mode_max_tokens / "max" */
    TD_POOL_MEAN_SQRT_LEN = 1 << 3, /* pooling_mode_mean_sqrt_len_tokens / "mean_sqrt_len_tokens" */
    TD_POOL_WEIGHTED_MEAN = 1 << 4, /* pooling_mode_weightedmean_tokens / "weightedmean" */
    TD_POOL_LAST_TOKEN = 1 << 5,    /* pooling_mode_lasttoken / "lasttoken" */
};

typedef struct td_st_info {
    td_st_module *modules; /* modules.json order */
    size_t n_modules;
    bool has_pooling;
    unsigned pooling_modes;           /* TD_POOL_* bits */
    int64_t word_embedding_dimension; /* pooling input width */
    bool include_prompt;              /* default true */
    bool has_normalize;
    int64_t max_seq_length;           /* sentence_bert_config.json; -1 when not set */
    int do_lower_case;                /* sentence_bert_config.json; -1 not set, 0/1 */
} td_st_info;

/* Read dir/modules.json and what it references. *out is NULL (and TD_OK returned)
 * when dir has no modules.json: not a sentence-transformers model. */
td_status td_st_info_load(td_ctx *ctx, const char *dir, td_st_info **out);
void td_st_info_free(td_st_info *info); /* NULL is harmless */

/* TD_ERR_UNSUPPORTED naming the first module that is not Transformer, Pooling or
 * Normalize, or a pooling mode other than cls/mean/max/mean_sqrt_len; TD_OK otherwise. */
td_status td_st_info_check_supported(td_ctx *ctx, const td_st_info *info, const char *dir);

const char *td_st_module_kind_name(td_st_module_kind k);
/* "mean", "cls+max", ... into buf. */
const char *td_st_pooling_name(unsigned modes, char *buf, size_t n);

#endif
