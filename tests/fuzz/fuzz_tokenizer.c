/* libFuzzer harness for the tokenizer. The first input byte picks the target:
 *   0: the rest is tokenizer.json text - load it, and when it loads, encode and
 *      decode a few texts with it;
 *   1: the rest is a precompiled_charsmap blob - wrap it (base64) in a Unigram
 *      tokenizer with a Precompiled normalizer, load, encode;
 *   else: the rest is text (split into text + pair at the first 0xFF byte) -
 *      encode it with every fixture tokenizer ($TD_FIXTURES/hf/...), decode the ids.
 * Nothing may crash, leak or read out of bounds; errors are fine. */
#include "tdeploy/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *FIXTURES[] = {"bert-base", "roberta-seqcls", "xlmr-base", "gpt2-lm"};
#define N_FIX (sizeof FIXTURES / sizeof FIXTURES[0])
static td_tokenizer *fix_tok[N_FIX];
static int fix_ready;

static void load_fixtures(void) {
    if (fix_ready)
        return;
    fix_ready = 1;
    char base[4096];
    const char *env = getenv("TD_FIXTURES");
    if (env && *env)
        snprintf(base, sizeof base, "%s", env);
    else {
        /* default: the repository's tests/fixtures, found from this file's path */
        snprintf(base, sizeof base, "%s", __FILE__);
        char *p = strstr(base, "/tests/fuzz/");
        if (p)
            snprintf(p, sizeof base - (size_t)(p - base), "/tests/fixtures");
    }
    td_ctx *ctx = td_ctx_new();
    for (size_t i = 0; i < N_FIX; i++) {
        char dir[4400];
        snprintf(dir, sizeof dir, "%s/hf/%s", base, FIXTURES[i]);
        if (td_tokenizer_load(ctx, dir, &fix_tok[i]) != TD_OK)
            fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", dir, td_error_message(ctx));
    }
    td_ctx_free(ctx);
}

static void exercise(td_ctx *ctx, const td_tokenizer *tok, const char *a, size_t al, const char *b, size_t bl) {
    td_encoding e;
    td_tok_options o;
    td_tokenizer_default_options(tok, &o);
    o.truncation = false;
    if (td_tokenizer_encode(ctx, tok, a, al, b, bl, &o, &e) == TD_OK) {
        char *d = NULL;
        if (td_tokenizer_decode(ctx, tok, e.ids, e.len, true, &d) == TD_OK)
            free(d);
        for (size_t i = 0; i < e.len; i++)
            if (e.offsets[2 * i] > e.offsets[2 * i + 1])
                __builtin_trap(); /* offsets must be ordered */
        td_encoding_free(&e);
    }
    const char *rows[2] = {a, b ? b : a};
    size_t lens[2] = {al, b ? bl : al};
    o.truncation = true;
    o.max_length = 8;
    o.padding = TD_PAD_FIXED;
    o.pad_length = 9;
    td_batch bt;
    if (td_tokenizer_encode_batch(ctx, tok, rows, lens, NULL, NULL, 2, &o, &bt) == TD_OK)
        td_batch_free(&bt);
}

static char *b64(const uint8_t *d, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(4 * (n / 3 + 1) + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        o[k++] = tab[(v >> 18) & 63];
        o[k++] = tab[(v >> 12) & 63];
        o[k++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        o[k++] = i + 2 < n ? tab[v & 63] : '=';
    }
    o[k] = 0;
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    td_ctx *ctx = td_ctx_new();
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] == 0) {
        td_tokenizer *tok = NULL;
        if (td_tokenizer_load_json(ctx, rest, n, NULL, 0, "fuzz", &tok) == TD_OK) {
            const char *t = "Hello, world! h\xc3\xa9llo  \xe6\x97\xa5\xe6\x9c\xac <s> 123";
            exercise(ctx, tok, t, strlen(t), "pair text", 9);
            exercise(ctx, tok, "", 0, NULL, 0);
            td_tokenizer_free(tok);
        }
    } else if (data[0] == 1) {
        char *enc = b64(data + 1, n);
        size_t cap = strlen(enc) + 512;
        char *json = malloc(cap);
        int len = snprintf(json, cap,
                           "{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"%s\"},"
                           "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\"},"
                           "\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0],[\"a\",-1],"
                           "[\"\\u2581\",-2],[\"b\",-3]]}}",
                           enc);
        td_tokenizer *tok = NULL;
        if (td_tokenizer_load_json(ctx, json, (size_t)len, NULL, 0, "fuzz", &tok) == TD_OK) {
            const char *t = "a b \xef\xbc\xa1\xef\xac\x81 e\xcc\x81 \xe2\x80\x8b x";
            exercise(ctx, tok, t, strlen(t), NULL, 0);
            td_tokenizer_free(tok);
        }
        free(json);
        free(enc);
    } else {
        load_fixtures();
        const char *sep = memchr(rest, 0xFF, n);
        size_t al = sep ? (size_t)(sep - rest) : n;
        const char *b = sep ? sep + 1 : NULL;
        size_t bl = sep ? n - al - 1 : 0;
        for (size_t i = 0; i < N_FIX; i++)
            if (fix_tok[i])
                exercise(ctx, fix_tok[i], rest, al, b, bl);
    }
    td_ctx_free(ctx);
    return 0;
}
