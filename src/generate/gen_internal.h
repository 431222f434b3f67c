/* The generator's state shared by generator.c (opening) and generate.c (the loop). */
#ifndef TD_GENERATE_GEN_INTERNAL_H
#define TD_GENERATE_GEN_INTERNAL_H

#include "core/ctx.h"
#include "generate/generator.h"
#include "generate/kv_inplace.h"
#include "gguf/gguf.h"
#include "onnx/ir.h"

typedef struct td_gen_cache {
    const char *input;  /* past_key_values.N.key (owned by the session) */
    int output;         /* index of present.N.key */
    int64_t kv_heads, head_dim;
} td_gen_cache;

struct td_generator {
    td_model *model;    /* owned: loaded or exported in memory */
    td_session *s;
    td_tokenizer *tok;  /* NULL when none was found (ids in, ids out) */
    td_gen_cache *caches;
    bool last_logits;   /* the graph makes logits of the last position only (td_gen_last_logits) */
    td_gen_kv_plan kv;  /* in_place: the graph was rewritten for the in-place cache (kv_inplace.h) */
    int n_caches;
    int i_logits;
    bool has_pos, int32;
    int64_t vocab;
    int64_t context;    /* max_position_embeddings, 0 when unknown */
    int64_t eos[TD_GEN_MAX_EOS];
    size_t n_eos;
    int64_t pad;
    char *chat_template;    /* NULL when the model has none */
    char *bos_token, *eos_token; /* strings the template may use; NULL when unknown */
};

struct td_gguf;
td_status td_gen_chat_from_dir(td_ctx *ctx, td_generator *g, const char *dir);
td_status td_gen_chat_from_gguf(td_ctx *ctx, td_generator *g, const struct td_gguf *f);

#endif
