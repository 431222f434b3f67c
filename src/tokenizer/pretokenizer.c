/* Pre-tokenizers (HF `pre_tokenizers`): split each piece of normalized text
 * into words, keeping alignments. Splitting follows HF's find_matches + split
 * behaviours (removed / isolated / merged with previous / merged with next /
 * contiguous) and drops empty pieces. Pieces that are added tokens pass through. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* The GPT-2 split pattern used by ByteLevel. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* HF Whitespace: \w+|[^\w\s]+ with Oniguruma's Unicode \w (alphabetic, marks, decimal digits, connectors,
 * join controls). */
static const char WHITESPACE_PATTERN[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]+|"
                                         "[^\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}\\s]+";

td_status td_regex_compile(td_ctx *ctx, const char *pat, size_t len, bool literal, pcre2_code **out,
                           const char *where) {
    int err = 0;
    PCRE2_SIZE eoff = 0;
    uint32_t flags = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, flags, &err, &eoff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: cannot compile regex /%.*s/ at offset %zu: %s", where,
                       (int)(len > 200 ? 200 : len), pat, (size_t)eoff, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter when JIT is unavailable */
    *out = re;
    return TD_OK;
}

static bool push_match(td_match **m, size_t *cap, size_t *n, size_t s, size_t e, bool is_match) {
    if (!td_grow((void **)m, cap, *n + 1, sizeof **m))
        return false;
    (*m)[(*n)++] = (td_match){s, e, is_match};
    return true;
}

td_status td_regex_find(td_ctx *ctx, const pcre2_code *re, td_work *w, const char *t, size_t n, td_match **m,
                        size_t *cap, size_t *count) {
    *count = 0;
    if (!n) {
        if (!push_match(m, cap, count, 0, 0, false))
            return td_fail_oom(ctx, 0, "regex matches");
        return TD_OK;
    }
    if (!w->md && !(w->md = pcre2_match_data_create(32, NULL)))
        return td_fail_oom(ctx, 0, "regex match data");
    size_t start = 0, prev = 0;
    while (start <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)t, n, start, PCRE2_NO_UTF_CHECK, w->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "regex matching failed at byte %zu: %s", start,
                           (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t s = ov[0], e = ov[1];
        if (s < prev || e < s || e > n)
            return td_fail(ctx, TD_ERR_INTERNAL, "regex returned a bad match range");
        if (s != prev && !push_match(m, cap, count, prev, s, false))
            return td_fail_oom(ctx, 0, "regex matches");
        if (!push_match(m, cap, count, s, e, true))
            return td_fail_oom(ctx, 0, "regex matches");
        prev = e;
        if (e == s) {
            if (e >= n)
                break;
            start = e + (size_t)td_utf8_len((unsigned char)t[e]);
        } else
            start = e;
    }
    if (prev != n && !push_match(m, cap, count, prev, n, false))
        return td_fail_oom(ctx, 0, "regex matches");
    return TD_OK;
}

size_t td_split_apply_behavior(td_match *m, size_t n, td_split_behavior b) {
    size_t k = 0;
    bool prev = false;
    switch (b) {
    case TD_SPLIT_ISOLATED:
        return n;
    case TD_SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!m[i].is_match)
                m[k++] = m[i];
        return k;
    case TD_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            if (m[i].is_match == prev && k > 0)
                m[k - 1].e = m[i].e;
            else
                m[k++] = (td_match){m[i].s, m[i].e, m[i].is_match};
            prev = m[i].is_match;
        }
        return k;
    case TD_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
            if (m[i].is_match && !prev && k > 0)
                m[k - 1].e = m[i].e;
            else
                m[k++] = m[i];
            prev = m[i].is_match;
        }
        return k;
    case TD_SPLIT_MERGED_NEXT:
        /* walk backwards, merging each match into the piece after it */
        for (size_t ii = n; ii-- > 0;) {
            if (m[ii].is_match && !prev && k > 0)
                m[n - k].s = m[ii].s;
            else {
                k++;
                m[n - k] = m[ii];
            }
            prev = m[ii].is_match;
        }
        memmove(m, m + (n - k), k * sizeof *m);
        return k;
    }
    return n;
}

typedef enum { PRED_WS, PRED_PUNCT, PRED_DIGIT, PRED_CHAR } pred_kind;

/* HF find_matches for a char predicate: every matching char is its own match. */
static bool pred_matches(const char *t, size_t n, pred_kind k, uint32_t ch, td_match **m, size_t *cap,
                         size_t *count) {
    *count = 0;
    size_t last = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = td_utf8_dec(t + i, n - i, &cp);
        bool hit = k == PRED_WS      ? td_char_is_whitespace(cp)
                   : k == PRED_PUNCT ? td_char_is_punct(cp)
                   : k == PRED_DIGIT ? td_char_is_numeric(cp)
                                     : cp == ch;
        if (hit) {
            if (last < i && !push_match(m, cap, count, last, i, false))
                return false;
            if (!push_match(m, cap, count, i, i + (size_t)l, true))
                return false;
            last = i + (size_t)l;
        }
        i += (size_t)l;
    }
    if (n > last && !push_match(m, cap, count, last, n, false))
        return false;
    return true;
}

/* Push the non-empty pieces m[0..k) of split text t/al into out. */
static bool push_pieces(td_splits *out, const char *t, const td_span *al, const td_match *m, size_t k) {
    for (size_t i = 0; i < k; i++)
        if (m[i].e > m[i].s && !td_splits_push(out, t + m[i].s, al + m[i].s, m[i].e - m[i].s, -1, al[m[i].s].s))
            return false;
    return true;
}

const td_bytelevel_map *td_bytelevel(void) {
    static td_bytelevel_map map;
    static int ready;
    if (__atomic_load_n(&ready, __ATOMIC_ACQUIRE))
        return &map;
    td_bytelevel_map mm;
    for (int i = 0; i < 512; i++)
        mm.dec[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = printable ? (uint32_t)b : (uint32_t)(256 + extra++);
        mm.enc_len[b] = (uint8_t)td_utf8_enc(cp, mm.enc[b]);
        mm.dec[cp] = (int16_t)b;
    }
    map = mm; /* identical content from any thread that races here */
    __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    return &map;
}

static td_status oom(td_ctx *ctx) { return td_fail_oom(ctx, 0, "pre-tokenized text"); }

/* Byte-level map of one piece: every byte becomes one char, aligned like its byte. */
static bool push_bytelevel(td_splits *out, const char *t, const td_span *al, size_t n, uint32_t ostart) {
    const td_bytelevel_map *bl = td_bytelevel();
    if (!TD_GROW(out->v, out->cap, out->n + 1) || !td_nbuf_reserve(&out->buf, out->buf.len + 2 * n))
        return false;
    size_t off = out->buf.len;
    char *d = out->buf.t + off;
    td_span *da = out->buf.al + off;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        for (int j = 0; j < bl->enc_len[c]; j++) {
            d[k] = bl->enc[c][j];
            da[k] = al[i];
            k++;
        }
    }
    out->buf.len += k;
    out->v[out->n++] = (td_split){off, k, -1, ostart};
    return true;
}

static td_status bytelevel(td_ctx *ctx, const td_pretok *p, td_work *w, const td_split *sp, const char *t,
                           const td_span *al, td_splits *out) {
    /* optional prefix space, then regex split, then byte map */
    const char *tt = t;
    const td_span *aa = al;
    size_t n = sp->len;
    if (p->add_prefix_space && n && t[0] != ' ') {
        td_nbuf *nb = &w->nb2;
        nb->len = 0;
        if (!td_nbuf_push_cp(nb, ' ', al[0]) || !td_nbuf_push(nb, t, al, n))
            return oom(ctx);
        tt = nb->t;
        aa = nb->al;
        n = nb->len;
    }
    if (!p->use_regex) {
        if (n && !push_bytelevel(out, tt, aa, n, sp->ostart))
            return oom(ctx);
        return TD_OK;
    }
    size_t k = 0;
    TD_TRY(td_regex_find(ctx, p->re, w, tt, n, &w->m2, &w->m2cap, &k));
    for (size_t i = 0; i < k; i++) {
        td_match m = w->m2[i];
        if (m.e > m.s && !push_bytelevel(out, tt + m.s, aa + m.s, m.e - m.s, aa[m.s].s))
            return oom(ctx);
    }
    return TD_OK;
}

static td_status metaspace(td_ctx *ctx, const td_pretok *p, td_work *w, const td_split *sp, const char *t,
                           const td_span *al, td_splits *out) {
    td_nbuf *nb = &w->nb2;
    nb->len = 0;
    char rep[4];
    int rl = td_utf8_enc(p->replacement, rep);
    for (size_t i = 0; i < sp->len; i++) {
        if (t[i] == ' ') {
            if (!td_nbuf_push_cp(nb, p->replacement, al[i]))
                return oom(ctx);
        } else if (!td_nbuf_push(nb, t + i, al + i, 1))
            return oom(ctx);
    }
    bool starts = nb->len >= (size_t)rl && memcmp(nb->t, rep, (size_t)rl) == 0;
    bool pre = nb->len && !starts &&
               (p->prepend_scheme == TD_PREPEND_ALWAYS || (p->prepend_scheme == TD_PREPEND_FIRST && sp->ostart == 0));
    if (pre) {
        td_nbuf *nb3 = &w->nb;
        nb3->len = 0;
        if (!td_nbuf_push_cp(nb3, p->replacement, nb->al[0]) || !td_nbuf_push(nb3, nb->t, nb->al, nb->len))
            return oom(ctx);
        td_nbuf tmp = *nb;
        *nb = *nb3;
        *nb3 = tmp;
    }
    if (!p->split) {
        if (nb->len && !td_splits_push(out, nb->t, nb->al, nb->len, -1, sp->ostart))
            return oom(ctx);
        return TD_OK;
    }
    size_t k = 0;
    if (!pred_matches(nb->t, nb->len, PRED_CHAR, p->replacement, &w->m2, &w->m2cap, &k))
        return oom(ctx);
    k = td_split_apply_behavior(w->m2, k, TD_SPLIT_MERGED_NEXT);
    if (!push_pieces(out, nb->t, nb->al, w->m2, k))
        return oom(ctx);
    return TD_OK;
}

static td_status apply_one(td_ctx *ctx, const td_pretok *p, td_work *w, const td_splits *in, td_splits *out) {
    for (size_t si = 0; si < in->n; si++) {
        const td_split *sp = &in->v[si];
        const char *t = in->buf.t + sp->off;
        const td_span *al = in->buf.al + sp->off;
        if (sp->added >= 0) {
            if (!td_splits_push(out, t, al, sp->len, sp->added, sp->ostart))
                return oom(ctx);
            continue;
        }
        size_t k = 0;
        switch (p->type) {
        case TD_PT_BYTELEVEL:
            TD_TRY(bytelevel(ctx, p, w, sp, t, al, out));
            continue;
        case TD_PT_METASPACE:
            TD_TRY(metaspace(ctx, p, w, sp, t, al, out));
            continue;
        case TD_PT_BERT: {
            /* whitespace removed, then punctuation isolated */
            if (!pred_matches(t, sp->len, PRED_WS, 0, &w->m2, &w->m2cap, &k))
                return oom(ctx);
            k = td_split_apply_behavior(w->m2, k, TD_SPLIT_REMOVED);
            for (size_t i = 0; i < k; i++) {
                td_match wm = w->m2[i];
                size_t k2 = 0;
                if (!pred_matches(t + wm.s, wm.e - wm.s, PRED_PUNCT, 0, &w->m, &w->mcap, &k2) ||
                    !push_pieces(out, t + wm.s, al + wm.s, w->m, k2))
                    return oom(ctx);
            }
            continue;
        }
        case TD_PT_WHITESPACE:
            TD_TRY(td_regex_find(ctx, p->re, w, t, sp->len, &w->m2, &w->m2cap, &k));
            for (size_t i = 0; i < k; i++)
                w->m2[i].is_match = !w->m2[i].is_match;
            k = td_split_apply_behavior(w->m2, k, TD_SPLIT_REMOVED);
            break;
        case TD_PT_WHITESPACE_SPLIT:
            if (!pred_matches(t, sp->len, PRED_WS, 0, &w->m2, &w->m2cap, &k))
                return oom(ctx);
            k = td_split_apply_behavior(w->m2, k, TD_SPLIT_REMOVED);
            break;
        case TD_PT_PUNCTUATION:
            if (!pred_matches(t, sp->len, PRED_PUNCT, 0, &w->m2, &w->m2cap, &k))
                return oom(ctx);
            k = td_split_apply_behavior(w->m2, k, p->behavior);
            break;
        case TD_PT_DIGITS:
            if (!pred_matches(t, sp->len, PRED_DIGIT, 0, &w->m2, &w->m2cap, &k))
                return oom(ctx);
            k = td_split_apply_behavior(w->m2, k, p->individual_digits ? TD_SPLIT_ISOLATED : TD_SPLIT_CONTIGUOUS);
            break;
        case TD_PT_SPLIT:
            if (p->pat && !p->pat_len) {
                /* empty string pattern: HF returns the whole piece as one non-match */
                k = 0;
                if (!push_match(&w->m2, &w->m2cap, &k, 0, sp->len, false))
                    return oom(ctx);
            } else
                TD_TRY(td_regex_find(ctx, p->re, w, t, sp->len, &w->m2, &w->m2cap, &k));
            if (p->invert)
                for (size_t i = 0; i < k; i++)
                    w->m2[i].is_match = !w->m2[i].is_match;
            k = td_split_apply_behavior(w->m2, k, p->behavior);
            break;
        case TD_PT_SEQUENCE:
            return td_fail(ctx, TD_ERR_INTERNAL, "nested Sequence reached apply_one");
        }
        if (!push_pieces(out, t, al, w->m2, k))
            return oom(ctx);
    }
    return TD_OK;
}

td_status td_pretok_apply(td_ctx *ctx, const td_pretok *p, td_work *w, td_splits **io) {
    if (p->type == TD_PT_SEQUENCE) {
        for (size_t i = 0; i < p->n_kids; i++)
            TD_TRY(td_pretok_apply(ctx, p->kids[i], w, io));
        return TD_OK;
    }
    td_splits *out = *io == &w->sp[1] ? &w->sp[2] : &w->sp[1];
    td_splits_clear(out);
    TD_TRY(apply_one(ctx, p, w, *io, out));
    *io = out;
    return TD_OK;
}

/* ---- parsing ------------------------------------------------------------ */
void td_pretok_free(td_pretok *p) {
    if (!p)
        return;
    free(p->pat);
    if (p->re)
        pcre2_code_free(p->re);
    for (size_t i = 0; i < p->n_kids; i++)
        td_pretok_free(p->kids[i]);
    free(p->kids);
    free(p);
}

static td_status parse_behavior(td_ctx *ctx, const cJSON *j, td_split_behavior dflt, td_split_behavior *out,
                                const char *where) {
    const cJSON *b = td_json_get(j, "behavior");
    *out = dflt;
    if (!b)
        return TD_OK;
    if (!cJSON_IsString(b))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"behavior\" must be a string", where);
    static const struct {
        const char *name;
        td_split_behavior b;
    } names[] = {{"Removed", TD_SPLIT_REMOVED},
                 {"Isolated", TD_SPLIT_ISOLATED},
                 {"MergedWithPrevious", TD_SPLIT_MERGED_PREV},
                 {"MergedWithNext", TD_SPLIT_MERGED_NEXT},
                 {"Contiguous", TD_SPLIT_CONTIGUOUS}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(b->valuestring, names[i].name)) {
            *out = names[i].b;
            return TD_OK;
        }
    return td_fail(ctx, TD_ERR_UNSUPPORTED,
                   "%s: split behavior '%s' is not supported (Removed, Isolated, MergedWithPrevious, "
                   "MergedWithNext, Contiguous)",
                   where, b->valuestring);
}

td_status td_pretok_parse(td_ctx *ctx, const cJSON *j, td_pretok **out) {
    *out = NULL;
    if (!cJSON_IsObject(j))
        return td_fail(ctx, TD_ERR_FORMAT, "pre_tokenizer: expected a JSON object");
    const char *type = NULL;
    TD_TRY(td_json_str(ctx, j, "type", &type, "pre_tokenizer"));
    td_pretok *p = calloc(1, sizeof *p);
    if (!p)
        return td_fail_oom(ctx, sizeof *p, "pre_tokenizer");
    char where[96];
    snprintf(where, sizeof where, "pre_tokenizer %s", type);
    td_status st = TD_OK;
    if (!strcmp(type, "BertPreTokenizer"))
        p->type = TD_PT_BERT;
    else if (!strcmp(type, "ByteLevel")) {
        p->type = TD_PT_BYTELEVEL;
        if ((st = td_json_bool(ctx, j, "add_prefix_space", true, &p->add_prefix_space, where)) ||
            (st = td_json_bool(ctx, j, "use_regex", true, &p->use_regex, where)) ||
            (st = td_json_bool(ctx, j, "trim_offsets", true, &p->trim_offsets, where)))
            goto out;
        if ((st = td_regex_compile(ctx, GPT2_PATTERN, strlen(GPT2_PATTERN), false, &p->re, where)))
            goto out;
    } else if (!strcmp(type, "Metaspace")) {
        p->type = TD_PT_METASPACE;
        const char *rep = NULL;
        if ((st = td_json_str(ctx, j, "replacement", &rep, where)))
            goto out;
        uint32_t cp = 0;
        size_t rl = strlen(rep);
        if (!rl || (size_t)td_utf8_dec(rep, rl, &cp) != rl) {
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: replacement must be exactly one character", where);
            goto out;
        }
        p->replacement = cp;
        p->prepend_scheme = TD_PREPEND_ALWAYS;
        const cJSON *ps = td_json_get(j, "prepend_scheme");
        const cJSON *aps = td_json_get(j, "add_prefix_space");
        if (cJSON_IsString(ps)) {
            if (!strcmp(ps->valuestring, "always"))
                p->prepend_scheme = TD_PREPEND_ALWAYS;
            else if (!strcmp(ps->valuestring, "first"))
                p->prepend_scheme = TD_PREPEND_FIRST;
            else if (!strcmp(ps->valuestring, "never"))
                p->prepend_scheme = TD_PREPEND_NEVER;
            else {
                st = td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: prepend_scheme '%s' is not one of always/first/never",
                             where, ps->valuestring);
                goto out;
            }
        } else if (cJSON_IsBool(aps))
            p->prepend_scheme = cJSON_IsTrue(aps) ? TD_PREPEND_ALWAYS : TD_PREPEND_NEVER;
        if ((st = td_json_bool(ctx, j, "split", true, &p->split, where)))
            goto out;
    } else if (!strcmp(type, "Whitespace")) {
        p->type = TD_PT_WHITESPACE;
        if ((st = td_regex_compile(ctx, WHITESPACE_PATTERN, strlen(WHITESPACE_PATTERN), false, &p->re, where)))
            goto out;
    } else if (!strcmp(type, "WhitespaceSplit"))
        p->type = TD_PT_WHITESPACE_SPLIT;
    else if (!strcmp(type, "Punctuation")) {
        p->type = TD_PT_PUNCTUATION;
        if ((st = parse_behavior(ctx, j, TD_SPLIT_ISOLATED, &p->behavior, where)))
            goto out;
    } else if (!strcmp(type, "Digits")) {
        p->type = TD_PT_DIGITS;
        if ((st = td_json_bool(ctx, j, "individual_digits", false, &p->individual_digits, where)))
            goto out;
    } else if (!strcmp(type, "Split")) {
        p->type = TD_PT_SPLIT;
        if ((st = parse_behavior(ctx, j, TD_SPLIT_REMOVED, &p->behavior, where)) ||
            (st = td_json_bool(ctx, j, "invert", false, &p->invert, where)))
            goto out;
        const cJSON *pat = td_json_get(j, "pattern");
        const cJSON *s = pat ? cJSON_GetObjectItemCaseSensitive(pat, "String") : NULL;
        const cJSON *r = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
        const cJSON *v = cJSON_IsString(s) ? s : r;
        if (!cJSON_IsString(v)) {
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: \"pattern\" must be {\"String\": text} or {\"Regex\": text}",
                         where);
            goto out;
        }
        size_t len = strlen(v->valuestring);
        if (v == s) {
            p->pat = malloc(len + 1);
            if (!p->pat) {
                st = td_fail_oom(ctx, len, "Split pattern");
                goto out;
            }
            memcpy(p->pat, v->valuestring, len + 1);
            p->pat_len = len;
        }
        if (!(v == s && len == 0) && (st = td_regex_compile(ctx, v->valuestring, len, v == s, &p->re, where)))
            goto out;
    } else if (!strcmp(type, "Sequence")) {
        p->type = TD_PT_SEQUENCE;
        const cJSON *arr = td_json_get(j, "pretokenizers");
        if (!cJSON_IsArray(arr)) {
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: \"pretokenizers\" must be an array", where);
            goto out;
        }
        size_t cnt = (size_t)cJSON_GetArraySize(arr);
        if (!(p->kids = calloc(cnt ? cnt : 1, sizeof *p->kids))) {
            st = td_fail_oom(ctx, cnt, "pretokenizers");
            goto out;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) {
            if ((st = td_pretok_parse(ctx, it, &p->kids[p->n_kids]))) {
                td_wrap(ctx, "in pre_tokenizer Sequence item %zu", p->n_kids);
                goto out;
            }
            p->n_kids++;
        }
    } else {
        st = td_fail(ctx, TD_ERR_UNSUPPORTED,
                     "pre_tokenizer type '%s' is not supported (supported: BertPreTokenizer, ByteLevel, Metaspace, "
                     "Whitespace, WhitespaceSplit, Punctuation, Digits, Split, Sequence)",
                     type);
    }
out:
    if (st) {
        td_pretok_free(p);
        return st;
    }
    *out = p;
    return TD_OK;
}
