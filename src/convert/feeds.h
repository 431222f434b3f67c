/* Model inputs for validation and benchmarks ("feeds"): tokenized real text,
 * random ids with random padding at profile corners, and realistic unpadded
 * ids for timing. All arrays are (batch, seq) int64, row-major. */
#ifndef TD_CONVERT_FEEDS_H
#define TD_CONVERT_FEEDS_H

#include "tdeploy/session.h"
#include "tdeploy/tokenizer.h"

#include <stdint.h>

typedef struct td_feed {
    char label[96];            /* "text batch 1/3", "random 8x128 (opt)" */
    int64_t batch, seq;
    int64_t *input_ids;        /* (batch, seq) */
    int64_t *attention_mask;   /* (batch, seq) 1 = real token */
    int64_t *token_type_ids;   /* (batch, seq) */
    int32_t *scratch32;        /* int32 copies when a graph takes int32 ids: (3, batch, seq) */
} td_feed;

void td_feed_free(td_feed *f); /* frees arrays; zeroed struct harmless */

/* Built-in validation texts: varied scripts, punctuation, numbers, long and
 * short; pairs are (question, context) for question answering. */
extern const char *const td_builtin_texts[];
extern const int td_builtin_text_count;
extern const char *const td_builtin_pairs[][2];
extern const int td_builtin_pair_count;

/* Tokenize n texts (pairs may be NULL) in batches of batch_size rows, each
 * truncated to max_len tokens and padded to the longest row of its batch.
 * *out is a malloc'd array of *n_out feeds. */
td_status td_feeds_from_texts(td_ctx *ctx, const td_tokenizer *tok, const char *const *texts,
                              const char *const *pairs, int n, int64_t batch_size, int64_t max_len, td_feed **out,
                              int *n_out);

/* Random ids in [first_id, vocab) at (batch, seq); row 0 uses the whole sequence,
 * other rows a random length in [1, seq] (random padding). Ids never equal pad_id. */
td_status td_feed_random(td_ctx *ctx, td_feed *f, int64_t batch, int64_t seq, int64_t vocab, int64_t pad_id,
                         uint64_t *rng_state, const char *label);

/* Realistic ids for timing: rows cut from the token stream of the built-in
 * texts, no padding (every position real). */
td_status td_feed_realistic(td_ctx *ctx, td_feed *f, const td_tokenizer *tok, int64_t batch, int64_t seq,
                            const char *label);

/* Bind a feed to every input of a session by name (input_ids, attention_mask,
 * token_type_ids), converting to int32 where the graph wants it. The feed must
 * outlive the run (the session borrows the arrays). */
td_status td_feed_bind(td_ctx *ctx, td_session *s, td_feed *f);

#endif
