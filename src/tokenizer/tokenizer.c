/* The tokenizer: load tokenizer.json (+ tokenizer_config.json) and run the HF
 * pipeline per sequence: added tokens -> normalizer -> normalized added tokens
 * -> pre-tokenizer -> model; then truncation, post-processor and padding. */
#include "tokenizer/tok_internal.h"

#include "core/checked.h"
#include "core/fs.h"

#include <stdlib.h>
#include <string.h>

/* ---- JSON helpers ------------------------------------------------------- */
const cJSON *td_json_get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

td_status td_json_bool(td_ctx *ctx, const cJSON *obj, const char *key, bool dflt, bool *out, const char *where) {
    const cJSON *v = td_json_get(obj, key);
    if (!v) {
        *out = dflt;
        return TD_OK;
    }
    if (!cJSON_IsBool(v))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" must be true or false", where, key);
    *out = cJSON_IsTrue(v);
    return TD_OK;
}

td_status td_json_str(td_ctx *ctx, const cJSON *obj, const char *key, const char **out, const char *where) {
    const cJSON *v = td_json_get(obj, key);
    if (!cJSON_IsString(v))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" must be a string", where, key);
    *out = v->valuestring;
    return TD_OK;
}

td_status td_json_size(td_ctx *ctx, const cJSON *obj, const char *key, size_t max, size_t *out, const char *where) {
    const cJSON *v = td_json_get(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > (double)max ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" must be an integer in [0, %zu]", where, key, max);
    *out = (size_t)v->valuedouble;
    return TD_OK;
}

/* ---- loading ------------------------------------------------------------ */
void td_tokenizer_free(td_tokenizer *tok) {
    if (!tok)
        return;
    td_normalizer_free(tok->normalizer);
    td_pretok_free(tok->pretok);
    td_tok_model_free(tok->model);
    td_postproc_free(tok->post);
    td_decoder_free(tok->decoder);
    td_added_free(&tok->added);
    free(tok->pad_token_owned);
    free(tok);
}

size_t td_tokenizer_vocab_size(const td_tokenizer *tok) {
    size_t n = tok->model->vocab.n;
    for (size_t i = 0; i < tok->added.n; i++)
        if ((size_t)tok->added.v[i].id + 1 > n)
            n = (size_t)tok->added.v[i].id + 1;
    return n;
}

const char *td_tokenizer_id_to_token(const td_tokenizer *tok, int64_t id) {
    if (id < 0)
        return NULL;
    const td_added_token *a = td_added_by_id(&tok->added, id);
    if (a)
        return td_added_text(&tok->added, a);
    if ((uint64_t)id < tok->model->vocab.n)
        return tok->model->vocab.tok[id];
    return NULL;
}

int64_t td_tokenizer_token_to_id(const td_tokenizer *tok, const char *token) {
    size_t l = strlen(token);
    int32_t i = td_strmap_get(&tok->added.content_map, token, l);
    if (i >= 0)
        return tok->added.v[i].id;
    return td_strmap_get(&tok->model->vocab.map, token, l);
}

static td_status check_id(td_ctx *ctx, const td_tokenizer *tok, int64_t id, const char *what) {
    if (id < 0 || (size_t)id >= td_tokenizer_vocab_size(tok) || !td_tokenizer_id_to_token(tok, id))
        return td_fail(ctx, TD_ERR_FORMAT, "%s refers to token id %lld, which is not in the %zu-entry vocabulary",
                       what, (long long)id, td_tokenizer_vocab_size(tok));
    return TD_OK;
}

static td_status check_postproc_ids(td_ctx *ctx, const td_tokenizer *tok, const td_postproc *p) {
    if (!p)
        return TD_OK;
    if (p->type == TD_PP_BERT || p->type == TD_PP_ROBERTA) {
        TD_TRY(check_id(ctx, tok, p->cls_id, "post_processor cls"));
        TD_TRY(check_id(ctx, tok, p->sep_id, "post_processor sep"));
    }
    for (int l = 0; l < 2; l++) {
        const td_tpl_piece *v = l ? p->pair : p->single;
        size_t n = l ? p->n_pair : p->n_single;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < v[i].n_ids; k++)
                TD_TRY(check_id(ctx, tok, v[i].ids[k], "post_processor template special token"));
    }
    for (size_t i = 0; i < p->n_kids; i++)
        TD_TRY(check_postproc_ids(ctx, tok, p->kids[i]));
    return TD_OK;
}

static td_status parse_options(td_ctx *ctx, td_tokenizer *tok, const cJSON *root, const cJSON *cfg) {
    td_tok_options *o = &tok->defaults;
    memset(o, 0, sizeof *o);
    o->add_special_tokens = true;
    o->pad_token = "";
    const cJSON *tr = td_json_get(root, "truncation");
    const cJSON *pd = td_json_get(root, "padding");
    if (cfg) {
        const cJSON *mml = td_json_get(cfg, "model_max_length");
        if (cJSON_IsNumber(mml) && mml->valuedouble >= 1 && mml->valuedouble < 1e9)
            o->max_length = (size_t)mml->valuedouble;
        const cJSON *ts = td_json_get(cfg, "truncation_side");
        if (cJSON_IsString(ts))
            o->trunc_left = !strcmp(ts->valuestring, "left");
        const cJSON *ps = td_json_get(cfg, "padding_side");
        if (cJSON_IsString(ps))
            o->pad_left = !strcmp(ps->valuestring, "left");
        const cJSON *pt = td_json_get(cfg, "pad_token");
        if (cJSON_IsObject(pt))
            pt = td_json_get(pt, "content");
        if (cJSON_IsString(pt)) {
            int64_t id = td_tokenizer_token_to_id(tok, pt->valuestring);
            if (id >= 0) {
                if (!(tok->pad_token_owned = strdup(pt->valuestring)))
                    return td_fail_oom(ctx, 0, "pad token");
                o->pad_token = tok->pad_token_owned;
                o->pad_id = id;
            }
        }
    }
    if (tr) {
        const char *w = "tokenizer.json truncation";
        if (!cJSON_IsObject(tr))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: expected an object or null", w);
        o->truncation = true;
        TD_TRY(td_json_size(ctx, tr, "max_length", SIZE_MAX / 4, &o->max_length, w));
        if (td_json_get(tr, "stride"))
            TD_TRY(td_json_size(ctx, tr, "stride", SIZE_MAX / 4, &o->stride, w));
        const cJSON *s = td_json_get(tr, "strategy");
        if (s) {
            if (!cJSON_IsString(s))
                return td_fail(ctx, TD_ERR_FORMAT, "%s: strategy must be a string", w);
            if (!strcmp(s->valuestring, "LongestFirst"))
                o->trunc_strategy = TD_TRUNC_LONGEST_FIRST;
            else if (!strcmp(s->valuestring, "OnlyFirst"))
                o->trunc_strategy = TD_TRUNC_ONLY_FIRST;
            else if (!strcmp(s->valuestring, "OnlySecond"))
                o->trunc_strategy = TD_TRUNC_ONLY_SECOND;
            else
                return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: strategy '%s' is not LongestFirst/OnlyFirst/OnlySecond",
                               w, s->valuestring);
        }
        const cJSON *d = td_json_get(tr, "direction");
        if (cJSON_IsString(d))
            o->trunc_left = !strcmp(d->valuestring, "Left");
    }
    if (pd) {
        const char *w = "tokenizer.json padding";
        if (!cJSON_IsObject(pd))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: expected an object or null", w);
        const cJSON *s = td_json_get(pd, "strategy");
        o->padding = TD_PAD_BATCH_LONGEST;
        if (cJSON_IsObject(s)) {
            if (!td_json_get(s, "Fixed"))
                return td_fail(ctx, TD_ERR_FORMAT, "%s: strategy object must be {\"Fixed\": n}", w);
            o->padding = TD_PAD_FIXED;
            TD_TRY(td_json_size(ctx, s, "Fixed", SIZE_MAX / 4, &o->pad_length, w));
        } else if (s && !(cJSON_IsString(s) && !strcmp(s->valuestring, "BatchLongest")))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: strategy must be \"BatchLongest\" or {\"Fixed\": n}", w);
        const cJSON *d = td_json_get(pd, "direction");
        if (cJSON_IsString(d))
            o->pad_left = !strcmp(d->valuestring, "Left");
        if (td_json_get(pd, "pad_to_multiple_of"))
            TD_TRY(td_json_size(ctx, pd, "pad_to_multiple_of", 1u << 20, &o->pad_to_multiple_of, w));
        size_t v = 0;
        if (td_json_get(pd, "pad_id")) {
            TD_TRY(td_json_size(ctx, pd, "pad_id", 1u << 24, &v, w));
            o->pad_id = (int64_t)v;
        }
        if (td_json_get(pd, "pad_type_id")) {
            TD_TRY(td_json_size(ctx, pd, "pad_type_id", 1u << 20, &v, w));
            o->pad_type_id = (int64_t)v;
        }
        const cJSON *pt = td_json_get(pd, "pad_token");
        if (cJSON_IsString(pt)) {
            free(tok->pad_token_owned);
            if (!(tok->pad_token_owned = strdup(pt->valuestring)))
                return td_fail_oom(ctx, 0, "pad token");
            o->pad_token = tok->pad_token_owned;
        }
        TD_TRY(check_id(ctx, tok, o->pad_id, "padding pad_id"));
    }
    return TD_OK;
}

td_status td_tokenizer_load_json(td_ctx *ctx, const char *json, size_t json_len, const char *config_json,
                                 size_t config_len, const char *source, td_tokenizer **out) {
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, json_len, &end, false);
    cJSON *cfg = NULL;
    td_tokenizer *tok = NULL;
    td_work w = {0};
    td_status st = TD_OK;
    if (!root) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        st = td_fail(ctx, TD_ERR_FORMAT, "%s: invalid JSON near byte %zu (truncated or corrupt file?)", source, at);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        st = td_fail(ctx, TD_ERR_FORMAT, "%s: top level must be a JSON object", source);
        goto out;
    }
    if (config_json) {
        cfg = cJSON_ParseWithLength(config_json, config_len);
        if (!cfg || !cJSON_IsObject(cfg)) {
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: tokenizer_config.json is not a valid JSON object", source);
            goto out;
        }
    }
    if (!(tok = calloc(1, sizeof *tok))) {
        st = td_fail_oom(ctx, sizeof *tok, "tokenizer");
        goto out;
    }
    const cJSON *mj = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!mj) {
        st = td_fail(ctx, TD_ERR_FORMAT, "%s: missing \"model\" section", source);
        goto out;
    }
    const cJSON *x;
    if ((st = td_tok_model_parse(ctx, mj, &tok->model)) ||
        ((x = td_json_get(root, "normalizer")) && (st = td_normalizer_parse(ctx, x, &tok->normalizer))) ||
        ((x = td_json_get(root, "pre_tokenizer")) && (st = td_pretok_parse(ctx, x, &tok->pretok))) ||
        ((x = td_json_get(root, "post_processor")) && (st = td_postproc_parse(ctx, x, &tok->post))) ||
        ((x = td_json_get(root, "decoder")) && (st = td_decoder_parse(ctx, x, &tok->decoder))) ||
        (st = td_added_parse(ctx, td_json_get(root, "added_tokens"), &tok->added)) ||
        (st = td_added_build(ctx, &tok->added, tok->normalizer, &w)) ||
        (st = check_postproc_ids(ctx, tok, tok->post)) || (st = parse_options(ctx, tok, root, cfg))) {
        td_wrap(ctx, "%s", source);
        goto out;
    }
out:
    td_work_free(&w);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    if (st) {
        td_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return TD_OK;
}

td_status td_tokenizer_load(td_ctx *ctx, const char *path, td_tokenizer **out) {
    *out = NULL;
    char *json_path = NULL, *cfg_path = NULL, *dir = NULL, *json = NULL, *cfg = NULL;
    size_t jl = 0, cl = 0;
    td_status st = TD_OK;
    if (td_is_dir(path)) {
        if ((st = td_path_join(ctx, path, "tokenizer.json", false, &json_path)))
            goto out;
        dir = strdup(path);
    } else {
        json_path = strdup(path);
        dir = td_path_dirname(path);
    }
    if (!json_path || !dir) {
        st = td_fail_oom(ctx, 0, "path");
        goto out;
    }
    if (!td_is_file(json_path)) {
        st = td_fail(ctx, TD_ERR_NOT_FOUND, "%s: no such file (give a model directory holding tokenizer.json, or "
                                            "the tokenizer.json path)",
                     json_path);
        goto out;
    }
    if ((st = td_read_file(ctx, json_path, (size_t)1 << 30, &json, &jl)))
        goto out;
    if ((st = td_path_join(ctx, dir, "tokenizer_config.json", false, &cfg_path)))
        goto out;
    if (td_is_file(cfg_path) && (st = td_read_file(ctx, cfg_path, (size_t)1 << 26, &cfg, &cl)))
        goto out;
    st = td_tokenizer_load_json(ctx, json, jl, cfg, cl, json_path, out);
out:
    free(json_path);
    free(cfg_path);
    free(dir);
    free(json);
    free(cfg);
    return st;
}

void td_tokenizer_default_options(const td_tokenizer *tok, td_tok_options *out) { *out = tok->defaults; }

/* ---- encoding ----------------------------------------------------------- */
static const char *token_str(const td_tokenizer *tok, int32_t id, uint32_t *len) {
    const td_added_token *a = td_added_by_id(&tok->added, id);
    if (a) {
        const char *s = td_added_text(&tok->added, a);
        *len = (uint32_t)strlen(s);
        return s;
    }
    if ((size_t)id < tok->model->vocab.n && tok->model->vocab.tok[id]) {
        *len = tok->model->vocab.toklen[id];
        return tok->model->vocab.tok[id];
    }
    *len = 0;
    return "";
}

/* Identity-aligned copy of text[s..e) into b: each byte maps to its char's range. */
static bool fill_identity(td_nbuf *b, const char *text, size_t s, size_t e) {
    b->len = 0;
    if (!td_nbuf_reserve(b, e - s + 1))
        return false;
    for (size_t i = s; i < e;) {
        size_t k = (size_t)td_utf8_len((unsigned char)text[i]);
        if (i + k > e)
            k = e - i;
        for (size_t j = 0; j < k; j++) {
            b->t[b->len + j] = text[i + j];
            b->al[b->len + j] = (td_span){(uint32_t)i, (uint32_t)(i + k)};
        }
        b->len += k;
        i += k;
    }
    return true;
}

/* HF BytesToCharOffsetConverter: a byte maps to the index of the char containing it; the text's end maps to
 * the char count. */
static td_status to_char_offsets(td_ctx *ctx, td_work *w, const char *text, size_t len, td_tokvec *tv) {
    if (!TD_GROW(w->cps, w->cpscap, len + 1))
        return td_fail_oom(ctx, len, "char offsets");
    uint32_t *ci = w->cps, c = 0;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)text[i] & 0xC0) != 0x80)
            c++;
        ci[i] = c - 1;
    }
    ci[len] = c;
    for (size_t i = 0; i < tv->n; i++) {
        td_tok *t = &tv->v[i];
        t->s = ci[t->s <= len ? t->s : len];
        t->e = ci[t->e <= len ? t->e : len];
    }
    return TD_OK;
}

static td_status encode_sequence(td_ctx *ctx, const td_tokenizer *tok, td_work *w, const char *text, size_t len,
                                 int seq, bool char_offsets, td_tokvec *out) {
    out->n = 0;
    if (len >= UINT32_MAX)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "text of %zu bytes is too long (limit 4 GiB)", len);
    size_t bad = td_utf8_invalid_at(text, len);
    if (bad != (size_t)-1)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "%s text is not valid UTF-8: bad byte 0x%02x at byte offset %zu",
                       seq ? "pair" : "input", (unsigned char)text[bad], bad);
    size_t np = 0;
    TD_TRY(td_added_find(ctx, &tok->added, false, text, len, &w->pieces, &w->piecescap, &np, &w->piece_ids,
                         &w->piece_idscap));
    td_splits *sp = &w->sp[0];
    td_splits_clear(sp);
    for (size_t p = 0; p < np; p++) {
        td_match pc = w->pieces[p];
        if (pc.e <= pc.s)
            continue;
        if (pc.is_match) {
            if (!fill_identity(&w->nb, text, pc.s, pc.e) ||
                !td_splits_push(sp, w->nb.t, w->nb.al, w->nb.len, w->piece_ids[p], (uint32_t)pc.s))
                return td_fail_oom(ctx, len, "splits");
            continue;
        }
        if (!fill_identity(&w->nb, text, pc.s, pc.e))
            return td_fail_oom(ctx, len, "normalized text");
        if (tok->normalizer)
            TD_TRY(td_normalizer_apply(ctx, tok->normalizer, w, &w->nb));
        td_nbuf *nb = &w->nb;
        size_t nm = 0;
        TD_TRY(td_added_find(ctx, &tok->added, true, nb->t, nb->len, &w->m2, &w->m2cap, &nm, &w->ids2, &w->ids2cap));
        for (size_t k = 0; k < nm; k++) {
            td_match m = w->m2[k];
            if (m.e > m.s &&
                !td_splits_push(sp, nb->t + m.s, nb->al + m.s, m.e - m.s, m.is_match ? w->ids2[k] : -1, nb->al[m.s].s))
                return td_fail_oom(ctx, len, "splits");
        }
    }
    if (tok->pretok)
        TD_TRY(td_pretok_apply(ctx, tok->pretok, w, &sp));
    for (size_t i = 0; i < sp->n; i++) {
        const td_split *s = &sp->v[i];
        const char *t = sp->buf.t + s->off;
        const td_span *al = sp->buf.al + s->off;
        if (!s->len)
            continue;
        if (s->added >= 0) {
            uint32_t sl;
            const char *str = token_str(tok, s->added, &sl);
            if (!td_tokvec_push(out, (td_tok){s->added, seq, al[0].s, al[s->len - 1].e, 0, (int8_t)seq, 1, str, sl,
                                              (int32_t)i}))
                return td_fail_oom(ctx, 0, "tokens");
            continue;
        }
        w->mtn = 0;
        TD_TRY(td_tok_model_tokenize(ctx, tok->model, w, t, s->len));
        if (!TD_GROW(out->v, out->cap, out->n + w->mtn))
            return td_fail_oom(ctx, 0, "tokens");
        for (size_t k = 0; k < w->mtn; k++) {
            td_mtok m = w->mt[k];
            uint32_t os = m.e > m.s ? al[m.s].s : (m.s < s->len ? al[m.s].s : al[s->len - 1].e);
            uint32_t oe = m.e > m.s ? al[m.e - 1].e : os;
            uint32_t sl;
            const char *str = token_str(tok, m.id, &sl);
            out->v[out->n++] = (td_tok){m.id, seq, os, oe, 0, (int8_t)seq, 1, str, sl, (int32_t)i};
        }
    }
    return char_offsets ? to_char_offsets(ctx, w, text, len, out) : TD_OK;
}

static size_t pad_target(size_t len, const td_tok_options *o) {
    size_t t = o->padding == TD_PAD_FIXED ? o->pad_length : len;
    if (o->pad_to_multiple_of > 0 && t % o->pad_to_multiple_of)
        t += o->pad_to_multiple_of - t % o->pad_to_multiple_of;
    return t;
}

/* Encode + truncate + post-process one row into out (unpadded); *truncated
 * (may be NULL) tells whether truncation removed tokens. With rows
 * non-NULL (and o->return_overflowing) also the overflowing rows, unpadded;
 * the caller frees them with td_overflow_free. */
static td_status encode_row(td_ctx *ctx, const td_tokenizer *tok, td_work *w, const char *text, size_t len,
                            const char *pair, size_t pair_len, const td_tok_options *o, td_tokvec *out,
                            td_tokvec **rows, size_t *n_rows, bool *truncated) {
    td_tokvec *a = &w->seqtok[0], *b = pair ? &w->seqtok[1] : NULL;
    TD_TRY(encode_sequence(ctx, tok, w, text, len, 0, o->char_offsets, a));
    if (b)
        TD_TRY(encode_sequence(ctx, tok, w, pair, pair_len, 1, o->char_offsets, b));
    td_tokvec full_a = {0}, full_b = {0};
    td_status st = TD_OK;
    bool want_rows = rows && o->return_overflowing && o->truncation;
    if (o->truncation) {
        size_t added = o->add_special_tokens ? td_postproc_added(tok->post, b != NULL) : 0;
        size_t max = o->max_length > added ? o->max_length - added : 0;
        if (added && o->max_length < added)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                           "max_length %zu is smaller than the %zu special tokens the post-processor adds",
                           o->max_length, added);
        /* the overflow windows are cut from the sequences as they were before truncation */
        if (want_rows) {
            if (!TD_GROW(full_a.v, full_a.cap, a->n ? a->n : 1) ||
                (b && !TD_GROW(full_b.v, full_b.cap, b->n ? b->n : 1))) {
                st = td_fail_oom(ctx, a->n, "overflowing tokens");
                goto out;
            }
            memcpy(full_a.v, a->v, a->n * sizeof *a->v);
            full_a.n = a->n;
            if (b) {
                memcpy(full_b.v, b->v, b->n * sizeof *b->v);
                full_b.n = b->n;
            }
        }
        size_t before = a->n + (b ? b->n : 0);
        if ((st = td_truncate(ctx, a, b, max, o->stride, o->trunc_strategy, o->trunc_left)))
            goto out;
        if (truncated)
            *truncated = a->n + (b ? b->n : 0) < before;
        if (want_rows && (st = td_overflow_rows(ctx, tok->post, &full_a, a->n, b ? &full_b : NULL, b ? b->n : 0, o,
                                                rows, n_rows)))
            goto out;
    }
    st = td_postproc_apply(ctx, tok->post, a, b, o->add_special_tokens, out);
out:
    free(full_a.v);
    free(full_b.v);
    return st;
}

static td_status check_options(td_ctx *ctx, const td_tok_options *o) {
    if (o->padding == TD_PAD_FIXED && o->pad_length > ((size_t)1 << 30))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "pad length %zu is unreasonably large", o->pad_length);
    return TD_OK;
}

void td_encoding_free(td_encoding *e) {
    if (!e)
        return;
    free(e->ids);
    free(e->type_ids);
    free(e->attention_mask);
    free(e->special_tokens_mask);
    free(e->offsets);
    free(e->sequence_ids);
    free(e->word_ids);
    free(e->tokens);
    for (size_t i = 0; e->overflowing && i < e->n_overflowing; i++)
        td_encoding_free(&e->overflowing[i]);
    free(e->overflowing);
    memset(e, 0, sizeof *e);
}

/* Copy the tokens of tv into the arrays of a zeroed out (which the caller frees with td_encoding_free). */
static td_status fill_encoding(td_ctx *ctx, const td_tokvec *tv, td_encoding *out) {
    size_t n = tv->n ? tv->n : 1;
    out->len = tv->n;
    out->ids = malloc(n * sizeof(int64_t));
    out->type_ids = malloc(n * sizeof(int64_t));
    out->attention_mask = malloc(n * sizeof(int64_t));
    out->special_tokens_mask = malloc(n * sizeof(int64_t));
    out->offsets = malloc(2 * n * sizeof(int64_t));
    out->sequence_ids = malloc(n * sizeof(int32_t));
    out->word_ids = malloc(n * sizeof(int32_t));
    out->tokens = malloc(n * sizeof(char *));
    if (!out->ids || !out->type_ids || !out->attention_mask || !out->special_tokens_mask || !out->offsets ||
        !out->sequence_ids || !out->word_ids || !out->tokens)
        return td_fail_oom(ctx, n, "encoding");
    for (size_t i = 0; i < tv->n; i++) {
        const td_tok *t = &tv->v[i];
        out->ids[i] = t->id;
        out->type_ids[i] = t->type_id;
        out->attention_mask[i] = t->attn;
        out->special_tokens_mask[i] = t->special;
        out->offsets[2 * i] = t->s;
        out->offsets[2 * i + 1] = t->e;
        out->sequence_ids[i] = t->seq;
        out->word_ids[i] = t->word;
        out->tokens[i] = t->str ? t->str : "";
    }
    return TD_OK;
}

td_status td_tokenizer_encode(td_ctx *ctx, const td_tokenizer *tok, const char *text, size_t text_len,
                              const char *pair, size_t pair_len, const td_tok_options *options, td_encoding *out) {
    memset(out, 0, sizeof *out);
    if (!tok || !text)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "td_tokenizer_encode: tokenizer and text are required");
    const td_tok_options *o = options ? options : &tok->defaults;
    TD_TRY(check_options(ctx, o));
    td_work w = {0};
    td_tokvec tv = {0};
    td_tokvec *rows = NULL;
    size_t n_rows = 0;
    bool truncated = false;
    td_status st = encode_row(ctx, tok, &w, text, text_len, pair, pair_len, o, &tv, &rows, &n_rows, &truncated);
    if (st)
        goto out;
    /* HF pads the overflowing rows to the main row's target (a single encode has a batch of one) */
    size_t target = pad_target(tv.n, o);
    if (o->padding != TD_PAD_NONE && !td_pad(&tv, target, o)) {
        st = td_fail_oom(ctx, 0, "padding");
        goto out;
    }
    if ((st = fill_encoding(ctx, &tv, out)))
        goto out;
    out->truncated = truncated;
    if (n_rows) {
        if (!(out->overflowing = calloc(n_rows, sizeof *out->overflowing))) {
            st = td_fail_oom(ctx, n_rows, "overflowing rows");
            goto out;
        }
        out->n_overflowing = n_rows;
        for (size_t i = 0; i < n_rows; i++) {
            if (o->padding != TD_PAD_NONE && !td_pad(&rows[i], target, o)) {
                st = td_fail_oom(ctx, 0, "padding");
                goto out;
            }
            if ((st = fill_encoding(ctx, &rows[i], &out->overflowing[i])))
                goto out;
        }
    }
out:
    if (st)
        td_encoding_free(out);
    td_overflow_free(rows, n_rows);
    free(tv.v);
    td_work_free(&w);
    return st;
}

void td_batch_free(td_batch *b) {
    if (!b)
        return;
    free(b->input_ids);
    free(b->token_type_ids);
    free(b->attention_mask);
    free(b->special_tokens_mask);
    free(b->offsets);
    memset(b, 0, sizeof *b);
}

td_status td_tokenizer_encode_batch(td_ctx *ctx, const td_tokenizer *tok, const char *const *texts,
                                    const size_t *text_lens, const char *const *pairs, const size_t *pair_lens,
                                    size_t n, const td_tok_options *options, td_batch *out) {
    memset(out, 0, sizeof *out);
    if (!tok || (!texts && n))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "td_tokenizer_encode_batch: tokenizer and texts are required");
    const td_tok_options *o = options ? options : &tok->defaults;
    TD_TRY(check_options(ctx, o));
    td_work w = {0};
    td_tokvec *rows = calloc(n ? n : 1, sizeof *rows);
    td_status st = TD_OK;
    if (!rows)
        return td_fail_oom(ctx, n, "batch");
    size_t longest = 0;
    for (size_t i = 0; i < n && !st; i++) {
        if (!texts[i] || (pairs && !pairs[i])) {
            st = td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "batch row %zu: text is NULL", i);
            break;
        }
        size_t tl = text_lens ? text_lens[i] : strlen(texts[i]);
        size_t pl = pairs ? (pair_lens ? pair_lens[i] : strlen(pairs[i])) : 0;
        st = encode_row(ctx, tok, &w, texts[i], tl, pairs ? pairs[i] : NULL, pl, o, &rows[i], NULL, NULL, NULL);
        if (st)
            td_wrap(ctx, "batch row %zu", i);
        else if (rows[i].n > longest)
            longest = rows[i].n;
    }
    size_t target = longest;
    if (!st) {
        if (o->padding != TD_PAD_NONE)
            target = pad_target(longest, o);
        if (target < longest)
            target = longest; /* Fixed shorter than a row (no truncation): keep it rectangular */
        for (size_t i = 0; i < n && !st; i++)
            if (!td_pad(&rows[i], target, o))
                st = td_fail_oom(ctx, target, "padding");
    }
    size_t cells = 0;
    if (!st && !td_mul_size(n, target, &cells))
        st = td_fail(ctx, TD_ERR_OVERFLOW, "batch of %zu rows x %zu tokens overflows", n, target);
    if (!st) {
        size_t c = cells ? cells : 1;
        out->batch = n;
        out->seq_len = target;
        out->input_ids = malloc(c * sizeof(int64_t));
        out->token_type_ids = malloc(c * sizeof(int64_t));
        out->attention_mask = malloc(c * sizeof(int64_t));
        out->special_tokens_mask = malloc(c * sizeof(int64_t));
        out->offsets = malloc(2 * c * sizeof(int64_t));
        if (!out->input_ids || !out->token_type_ids || !out->attention_mask || !out->special_tokens_mask ||
            !out->offsets) {
            td_batch_free(out);
            st = td_fail_oom(ctx, c * 48, "batch arrays");
        } else {
            for (size_t r = 0; r < n; r++)
                for (size_t i = 0; i < target; i++) {
                    const td_tok *t = &rows[r].v[i];
                    size_t k = r * target + i;
                    out->input_ids[k] = t->id;
                    out->token_type_ids[k] = t->type_id;
                    out->attention_mask[k] = t->attn;
                    out->special_tokens_mask[k] = t->special;
                    out->offsets[2 * k] = t->s;
                    out->offsets[2 * k + 1] = t->e;
                }
        }
    }
    for (size_t i = 0; i < n; i++)
        free(rows[i].v);
    free(rows);
    td_work_free(&w);
    return st;
}

/* ---- decoding ----------------------------------------------------------- */
static td_status decode_strlist(td_ctx *ctx, const td_tokenizer *tok, td_strlist *l, char **out);

td_status td_tokenizer_decode(td_ctx *ctx, const td_tokenizer *tok, const int64_t *ids, size_t n,
                              bool skip_special_tokens, char **out) {
    *out = NULL;
    td_strlist l = {0};
    td_status st = TD_OK;
    for (size_t i = 0; i < n; i++) {
        const td_added_token *a = ids[i] >= 0 ? td_added_by_id(&tok->added, ids[i]) : NULL;
        const char *s = td_tokenizer_id_to_token(tok, ids[i]);
        if (!s) {
            st = td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "decode: id %lld at position %zu is not in the vocabulary",
                         (long long)ids[i], i);
            goto out;
        }
        if (skip_special_tokens && a && a->special)
            continue;
        if (!td_strlist_push(&l, s, strlen(s))) {
            st = td_fail_oom(ctx, 0, "decode");
            goto out;
        }
    }
    st = decode_strlist(ctx, tok, &l, out);
out:
    td_strlist_free(&l);
    return st;
}

td_status td_tokenizer_decode_tokens(td_ctx *ctx, const td_tokenizer *tok, const char *const *tokens, size_t n,
                                     char **out) {
    *out = NULL;
    td_strlist l = {0};
    td_status st = TD_OK;
    for (size_t i = 0; i < n && st == TD_OK; i++)
        if (!td_strlist_push(&l, tokens[i], strlen(tokens[i])))
            st = td_fail_oom(ctx, 0, "decode");
    if (st == TD_OK)
        st = decode_strlist(ctx, tok, &l, out);
    td_strlist_free(&l);
    return st;
}

/* Run the decoder over the token strings in l and join them into *out. */
static td_status decode_strlist(td_ctx *ctx, const td_tokenizer *tok, td_strlist *l, char **out) {
    if (tok->decoder)
        TD_TRY(td_decoder_chain(ctx, tok->decoder, l));
    size_t total = 1;
    for (size_t i = 0; i < l->n; i++)
        total += l->len[i] + 1;
    char *r = malloc(total);
    if (!r)
        return td_fail_oom(ctx, total, "decode");
    size_t p = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (!tok->decoder && i > 0)
            r[p++] = ' ';
        memcpy(r + p, l->s[i], l->len[i]);
        p += l->len[i];
    }
    r[p] = 0;
    *out = r;
    return TD_OK;
}
