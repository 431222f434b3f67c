/* A Hugging Face model directory, found from what the user passed as -m MODEL:
 *   - an existing directory (as save_pretrained writes it), or
 *   - a hub id "org/name" (or "name") already complete in the local Hugging Face
 *     cache: the snapshot its refs/main names, found by td_hub_cached_snapshot
 *     (hf/hub.h), the same lookup `tdeploy download` makes.
 *
 * td_model_dir bundles everything a later stage needs: the typed config, the
 * weights (one file or sharded, see hf/checkpoint.h), the sentence-transformers
 * pipeline when present and the tokenizer files. Weights saved only as pickles
 * (pytorch_model.bin, *.pt) are TD_ERR_UNSUPPORTED with a conversion command:
 * tdeploy never unpickles. */
#ifndef TD_HF_MODEL_DIR_H
#define TD_HF_MODEL_DIR_H

#include "hf/checkpoint.h"
#include "hf/config.h"
#include "hf/st_modules.h"
#include "hf/tokenizer_config.h"

typedef struct td_model_dir {
    char *source;                          /* what the caller passed */
    char *path;                            /* the resolved directory */
    char *revision;                        /* HF cache snapshot commit, NULL for a plain directory */
    td_hf_config *config;                  /* config.json, never NULL */
    td_checkpoint *checkpoint;             /* weights, never NULL */
    td_st_info *st;                        /* sentence-transformers pipeline, NULL when not one */
    td_tokenizer_config *tokenizer_config; /* NULL when tokenizer_config.json is absent */
    char *tokenizer_json;                  /* path of tokenizer.json, NULL when absent */
    /* Longest input in tokens, by the one rule of hf/max_length.h: the positions
     * the model has (minus RoBERTa's padding offset), capped by sentence_bert_config's
     * max_seq_length when set, else by tokenizer_config's model_max_length. */
    int64_t max_seq_length;
    const char *max_seq_length_source; /* static: which file and key gave it */
} td_model_dir;

/* Find the directory for model without opening anything in it. *dir (malloc'd)
 * and *revision (malloc'd or NULL). TD_ERR_NOT_FOUND names every place looked. */
td_status td_model_dir_resolve(td_ctx *ctx, const char *model, char **dir, char **revision);

/* Resolve and load. *out owns everything; free with td_model_dir_free. */
td_status td_model_dir_open(td_ctx *ctx, const char *model, td_model_dir **out);
void td_model_dir_free(td_model_dir *md); /* NULL is harmless */

#endif
