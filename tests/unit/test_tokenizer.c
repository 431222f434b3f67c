/* Tokenizer unit tests: malformed tokenizer.json gets a clear error (never a
 * crash), invalid UTF-8 text is refused with its byte offset, and the basic API
 * (encode, batch padding/truncation, id <-> token, decode) behaves. */
#include "tdeploy/tokenizer.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static td_status load_str(td_ctx *ctx, const char *json, td_tokenizer **out) {
    return td_tokenizer_load_json(ctx, json, strlen(json), NULL, 0, "test.json", out);
}

/* Loading must fail with `want` and a message containing `needle`. */
static void expect_load_error(const char *json, td_status want, const char *needle) {
    td_ctx *ctx = td_ctx_new();
    td_tokenizer *tok = NULL;
    td_status st = load_str(ctx, json, &tok);
    CHECK_MSG(st == want, "want %s, got %s (%s) for %.80s", td_status_string(want), td_status_string(st),
              td_error_message(ctx), json);
    CHECK_MSG(strstr(td_error_message(ctx), needle) != NULL, "message '%s' lacks '%s'", td_error_message(ctx),
              needle);
    CHECK(tok == NULL);
    td_tokenizer_free(tok);
    td_ctx_free(ctx);
}

#define WP_VOCAB "{\"[UNK]\":0,\"[CLS]\":1,\"[SEP]\":2,\"hello\":3,\"world\":4,\"##s\":5,\"[PAD]\":6,\"!\":7}"
#define WP_MODEL "{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"vocab\":" WP_VOCAB "}"
static const char *GOOD =
    "{\"normalizer\":{\"type\":\"BertNormalizer\",\"lowercase\":true},"
    "\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},"
    "\"post_processor\":{\"type\":\"BertProcessing\",\"sep\":[\"[SEP]\",2],\"cls\":[\"[CLS]\",1]},"
    "\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true},"
    "\"padding\":{\"strategy\":\"BatchLongest\",\"direction\":\"Right\",\"pad_id\":6,\"pad_type_id\":0,"
    "\"pad_token\":\"[PAD]\"},"
    "\"added_tokens\":[{\"id\":0,\"content\":\"[UNK]\",\"special\":true},{\"id\":1,\"content\":\"[CLS]\","
    "\"special\":true},{\"id\":2,\"content\":\"[SEP]\",\"special\":true},{\"id\":6,\"content\":\"[PAD]\","
    "\"special\":true}],"
    "\"model\":" WP_MODEL "}";

static void test_bad_json(void) {
    /* truncated file */
    char trunc[64];
    snprintf(trunc, sizeof trunc, "%.40s", GOOD);
    expect_load_error(trunc, TD_ERR_FORMAT, "invalid JSON");
    expect_load_error("[1,2]", TD_ERR_FORMAT, "top level");
    expect_load_error("{}", TD_ERR_FORMAT, "missing \"model\"");
    expect_load_error("{\"model\":{\"type\":\"FancyModel\",\"vocab\":{}}}", TD_ERR_UNSUPPORTED, "FancyModel");
    expect_load_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":-1}}}", TD_ERR_FORMAT, "'a' has id -1");
    expect_load_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":1e12}}}", TD_ERR_FORMAT, "'a' has id");
    expect_load_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0,\"b\":0}}}", TD_ERR_FORMAT,
                      "id 0 is used by two tokens");
    expect_load_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":[1]}}", TD_ERR_FORMAT, "must be an object");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a zz\"]}}",
                      TD_ERR_FORMAT, "'zz', which is not in the vocabulary");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}",
                      TD_ERR_FORMAT, "result 'ab' is not in the vocabulary");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"ab\"]}}", TD_ERR_FORMAT,
                      "not two tokens");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{\"a\":0},\"merges\":[]}}",
                      TD_ERR_UNSUPPORTED, "dropout");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"vocab\":{\"a\":0},\"merges\":[]}}",
                      TD_ERR_FORMAT, "unk_token '<unk>' is not in the vocabulary");
    expect_load_error("{\"model\":{\"type\":\"Unigram\",\"unk_id\":5,\"vocab\":[[\"a\",-1.0]]}}", TD_ERR_FORMAT,
                      "unk_id 5");
    expect_load_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\"]]}}", TD_ERR_FORMAT, "not [piece, score]");
    expect_load_error("{\"normalizer\":{\"type\":\"Mystery\"},\"model\":" WP_MODEL "}", TD_ERR_UNSUPPORTED,
                      "normalizer type 'Mystery'");
    expect_load_error("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":"
                      "\"Isolated\"},\"model\":" WP_MODEL "}",
                      TD_ERR_UNSUPPORTED, "cannot compile regex");
    expect_load_error("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":"
                      "\"Sideways\"},\"model\":" WP_MODEL "}",
                      TD_ERR_UNSUPPORTED, "Sideways");
    expect_load_error("{\"post_processor\":{\"type\":\"BertProcessing\",\"sep\":[\"[SEP]\",99],\"cls\":"
                      "[\"[CLS]\",1]},\"model\":" WP_MODEL "}",
                      TD_ERR_FORMAT, "token id 99");
    expect_load_error("{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
                      "{\"id\":\"[X]\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{}},\"model\":" WP_MODEL "}",
                      TD_ERR_FORMAT, "'[X]' is missing");
    expect_load_error("{\"added_tokens\":[{\"id\":99999999999,\"content\":\"x\"}],\"model\":" WP_MODEL "}",
                      TD_ERR_FORMAT, "added_tokens[0]");
    expect_load_error("{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"AAAA\"},"
                      "\"model\":" WP_MODEL "}",
                      TD_ERR_FORMAT, "precompiled_charsmap");
    /* trie size claims 4096 bytes, blob has 4 */
    expect_load_error("{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"ABAAAAAAAAA=\"},"
                      "\"model\":" WP_MODEL "}",
                      TD_ERR_FORMAT, "exceeds");
    expect_load_error("{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"!!!!\"},"
                      "\"model\":" WP_MODEL "}",
                      TD_ERR_FORMAT, "base64");
    expect_load_error("{\"padding\":{\"strategy\":\"BatchLongest\",\"pad_id\":500},\"model\":" WP_MODEL "}",
                      TD_ERR_FORMAT, "pad_id");
    expect_load_error("{\"truncation\":{\"max_length\":\"ten\"},\"model\":" WP_MODEL "}", TD_ERR_FORMAT,
                      "max_length");
    /* missing files */
    td_ctx *ctx = td_ctx_new();
    td_tokenizer *tok = NULL;
    CHECK(td_tokenizer_load(ctx, "/nonexistent/dir/tokenizer.json", &tok) == TD_ERR_NOT_FOUND);
    CHECK(strstr(td_error_message(ctx), "/nonexistent/dir/tokenizer.json") != NULL);
    td_ctx_free(ctx);
}

static void test_api(void) {
    td_ctx *ctx = td_ctx_new();
    td_tokenizer *tok = NULL;
    td_status st = load_str(ctx, GOOD, &tok);
    CHECK_MSG(st == TD_OK, "load: %s", td_error_message(ctx));
    if (st)
        goto out;
    CHECK(td_tokenizer_vocab_size(tok) == 8);
    CHECK(td_tokenizer_token_to_id(tok, "world") == 4);
    CHECK(td_tokenizer_token_to_id(tok, "nope") == -1);
    CHECK(!strcmp(td_tokenizer_id_to_token(tok, 5), "##s"));
    CHECK(td_tokenizer_id_to_token(tok, 99) == NULL);
    CHECK(td_tokenizer_id_to_token(tok, -1) == NULL);

    td_encoding e;
    const char *text = "Hello WORLDS!";
    st = td_tokenizer_encode(ctx, tok, text, strlen(text), NULL, 0, NULL, &e);
    CHECK(st == TD_OK);
    int64_t want[] = {1, 3, 4, 5, 7, 2};
    CHECK(e.len == 6);
    for (size_t i = 0; i < e.len && i < 6; i++)
        CHECK_MSG(e.ids[i] == want[i], "id %zu: %lld", i, (long long)e.ids[i]);
    if (e.len == 6) {
        CHECK(e.offsets[2] == 0 && e.offsets[3] == 5);   /* hello */
        CHECK(e.offsets[4] == 6 && e.offsets[5] == 11);  /* world */
        CHECK(e.offsets[6] == 11 && e.offsets[7] == 12); /* ##s */
        CHECK(e.special_tokens_mask[0] == 1 && e.special_tokens_mask[1] == 0);
        CHECK(!strcmp(e.tokens[3], "##s"));
    }
    char *d = NULL;
    st = td_tokenizer_decode(ctx, tok, e.ids, e.len, true, &d);
    CHECK(st == TD_OK && d && !strcmp(d, "hello worlds!"));
    free(d);
    d = NULL;
    st = td_tokenizer_decode(ctx, tok, e.ids, e.len, false, &d);
    CHECK(st == TD_OK && d && !strcmp(d, "[CLS] hello worlds! [SEP]"));
    free(d);
    td_encoding_free(&e);
    td_encoding_free(&e); /* zeroed: harmless */

    int64_t bad_ids[] = {3, 1000};
    d = NULL;
    CHECK(td_tokenizer_decode(ctx, tok, bad_ids, 2, true, &d) == TD_ERR_INVALID_ARGUMENT && d == NULL);

    /* invalid UTF-8: error with the byte offset */
    const char bad[] = {'h', 'i', ' ', (char)0xC3, (char)0x28, 0};
    st = td_tokenizer_encode(ctx, tok, bad, 5, NULL, 0, NULL, &e);
    CHECK(st == TD_ERR_INVALID_ARGUMENT);
    CHECK_MSG(strstr(td_error_message(ctx), "byte offset 3") != NULL, "%s", td_error_message(ctx));
    const char bad2[] = {'o', 'k', (char)0xED, (char)0xA0, (char)0x80, 0}; /* surrogate */
    CHECK(td_tokenizer_encode(ctx, tok, "ok", 2, bad2, 5, NULL, &e) == TD_ERR_INVALID_ARGUMENT);
    CHECK(strstr(td_error_message(ctx), "pair text") != NULL);

    /* batch: padding to longest, left padding, truncation */
    const char *rows[] = {"hello", "hello world worlds", ""};
    td_tok_options o;
    td_tokenizer_default_options(tok, &o);
    CHECK(o.padding == TD_PAD_BATCH_LONGEST && o.pad_id == 6);
    td_batch b;
    st = td_tokenizer_encode_batch(ctx, tok, rows, NULL, NULL, NULL, 3, &o, &b);
    CHECK(st == TD_OK && b.batch == 3 && b.seq_len == 6);
    if (!st) {
        CHECK(b.input_ids[0] == 1 && b.input_ids[1] == 3 && b.input_ids[2] == 2 && b.input_ids[3] == 6);
        CHECK(b.attention_mask[2] == 1 && b.attention_mask[3] == 0);
        CHECK(b.input_ids[12] == 1 && b.input_ids[13] == 2 && b.attention_mask[14] == 0);
    }
    td_batch_free(&b);
    o.pad_left = true;
    o.truncation = true;
    o.max_length = 4;
    o.pad_to_multiple_of = 3;
    st = td_tokenizer_encode_batch(ctx, tok, rows, NULL, NULL, NULL, 3, &o, &b);
    CHECK(st == TD_OK && b.seq_len == 6);
    if (!st) {
        /* row 1 truncated to [CLS] hello world [SEP], left-padded to 6 */
        int64_t w1[] = {6, 6, 1, 3, 4, 2};
        for (int i = 0; i < 6; i++)
            CHECK(b.input_ids[6 + i] == w1[i]);
        CHECK(b.attention_mask[6] == 0 && b.attention_mask[8] == 1);
    }
    td_batch_free(&b);
    td_batch_free(&b);

    /* pair truncation: only_second cannot shrink a too-short second text */
    o.padding = TD_PAD_NONE;
    o.max_length = 5;
    o.trunc_strategy = TD_TRUNC_ONLY_SECOND;
    st = td_tokenizer_encode(ctx, tok, "hello world hello world", 23, "hello", 5, &o, &e);
    CHECK(st == TD_ERR_INVALID_ARGUMENT && strstr(td_error_message(ctx), "too short"));
    o.trunc_strategy = TD_TRUNC_LONGEST_FIRST;
    st = td_tokenizer_encode(ctx, tok, "hello world hello world", 23, "hello", 5, &o, &e);
    CHECK(st == TD_OK && e.len == 5);
    if (!st) {
        CHECK(e.type_ids[0] == 0 && e.type_ids[3] == 1 && e.type_ids[4] == 1);
        CHECK(e.sequence_ids[1] == 0 && e.sequence_ids[3] == 1 && e.sequence_ids[4] == -1);
    }
    td_encoding_free(&e);
    o.max_length = 2; /* smaller than the 3 specials of a pair */
    CHECK(td_tokenizer_encode(ctx, tok, "a", 1, "b", 1, &o, &e) == TD_ERR_INVALID_ARGUMENT);
    o.stride = 3;
    o.max_length = 5; /* 3 tokens after [CLS]/[SEP]: stride 3 is not smaller, when a cut happens */
    CHECK(td_tokenizer_encode(ctx, tok, "hello world hello world", 23, NULL, 0, &o, &e) == TD_ERR_INVALID_ARGUMENT);
    CHECK(strstr(td_error_message(ctx), "stride") != NULL);
    CHECK(td_tokenizer_encode(ctx, tok, "hello", 5, NULL, 0, &o, &e) == TD_OK); /* no cut, no error (as HF) */
    td_encoding_free(&e);
out:
    td_tokenizer_free(tok);
    td_tokenizer_free(NULL);
    td_ctx_free(ctx);
}

/* Every fixture tokenizer survives hostile text: control bytes, long runs, lone combining marks. */
static void test_fixture_hostile_text(void) {
    const char *fx = td_test_env("TD_FIXTURES", "../tests/fixtures");
    const char *names[] = {"bert-base", "roberta-seqcls", "xlmr-base", "gpt2-lm"};
    char *big = malloc(200001);
    for (int i = 0; i < 200000; i++)
        big[i] = "a\xcc\x81 \t<s>"[i % 9];
    big[200000] = 0;
    /* keep it valid UTF-8: the pattern above is 9 bytes with a complete 2-byte char */
    for (size_t m = 0; m < sizeof names / sizeof names[0]; m++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/hf/%s", fx, names[m]);
        td_ctx *ctx = td_ctx_new();
        td_tokenizer *tok = NULL;
        if (td_tokenizer_load(ctx, dir, &tok) != TD_OK) {
            CHECK_MSG(0, "load %s: %s", dir, td_error_message(ctx));
            td_ctx_free(ctx);
            continue;
        }
        const char *texts[] = {"\x01\x02\x7f", "\xcc\x81\xcc\x81", "   ", "<s></s><pad>", big};
        for (size_t t = 0; t < 5; t++) {
            td_encoding e;
            td_status st = td_tokenizer_encode(ctx, tok, texts[t], strlen(texts[t]), NULL, 0, NULL, &e);
            CHECK_MSG(st == TD_OK, "%s text %zu: %s", names[m], t, td_error_message(ctx));
            for (size_t i = 0; st == TD_OK && i < e.len; i++)
                CHECK(e.offsets[2 * i] <= e.offsets[2 * i + 1] && (size_t)e.offsets[2 * i + 1] <= strlen(texts[t]));
            td_encoding_free(&e);
        }
        td_tokenizer_free(tok);
        td_ctx_free(ctx);
    }
    free(big);
}

/* Hostile sizes: long words must stay near-linear (a hang would time the test out). */
static void test_long_words(void) {
    td_ctx *ctx = td_ctx_new();
    size_t n = 300000;
    char *word = malloc(n + 1);
    memset(word, 'a', n);
    word[n] = 0;
    td_tokenizer *tok = NULL;
    /* WordPiece with an absurd max_input_chars_per_word */
    const char *wp = "{\"pre_tokenizer\":{\"type\":\"WhitespaceSplit\"},\"model\":{\"type\":\"WordPiece\","
                     "\"unk_token\":\"[UNK]\",\"max_input_chars_per_word\":1000000000,"
                     "\"vocab\":{\"[UNK]\":0,\"aaa\":1,\"##aaa\":2,\"##a\":3}}}";
    td_status st = load_str(ctx, wp, &tok);
    CHECK_MSG(st == TD_OK, "%s", td_error_message(ctx));
    td_encoding e = {0};
    if (!st) {
        st = td_tokenizer_encode(ctx, tok, word, n, NULL, 0, NULL, &e);
        CHECK(st == TD_OK && e.len == n / 3);
        CHECK(st == TD_OK && e.len > 1 && e.ids[0] == 1 && e.ids[1] == 2);
        td_encoding_free(&e);
    }
    td_tokenizer_free(tok);
    /* BPE whose merges collapse runs: a a -> aa, aa aa -> aaaa (heap-ordered merges on a long word) */
    const char *bpe = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1,\"aaaa\":2},"
                      "\"merges\":[\"a a\",\"aa aa\"]}}";
    st = load_str(ctx, bpe, &tok);
    CHECK_MSG(st == TD_OK, "%s", td_error_message(ctx));
    if (!st) {
        st = td_tokenizer_encode(ctx, tok, word, n, NULL, 0, NULL, &e);
        CHECK(st == TD_OK && e.len == n / 4);
        CHECK(st == TD_OK && e.len > 0 && e.ids[0] == 2 && e.offsets[2 * (e.len - 1) + 1] == (int64_t)n);
        td_encoding_free(&e);
    }
    td_tokenizer_free(tok);
    free(word);
    td_ctx_free(ctx);
}

/* Overflowing windows through the C API: off by default, overlapping by the stride, owned and freed by the
 * encoding; a pair with both texts cut is refused with TD_ERR_UNSUPPORTED and a zeroed encoding. */
static void test_overflowing(void) {
    const char *fx = td_test_env("TD_FIXTURES", "../tests/fixtures");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/hf/bert-base", fx);
    td_ctx *ctx = td_ctx_new();
    td_tokenizer *tok = NULL;
    if (td_tokenizer_load(ctx, dir, &tok) != TD_OK) {
        CHECK_MSG(0, "load %s: %s", dir, td_error_message(ctx));
        td_ctx_free(ctx);
        return;
    }
    const char *text = "the quick brown fox jumps over the lazy dog again and again until the story ends";
    td_tok_options o;
    td_tokenizer_default_options(tok, &o);
    CHECK(!o.return_overflowing);
    o.truncation = true;
    o.max_length = 8;
    o.stride = 2;
    o.padding = TD_PAD_NONE;
    td_encoding e;
    CHECK(td_tokenizer_encode(ctx, tok, text, strlen(text), NULL, 0, &o, &e) == TD_OK);
    CHECK(e.len == 8 && e.n_overflowing == 0 && e.overflowing == NULL);
    td_encoding_free(&e);
    o.return_overflowing = true;
    td_status st = td_tokenizer_encode(ctx, tok, text, strlen(text), NULL, 0, &o, &e);
    CHECK_MSG(st == TD_OK, "%s", td_error_message(ctx));
    CHECK(st != TD_OK || (e.n_overflowing > 0 && e.overflowing));
    for (size_t k = 0; st == TD_OK && k < e.n_overflowing; k++) {
        const td_encoding *prev = k ? &e.overflowing[k - 1] : &e, *r = &e.overflowing[k];
        CHECK(r->len >= 3 && r->len <= 8 && r->overflowing == NULL && r->special_tokens_mask[0] == 1);
        /* window k starts with the last `stride` tokens of window k-1 (inside [CLS] ... [SEP]) */
        CHECK(prev->len == 8 && r->ids[1] == prev->ids[5] && r->ids[2] == prev->ids[6]);
    }
    td_encoding_free(&e);
    td_encoding_free(&e); /* a freed (zeroed) encoding is harmless */
    o.trunc_strategy = TD_TRUNC_LONGEST_FIRST;
    o.max_length = 12;
    st = td_tokenizer_encode(ctx, tok, text, strlen(text), text, strlen(text), &o, &e);
    CHECK(st == TD_ERR_UNSUPPORTED && strstr(td_error_message(ctx), "both texts"));
    CHECK(e.len == 0 && e.ids == NULL && e.overflowing == NULL);
    td_tokenizer_free(tok);
    td_ctx_free(ctx);
}

int main(void) {
    test_long_words();
    test_overflowing();
    test_bad_json();
    test_api();
    test_fixture_hostile_text();
    return td_test_finish("test_tokenizer");
}
