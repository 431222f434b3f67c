/* BPE model: each word starts as one symbol per char (unknown chars become
 * <0xXX> byte tokens with byte_fallback, else [unk], optionally fused), then
 * the adjacent pair with the lowest merge rank is merged (leftmost first on
 * ties) until no pair has a merge - the same order as HF's heap. Merges are
 * looked up in a hash keyed by the two symbol ids. */
#include "tokenizer/tok_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Word cache: most words repeat, and a cached word skips the merge loop entirely. Bounded like HF's
 * (10k words); once full it only serves lookups. Shared across threads behind a mutex. */
#define CACHE_MAX_WORDS 10000
#define CACHE_MAX_WORD_BYTES 128
typedef struct td_bpe_cache {
    pthread_mutex_t mu;
    td_strmap map; /* word -> entry */
    char *keys;    /* all cached words, back to back (fixed capacity: keys never move) */
    size_t keys_len, keys_cap;
    uint32_t *start, *count; /* entry -> range in toks */
    size_t n;
    td_mtok *toks;
    size_t ntoks, toks_cap;
} td_bpe_cache;

void td_bpe_cache_free(td_bpe_cache *c) {
    if (!c)
        return;
    pthread_mutex_destroy(&c->mu);
    td_strmap_free(&c->map);
    free(c->keys);
    free(c->start);
    free(c->count);
    free(c->toks);
    free(c);
}

static td_bpe_cache *cache_new(void) {
    td_bpe_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->keys_cap = (size_t)CACHE_MAX_WORDS * 16;
    c->keys = malloc(c->keys_cap);
    c->start = malloc(CACHE_MAX_WORDS * sizeof *c->start);
    c->count = malloc(CACHE_MAX_WORDS * sizeof *c->count);
    if (!c->keys || !c->start || !c->count || pthread_mutex_init(&c->mu, NULL)) {
        free(c->keys);
        free(c->start);
        free(c->count);
        free(c);
        return NULL;
    }
    return c;
}

/* Append the cached tokens of word s to w->mt; false when not cached. */
static bool cache_get(td_bpe_cache *c, td_work *w, const char *s, size_t n, bool *oom) {
    bool hit = false;
    pthread_mutex_lock(&c->mu);
    int32_t e = td_strmap_get(&c->map, s, n);
    if (e >= 0) {
        uint32_t k = c->count[e];
        if (!k) {
            hit = true; /* a word whose chars were all dropped (no unk token) */
        } else if (TD_GROW(w->mt, w->mtcap, w->mtn + k)) {
            memcpy(w->mt + w->mtn, c->toks + c->start[e], k * sizeof *w->mt);
            w->mtn += k;
            hit = true;
        } else
            *oom = true;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

static void cache_put(td_bpe_cache *c, const char *s, size_t n, const td_mtok *t, size_t k) {
    pthread_mutex_lock(&c->mu);
    if (c->n < CACHE_MAX_WORDS && c->keys_len + n <= c->keys_cap && td_strmap_get(&c->map, s, n) < 0 &&
        TD_GROW(c->toks, c->toks_cap, c->ntoks + k)) {
        char *key = c->keys + c->keys_len;
        memcpy(key, s, n);
        if (td_strmap_put(&c->map, key, n, (int32_t)c->n)) {
            c->keys_len += n;
            if (k)
                memcpy(c->toks + c->ntoks, t, k * sizeof *t);
            c->start[c->n] = (uint32_t)c->ntoks;
            c->count[c->n] = (uint32_t)k;
            c->ntoks += k;
            c->n++;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

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
    if (!(m->cache = cache_new()))
        return td_fail_oom(ctx, 0, "BPE cache");
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

static uint32_t pair_rank(const td_tok_model *m, const td_bpe_sym *sy, int32_t i) {
    int32_t j = sy[i].next;
    if (j < 0)
        return UINT32_MAX;
    const td_pairmap_slot *p = td_pairmap_get(&m->merges, (uint32_t)sy[i].id, (uint32_t)sy[j].id);
    return p ? (uint32_t)p->rank : UINT32_MAX;
}

/* Merge symbols i and its successor into one (the pair must have a merge). */
static void merge_at(const td_tok_model *m, td_bpe_sym *sy, int32_t i) {
    int32_t j = sy[i].next;
    const td_pairmap_slot *p = td_pairmap_get(&m->merges, (uint32_t)sy[i].id, (uint32_t)sy[j].id);
    sy[i].id = p->merged;
    sy[i].e = sy[j].e;
    sy[i].next = sy[j].next;
    if (sy[j].next >= 0)
        sy[sy[j].next].prev = i;
    sy[j].id = -1; /* dead */
}

/* Short words: repeatedly merge the lowest-rank pair, leftmost on ties (O(n^2), cache friendly). */
static bool merge_scan(const td_tok_model *m, td_work *w, size_t ns) {
    if (!TD_GROW(w->tags, w->tagscap, ns))
        return false;
    td_bpe_sym *sy = w->sym;
    uint32_t *rank = w->tags;
    for (size_t i = 0; i < ns; i++)
        rank[i] = pair_rank(m, sy, (int32_t)i);
    for (;;) {
        uint32_t best = UINT32_MAX;
        int32_t bi = -1;
        for (int32_t i = 0; i >= 0; i = sy[i].next)
            if (rank[i] < best) {
                best = rank[i];
                bi = i;
            }
        if (bi < 0)
            return true;
        merge_at(m, sy, bi);
        rank[bi] = pair_rank(m, sy, bi);
        if (sy[bi].prev >= 0)
            rank[sy[bi].prev] = pair_rank(m, sy, sy[bi].prev);
    }
}

static bool merge_less(const td_bpe_merge *a, const td_bpe_merge *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static bool heap_push(td_work *w, size_t *hn, td_bpe_merge x) {
    if (!TD_GROW(w->heap, w->heapcap, *hn + 1))
        return false;
    td_bpe_merge *h = w->heap;
    size_t i = (*hn)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&x, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
    return true;
}

static td_bpe_merge heap_pop(td_work *w, size_t *hn) {
    td_bpe_merge *h = w->heap, top = h[0], x = h[--(*hn)];
    size_t i = 0, n = *hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && merge_less(&h[c + 1], &h[c]))
            c++;
        if (!merge_less(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    if (n)
        h[i] = x;
    return top;
}

static bool push_pair(const td_tok_model *m, td_work *w, size_t *hn, int32_t i) {
    td_bpe_sym *sy = w->sym;
    uint32_t r = pair_rank(m, sy, i);
    if (r == UINT32_MAX)
        return true;
    return heap_push(w, hn, (td_bpe_merge){r, i, sy[i].id, sy[sy[i].next].id});
}

/* Long words: HF's priority queue of (rank, position) with stale entries skipped - O(n log n),
 * so a hostile megabyte-long word cannot make encoding quadratic. */
static bool merge_heap(const td_tok_model *m, td_work *w, size_t ns) {
    size_t hn = 0;
    for (size_t i = 0; i + 1 < ns; i++)
        if (!push_pair(m, w, &hn, (int32_t)i))
            return false;
    while (hn) {
        td_bpe_merge t = heap_pop(w, &hn);
        td_bpe_sym *sy = w->sym;
        int32_t j = sy[t.pos].next;
        if (sy[t.pos].id != t.left || j < 0 || sy[j].id != t.right)
            continue; /* stale */
        merge_at(m, sy, t.pos);
        if (!push_pair(m, w, &hn, t.pos) || (sy[t.pos].prev >= 0 && !push_pair(m, w, &hn, sy[t.pos].prev)))
            return false;
    }
    return true;
}

static td_status bpe_word(td_ctx *ctx, const td_tok_model *m, td_work *w, const char *s, size_t n) {
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
    if (ns <= 48) {
        if (!merge_scan(m, w, ns))
            return td_fail_oom(ctx, 0, "BPE ranks");
    } else if (!merge_heap(m, w, ns))
        return td_fail_oom(ctx, 0, "BPE merge queue");
    sy = w->sym;
    for (int32_t i = 0; i >= 0; i = sy[i].next)
        if (!td_work_push_mtok(w, sy[i].id, sy[i].s, sy[i].e))
            return td_fail_oom(ctx, 0, "tokens");
    return TD_OK;
}

td_status td_bpe_tokenize(td_ctx *ctx, const td_tok_model *m, td_work *w, const char *s, size_t n) {
    if (!n)
        return TD_OK;
    bool oom = false;
    bool cacheable = m->cache && n <= CACHE_MAX_WORD_BYTES;
    if (cacheable && cache_get(m->cache, w, s, n, &oom))
        return TD_OK;
    if (oom)
        return td_fail_oom(ctx, 0, "tokens");
    size_t first = w->mtn;
    TD_TRY(bpe_word(ctx, m, w, s, n));
    if (cacheable)
        cache_put(m->cache, s, n, w->mtn > first ? w->mt + first : NULL, w->mtn - first);
    return TD_OK;
}
