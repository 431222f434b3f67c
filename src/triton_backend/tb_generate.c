/* Text generation in Triton's decoupled (streaming) mode, for a model whose
 * config has parameter task "text-generation" (tb_config.h). Each request is one
 * prompt: TEXT is tokenized as `tdeploy generate --prompt` does (the model's
 * special tokens added), generated through the generation API (generate/generator.h,
 * one generator per instance), and every piece of new text that becomes safe to
 * show (complete UTF-8, no partial stop string) goes out at once as a response
 * with TEXT_OUTPUT. The last response carries FINISH_REASON and the FINAL flag:
 * "eos" (an end-of-sequence token), "length" (max_new_tokens made) or "context"
 * (prompt + new tokens filled the model's positions first); td_generate's fourth
 * reason, "stop", needs stop strings, which a served request cannot carry. A bad
 * request gets one final error response; a request the client cancels stops at
 * the next token and ends with a CANCELLED error response, no FINISH_REASON
 * (docs/deploy.md lists the same). */
#define _GNU_SOURCE
#include "triton_backend/tb_backend.h"
#include "triton_backend/tb_bytes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* What one request streams into while td_generate runs (on_text's user data). */
typedef struct gen_stream {
    tb_instance *inst;
    TRITONBACKEND_Request *request;
    TRITONBACKEND_ResponseFactory *factory;
    bool want_text, want_finish;     /* the client asked for these outputs */
    volatile sig_atomic_t stop;      /* cancelled by the client, or a response could not be sent */
    TRITONSERVER_Error *send_error;  /* the first failure to send a piece */
    size_t pieces;
} gen_stream;

static bool requested(TRITONBACKEND_Request *r, const char *name) {
    uint32_t n = 0;
    TRITONSERVER_Error *e = TRITONBACKEND_RequestOutputCount(r, &n);
    for (uint32_t i = 0; !e && i < n; i++) {
        const char *nm = NULL;
        if ((e = TRITONBACKEND_RequestOutputName(r, i, &nm)))
            break;
        if (strcmp(nm, name) == 0)
            return true;
    }
    if (e)
        TRITONSERVER_ErrorDelete(e);
    return false;
}

/* One BYTES element ([1]) named `name` on resp: 4-byte little-endian length, then the bytes. */
static TRITONSERVER_Error *add_string(TRITONBACKEND_Response *resp, const char *name, const char *text, size_t len) {
    if (len > UINT32_MAX)
        return tb_error(TRITONSERVER_ERROR_INTERNAL, "output %s: %zu bytes do not fit a BYTES element", name, len);
    const int64_t shape[1] = {1};
    TRITONBACKEND_Output *out;
    void *buf;
    TRITONSERVER_MemoryType mt = TRITONSERVER_MEMORY_CPU;
    int64_t mid = 0;
    TRITONSERVER_Error *e = TRITONBACKEND_ResponseOutput(resp, &out, name, TRITONSERVER_TYPE_BYTES, shape, 1);
    if (!e)
        e = TRITONBACKEND_OutputBuffer(out, &buf, 4 + len, &mt, &mid);
    if (e)
        return e;
    if (mt == TRITONSERVER_MEMORY_GPU)
        return tb_error(TRITONSERVER_ERROR_UNSUPPORTED, "output %s: the client asked for GPU memory", name);
    unsigned char *b = buf;
    uint32_t n = (uint32_t)len;
    b[0] = (unsigned char)n, b[1] = (unsigned char)(n >> 8), b[2] = (unsigned char)(n >> 16);
    b[3] = (unsigned char)(n >> 24);
    memcpy(b + 4, text, len);
    return NULL;
}

/* A response from the factory with TEXT_OUTPUT (and FINISH_REASON when finish is set), sent with flags. */
static TRITONSERVER_Error *send_piece(gen_stream *st, const char *text, size_t len, const char *finish,
                                      uint32_t flags) {
    TRITONBACKEND_Response *resp = NULL;
    TRITONSERVER_Error *e = TRITONBACKEND_ResponseNewFromFactory(&resp, st->factory);
    if (e)
        return e;
    if (st->want_text)
        e = add_string(resp, TB_GEN_OUTPUT, text, len);
    if (!e && finish && st->want_finish)
        e = add_string(resp, TB_GEN_FINISH, finish, strlen(finish));
    /* an output that failed goes out as this response's error, so the stream still ends */
    TRITONSERVER_Error *s = TRITONBACKEND_ResponseSend(resp, flags, e);
    if (e && s)
        TRITONSERVER_ErrorDelete(s);
    return e ? e : s;
}

static void on_text(void *user, int row, const char *text, size_t len) {
    gen_stream *st = user;
    (void)row; /* one prompt per request: always row 0 */
    if (st->stop || len == 0)
        return;
    bool cancelled = false;
    TRITONSERVER_Error *e = TRITONBACKEND_ResponseFactoryIsCancelled(st->factory, &cancelled);
    if (e)
        TRITONSERVER_ErrorDelete(e);
    if (cancelled) {
        st->stop = 1;
        return;
    }
    if ((e = send_piece(st, text, len, NULL, 0))) {
        st->send_error = e;
        st->stop = 1;
        return;
    }
    st->pieces++;
}

/* A one-element numeric input as double (INT32/INT64/UINT64/FP32/FP64); *present false when absent. */
static TRITONSERVER_Error *scalar(TRITONBACKEND_Request *r, const char *name, double *v, bool *present) {
    *present = tb_has_input(r, name);
    if (!*present)
        return NULL;
    tb_tensor_in t;
    TRITONSERVER_Error *e = tb_read_input(r, name, &t);
    int64_t count = 1;
    for (uint32_t d = 0; !e && d < t.rank; d++)
        count = t.shape[d] >= 0 && t.shape[d] <= 1 ? count * t.shape[d] : 2;
    if (!e && count != 1)
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "%s must hold one value (shape [1])", name);
    size_t want = t.dtype == TRITONSERVER_TYPE_INT32 || t.dtype == TRITONSERVER_TYPE_FP32 ? 4 : 8;
    if (!e && t.dtype != TRITONSERVER_TYPE_INT32 && t.dtype != TRITONSERVER_TYPE_INT64 &&
        t.dtype != TRITONSERVER_TYPE_UINT64 && t.dtype != TRITONSERVER_TYPE_FP32 && t.dtype != TRITONSERVER_TYPE_FP64)
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "%s is %s; send INT32, INT64, UINT64, FP32 or FP64", name,
                     TRITONSERVER_DataTypeString(t.dtype));
    if (!e && t.size != want)
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "%s holds %llu bytes, not one %s", name,
                     (unsigned long long)t.size, TRITONSERVER_DataTypeString(t.dtype));
    if (!e) {
        int32_t i32;
        int64_t i64;
        uint64_t u64;
        float f32;
        switch (t.dtype) {
        case TRITONSERVER_TYPE_INT32:
            memcpy(&i32, t.data, 4), *v = i32;
            break;
        case TRITONSERVER_TYPE_INT64:
            memcpy(&i64, t.data, 8), *v = (double)i64;
            break;
        case TRITONSERVER_TYPE_UINT64:
            memcpy(&u64, t.data, 8), *v = (double)u64;
            break;
        case TRITONSERVER_TYPE_FP32:
            memcpy(&f32, t.data, 4), *v = f32;
            break;
        default:
            memcpy(v, t.data, 8);
        }
    }
    free(t.data);
    return e;
}

/* Sampling controls and max_new_tokens from the request, over the model's defaults. */
static TRITONSERVER_Error *read_controls(tb_instance *inst, TRITONBACKEND_Request *r, td_gen_options *o) {
    double v = 0;
    bool has = false;
    TRITONSERVER_Error *e;
    o->max_new_tokens = inst->m->cfg.max_new_tokens;
    if ((e = scalar(r, "max_new_tokens", &v, &has)))
        return e;
    if (has && !(v >= 1 && v <= (1 << 24) && v == floor(v)))
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "max_new_tokens is %g; it takes an integer from 1 to %d", v,
                        1 << 24);
    if (has)
        o->max_new_tokens = (int64_t)v;
    if ((e = scalar(r, "temperature", &v, &has)))
        return e;
    if (has && !(v >= 0 && v <= 100))
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "temperature is %g; it takes 0 (greedy) to 100", v);
    /* as `tdeploy generate`: temperature, top_k and top_p turn sampling on; temperature 0 asks for greedy; none of
     * them keeps the model's generation_config.json choice */
    bool greedy = has && v == 0;
    if (has && v > 0) {
        o->sampling.do_sample = true;
        o->sampling.temperature = (float)v;
    }
    if ((e = scalar(r, "top_k", &v, &has)))
        return e;
    if (has && !(v >= 0 && v <= 1e9 && v == floor(v)))
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "top_k is %g; it takes an integer >= 0 (0 = off)", v);
    if (has) {
        o->sampling.top_k = (int64_t)v;
        o->sampling.do_sample |= v > 0;
    }
    if ((e = scalar(r, "top_p", &v, &has)))
        return e;
    if (has && !(v > 0 && v <= 1))
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "top_p is %g; it takes 0 < top_p <= 1", v);
    if (has) {
        o->sampling.top_p = (float)v;
        o->sampling.do_sample |= v < 1;
    }
    if ((e = scalar(r, "repetition_penalty", &v, &has)))
        return e;
    if (has && !(v > 0 && v <= 100))
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "repetition_penalty is %g; it takes 0 < p <= 100 (1 = off)",
                        v);
    if (has)
        o->sampling.repetition_penalty = (float)v;
    if ((e = scalar(r, "seed", &v, &has)))
        return e;
    if (has && !(v >= 0 && v <= 18446744073709551615.0 && v == floor(v)))
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "seed is %g; it takes an integer >= 0", v);
    if (has)
        o->sampling.seed = (uint64_t)v;
    if (greedy)
        o->sampling.do_sample = false;
    return NULL;
}

/* TEXT -> prompt ids (malloc'd), as `tdeploy generate --prompt` tokenizes. */
static TRITONSERVER_Error *read_prompt(tb_instance *inst, TRITONBACKEND_Request *r, int64_t **ids, size_t *n) {
    if (!tb_has_input(r, TB_TEXT_INPUT))
        return tb_error(TRITONSERVER_ERROR_INVALID_ARG, "missing input: model %s takes TEXT (the prompt)",
                        inst->m->name);
    tb_tensor_in t;
    tb_strings s = {0};
    char err[256];
    TRITONSERVER_Error *e = tb_read_input(r, TB_TEXT_INPUT, &t);
    int64_t count = 1;
    for (uint32_t d = 0; !e && d < t.rank; d++)
        count = t.shape[d] >= 0 && t.shape[d] <= 1 ? count * t.shape[d] : 2;
    if (!e && (t.dtype != TRITONSERVER_TYPE_BYTES || count != 1))
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "TEXT must be BYTES of shape [1] (one prompt per request)");
    if (!e && !tb_strings_parse(t.data, t.size, 1, &s, err, sizeof err))
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "TEXT: %s", err);
    if (!e && s.len[0] == 0)
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "TEXT is empty; send a prompt");
    const td_tokenizer *tok = td_generator_tokenizer(inst->gen);
    td_encoding enc = {0};
    if (!e) {
        td_tok_options to;
        td_tokenizer_default_options(tok, &to);
        if (td_tokenizer_encode(inst->ctx, tok, s.ptr[0], s.len[0], NULL, 0, &to, &enc) != TD_OK)
            e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "TEXT: %s", td_error_message(inst->ctx));
        else if (enc.len == 0)
            e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "TEXT gives no tokens");
        else if (!(*ids = malloc(enc.len * sizeof **ids)))
            e = tb_error(TRITONSERVER_ERROR_INTERNAL, "out of memory for %zu prompt ids", enc.len);
        else {
            memcpy(*ids, enc.ids, enc.len * sizeof **ids);
            *n = enc.len;
        }
        td_encoding_free(&enc);
    }
    tb_strings_free(&s);
    free(t.data);
    return e;
}

/* Generate for one request, streaming; returns the error of the request (NULL when it finished and its final
 * response went out). */
static TRITONSERVER_Error *generate_one(tb_instance *inst, gen_stream *st) {
    td_gen_options o;
    td_gen_options_defaults(inst->gen, &o);
    int64_t *ids = NULL;
    size_t n = 0;
    TRITONSERVER_Error *e = read_controls(inst, st->request, &o);
    if (!e)
        e = read_prompt(inst, st->request, &ids, &n);
    if (e) {
        free(ids);
        return e;
    }
    o.on_text = on_text;
    o.user = st;
    o.interrupt = &st->stop;
    td_gen_result res;
    const int64_t *prompts[1] = {ids};
    td_status s = td_generate(inst->ctx, inst->gen, prompts, &n, 1, &o, &res);
    free(ids);
    if (st->send_error) {
        if (s == TD_OK)
            td_gen_results_free(&res, 1);
        return st->send_error;
    }
    if (s == TD_ERR_INTERRUPTED)
        return tb_error(TRITONSERVER_ERROR_CANCELLED, "generation cancelled by the client after %zu pieces",
                        st->pieces);
    if (s != TD_OK)
        return tb_error(s == TD_ERR_OUT_OF_MEMORY ? TRITONSERVER_ERROR_INTERNAL : TRITONSERVER_ERROR_INVALID_ARG,
                        "%s", td_error_message(inst->ctx));
    e = send_piece(st, "", 0, res.finish, TRITONSERVER_RESPONSE_COMPLETE_FINAL);
    td_gen_results_free(&res, 1);
    if (e) { /* the final response could not go out: close the stream with the flag alone */
        tb_log(TRITONSERVER_LOG_ERROR, "tdeploy model %s: cannot send the final response: %s", inst->m->name,
               TRITONSERVER_ErrorMessage(e));
        TRITONSERVER_ErrorDelete(e);
        if ((e = TRITONBACKEND_ResponseFactorySendFlags(st->factory, TRITONSERVER_RESPONSE_COMPLETE_FINAL)))
            TRITONSERVER_ErrorDelete(e);
    }
    return NULL;
}

static void answer_error(TRITONBACKEND_Request *r, TRITONBACKEND_ResponseFactory *f, TRITONSERVER_Error *err) {
    TRITONBACKEND_Response *resp = NULL;
    TRITONSERVER_Error *e = f ? TRITONBACKEND_ResponseNewFromFactory(&resp, f) : TRITONBACKEND_ResponseNew(&resp, r);
    if (!e)
        e = TRITONBACKEND_ResponseSend(resp, TRITONSERVER_RESPONSE_COMPLETE_FINAL, err);
    if (e) {
        tb_log(TRITONSERVER_LOG_ERROR, "tdeploy: cannot send an error response (%s): %s",
               TRITONSERVER_ErrorMessage(err), TRITONSERVER_ErrorMessage(e));
        TRITONSERVER_ErrorDelete(e);
    }
}

void tb_generate_execute(tb_instance *inst, TRITONBACKEND_Request **req, uint32_t count) {
    for (uint32_t i = 0; i < count; i++) {
        uint64_t start = now_ns();
        gen_stream st = {.inst = inst, .request = req[i]};
        TRITONSERVER_Error *e = TRITONBACKEND_ResponseFactoryNew(&st.factory, req[i]);
        if (!e) {
            st.want_text = requested(req[i], TB_GEN_OUTPUT);
            st.want_finish = requested(req[i], TB_GEN_FINISH);
            e = generate_one(inst, &st);
        }
        bool ok = !e;
        if (e) {
            answer_error(req[i], st.factory, e);
            TRITONSERVER_ErrorDelete(e);
        }
        if (st.factory && (e = TRITONBACKEND_ResponseFactoryDelete(st.factory)))
            TRITONSERVER_ErrorDelete(e);
        uint64_t end = now_ns();
        if ((e = TRITONBACKEND_ModelInstanceReportStatistics(inst->triton, req[i], ok, start, start, end, end)))
            TRITONSERVER_ErrorDelete(e);
        if ((e = TRITONBACKEND_RequestRelease(req[i], TRITONSERVER_REQUEST_RELEASE_ALL))) {
            tb_log(TRITONSERVER_LOG_ERROR, "tdeploy: cannot release a request: %s", TRITONSERVER_ErrorMessage(e));
            TRITONSERVER_ErrorDelete(e);
        }
    }
}
