/* Precompiled normalizer: SentencePiece's compiled character map.
 * Blob layout (after base64): u32 little-endian trie size in bytes, the
 * darts-clone double-array trie (u32 units), then a table of NUL-terminated
 * replacement strings. Lookup takes the FIRST (shortest) prefix match, on each
 * extended grapheme cluster shorter than 6 bytes, else on each char, as HF's
 * spm_precompiled does. Every trie position and table offset is bounds-checked. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static int b64val(unsigned char c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static td_status b64decode(td_ctx *ctx, const char *s, unsigned char **out, size_t *out_len) {
    size_t n = strlen(s);
    unsigned char *o = malloc(n / 4 * 3 + 3);
    if (!o)
        return td_fail_oom(ctx, n, "precompiled_charsmap");
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '=')
            break;
        int v = b64val(c);
        if (v < 0) {
            free(o);
            return td_fail(ctx, TD_ERR_FORMAT, "precompiled_charsmap: invalid base64 character at position %zu", i);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (unsigned char)(acc >> bits);
        }
    }
    *out = o;
    *out_len = k;
    return TD_OK;
}

td_status td_precompiled_parse(td_ctx *ctx, td_normalizer *n, const char *b64) {
    unsigned char *blob = NULL;
    size_t len = 0;
    TD_TRY(b64decode(ctx, b64, &blob, &len));
    td_status st = TD_OK;
    if (len < 4) {
        st = td_fail(ctx, TD_ERR_FORMAT, "precompiled_charsmap: %zu bytes is too short for the trie size header", len);
        goto out;
    }
    uint32_t tsize = (uint32_t)blob[0] | ((uint32_t)blob[1] << 8) | ((uint32_t)blob[2] << 16) |
                     ((uint32_t)blob[3] << 24);
    if (tsize % 4 || tsize > len - 4) {
        st = td_fail(ctx, TD_ERR_FORMAT,
                     "precompiled_charsmap: trie size %u is not a multiple of 4 or exceeds the %zu bytes present",
                     tsize, len - 4);
        goto out;
    }
    n->trie_units = tsize / 4;
    n->trie = malloc((n->trie_units ? n->trie_units : 1) * sizeof *n->trie);
    n->norm_len = len - 4 - tsize;
    n->norm_table = malloc(n->norm_len + 1);
    if (!n->trie || !n->norm_table) {
        st = td_fail_oom(ctx, len, "precompiled_charsmap");
        goto out;
    }
    for (size_t i = 0; i < n->trie_units; i++) {
        const unsigned char *p = blob + 4 + i * 4;
        n->trie[i] = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    }
    memcpy(n->norm_table, blob + 4 + tsize, n->norm_len);
    n->norm_table[n->norm_len] = 0;
    size_t bad = td_utf8_invalid_at(n->norm_table, n->norm_len);
    if (bad != (size_t)-1) {
        st = td_fail(ctx, TD_ERR_FORMAT, "precompiled_charsmap: normalized string table is not UTF-8 at byte %zu",
                     bad);
        goto out;
    }
out:
    free(blob);
    return st;
}

/* First prefix match of key in the trie; returns the replacement or NULL. */
static const char *lookup(const td_normalizer *n, const char *key, size_t klen, size_t *rlen) {
    const uint32_t *a = n->trie;
    size_t units = n->trie_units;
    if (!units)
        return NULL;
#define OFFSET(u) (((u) >> 10) << (((u) & (1u << 9)) >> 6))
    size_t pos = OFFSET(a[0]);
    for (size_t i = 0; i < klen; i++) {
        unsigned char c = (unsigned char)key[i];
        if (!c)
            return NULL;
        pos ^= c;
        if (pos >= units)
            return NULL;
        uint32_t u = a[pos];
        if ((u & ((1u << 31) | 0xFF)) != c)
            return NULL;
        pos ^= OFFSET(u);
        if (pos >= units)
            return NULL;
        if ((u >> 8) & 1) {
            uint32_t v = a[pos] & 0x7FFFFFFFu;
            if (v >= n->norm_len)
                return NULL;
            const char *s = n->norm_table + v;
            size_t l = strnlen(s, n->norm_len - v);
            /* an offset into the middle of a character is treated as no match */
            if ((l && ((unsigned char)s[0] & 0xC0) == 0x80) || td_utf8_invalid_at(s, l) != (size_t)-1)
                return NULL;
            *rlen = l;
            return s;
        }
    }
#undef OFFSET
    return NULL;
}

/* HF's `replace` helper: new chars with change 0, extra ones +1, or the last absorbing removals. */
static bool push_replace(td_work *w, size_t *nx, const char *old, size_t olen, const char *nw, size_t nlen) {
    long oc = 0, nc = 0;
    for (size_t i = 0; i < olen; i++)
        oc += ((unsigned char)old[i] & 0xC0) != 0x80;
    size_t start = *nx;
    for (size_t i = 0; i < nlen;) {
        uint32_t cp;
        int k = td_utf8_dec(nw + i, nlen - i, &cp);
        if (!TD_GROW(w->xf, w->xfcap, *nx + 1))
            return false;
        w->xf[(*nx)++] = (td_xform){cp, 0};
        nc++;
        i += (size_t)k;
    }
    long diff = nc - oc;
    if (diff > 0) {
        for (long d = 0; d < diff; d++)
            w->xf[*nx - 1 - (size_t)d].change = 1;
    } else if (diff < 0 && *nx > 0) {
        w->xf[*nx - 1].change += (int32_t)diff;
    }
    (void)start;
    return true;
}

td_status td_precompiled_apply(td_ctx *ctx, const td_normalizer *n, td_work *w, td_nbuf *b) {
    if (!n->trie_units || !b->len)
        return TD_OK;
    size_t nx = 0;
    bool modified = false;
    size_t gs = 0;
    while (gs < b->len) {
        /* extent of the grapheme cluster starting at gs */
        uint32_t c1;
        size_t ge = gs + (size_t)td_utf8_dec(b->t + gs, b->len - gs, &c1);
        utf8proc_int32_t state = 0;
        while (ge < b->len) {
            uint32_t c2;
            int k = td_utf8_dec(b->t + ge, b->len - ge, &c2);
            if (utf8proc_grapheme_break_stateful((utf8proc_int32_t)c1, (utf8proc_int32_t)c2, &state))
                break;
            c1 = c2;
            ge += (size_t)k;
        }
        size_t rl = 0;
        const char *r = ge - gs < 6 ? lookup(n, b->t + gs, ge - gs, &rl) : NULL;
        if (r) {
            modified = true;
            if (!push_replace(w, &nx, b->t + gs, ge - gs, r, rl))
                return td_fail_oom(ctx, 0, "precompiled normalization");
        } else {
            for (size_t i = gs; i < ge;) {
                uint32_t cp;
                int k = td_utf8_dec(b->t + i, ge - i, &cp);
                const char *r2 = lookup(n, b->t + i, (size_t)k, &rl);
                if (r2) {
                    modified = true;
                    if (!push_replace(w, &nx, b->t + i, (size_t)k, r2, rl))
                        return td_fail_oom(ctx, 0, "precompiled normalization");
                } else {
                    if (!TD_GROW(w->xf, w->xfcap, nx + 1))
                        return td_fail_oom(ctx, 0, "precompiled normalization");
                    w->xf[nx++] = (td_xform){cp, 0};
                }
                i += (size_t)k;
            }
        }
        gs = ge;
    }
    if (!modified)
        return TD_OK;
    return td_nbuf_transform(ctx, b, &w->nb2, w->xf, nx, 0);
}
