/* TRITONBACKEND_ModelInstanceExecute for the tdeploy backend: read each request
 * (token tensors or text), pack the good ones into one padded batch, run the
 * session once, cut each request's outputs back out. A request with bad input
 * gets its own error response and stays out of the batch; if the batch run
 * itself fails (e.g. an id outside the vocabulary), each request is run alone so
 * only the bad one fails. */
#define _GNU_SOURCE
#include "triton_backend/tb_backend.h"
#include "triton_backend/tb_bytes.h"
#include "triton_backend/tb_pack.h"
#include "core/ctx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool tb_has_input(TRITONBACKEND_Request *r, const char *name) {
    uint32_t n = 0;
    TRITONSERVER_Error *e0 = TRITONBACKEND_RequestInputCount(r, &n);
    if (e0) { /* treated as absent: the caller then reports the missing input */
        TRITONSERVER_ErrorDelete(e0);
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *nm = NULL;
        TRITONSERVER_Error *e = TRITONBACKEND_RequestInputName(r, i, &nm);
        if (e) {
            TRITONSERVER_ErrorDelete(e);
            continue;
        }
        if (strcmp(nm, name) == 0)
            return true;
    }
    return false;
}

TRITONSERVER_Error *tb_read_input(TRITONBACKEND_Request *r, const char *name, tb_tensor_in *t) {
    TRITONBACKEND_Input *in = NULL;
    uint32_t nbuf = 0;
    memset(t, 0, sizeof *t);
    TRITONSERVER_Error *e = TRITONBACKEND_RequestInput(r, name, &in);
    if (!e)
        e = TRITONBACKEND_InputProperties(in, NULL, &t->dtype, &t->shape, &t->rank, &t->size, &nbuf);
    if (e)
        return e;
    if (t->size > ((uint64_t)1 << 32))
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "input %s is %llu bytes; the limit is 4 GiB", name,
                        (unsigned long long)t->size);
    if (!(t->data = malloc(t->size ? t->size : 1)))
        return tb_error(TRITONSERVER_ERROR_INTERNAL, "out of memory reading input %s", name);
    uint64_t at = 0;
    for (uint32_t b = 0; b < nbuf; b++) {
        const void *buf;
        uint64_t len;
        TRITONSERVER_MemoryType mt = TRITONSERVER_MEMORY_CPU;
        int64_t mid = 0;
        if ((e = TRITONBACKEND_InputBuffer(in, b, &buf, &len, &mt, &mid)))
            return e;
        if (mt == TRITONSERVER_MEMORY_GPU)
            return tb_error(TRITONSERVER_ERROR_UNSUPPORTED, "input %s is in GPU memory; send it in host memory",
                            name);
        if (len > t->size - at)
            return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "input %s: its buffers hold more than its %llu bytes",
                            name, (unsigned long long)t->size);
        memcpy(t->data + at, buf, len);
        at += len;
    }
    if (at != t->size)
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "input %s: buffers hold %llu of its %llu bytes", name,
                        (unsigned long long)at, (unsigned long long)t->size);
    return NULL;
}

/* A (rows, seq) integer tensor of the request as int64. */
static TRITONSERVER_Error *int_matrix(const tb_tensor_in *t, const char *name, size_t rows, size_t seq, int64_t *out) {
    size_t n = rows * seq;
    if (t->dtype == TRITONSERVER_TYPE_INT64 && t->size == n * 8) {
        memcpy(out, t->data, n * 8);
        return NULL;
    }
    if (t->dtype == TRITONSERVER_TYPE_INT32 && t->size == n * 4) {
        for (size_t k = 0; k < n; k++) {
            int32_t v;
            memcpy(&v, t->data + 4 * k, 4);
            out[k] = v;
        }
        return NULL;
    }
    return tb_error(TRITONSERVER_ERROR_INVALID_ARG,
                    "input %s must be INT64 or INT32 with %zu x %zu elements (got %s, %llu bytes)", name, rows, seq,
                    TRITONSERVER_DataTypeString(t->dtype), (unsigned long long)t->size);
}

static TRITONSERVER_Error *read_tokens(tb_instance *inst, TRITONBACKEND_Request *r, tb_rows *rows) {
    tb_model *m = inst->m;
    tb_tensor_in ids = {0}, aux = {0};
    TRITONSERVER_Error *e = tb_read_input(r, "input_ids", &ids);
    if (e)
        goto out;
    if (ids.rank != 2 || ids.shape[0] < 1 || ids.shape[1] < 1) {
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "input_ids must be (batch, sequence) with both >= 1");
        goto out;
    }
    size_t b = (size_t)ids.shape[0], s = (size_t)ids.shape[1];
    if (m->cfg.max_length > 0 && s > (size_t)m->cfg.max_length) {
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG,
                     "input_ids has %zu tokens per row; model %s takes at most %lld (max_length): cut the rows", s,
                     m->name, (long long)m->cfg.max_length);
        goto out;
    }
    if (!tb_rows_alloc(rows, b, s, m->pad_id)) {
        e = tb_error(TRITONSERVER_ERROR_INTERNAL, "out of memory for %zu x %zu tokens", b, s);
        goto out;
    }
    if ((e = int_matrix(&ids, "input_ids", b, s, rows->ids)))
        goto out;
    static const char *const aux_names[2] = {"attention_mask", "token_type_ids"};
    for (int k = 0; k < 2; k++) {
        int64_t *dst = k ? rows->types : rows->mask;
        free(aux.data);
        memset(&aux, 0, sizeof aux);
        if (!tb_has_input(r, aux_names[k])) {
            for (size_t i = 0; k == 0 && i < b * s; i++)
                dst[i] = 1; /* no mask: every token is real */
            continue;
        }
        if ((e = tb_read_input(r, aux_names[k], &aux)))
            goto out;
        if (aux.rank != 2 || aux.shape[0] != ids.shape[0] || aux.shape[1] != ids.shape[1]) {
            e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "%s must have input_ids' shape [%zu, %zu]", aux_names[k], b,
                         s);
            goto out;
        }
        if ((e = int_matrix(&aux, aux_names[k], b, s, dst)))
            goto out;
    }
out:
    free(ids.data);
    free(aux.data);
    return e;
}

static TRITONSERVER_Error *read_strings(TRITONBACKEND_Request *r, const char *name, tb_tensor_in *t, tb_strings *s) {
    TRITONSERVER_Error *e = tb_read_input(r, name, t);
    if (e)
        return e;
    if (t->dtype != TRITONSERVER_TYPE_BYTES || t->rank != 2 || t->shape[0] < 1 || t->shape[1] != 1)
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "%s must be BYTES of shape [batch, 1] (one text per row)",
                        name);
    char err[256];
    if (!tb_strings_parse(t->data, t->size, (size_t)t->shape[0], s, err, sizeof err))
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "%s: %s", name, err);
    return NULL;
}

static TRITONSERVER_Error *read_texts(tb_instance *inst, TRITONBACKEND_Request *r, tb_rows *rows) {
    tb_model *m = inst->m;
    tb_tensor_in text = {0}, pair = {0};
    tb_strings ts = {0}, ps = {0};
    td_encoding *enc = NULL;
    size_t n = 0;
    TRITONSERVER_Error *e = read_strings(r, TB_TEXT_INPUT, &text, &ts);
    if (e)
        goto out;
    n = ts.n;
    bool pairs = tb_has_input(r, TB_PAIR_INPUT);
    if (pairs && (e = read_strings(r, TB_PAIR_INPUT, &pair, &ps)))
        goto out;
    if (pairs && ps.n != n) {
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "TEXT has %zu rows but TEXT_PAIR %zu", n, ps.n);
        goto out;
    }
    if (!(enc = calloc(n, sizeof *enc))) {
        e = tb_error(TRITONSERVER_ERROR_INTERNAL, "out of memory");
        goto out;
    }
    size_t seq = 0;
    for (size_t i = 0; i < n; i++) {
        if (td_tokenizer_encode(inst->ctx, m->tok, ts.ptr[i], ts.len[i], pairs ? ps.ptr[i] : NULL,
                                pairs ? ps.len[i] : 0, &m->tok_opt, &enc[i]) != TD_OK) {
            e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "text %zu: %s", i, td_error_message(inst->ctx));
            goto out;
        }
        if (enc[i].truncated && m->cfg.reject_too_long) {
            e = tb_error(TRITONSERVER_ERROR_INVALID_ARG,
                         "text %zu is longer than %lld tokens (max_length) and model %s rejects long texts "
                         "(parameter truncation \"reject\"): shorten it",
                         i, (long long)m->cfg.max_length, m->name);
            goto out;
        }
        if (enc[i].len == 0) {
            e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "text %zu gives no tokens", i);
            goto out;
        }
        if (enc[i].len > seq)
            seq = enc[i].len;
    }
    if (!tb_rows_alloc(rows, n, seq, m->pad_id)) {
        e = tb_error(TRITONSERVER_ERROR_INTERNAL, "out of memory for %zu x %zu tokens", n, seq);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < enc[i].len; t++) {
            rows->ids[i * seq + t] = enc[i].ids[t];
            rows->mask[i * seq + t] = 1;
            rows->types[i * seq + t] = enc[i].type_ids[t];
        }
out:
    for (size_t i = 0; enc && i < n; i++)
        td_encoding_free(&enc[i]);
    free(enc);
    tb_strings_free(&ts);
    tb_strings_free(&ps);
    free(text.data);
    free(pair.data);
    return e;
}

static TRITONSERVER_Error *read_request(tb_instance *inst, TRITONBACKEND_Request *r, tb_rows *rows) {
    bool text = inst->m->cfg.has_text && tb_has_input(r, TB_TEXT_INPUT);
    bool ids = inst->m->cfg.has_ids && tb_has_input(r, "input_ids");
    if (text && ids)
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "give either TEXT or input_ids, not both");
    if (!text && tb_has_input(r, TB_PAIR_INPUT))
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "TEXT_PAIR needs TEXT");
    if (text)
        return read_texts(inst, r, rows);
    if (ids)
        return read_tokens(inst, r, rows);
    return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "missing input: model %s takes %s", inst->m->name,
                    inst->m->cfg.has_text && inst->m->cfg.has_ids ? "TEXT (+ TEXT_PAIR) or input_ids"
                    : inst->m->cfg.has_text                       ? "TEXT (+ TEXT_PAIR)"
                                                                  : "input_ids");
}

/* Bind one (rows, seq) int64 array as the session's input, narrowed to int32 when the model takes int32. */
static td_status bind(tb_instance *inst, const char *name, const tb_packed *p, const int64_t *v, int32_t **scratch) {
    const int64_t shape[2] = {(int64_t)p->rows, (int64_t)p->seq};
    size_t n = p->rows * p->seq;
    if (inst->ids_dtype == TD_DTYPE_INT32) {
        int32_t *w = malloc((n ? n : 1) * sizeof *w);
        if (!w)
            return TD_ERR_OUT_OF_MEMORY;
        for (size_t k = 0; k < n; k++)
            w[k] = v[k] < INT32_MIN || v[k] > INT32_MAX ? -1 : (int32_t)v[k]; /* -1: the model's Gather rejects it */
        *scratch = w;
        return td_session_set_input(inst->ctx, inst->s, name, TD_DTYPE_INT32, 2, shape, w, n * sizeof *w);
    }
    return td_session_set_input(inst->ctx, inst->s, name, TD_DTYPE_INT64, 2, shape, v, n * sizeof *v);
}

static td_status run_packed(tb_instance *inst, const tb_packed *p) {
    int32_t *s32[3] = {NULL, NULL, NULL};
    td_status s = bind(inst, "input_ids", p, p->ids, &s32[0]);
    if (s == TD_OK && inst->feed_mask)
        s = bind(inst, "attention_mask", p, p->mask, &s32[1]);
    if (s == TD_OK && inst->feed_types)
        s = bind(inst, "token_type_ids", p, p->types, &s32[2]);
    if (s == TD_OK) {
        if (!inst->run_start_ns) /* the first run of this execute (more follow only when a batch is split) */
            inst->run_start_ns = now_ns();
        s = td_session_run(inst->ctx, inst->s);
        inst->run_end_ns = now_ns();
    }
    if (s == TD_ERR_OUT_OF_MEMORY && !td_error_message(inst->ctx)[0])
        td_fail(inst->ctx, s, "out of memory narrowing the inputs to int32");
    for (int k = 0; k < 3; k++)
        free(s32[k]);
    return s;
}

static const tb_output_config *find_output(const tb_model *m, const char *name, int *k) {
    for (int i = 0; i < m->cfg.n_outputs; i++)
        if (strcmp(m->cfg.outputs[i].name, name) == 0) {
            *k = i;
            return &m->cfg.outputs[i];
        }
    return NULL;
}

/* Fill the response's outputs for one request from the last run (batch rows row0 .. row0 + rows->rows). */
static TRITONSERVER_Error *fill_response(tb_instance *inst, TRITONBACKEND_Request *r, TRITONBACKEND_Response *resp,
                                         const tb_rows *rows, size_t row0, const tb_packed *p) {
    uint32_t n = 0;
    TRITONSERVER_Error *e = TRITONBACKEND_RequestOutputCount(r, &n);
    for (uint32_t i = 0; !e && i < n; i++) {
        const char *name;
        int k;
        if ((e = TRITONBACKEND_RequestOutputName(r, i, &name)))
            break;
        const tb_output_config *oc = find_output(inst->m, name, &k);
        if (!oc)
            return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "unknown output %s", name);
        td_session_output o;
        if (td_session_get_output(inst->ctx, inst->s, inst->out_index[k], &o) != TD_OK)
            return tb_error(TRITONSERVER_ERROR_INTERNAL, "%s", td_error_message(inst->ctx));
        if (o.dtype != TD_DTYPE_FLOAT32 || o.rank < 1 || o.rank > 8 || (size_t)o.shape[0] != p->rows ||
            (oc->per_token && (o.rank < 2 || (size_t)o.shape[1] != p->seq)))
            return tb_error(TRITONSERVER_ERROR_INTERNAL,
                            "output %s: the model produced a %d-d tensor of type %d that does not match config.pbtxt "
                            "(float32, batch first%s)",
                            name, o.rank, o.dtype, oc->per_token ? ", then the sequence" : "");
        int64_t shape[8];
        size_t inner = 1;
        int first = oc->per_token ? 2 : 1;
        shape[0] = (int64_t)rows->rows;
        if (oc->per_token)
            shape[1] = (int64_t)rows->seq;
        for (int d = first; d < o.rank; d++) {
            shape[d] = o.shape[d];
            inner *= (size_t)o.shape[d];
        }
        size_t bytes = rows->rows * (oc->per_token ? rows->seq : 1) * inner * sizeof(float);
        TRITONBACKEND_Output *out;
        void *buf;
        TRITONSERVER_MemoryType mt = TRITONSERVER_MEMORY_CPU;
        int64_t mid = 0;
        if ((e = TRITONBACKEND_ResponseOutput(resp, &out, name, TRITONSERVER_TYPE_FP32, shape, (uint32_t)o.rank)) ||
            (e = TRITONBACKEND_OutputBuffer(out, &buf, bytes, &mt, &mid)))
            break;
        if (mt == TRITONSERVER_MEMORY_GPU)
            return tb_error(TRITONSERVER_ERROR_UNSUPPORTED, "output %s: the client asked for GPU memory", name);
        tb_scatter_f32(o.data, p->seq, inner, oc->per_token, row0, rows->rows, rows->seq, buf);
    }
    return e;
}

static void send(TRITONBACKEND_Request *r, TRITONBACKEND_Response *resp, TRITONSERVER_Error *err) {
    TRITONSERVER_Error *e = NULL;
    if (!resp)
        e = TRITONBACKEND_ResponseNew(&resp, r);
    if (!e)
        e = TRITONBACKEND_ResponseSend(resp, TRITONSERVER_RESPONSE_COMPLETE_FINAL, err);
    if (e) {
        tb_log(TRITONSERVER_LOG_ERROR, "tdeploy: cannot send a response: %s", TRITONSERVER_ErrorMessage(e));
        TRITONSERVER_ErrorDelete(e);
    }
}

/* Pack the requests use[] marks, run once, answer each (successes here; errs[i] set when answering failed).
 * Returns false when the run failed before any answer (errs untouched, message in inst->ctx). */
static bool run_and_answer(tb_instance *inst, TRITONBACKEND_Request **req, const tb_rows *rows, const bool *use,
                           size_t n, size_t *row0, TRITONSERVER_Error **errs) {
    tb_packed p;
    if (!tb_pack(rows, use, n, inst->m->pad_id, &p, row0)) {
        td_fail(inst->ctx, TD_ERR_OUT_OF_MEMORY, "out of memory packing %zu requests", n);
        return false;
    }
    td_status s = run_packed(inst, &p);
    if (s != TD_OK) {
        tb_packed_free(&p);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!use[i])
            continue;
        TRITONBACKEND_Response *resp = NULL;
        TRITONSERVER_Error *e = TRITONBACKEND_ResponseNew(&resp, req[i]);
        if (!e)
            e = fill_response(inst, req[i], resp, &rows[i], row0[i], &p);
        if (resp) {
            send(req[i], resp, e); /* an error here goes out on the response already created */
            if (e)
                TRITONSERVER_ErrorDelete(e);
        } else
            errs[i] = e;
    }
    tb_packed_free(&p);
    return true;
}

void tb_execute(tb_instance *inst, TRITONBACKEND_Request **req, uint32_t count) {
    uint64_t exec_start = now_ns();
    size_t n = count;
    tb_rows *rows = calloc(n ? n : 1, sizeof *rows);
    TRITONSERVER_Error **errs = calloc(n ? n : 1, sizeof *errs);
    bool *use = calloc(n ? n : 1, sizeof *use);
    size_t *row0 = calloc(n ? n : 1, sizeof *row0);
    bool *ok = calloc(n ? n : 1, sizeof *ok);
    size_t used = 0, total_rows = 0;
    uint64_t compute_start = 0, compute_end = 0;
    if (!rows || !errs || !use || !row0 || !ok) {
        for (size_t i = 0; i < n; i++) {
            TRITONSERVER_Error *e = tb_error(TRITONSERVER_ERROR_INTERNAL, "tdeploy: out of memory");
            send(req[i], NULL, e);
            TRITONSERVER_ErrorDelete(e);
        }
        goto release;
    }
    for (size_t i = 0; i < n; i++) {
        errs[i] = read_request(inst, req[i], &rows[i]);
        use[i] = !errs[i];
        used += use[i];
        total_rows += use[i] ? rows[i].rows : 0;
    }
    /* statistics: compute_input = reading, tokenizing, packing and binding; compute_infer = the session run(s);
     * compute_output = cutting the outputs into the responses and sending them */
    compute_start = compute_end = now_ns();
    inst->run_start_ns = 0;
    if (used > 0 && !run_and_answer(inst, req, rows, use, n, row0, errs)) {
        /* The batch failed as a whole: find out which requests are at fault by running each alone. */
        char first_msg[512];
        snprintf(first_msg, sizeof first_msg, "%s", td_error_message(inst->ctx));
        for (size_t i = 0; i < n; i++) {
            if (!use[i])
                continue;
            bool one[1] = {true};
            if (used == 1 || !run_and_answer(inst, req + i, rows + i, one, 1, row0 + i, errs + i))
                errs[i] = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "%s",
                                   used == 1 ? first_msg : td_error_message(inst->ctx));
        }
    }
    if (inst->run_start_ns) {
        compute_start = inst->run_start_ns;
        compute_end = inst->run_end_ns;
    }
    for (size_t i = 0; i < n; i++) {
        ok[i] = !errs[i];
        if (errs[i]) {
            send(req[i], NULL, errs[i]);
            TRITONSERVER_ErrorDelete(errs[i]);
        }
    }
release:;
    uint64_t exec_end = now_ns();
    for (size_t i = 0; i < n; i++) {
        TRITONSERVER_Error *e = TRITONBACKEND_ModelInstanceReportStatistics(
            inst->triton, req[i], ok && ok[i], exec_start, compute_start ? compute_start : exec_start,
            compute_end ? compute_end : exec_end, exec_end);
        if (e)
            TRITONSERVER_ErrorDelete(e);
        if ((e = TRITONBACKEND_RequestRelease(req[i], TRITONSERVER_REQUEST_RELEASE_ALL))) {
            tb_log(TRITONSERVER_LOG_ERROR, "tdeploy: cannot release a request: %s", TRITONSERVER_ErrorMessage(e));
            TRITONSERVER_ErrorDelete(e);
        }
    }
    if (total_rows > 0) {
        TRITONSERVER_Error *e = TRITONBACKEND_ModelInstanceReportBatchStatistics(inst->triton, total_rows, exec_start,
                                                                                 compute_start, compute_end, exec_end);
        if (e)
            TRITONSERVER_ErrorDelete(e);
    }
    for (size_t i = 0; rows && i < n; i++)
        tb_rows_free(&rows[i]);
    free(rows);
    free(errs);
    free(use);
    free(row0);
    free(ok);
}
