/* One max length per model, the same in every command (run, convert, its Triton
 * tokenizer, triton-repo): the positions the model has (max_position_embeddings,
 * minus pad_token_id + 1 for RoBERTa-like models whose positions start after the
 * padding index), capped by sentence_bert_config.json's max_seq_length when set
 * (sentence-transformers truncates there), else by tokenizer_config.json's
 * model_max_length. */
#ifndef TD_HF_MAX_LENGTH_H
#define TD_HF_MAX_LENGTH_H

#include "hf/config.h"
#include "tdeploy/tdeploy.h"

#include <stdint.h>

/* Positions of config (0 when config is NULL or has none; may be < 1 for a broken
 * config, which td_model_dir reports). */
int64_t td_hf_position_limit(const td_hf_config *config);

/* The rule above. st_max and tok_max are <= 0 when not set; config may be NULL.
 * 0 when nothing gives a length. *source (may be NULL) names where it came from. */
int64_t td_hf_max_length(const td_hf_config *config, int64_t st_max, int64_t tok_max, const char **source);

/* The rule above from the files of a folder (config.json, sentence_bert_config.json,
 * tokenizer_config.json, each optional): a model directory, a convert output or a
 * tokenizer folder. *len is 0 when none of them gives a length. */
td_status td_hf_max_length_of_dir(td_ctx *ctx, const char *dir, int64_t *len, const char **source);

#endif
