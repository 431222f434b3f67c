/* Pieces of the Triton repository writer shared by triton.c (ONNX Runtime model,
 * Python tokenizer, ensemble) and triton_tdeploy.c (the tdeploy-backend model). */
#ifndef TD_DEPLOY_TRITON_WRITE_H
#define TD_DEPLOY_TRITON_WRITE_H

#include "deploy/pbtxt.h"
#include "deploy/triton.h"

/* What a tokenizer front end needs to know, found in the tokenizer files. */
typedef struct td_triton_tok_params {
    char pad_token[256];
    int64_t max_length, pad_to_length;
} td_triton_tok_params;

td_status td_triton_tokenizer_params(td_ctx *ctx, const td_triton_spec *sp, td_triton_tok_params *tp);

/* [A-Za-z0-9_.-], 1..128 bytes, not starting with '.' or '-' */
bool td_triton_safe_model_name(const char *s);

void td_triton_put_header(td_pbtxt *b, const char *name, const char *suffix);
/* input/output list; dims without the batch dimension when batched */
void td_triton_put_tensors(td_pbtxt *b, const char *section, const td_triton_tensor *t, size_t n, bool batched);
void td_triton_put_param(td_pbtxt *b, const char *key, const char *value);

/* dir/rel created if needed; its path (malloc'd) in *out unless out is NULL. */
td_status td_triton_make_subdir(td_ctx *ctx, const char *dir, const char *rel, char **out);
td_status td_triton_write_text(td_ctx *ctx, const char *dir, const char *file, const td_pbtxt *b);
/* src_dir/rel -> dst_dir/rel, hard link or copy; a missing source is an error only when required. */
td_status td_triton_place_file(td_ctx *ctx, const char *src_dir, const char *rel, const char *dst_dir, bool required);
/* onnx_path -> ver/model-optimized.onnx, and the n external-data files it references (relative to its folder)
 * beside it. */
td_status td_triton_place_model(td_ctx *ctx, const char *onnx_path, const char *const *external_data, size_t n,
                                const char *ver);

/* OUT/NAME for the tdeploy backend (layout in triton.h), written under root. */
td_status td_triton_write_tdeploy_model(td_ctx *ctx, const td_triton_spec *sp, const char *root);

#endif
