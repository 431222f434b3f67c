/* Unigram model: Viterbi best path over the lattice of vocabulary pieces
 * (scores are log probabilities); a char no piece covers costs
 * min_score - 10 as [unk], and consecutive unks are fused, as HF does. Prefix
 * lookups hash each prefix incrementally instead of walking a trie. */
#include "tokenizer/tok_internal.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

td_status td_unigram_parse(td_ctx *ctx, const cJSON *j, td_tok_model *m) {
    m->unk_id = -1;
    const cJSON *u = td_json_get(j, "unk_id");
    if (u) {
        if (!cJSON_IsNumber(u) || u->valuedouble < 0 || u->valuedouble >= (double)m->vocab.n ||
            u->valuedouble != (double)(int64_t)u->valuedouble)
            return td_fail(ctx, TD_ERR_FORMAT, "model Unigram: unk_id %g is not an index into the %zu-entry vocab",
                           cJSON_IsNumber(u) ? u->valuedouble : -1.0, m->vocab.n);
        m->unk_id = (int32_t)u->valuedouble;
    }
    TD_TRY(td_json_bool(ctx, j, "byte_fallback", false, &m->byte_fallback, "model Unigram"));
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_ids[b] = td_strmap_get(&m->vocab.map, name, strlen(name));
    }
    m->min_score = DBL_MAX;
    m->max_piece_len = 0;
    for (size_t i = 0; i < m->vocab.n; i++) {
        if (m->scores[i] < m->min_score)
            m->min_score = m->scores[i];
        if (m->vocab.toklen[i] > m->max_piece_len)
            m->max_piece_len = m->vocab.toklen[i];
    }
    if (!m->vocab.n)
        m->min_score = 0;
    return TD_OK;
}

static bool emit_piece(const td_tok_model *m, td_work *w, const char *s, uint32_t a, uint32_t b, int32_t id) {
    if (id >= 0)
        return td_work_push_mtok(w, id, a, b);
    int32_t vid = td_strmap_get(&m->vocab.map, s + a, b - a);
    if (vid >= 0)
        return td_work_push_mtok(w, vid, a, b);
    if (m->byte_fallback) {
        bool all = true;
        for (uint32_t i = a; i < b; i++)
            all &= m->byte_ids[(unsigned char)s[i]] >= 0;
        if (all) {
            /* HF gives every byte token the offsets of the whole piece */
            for (uint32_t i = a; i < b; i++)
                if (!td_work_push_mtok(w, m->byte_ids[(unsigned char)s[i]], a, b))
                    return false;
            return true;
        }
    }
    return td_work_push_mtok(w, m->unk_id, a, b);
}

td_status td_unigram_tokenize(td_ctx *ctx, const td_tok_model *m, td_work *w, const char *s, size_t n) {
    if (!n)
        return TD_OK;
    if (n >= INT64_MAX / 2 || !TD_GROW(w->lat, w->latcap, n + 1))
        return td_fail_oom(ctx, n, "Unigram lattice");
    struct td_lat *lat = w->lat;
    for (size_t i = 0; i <= n; i++)
        lat[i] = (struct td_lat){0.0, -1, -1};
    double unk_score = m->min_score - 10.0;
    for (size_t st = 0; st < n;) {
        double base = lat[st].score;
        size_t mblen = (size_t)td_utf8_len((unsigned char)s[st]);
        if (st + mblen > n)
            mblen = n - st;
        bool single = false;
        uint64_t h = td_fnv_init();
        size_t lim = n - st < m->max_piece_len ? n - st : m->max_piece_len;
        for (size_t l = 1; l <= lim; l++) {
            h = td_fnv_step(h, (unsigned char)s[st + l - 1]);
            if (st + l < n && ((unsigned char)s[st + l] & 0xC0) == 0x80)
                continue; /* pieces end on char boundaries */
            int32_t id = td_strmap_get_h(&m->vocab.map, h, s + st, l);
            if (id < 0)
                continue;
            double cand = m->scores[id] + base;
            size_t kp = st + l;
            if (lat[kp].from < 0 || cand > lat[kp].score)
                lat[kp] = (struct td_lat){cand, (int64_t)st, id};
            if (l == mblen)
                single = true;
        }
        if (!single) {
            if (m->unk_id < 0)
                return td_fail(ctx, TD_ERR_FORMAT,
                               "Unigram: text contains a character no vocabulary piece covers and the model has no "
                               "unk_id");
            size_t kp = st + mblen;
            double cand = unk_score + base;
            if (lat[kp].from < 0 || cand > lat[kp].score)
                lat[kp] = (struct td_lat){cand, (int64_t)st, m->unk_id};
        }
        st += mblen;
    }
    /* backtrack, fusing consecutive unks; emit in reverse then flip */
    size_t first = w->mtn;
    size_t end = n;
    uint32_t unk_end = 0;
    bool in_unk = false;
    while (end > 0) {
        int64_t stt = lat[end].from;
        if (stt < 0 || (size_t)stt >= end)
            return td_fail(ctx, TD_ERR_INTERNAL, "Unigram lattice has no path to byte %zu", end);
        int32_t id = lat[end].id;
        if (m->unk_id >= 0 && id == m->unk_id) {
            if (!in_unk) {
                in_unk = true;
                unk_end = (uint32_t)end;
            }
        } else {
            if (in_unk) {
                if (!td_work_push_mtok(w, -2, (uint32_t)end, unk_end))
                    return td_fail_oom(ctx, 0, "tokens");
                in_unk = false;
            }
            if (!td_work_push_mtok(w, id, (uint32_t)stt, (uint32_t)end))
                return td_fail_oom(ctx, 0, "tokens");
        }
        end = (size_t)stt;
    }
    if (in_unk && !td_work_push_mtok(w, -2, 0, unk_end))
        return td_fail_oom(ctx, 0, "tokens");
    /* reverse the pieces, then resolve fused unk pieces (id -2) */
    size_t cnt = w->mtn - first;
    for (size_t i = 0; i < cnt / 2; i++) {
        td_mtok t = w->mt[first + i];
        w->mt[first + i] = w->mt[first + cnt - 1 - i];
        w->mt[first + cnt - 1 - i] = t;
    }
    bool has_unk = false;
    for (size_t i = first; i < w->mtn; i++)
        has_unk |= w->mt[i].id == -2;
    if (!has_unk)
        return TD_OK;
    /* rebuild with unk pieces expanded (byte fallback can add tokens) */
    td_mtok *copy = malloc(cnt * sizeof *copy);
    if (!copy)
        return td_fail_oom(ctx, cnt, "tokens");
    memcpy(copy, w->mt + first, cnt * sizeof *copy);
    w->mtn = first;
    td_status st = TD_OK;
    for (size_t i = 0; i < cnt; i++) {
        bool ok = copy[i].id == -2 ? emit_piece(m, w, s, copy[i].s, copy[i].e, -1)
                                   : td_work_push_mtok(w, copy[i].id, copy[i].s, copy[i].e);
        if (!ok) {
            st = td_fail_oom(ctx, 0, "tokens");
            break;
        }
    }
    free(copy);
    return st;
}
