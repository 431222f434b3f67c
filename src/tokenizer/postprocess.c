/* Post-processors (TemplateProcessing, BertProcessing, RobertaProcessing,
 * ByteLevel, Sequence), truncation and padding - applied to the per-sequence
 * token lists after the model, in HF's order: truncate, post-process, pad. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

void td_postproc_free(td_postproc *p) {
    if (!p)
        return;
    td_tpl_piece *lists[2] = {p->single, p->pair};
    size_t ns[2] = {p->n_single, p->n_pair};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < ns[l]; i++) {
            free(lists[l][i].ids);
            free(lists[l][i].toks);
        }
        free(lists[l]);
    }
    for (size_t i = 0; i < p->n_strs; i++)
        free(p->strs[i]);
    free(p->strs);
    for (size_t i = 0; i < p->n_kids; i++)
        td_postproc_free(p->kids[i]);
    free(p->kids);
    free(p);
}

static td_status keep_str(td_ctx *ctx, td_postproc *p, const char *s, const char **out) {
    char **ns = realloc(p->strs, (p->n_strs + 1) * sizeof *ns);
    if (!ns)
        return td_fail_oom(ctx, 0, "post_processor");
    p->strs = ns;
    if (!(p->strs[p->n_strs] = strdup(s)))
        return td_fail_oom(ctx, strlen(s), "post_processor");
    *out = p->strs[p->n_strs++];
    return TD_OK;
}

static td_status parse_id_pair(td_ctx *ctx, td_postproc *p, const cJSON *j, const char *key, int32_t *id,
                               const char **tok, const char *where) {
    const cJSON *v = td_json_get(j, key);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !cJSON_IsString(cJSON_GetArrayItem(v, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(v, 1)))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" must be [token, id]", where, key);
    double d = cJSON_GetArrayItem(v, 1)->valuedouble;
    if (d < 0 || d >= (1u << 24) || d != (double)(int64_t)d)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" id %g is not a valid token id", where, key, d);
    *id = (int32_t)d;
    return keep_str(ctx, p, cJSON_GetArrayItem(v, 0)->valuestring, tok);
}

static td_status parse_template(td_ctx *ctx, td_postproc *p, const cJSON *arr, const cJSON *specials,
                                td_tpl_piece **out, size_t *n_out, const char *where) {
    if (!cJSON_IsArray(arr))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: template must be an array of pieces", where);
    size_t n = (size_t)cJSON_GetArraySize(arr);
    td_tpl_piece *v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        return td_fail_oom(ctx, n, "template");
    *out = v;
    *n_out = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        td_tpl_piece *pc = &v[*n_out];
        (*n_out)++;
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
        const cJSON *body = sp ? sp : sq;
        if (!cJSON_IsObject(body))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: piece %zu must be {\"SpecialToken\": ...} or {\"Sequence\": ...}",
                           where, *n_out - 1);
        size_t type_id = 0;
        if (td_json_get(body, "type_id"))
            TD_TRY(td_json_size(ctx, body, "type_id", 1u << 20, &type_id, where));
        pc->type_id = (int32_t)type_id;
        const char *id;
        TD_TRY(td_json_str(ctx, body, "id", &id, where));
        if (sq) {
            if (strcmp(id, "A") && strcmp(id, "B"))
                return td_fail(ctx, TD_ERR_FORMAT, "%s: Sequence id '%s' must be A or B", where, id);
            pc->seq = id[0] == 'B';
            continue;
        }
        pc->is_special = true;
        const cJSON *st = specials ? cJSON_GetObjectItemCaseSensitive(specials, id) : NULL;
        const cJSON *ids = st ? cJSON_GetObjectItemCaseSensitive(st, "ids") : NULL;
        const cJSON *toks = st ? cJSON_GetObjectItemCaseSensitive(st, "tokens") : NULL;
        if (!cJSON_IsArray(ids) || !cJSON_IsArray(toks) || cJSON_GetArraySize(ids) != cJSON_GetArraySize(toks))
            return td_fail(ctx, TD_ERR_FORMAT,
                           "%s: special token '%s' is missing from special_tokens or its ids/tokens differ in length",
                           where, id);
        pc->n_ids = (size_t)cJSON_GetArraySize(ids);
        pc->ids = calloc(pc->n_ids ? pc->n_ids : 1, sizeof *pc->ids);
        pc->toks = calloc(pc->n_ids ? pc->n_ids : 1, sizeof *pc->toks);
        if (!pc->ids || !pc->toks)
            return td_fail_oom(ctx, pc->n_ids, "template");
        for (size_t k = 0; k < pc->n_ids; k++) {
            const cJSON *iv = cJSON_GetArrayItem(ids, (int)k), *tv = cJSON_GetArrayItem(toks, (int)k);
            if (!cJSON_IsNumber(iv) || iv->valuedouble < 0 || iv->valuedouble >= (1u << 24) ||
                iv->valuedouble != (double)(int64_t)iv->valuedouble || !cJSON_IsString(tv))
                return td_fail(ctx, TD_ERR_FORMAT, "%s: special token '%s' has a bad id or token at %zu", where, id,
                               k);
            pc->ids[k] = (int32_t)iv->valuedouble;
            TD_TRY(keep_str(ctx, p, tv->valuestring, &pc->toks[k]));
        }
    }
    return TD_OK;
}

td_status td_postproc_parse(td_ctx *ctx, const cJSON *j, td_postproc **out) {
    *out = NULL;
    if (!cJSON_IsObject(j))
        return td_fail(ctx, TD_ERR_FORMAT, "post_processor: expected a JSON object");
    const char *type;
    TD_TRY(td_json_str(ctx, j, "type", &type, "post_processor"));
    td_postproc *p = calloc(1, sizeof *p);
    if (!p)
        return td_fail_oom(ctx, sizeof *p, "post_processor");
    char where[96];
    snprintf(where, sizeof where, "post_processor %s", type);
    td_status st = TD_OK;
    if (!strcmp(type, "TemplateProcessing")) {
        p->type = TD_PP_TEMPLATE;
        const cJSON *sp = td_json_get(j, "special_tokens");
        if ((st = parse_template(ctx, p, td_json_get(j, "single"), sp, &p->single, &p->n_single, where)) ||
            (st = parse_template(ctx, p, td_json_get(j, "pair"), sp, &p->pair, &p->n_pair, where)))
            goto out;
    } else if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        p->type = type[0] == 'B' ? TD_PP_BERT : TD_PP_ROBERTA;
        if ((st = parse_id_pair(ctx, p, j, "cls", &p->cls_id, &p->cls_tok, where)) ||
            (st = parse_id_pair(ctx, p, j, "sep", &p->sep_id, &p->sep_tok, where)))
            goto out;
        if (p->type == TD_PP_ROBERTA &&
            ((st = td_json_bool(ctx, j, "trim_offsets", true, &p->trim_offsets, where)) ||
             (st = td_json_bool(ctx, j, "add_prefix_space", true, &p->add_prefix_space, where))))
            goto out;
    } else if (!strcmp(type, "ByteLevel")) {
        p->type = TD_PP_BYTELEVEL;
        if ((st = td_json_bool(ctx, j, "trim_offsets", true, &p->trim_offsets, where)) ||
            (st = td_json_bool(ctx, j, "add_prefix_space", true, &p->add_prefix_space, where)))
            goto out;
    } else if (!strcmp(type, "Sequence")) {
        p->type = TD_PP_SEQUENCE;
        const cJSON *arr = td_json_get(j, "processors");
        if (!cJSON_IsArray(arr)) {
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: \"processors\" must be an array", where);
            goto out;
        }
        size_t cnt = (size_t)cJSON_GetArraySize(arr), adders = 0;
        if (!(p->kids = calloc(cnt ? cnt : 1, sizeof *p->kids))) {
            st = td_fail_oom(ctx, cnt, "post_processor");
            goto out;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) {
            if ((st = td_postproc_parse(ctx, it, &p->kids[p->n_kids]))) {
                td_wrap(ctx, "in post_processor Sequence item %zu", p->n_kids);
                goto out;
            }
            td_pp_type kt = p->kids[p->n_kids]->type;
            p->n_kids++;
            if (kt == TD_PP_SEQUENCE ||
                ((kt == TD_PP_TEMPLATE || kt == TD_PP_BERT || kt == TD_PP_ROBERTA) && ++adders > 1)) {
                st = td_fail(ctx, TD_ERR_UNSUPPORTED,
                             "%s: only one special-token processor (Template/Bert/Roberta) plus ByteLevel steps "
                             "is supported in a Sequence",
                             where);
                goto out;
            }
        }
    } else {
        st = td_fail(ctx, TD_ERR_UNSUPPORTED,
                     "post_processor type '%s' is not supported (supported: TemplateProcessing, BertProcessing, "
                     "RobertaProcessing, ByteLevel, Sequence)",
                     type);
    }
out:
    if (st) {
        td_postproc_free(p);
        return st;
    }
    *out = p;
    return TD_OK;
}

size_t td_postproc_added(const td_postproc *p, bool pair) {
    if (!p)
        return 0;
    switch (p->type) {
    case TD_PP_TEMPLATE: {
        size_t n = 0;
        const td_tpl_piece *v = pair ? p->pair : p->single;
        size_t k = pair ? p->n_pair : p->n_single;
        for (size_t i = 0; i < k; i++)
            if (v[i].is_special)
                n += v[i].n_ids;
        return n;
    }
    case TD_PP_BERT: return pair ? 3 : 2;
    case TD_PP_ROBERTA: return pair ? 4 : 2;
    case TD_PP_BYTELEVEL: return 0;
    case TD_PP_SEQUENCE: {
        size_t n = 0;
        for (size_t i = 0; i < p->n_kids; i++)
            n += td_postproc_added(p->kids[i], pair);
        return n;
    }
    }
    return 0;
}

/* ByteLevel offset trimming (HF process_offsets): drop leading/trailing 'Ġ' (or
 * whitespace) chars of each token from its offsets. */
static void trim_offsets(td_tokvec *tv, bool add_prefix_space) {
    if (!tv)
        return;
    for (size_t i = 0; i < tv->n; i++) {
        td_tok *t = &tv->v[i];
        if (!t->str)
            continue;
        size_t len = t->str_len;
        size_t lead = 0, trail = 0, pos = 0;
        while (pos < len) {
            uint32_t cp;
            int k = td_utf8_dec(t->str + pos, len - pos, &cp);
            if (cp != 0x120 && !td_char_is_whitespace(cp))
                break;
            lead++;
            pos += (size_t)k;
        }
        size_t e = len;
        while (e > 0) {
            size_t p = e - 1;
            while (p > 0 && ((unsigned char)t->str[p] & 0xC0) == 0x80)
                p--;
            uint32_t cp;
            td_utf8_dec(t->str + p, e - p, &cp);
            if (cp != 0x120 && !td_char_is_whitespace(cp))
                break;
            trail++;
            e = p;
        }
        if (lead > 0) {
            bool is_first = i == 0 || t->s == 0;
            if (is_first && add_prefix_space && lead == 1)
                lead = 0;
            uint32_t ns = t->s + (uint32_t)lead;
            t->s = ns < t->e ? ns : t->e;
        }
        if (trail > 0 && t->e >= trail) {
            uint32_t ne = t->e - (uint32_t)trail;
            t->e = ne > t->s ? ne : t->s;
        }
    }
}

static bool push_special(td_tokvec *out, int32_t id, int32_t type_id, const char *str) {
    return td_tokvec_push(out, (td_tok){id, type_id, 0, 0, 1, -1, 1, str, (uint32_t)strlen(str), -1});
}

static bool push_seq(td_tokvec *out, const td_tokvec *src, int32_t type_id, bool override_type) {
    if (!src)
        return true;
    if (!TD_GROW(out->v, out->cap, out->n + src->n))
        return false;
    for (size_t i = 0; i < src->n; i++) {
        td_tok t = src->v[i];
        if (override_type)
            t.type_id = type_id;
        out->v[out->n++] = t;
    }
    return true;
}

td_status td_postproc_apply(td_ctx *ctx, const td_postproc *p, td_tokvec *a, td_tokvec *b, bool add_special,
                            td_tokvec *out) {
    return td_postproc_apply_ex(ctx, p, a, b, add_special, 0, out);
}

td_status td_postproc_apply_ex(td_ctx *ctx, const td_postproc *p, td_tokvec *a, td_tokvec *b, bool add_special,
                               unsigned raw_types, td_tokvec *out) {
    out->n = 0;
    bool ok = true;
    if (!p) {
        ok = push_seq(out, a, 0, false) && push_seq(out, b, 0, false);
        return ok ? TD_OK : td_fail_oom(ctx, 0, "encoding");
    }
    switch (p->type) {
    case TD_PP_SEQUENCE: {
        const td_postproc *adder = NULL;
        for (size_t i = 0; i < p->n_kids; i++) {
            if (p->kids[i]->type == TD_PP_BYTELEVEL) {
                if (p->kids[i]->trim_offsets) {
                    trim_offsets(a, p->kids[i]->add_prefix_space);
                    trim_offsets(b, p->kids[i]->add_prefix_space);
                }
            } else
                adder = p->kids[i];
        }
        return td_postproc_apply_ex(ctx, adder, a, b, add_special, raw_types, out);
    }
    case TD_PP_BYTELEVEL:
        if (p->trim_offsets) {
            trim_offsets(a, p->add_prefix_space);
            trim_offsets(b, p->add_prefix_space);
        }
        ok = push_seq(out, a, 0, false) && push_seq(out, b, 0, false);
        break;
    case TD_PP_TEMPLATE: {
        const td_tpl_piece *v = b ? p->pair : p->single;
        size_t k = b ? p->n_pair : p->n_single;
        for (size_t i = 0; i < k && ok; i++) {
            if (v[i].is_special) {
                for (size_t j = 0; j < v[i].n_ids && ok && add_special; j++)
                    ok = push_special(out, v[i].ids[j], v[i].type_id, v[i].toks[j]);
            } else
                ok = push_seq(out, v[i].seq ? b : a, v[i].type_id, !(raw_types & (1u << v[i].seq)));
        }
        break;
    }
    case TD_PP_BERT:
        if (!add_special) {
            ok = push_seq(out, a, 0, false) && push_seq(out, b, 0, false);
            break;
        }
        ok = push_special(out, p->cls_id, 0, p->cls_tok) && push_seq(out, a, 0, true) &&
             push_special(out, p->sep_id, 0, p->sep_tok);
        if (b)
            ok = ok && push_seq(out, b, 1, true) && push_special(out, p->sep_id, 1, p->sep_tok);
        break;
    case TD_PP_ROBERTA:
        if (p->trim_offsets) {
            trim_offsets(a, p->add_prefix_space);
            trim_offsets(b, p->add_prefix_space);
        }
        if (!add_special) { /* RoBERTa has a single type id: HF zeroes the pair's too */
            ok = push_seq(out, a, 0, true) && push_seq(out, b, 0, true);
            break;
        }
        ok = push_special(out, p->cls_id, 0, p->cls_tok) && push_seq(out, a, 0, true) &&
             push_special(out, p->sep_id, 0, p->sep_tok);
        if (b)
            ok = ok && push_special(out, p->sep_id, 0, p->sep_tok) && push_seq(out, b, 0, true) &&
                 push_special(out, p->sep_id, 0, p->sep_tok);
        break;
    }
    return ok ? TD_OK : td_fail_oom(ctx, 0, "encoding");
}

/* HF Encoding::truncate: the stride (overlap of the overflowing pieces) must be smaller than the target
 * whenever a sequence is actually cut; HF panics there, we return the error. */
static td_status truncate_one(td_ctx *ctx, td_tokvec *tv, size_t max, size_t stride, bool left) {
    if (tv->n <= max)
        return TD_OK;
    if (max > 0 && stride >= max)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "truncation stride %zu must be smaller than the %zu tokens a sequence is cut to (max_length "
                       "minus the special tokens, split between the pair)",
                       stride, max);
    if (left)
        memmove(tv->v, tv->v + (tv->n - max), max * sizeof *tv->v);
    tv->n = max;
    return TD_OK;
}

td_status td_truncate(td_ctx *ctx, td_tokvec *a, td_tokvec *b, size_t max_len, size_t stride, td_trunc_strategy strat,
                      bool left) {
    if (max_len == 0) {
        a->n = 0;
        if (b)
            b->n = 0;
        return TD_OK;
    }
    size_t total = a->n + (b ? b->n : 0);
    if (total <= max_len)
        return TD_OK;
    size_t to_remove = total - max_len;
    switch (strat) {
    case TD_TRUNC_LONGEST_FIRST:
        if (b) {
            size_t n1 = a->n, n2 = b->n;
            bool swap = false;
            if (n1 > n2) {
                size_t t = n1;
                n1 = n2;
                n2 = t;
                swap = true;
            }
            if (n1 > max_len)
                n2 = n1;
            else
                n2 = n1 > max_len - n1 ? n1 : max_len - n1;
            if (n1 + n2 > max_len) {
                n1 = max_len / 2;
                n2 = n1 + max_len % 2;
            }
            if (swap) {
                size_t t = n1;
                n1 = n2;
                n2 = t;
            }
            TD_TRY(truncate_one(ctx, a, n1, stride, left));
            return truncate_one(ctx, b, n2, stride, left);
        }
        return truncate_one(ctx, a, max_len, stride, left);
    case TD_TRUNC_ONLY_FIRST:
    case TD_TRUNC_ONLY_SECOND: {
        td_tokvec *target = strat == TD_TRUNC_ONLY_FIRST ? a : b;
        if (!target)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                           "truncation strategy only_second needs a pair of texts, but only one was given");
        if (target->n <= to_remove)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                           "truncation: the %s sequence (%zu tokens) is too short to remove %zu tokens and fit "
                           "max_length %zu; use longest_first or a larger max_length",
                           strat == TD_TRUNC_ONLY_FIRST ? "first" : "second", target->n, to_remove, max_len);
        return truncate_one(ctx, target, target->n - to_remove, stride, left);
    }
    }
    return TD_OK;
}

bool td_pad(td_tokvec *tv, size_t target, const td_tok_options *o) {
    if (tv->n >= target)
        return true;
    size_t add = target - tv->n;
    if (!TD_GROW(tv->v, tv->cap, target))
        return false;
    const char *ps = o->pad_token ? o->pad_token : "";
    td_tok pad = {(int32_t)o->pad_id, (int32_t)o->pad_type_id, 0, 0, 1, -1, 0, ps, (uint32_t)strlen(ps), -1};
    if (o->pad_left) {
        memmove(tv->v + add, tv->v, tv->n * sizeof *tv->v);
        for (size_t i = 0; i < add; i++)
            tv->v[i] = pad;
    } else
        for (size_t i = 0; i < add; i++)
            tv->v[tv->n + i] = pad;
    tv->n = target;
    return true;
}
