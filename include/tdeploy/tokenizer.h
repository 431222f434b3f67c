/* tdeploy tokenizer: reads a Hugging Face tokenizer.json (+ optional
 * tokenizer_config.json) and produces the same ids, type ids and offsets as the
 * HF `tokenizers` library. Offsets are BYTE offsets [start, end) into the UTF-8
 * text of the sequence they came from (HF's Python API reports character
 * offsets; convert when comparing).
 *
 * Thread safety: a loaded td_tokenizer is read-only during encode/decode, so
 * several threads may encode with the same tokenizer at once (each with its own
 * td_ctx). */
#ifndef TDEPLOY_TOKENIZER_H
#define TDEPLOY_TOKENIZER_H

#include "tdeploy/tdeploy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct td_tokenizer td_tokenizer;

typedef enum td_trunc_strategy {
    TD_TRUNC_LONGEST_FIRST = 0,
    TD_TRUNC_ONLY_FIRST,
    TD_TRUNC_ONLY_SECOND,
} td_trunc_strategy;

typedef enum td_pad_strategy {
    TD_PAD_NONE = 0,
    TD_PAD_BATCH_LONGEST, /* pad every row to the longest row of the batch */
    TD_PAD_FIXED,         /* pad every row to pad_length */
} td_pad_strategy;

/* Encoding options. td_tokenizer_default_options fills them from the
 * truncation/padding sections of tokenizer.json (falling back on
 * tokenizer_config.json); the caller may change any field before encoding. */
typedef struct td_tok_options {
    bool add_special_tokens; /* run the post-processor (CLS/SEP, <s></s> ...) */
    /* truncation */
    bool truncation;
    size_t max_length; /* includes the special tokens, as in HF */
    /* overlap, in tokens, of consecutive overflowing windows (HF's stride); must be smaller than the length a
     * cut sequence is truncated to. The windows are only returned when return_overflowing is set. */
    size_t stride;
    td_trunc_strategy trunc_strategy;
    bool trunc_left; /* direction Left: drop tokens from the start */
    /* td_tokenizer_encode also returns the tokens truncation removed, as HF's Encoding.overflowing: the cut
     * sequence split into windows of the kept length overlapping by `stride`, each post-processed (and padded)
     * like the main row, with the other text of a pair kept whole. Supported: single texts, and pairs where
     * truncation cut only one text (only_first, only_second, or longest_first cutting one side); a pair with
     * both texts cut, or a cut text left with no tokens, gives TD_ERR_UNSUPPORTED. Default false; ignored by
     * td_tokenizer_encode_batch. */
    bool return_overflowing;
    /* padding */
    td_pad_strategy padding;
    size_t pad_length;        /* TD_PAD_FIXED target */
    size_t pad_to_multiple_of; /* 0 = off */
    bool pad_left;
    int64_t pad_id;
    int64_t pad_type_id;
    const char *pad_token; /* owned by the tokenizer or the caller; used for the token strings only */
    /* offsets in characters (code points) instead of bytes, converted per sequence before post-processing
     * exactly where HF's Python API converts them (so ByteLevel offset trimming then counts characters) */
    bool char_offsets;
} td_tok_options;

/* One encoded row. Arrays have `len` entries; offsets has 2*len (start, end)
 * pairs. tokens[i] points into memory owned by the tokenizer (valid while the
 * tokenizer lives). sequence_ids[i]: 0 = first text, 1 = pair text, -1 =
 * special or padding token. overflowing: n_overflowing rows (in HF's order,
 * each with no overflowing of its own) when return_overflowing was asked and
 * truncation cut a text, else NULL/0; owned by this encoding. Free with
 * td_encoding_free (frees the overflowing rows too). */
typedef struct td_encoding {
    size_t len;
    int64_t *ids;                 /* (len) */
    int64_t *type_ids;            /* (len) */
    int64_t *attention_mask;      /* (len) */
    int64_t *special_tokens_mask; /* (len) */
    int64_t *offsets;             /* (len, 2) byte offsets into the text given by sequence_ids */
    int32_t *sequence_ids;        /* (len) */
    int32_t *word_ids;            /* (len) pre-tokenized word index within its sequence (HF word_ids); -1 special/pad */
    const char **tokens;          /* (len) */
    bool truncated;               /* truncation removed tokens (the main row; overflow rows hold them) */
    size_t n_overflowing;
    struct td_encoding *overflowing; /* (n_overflowing) */
} td_encoding;

/* A padded batch as the model runners want it: rectangular int64 arrays.
 * Free with td_batch_free. */
typedef struct td_batch {
    size_t batch, seq_len;
    int64_t *input_ids;           /* (batch, seq_len) */
    int64_t *token_type_ids;      /* (batch, seq_len) */
    int64_t *attention_mask;      /* (batch, seq_len) */
    int64_t *special_tokens_mask; /* (batch, seq_len) */
    int64_t *offsets;             /* (batch, seq_len, 2) */
} td_batch;

/* Load PATH, which is either a tokenizer.json file or a directory holding
 * tokenizer.json (and optionally tokenizer_config.json). The caller owns
 * *out and frees it with td_tokenizer_free. */
TD_API td_status td_tokenizer_load(td_ctx *ctx, const char *path, td_tokenizer **out);
/* Parse tokenizer.json text already in memory (config_json may be NULL).
 * `source` names the input in error messages. */
TD_API td_status td_tokenizer_load_json(td_ctx *ctx, const char *json, size_t json_len, const char *config_json,
                                 size_t config_len, const char *source, td_tokenizer **out);
TD_API void td_tokenizer_free(td_tokenizer *tok); /* NULL is harmless */

TD_API void td_tokenizer_default_options(const td_tokenizer *tok, td_tok_options *out);

/* Encode one text (pair may be NULL). With options NULL the defaults are used.
 * Padding TD_PAD_BATCH_LONGEST on a single row means no padding. Invalid UTF-8
 * gives TD_ERR_INVALID_ARGUMENT naming the byte offset. */
TD_API td_status td_tokenizer_encode(td_ctx *ctx, const td_tokenizer *tok, const char *text, size_t text_len,
                              const char *pair, size_t pair_len, const td_tok_options *options, td_encoding *out);
TD_API void td_encoding_free(td_encoding *enc); /* frees the arrays; NULL or a zeroed struct is harmless */

/* Encode n texts (pairs NULL or n pair texts; lens may be NULL for NUL-terminated
 * strings) into a rectangular batch. Rows are padded as options say; when the
 * options ask for no padding the rows are still padded (with the pad id and a
 * zero mask) to the longest row so the result is rectangular. */
TD_API td_status td_tokenizer_encode_batch(td_ctx *ctx, const td_tokenizer *tok, const char *const *texts,
                                    const size_t *text_lens, const char *const *pairs, const size_t *pair_lens,
                                    size_t n, const td_tok_options *options, td_batch *out);
TD_API void td_batch_free(td_batch *batch); /* NULL or a zeroed struct is harmless */

/* Decode ids to text (malloc'd, NUL-terminated; caller frees). Unknown ids are
 * an error. */
TD_API td_status td_tokenizer_decode(td_ctx *ctx, const td_tokenizer *tok, const int64_t *ids, size_t n,
                              bool skip_special_tokens, char **out);

/* Decode token strings (as tokens[] of an encoding holds them, or any text
 * standing in for one) through the tokenizer's decoder: what transformers'
 * convert_tokens_to_string does. *out malloc'd, caller frees. */
TD_API td_status td_tokenizer_decode_tokens(td_ctx *ctx, const td_tokenizer *tok, const char *const *tokens, size_t n,
                                     char **out);

/* Vocabulary size including added tokens (max id + 1). */
TD_API size_t td_tokenizer_vocab_size(const td_tokenizer *tok);
/* Token string of id (NULL when out of range). Owned by the tokenizer. */
TD_API const char *td_tokenizer_id_to_token(const td_tokenizer *tok, int64_t id);
/* Id of token, or -1. */
TD_API int64_t td_tokenizer_token_to_id(const td_tokenizer *tok, const char *token);

#ifdef __cplusplus
}
#endif
#endif
