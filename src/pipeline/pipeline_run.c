/* td_pipeline_run: one batch of texts -> tokenizer -> padded int tensors ->
 * session -> per-text task answers (postprocess.c does the arithmetic). */
#include "pipeline/pipeline_internal.h"

#include "core/checked.h"
#include "core/ctx.h"
#include "core/dtype.h"
#include "pipeline/postprocess.h"

#include <stdlib.h>
#include <string.h>

void td_pipe_result_free(td_pipe_result *r) {
    if (!r)
        return;
    free(r->input_ids);
    free(r->vector);
    free(r->hidden);
    free(r->logits);
    free(r->labels);
    for (size_t i = 0; r->entities && i < r->n_entities; i++)
        free(r->entities[i].word);
    free(r->entities);
    free(r->start_logits);
    free(r->end_logits);
    free(r->answer);
    memset(r, 0, sizeof *r);
}

void td_pipe_results_free(td_pipe_result *r, size_t n) {
    for (size_t i = 0; r && i < n; i++)
        td_pipe_result_free(&r[i]);
}

/* The batch as the model takes it: rows right-padded to the longest. */
typedef struct batch_in {
    size_t n, seq;
    td_encoding *enc;     /* (n) one unpadded encoding per text */
    int64_t *ids, *mask, *types; /* (n, seq) */
    void *ids_i32, *mask_i32, *types_i32;
} batch_in;

static void batch_free(batch_in *b) {
    for (size_t i = 0; b->enc && i < b->n; i++)
        td_encoding_free(&b->enc[i]);
    free(b->enc);
    free(b->ids);
    free(b->mask);
    free(b->types);
    free(b->ids_i32);
    free(b->mask_i32);
    free(b->types_i32);
}

static td_status encode(td_ctx *ctx, const td_pipeline *p, const char *const *texts, const char *const *pairs,
                        size_t first, batch_in *b, td_pipe_result *res) {
    td_tok_options o;
    td_tokenizer_default_options(p->tok, &o);
    o.add_special_tokens = true;
    o.padding = TD_PAD_NONE;
    o.pad_to_multiple_of = 0;
    o.truncation = p->max_length > 0;
    if (o.truncation) {
        o.max_length = (size_t)p->max_length;
        o.stride = 0;
        /* the question stays whole; the context is cut, as the QA pipeline does */
        o.trunc_strategy = p->task == TD_TASK_QUESTION_ANSWERING ? TD_TRUNC_ONLY_SECOND : TD_TRUNC_LONGEST_FIRST;
    }
    if (!(b->enc = calloc(b->n, sizeof *b->enc)))
        return td_fail_oom(ctx, b->n * sizeof *b->enc, "encodings");
    for (size_t i = 0; i < b->n; i++) {
        const char *pair = pairs ? pairs[i] : NULL;
        td_status st = td_tokenizer_encode(ctx, p->tok, texts[i], strlen(texts[i]), pair, pair ? strlen(pair) : 0, &o,
                                           &b->enc[i]);
        if (st != TD_OK)
            return td_wrap(ctx, "input %zu", first + i);
        if (b->enc[i].len == 0)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "input %zu gives no tokens", first + i);
        res[i].truncated = b->enc[i].truncated;
        if (b->enc[i].len > b->seq)
            b->seq = b->enc[i].len;
    }
    size_t cells;
    if (!td_mul_size(b->n, b->seq, &cells) || cells > SIZE_MAX / 8)
        return td_fail(ctx, TD_ERR_OVERFLOW, "batch of %zu rows x %zu tokens is too large", b->n, b->seq);
    b->ids = malloc(cells * sizeof *b->ids);
    b->mask = calloc(cells, sizeof *b->mask);
    b->types = malloc(cells * sizeof *b->types);
    if (!b->ids || !b->mask || !b->types)
        return td_fail_oom(ctx, 3 * cells * sizeof(int64_t), "the input batch");
    for (size_t i = 0; i < b->n; i++) {
        const td_encoding *e = &b->enc[i];
        for (size_t t = 0; t < b->seq; t++) {
            size_t k = i * b->seq + t;
            bool real = t < e->len;
            b->ids[k] = real ? e->ids[t] : o.pad_id;
            b->mask[k] = real ? 1 : 0;
            b->types[k] = real ? e->type_ids[t] : o.pad_type_id;
        }
    }
    return TD_OK;
}

static td_status bind(td_ctx *ctx, td_pipeline *p, batch_in *b, const char *name, int64_t *v, void **v32) {
    const int64_t shape[2] = {(int64_t)b->n, (int64_t)b->seq};
    size_t cells = b->n * b->seq;
    if (p->ids_dtype == TD_DTYPE_INT32) {
        int32_t *w = malloc(cells * sizeof *w);
        if (!w)
            return td_fail_oom(ctx, cells * sizeof *w, "int32 inputs");
        for (size_t k = 0; k < cells; k++) {
            if (v[k] < INT32_MIN || v[k] > INT32_MAX) {
                free(w);
                return td_fail(ctx, TD_ERR_OVERFLOW, "%s value %lld does not fit the model's int32 input", name,
                               (long long)v[k]);
            }
            w[k] = (int32_t)v[k];
        }
        *v32 = w;
        return td_session_set_input(ctx, p->session, name, TD_DTYPE_INT32, 2, shape, w, cells * sizeof *w);
    }
    return td_session_set_input(ctx, p->session, name, TD_DTYPE_INT64, 2, shape, v, cells * sizeof *v);
}

/* Output `name` as float32 (converted from fp16/bf16 when needed) with the
 * expected rank; *data is malloc'd. */
static td_status get_output(td_ctx *ctx, const td_pipeline *p, const char *name, int rank, int64_t *dims,
                            float **data) {
    *data = NULL;
    int idx = td_session_output_index(p->session, name);
    if (idx < 0)
        return td_fail(ctx, TD_ERR_NOT_FOUND, "the model has no output \"%s\"", name);
    td_session_output o;
    TD_TRY(td_session_get_output(ctx, p->session, idx, &o));
    if (o.rank != rank)
        return td_fail(ctx, TD_ERR_SHAPE, "output \"%s\" has rank %d; task %s expects rank %d", name, o.rank,
                       td_export_task_name(p->task), rank);
    int64_t numel = 1;
    for (int d = 0; d < rank; d++) {
        dims[d] = o.shape[d];
        if (!td_mul_i64(numel, o.shape[d], &numel))
            return td_fail(ctx, TD_ERR_OVERFLOW, "output \"%s\" is too large", name);
    }
    size_t es = o.dtype == TD_DTYPE_FLOAT32 ? 4 : 2;
    if (o.dtype != TD_DTYPE_FLOAT32 && o.dtype != TD_DTYPE_FLOAT16 && o.dtype != TD_DTYPE_BFLOAT16)
        return td_fail(ctx, TD_ERR_DTYPE, "output \"%s\" has ONNX dtype %d; expected a float type", name,
                       (int)o.dtype);
    if ((uint64_t)numel * es != o.nbytes)
        return td_fail(ctx, TD_ERR_INTERNAL, "output \"%s\": %zu bytes for %lld elements", name, o.nbytes,
                       (long long)numel);
    float *f = malloc((size_t)(numel ? numel : 1) * sizeof *f);
    if (!f)
        return td_fail_oom(ctx, (size_t)numel * sizeof *f, "an output");
    if (o.dtype == TD_DTYPE_FLOAT32)
        memcpy(f, o.data, (size_t)numel * sizeof *f);
    else if (o.dtype == TD_DTYPE_FLOAT16)
        td_f16_to_f32_array(o.data, f, (size_t)numel);
    else
        td_bf16_to_f32_array(o.data, f, (size_t)numel);
    *data = f;
    return TD_OK;
}

static td_status expect_dims(td_ctx *ctx, const char *name, const int64_t *dims, const int64_t *want, int rank) {
    for (int d = 0; d < rank; d++)
        if (want[d] >= 0 && dims[d] != want[d])
            return td_fail(ctx, TD_ERR_SHAPE, "output \"%s\" axis %d is %lld; expected %lld", name, d,
                           (long long)dims[d], (long long)want[d]);
    return TD_OK;
}

static float *copy_floats(const float *src, size_t n) {
    float *d = malloc((n ? n : 1) * sizeof *d);
    if (d && n)
        memcpy(d, src, n * sizeof *d);
    return d;
}

static td_status embeddings(td_ctx *ctx, const td_pipeline *p, const batch_in *b, td_pipe_result *res) {
    int64_t dims[2];
    float *out = NULL;
    TD_TRY(get_output(ctx, p, "sentence_embedding", 2, dims, &out));
    td_status st = expect_dims(ctx, "sentence_embedding", dims, (int64_t[]){(int64_t)b->n, -1}, 2);
    for (size_t i = 0; st == TD_OK && i < b->n; i++) {
        res[i].dim = (size_t)dims[1];
        if (!(res[i].vector = copy_floats(out + i * res[i].dim, res[i].dim)))
            st = td_fail_oom(ctx, res[i].dim * sizeof(float), "an embedding");
    }
    free(out);
    return st;
}

/* last_hidden_state (batch, seq, hidden): mean over the row's real tokens (+ the states themselves). */
static td_status features(td_ctx *ctx, const td_pipeline *p, const batch_in *b, td_pipe_result *res) {
    int64_t dims[3];
    float *out = NULL;
    TD_TRY(get_output(ctx, p, "last_hidden_state", 3, dims, &out));
    td_status st = expect_dims(ctx, "last_hidden_state", dims, (int64_t[]){(int64_t)b->n, (int64_t)b->seq, -1}, 3);
    size_t h = (size_t)dims[2];
    for (size_t i = 0; st == TD_OK && i < b->n; i++) {
        size_t nt = b->enc[i].len;
        const float *row = out + i * b->seq * h; /* (seq, hidden) */
        res[i].dim = h;
        if (!(res[i].vector = calloc(h ? h : 1, sizeof(float)))) {
            st = td_fail_oom(ctx, h * sizeof(float), "a pooled vector");
            break;
        }
        for (size_t j = 0; j < h; j++) {
            double sum = 0;
            for (size_t t = 0; t < nt; t++)
                sum += row[t * h + j];
            res[i].vector[j] = (float)(sum / (double)nt);
        }
        if (p->keep_hidden && !(res[i].hidden = copy_floats(row, nt * h)))
            st = td_fail_oom(ctx, nt * h * sizeof(float), "hidden states");
    }
    free(out);
    return st;
}

static td_status classification(td_ctx *ctx, td_pipeline *p, const batch_in *b, td_pipe_result *res) {
    int64_t dims[2];
    float *out = NULL;
    TD_TRY(get_output(ctx, p, "logits", 2, dims, &out));
    td_status st = expect_dims(ctx, "logits", dims, (int64_t[]){(int64_t)b->n, -1}, 2);
    if (st == TD_OK)
        st = td_pipeline_ensure_labels(ctx, p, (size_t)dims[1]);
    size_t nl = (size_t)dims[1];
    for (size_t i = 0; st == TD_OK && i < b->n; i++) {
        size_t k = p->top_k < nl ? p->top_k : nl;
        td_pp_label *top = malloc(k * sizeof *top);
        double *scores = malloc(nl * sizeof *scores);
        res[i].n_labels = nl;
        res[i].logits = copy_floats(out + i * nl, nl);
        res[i].labels = malloc(k * sizeof *res[i].labels);
        if (!top || !scores || !res[i].logits || !res[i].labels) {
            free(top);
            free(scores);
            st = td_fail_oom(ctx, nl * sizeof(double), "class scores");
            break;
        }
        res[i].n_top = td_pp_classify(res[i].logits, nl, p->multi_label, k, scores, top);
        for (size_t j = 0; j < res[i].n_top; j++)
            res[i].labels[j] = (td_pipe_label){top[j].id, p->labels[top[j].id], top[j].score};
        free(top);
        free(scores);
    }
    free(out);
    return st;
}

/* The word of an entity as the pipeline builds it: the member tokens' strings
 * (an unknown token replaced by the text it stands for) through the decoder. */
static td_status entity_word(td_ctx *ctx, const td_pipeline *p, const td_encoding *e, const char *text,
                             const uint8_t *skip, size_t first, size_t last, char **out) {
    size_t n = last - first + 1, k = 0;
    const char **toks = calloc(n, sizeof *toks);
    char **owned = calloc(n, sizeof *owned);
    td_status st = TD_OK;
    if (!toks || !owned) {
        st = td_fail_oom(ctx, n * sizeof *toks, "entity tokens");
        goto out;
    }
    for (size_t t = first; t <= last; t++) {
        if (skip[t])
            continue;
        if (p->unk_id >= 0 && e->ids[t] == p->unk_id) {
            size_t s = (size_t)e->offsets[2 * t], end = (size_t)e->offsets[2 * t + 1];
            if (!(owned[k] = strndup(text + s, end > s ? end - s : 0))) {
                st = td_fail_oom(ctx, end - s, "entity word");
                goto out;
            }
            toks[k] = owned[k];
            k++;
        } else {
            toks[k++] = e->tokens[t];
        }
    }
    st = td_tokenizer_decode_tokens(ctx, p->tok, toks, k, out);
out:
    for (size_t i = 0; owned && i < n; i++)
        free(owned[i]);
    free(owned);
    free(toks);
    return st;
}

static td_status token_classification(td_ctx *ctx, td_pipeline *p, const batch_in *b, const char *const *texts,
                                      td_pipe_result *res) {
    int64_t dims[3];
    float *out = NULL;
    uint8_t *skip = NULL;
    td_pp_entity *ents = NULL;
    TD_TRY(get_output(ctx, p, "logits", 3, dims, &out));
    td_status st = expect_dims(ctx, "logits", dims, (int64_t[]){(int64_t)b->n, (int64_t)b->seq, -1}, 3);
    if (st == TD_OK)
        st = td_pipeline_ensure_labels(ctx, p, (size_t)dims[2]);
    size_t nl = (size_t)dims[2];
    if (st == TD_OK && !(skip = malloc(b->seq ? b->seq : 1)))
        st = td_fail_oom(ctx, b->seq, "token flags");
    for (size_t i = 0; st == TD_OK && i < b->n; i++) {
        const td_encoding *e = &b->enc[i];
        const float *row = out + i * b->seq * nl; /* (seq, labels) */
        res[i].n_labels = nl;
        if (!(res[i].logits = copy_floats(row, e->len * nl))) {
            st = td_fail_oom(ctx, e->len * nl * sizeof(float), "token logits");
            break;
        }
        for (size_t t = 0; t < e->len; t++)
            skip[t] = e->special_tokens_mask[t] != 0;
        size_t ne = 0;
        if ((st = td_pp_aggregate_simple(ctx, row, e->len, nl, (const char *const *)p->labels, skip, &ents, &ne)) !=
            TD_OK)
            break;
        if (ne && !(res[i].entities = calloc(ne, sizeof *res[i].entities))) {
            st = td_fail_oom(ctx, ne * sizeof *res[i].entities, "entities");
            break;
        }
        size_t text_len = strlen(texts[i]);
        for (size_t k = 0; st == TD_OK && k < ne; k++) {
            td_pipe_entity *pe = &res[i].entities[k];
            res[i].n_entities = k + 1;
            pe->group = ents[k].group;
            pe->score = ents[k].score;
            pe->first_token = ents[k].first;
            pe->last_token = ents[k].last;
            pe->start = td_pp_char_offset(texts[i], text_len, (size_t)e->offsets[2 * ents[k].first]);
            pe->end = td_pp_char_offset(texts[i], text_len, (size_t)e->offsets[2 * ents[k].last + 1]);
            st = entity_word(ctx, p, e, texts[i], skip, ents[k].first, ents[k].last, &pe->word);
        }
        free(ents);
        ents = NULL;
    }
    free(skip);
    free(out);
    return st;
}

static td_status question_answering(td_ctx *ctx, td_pipeline *p, const batch_in *b, const char *const *contexts,
                                    size_t first, td_pipe_result *res) {
    int64_t ds[2], de[2];
    float *so = NULL, *eo = NULL;
    uint8_t *ctxmask = NULL, *cls = NULL;
    td_status st = get_output(ctx, p, "start_logits", 2, ds, &so);
    if (st == TD_OK)
        st = get_output(ctx, p, "end_logits", 2, de, &eo);
    const int64_t want[2] = {(int64_t)b->n, (int64_t)b->seq};
    if (st == TD_OK && (st = expect_dims(ctx, "start_logits", ds, want, 2)) == TD_OK)
        st = expect_dims(ctx, "end_logits", de, want, 2);
    if (st == TD_OK && (!(ctxmask = malloc(b->seq ? b->seq : 1)) || !(cls = malloc(b->seq ? b->seq : 1))))
        st = td_fail_oom(ctx, 2 * b->seq, "token flags");
    for (size_t i = 0; st == TD_OK && i < b->n; i++) {
        const td_encoding *e = &b->enc[i];
        for (size_t t = 0; t < e->len; t++) {
            ctxmask[t] = e->sequence_ids[t] == 1;
            cls[t] = e->special_tokens_mask[t] && p->cls_id >= 0 && e->ids[t] == p->cls_id;
        }
        res[i].start_logits = copy_floats(so + i * b->seq, e->len);
        res[i].end_logits = copy_floats(eo + i * b->seq, e->len);
        if (!res[i].start_logits || !res[i].end_logits) {
            st = td_fail_oom(ctx, e->len * sizeof(float), "answer logits");
            break;
        }
        td_pp_span sp;
        if ((st = td_pp_qa_best_span(ctx, res[i].start_logits, res[i].end_logits, e->len, ctxmask, cls,
                                     p->max_answer_len, &sp)) != TD_OK) {
            td_wrap(ctx, "input %zu", first + i);
            break;
        }
        const char *c = contexts[i];
        size_t clen = strlen(c);
        size_t bs = (size_t)e->offsets[2 * sp.start], be = (size_t)e->offsets[2 * sp.end + 1];
        /* widen to whole words, as the pipeline's align_to_words (its default) does: the answer runs from
         * the start of the first token's word to the end of the last token's word */
        int32_t ws = e->word_ids[sp.start], we = e->word_ids[sp.end];
        for (size_t t = 0; t < e->len; t++) {
            if (e->sequence_ids[t] != 1)
                continue;
            if (ws >= 0 && e->word_ids[t] == ws && (size_t)e->offsets[2 * t] < bs)
                bs = (size_t)e->offsets[2 * t];
            if (we >= 0 && e->word_ids[t] == we && (size_t)e->offsets[2 * t + 1] > be)
                be = (size_t)e->offsets[2 * t + 1];
        }
        if (bs > be || be > clen) {
            st = td_fail(ctx, TD_ERR_INTERNAL, "answer offsets [%zu, %zu) outside the context of %zu bytes", bs, be,
                         clen);
            break;
        }
        if (!(res[i].answer = strndup(c + bs, be - bs))) {
            st = td_fail_oom(ctx, be - bs, "an answer");
            break;
        }
        res[i].score = sp.score;
        res[i].answer_first_token = sp.start;
        res[i].answer_last_token = sp.end;
        res[i].answer_start = td_pp_char_offset(c, clen, bs);
        res[i].answer_end = td_pp_char_offset(c, clen, be);
    }
    free(ctxmask);
    free(cls);
    free(so);
    free(eo);
    return st;
}

td_status td_pipeline_run(td_ctx *ctx, td_pipeline *p, const char *const *texts, const char *const *pairs, size_t n,
                          size_t first, td_pipe_result *res) {
    memset(res, 0, n * sizeof *res);
    if (n == 0)
        return TD_OK;
    if (pairs && !td_pipeline_accepts_pairs(p))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "task %s takes single texts, but a text pair was given; drop the pair (--text-pair, or the "
                       "tab in the input line)",
                       td_export_task_name(p->task));
    for (size_t i = 0; td_pipeline_needs_pairs(p) && i < n; i++)
        if (!pairs || !pairs[i])
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                           "question-answering needs a question and a context for every input: --text QUESTION "
                           "--text-pair CONTEXT, or lines \"question<TAB>context\" (input %zu has no context)",
                           first + i);
    if (!p->has_mask && n > 1) {
        /* without an attention_mask input the model would attend to padding: one text per run */
        for (size_t i = 0; i < n; i++) {
            td_status st = td_pipeline_run(ctx, p, texts + i, pairs ? pairs + i : NULL, 1, first + i, res + i);
            if (st != TD_OK) {
                td_pipe_results_free(res, i);
                return st;
            }
        }
        return TD_OK;
    }
    batch_in b = {.n = n};
    td_status st = encode(ctx, p, texts, pairs, first, &b, res);
    if (st == TD_OK)
        st = bind(ctx, p, &b, "input_ids", b.ids, &b.ids_i32);
    if (st == TD_OK && p->has_mask)
        st = bind(ctx, p, &b, "attention_mask", b.mask, &b.mask_i32);
    if (st == TD_OK && p->has_token_types)
        st = bind(ctx, p, &b, "token_type_ids", b.types, &b.types_i32);
    if (st == TD_OK)
        st = td_session_run(ctx, p->session);
    for (size_t i = 0; st == TD_OK && i < n; i++) {
        res[i].task = p->task;
        res[i].n_tokens = b.enc[i].len;
        if (!(res[i].input_ids = malloc(b.enc[i].len * sizeof *res[i].input_ids)))
            st = td_fail_oom(ctx, b.enc[i].len * sizeof(int64_t), "input ids");
        else
            memcpy(res[i].input_ids, b.enc[i].ids, b.enc[i].len * sizeof *res[i].input_ids);
    }
    if (st == TD_OK) {
        switch (p->task) {
        case TD_TASK_EMBEDDING: st = embeddings(ctx, p, &b, res); break;
        case TD_TASK_FEATURES: st = features(ctx, p, &b, res); break;
        case TD_TASK_CLASSIFICATION: st = classification(ctx, p, &b, res); break;
        case TD_TASK_TOKEN_CLASSIFICATION: st = token_classification(ctx, p, &b, texts, res); break;
        case TD_TASK_QUESTION_ANSWERING: st = question_answering(ctx, p, &b, pairs, first, res); break;
        case TD_TASK_AUTO: st = td_fail(ctx, TD_ERR_INTERNAL, "pipeline: task not resolved"); break;
        case TD_TASK_TEXT_GENERATION:
            st = td_fail(ctx, TD_ERR_UNSUPPORTED, "pipeline: text-generation runs through the generation loop");
            break;
        }
    }
    batch_free(&b);
    if (st != TD_OK)
        td_pipe_results_free(res, n);
    return st;
}
