/* Hash maps used on the hot path: token string -> id (open addressing with
 * FNV-1a, keys borrowed from the vocabulary's own storage) and (id, id) ->
 * (rank, merged id) for BPE merges. Plus the growable-array helper. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

bool td_grow(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap)
        return true;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2)
            return false;
        nc *= 2;
    }
    if (sz && nc > SIZE_MAX / sz)
        return false;
    void *q = realloc(*p, nc * sz);
    if (!q)
        return false;
    *p = q;
    *cap = nc;
    return true;
}

static bool strmap_rehash(td_strmap *m, size_t ncap) {
    td_strmap_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return false;
    for (size_t i = 0; i < m->cap; i++) {
        td_strmap_slot *s = &m->slots[i];
        if (!s->key)
            continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].key)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return true;
}

bool td_strmap_put(td_strmap *m, const char *key, size_t len, int32_t val) {
    if (len > UINT32_MAX)
        return false;
    if ((m->count + 1) * 2 > m->cap && !strmap_rehash(m, m->cap ? m->cap * 2 : 64))
        return false;
    uint64_t h = td_fnv(key, len);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].key) {
        td_strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            s->val = val;
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j] = (td_strmap_slot){h, key, (uint32_t)len, val};
    m->count++;
    return true;
}

int32_t td_strmap_get_h(const td_strmap *m, uint64_t h, const char *key, size_t len) {
    if (!m->cap)
        return -1;
    size_t j = h & (m->cap - 1);
    while (m->slots[j].key) {
        const td_strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            return s->val;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

int32_t td_strmap_get(const td_strmap *m, const char *key, size_t len) {
    return td_strmap_get_h(m, td_fnv(key, len), key, len);
}

void td_strmap_free(td_strmap *m) {
    if (!m)
        return;
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static bool pairmap_rehash(td_pairmap *m, size_t ncap) {
    td_pairmap_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return false;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        size_t j = mix64(m->slots[i].key) & (ncap - 1);
        while (ns[j].key)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return true;
}

bool td_pairmap_put(td_pairmap *m, uint32_t a, uint32_t b, int32_t rank, int32_t merged) {
    if ((m->count + 1) * 2 > m->cap && !pairmap_rehash(m, m->cap ? m->cap * 2 : 64))
        return false;
    uint64_t key = (((uint64_t)a << 32) | b) + 1;
    size_t j = mix64(key) & (m->cap - 1);
    while (m->slots[j].key) {
        if (m->slots[j].key == key)
            return true; /* first occurrence (lowest rank) wins */
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j] = (td_pairmap_slot){key, rank, merged};
    m->count++;
    return true;
}

const td_pairmap_slot *td_pairmap_get(const td_pairmap *m, uint32_t a, uint32_t b) {
    if (!m->cap)
        return NULL;
    uint64_t key = (((uint64_t)a << 32) | b) + 1;
    size_t j = mix64(key) & (m->cap - 1);
    while (m->slots[j].key) {
        if (m->slots[j].key == key)
            return &m->slots[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

void td_pairmap_free(td_pairmap *m) {
    if (!m)
        return;
    free(m->slots);
    memset(m, 0, sizeof *m);
}
