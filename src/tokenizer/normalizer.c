/* Normalizers (HF `normalizers`): parse from tokenizer.json and apply to an
 * aligned text buffer. Each step rebuilds the text into a scratch buffer and
 * swaps, carrying alignments exactly as HF's NormalizedString does:
 * - a char mapped to several chars: all of them get the source char's range;
 * - removed chars vanish; composition keeps the starter's range;
 * - inserted text (Replace) gets the range of the last byte before it. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static void nbuf_swap(td_nbuf *a, td_nbuf *b) {
    td_nbuf t = *a;
    *a = *b;
    *b = t;
}

static td_status oom(td_ctx *ctx) { return td_fail_oom(ctx, 0, "normalized text"); }

td_status td_nbuf_transform(td_ctx *ctx, td_nbuf *b, td_nbuf *sc, const td_xform *xf, size_t n,
                            size_t initial_offset) {
    sc->len = 0;
    size_t off = 0;
    td_span zero = {0, 0};
    if (b->len)
        zero = (td_span){b->al[0].s, b->al[0].s};
    for (size_t i = 0; i < initial_offset && off < b->len; i++)
        off += td_utf8_len((unsigned char)b->t[off]);
    for (size_t i = 0; i < n; i++) {
        td_span al;
        if (xf[i].change > 0)
            al = off >= 1 && off - 1 < b->len ? b->al[off - 1] : zero;
        else
            al = off < b->len ? b->al[off] : (b->len ? b->al[b->len - 1] : zero);
        if (xf[i].change <= 0 && off < b->len)
            off += td_utf8_len((unsigned char)b->t[off]);
        for (int32_t k = 0; xf[i].change < 0 && k < -xf[i].change && off < b->len; k++)
            off += td_utf8_len((unsigned char)b->t[off]);
        if (off > b->len)
            off = b->len;
        if (!td_nbuf_push_cp(sc, xf[i].cp, al))
            return oom(ctx);
    }
    nbuf_swap(b, sc);
    return TD_OK;
}

static bool all_ascii(const td_nbuf *b) {
    for (size_t i = 0; i < b->len; i++)
        if ((unsigned char)b->t[i] >= 0x80)
            return false;
    return true;
}

/* ---- Unicode normalization forms --------------------------------------- */
static int ccc(uint32_t c) {
    if (c < 0x300)
        return 0;
    return utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
}

/* Primary composite of (a, b), or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (b < 0x300 && !(b >= 0x1161 && b <= 0x11C2))
        return 0;
    utf8proc_int32_t buf[2] = {(utf8proc_int32_t)a, (utf8proc_int32_t)b};
    utf8proc_ssize_t r = utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE);
    return r == 1 ? (uint32_t)buf[0] : 0;
}

static td_status unicode_normalize(td_ctx *ctx, td_work *w, td_nbuf *b, bool compat, bool compose) {
    if (all_ascii(b))
        return TD_OK;
    size_t n = 0;
    for (size_t i = 0; i < b->len;) {
        uint32_t cp;
        int k = td_utf8_dec(b->t + i, b->len - i, &cp);
        utf8proc_int32_t d[32];
        utf8proc_ssize_t m;
        if (cp < 0xC0) {
            /* Latin-1 below À: only compat mappings (NBSP, ª, ², ¼ ...) apply */
            m = compat ? utf8proc_decompose_char((utf8proc_int32_t)cp, d, 32, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT,
                                                 NULL)
                       : (d[0] = (utf8proc_int32_t)cp, 1);
        } else {
            int bc = 0;
            m = utf8proc_decompose_char((utf8proc_int32_t)cp, d, 32,
                                        UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0), &bc);
        }
        if (m < 0 || m > 32) {
            d[0] = (utf8proc_int32_t)cp;
            m = 1;
        }
        if (!TD_GROW(w->cps, w->cpscap, n + (size_t)m) || !TD_GROW(w->tags, w->tagscap, n + (size_t)m))
            return oom(ctx);
        for (utf8proc_ssize_t j = 0; j < m; j++) {
            w->cps[n] = (uint32_t)d[j];
            w->tags[n] = (uint32_t)i;
            n++;
        }
        i += (size_t)k;
    }
    uint32_t *c = w->cps, *t = w->tags;
    /* canonical ordering: stable sort of each run of non-starters by ccc */
    for (size_t i = 1; i < n; i++) {
        int ci = ccc(c[i]);
        if (!ci)
            continue;
        size_t j = i;
        while (j > 0 && ccc(c[j - 1]) > ci) {
            uint32_t x = c[j], y = t[j];
            c[j] = c[j - 1];
            t[j] = t[j - 1];
            c[j - 1] = x;
            t[j - 1] = y;
            j--;
        }
    }
    if (compose && n > 0) {
        size_t starter = 0;
        bool have_starter = ccc(c[0]) == 0;
        int last_class = have_starter ? 0 : 256;
        size_t out = 1;
        for (size_t i = 1; i < n; i++) {
            uint32_t ch = c[i];
            int cls = ccc(ch);
            if (have_starter && (last_class < cls || last_class == 0)) {
                uint32_t comp = compose_pair(c[starter], ch);
                if (comp) {
                    c[starter] = comp;
                    continue;
                }
            }
            if (cls == 0) {
                starter = out;
                have_starter = true;
            }
            last_class = cls;
            c[out] = ch;
            t[out] = t[i];
            out++;
        }
        n = out;
    }
    td_nbuf *sc = &w->nb2;
    sc->len = 0;
    for (size_t i = 0; i < n; i++)
        if (!td_nbuf_push_cp(sc, c[i], b->al[t[i]]))
            return oom(ctx);
    nbuf_swap(b, sc);
    return TD_OK;
}

/* ---- per-char maps ------------------------------------------------------ */
static td_status lowercase(td_ctx *ctx, td_work *w, td_nbuf *b) {
    td_nbuf *sc = &w->nb2;
    if (all_ascii(b)) {
        for (size_t i = 0; i < b->len; i++)
            if (b->t[i] >= 'A' && b->t[i] <= 'Z')
                b->t[i] = (char)(b->t[i] + 32);
        return TD_OK;
    }
    sc->len = 0;
    for (size_t i = 0; i < b->len;) {
        uint32_t cp;
        int k = td_utf8_dec(b->t + i, b->len - i, &cp);
        td_span sp = b->al[i];
        bool ok;
        if (cp == 0x130) /* İ lowercases to i + combining dot above (full case mapping) */
            ok = td_nbuf_push_cp(sc, 'i', sp) && td_nbuf_push_cp(sc, 0x307, sp);
        else
            ok = td_nbuf_push_cp(sc, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), sp);
        if (!ok)
            return oom(ctx);
        i += (size_t)k;
    }
    nbuf_swap(b, sc);
    return TD_OK;
}

/* all_marks: StripAccents removes every combining mark (M*); BertNormalizer only Mn. */
static td_status strip_marks(td_ctx *ctx, td_work *w, td_nbuf *b, bool all_marks) {
    if (all_ascii(b))
        return TD_OK;
    td_nbuf *sc = &w->nb2;
    sc->len = 0;
    for (size_t i = 0; i < b->len;) {
        uint32_t cp;
        int k = td_utf8_dec(b->t + i, b->len - i, &cp);
        bool mark = all_marks ? td_char_is_mark(cp) : td_char_is_mark_nonspacing(cp);
        if (!mark && !td_nbuf_push(sc, b->t + i, b->al + i, (size_t)k))
            return oom(ctx);
        i += (size_t)k;
    }
    nbuf_swap(b, sc);
    return TD_OK;
}

static td_status bert_clean_and_chinese(td_ctx *ctx, const td_normalizer *n, td_work *w, td_nbuf *b) {
    td_nbuf *sc = &w->nb2;
    sc->len = 0;
    if (!td_nbuf_reserve(sc, b->len))
        return oom(ctx);
    for (size_t i = 0; i < b->len;) {
        uint32_t cp;
        int k = td_utf8_dec(b->t + i, b->len - i, &cp);
        td_span sp = b->al[i];
        bool ok = true;
        if (n->clean_text) {
            bool ws = cp == '\t' || cp == '\n' || cp == '\r' || td_char_is_whitespace(cp);
            bool ctrl = !(cp == '\t' || cp == '\n' || cp == '\r') && td_char_is_other(cp);
            if (cp == 0 || cp == 0xFFFD || ctrl) {
                i += (size_t)k;
                continue;
            }
            if (ws) {
                ok = td_nbuf_push_cp(sc, ' ', sp);
                i += (size_t)k;
                if (!ok)
                    return oom(ctx);
                continue;
            }
        }
        if (n->handle_chinese && td_char_is_chinese(cp))
            ok = td_nbuf_push_cp(sc, ' ', sp) && td_nbuf_push(sc, b->t + i, b->al + i, (size_t)k) &&
                 td_nbuf_push_cp(sc, ' ', sp);
        else
            ok = td_nbuf_push(sc, b->t + i, b->al + i, (size_t)k);
        if (!ok)
            return oom(ctx);
        i += (size_t)k;
    }
    nbuf_swap(b, sc);
    return TD_OK;
}

static td_status replace(td_ctx *ctx, const td_normalizer *n, td_work *w, td_nbuf *b) {
    size_t nm = 0;
    TD_TRY(td_regex_find(ctx, n->re, w, b->t, b->len, &w->m, &w->mcap, &nm));
    bool any = false;
    for (size_t i = 0; i < nm; i++)
        any |= w->m[i].is_match;
    if (!any)
        return TD_OK;
    td_nbuf *sc = &w->nb2;
    sc->len = 0;
    td_span zero = {b->len ? b->al[0].s : 0, b->len ? b->al[0].s : 0};
    for (size_t i = 0; i < nm; i++) {
        td_match m = w->m[i];
        if (!m.is_match) {
            if (!td_nbuf_push(sc, b->t + m.s, b->al + m.s, m.e - m.s))
                return oom(ctx);
            continue;
        }
        td_span sp = m.e > 0 ? b->al[m.e - 1] : zero;
        for (size_t j = 0; j < n->content_len;) {
            uint32_t cp;
            int k = td_utf8_dec(n->content + j, n->content_len - j, &cp);
            if (!td_nbuf_push_cp(sc, cp, sp))
                return oom(ctx);
            j += (size_t)k;
        }
    }
    nbuf_swap(b, sc);
    return TD_OK;
}

static td_status prepend(td_ctx *ctx, const char *s, td_work *w, td_nbuf *b) {
    if (!b->len || !*s)
        return TD_OK;
    td_nbuf *sc = &w->nb2;
    sc->len = 0;
    td_span sp = b->al[0];
    size_t sl = strlen(s);
    for (size_t j = 0; j < sl;) {
        uint32_t cp;
        int k = td_utf8_dec(s + j, sl - j, &cp);
        if (!td_nbuf_push_cp(sc, cp, sp))
            return oom(ctx);
        j += (size_t)k;
    }
    if (!td_nbuf_push(sc, b->t, b->al, b->len))
        return oom(ctx);
    nbuf_swap(b, sc);
    return TD_OK;
}

static void strip(const td_normalizer *n, td_nbuf *b) {
    size_t s = 0, e = b->len;
    if (n->strip_left)
        while (s < e) {
            uint32_t cp;
            int k = td_utf8_dec(b->t + s, e - s, &cp);
            if (!td_char_is_whitespace(cp))
                break;
            s += (size_t)k;
        }
    if (n->strip_right)
        while (e > s) {
            size_t p = e - 1;
            while (p > s && ((unsigned char)b->t[p] & 0xC0) == 0x80)
                p--;
            uint32_t cp;
            td_utf8_dec(b->t + p, e - p, &cp);
            if (!td_char_is_whitespace(cp))
                break;
            e = p;
        }
    if (s > 0) {
        memmove(b->t, b->t + s, e - s);
        memmove(b->al, b->al + s, (e - s) * sizeof *b->al);
    }
    b->len = e - s;
}

td_status td_normalizer_apply(td_ctx *ctx, const td_normalizer *n, td_work *w, td_nbuf *b) {
    switch (n->type) {
    case TD_NORM_BERT:
        if (n->clean_text || n->handle_chinese)
            TD_TRY(bert_clean_and_chinese(ctx, n, w, b));
        if (n->strip_accents) {
            TD_TRY(unicode_normalize(ctx, w, b, false, false));
            TD_TRY(strip_marks(ctx, w, b, false));
        }
        if (n->lowercase)
            TD_TRY(lowercase(ctx, w, b));
        return TD_OK;
    case TD_NORM_NFC: return unicode_normalize(ctx, w, b, false, true);
    case TD_NORM_NFD: return unicode_normalize(ctx, w, b, false, false);
    case TD_NORM_NFKC: return unicode_normalize(ctx, w, b, true, true);
    case TD_NORM_NFKD: return unicode_normalize(ctx, w, b, true, false);
    case TD_NORM_LOWERCASE: return lowercase(ctx, w, b);
    case TD_NORM_STRIP_ACCENTS: return strip_marks(ctx, w, b, true);
    case TD_NORM_REPLACE: return replace(ctx, n, w, b);
    case TD_NORM_PREPEND: return prepend(ctx, n->prepend, w, b);
    case TD_NORM_STRIP: strip(n, b); return TD_OK;
    case TD_NORM_PRECOMPILED: return td_precompiled_apply(ctx, n, w, b);
    case TD_NORM_SEQUENCE:
        for (size_t i = 0; i < n->n_kids; i++)
            TD_TRY(td_normalizer_apply(ctx, n->kids[i], w, b));
        return TD_OK;
    }
    return td_fail(ctx, TD_ERR_INTERNAL, "normalizer type %d not handled", (int)n->type);
}

/* ---- parsing ------------------------------------------------------------ */
void td_normalizer_free(td_normalizer *n) {
    if (!n)
        return;
    free(n->pat);
    free(n->content);
    if (n->re)
        pcre2_code_free(n->re);
    free(n->prepend);
    free(n->trie);
    free(n->norm_table);
    for (size_t i = 0; i < n->n_kids; i++)
        td_normalizer_free(n->kids[i]);
    free(n->kids);
    free(n);
}

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* Pattern {"String": s} or {"Regex": r}: compile to a PCRE2 code (literal for String). */
static td_status parse_pattern(td_ctx *ctx, const cJSON *j, pcre2_code **re, char **pat, const char *where) {
    const cJSON *p = td_json_get(j, "pattern");
    if (!p || !cJSON_IsObject(p))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: missing \"pattern\" object ({\"String\": ...} or {\"Regex\": ...})",
                       where);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(p, "String");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(p, "Regex");
    const cJSON *v = cJSON_IsString(s) ? s : r;
    if (!cJSON_IsString(v))
        return td_fail(ctx, TD_ERR_FORMAT, "%s: pattern must be {\"String\": text} or {\"Regex\": text}", where);
    size_t len = strlen(v->valuestring);
    if (pat && !(*pat = dup_n(v->valuestring, len)))
        return td_fail_oom(ctx, len, "pattern");
    return td_regex_compile(ctx, v->valuestring, len, v == s, re, where);
}

td_status td_normalizer_parse(td_ctx *ctx, const cJSON *j, td_normalizer **out) {
    *out = NULL;
    if (!cJSON_IsObject(j))
        return td_fail(ctx, TD_ERR_FORMAT, "normalizer: expected a JSON object");
    const char *type = NULL;
    TD_TRY(td_json_str(ctx, j, "type", &type, "normalizer"));
    td_normalizer *n = calloc(1, sizeof *n);
    if (!n)
        return td_fail_oom(ctx, sizeof *n, "normalizer");
    td_status st = TD_OK;
    char where[96];
    snprintf(where, sizeof where, "normalizer %s", type);
    if (!strcmp(type, "BertNormalizer")) {
        n->type = TD_NORM_BERT;
        if ((st = td_json_bool(ctx, j, "clean_text", true, &n->clean_text, where)) ||
            (st = td_json_bool(ctx, j, "handle_chinese_chars", true, &n->handle_chinese, where)) ||
            (st = td_json_bool(ctx, j, "lowercase", true, &n->lowercase, where)))
            goto out;
        /* strip_accents null means "same as lowercase" */
        if ((st = td_json_bool(ctx, j, "strip_accents", n->lowercase, &n->strip_accents, where)))
            goto out;
    } else if (!strcmp(type, "NFC"))
        n->type = TD_NORM_NFC;
    else if (!strcmp(type, "NFD"))
        n->type = TD_NORM_NFD;
    else if (!strcmp(type, "NFKC"))
        n->type = TD_NORM_NFKC;
    else if (!strcmp(type, "NFKD"))
        n->type = TD_NORM_NFKD;
    else if (!strcmp(type, "Lowercase"))
        n->type = TD_NORM_LOWERCASE;
    else if (!strcmp(type, "StripAccents"))
        n->type = TD_NORM_STRIP_ACCENTS;
    else if (!strcmp(type, "Replace")) {
        n->type = TD_NORM_REPLACE;
        const char *content;
        if ((st = parse_pattern(ctx, j, &n->re, &n->pat, where)) ||
            (st = td_json_str(ctx, j, "content", &content, where)))
            goto out;
        n->content_len = strlen(content);
        if (!(n->content = dup_n(content, n->content_len))) {
            st = td_fail_oom(ctx, n->content_len, "Replace content");
            goto out;
        }
    } else if (!strcmp(type, "Prepend")) {
        n->type = TD_NORM_PREPEND;
        const char *p;
        if ((st = td_json_str(ctx, j, "prepend", &p, where)))
            goto out;
        if (!(n->prepend = dup_n(p, strlen(p)))) {
            st = td_fail_oom(ctx, strlen(p), "Prepend");
            goto out;
        }
    } else if (!strcmp(type, "Strip")) {
        n->type = TD_NORM_STRIP;
        if ((st = td_json_bool(ctx, j, "strip_left", true, &n->strip_left, where)) ||
            (st = td_json_bool(ctx, j, "strip_right", true, &n->strip_right, where)))
            goto out;
    } else if (!strcmp(type, "Precompiled")) {
        n->type = TD_NORM_PRECOMPILED;
        const cJSON *pc = td_json_get(j, "precompiled_charsmap");
        if (!pc) {
            /* HF accepts a missing/null charsmap: the normalizer then changes nothing */
            n->trie_units = 0;
        } else if (!cJSON_IsString(pc)) {
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: precompiled_charsmap must be a base64 string", where);
            goto out;
        } else if ((st = td_precompiled_parse(ctx, n, pc->valuestring)))
            goto out;
    } else if (!strcmp(type, "Sequence")) {
        n->type = TD_NORM_SEQUENCE;
        const cJSON *arr = td_json_get(j, "normalizers");
        if (!cJSON_IsArray(arr)) {
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: \"normalizers\" must be an array", where);
            goto out;
        }
        size_t cnt = (size_t)cJSON_GetArraySize(arr);
        n->kids = calloc(cnt ? cnt : 1, sizeof *n->kids);
        if (!n->kids) {
            st = td_fail_oom(ctx, cnt, "normalizers");
            goto out;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) {
            if ((st = td_normalizer_parse(ctx, it, &n->kids[n->n_kids]))) {
                td_wrap(ctx, "in normalizer Sequence item %zu", n->n_kids);
                goto out;
            }
            n->n_kids++;
        }
    } else {
        st = td_fail(ctx, TD_ERR_UNSUPPORTED,
                     "normalizer type '%s' is not supported (supported: BertNormalizer, NFC, NFD, NFKC, NFKD, "
                     "Lowercase, StripAccents, Replace, Prepend, Strip, Precompiled, Sequence)",
                     type);
        goto out;
    }
out:
    if (st) {
        td_normalizer_free(n);
        return st;
    }
    *out = n;
    return TD_OK;
}
