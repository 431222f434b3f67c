/* Small building blocks of the pipeline: UTF-8 helpers, the character classes
 * HF uses (Rust char methods), the aligned text buffer, split lists, token
 * vectors, string lists, the vocabulary, and the scratch space. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

int td_utf8_enc(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s (0 when invalid), per RFC 3629. */
static size_t utf8_valid_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0)
            return 0;
        if (c == 0xED && s[1] >= 0xA0)
            return 0; /* surrogates */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90)
            return 0;
        if (c == 0xF4 && s[1] >= 0x90)
            return 0;
        return 4;
    }
    return 0;
}

size_t td_utf8_invalid_at(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_valid_seq(u + i, n - i);
        if (!k)
            return i;
        i += k;
    }
    return (size_t)-1;
}

/* Length of the maximal invalid subpart at s (>= 1), as Unicode recommends and
 * Rust's from_utf8_lossy implements: a lead byte plus the continuation bytes
 * that could still have been part of a valid sequence. */
static size_t utf8_invalid_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 1;
    size_t i = 1;
    if (i < n && s[i] >= lo && s[i] <= hi) {
        i++;
        while (i < need && i < n && (s[i] & 0xC0) == 0x80)
            i++;
    }
    return i;
}

bool td_utf8_lossy_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_valid_seq(u + i, n - i);
        const char *src = s + i;
        size_t m = k;
        if (!k) {
            src = "\xEF\xBF\xBD";
            m = 3;
            k = utf8_invalid_len(u + i, n - i);
        }
        if (!td_grow((void **)buf, cap, *len + m + 1, 1))
            return false;
        memcpy(*buf + *len, src, m);
        *len += m;
        i += k;
    }
    if (!td_grow((void **)buf, cap, *len + 1, 1))
        return false;
    (*buf)[*len] = 0;
    return true;
}

bool td_char_is_whitespace(uint32_t c) {
    if (c <= 0x20)
        return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85)
        return false;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

bool td_char_is_punct(uint32_t c) {
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
               (c >= 0x7B && c <= 0x7E);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

bool td_char_is_numeric(uint32_t c) {
    if (c < 0x80)
        return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

bool td_char_is_alnum(uint32_t c) {
    if (c < 0x80)
        return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

bool td_char_is_mark_nonspacing(uint32_t c) {
    return c >= 0x300 && utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_MN;
}

bool td_char_is_mark(uint32_t c) {
    if (c < 0x300)
        return false;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC || k == UTF8PROC_CATEGORY_ME;
}

bool td_char_is_other(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CN ||
           k == UTF8PROC_CATEGORY_CO || k == UTF8PROC_CATEGORY_CS;
}

bool td_char_is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* ---- aligned text ------------------------------------------------------- */
bool td_nbuf_reserve(td_nbuf *b, size_t need) {
    if (need <= b->cap)
        return true;
    size_t cap = b->cap, cap2 = b->cap;
    if (!td_grow((void **)&b->t, &cap, need, 1))
        return false;
    if (!td_grow((void **)&b->al, &cap2, need, sizeof *b->al))
        return false;
    b->cap = cap < cap2 ? cap : cap2;
    return true;
}

bool td_nbuf_push_cp(td_nbuf *b, uint32_t cp, td_span sp) {
    if (!td_nbuf_reserve(b, b->len + 4))
        return false;
    int k = td_utf8_enc(cp, b->t + b->len);
    for (int i = 0; i < k; i++)
        b->al[b->len + i] = sp;
    b->len += k;
    return true;
}

bool td_nbuf_push(td_nbuf *b, const char *t, const td_span *al, size_t n) {
    if (!td_nbuf_reserve(b, b->len + n))
        return false;
    memcpy(b->t + b->len, t, n);
    memcpy(b->al + b->len, al, n * sizeof *al);
    b->len += n;
    return true;
}

void td_nbuf_free(td_nbuf *b) {
    if (!b)
        return;
    free(b->t);
    free(b->al);
    memset(b, 0, sizeof *b);
}

bool td_splits_push(td_splits *s, const char *t, const td_span *al, size_t n, int32_t added, uint32_t ostart) {
    if (!TD_GROW(s->v, s->cap, s->n + 1))
        return false;
    size_t off = s->buf.len;
    if (!td_nbuf_push(&s->buf, t, al, n))
        return false;
    s->v[s->n++] = (td_split){off, n, added, ostart};
    return true;
}

void td_splits_free(td_splits *s) {
    if (!s)
        return;
    td_nbuf_free(&s->buf);
    free(s->v);
    memset(s, 0, sizeof *s);
}

bool td_tokvec_push(td_tokvec *tv, td_tok t) {
    if (!TD_GROW(tv->v, tv->cap, tv->n + 1))
        return false;
    tv->v[tv->n++] = t;
    return true;
}

bool td_work_push_mtok(td_work *w, int32_t id, uint32_t s, uint32_t e) {
    if (!TD_GROW(w->mt, w->mtcap, w->mtn + 1))
        return false;
    w->mt[w->mtn++] = (td_mtok){id, s, e};
    return true;
}

bool td_strlist_push(td_strlist *l, const char *s, size_t n) {
    size_t c1 = l->cap, c2 = l->cap;
    if (!TD_GROW(l->s, c1, l->n + 1) || !TD_GROW(l->len, c2, l->n + 1))
        return false;
    l->cap = c1 < c2 ? c1 : c2;
    char *p = malloc(n + 1);
    if (!p)
        return false;
    memcpy(p, s, n);
    p[n] = 0;
    l->s[l->n] = p;
    l->len[l->n] = n;
    l->n++;
    return true;
}

void td_strlist_free(td_strlist *l) {
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->s[i]);
    free(l->s);
    free(l->len);
    memset(l, 0, sizeof *l);
}

void td_work_free(td_work *w) {
    if (!w)
        return;
    td_nbuf_free(&w->nb);
    td_nbuf_free(&w->nb2);
    for (int i = 0; i < 3; i++)
        td_splits_free(&w->sp[i]);
    free(w->m);
    free(w->m2);
    free(w->xf);
    free(w->cps);
    free(w->tags);
    if (w->md)
        pcre2_match_data_free(w->md);
    free(w->mt);
    free(w->sym);
    free(w->heap);
    free(w->str);
    free(w->lat);
    free(w->seqtok[0].v);
    free(w->seqtok[1].v);
    free(w->pieces);
    free(w->piece_ids);
    free(w->ids2);
    memset(w, 0, sizeof *w);
}

/* ---- vocabulary --------------------------------------------------------- */
td_status td_vocab_set(td_ctx *ctx, td_vocab *v, const char *tok, size_t len, size_t id, const char *where) {
    if (id >= v->n)
        return td_fail(ctx, TD_ERR_INTERNAL, "%s: vocab id %zu beyond reserved size %zu", where, id, v->n);
    if (len > UINT32_MAX / 2)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: token %zu is too long", where, id);
    if (v->tok[id])
        return td_fail(ctx, TD_ERR_FORMAT, "%s: id %zu is used by two tokens ('%s' and '%.*s')", where, id,
                       v->tok[id], (int)(len > 64 ? 64 : len), tok);
    char *p = malloc(len + 1);
    if (!p)
        return td_fail_oom(ctx, len + 1, "vocabulary token");
    memcpy(p, tok, len);
    p[len] = 0;
    v->tok[id] = p;
    v->toklen[id] = (uint32_t)len;
    if (td_strmap_get(&v->map, p, len) >= 0)
        return TD_OK; /* duplicate string: HF keeps the map's last entry; the first id stays reachable by id */
    if (!td_strmap_put(&v->map, p, len, (int32_t)id))
        return td_fail_oom(ctx, 0, "vocabulary map");
    return TD_OK;
}

void td_vocab_free(td_vocab *v) {
    if (!v)
        return;
    if (v->tok)
        for (size_t i = 0; i < v->n; i++)
            free(v->tok[i]);
    free(v->tok);
    free(v->toklen);
    td_strmap_free(&v->map);
    memset(v, 0, sizeof *v);
}
