/* The generation loop (see generator.h): left-padded prefill, then one token per
 * step through the KV cache, with per-row eos / stop-string / length endings and
 * UTF-8-safe streaming. */
#define _GNU_SOURCE
#include "core/checked.h"
#include "core/log.h"
#include "generate/gen_internal.h"
#include "generate/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void td_gen_options_defaults(const td_generator *g, td_gen_options *o) {
    memset(o, 0, sizeof *o);
    td_sampling_defaults(&o->sampling);
    o->max_new_tokens = 32;
    o->n_eos = g->n_eos;
    memcpy(o->eos_ids, g->eos, g->n_eos * sizeof g->eos[0]);
    o->pad_id = g->pad >= 0 && g->pad < g->vocab ? g->pad : 0;
}

void td_gen_results_free(td_gen_result *r, size_t n) {
    for (size_t i = 0; r && i < n; i++) {
        free(r[i].ids);
        free(r[i].text);
        memset(&r[i], 0, sizeof r[i]);
    }
}

/* Everything a request needs, allocated once before the first step. */
typedef struct request {
    size_t batch, prompt, cap;   /* rows, longest prompt, prompt + max_new_tokens */
    int64_t *ids;                /* (batch, prompt) prefill ids, then (batch, 1) step ids */
    int64_t *mask;               /* (batch, cap) attention mask: in place, rows cap apart; else packed (batch, total) */
    int64_t *pos;                /* (batch, prompt) positions; (batch, 1) per step */
    int64_t *last_pos;           /* (batch) */
    int32_t *narrow;             /* int32 copies for graphs with int32 inputs */
    float *kv_block;             /* every layer's cache, one zeroed allocation */
    float **kv;                  /* per cache: (batch, kv_heads, cap, head_dim) in kv_block */
    float *bias;                 /* in place: (batch, 1, prompt, cap) attention bias, (batch, 1, 1, cap) per step */
    int64_t position;            /* in place: cache column of the first new token of the pass */
    int32_t *seqlens;            /* fused in place: (batch) keys in use - 1 after the pass (position + seq - 1) */
    int32_t total;               /* fused in place: total_sequence_length, the bound capacity (bound by address) */
    uint64_t copied;             /* bytes of cache copied out of present outputs (the fallback path) */
    float *row;                  /* (vocab) logits of one row */
    int64_t **hist;              /* per row: prompt + generated ids (cap) */
    size_t *n_hist;
    bool *done;
    size_t *emitted;             /* streamed bytes per row */
    td_sampler_scratch scratch;
} request;

static void request_free(request *r, int n_caches) {
    free(r->ids);
    free(r->mask);
    free(r->pos);
    free(r->last_pos);
    free(r->narrow);
    (void)n_caches;
    free(r->kv_block);
    free(r->kv);
    free(r->bias);
    free(r->seqlens);
    free(r->row);
    for (size_t i = 0; r->hist && i < r->batch; i++)
        free(r->hist[i]);
    free(r->hist);
    free(r->n_hist);
    free(r->done);
    free(r->emitted);
    td_sampler_scratch_free(&r->scratch);
}

static td_status request_alloc(td_ctx *ctx, const td_generator *g, request *r) {
    size_t b = r->batch, cells = 0, kv_cells = 0;
    if (!td_mul_size(b, r->cap, &cells))
        return td_fail(ctx, TD_ERR_OVERFLOW, "generate: batch %zu x %zu tokens overflows", b, r->cap);
    r->ids = calloc(b * r->prompt, sizeof *r->ids);
    r->mask = calloc(cells, sizeof *r->mask);
    r->pos = calloc(b * r->prompt, sizeof *r->pos);
    r->last_pos = calloc(b, sizeof *r->last_pos);
    /* int32 staging for ids + mask + positions of the largest pass (the prefill: 2 x prompt + cap columns) */
    r->narrow = g->int32 ? calloc(cells + 2 * b * r->prompt, sizeof *r->narrow) : NULL;
    r->kv = calloc((size_t)g->n_caches, sizeof *r->kv);
    size_t bias_cells = 0; /* (batch, 1, prompt, prompt) for the prefill, (batch, 1, 1, cap) per step */
    if (!td_mul_size(cells, r->prompt, &bias_cells) || !td_mul_size(bias_cells, sizeof *r->bias, &bias_cells))
        return td_fail(ctx, TD_ERR_OVERFLOW, "generate: batch %zu x %zu x %zu attention bias overflows", b, r->prompt,
                       r->cap);
    r->bias = g->kv.in_place ? malloc(bias_cells) : NULL;
    r->seqlens = g->kv.fused ? calloc(b, sizeof *r->seqlens) : NULL;
    r->row = malloc((size_t)g->vocab * sizeof *r->row);
    r->hist = calloc(b, sizeof *r->hist);
    r->n_hist = calloc(b, sizeof *r->n_hist);
    r->done = calloc(b, sizeof *r->done);
    r->emitted = calloc(b, sizeof *r->emitted);
    bool ok = r->ids && r->mask && r->pos && r->last_pos && (r->narrow || !g->int32) && r->kv && r->row && r->hist &&
              (r->bias || !g->kv.in_place) && (r->seqlens || !g->kv.fused) &&
              r->n_hist && r->done && r->emitted && td_sampler_scratch_init(&r->scratch, g->vocab);
    for (size_t i = 0; ok && i < b; i++)
        ok = (r->hist[i] = malloc(r->cap * sizeof *r->hist[i])) != NULL;
    if (!ok)
        return td_fail_oom(ctx, cells * sizeof(int64_t), "the state of the request");
    /* one zeroed block for all layers: columns not written yet must be finite (the bias closes them) */
    size_t offs = 0;
    for (int i = 0; i < g->n_caches; i++) {
        const td_gen_cache *c = &g->caches[i];
        size_t per = 0;
        if (!td_mul_size(cells, (size_t)c->kv_heads, &per) || !td_mul_size(per, (size_t)c->head_dim, &kv_cells) ||
            !td_add_size(offs, kv_cells, &offs) || !td_mul_size(offs, sizeof(float), &per))
            return td_fail(ctx, TD_ERR_OVERFLOW, "generate: KV cache size overflows");
    }
    if (!(r->kv_block = calloc(offs ? offs : 1, sizeof(float))))
        return td_fail_oom(ctx, offs * sizeof(float), "the KV cache of the request");
    offs = 0;
    for (int i = 0; i < g->n_caches; i++) {
        r->kv[i] = r->kv_block + offs;
        offs += cells * (size_t)g->caches[i].kv_heads * (size_t)g->caches[i].head_dim;
    }
    return TD_OK;
}

/* Bind an int64 (batch, cols) array, narrowed when the graph takes int32. */
static td_status bind_ids(td_ctx *ctx, const td_generator *g, request *r, const char *name, const int64_t *v,
                          size_t rows, size_t cols, int32_t *narrow) {
    const int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
    if (!g->int32)
        return td_session_set_input(ctx, g->s, name, TD_DTYPE_INT64, 2, shape, v, rows * cols * sizeof *v);
    for (size_t i = 0; i < rows * cols; i++)
        narrow[i] = (int32_t)v[i];
    return td_session_set_input(ctx, g->s, name, TD_DTYPE_INT32, 2, shape, narrow, rows * cols * sizeof *narrow);
}

/* One forward pass over `seq` new tokens per row with `total` columns of mask. */
static td_status forward(td_ctx *ctx, td_generator *g, request *r, size_t seq, size_t total) {
    size_t b = r->batch;
    int64_t *mask = r->mask; /* (batch, total), packed */
    int32_t *ids32 = r->narrow, *mask32 = r->narrow ? r->narrow + b * seq : NULL,
            *pos32 = r->narrow ? r->narrow + b * seq + b * total : NULL;
    TD_TRY(bind_ids(ctx, g, r, "input_ids", r->ids, b, seq, ids32));
    TD_TRY(bind_ids(ctx, g, r, "attention_mask", mask, b, total, mask32));
    if (g->has_pos)
        TD_TRY(bind_ids(ctx, g, r, "position_ids", r->pos, b, seq, pos32));
    size_t past = total - seq;
    for (int i = 0; i < g->n_caches; i++) {
        const td_gen_cache *c = &g->caches[i];
        const int64_t shape[4] = {(int64_t)b, c->kv_heads, (int64_t)past, c->head_dim};
        size_t nbytes = b * (size_t)c->kv_heads * past * (size_t)c->head_dim * sizeof(float);
        TD_TRY(td_session_set_input(ctx, g->s, c->input, TD_DTYPE_FLOAT32, 4, shape, r->kv[i], nbytes));
    }
    TD_TRY(td_session_run(ctx, g->s));
    for (int i = 0; i < g->n_caches; i++) {
        const td_gen_cache *c = &g->caches[i];
        td_session_output o;
        TD_TRY(td_session_get_output(ctx, g->s, c->output, &o));
        size_t want = b * (size_t)c->kv_heads * total * (size_t)c->head_dim * sizeof(float);
        if (o.dtype != TD_DTYPE_FLOAT32 || o.nbytes != want)
            return td_fail(ctx, TD_ERR_SHAPE, "generate: %s has %zu bytes, expected %zu (batch %zu, %zu positions)",
                           o.name, o.nbytes, want, b, total);
        memcpy(r->kv[i], o.data, want); /* (batch, kv_heads, total, head_dim), contiguous */
        r->copied += want;
    }
    return TD_OK;
}

/* rows packed `from` elements apart -> `to` (>= from) apart, in place, the new tails zeroed: the last row
 * moves first, so no row is overwritten before it moved */
static void widen_rows(void *base, size_t rows, size_t from, size_t to, size_t esize) {
    uint8_t *p = base;
    for (size_t r = rows; r-- > 0;) {
        memmove(p + r * to * esize, p + r * from * esize, from * esize);
        memset(p + (r * to + from) * esize, 0, (to - from) * esize);
    }
}

/* One forward pass over `seq` new tokens per row on the rewritten graph (kv_inplace.h): the caches are bound
 * `cap` columns wide (the prefill: the prompt's columns, packed; decode steps: the capacity) and written in place
 * at column r->position; the mask is (batch, cap). */
static td_status forward_in_place(td_ctx *ctx, td_generator *g, request *r, size_t seq, size_t cap) {
    size_t b = r->batch;
    int32_t *ids32 = r->narrow, *mask32 = r->narrow ? r->narrow + b * seq : NULL,
            *pos32 = r->narrow ? r->narrow + b * seq + b * cap : NULL;
    TD_TRY(bind_ids(ctx, g, r, "input_ids", r->ids, b, seq, ids32));
    TD_TRY(bind_ids(ctx, g, r, "attention_mask", r->mask, b, cap, mask32));
    if (g->has_pos)
        TD_TRY(bind_ids(ctx, g, r, "position_ids", r->pos, b, seq, pos32));
    td_gen_kv_bias(r->bias, r->mask, b, seq, cap, (size_t)r->position, g->kv.window);
    const int64_t bshape[4] = {(int64_t)b, 1, (int64_t)seq, (int64_t)cap}, one = 1;
    TD_TRY(td_session_set_input(ctx, g->s, TD_GEN_BIAS_INPUT, TD_DTYPE_FLOAT32, 4, bshape, r->bias,
                                b * seq * cap * sizeof *r->bias));
    if (g->kv.fused) { /* every row's keys: the columns up to the pass's last (the bias closes padding) */
        const int64_t rows = (int64_t)b;
        r->total = (int32_t)cap; /* the session reads bound inputs at run time: kept in the request */
        for (size_t i = 0; i < b; i++)
            r->seqlens[i] = (int32_t)(r->position + (int64_t)seq - 1);
        TD_TRY(td_session_set_input(ctx, g->s, TD_GEN_SEQLENS_INPUT, TD_DTYPE_INT32, 1, &rows, r->seqlens,
                                    b * sizeof *r->seqlens));
        TD_TRY(td_session_set_input(ctx, g->s, TD_GEN_TOTAL_INPUT, TD_DTYPE_INT32, 1, &one, &r->total,
                                    sizeof r->total));
    } else {
        TD_TRY(td_session_set_input(ctx, g->s, TD_GEN_POSITION_INPUT, TD_DTYPE_INT64, 1, &one, &r->position,
                                    sizeof r->position));
    }
    for (int i = 0; i < g->n_caches; i++) {
        const td_gen_cache *c = &g->caches[i];
        const int64_t shape[4] = {(int64_t)b, c->kv_heads, (int64_t)cap, c->head_dim};
        size_t nbytes = b * (size_t)c->kv_heads * cap * (size_t)c->head_dim * sizeof(float);
        TD_TRY(td_session_set_input(ctx, g->s, c->input, TD_DTYPE_FLOAT32, 4, shape, r->kv[i], nbytes));
    }
    TD_TRY(td_session_run(ctx, g->s));
    for (int i = 0; i < g->n_caches; i++) { /* present.N is the cache itself: nothing to copy */
        td_session_output o;
        TD_TRY(td_session_get_output(ctx, g->s, g->caches[i].output, &o));
        if (o.data != (const void *)r->kv[i])
            return td_fail(ctx, TD_ERR_INTERNAL, "generate: %s is not the request's cache buffer", o.name);
    }
    return TD_OK;
}

/* Decode row's new tokens; stream what became final; end the row on a stop string. */
static td_status row_text(td_ctx *ctx, const td_generator *g, const td_gen_options *o, request *r, size_t row,
                          td_gen_result *res, bool final) {
    if (!g->tok || (!final && !o->on_text && o->n_stop == 0))
        return TD_OK; /* nothing to stream or watch for: decode once, at the end */
    size_t prompt_len = r->n_hist[row] - res->n_ids;
    char *text = NULL;
    TD_TRY(td_tokenizer_decode(ctx, g->tok, r->hist[row] + prompt_len, res->n_ids, true, &text));
    size_t len = strlen(text);
    size_t which = 0, cut = td_stream_find_stop(text, len, o->stop, o->n_stop, &which);
    if (cut < len) {
        len = cut;
        text[len] = '\0';
        r->done[row] = true;
        res->finish = "stop";
        final = true;
    }
    size_t safe = final ? len : td_stream_safe_len(text, len, o->stop, o->n_stop);
    if (o->on_text && safe > r->emitted[row]) {
        o->on_text(o->user, (int)row, text + r->emitted[row], safe - r->emitted[row]);
        r->emitted[row] = safe;
    }
    free(res->text);
    res->text = text;
    return TD_OK;
}

static bool is_eos(const td_gen_options *o, int64_t t) {
    for (size_t i = 0; i < o->n_eos; i++)
        if (o->eos_ids[i] == t)
            return true;
    return false;
}

static td_status check_request(td_ctx *ctx, const td_generator *g, const int64_t *const *ids, const size_t *lens,
                               size_t n, const td_gen_options *o, size_t *longest) {
    if (n == 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "generate: no prompt given");
    if (o->max_new_tokens < 1 || o->max_new_tokens > (1 << 24))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "generate: max_new_tokens %lld must be in 1..%d",
                       (long long)o->max_new_tokens, 1 << 24);
    if (o->n_stop > 0 && !g->tok)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "generate: stop strings need the model's tokenizer");
    const td_sampling *p = &o->sampling;
    if (!(p->temperature > 0) || !(p->top_p > 0 && p->top_p <= 1) || !(p->min_p >= 0 && p->min_p <= 1) ||
        !(p->repetition_penalty > 0) || p->top_k < 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "generate: sampling needs temperature > 0, 0 < top_p <= 1, 0 <= min_p <= 1, "
                       "repetition_penalty > 0 and top_k >= 0");
    *longest = 0;
    for (size_t i = 0; i < n; i++) {
        if (lens[i] == 0)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "generate: prompt %zu is empty", i);
        for (size_t k = 0; k < lens[i]; k++)
            if (ids[i][k] < 0 || ids[i][k] >= g->vocab)
                return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "generate: prompt %zu token %zu is id %lld, outside "
                               "the vocabulary (0..%lld)", i, k, (long long)ids[i][k], (long long)g->vocab - 1);
        *longest = lens[i] > *longest ? lens[i] : *longest;
    }
    if (g->context > 0 && (int64_t)*longest > g->context)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "generate: the prompt has %zu tokens but the model's context is %lld; shorten the prompt",
                       *longest, (long long)g->context);
    /* prompt + max_new_tokens past the context is no error: generation stops there (finish "context") */
    return TD_OK;
}

td_status td_generate(td_ctx *ctx, td_generator *g, const int64_t *const *ids, const size_t *lens, size_t n,
                      const td_gen_options *o, td_gen_result *out) {
    memset(out, 0, n * sizeof *out);
    size_t longest = 0;
    TD_TRY(check_request(ctx, g, ids, lens, n, o, &longest));
    /* new tokens the context leaves room for (prompt + new tokens <= context, as transformers' max_length) */
    int64_t max_new = o->max_new_tokens;
    bool context_bound = g->context > 0 && (int64_t)longest + max_new > g->context;
    if (context_bound)
        max_new = g->context - (int64_t)longest;
    if (max_new == 0) { /* a prompt that fills the context: nothing to generate */
        for (size_t i = 0; i < n; i++)
            out[i].finish = "context", out[i].kv_in_place = g->kv.in_place, out[i].kv_cache = g->kv.how;
        return TD_OK;
    }
    request r = {.batch = n, .prompt = longest, .cap = longest + (size_t)max_new};
    if (g->kv.fused && r.cap > (size_t)INT32_MAX) /* seqlens_k and total_sequence_length are int32 */
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "generate: prompt + max_new_tokens = %zu tokens is more than the "
                       "fused attention's int32 lengths hold; lower --max-new-tokens", r.cap);
    td_session_stats s0;
    td_session_get_stats(g->s, &s0);
    bool inplace = g->kv.in_place;
    /* mask row stride: packed for the prefill, then the capacity (Concat appends: widened after the prefill,
     * whose attention spans every bound column); the capacity from the start for the fused attention, which
     * spans the columns in use only */
    size_t mcols = g->kv.fused ? longest + (size_t)max_new : longest;
    td_status st = request_alloc(ctx, g, &r);
    for (size_t i = 0; st == TD_OK && i < n; i++)
        if (!(out[i].ids = malloc((size_t)max_new * sizeof *out[i].ids)))
            st = td_fail_oom(ctx, (size_t)max_new * sizeof(int64_t), "generated ids");
    if (st != TD_OK)
        goto out;
    /* left padding: row i's prompt ends at column longest - 1; positions count real tokens only */
    size_t total = longest;
    for (size_t i = 0; i < n; i++) {
        size_t pad = longest - lens[i];
        for (size_t k = 0; k < longest; k++) {
            bool real = k >= pad;
            r.ids[i * longest + k] = real ? ids[i][k - pad] : o->pad_id;
            r.mask[i * mcols + k] = real;
            r.pos[i * longest + k] = real ? (int64_t)(k - pad) : 1;
        }
        r.last_pos[i] = (int64_t)lens[i] - 1;
        memcpy(r.hist[i], ids[i], lens[i] * sizeof *ids[i]);
        r.n_hist[i] = lens[i];
        out[i].finish = context_bound ? "context" : "length";
    }
    td_rng rng;
    td_rng_seed(&rng, o->sampling.seed);
    double t0 = td_now_s(), c0 = td_cpu_now_s();
    r.position = 0;
    st = inplace ? forward_in_place(ctx, g, &r, longest, mcols) : forward(ctx, g, &r, longest, total);
    if (st == TD_OK && inplace && mcols < r.cap) { /* once per request: rows from prompt to capacity stride */
        widen_rows(r.mask, n, longest, r.cap, sizeof *r.mask);
        for (int c = 0; c < g->n_caches; c++) {
            const td_gen_cache *k = &g->caches[c];
            widen_rows(r.kv[c], n * (size_t)k->kv_heads, longest * (size_t)k->head_dim, r.cap * (size_t)k->head_dim,
                       sizeof(float));
            r.copied += n * (size_t)k->kv_heads * longest * (size_t)k->head_dim * sizeof(float);
        }
        mcols = r.cap;
    }
    double t_prefill = td_now_s() - t0, c_prefill = td_cpu_now_s() - c0;
    size_t seq = longest;
    for (int64_t step = 0; st == TD_OK && step < max_new; step++) {
        if (o->interrupt && *o->interrupt) {
            st = td_fail(ctx, TD_ERR_INTERRUPTED, "generate: interrupted");
            break;
        }
        td_session_output lo;
        if ((st = td_session_get_output(ctx, g->s, g->i_logits, &lo)) != TD_OK)
            break;
        size_t lseq = g->last_logits ? 1 : seq; /* positions with logits */
        if (lo.dtype != TD_DTYPE_FLOAT32 || lo.rank != 3 || lo.shape[0] != (int64_t)n || lo.shape[1] != (int64_t)lseq ||
            lo.shape[2] != g->vocab) {
            st = td_fail(ctx, TD_ERR_SHAPE, "generate: logits are not float32 (%zu, %zu, %lld)", n, lseq,
                         (long long)g->vocab);
            break;
        }
        const float *logits = lo.data;
        if (o->on_logits)
            o->on_logits(o->user, step, logits, n, lseq, g->vocab);
        bool all_done = true;
        for (size_t i = 0; i < n && st == TD_OK; i++) {
            int64_t next = o->pad_id;
            if (!r.done[i]) {
                memcpy(r.row, logits + ((i * lseq) + lseq - 1) * (size_t)g->vocab, (size_t)g->vocab * sizeof *r.row);
                next = td_sample_next(r.row, g->vocab, r.hist[i], r.n_hist[i], &o->sampling, &rng, &r.scratch);
                out[i].ids[out[i].n_ids++] = next;
                r.hist[i][r.n_hist[i]++] = next;
                if (is_eos(o, next)) {
                    r.done[i] = true;
                    out[i].finish = "eos";
                }
                bool last = r.done[i] || step + 1 == max_new;
                st = row_text(ctx, g, o, &r, i, &out[i], last);
            }
            all_done = all_done && r.done[i];
            r.ids[i] = next; /* (batch, 1) */
            r.pos[i] = ++r.last_pos[i];
        }
        if (st != TD_OK || all_done || step + 1 == max_new)
            break;
        seq = 1;
        if (inplace) { /* the next cache column opens; shapes stay (batch, cap) */
            for (size_t i = 0; i < n; i++)
                r.mask[i * mcols + total] = 1;
            r.position = (int64_t)total++;
            st = forward_in_place(ctx, g, &r, 1, r.cap);
            continue;
        }
        /* the mask grows by one column of ones: re-lay rows as (batch, total + 1) */
        size_t nt = total + 1;
        for (size_t i = n; i-- > 0;) {
            memmove(r.mask + i * nt, r.mask + i * total, total * sizeof *r.mask);
            r.mask[i * nt + total] = 1;
        }
        total = nt;
        st = forward(ctx, g, &r, 1, total);
    }
    double t_decode = td_now_s() - t0 - t_prefill, c_decode = td_cpu_now_s() - c0 - c_prefill;
    td_session_stats s1;
    td_session_get_stats(g->s, &s1);
    for (size_t i = 0; i < n; i++) {
        out[i].prefill_s = t_prefill;
        out[i].decode_s = t_decode;
        out[i].prefill_cpu_s = c_prefill;
        out[i].decode_cpu_s = c_decode;
        out[i].kv_in_place = inplace;
        out[i].kv_cache = g->kv.how;
        out[i].plans = s1.plans - s0.plans;
        out[i].session_allocs = s1.allocs - s0.allocs;
        out[i].cache_copy_bytes = r.copied;
    }
out:
    request_free(&r, g->n_caches);
    if (st != TD_OK)
        td_gen_results_free(out, n);
    return st;
}
