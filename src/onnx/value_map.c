/* Open-addressing hash map from value name to td_value. */
#include "onnx/value_map.h"

#include "onnx/ir.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static td_value tombstone_obj;
#define TOMBSTONE (&tombstone_obj)

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

td_value_map *td_value_map_new(void) {
    td_value_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cap = 64;
    m->slots = calloc(m->cap, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void td_value_map_free(td_value_map *m) {
    if (!m)
        return;
    free(m->slots);
    free(m);
}

td_value *td_value_map_get(const td_value_map *m, const char *name) {
    size_t mask = m->cap - 1;
    for (size_t i = hash_str(name) & mask;; i = (i + 1) & mask) {
        td_value *v = m->slots[i];
        if (!v)
            return NULL;
        if (v != TOMBSTONE && strcmp(v->name, name) == 0)
            return v;
    }
}

static bool grow(td_value_map *m) {
    size_t ncap = m->cap * 2;
    td_value **ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return false;
    size_t used = 0;
    for (size_t i = 0; i < m->cap; i++) {
        td_value *v = m->slots[i];
        if (!v || v == TOMBSTONE)
            continue;
        size_t j = hash_str(v->name) & (ncap - 1);
        while (ns[j])
            j = (j + 1) & (ncap - 1);
        ns[j] = v;
        used++;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    m->used = used;
    return true;
}

bool td_value_map_put(td_value_map *m, td_value *v) {
    if ((m->used + 1) * 4 > m->cap * 3 && !grow(m)) /* keep load under 3/4 */
        return false;
    size_t mask = m->cap - 1;
    size_t i = hash_str(v->name) & mask;
    while (m->slots[i] && m->slots[i] != TOMBSTONE) {
        if (strcmp(m->slots[i]->name, v->name) == 0) {
            m->slots[i] = v;
            return true;
        }
        i = (i + 1) & mask;
    }
    if (!m->slots[i])
        m->used++;
    m->slots[i] = v;
    return true;
}

void td_value_map_del(td_value_map *m, const char *name) {
    size_t mask = m->cap - 1;
    for (size_t i = hash_str(name) & mask;; i = (i + 1) & mask) {
        td_value *v = m->slots[i];
        if (!v)
            return;
        if (v != TOMBSTONE && strcmp(v->name, name) == 0) {
            m->slots[i] = TOMBSTONE;
            return;
        }
    }
}
