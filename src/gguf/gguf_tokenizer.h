/* The tokenizer stored in a GGUF file's metadata (tokenizer.ggml.*), loaded as the
 * equivalent Hugging Face tokenizer.json so its ids are those of the HF byte-level
 * BPE tokenizer over the same vocabulary and merges (gguf_tokenizer.c). */
#ifndef TD_GGUF_GGUF_TOKENIZER_H
#define TD_GGUF_GGUF_TOKENIZER_H

#include "gguf/gguf.h"
#include "tdeploy/tokenizer.h"

/* The tokenizer.json text (malloc'd). Only tokenizer.ggml.model "gpt2" (byte-level BPE) is supported;
 * tokenizer.ggml.pre picks the pre-tokenizer (default/gpt2, smollm, llama-bpe/llama3/llama-v3, qwen2), others are
 * refused. */
td_status td_gguf_tokenizer_json(td_ctx *ctx, const td_gguf *f, char **out);
td_status td_gguf_tokenizer_load(td_ctx *ctx, const td_gguf *f, td_tokenizer **out);

#endif
