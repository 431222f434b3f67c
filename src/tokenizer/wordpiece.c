/* WordPiece model: greedy longest-match-first over each pre-tokenized word,
 * continuation pieces carrying the "##" prefix; a word with any unmatched part
 * (or longer than max_input_chars_per_word chars) becomes one [UNK]. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

td_status td_wordpiece_parse(td_ctx *ctx, const cJSON *j, td_tok_model *m) {
    const char *unk = NULL, *prefix = "##";
    const cJSON *u = td_json_get(j, "unk_token");
    if (u) {
        if (!cJSON_IsString(u))
            return td_fail(ctx, TD_ERR_FORMAT, "model WordPiece: unk_token must be a string");
        unk = u->valuestring;
    } else
        unk = "[UNK]";
    const cJSON *p = td_json_get(j, "continuing_subword_prefix");
    if (p) {
        if (!cJSON_IsString(p))
            return td_fail(ctx, TD_ERR_FORMAT, "model WordPiece: continuing_subword_prefix must be a string");
        prefix = p->valuestring;
    }
    m->prefix_len = strlen(prefix);
    if (!(m->prefix = strdup(prefix)))
        return td_fail_oom(ctx, m->prefix_len, "WordPiece prefix");
    m->max_input_chars = 100;
    if (td_json_get(j, "max_input_chars_per_word"))
        TD_TRY(td_json_size(ctx, j, "max_input_chars_per_word", SIZE_MAX / 8, &m->max_input_chars, "model WordPiece"));
    m->unk_id = td_strmap_get(&m->vocab.map, unk, strlen(unk));
    /* longest vocabulary entry: no candidate longer than it can match, which keeps a hostile
     * max_input_chars_per_word from making long words quadratic */
    m->max_piece_len = 0;
    for (size_t i = 0; i < m->vocab.n; i++)
        if (m->vocab.toklen[i] > m->max_piece_len)
            m->max_piece_len = m->vocab.toklen[i];
    /* HF only fails when an unknown word is actually met; we do the same (see tokenize). */
    return TD_OK;
}

td_status td_wordpiece_tokenize(td_ctx *ctx, const td_tok_model *m, td_work *w, const char *s, size_t n) {
    size_t nchars = 0;
    for (size_t i = 0; i < n; i++)
        nchars += ((unsigned char)s[i] & 0xC0) != 0x80;
    size_t first = w->mtn;
    if (nchars > m->max_input_chars)
        goto unk;
    if (!TD_GROW(w->str, w->strcap, m->prefix_len + n + 1))
        return td_fail_oom(ctx, n, "WordPiece word");
    memcpy(w->str, m->prefix, m->prefix_len);
    size_t start = 0;
    while (start < n) {
        const char *key;
        size_t extra;
        if (start > 0) {
            memcpy(w->str + m->prefix_len, s + start, n - start);
            key = w->str;
            extra = m->prefix_len;
        } else {
            key = s;
            extra = 0;
        }
        size_t end = n;
        if (end - start + extra > m->max_piece_len) {
            end = start + (m->max_piece_len > extra ? m->max_piece_len - extra : 0);
            while (end > start && ((unsigned char)s[end] & 0xC0) == 0x80)
                end--; /* back to a char boundary */
        }
        int32_t id = -1;
        while (end > start) {
            id = td_strmap_get(&m->vocab.map, key, extra + end - start);
            if (id >= 0)
                break;
            end--;
            while (end > start && ((unsigned char)s[end] & 0xC0) == 0x80)
                end--;
        }
        if (id < 0)
            goto unk;
        if (!td_work_push_mtok(w, id, (uint32_t)start, (uint32_t)end))
            return td_fail_oom(ctx, 0, "tokens");
        start = end;
    }
    return TD_OK;
unk:
    w->mtn = first;
    if (m->unk_id < 0)
        return td_fail(ctx, TD_ERR_FORMAT,
                       "WordPiece: a word has no vocabulary match and the unk_token is not in the vocabulary");
    if (!td_work_push_mtok(w, m->unk_id, 0, (uint32_t)n))
        return td_fail_oom(ctx, 0, "tokens");
    return TD_OK;
}
