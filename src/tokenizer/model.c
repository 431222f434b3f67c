/* Model section of tokenizer.json: vocabulary loading (validated ids) and
 * dispatch to WordPiece / BPE / Unigram. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* Largest id we accept: far above any real vocabulary, small enough that
 * id-indexed tables stay sane when a file lies. */
#define TD_MAX_VOCAB (1u << 24)

static td_status vocab_alloc(td_ctx *ctx, td_vocab *v, size_t n) {
    v->n = n;
    v->tok = calloc(n ? n : 1, sizeof *v->tok);
    v->toklen = calloc(n ? n : 1, sizeof *v->toklen);
    if (!v->tok || !v->toklen)
        return td_fail_oom(ctx, n * sizeof(char *), "vocabulary");
    return TD_OK;
}

/* {"token": id, ...} */
static td_status parse_dict_vocab(td_ctx *ctx, const cJSON *vj, td_vocab *v, const char *where) {
    if (!cJSON_IsObject(vj))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"vocab\" must be an object mapping token -> id", where);
    size_t maxid = 0, count = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vj) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= TD_MAX_VOCAB ||
            it->valuedouble != (double)(int64_t)it->valuedouble)
            return td_fail(ctx, TD_ERR_FORMAT, "%s: vocab entry '%s' has id %g, expected an integer in [0, %u)",
                           where, it->string ? it->string : "?", cJSON_IsNumber(it) ? it->valuedouble : -1.0,
                           TD_MAX_VOCAB);
        size_t id = (size_t)it->valuedouble;
        if (id > maxid)
            maxid = id;
        count++;
    }
    TD_TRY(vocab_alloc(ctx, v, count ? maxid + 1 : 0));
    cJSON_ArrayForEach(it, vj) {
        TD_TRY(td_vocab_set(ctx, v, it->string, strlen(it->string), (size_t)it->valuedouble, where));
    }
    return TD_OK;
}

/* [["piece", score], ...] */
static td_status parse_unigram_vocab(td_ctx *ctx, const cJSON *vj, td_tok_model *m) {
    if (!cJSON_IsArray(vj))
        return td_fail(ctx, TD_ERR_FORMAT, "model Unigram: \"vocab\" must be an array of [piece, score]");
    size_t n = (size_t)cJSON_GetArraySize(vj);
    if (n >= TD_MAX_VOCAB)
        return td_fail(ctx, TD_ERR_FORMAT, "model Unigram: %zu vocab entries is more than supported (%u)", n,
                       TD_MAX_VOCAB);
    TD_TRY(vocab_alloc(ctx, &m->vocab, n));
    m->scores = calloc(n ? n : 1, sizeof *m->scores);
    if (!m->scores)
        return td_fail_oom(ctx, n, "Unigram scores");
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vj) {
        const cJSON *p = cJSON_GetArrayItem(it, 0), *s = cJSON_GetArrayItem(it, 1);
        if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 || !cJSON_IsString(p) || !cJSON_IsNumber(s))
            return td_fail(ctx, TD_ERR_FORMAT, "model Unigram: vocab entry %zu is not [piece, score]", i);
        m->scores[i] = s->valuedouble;
        TD_TRY(td_vocab_set(ctx, &m->vocab, p->valuestring, strlen(p->valuestring), i, "model Unigram"));
        i++;
    }
    return TD_OK;
}

td_status td_tok_model_parse(td_ctx *ctx, const cJSON *j, td_tok_model **out) {
    *out = NULL;
    if (!cJSON_IsObject(j))
        return td_fail(ctx, TD_ERR_FORMAT, "tokenizer.json: \"model\" must be an object");
    const char *type = NULL;
    const cJSON *t = td_json_get(j, "type");
    if (t) {
        if (!cJSON_IsString(t))
            return td_fail(ctx, TD_ERR_FORMAT, "model: \"type\" must be a string");
        type = t->valuestring;
    } else if (cJSON_IsArray(td_json_get(j, "vocab")))
        type = "Unigram"; /* older files omit the type; infer it the way HF does */
    else if (td_json_get(j, "merges"))
        type = "BPE";
    else if (td_json_get(j, "continuing_subword_prefix") || td_json_get(j, "max_input_chars_per_word"))
        type = "WordPiece";
    else
        return td_fail(ctx, TD_ERR_FORMAT, "model: no \"type\" and the fields do not identify the model");
    td_tok_model *m = calloc(1, sizeof *m);
    if (!m)
        return td_fail_oom(ctx, sizeof *m, "model");
    m->unk_id = -1;
    td_status st;
    const cJSON *vj = td_json_get(j, "vocab");
    if (!vj) {
        st = td_fail(ctx, TD_ERR_FORMAT, "model %s: missing \"vocab\"", type);
    } else if (!strcmp(type, "WordPiece")) {
        m->type = TD_TOK_MODEL_WORDPIECE;
        st = parse_dict_vocab(ctx, vj, &m->vocab, "model WordPiece");
        if (!st)
            st = td_wordpiece_parse(ctx, j, m);
    } else if (!strcmp(type, "BPE")) {
        m->type = TD_TOK_MODEL_BPE;
        st = parse_dict_vocab(ctx, vj, &m->vocab, "model BPE");
        if (!st)
            st = td_bpe_parse(ctx, j, m);
    } else if (!strcmp(type, "Unigram")) {
        m->type = TD_TOK_MODEL_UNIGRAM;
        st = parse_unigram_vocab(ctx, vj, m);
        if (!st)
            st = td_unigram_parse(ctx, j, m);
    } else {
        st = td_fail(ctx, TD_ERR_UNSUPPORTED,
                     "model type '%s' is not supported (supported: WordPiece, BPE, Unigram)", type);
    }
    if (st) {
        td_tok_model_free(m);
        return st;
    }
    *out = m;
    return TD_OK;
}

void td_tok_model_free(td_tok_model *m) {
    if (!m)
        return;
    td_vocab_free(&m->vocab);
    free(m->prefix);
    free(m->suffix);
    td_pairmap_free(&m->merges);
    td_bpe_cache_free(m->cache);
    free(m->scores);
    free(m);
}

td_status td_tok_model_tokenize(td_ctx *ctx, const td_tok_model *m, td_work *w, const char *s, size_t n) {
    switch (m->type) {
    case TD_TOK_MODEL_WORDPIECE: return td_wordpiece_tokenize(ctx, m, w, s, n);
    case TD_TOK_MODEL_BPE: return td_bpe_tokenize(ctx, m, w, s, n);
    case TD_TOK_MODEL_UNIGRAM: return td_unigram_tokenize(ctx, m, w, s, n);
    }
    return td_fail(ctx, TD_ERR_INTERNAL, "model type %d not handled", (int)m->type);
}
