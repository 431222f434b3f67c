/* Decoders (HF `decoders`): turn the token strings of an id list back into
 * text. Each decoder rewrites the list of token strings (decode_chain); the
 * tokenizer joins the final list. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

void td_decoder_free(td_decoder *d) {
    if (!d)
        return;
    free(d->prefix);
    free(d->pat);
    free(d->content);
    if (d->re)
        pcre2_code_free(d->re);
    for (size_t i = 0; i < d->n_kids; i++)
        td_decoder_free(d->kids[i]);
    free(d->kids);
    free(d);
}

static td_status one_char(td_ctx *ctx, const cJSON *j, const char *key, uint32_t *cp, const char *where) {
    const char *s;
    TD_TRY(td_json_str(ctx, j, key, &s, where));
    size_t l = strlen(s);
    if (!l || (size_t)td_utf8_dec(s, l, cp) != l)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: \"%s\" must be exactly one character", where, key);
    return TD_OK;
}

td_status td_decoder_parse(td_ctx *ctx, const cJSON *j, td_decoder **out) {
    *out = NULL;
    if (!cJSON_IsObject(j))
        return td_fail(ctx, TD_ERR_FORMAT, "decoder: expected a JSON object");
    const char *type;
    TD_TRY(td_json_str(ctx, j, "type", &type, "decoder"));
    td_decoder *d = calloc(1, sizeof *d);
    if (!d)
        return td_fail_oom(ctx, sizeof *d, "decoder");
    char where[96];
    snprintf(where, sizeof where, "decoder %s", type);
    td_status st = TD_OK;
    const char *s;
    if (!strcmp(type, "WordPiece")) {
        d->type = TD_DEC_WORDPIECE;
        s = "##";
        if (td_json_get(j, "prefix") && (st = td_json_str(ctx, j, "prefix", &s, where)))
            goto out;
        if (!(d->prefix = strdup(s)) || (st = td_json_bool(ctx, j, "cleanup", true, &d->cleanup, where)))
            goto fail_oom_or_st;
    } else if (!strcmp(type, "ByteLevel"))
        d->type = TD_DEC_BYTELEVEL;
    else if (!strcmp(type, "Metaspace")) {
        d->type = TD_DEC_METASPACE;
        if ((st = one_char(ctx, j, "replacement", &d->replacement, where)))
            goto out;
        d->prepend_scheme = TD_PREPEND_ALWAYS;
        const cJSON *ps = td_json_get(j, "prepend_scheme"), *aps = td_json_get(j, "add_prefix_space");
        if (cJSON_IsString(ps))
            d->prepend_scheme = !strcmp(ps->valuestring, "never")   ? TD_PREPEND_NEVER
                                : !strcmp(ps->valuestring, "first") ? TD_PREPEND_FIRST
                                                                    : TD_PREPEND_ALWAYS;
        else if (cJSON_IsBool(aps))
            d->prepend_scheme = cJSON_IsTrue(aps) ? TD_PREPEND_ALWAYS : TD_PREPEND_NEVER;
    } else if (!strcmp(type, "BPEDecoder")) {
        d->type = TD_DEC_BPE;
        s = "</w>";
        if (td_json_get(j, "suffix") && (st = td_json_str(ctx, j, "suffix", &s, where)))
            goto out;
        if (!(d->prefix = strdup(s)))
            goto fail_oom_or_st;
    } else if (!strcmp(type, "ByteFallback"))
        d->type = TD_DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse"))
        d->type = TD_DEC_FUSE;
    else if (!strcmp(type, "Strip")) {
        d->type = TD_DEC_STRIP;
        if ((st = one_char(ctx, j, "content", &d->strip_content, where)) ||
            (st = td_json_size(ctx, j, "start", 1u << 20, &d->strip_start, where)) ||
            (st = td_json_size(ctx, j, "stop", 1u << 20, &d->strip_stop, where)))
            goto out;
    } else if (!strcmp(type, "Replace")) {
        d->type = TD_DEC_REPLACE;
        const cJSON *p = td_json_get(j, "pattern");
        const cJSON *ps = p ? cJSON_GetObjectItemCaseSensitive(p, "String") : NULL;
        const cJSON *pr = p ? cJSON_GetObjectItemCaseSensitive(p, "Regex") : NULL;
        const cJSON *v = cJSON_IsString(ps) ? ps : pr;
        if (!cJSON_IsString(v)) {
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}", where);
            goto out;
        }
        if ((st = td_json_str(ctx, j, "content", &s, where)))
            goto out;
        if (!(d->content = strdup(s)))
            goto fail_oom_or_st;
        if ((st = td_regex_compile(ctx, v->valuestring, strlen(v->valuestring), v == ps, &d->re, where)))
            goto out;
    } else if (!strcmp(type, "Sequence")) {
        d->type = TD_DEC_SEQUENCE;
        const cJSON *arr = td_json_get(j, "decoders");
        if (!cJSON_IsArray(arr)) {
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: \"decoders\" must be an array", where);
            goto out;
        }
        size_t cnt = (size_t)cJSON_GetArraySize(arr);
        if (!(d->kids = calloc(cnt ? cnt : 1, sizeof *d->kids)))
            goto fail_oom_or_st;
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) {
            if ((st = td_decoder_parse(ctx, it, &d->kids[d->n_kids]))) {
                td_wrap(ctx, "in decoder Sequence item %zu", d->n_kids);
                goto out;
            }
            d->n_kids++;
        }
    } else {
        st = td_fail(ctx, TD_ERR_UNSUPPORTED,
                     "decoder type '%s' is not supported (supported: WordPiece, ByteLevel, Metaspace, BPEDecoder, "
                     "ByteFallback, Fuse, Strip, Replace, Sequence)",
                     type);
    }
    goto out;
fail_oom_or_st:
    if (!st)
        st = td_fail_oom(ctx, 0, "decoder");
out:
    if (st) {
        td_decoder_free(d);
        return st;
    }
    *out = d;
    return TD_OK;
}

/* Replace every occurrence of pat by rep in s[0..n); result malloc'd. */
static char *replace_all(const char *s, size_t n, const char *pat, const char *rep, size_t *out_len) {
    size_t pl = strlen(pat), rl = strlen(rep);
    size_t cap = n + 1, len = 0;
    char *o = malloc(cap);
    if (!o)
        return NULL;
    for (size_t i = 0; i < n;) {
        if (pl && i + pl <= n && !memcmp(s + i, pat, pl)) {
            if (!td_grow((void **)&o, &cap, len + rl + 1, 1))
                goto oom;
            memcpy(o + len, rep, rl);
            len += rl;
            i += pl;
        } else {
            if (!td_grow((void **)&o, &cap, len + 2, 1))
                goto oom;
            o[len++] = s[i++];
        }
    }
    o[len] = 0;
    *out_len = len;
    return o;
oom:
    free(o);
    return NULL;
}

static bool set_item(td_strlist *l, size_t i, char *s, size_t n) {
    if (!s)
        return false;
    free(l->s[i]);
    l->s[i] = s;
    l->len[i] = n;
    return true;
}

/* HF wordpiece cleanup: undo the spaces put around punctuation and contractions. */
static char *cleanup(const char *s, size_t n, size_t *out_len) {
    static const char *const pairs[][2] = {{" .", "."},       {" ?", "?"},   {" !", "!"},   {" ,", ","},
                                           {" ' ", "'"},      {" n't", "n't"}, {" 'm", "'m"}, {" do not", " don't"},
                                           {" 's", "'s"},     {" 've", "'ve"}, {" 're", "'re"}};
    char *cur = malloc(n + 1);
    if (!cur)
        return NULL;
    memcpy(cur, s, n);
    cur[n] = 0;
    size_t len = n;
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        size_t nl;
        char *nx = replace_all(cur, len, pairs[k][0], pairs[k][1], &nl);
        free(cur);
        if (!nx)
            return NULL;
        cur = nx;
        len = nl;
    }
    *out_len = len;
    return cur;
}

static td_status dec_one(td_ctx *ctx, const td_decoder *d, td_strlist *l) {
    switch (d->type) {
    case TD_DEC_SEQUENCE:
        for (size_t i = 0; i < d->n_kids; i++)
            TD_TRY(dec_one(ctx, d->kids[i], l));
        return TD_OK;
    case TD_DEC_WORDPIECE: {
        size_t pl = strlen(d->prefix);
        for (size_t i = 0; i < l->n; i++) {
            char *s = l->s[i];
            size_t n = l->len[i];
            char *nx;
            size_t nl;
            if (i != 0) {
                if (n >= pl && !memcmp(s, d->prefix, pl)) {
                    nl = n - pl;
                    nx = malloc(nl + 1);
                    if (nx) {
                        memcpy(nx, s + pl, nl);
                        nx[nl] = 0;
                    }
                } else {
                    nl = n + 1;
                    nx = malloc(nl + 1);
                    if (nx) {
                        nx[0] = ' ';
                        memcpy(nx + 1, s, n);
                        nx[nl] = 0;
                    }
                }
                if (!set_item(l, i, nx, nl))
                    return td_fail_oom(ctx, n, "decode");
            }
            if (d->cleanup) {
                nx = cleanup(l->s[i], l->len[i], &nl);
                if (!set_item(l, i, nx, nl))
                    return td_fail_oom(ctx, n, "decode");
            }
        }
        return TD_OK;
    }
    case TD_DEC_BYTELEVEL: {
        /* join all tokens, map chars back to bytes, then lossy UTF-8 */
        const td_bytelevel_map *bl = td_bytelevel();
        size_t total = 0;
        for (size_t i = 0; i < l->n; i++)
            total += l->len[i];
        char *bytes = malloc(total + 1);
        if (!bytes)
            return td_fail_oom(ctx, total, "decode");
        size_t bn = 0;
        for (size_t i = 0; i < l->n; i++) {
            /* HF: a token with any char outside the byte alphabet contributes its raw UTF-8 bytes */
            bool all = true;
            for (size_t p = 0; p < l->len[i] && all;) {
                uint32_t cp;
                p += (size_t)td_utf8_dec(l->s[i] + p, l->len[i] - p, &cp);
                all = cp < 512 && bl->dec[cp] >= 0;
            }
            if (!all) {
                memcpy(bytes + bn, l->s[i], l->len[i]);
                bn += l->len[i];
                continue;
            }
            for (size_t p = 0; p < l->len[i];) {
                uint32_t cp;
                p += (size_t)td_utf8_dec(l->s[i] + p, l->len[i] - p, &cp);
                bytes[bn++] = (char)bl->dec[cp];
            }
        }
        char *o = NULL;
        size_t ol = 0, oc = 0;
        bool ok = td_utf8_lossy_append(&o, &ol, &oc, bytes, bn);
        free(bytes);
        if (!ok) {
            free(o);
            return td_fail_oom(ctx, total, "decode");
        }
        for (size_t i = 0; i < l->n; i++)
            free(l->s[i]);
        l->n = 0;
        bool pushed = td_strlist_push(l, o ? o : "", ol);
        free(o);
        return pushed ? TD_OK : td_fail_oom(ctx, ol, "decode");
    }
    case TD_DEC_METASPACE: {
        char rep[4];
        int rl = td_utf8_enc(d->replacement, rep);
        rep[rl] = 0;
        for (size_t i = 0; i < l->n; i++) {
            size_t nl;
            char *nx = replace_all(l->s[i], l->len[i], rep, " ", &nl);
            if (nx && i == 0 && d->prepend_scheme != TD_PREPEND_NEVER && nl && nx[0] == ' ') {
                memmove(nx, nx + 1, nl);
                nl--;
            }
            if (!set_item(l, i, nx, nl))
                return td_fail_oom(ctx, l->len[i], "decode");
        }
        return TD_OK;
    }
    case TD_DEC_BPE:
        for (size_t i = 0; i < l->n; i++) {
            size_t nl;
            char *nx = replace_all(l->s[i], l->len[i], d->prefix, i + 1 == l->n ? "" : " ", &nl);
            if (!set_item(l, i, nx, nl))
                return td_fail_oom(ctx, l->len[i], "decode");
        }
        return TD_OK;
    case TD_DEC_BYTEFALLBACK: {
        td_strlist o = {0};
        char *pend = NULL;
        size_t pn = 0, pcap = 0;
        bool ok = true;
        for (size_t i = 0; i <= l->n && ok; i++) {
            int byte = -1;
            if (i < l->n && l->len[i] == 6 && !memcmp(l->s[i], "<0x", 3) && l->s[i][5] == '>') {
                char hex[3] = {l->s[i][3], l->s[i][4], 0};
                char *end;
                long v = strtol(hex, &end, 16);
                if (*end == 0 && end == hex + 2)
                    byte = (int)v;
            }
            if (byte >= 0) {
                if (!(ok = td_grow((void **)&pend, &pcap, pn + 1, 1)))
                    break;
                pend[pn++] = (char)byte;
                continue;
            }
            if (pn) {
                if (td_utf8_invalid_at(pend, pn) == (size_t)-1)
                    ok = td_strlist_push(&o, pend, pn);
                else
                    for (size_t k = 0; k < pn && ok; k++)
                        ok = td_strlist_push(&o, "\xEF\xBF\xBD", 3);
                pn = 0;
            }
            if (i < l->n && ok)
                ok = td_strlist_push(&o, l->s[i], l->len[i]);
        }
        free(pend);
        if (!ok) {
            td_strlist_free(&o);
            return td_fail_oom(ctx, 0, "decode");
        }
        td_strlist_free(l);
        *l = o;
        return TD_OK;
    }
    case TD_DEC_FUSE: {
        size_t total = 0;
        for (size_t i = 0; i < l->n; i++)
            total += l->len[i];
        char *o = malloc(total + 1);
        if (!o)
            return td_fail_oom(ctx, total, "decode");
        size_t p = 0;
        for (size_t i = 0; i < l->n; i++) {
            memcpy(o + p, l->s[i], l->len[i]);
            p += l->len[i];
            free(l->s[i]);
        }
        o[p] = 0;
        l->n = 0;
        bool ok = td_strlist_push(l, o, p);
        free(o);
        return ok ? TD_OK : td_fail_oom(ctx, total, "decode");
    }
    case TD_DEC_STRIP:
        for (size_t i = 0; i < l->n; i++) {
            char *s = l->s[i];
            size_t n = l->len[i];
            size_t a = 0, e = n, cnt = 0;
            while (cnt < d->strip_start && a < e) {
                uint32_t cp;
                int k = td_utf8_dec(s + a, e - a, &cp);
                if (cp != d->strip_content)
                    break;
                a += (size_t)k;
                cnt++;
            }
            cnt = 0;
            while (cnt < d->strip_stop && e > a) {
                size_t p = e - 1;
                while (p > a && ((unsigned char)s[p] & 0xC0) == 0x80)
                    p--;
                uint32_t cp;
                td_utf8_dec(s + p, e - p, &cp);
                if (cp != d->strip_content)
                    break;
                e = p;
                cnt++;
            }
            memmove(s, s + a, e - a);
            s[e - a] = 0;
            l->len[i] = e - a;
        }
        return TD_OK;
    case TD_DEC_REPLACE: {
        td_work w = {0};
        td_status st = TD_OK;
        for (size_t i = 0; i < l->n && !st; i++) {
            size_t nm = 0;
            if ((st = td_regex_find(ctx, d->re, &w, l->s[i], l->len[i], &w.m, &w.mcap, &nm)))
                break;
            size_t cl = strlen(d->content), cap = 0, len = 0;
            char *o = NULL;
            bool ok = td_grow((void **)&o, &cap, 1, 1);
            for (size_t k = 0; k < nm && ok; k++) {
                const char *src = w.m[k].is_match ? d->content : l->s[i] + w.m[k].s;
                size_t sl = w.m[k].is_match ? cl : w.m[k].e - w.m[k].s;
                if ((ok = td_grow((void **)&o, &cap, len + sl + 1, 1))) {
                    memcpy(o + len, src, sl);
                    len += sl;
                }
            }
            if (ok)
                o[len] = 0;
            if (!ok || !set_item(l, i, o, len)) {
                free(ok ? NULL : o);
                st = td_fail_oom(ctx, 0, "decode");
            }
        }
        td_work_free(&w);
        return st;
    }
    }
    return td_fail(ctx, TD_ERR_INTERNAL, "decoder type %d not handled", (int)d->type);
}

td_status td_decoder_chain(td_ctx *ctx, const td_decoder *d, td_strlist *l) { return dec_one(ctx, d, l); }
