/* The model's chat template and its bos/eos strings, from the files beside it
 * (chat_template.jinja, else tokenizer_config.json's chat_template) or from a
 * GGUF file's tokenizer.chat_template, and the prompt they make of messages. */
#define _GNU_SOURCE
#include "core/fs.h"
#include "generate/chat_template.h"
#include "generate/gen_internal.h"
#include "hf/tokenizer_config.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

td_status td_gen_chat_from_dir(td_ctx *ctx, td_generator *g, const char *dir) {
    char *path = NULL;
    TD_TRY(td_path_join(ctx, dir, "tokenizer_config.json", false, &path));
    td_tokenizer_config *tc = NULL;
    td_status st = td_is_file(path) ? td_tokenizer_config_load(ctx, path, &tc) : TD_OK;
    free(path);
    if (st != TD_OK)
        return st;
    if (tc) {
        g->bos_token = dup_or_null(tc->bos_token);
        g->eos_token = dup_or_null(tc->eos_token);
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(tc->json, "chat_template");
        if (cJSON_IsString(ct)) {
            g->chat_template = strdup(ct->valuestring);
        } else if (cJSON_IsArray(ct)) {
            /* [{"name": "default", "template": ...}, {"name": "tool_use", ...}]: the default one */
            const cJSON *e;
            cJSON_ArrayForEach(e, ct) {
                const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
                const cJSON *tt = cJSON_GetObjectItemCaseSensitive(e, "template");
                if (cJSON_IsString(n) && !strcmp(n->valuestring, "default") && cJSON_IsString(tt))
                    g->chat_template = strdup(tt->valuestring);
            }
        }
        td_tokenizer_config_free(tc);
    }
    /* transformers >= 4.43 may keep the template in its own file, which then wins */
    if ((st = td_path_join(ctx, dir, "chat_template.jinja", false, &path)) != TD_OK)
        return st;
    if (td_is_file(path)) {
        char *text = NULL;
        size_t len = 0;
        if ((st = td_read_file(ctx, path, 1 << 20, &text, &len)) == TD_OK) {
            free(g->chat_template);
            g->chat_template = text;
        }
    }
    free(path);
    return st;
}

static char *token_string(const td_gguf *f, const char *id_key) {
    td_ctx quiet = {0};
    int64_t id;
    const td_gguf_kv *toks = td_gguf_find(f, "tokenizer.ggml.tokens");
    if (td_gguf_get_int(&quiet, f, id_key, &id) != TD_OK || !toks || !toks->strs || id < 0 ||
        (uint64_t)id >= toks->count)
        return NULL;
    return strndup(toks->strs[id].s, (size_t)toks->strs[id].len);
}

td_status td_gen_chat_from_gguf(td_ctx *ctx, td_generator *g, const td_gguf *f) {
    if (td_gguf_find(f, "tokenizer.chat_template"))
        TD_TRY(td_gguf_get_string(ctx, f, "tokenizer.chat_template", &g->chat_template));
    g->bos_token = token_string(f, "tokenizer.ggml.bos_token_id");
    g->eos_token = token_string(f, "tokenizer.ggml.eos_token_id");
    return TD_OK;
}

td_status td_generator_chat_prompt(td_ctx *ctx, const td_generator *g, const td_chat_message *msgs, size_t n,
                                   char **out) {
    *out = NULL;
    if (!g->chat_template)
        return td_fail(ctx, TD_ERR_NOT_FOUND, "the model has no chat template (tokenizer_config.json chat_template, "
                       "chat_template.jinja or the GGUF's tokenizer.chat_template); give the prompt with --prompt");
    td_chat_vars v = {.bos_token = g->bos_token ? g->bos_token : "", .eos_token = g->eos_token ? g->eos_token : "",
                      .add_generation_prompt = true};
    return td_chat_render(ctx, g->chat_template, msgs, n, &v, out);
}
