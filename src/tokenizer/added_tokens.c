/* Added tokens (HF AddedVocabulary): tokens matched in the text before the
 * model runs. Non-normalized ones are found in the original text, normalized
 * ones in the normalized text (their content normalized the same way). Matching
 * is leftmost-longest and non-overlapping (HF uses Aho-Corasick LeftmostLongest);
 * single_word, lstrip and rstrip are then applied per match as HF does. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

td_status td_added_parse(td_ctx *ctx, const cJSON *arr, td_added_vocab *av) {
    if (!arr)
        return TD_OK;
    if (!cJSON_IsArray(arr))
        return td_fail(ctx, TD_ERR_FORMAT, "tokenizer.json: \"added_tokens\" must be an array");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    av->v = calloc(n ? n : 1, sizeof *av->v);
    if (!av->v)
        return td_fail_oom(ctx, n, "added tokens");
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", av->n);
        if (!cJSON_IsObject(it))
            return td_fail(ctx, TD_ERR_FORMAT, "%s: expected an object", where);
        td_added_token *t = &av->v[av->n];
        const char *content;
        TD_TRY(td_json_str(ctx, it, "content", &content, where));
        size_t id;
        TD_TRY(td_json_size(ctx, it, "id", (1u << 24) - 1, &id, where));
        t->id = (int32_t)id;
        t->len = strlen(content);
        if (!(t->content = strdup(content)))
            return td_fail_oom(ctx, t->len, "added token");
        av->n++;
        TD_TRY(td_json_bool(ctx, it, "single_word", false, &t->single_word, where));
        TD_TRY(td_json_bool(ctx, it, "lstrip", false, &t->lstrip, where));
        TD_TRY(td_json_bool(ctx, it, "rstrip", false, &t->rstrip, where));
        TD_TRY(td_json_bool(ctx, it, "special", false, &t->special, where));
        TD_TRY(td_json_bool(ctx, it, "normalized", !t->special, &t->normalized, where));
    }
    return TD_OK;
}

/* qsort has no context argument: these are set right before each sort (load is single-threaded per tokenizer) */
static _Thread_local int g_sort_norm;
static size_t cand_len(const td_added_vocab *av, int32_t i, int norm) {
    return norm ? av->norm_len[i] : av->v[i].len;
}
static _Thread_local const td_added_vocab *g_sort_vocab;
static int by_len_desc(const void *a, const void *b) {
    size_t la = cand_len(g_sort_vocab, *(const int32_t *)a, g_sort_norm);
    size_t lb = cand_len(g_sort_vocab, *(const int32_t *)b, g_sort_norm);
    if (la != lb)
        return la > lb ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

td_status td_added_build(td_ctx *ctx, td_added_vocab *av, const td_normalizer *norm, td_work *w) {
    av->norm_content = calloc(av->n ? av->n : 1, sizeof *av->norm_content);
    av->norm_len = calloc(av->n ? av->n : 1, sizeof *av->norm_len);
    if (!av->norm_content || !av->norm_len)
        return td_fail_oom(ctx, av->n, "added tokens");
    for (size_t i = 0; i < av->n; i++) {
        td_added_token *t = &av->v[i];
        if (!td_strmap_put(&av->content_map, t->content, t->len, (int32_t)i))
            return td_fail_oom(ctx, 0, "added tokens");
        if (!t->normalized)
            continue;
        td_nbuf *b = &w->nb;
        b->len = 0;
        if (!td_nbuf_reserve(b, t->len + 1))
            return td_fail_oom(ctx, t->len, "added token");
        for (size_t k = 0; k < t->len; k++) {
            b->t[k] = t->content[k];
            b->al[k] = (td_span){(uint32_t)k, (uint32_t)k + 1};
        }
        b->len = t->len;
        if (norm)
            TD_TRY(td_normalizer_apply(ctx, norm, w, b));
        char *c = malloc(b->len + 1);
        if (!c)
            return td_fail_oom(ctx, b->len, "added token");
        memcpy(c, b->t, b->len);
        c[b->len] = 0;
        av->norm_content[i] = c;
        av->norm_len[i] = b->len;
    }
    size_t maxid = 0;
    for (size_t i = 0; i < av->n; i++)
        if ((size_t)av->v[i].id + 1 > maxid)
            maxid = (size_t)av->v[i].id + 1;
    av->by_id = malloc((maxid ? maxid : 1) * sizeof *av->by_id);
    if (!av->by_id)
        return td_fail_oom(ctx, maxid, "added tokens");
    av->by_id_n = maxid;
    for (size_t i = 0; i < maxid; i++)
        av->by_id[i] = -1;
    for (size_t i = 0; i < av->n; i++)
        av->by_id[av->v[i].id] = (int32_t)i; /* last definition wins, like HF's id -> token map */
    for (int norm_set = 0; norm_set < 2; norm_set++) {
        size_t count[256] = {0};
        for (size_t i = 0; i < av->n; i++) {
            if (av->v[i].normalized != (bool)norm_set)
                continue;
            const char *c = norm_set ? av->norm_content[i] : av->v[i].content;
            size_t l = norm_set ? av->norm_len[i] : av->v[i].len;
            if (l)
                count[(unsigned char)c[0]]++;
        }
        for (int b = 0; b < 256; b++) {
            if (!count[b])
                continue;
            av->by_byte[norm_set][b] = malloc(count[b] * sizeof(int32_t));
            if (!av->by_byte[norm_set][b])
                return td_fail_oom(ctx, count[b], "added tokens");
        }
        for (size_t i = 0; i < av->n; i++) {
            if (av->v[i].normalized != (bool)norm_set)
                continue;
            const char *c = norm_set ? av->norm_content[i] : av->v[i].content;
            size_t l = norm_set ? av->norm_len[i] : av->v[i].len;
            if (!l)
                continue;
            unsigned char b = (unsigned char)c[0];
            av->by_byte[norm_set][b][av->by_byte_n[norm_set][b]++] = (int32_t)i;
        }
        g_sort_vocab = av;
        g_sort_norm = norm_set;
        for (int b = 0; b < 256; b++)
            if (av->by_byte_n[norm_set][b] > 1)
                qsort(av->by_byte[norm_set][b], av->by_byte_n[norm_set][b], sizeof(int32_t), by_len_desc);
    }
    return TD_OK;
}

void td_added_free(td_added_vocab *av) {
    if (!av)
        return;
    for (size_t i = 0; i < av->n; i++) {
        free(av->v[i].content);
        if (av->norm_content)
            free(av->norm_content[i]);
    }
    free(av->v);
    free(av->norm_content);
    free(av->norm_len);
    free(av->by_id);
    for (int s = 0; s < 2; s++)
        for (int b = 0; b < 256; b++)
            free(av->by_byte[s][b]);
    td_strmap_free(&av->content_map);
    memset(av, 0, sizeof *av);
}

const td_added_token *td_added_by_id(const td_added_vocab *av, int64_t id) {
    if (id < 0 || (uint64_t)id >= av->by_id_n || av->by_id[id] < 0)
        return NULL;
    return &av->v[av->by_id[id]];
}

const char *td_added_text(const td_added_vocab *av, const td_added_token *t) {
    size_t i = (size_t)(t - av->v);
    if (t->normalized && av->norm_content && i < av->n && av->norm_content[i])
        return av->norm_content[i];
    return t->content;
}

/* Rust regex \w (approximately: letters, marks, decimal digits, connector punctuation). */
static bool is_word_char(uint32_t c) {
    if (c < 0x80)
        return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_MN && k <= UTF8PROC_CATEGORY_ME) || k == UTF8PROC_CATEGORY_ND ||
           k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_PC;
}

static size_t prev_char(const char *t, size_t i) {
    do
        i--;
    while (i > 0 && ((unsigned char)t[i] & 0xC0) == 0x80);
    return i;
}

static bool push(td_match **m, size_t *cap, size_t *count, int32_t **ids, size_t *idcap, size_t s, size_t e,
                 bool is_match, int32_t id) {
    if (!td_grow((void **)m, cap, *count + 1, sizeof **m) || !td_grow((void **)ids, idcap, *count + 1, sizeof **ids))
        return false;
    (*m)[*count] = (td_match){s, e, is_match};
    (*ids)[*count] = id;
    (*count)++;
    return true;
}

td_status td_added_find(td_ctx *ctx, const td_added_vocab *av, bool normalized, const char *t, size_t n,
                        td_match **m, size_t *cap, size_t *count, int32_t **ids, size_t *idcap) {
    *count = 0;
    int set = normalized ? 1 : 0;
    size_t start_offset = 0;
    for (size_t pos = 0; pos < n;) {
        unsigned char b = (unsigned char)t[pos];
        size_t nc = av->by_byte_n[set][b];
        int32_t hit = -1;
        size_t hl = 0;
        for (size_t c = 0; c < nc; c++) {
            int32_t i = av->by_byte[set][b][c];
            const char *s = set ? av->norm_content[i] : av->v[i].content;
            size_t l = set ? av->norm_len[i] : av->v[i].len;
            if (l <= n - pos && memcmp(t + pos, s, l) == 0) {
                hit = i;
                hl = l;
                break;
            }
        }
        if (hit < 0) {
            pos++;
            continue;
        }
        const td_added_token *tk = &av->v[hit];
        size_t start = pos, stop = pos + hl;
        pos = stop;
        if (tk->single_word) {
            uint32_t cp;
            bool start_space = start == 0;
            if (!start_space) {
                size_t p = prev_char(t, start);
                td_utf8_dec(t + p, start - p, &cp);
                start_space = !is_word_char(cp);
            }
            bool stop_space = stop == n;
            if (!stop_space) {
                td_utf8_dec(t + stop, n - stop, &cp);
                stop_space = !is_word_char(cp);
            }
            if (!start_space || !stop_space)
                continue;
        }
        if (tk->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t p = prev_char(t, ns);
                uint32_t cp;
                td_utf8_dec(t + p, ns - p, &cp);
                if (!td_char_is_whitespace(cp))
                    break;
                ns = p;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (tk->rstrip) {
            while (stop < n) {
                uint32_t cp;
                int k = td_utf8_dec(t + stop, n - stop, &cp);
                if (!td_char_is_whitespace(cp))
                    break;
                stop += (size_t)k;
            }
            pos = stop;
        }
        if (start_offset < start && !push(m, cap, count, ids, idcap, start_offset, start, false, -1))
            return td_fail_oom(ctx, 0, "added token matches");
        if (!push(m, cap, count, ids, idcap, start, stop, true, tk->id))
            return td_fail_oom(ctx, 0, "added token matches");
        start_offset = stop;
    }
    if (start_offset != n || n == 0) {
        if (!push(m, cap, count, ids, idcap, start_offset, n, false, -1))
            return td_fail_oom(ctx, 0, "added token matches");
    }
    return TD_OK;
}
