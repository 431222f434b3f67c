/* BPE model: each word starts as one symbol per char (unknown chars become
 * <0xXX> byte tokens with byte_fallback, else [unk], optionally fused), then
 * the adjacent pair with the lowest merge rank is merged (leftmost first on
 * ties) until no pair has a merge - the same order as HF's heap. Merges are
 * looked up in a hash keyed by the two symbol ids. */
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static td_status opt_str(td_ctx *ctx, const cJSON *j, const char *key, char **out, size_t *len) {
    const cJSON *v = td_json_get(j, key);
    *out = NULL;
    *len = 0;
    if (!v)
        return TD_OK;
    if (!cJSON_IsString(v))
        return td_fail(ctx, TD_ERR_FORMAT, "model BPE: %s must be a string or null", key);
    *len = strlen(v->valuestring);
    if (!(*out = strdup(v->valuestring)))
        return td_fail_oom(ctx, *len, key);
    return TD_OK;
}

td_status td_bpe_parse(td_ctx *ctx, const cJSON *j, td_tok_model *m) {
    const cJSON *dropout = td_json_get(j, "dropout");
    if (dropout && (!cJSON_IsNumber(dropout) || dropout->valuedouble != 0.0))
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "model BPE: dropout %g is not supported (tdeploy encodes deterministically; set it to null)",
                       cJSON_IsNumber(dropout) ? dropout->valuedouble : -1.0);
    TD_TRY(opt_str(ctx, j, "continuing_subword_prefix", &m->prefix, &m->prefix_len));
    TD_TRY(opt_str(ctx, j, "end_of_word_suffix", &m->suffix, &m->suffix_len));
    TD_TRY(td_json_bool(ctx, j, "fuse_unk", false, &m->fuse_unk, "model BPE"));
    TD_TRY(td_json_bool(ctx, j, "byte_fallback", false, &m->byte_fallback, "model BPE"));
    TD_TRY(td_json_bool(ctx, j, "ignore_merges", false, &m->ignore_merges, "model BPE"));
    m->unk_id = -1;
    const cJSON *unk = td_json_get(j, "unk_token");
    if (unk) {
        if (!cJSON_IsString(unk))
            return td_fail(ctx, TD_ERR_FORMAT, "model BPE: unk_token must be a string or null");
        m->unk_id = td_strmap_get(&m->vocab.map, unk->valuestring, strlen(unk->valuestring));
        if (m->unk_id < 0)
            return td_fail(ctx, TD_ERR_FORMAT, "model BPE: unk_token '%s' is not in the vocabulary",
                           unk->valuestring);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_ids[b] = td_strmap_get(&m->vocab.map, name, strlen(name));
    }
    const cJSON *merges = td_json_get(j, "merges");
    if (!merges)
        return TD_OK;
    if (!cJSON_IsArray(merges))
        return td_fail(ctx, TD_ERR_FORMAT, "model BPE: merges must be an array");
    int32_t rank = 0;
    const cJSON *it;
    char *buf = NULL;
    size_t bufcap = 0;
    td_status st = TD_OK;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *b;
        size_t al, bl;
        if (cJSON_IsString(it)) {
            const char *s = it->valuestring;
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = td_fail(ctx, TD_ERR_FORMAT, "model BPE: merge %d '%s' is not two tokens separated by one space",
                             rank, s);
                break;
            }
            a = s;
            al = (size_t)(sp - s);
            b = sp + 1;
            bl = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            b = cJSON_GetArrayItem(it, 1)->valuestring;
            al = strlen(a);
            bl = strlen(b);
        } else {
            st = td_fail(ctx, TD_ERR_FORMAT, "model BPE: merge %d must be \"a b\" or [\"a\", \"b\"]", rank);
            break;
        }
        int32_t ia = td_strmap_get(&m->vocab.map, a, al), ib = td_strmap_get(&m->vocab.map, b, bl);
        if (ia < 0 || ib < 0) {
            st = td_fail(ctx, TD_ERR_FORMAT, "model BPE: merge %d refers to '%.*s', which is not in the vocabulary",
                         rank, ia < 0 ? (int)al : (int)bl, ia < 0 ? a : b);
            break;
        }
        /* merged token = a + b without the continuing prefix of b */
        size_t skip = m->prefix && bl >= m->prefix_len && !memcmp(b, m->prefix, m->prefix_len) ? m->prefix_len : 0;
        if (!td_grow((void **)&buf, &bufcap, al + bl + 1, 1)) {
            st = td_fail_oom(ctx, al + bl, "merge");
            break;
        }
        memcpy(buf, a, al);
        memcpy(buf + al, b + skip, bl - skip);
        int32_t im = td_strmap_get(&m->vocab.map, buf, al + bl - skip);
        if (im < 0) {
            st = td_fail(ctx, TD_ERR_FORMAT, "model BPE: merge %d result '%.*s' is not in the vocabulary", rank,
                         (int)(al + bl - skip), buf);
            break;
        }
        if (!td_pairmap_put(&m->merges, (uint32_t)ia, (uint32_t)ib, rank, im)) {
            st = td_fail_oom(ctx, 0, "merges");
            break;
        }
        rank++;
    }
    free(buf);
    return st;
}

static bool add_sym(td_work *w, size_t *n, int32_t id, uint32_t s, uint32_t e) {
    if (!TD_GROW(w->sym, w->symcap, *n + 1))
        return false;
    w->sym[*n] = (td_bpe_sym){id, s, e, (int32_t)*n - 1, (int32_t)*n + 1};
    (*n)++;
    return true;
}

td_status td_bpe_tokenize(td_ctx *ctx, const td_tok_model *m, td_work *w, const char *s, size_t n) {
    if (!n)
        return TD_OK;
    if (m->ignore_merges) {
        int32_t id = td_strmap_get(&m->vocab.map, s, n);
        if (id >= 0)
            return td_work_push_mtok(w, id, 0, (uint32_t)n) ? TD_OK : td_fail_oom(ctx, 0, "tokens");
    }
    size_t ns = 0;
    int32_t unk_id = -1;
    uint32_t unk_s = 0, unk_e = 0;
    if (!TD_GROW(w->str, w->strcap, m->prefix_len + m->suffix_len + 8))
        return td_fail_oom(ctx, 0, "BPE");
    for (size_t i = 0; i < n;) {
        size_t k = (size_t)td_utf8_len((unsigned char)s[i]);
        if (i + k > n)
            k = n - i;
        bool first = i == 0, last = i + k == n;
        const char *key = s + i;
        size_t kl = k;
        if ((!first && m->prefix) || (last && m->suffix)) {
            char *b = w->str;
            kl = 0;
            if (!first && m->prefix) {
                memcpy(b, m->prefix, m->prefix_len);
                kl += m->prefix_len;
            }
            memcpy(b + kl, s + i, k);
            kl += k;
            if (last && m->suffix) {
                memcpy(b + kl, m->suffix, m->suffix_len);
                kl += m->suffix_len;
            }
            key = b;
        }
        int32_t id = td_strmap_get(&m->vocab.map, key, kl);
        bool ok = true;
        if (id >= 0) {
            if (unk_id >= 0) {
                ok = add_sym(w, &ns, unk_id, unk_s, unk_e);
                unk_id = -1;
            }
            ok = ok && add_sym(w, &ns, id, (uint32_t)i, (uint32_t)(i + k));
        } else {
            bool done = false;
            if (m->byte_fallback) {
                bool all = true;
                for (size_t b = 0; b < k; b++)
                    all &= m->byte_ids[(unsigned char)s[i + b]] >= 0;
                if (all) {
                    if (unk_id >= 0) {
                        ok = add_sym(w, &ns, unk_id, unk_s, unk_e);
                        unk_id = -1;
                    }
                    for (size_t b = 0; b < k && ok; b++)
                        ok = add_sym(w, &ns, m->byte_ids[(unsigned char)s[i + b]], (uint32_t)(i + b),
                                     (uint32_t)(i + b + 1));
                    done = true;
                }
            }
            if (!done && m->unk_id >= 0) {
                if (unk_id >= 0 && m->fuse_unk)
                    unk_e = (uint32_t)(i + k);
                else {
                    if (unk_id >= 0)
                        ok = add_sym(w, &ns, unk_id, unk_s, unk_e);
                    unk_id = m->unk_id;
                    unk_s = (uint32_t)i;
                    unk_e = (uint32_t)(i + k);
                }
            }
            /* no unk token: HF drops the char */
        }
        if (!ok)
            return td_fail_oom(ctx, 0, "BPE symbols");
        i += k;
    }
    if (unk_id >= 0 && !add_sym(w, &ns, unk_id, unk_s, unk_e))
        return td_fail_oom(ctx, 0, "BPE symbols");
    if (!ns)
        return TD_OK;
    td_bpe_sym *sy = w->sym;
    sy[ns - 1].next = -1;
    /* rank of the pair starting at each symbol, INT32_MAX when none */
    if (!TD_GROW(w->tags, w->tagscap, ns))
        return td_fail_oom(ctx, 0, "BPE ranks");
    uint32_t *rank = w->tags;
    for (size_t i = 0; i < ns; i++) {
        const td_pairmap_slot *p = i + 1 < ns ? td_pairmap_get(&m->merges, (uint32_t)sy[i].id, (uint32_t)sy[i + 1].id)
                                              : NULL;
        rank[i] = p ? (uint32_t)p->rank : UINT32_MAX;
    }
    for (;;) {
        uint32_t best = UINT32_MAX;
        int32_t bi = -1;
        for (int32_t i = 0; i >= 0; i = sy[i].next)
            if (rank[i] < best) {
                best = rank[i];
                bi = i;
            }
        if (bi < 0)
            break;
        int32_t nj = sy[bi].next;
        const td_pairmap_slot *p = td_pairmap_get(&m->merges, (uint32_t)sy[bi].id, (uint32_t)sy[nj].id);
        sy[bi].id = p->merged;
        sy[bi].e = sy[nj].e;
        sy[bi].next = sy[nj].next;
        if (sy[nj].next >= 0)
            sy[sy[nj].next].prev = bi;
        int32_t nn = sy[bi].next;
        p = nn >= 0 ? td_pairmap_get(&m->merges, (uint32_t)sy[bi].id, (uint32_t)sy[nn].id) : NULL;
        rank[bi] = p ? (uint32_t)p->rank : UINT32_MAX;
        int32_t pv = sy[bi].prev;
        if (pv >= 0) {
            p = td_pairmap_get(&m->merges, (uint32_t)sy[pv].id, (uint32_t)sy[bi].id);
            rank[pv] = p ? (uint32_t)p->rank : UINT32_MAX;
        }
    }
    for (int32_t i = 0; i >= 0; i = sy[i].next)
        if (!td_work_push_mtok(w, sy[i].id, sy[i].s, sy[i].e))
            return td_fail_oom(ctx, 0, "tokens");
    return TD_OK;
}
