/* A GGUF file's tokenizer (tokenizer.ggml.*) as the Hugging Face tokenizer.json
 * that describes the same byte-level BPE: vocabulary = tokenizer.ggml.tokens (ids
 * are positions), merges = tokenizer.ggml.merges ("a b", in rank order), control
 * and user-defined tokens as added tokens, the pre-tokenizer chosen by
 * tokenizer.ggml.pre as llama.cpp's converter chose it from the HF file (with
 * Qwen2's NFC normalizer, Llama-3's ignore_merges), tokenizer.ggml.add_bos_token /
 * add_eos_token as the TemplateProcessing post-processor HF builds from the same
 * flags (BOS on by default for Llama-3, as llama.cpp and its tokenizer.json). Loading
 * that JSON with tdeploy's HF-exact tokenizer gives the ids HF would give. */
#define _GNU_SOURCE
#include "gguf/gguf_tokenizer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* llama.cpp token types (llama_token_type) */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static cJSON *byte_level(bool use_regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", false);
    cJSON_AddBoolToObject(o, "trim_offsets", true);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

static cJSON *split_isolated(const char *regex) {
    cJSON *o = cJSON_CreateObject(), *p = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "Split");
    cJSON_AddStringToObject(p, "Regex", regex);
    cJSON_AddItemToObject(o, "pattern", p);
    cJSON_AddStringToObject(o, "behavior", "Isolated");
    cJSON_AddBoolToObject(o, "invert", false);
    return o;
}

static cJSON *sequence(cJSON *a, cJSON *b) {
    cJSON *o = cJSON_CreateObject(), *l = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "type", "Sequence");
    cJSON_AddItemToArray(l, a);
    cJSON_AddItemToArray(l, b);
    cJSON_AddItemToObject(o, "pretokenizers", l);
    return o;
}

/* The pre-tokenizer of the HF tokenizers llama.cpp labels with tokenizer.ggml.pre. */
/* Llama-3's labels (llama.cpp's LLAMA_VOCAB_PRE_TYPE_LLAMA3). Its tokenizer.json differs from the other byte-level
 * BPEs in two more ways that llama.cpp follows too: BPE ignore_merges (a pre-token that is itself in the vocabulary
 * is taken whole) and a TemplateProcessing that adds <|begin_of_text|> (llama.cpp: add_bos unless the file says
 * otherwise). */
static bool llama3_pre(const char *pre) {
    return pre && (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "llama-v3"));
}

static cJSON *pre_tokenizer(const char *pre) {
    if (!pre || !strcmp(pre, "default") || !strcmp(pre, "gpt2") || !strcmp(pre, "gpt-2"))
        return byte_level(true);
    if (!strcmp(pre, "smollm")) {
        cJSON *digits = cJSON_CreateObject();
        cJSON_AddStringToObject(digits, "type", "Digits");
        cJSON_AddBoolToObject(digits, "individual_digits", true);
        return sequence(digits, byte_level(true));
    }
    if (llama3_pre(pre))
        return sequence(split_isolated("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                       "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
                        byte_level(false));
    if (!strcmp(pre, "qwen2"))
        return sequence(split_isolated("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                       "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
                        byte_level(false));
    return NULL;
}

/* llama.cpp's converter writes tokenizer.ggml.add_bos_token / add_eos_token from the HF tokenizer's
 * add_bos_token / add_eos_token; HF applies them through a TemplateProcessing post-processor (Llama's
 * update_post_processor): single "bos? $A eos?", pair "bos? $A eos? bos? $B:1 eos?". */
static bool flag(const td_gguf *f, const char *key, bool dflt) {
    const td_gguf_kv *kv = td_gguf_find(f, key);
    return kv && kv->type == TD_GGUF_BOOL ? kv->v.b : dflt;
}

/* The token string of the id stored under key, or NULL (with a message) when the id is absent or not a token. */
static td_status special_token(td_ctx *ctx, const td_gguf *f, const td_gguf_kv *tokens, const char *key,
                               char **out) {
    int64_t id = -1;
    td_status st = td_gguf_get_int(ctx, f, key, &id);
    if (st != TD_OK)
        return td_wrap(ctx, "the tokenizer adds this token to every prompt (tokenizer.ggml.add_%s_token%s)",
                       strstr(key, "bos") ? "bos" : "eos", strstr(key, "bos") ? ", on by default for Llama-3" : "");
    if (id < 0 || (uint64_t)id >= tokens->count)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: %s %lld is not a token id (the vocabulary has %llu tokens)", f->path,
                       key, (long long)id, (unsigned long long)tokens->count);
    *out = strndup(tokens->strs[id].s, (size_t)tokens->strs[id].len);
    return *out ? TD_OK : td_fail_oom(ctx, (size_t)tokens->strs[id].len, "a special token");
}

static cJSON *piece(const char *kind, const char *id, int type_id) {
    cJSON *o = cJSON_CreateObject(), *in = cJSON_AddObjectToObject(o, kind);
    cJSON_AddStringToObject(in, "id", id);
    cJSON_AddNumberToObject(in, "type_id", type_id);
    return o;
}

static void add_pieces(cJSON *list, const char *bos, const char *eos, const char *seq, int type_id) {
    if (bos)
        cJSON_AddItemToArray(list, piece("SpecialToken", bos, type_id));
    cJSON_AddItemToArray(list, piece("Sequence", seq, type_id));
    if (eos)
        cJSON_AddItemToArray(list, piece("SpecialToken", eos, type_id));
}

static void add_special(cJSON *map, const char *tok, int64_t id) {
    if (!tok || cJSON_GetObjectItemCaseSensitive(map, tok))
        return;
    cJSON *o = cJSON_AddObjectToObject(map, tok), *ids = cJSON_AddArrayToObject(o, "ids");
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens");
    cJSON_AddStringToObject(o, "id", tok);
    cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)id));
    cJSON_AddItemToArray(toks, cJSON_CreateString(tok));
}

/* The post_processor: JSON null when neither flag is set. */
static td_status post_processor(td_ctx *ctx, const td_gguf *f, const td_gguf_kv *tokens, bool llama3,
                                cJSON **out) {
    bool add_bos = flag(f, "tokenizer.ggml.add_bos_token", llama3);
    bool add_eos = flag(f, "tokenizer.ggml.add_eos_token", false);
    *out = NULL;
    if (!add_bos && !add_eos) {
        *out = cJSON_CreateNull();
        return *out ? TD_OK : td_fail_oom(ctx, 16, "the GGUF tokenizer");
    }
    char *bos = NULL, *eos = NULL;
    int64_t bos_id = -1, eos_id = -1;
    td_status st = TD_OK;
    if (add_bos && (st = special_token(ctx, f, tokens, "tokenizer.ggml.bos_token_id", &bos)) == TD_OK)
        st = td_gguf_get_int(ctx, f, "tokenizer.ggml.bos_token_id", &bos_id);
    if (st == TD_OK && add_eos && (st = special_token(ctx, f, tokens, "tokenizer.ggml.eos_token_id", &eos)) == TD_OK)
        st = td_gguf_get_int(ctx, f, "tokenizer.ggml.eos_token_id", &eos_id);
    if (st == TD_OK) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "TemplateProcessing");
        cJSON *single = cJSON_AddArrayToObject(o, "single"), *pair = cJSON_AddArrayToObject(o, "pair");
        cJSON *map = cJSON_AddObjectToObject(o, "special_tokens");
        if (single && pair && map) {
            add_pieces(single, bos, eos, "A", 0);
            add_pieces(pair, bos, eos, "A", 0);
            add_pieces(pair, bos, eos, "B", 1);
            add_special(map, bos, bos_id);
            add_special(map, eos, eos_id);
        }
        *out = o;
        if (!o || !single || !pair || !map)
            st = td_fail_oom(ctx, 256, "the GGUF tokenizer's post-processor");
    }
    free(bos);
    free(eos);
    return st;
}

static int by_token(const void *a, const void *b, void *strs) {
    const td_gguf_str *x = (const td_gguf_str *)strs + *(const uint64_t *)a;
    const td_gguf_str *y = (const td_gguf_str *)strs + *(const uint64_t *)b;
    size_t n = (size_t)(x->len < y->len ? x->len : y->len);
    int c = n ? memcmp(x->s, y->s, n) : 0;
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Every token a distinct string without NUL bytes: a vocabulary maps strings to ids, and a repeated string
 * would silently take one of its ids (HF keeps the last, a C string the part before a NUL). */
static td_status check_tokens(td_ctx *ctx, const td_gguf *f, const td_gguf_kv *tokens) {
    uint64_t n = tokens->count;
    for (uint64_t i = 0; i < n; i++)
        if (memchr(tokens->strs[i].s, 0, (size_t)tokens->strs[i].len))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: token %llu of tokenizer.ggml.tokens contains a NUL byte",
                           f->path, (unsigned long long)i);
    uint64_t *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order)
        return td_fail_oom(ctx, (size_t)n * sizeof *order, "the GGUF vocabulary");
    for (uint64_t i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, (size_t)n, sizeof *order, by_token, tokens->strs);
    td_status st = TD_OK;
    for (uint64_t i = 1; i < n && st == TD_OK; i++) {
        const td_gguf_str *a = &tokens->strs[order[i - 1]], *b = &tokens->strs[order[i]];
        if (a->len == b->len && (a->len == 0 || !memcmp(a->s, b->s, (size_t)a->len))) {
            uint64_t lo = order[i - 1] < order[i] ? order[i - 1] : order[i], hi = order[i - 1] ^ order[i] ^ lo;
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: tokenizer.ggml.tokens holds \"%.*s\" twice (ids %llu and %llu); a "
                         "vocabulary needs distinct tokens", f->path, (int)(a->len > 64 ? 64 : a->len), a->s,
                         (unsigned long long)lo, (unsigned long long)hi);
        }
    }
    free(order);
    return st;
}

static cJSON *str_item(const td_gguf_str *s) {
    char *c = strndup(s->s, (size_t)s->len);
    cJSON *o = c ? cJSON_CreateString(c) : NULL;
    free(c);
    return o;
}

td_status td_gguf_tokenizer_json(td_ctx *ctx, const td_gguf *f, char **out) {
    *out = NULL;
    const td_gguf_kv *model = td_gguf_find(f, "tokenizer.ggml.model");
    const td_gguf_kv *tokens = td_gguf_find(f, "tokenizer.ggml.tokens");
    const td_gguf_kv *merges = td_gguf_find(f, "tokenizer.ggml.merges");
    const td_gguf_kv *types = td_gguf_find(f, "tokenizer.ggml.token_type");
    const td_gguf_kv *pre_kv = td_gguf_find(f, "tokenizer.ggml.pre");
    if (!model || !tokens)
        return td_fail(ctx, TD_ERR_NOT_FOUND, "%s has no tokenizer (tokenizer.ggml.model / tokens)", f->path);
    if (model->type != TD_GGUF_STRING || model->str.len != 4 || memcmp(model->str.s, "gpt2", 4) != 0)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model \"%.*s\" is not supported (only gpt2, "
                       "byte-level BPE)", f->path, model->type == TD_GGUF_STRING ? (int)(model->str.len > 32 ? 32 :
                       model->str.len) : 1, model->type == TD_GGUF_STRING ? model->str.s : "?");
    if (tokens->type != TD_GGUF_ARRAY || !tokens->strs || (merges && (merges->type != TD_GGUF_ARRAY || !merges->strs)))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: tokenizer.ggml.tokens and .merges must be string arrays", f->path);
    if (types && (types->type != TD_GGUF_ARRAY || types->strs || types->count != tokens->count))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: tokenizer.ggml.token_type must be an integer array as long as the "
                       "tokens", f->path);
    TD_TRY(check_tokens(ctx, f, tokens));
    char *pre = NULL;
    if (pre_kv && pre_kv->type == TD_GGUF_STRING)
        pre = strndup(pre_kv->str.s, (size_t)pre_kv->str.len);
    cJSON *pt = pre_tokenizer(pre);
    if (!pt) {
        td_status st = td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre \"%.32s\" is not supported "
                               "(default, gpt2, smollm, llama-bpe/llama3, qwen2)", f->path, pre ? pre : "?");
        free(pre);
        return st;
    }
    /* Qwen2's tokenizer.json normalizes to NFC before its split; the other byte-level BPEs have no normalizer */
    bool nfc = pre && !strcmp(pre, "qwen2"), llama3 = llama3_pre(pre);
    free(pre);
    cJSON *post = NULL;
    td_status pst = post_processor(ctx, f, tokens, llama3, &post);
    if (pst != TD_OK) {
        cJSON_Delete(pt);
        return pst;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    if (nfc)
        cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "normalizer"), "type", "NFC");
    else
        cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", pt);
    cJSON_AddItemToObject(root, "post_processor", post);
    cJSON_AddItemToObject(root, "decoder", byte_level(true));
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddBoolToObject(m, "fuse_unk", false);
    cJSON_AddBoolToObject(m, "byte_fallback", false);
    cJSON_AddBoolToObject(m, "ignore_merges", llama3);
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab");
    cJSON *ml = cJSON_AddArrayToObject(m, "merges");
    bool ok = root && added && m && vocab && ml;
    for (uint64_t i = 0; ok && i < tokens->count; i++) {
        char *tok = strndup(tokens->strs[i].s, (size_t)tokens->strs[i].len);
        ok = tok && cJSON_AddNumberToObject(vocab, tok, (double)i);
        int64_t tt = types ? td_gguf_array_int(types, i) : TT_NORMAL;
        if (ok && (tt == TT_CONTROL || tt == TT_USER_DEFINED)) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", tok);
            cJSON_AddBoolToObject(a, "single_word", false);
            cJSON_AddBoolToObject(a, "lstrip", false);
            cJSON_AddBoolToObject(a, "rstrip", false);
            cJSON_AddBoolToObject(a, "normalized", tt == TT_USER_DEFINED);
            cJSON_AddBoolToObject(a, "special", tt == TT_CONTROL);
            ok = cJSON_AddItemToArray(added, a);
        }
        free(tok);
    }
    for (uint64_t i = 0; ok && merges && i < merges->count; i++)
        ok = cJSON_AddItemToArray(ml, str_item(&merges->strs[i]));
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return td_fail_oom(ctx, (size_t)tokens->count * 32, "the GGUF tokenizer");
    *out = text;
    return TD_OK;
}

td_status td_gguf_tokenizer_load(td_ctx *ctx, const td_gguf *f, td_tokenizer **out) {
    char *json = NULL;
    TD_TRY(td_gguf_tokenizer_json(ctx, f, &json));
    td_status st = td_tokenizer_load_json(ctx, json, strlen(json), NULL, 0, f->path, out);
    free(json);
    return st;
}
