/* Validation and benchmark inputs. */
#define _GNU_SOURCE
#include "convert/feeds.h"

#include "core/checked.h"
#include "core/ctx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const td_builtin_texts[] = {
    "The quick brown fox jumps over the lazy dog.",
    "Deploying transformer models should not need gigabytes of Python.",
    "I absolutely loved this movie; the acting was superb and the story moving!",
    "This is the worst purchase I have ever made. Do not buy it.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "Barack Obama was born in Honolulu, Hawaii, on August 4, 1961.",
    "Café naïve résumé façade — déjà vu.",
    "日本語のテキストと中文文本",
    "Emoji test: 🚀🔥👍 and symbols like © ® ™ ∑ ∞.",
    "Numbers: 3.14159, 2,718, 1e-10, -42 and 100%.",
    "   Leading and trailing whitespace, \ttabs and  double  spaces.   ",
    "UPPER CASE, lower case and MiXeD cAsE words.",
    "a",
    "Hello world!",
    "A much longer sentence that keeps going and going, with many clauses, commas, and subordinate ideas, so that "
    "it exercises longer sequence lengths, attention over many positions, and the truncation logic of the "
    "tokenizer when the maximum length is small; it also contains rare words such as antidisestablishmentarianism "
    "and floccinaucinihilipilification to force sub-word splits.",
    "Ünïcödé nörmälizätiön: ﬁ ligature, ½ fraction, ｆｕｌｌｗｉｄｔｈ letters.",
};
const int td_builtin_text_count = (int)(sizeof td_builtin_texts / sizeof td_builtin_texts[0]);

const char *const td_builtin_pairs[][2] = {
    {"Where was Barack Obama born?", "Barack Obama was born in Honolulu, Hawaii, on August 4, 1961."},
    {"What is the capital of France?", "Paris is the capital of France, and Berlin is the capital of Germany."},
    {"What does tdeploy write?", "tdeploy writes standard ONNX, an optimized ONNX and a Triton model repository."},
    {"How fast is it?", "It is faster than what most people use now, and it tells you what went wrong."},
    {"Who jumps?", "The quick brown fox jumps over the lazy dog."},
    {"Quelle est la couleur du ciel ?", "Le ciel est bleu quand il fait beau."},
};
const int td_builtin_pair_count = (int)(sizeof td_builtin_pairs / sizeof td_builtin_pairs[0]);

void td_feed_free(td_feed *f) {
    if (!f)
        return;
    free(f->input_ids);
    free(f->attention_mask);
    free(f->token_type_ids);
    free(f->scratch32);
    memset(f, 0, sizeof *f);
}

static td_status feed_alloc(td_ctx *ctx, td_feed *f, int64_t batch, int64_t seq, const char *label) {
    memset(f, 0, sizeof *f);
    size_t n;
    if (batch < 1 || seq < 1 || !td_mul_size((size_t)batch, (size_t)seq, &n) || n > ((size_t)1 << 28))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "input shape %lld x %lld is empty or too large", (long long)batch,
                       (long long)seq);
    f->batch = batch;
    f->seq = seq;
    snprintf(f->label, sizeof f->label, "%s", label);
    f->input_ids = calloc(n, sizeof(int64_t));
    f->attention_mask = calloc(n, sizeof(int64_t));
    f->token_type_ids = calloc(n, sizeof(int64_t));
    if (!f->input_ids || !f->attention_mask || !f->token_type_ids) {
        td_feed_free(f);
        return td_fail_oom(ctx, n * 24, "model inputs");
    }
    return TD_OK;
}

td_status td_feeds_from_texts(td_ctx *ctx, const td_tokenizer *tok, const char *const *texts,
                              const char *const *pairs, int n, int64_t batch_size, int64_t max_len, td_feed **out,
                              int *n_out) {
    *out = NULL;
    *n_out = 0;
    if (n <= 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "no validation texts");
    int n_batches = (int)((n + batch_size - 1) / batch_size);
    td_feed *feeds = calloc((size_t)n_batches, sizeof *feeds);
    if (!feeds)
        return td_fail_oom(ctx, sizeof *feeds * (size_t)n_batches, "feeds");
    td_tok_options to;
    td_tokenizer_default_options(tok, &to);
    to.add_special_tokens = true;
    to.truncation = true;
    to.max_length = (size_t)max_len;
    to.trunc_strategy = pairs ? TD_TRUNC_ONLY_SECOND : TD_TRUNC_LONGEST_FIRST;
    to.padding = TD_PAD_BATCH_LONGEST;
    to.pad_to_multiple_of = 0;
    td_status s = TD_OK;
    int made = 0;
    for (int b = 0; b < n_batches; b++) {
        int first = b * (int)batch_size;
        int rows = n - first < batch_size ? n - first : (int)batch_size;
        td_batch tb = {0};
        s = td_tokenizer_encode_batch(ctx, tok, texts + first, NULL, pairs ? pairs + first : NULL, NULL, (size_t)rows,
                                      &to, &tb);
        if (s != TD_OK) {
            td_wrap(ctx, "tokenizing validation text %d", first + 1);
            goto out;
        }
        char label[96];
        snprintf(label, sizeof label, "text batch %d/%d", b + 1, n_batches);
        s = feed_alloc(ctx, &feeds[b], (int64_t)tb.batch, (int64_t)tb.seq_len, label);
        if (s == TD_OK) {
            size_t cells = tb.batch * tb.seq_len;
            memcpy(feeds[b].input_ids, tb.input_ids, cells * sizeof(int64_t));
            memcpy(feeds[b].attention_mask, tb.attention_mask, cells * sizeof(int64_t));
            memcpy(feeds[b].token_type_ids, tb.token_type_ids, cells * sizeof(int64_t));
            made++;
        }
        td_batch_free(&tb);
        if (s != TD_OK)
            goto out;
    }
    *out = feeds;
    *n_out = made;
    feeds = NULL;
out:
    if (feeds) {
        for (int i = 0; i < made; i++)
            td_feed_free(&feeds[i]);
        free(feeds);
    }
    return s;
}

static uint64_t next_rand(uint64_t *st) { /* splitmix64: fast, seedable, good enough for test inputs */
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

td_status td_feed_random(td_ctx *ctx, td_feed *f, int64_t batch, int64_t seq, int64_t vocab, int64_t pad_id,
                         uint64_t *rng, const char *label) {
    TD_TRY(feed_alloc(ctx, f, batch, seq, label));
    int64_t first_id = vocab > 1000 ? 999 : (vocab > 10 ? 5 : 0); /* skip the special-token block at the start */
    for (int64_t b = 0; b < batch; b++) {
        int64_t len = b == 0 ? seq : 1 + (int64_t)(next_rand(rng) % (uint64_t)seq);
        for (int64_t t = 0; t < seq; t++) {
            int64_t id;
            do
                id = first_id + (int64_t)(next_rand(rng) % (uint64_t)(vocab - first_id));
            while (id == pad_id && vocab - first_id > 1);
            bool real = t < len;
            f->input_ids[b * seq + t] = real ? id : (pad_id >= 0 ? pad_id : 0);
            f->attention_mask[b * seq + t] = real;
            f->token_type_ids[b * seq + t] = 0;
        }
    }
    return TD_OK;
}

td_status td_feed_realistic(td_ctx *ctx, td_feed *f, const td_tokenizer *tok, int64_t batch, int64_t seq,
                            const char *label) {
    /* one token stream from all built-in texts, without special tokens */
    td_tok_options to;
    td_tokenizer_default_options(tok, &to);
    to.add_special_tokens = false;
    to.truncation = false;
    to.padding = TD_PAD_NONE;
    int64_t *stream = NULL;
    size_t n = 0, cap = 0;
    td_status s = TD_OK;
    for (int i = 0; i < td_builtin_text_count; i++) {
        td_encoding enc = {0};
        s = td_tokenizer_encode(ctx, tok, td_builtin_texts[i], strlen(td_builtin_texts[i]), NULL, 0, &to, &enc);
        if (s != TD_OK)
            goto out;
        if (n + enc.len > cap) {
            cap = (n + enc.len) * 2;
            int64_t *p = realloc(stream, cap * sizeof *p);
            if (!p) {
                td_encoding_free(&enc);
                s = td_fail_oom(ctx, cap * 8, "token stream");
                goto out;
            }
            stream = p;
        }
        memcpy(stream + n, enc.ids, enc.len * sizeof(int64_t));
        n += enc.len;
        td_encoding_free(&enc);
    }
    if (n == 0) {
        s = td_fail(ctx, TD_ERR_INTERNAL, "the tokenizer produced no tokens for the built-in texts");
        goto out;
    }
    if ((s = feed_alloc(ctx, f, batch, seq, label)) != TD_OK)
        goto out;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t t = 0; t < seq; t++) {
            f->input_ids[b * seq + t] = stream[(size_t)(b * 7 + t) % n]; /* rows start at different tokens */
            f->attention_mask[b * seq + t] = 1;
        }
out:
    free(stream);
    return s;
}

td_status td_feed_bind(td_ctx *ctx, td_session *s, td_feed *f) {
    size_t cells = (size_t)(f->batch * f->seq);
    int64_t shape[2] = {f->batch, f->seq};
    for (int i = 0; i < td_session_input_count(s); i++) {
        const char *name = td_session_input_name(s, i);
        const int64_t *src;
        int slot;
        if (strcmp(name, "input_ids") == 0)
            src = f->input_ids, slot = 0;
        else if (strcmp(name, "attention_mask") == 0)
            src = f->attention_mask, slot = 1;
        else if (strcmp(name, "token_type_ids") == 0)
            src = f->token_type_ids, slot = 2;
        else
            return td_fail(ctx, TD_ERR_UNSUPPORTED,
                           "model input '%s' is not one convert knows how to fill (input_ids, attention_mask, "
                           "token_type_ids)",
                           name);
        int32_t dtype;
        int rank;
        const int64_t *dims;
        const char *const *params;
        td_session_input_info(s, i, &dtype, &rank, &dims, &params);
        if (dtype == TD_DTYPE_INT32) {
            if (!f->scratch32 && !(f->scratch32 = malloc(cells * 3 * sizeof(int32_t))))
                return td_fail_oom(ctx, cells * 12, "int32 inputs");
            int32_t *dst = f->scratch32 + (size_t)slot * cells;
            for (size_t k = 0; k < cells; k++)
                dst[k] = (int32_t)src[k];
            TD_TRY(td_session_set_input(ctx, s, name, TD_DTYPE_INT32, 2, shape, dst, cells * sizeof(int32_t)));
        } else {
            TD_TRY(td_session_set_input(ctx, s, name, TD_DTYPE_INT64, 2, shape, src, cells * sizeof(int64_t)));
        }
    }
    return TD_OK;
}
