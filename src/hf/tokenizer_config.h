/* tokenizer_config.json: the settings transformers' tokenizer wrapper applies on
 * top of tokenizer.json (maximum length, padding side, special tokens, lower-casing).
 * Typed fields for what the tokenizer and runtimes need; the whole object stays
 * available in json for anything else. */
#ifndef TD_HF_TOKENIZER_CONFIG_H
#define TD_HF_TOKENIZER_CONFIG_H

#include "tdeploy/tdeploy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;

typedef struct td_tokenizer_config {
    char *path;
    int64_t model_max_length;   /* -1 when absent or "unlimited" (transformers writes 1e30 for that) */
    char **model_input_names;   /* e.g. input_ids, token_type_ids, attention_mask; NULL when absent */
    size_t n_model_input_names;
    int do_lower_case;          /* -1 absent, 0/1 */
    char *padding_side;         /* "right" (default) or "left" */
    char *truncation_side;      /* "right" (default) or "left" */
    /* special tokens: the string, or the "content" of an AddedToken object; NULL when absent/null */
    char *pad_token, *unk_token, *cls_token, *sep_token, *mask_token, *bos_token, *eos_token;
    char *tokenizer_class;      /* NULL when absent */
    int add_prefix_space;       /* -1 absent, 0/1 */
    int clean_up_tokenization_spaces; /* -1 absent, 0/1 */
    struct cJSON *json;         /* owned */
} td_tokenizer_config;

/* Parse path. TD_ERR_NOT_FOUND when it does not exist. */
td_status td_tokenizer_config_load(td_ctx *ctx, const char *path, td_tokenizer_config **out);
void td_tokenizer_config_free(td_tokenizer_config *tc); /* NULL is harmless */

#endif
