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

/* The texts of one call as model rows: one encoding per text, plus the
 * overflowing windows of the windowed tasks; text i owns rows
 * rows[first_row[i]] .. rows[first_row[i + 1] - 1], its windows in order. */
typedef struct rows_in {
    size_t n;                   /* texts */
    td_encoding *enc;           /* (n) main encodings; windows hang off enc[i].overflowing */
    size_t n_rows;
    const td_encoding **rows;   /* (n_rows) */
    size_t *first_row;          /* (n + 1) */
} rows_in;

static void rows_free(rows_in *b) {
    for (size_t i = 0; b->enc && i < b->n; i++)
        td_encoding_free(&b->enc[i]);
    free(b->enc);
    free((void *)b->rows);
    free(b->first_row);
}

static bool windowed_task(const td_pipeline *p) {
    return p->task == TD_TASK_QUESTION_ANSWERING || p->task == TD_TASK_TOKEN_CLASSIFICATION;
}

#define DEFAULT_STRIDE 128 /* HF pipelines' doc_stride */

/* Text i of a windowed task: encoded whole when it fits, else cut into windows
 * of max_length with `stride` tokens of overlap (the QA question, and every
 * special token, repeats in each window). The default stride is HF's
 * min(128, max_length / 2), lowered to half a window when the question leaves
 * less room than that; an explicit stride that does not fit is an error. */
static td_status encode_windows(td_ctx *ctx, const td_pipeline *p, const char *text, const char *pair,
                                td_tok_options *o, td_encoding *out) {
    o->truncation = false;
    TD_TRY(td_tokenizer_encode(ctx, p->tok, text, strlen(text), pair, pair ? strlen(pair) : 0, o, out));
    if (p->max_length <= 0 || out->len <= (size_t)p->max_length)
        return TD_OK;
    int32_t cut_seq = p->task == TD_TASK_QUESTION_ANSWERING ? 1 : 0;
    size_t cut = 0;
    for (size_t t = 0; t < out->len; t++)
        cut += out->sequence_ids[t] == cut_seq;
    size_t fixed = out->len - cut, max = (size_t)p->max_length;
    td_encoding_free(out);
    if (fixed >= max)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "the %s and special tokens take %zu of the %zu tokens of a window, leaving no room "
                       "for the %s; shorten it or raise --max-length",
                       cut_seq ? "question" : "text", fixed, max, cut_seq ? "context" : "text");
    size_t room = max - fixed, stride = p->stride;
    if (!stride) {
        stride = max / 2 < DEFAULT_STRIDE ? max / 2 : DEFAULT_STRIDE;
        if (stride >= room)
            stride = room / 2;
    } else if (stride >= room) {
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "--stride %zu must be smaller than the %zu tokens of the %s each window holds "
                       "(--max-length %zu minus the question and special tokens)",
                       stride, room, cut_seq ? "context" : "text", max);
    }
    o->truncation = true;
    o->max_length = max;
    o->stride = stride;
    o->return_overflowing = true;
    /* the question stays whole; the context is cut, as the QA pipeline does */
    o->trunc_strategy = cut_seq ? TD_TRUNC_ONLY_SECOND : TD_TRUNC_LONGEST_FIRST;
    td_status st = td_tokenizer_encode(ctx, p->tok, text, strlen(text), pair, pair ? strlen(pair) : 0, o, out);
    o->return_overflowing = false;
    return st;
}

static td_status encode(td_ctx *ctx, const td_pipeline *p, const char *const *texts, const char *const *pairs,
                        size_t first, rows_in *b, td_pipe_result *res) {
    td_tok_options o;
    td_tokenizer_default_options(p->tok, &o);
    o.add_special_tokens = true;
    o.padding = TD_PAD_NONE;
    o.pad_to_multiple_of = 0;
    if (!(b->enc = calloc(b->n, sizeof *b->enc)) || !(b->first_row = calloc(b->n + 1, sizeof *b->first_row)))
        return td_fail_oom(ctx, b->n * sizeof *b->enc, "encodings");
    for (size_t i = 0; i < b->n; i++) {
        const char *pair = pairs ? pairs[i] : NULL;
        td_status st;
        if (windowed_task(p)) {
            st = encode_windows(ctx, p, texts[i], pair, &o, &b->enc[i]);
        } else {
            o.truncation = p->max_length > 0;
            o.max_length = (size_t)p->max_length;
            o.stride = 0;
            o.trunc_strategy = TD_TRUNC_LONGEST_FIRST;
            st = td_tokenizer_encode(ctx, p->tok, texts[i], strlen(texts[i]), pair, pair ? strlen(pair) : 0, &o,
                                     &b->enc[i]);
        }
        if (st != TD_OK)
            return td_wrap(ctx, "input %zu", first + i);
        if (b->enc[i].len == 0)
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "input %zu gives no tokens", first + i);
        res[i].truncated = b->enc[i].truncated && !windowed_task(p);
        res[i].n_windows = 1 + b->enc[i].n_overflowing;
        b->first_row[i] = b->n_rows;
        b->n_rows += res[i].n_windows;
    }
    b->first_row[b->n] = b->n_rows;
    if (!(b->rows = calloc(b->n_rows, sizeof *b->rows)))
        return td_fail_oom(ctx, b->n_rows * sizeof *b->rows, "rows");
    for (size_t i = 0; i < b->n; i++) {
        b->rows[b->first_row[i]] = &b->enc[i];
        for (size_t k = 0; k < b->enc[i].n_overflowing; k++)
            b->rows[b->first_row[i] + 1 + k] = &b->enc[i].overflowing[k];
    }
    return TD_OK;
}

/* One model run's input tensors: rows r0 .. r0 + n - 1 right-padded to the longest. */
typedef struct run_in {
    size_t n, seq;
    int64_t *ids, *mask, *types; /* (n, seq) */
    void *ids_i32, *mask_i32, *types_i32;
} run_in;

static void run_in_free(run_in *b) {
    free(b->ids);
    free(b->mask);
    free(b->types);
    free(b->ids_i32);
    free(b->mask_i32);
    free(b->types_i32);
    memset(b, 0, sizeof *b);
}

static td_status pad_rows(td_ctx *ctx, const td_pipeline *p, const td_encoding *const *rows, size_t n, run_in *b) {
    td_tok_options o;
    td_tokenizer_default_options(p->tok, &o);
    b->n = n;
    b->seq = 0;
    for (size_t i = 0; i < n; i++)
        if (rows[i]->len > b->seq)
            b->seq = rows[i]->len;
    size_t cells;
    if (!td_mul_size(b->n, b->seq, &cells) || cells > SIZE_MAX / 8)
        return td_fail(ctx, TD_ERR_OVERFLOW, "batch of %zu rows x %zu tokens is too large", b->n, b->seq);
    b->ids = malloc(cells * sizeof *b->ids);
    b->mask = calloc(cells, sizeof *b->mask);
    b->types = malloc(cells * sizeof *b->types);
    if (!b->ids || !b->mask || !b->types)
        return td_fail_oom(ctx, 3 * cells * sizeof(int64_t), "the input batch");
    for (size_t i = 0; i < b->n; i++) {
        const td_encoding *e = rows[i];
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

static td_status bind(td_ctx *ctx, td_pipeline *p, run_in *b, const char *name, int64_t *v, void **v32) {
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

/* What the model returned for one row, as float32 copies:
 *   embedding       a = sentence_embedding (dim)
 *   features        a = last_hidden_state (len, dim)
 *   classification  a = logits (dim = labels)
 *   token cls       a = logits (len, dim = labels)
 *   QA              a = start_logits (len), b = end_logits (len) */
typedef struct row_out {
    float *a, *b;
    size_t dim;
} row_out;

static void row_outs_free(row_out *o, size_t n) {
    for (size_t i = 0; o && i < n; i++) {
        free(o[i].a);
        free(o[i].b);
    }
    free(o);
}

/* Copy rows [0, b->n) of the last run's outputs into outs (row r of the run is outs[r]). */
static td_status extract_outputs(td_ctx *ctx, td_pipeline *p, const td_encoding *const *rows, const run_in *b,
                                 row_out *outs) {
    static const char *const first_name[] = {
        [TD_TASK_EMBEDDING] = "sentence_embedding", [TD_TASK_FEATURES] = "last_hidden_state",
        [TD_TASK_CLASSIFICATION] = "logits", [TD_TASK_TOKEN_CLASSIFICATION] = "logits",
        [TD_TASK_QUESTION_ANSWERING] = "start_logits"};
    bool per_token = p->task != TD_TASK_EMBEDDING && p->task != TD_TASK_CLASSIFICATION;
    bool has_dim = p->task != TD_TASK_QUESTION_ANSWERING;
    int rank = 2 + (per_token && has_dim);
    int64_t dims[3] = {0, 0, 0}, want[3] = {(int64_t)b->n, per_token ? (int64_t)b->seq : -1, -1};
    float *a = NULL, *e = NULL;
    const char *name = first_name[p->task];
    td_status st = get_output(ctx, p, name, rank, dims, &a);
    if (st == TD_OK)
        st = expect_dims(ctx, name, dims, want, rank);
    if (st == TD_OK && p->task == TD_TASK_QUESTION_ANSWERING) {
        int64_t de[2] = {0, 0};
        if ((st = get_output(ctx, p, "end_logits", 2, de, &e)) == TD_OK)
            st = expect_dims(ctx, "end_logits", de, want, 2);
    }
    size_t dim = has_dim ? (size_t)dims[rank - 1] : 1;
    if (st == TD_OK && (p->task == TD_TASK_CLASSIFICATION || p->task == TD_TASK_TOKEN_CLASSIFICATION))
        st = td_pipeline_ensure_labels(ctx, p, dim);
    /* a row's block in the output: (dim) per row, or (seq, dim) per row of which len are real tokens */
    size_t block = per_token ? b->seq * dim : dim;
    for (size_t r = 0; st == TD_OK && r < b->n; r++) {
        size_t keep = per_token ? rows[r]->len * dim : dim;
        outs[r].dim = dim;
        if (!(outs[r].a = copy_floats(a + r * block, keep)) || (e && !(outs[r].b = copy_floats(e + r * block, keep))))
            st = td_fail_oom(ctx, keep * sizeof(float), "model outputs");
    }
    free(a);
    free(e);
    return st;
}

/* Run rows through the model, at most `chunk` rows per run; outs: (n_rows). */
static td_status run_rows(td_ctx *ctx, td_pipeline *p, const rows_in *in, size_t chunk, row_out *outs) {
    td_status st = TD_OK;
    for (size_t r0 = 0; st == TD_OK && r0 < in->n_rows; r0 += chunk) {
        size_t n = in->n_rows - r0 < chunk ? in->n_rows - r0 : chunk;
        run_in b = {0};
        st = pad_rows(ctx, p, in->rows + r0, n, &b);
        if (st == TD_OK)
            st = bind(ctx, p, &b, "input_ids", b.ids, &b.ids_i32);
        if (st == TD_OK && p->has_mask)
            st = bind(ctx, p, &b, "attention_mask", b.mask, &b.mask_i32);
        if (st == TD_OK && p->has_token_types)
            st = bind(ctx, p, &b, "token_type_ids", b.types, &b.types_i32);
        if (st == TD_OK)
            st = td_session_run(ctx, p->session);
        if (st == TD_OK)
            st = extract_outputs(ctx, p, in->rows + r0, &b, outs + r0);
        run_in_free(&b);
    }
    return st;
}

/* Mean of the row's token states (+ the states themselves when asked). */
static td_status features(td_ctx *ctx, const td_pipeline *p, const td_encoding *e, row_out *o, td_pipe_result *r) {
    size_t h = o->dim, nt = e->len;
    r->dim = h;
    if (!(r->vector = calloc(h ? h : 1, sizeof(float))))
        return td_fail_oom(ctx, h * sizeof(float), "a pooled vector");
    for (size_t j = 0; j < h; j++) {
        double sum = 0;
        for (size_t t = 0; t < nt; t++)
            sum += o->a[t * h + j];
        r->vector[j] = (float)(sum / (double)nt);
    }
    if (p->keep_hidden) {
        r->hidden = o->a; /* (n_tokens, dim) */
        o->a = NULL;
    }
    return TD_OK;
}

static td_status classification(td_ctx *ctx, const td_pipeline *p, row_out *o, td_pipe_result *r) {
    size_t nl = o->dim, k = p->top_k < nl ? p->top_k : nl;
    r->n_labels = nl;
    r->logits = o->a;
    o->a = NULL;
    td_pp_label *top = malloc((k ? k : 1) * sizeof *top);
    double *scores = malloc(nl * sizeof *scores);
    r->labels = malloc((k ? k : 1) * sizeof *r->labels);
    td_status st = TD_OK;
    if (!top || !scores || !r->labels) {
        st = td_fail_oom(ctx, nl * sizeof(double), "class scores");
    } else {
        r->n_top = td_pp_classify(r->logits, nl, p->multi_label, k, scores, top);
        for (size_t j = 0; j < r->n_top; j++)
            r->labels[j] = (td_pipe_label){top[j].id, p->labels[top[j].id], top[j].score};
    }
    free(top);
    free(scores);
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

/* HF aggregate_overlapping_entities: by start (stable), an entity starting
 * inside the kept one replaces it when longer, or as long and higher scoring. */
static size_t merge_overlapping(td_pipe_entity *ents, size_t n) {
    for (size_t i = 1; i < n; i++) /* stable insertion sort by start */
        for (size_t j = i; j > 0 && ents[j].start < ents[j - 1].start; j--) {
            td_pipe_entity t = ents[j];
            ents[j] = ents[j - 1];
            ents[j - 1] = t;
        }
    size_t kept = 0;
    for (size_t i = 1; i < n; i++) {
        td_pipe_entity *prev = &ents[kept], *cur = &ents[i];
        if (prev->start <= cur->start && cur->start < prev->end) {
            int64_t lc = cur->end - cur->start, lp = prev->end - prev->start;
            if (lc > lp || (lc == lp && cur->score > prev->score)) {
                free(prev->word);
                *prev = *cur;
            } else {
                free(cur->word);
            }
            cur->word = NULL;
        } else if (++kept != i) {
            ents[kept] = *cur;
            cur->word = NULL;
        }
    }
    return n ? kept + 1 : 0;
}

/* Text i's entities: "simple" aggregation in each window, then the windows merged. */
static td_status token_classification(td_ctx *ctx, td_pipeline *p, const rows_in *in, size_t i, const char *text,
                                      row_out *outs, td_pipe_result *r) {
    size_t r0 = in->first_row[i], r1 = in->first_row[i + 1], nl = outs[r0].dim, text_len = strlen(text);
    r->n_labels = nl;
    if (!(r->logits = malloc((r->n_tokens ? r->n_tokens : 1) * nl * sizeof *r->logits)))
        return td_fail_oom(ctx, r->n_tokens * nl * sizeof(float), "token logits");
    td_status st = TD_OK;
    size_t base = 0, cap = 0;
    for (size_t w = r0; st == TD_OK && w < r1; w++) {
        const td_encoding *e = in->rows[w];
        memcpy(r->logits + base * nl, outs[w].a, e->len * nl * sizeof(float));
        uint8_t *skip = malloc(e->len ? e->len : 1);
        td_pp_entity *ents = NULL;
        size_t ne = 0;
        if (!skip) {
            st = td_fail_oom(ctx, e->len, "token flags");
            break;
        }
        for (size_t t = 0; t < e->len; t++)
            skip[t] = e->special_tokens_mask[t] != 0;
        st = td_pp_aggregate_simple(ctx, outs[w].a, e->len, nl, (const char *const *)p->labels, skip, &ents, &ne);
        if (st == TD_OK && r->n_entities + ne > cap) {
            size_t nc = (r->n_entities + ne) * 2;
            td_pipe_entity *grown = realloc(r->entities, nc * sizeof *grown);
            if (!grown)
                st = td_fail_oom(ctx, nc * sizeof *grown, "entities");
            else
                r->entities = grown, cap = nc;
        }
        for (size_t k = 0; st == TD_OK && k < ne; k++) {
            td_pipe_entity *pe = &r->entities[r->n_entities++];
            *pe = (td_pipe_entity){.group = ents[k].group, .score = ents[k].score,
                                   .first_token = base + ents[k].first, .last_token = base + ents[k].last};
            pe->start = td_pp_char_offset(text, text_len, (size_t)e->offsets[2 * ents[k].first]);
            pe->end = td_pp_char_offset(text, text_len, (size_t)e->offsets[2 * ents[k].last + 1]);
            st = entity_word(ctx, p, e, text, skip, ents[k].first, ents[k].last, &pe->word);
        }
        free(ents);
        free(skip);
        base += e->len;
    }
    if (st == TD_OK && r1 - r0 > 1)
        r->n_entities = merge_overlapping(r->entities, r->n_entities);
    return st;
}

/* Text i's answer: the best span of each window; the best-scoring one wins
 * (the earlier window on a tie), as the QA pipeline ranks its answers. */
static td_status question_answering(td_ctx *ctx, td_pipeline *p, const rows_in *in, size_t i, const char *context,
                                    row_out *outs, td_pipe_result *r) {
    size_t r0 = in->first_row[i], r1 = in->first_row[i + 1], n = r->n_tokens ? r->n_tokens : 1;
    r->start_logits = malloc(n * sizeof(float));
    r->end_logits = malloc(n * sizeof(float));
    uint8_t *ctxmask = malloc(n), *cls = malloc(n);
    td_status st = TD_OK;
    if (!r->start_logits || !r->end_logits || !ctxmask || !cls)
        st = td_fail_oom(ctx, n * 10, "answer logits");
    td_pp_span best = {0};
    const td_encoding *best_e = NULL;
    size_t base = 0, best_base = 0;
    for (size_t w = r0; st == TD_OK && w < r1; w++) {
        const td_encoding *e = in->rows[w];
        memcpy(r->start_logits + base, outs[w].a, e->len * sizeof(float));
        memcpy(r->end_logits + base, outs[w].b, e->len * sizeof(float));
        for (size_t t = 0; t < e->len; t++) {
            ctxmask[t] = e->sequence_ids[t] == 1;
            cls[t] = e->special_tokens_mask[t] && p->cls_id >= 0 && e->ids[t] == p->cls_id;
        }
        td_pp_span sp;
        if ((st = td_pp_qa_best_span(ctx, outs[w].a, outs[w].b, e->len, ctxmask, cls, p->max_answer_len, &sp)) !=
            TD_OK)
            break;
        if (!best_e || sp.score > best.score) {
            best = sp;
            best_e = e;
            best_base = base;
        }
        base += e->len;
    }
    free(ctxmask);
    free(cls);
    if (st != TD_OK)
        return st;
    const td_encoding *e = best_e;
    size_t clen = strlen(context);
    size_t bs = (size_t)e->offsets[2 * best.start], be = (size_t)e->offsets[2 * best.end + 1];
    /* widen to whole words, as the pipeline's align_to_words (its default) does: the answer runs from
     * the start of the first token's word to the end of the last token's word */
    int32_t ws = e->word_ids[best.start], we = e->word_ids[best.end];
    for (size_t t = 0; t < e->len; t++) {
        if (e->sequence_ids[t] != 1)
            continue;
        if (ws >= 0 && e->word_ids[t] == ws && (size_t)e->offsets[2 * t] < bs)
            bs = (size_t)e->offsets[2 * t];
        if (we >= 0 && e->word_ids[t] == we && (size_t)e->offsets[2 * t + 1] > be)
            be = (size_t)e->offsets[2 * t + 1];
    }
    if (bs > be || be > clen)
        return td_fail(ctx, TD_ERR_INTERNAL, "answer offsets [%zu, %zu) outside the context of %zu bytes", bs, be,
                       clen);
    if (!(r->answer = strndup(context + bs, be - bs)))
        return td_fail_oom(ctx, be - bs, "an answer");
    r->score = best.score;
    r->answer_first_token = best_base + best.start;
    r->answer_last_token = best_base + best.end;
    r->answer_start = td_pp_char_offset(context, clen, bs);
    r->answer_end = td_pp_char_offset(context, clen, be);
    return TD_OK;
}

/* Text i's answer from its rows' outputs. */
static td_status postprocess(td_ctx *ctx, td_pipeline *p, const rows_in *in, size_t i, const char *text,
                             const char *pair, row_out *outs, td_pipe_result *r) {
    size_t r0 = in->first_row[i];
    r->task = p->task;
    for (size_t w = r0; w < in->first_row[i + 1]; w++)
        r->n_tokens += in->rows[w]->len;
    if (!(r->input_ids = malloc((r->n_tokens ? r->n_tokens : 1) * sizeof *r->input_ids)))
        return td_fail_oom(ctx, r->n_tokens * sizeof(int64_t), "input ids");
    size_t pos = 0;
    for (size_t w = r0; w < in->first_row[i + 1]; w++) {
        memcpy(r->input_ids + pos, in->rows[w]->ids, in->rows[w]->len * sizeof *r->input_ids);
        pos += in->rows[w]->len;
    }
    switch (p->task) {
    case TD_TASK_EMBEDDING:
        r->dim = outs[r0].dim;
        r->vector = outs[r0].a;
        outs[r0].a = NULL;
        return TD_OK;
    case TD_TASK_FEATURES: return features(ctx, p, in->rows[r0], &outs[r0], r);
    case TD_TASK_CLASSIFICATION: return classification(ctx, p, &outs[r0], r);
    case TD_TASK_TOKEN_CLASSIFICATION: return token_classification(ctx, p, in, i, text, outs, r);
    case TD_TASK_QUESTION_ANSWERING: return question_answering(ctx, p, in, i, pair, outs, r);
    case TD_TASK_TEXT_GENERATION:
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "pipeline: text-generation runs through the generation loop "
                       "(tdeploy generate, or tdeploy run on the decoder)");
    case TD_TASK_AUTO: break;
    }
    return td_fail(ctx, TD_ERR_INTERNAL, "pipeline: task not resolved");
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
    rows_in in = {.n = n};
    row_out *outs = NULL;
    td_status st = encode(ctx, p, texts, pairs, first, &in, res);
    if (st == TD_OK && !(outs = calloc(in.n_rows, sizeof *outs)))
        st = td_fail_oom(ctx, in.n_rows * sizeof *outs, "model outputs");
    /* as many rows per run as the caller's batch has texts (the windows of a long text add runs, not rows
     * to one run); without an attention_mask input the model would attend to padding: one row per run */
    if (st == TD_OK)
        st = run_rows(ctx, p, &in, p->has_mask ? n : 1, outs);
    for (size_t i = 0; st == TD_OK && i < n; i++) {
        st = postprocess(ctx, p, &in, i, texts[i], pairs ? pairs[i] : NULL, outs, &res[i]);
        if (st != TD_OK)
            td_wrap(ctx, "input %zu", first + i);
    }
    row_outs_free(outs, in.n_rows);
    rows_free(&in);
    if (st != TD_OK)
        td_pipe_results_free(res, n);
    return st;
}
