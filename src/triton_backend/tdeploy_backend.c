/* libtriton_tdeploy.so: Triton Inference Server backend "tdeploy" (the backend C
 * API of tritonbackend.h). Lifecycle here, request handling in tb_execute.c.
 *
 * A model folder written by `tdeploy convert` / `tdeploy triton-repo`:
 *   NAME/config.pbtxt                 backend: "tdeploy", parameters (tb_config.h)
 *   NAME/1/model-optimized.onnx       CPU instances: the CPU runtime's session
 *   NAME/1/model.engine               GPU instances: the same session API with backend "cuda"
 *   NAME/1/tokenizer.json (+ tokenizer_config.json)   for the TEXT input
 * Errors at load (bad config, missing or corrupt model file) fail only this model
 * with a message naming the file and what to do; the server and other models stay up. */
#define _GNU_SOURCE
#include "triton_backend/tb_backend.h"
#include "triton_backend/tb_open.h"

#include "hf/max_length.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

TRITONSERVER_Error *tb_error(TRITONSERVER_Error_Code code, const char *fmt, ...) {
    char msg[2304];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return TRITONSERVER_ErrorNew(code, msg);
}

void tb_log(TRITONSERVER_LogLevel level, const char *fmt, ...) {
    char msg[2304];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    TRITONSERVER_Error *e = TRITONSERVER_LogMessage(level, __FILE__, __LINE__, msg);
    if (e)
        TRITONSERVER_ErrorDelete(e);
}

#define TB_TRY(expr)                       \
    do {                                   \
        TRITONSERVER_Error *tb_e_ = (expr); \
        if (tb_e_)                         \
            return tb_e_;                  \
    } while (0)

TRITONSERVER_Error *TRITONBACKEND_Initialize(TRITONBACKEND_Backend *backend) {
    uint32_t major, minor;
    TB_TRY(TRITONBACKEND_ApiVersion(&major, &minor));
    if (major != TRITONBACKEND_API_VERSION_MAJOR || minor < TRITONBACKEND_API_VERSION_MINOR)
        return tb_error(TRITONSERVER_ERROR_UNSUPPORTED,
                        "tdeploy backend: built for Triton backend API %d.%d, the server has %u.%u; use Triton "
                        "2.51 (24.10) or newer",
                        TRITONBACKEND_API_VERSION_MAJOR, TRITONBACKEND_API_VERSION_MINOR, major, minor);
    tb_log(TRITONSERVER_LOG_INFO, "tdeploy backend %s (Triton backend API %u.%u)", td_version(), major, minor);
    return NULL;
}

static void model_free(tb_model *m) {
    if (!m)
        return;
    td_tokenizer_free(m->tok);
    free(m);
}

static TRITONSERVER_Error *read_config(TRITONBACKEND_Model *model, tb_model *m) {
    TRITONSERVER_Message *msg = NULL;
    TB_TRY(TRITONBACKEND_ModelConfig(model, 1, &msg));
    const char *json = NULL;
    size_t len = 0;
    TRITONSERVER_Error *e = TRITONSERVER_MessageSerializeToJson(msg, &json, &len);
    char err[512];
    if (!e && !tb_config_parse(json, len, &m->cfg, err, sizeof err))
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "tdeploy model %s: config.pbtxt: %s", m->name, err);
    TRITONSERVER_MessageDelete(msg);
    return e;
}

static TRITONSERVER_Error *load_tokenizer(tb_model *m) {
    if (!m->cfg.has_text || m->cfg.generate) /* a generator loads the tokenizer beside its model itself */
        return NULL;
    td_ctx *ctx = td_ctx_new();
    if (!ctx)
        return tb_error(TRITONSERVER_ERROR_INTERNAL, "out of memory");
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/tokenizer.json", m->version_dir);
    TRITONSERVER_Error *e = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        e = tb_error(TRITONSERVER_ERROR_NOT_FOUND,
                     "tdeploy model %s: the config has a TEXT input but %s does not exist; put the model's "
                     "tokenizer.json there (tdeploy convert and triton-repo --tokenizer do) or drop the TEXT input",
                     m->name, path);
    else if (td_tokenizer_load(ctx, m->version_dir, &m->tok) != TD_OK)
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "tdeploy model %s: %s", m->name, td_error_message(ctx));
    /* no max_length in the config (e.g. an auto-completed one): cut where `tdeploy run` does, from the HF files
     * beside the model, rather than wherever tokenizer.json's own truncation says */
    else if (!m->cfg.max_length_given && td_hf_max_length_of_dir(ctx, m->version_dir, &m->cfg.max_length, NULL))
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "tdeploy model %s: max_length: %s", m->name,
                     td_error_message(ctx));
    td_ctx_free(ctx);
    if (e)
        return e;
    td_tok_options *o = &m->tok_opt;
    td_tokenizer_default_options(m->tok, o);
    o->add_special_tokens = true;
    o->padding = TD_PAD_NONE;
    o->pad_to_multiple_of = 0;
    o->return_overflowing = false;
    if (m->cfg.max_length > 0) {
        o->truncation = true;
        o->max_length = (size_t)m->cfg.max_length;
        o->stride = 0;
    }
    m->pad_id = o->pad_id;
    return NULL;
}

TRITONSERVER_Error *TRITONBACKEND_ModelInitialize(TRITONBACKEND_Model *model) {
    tb_model *m = calloc(1, sizeof *m);
    if (!m)
        return tb_error(TRITONSERVER_ERROR_INTERNAL, "out of memory");
    const char *name = NULL, *location = NULL;
    uint64_t version = 0;
    TRITONBACKEND_ArtifactType type;
    TRITONSERVER_Error *e = TRITONBACKEND_ModelName(model, &name);
    if (!e)
        e = TRITONBACKEND_ModelVersion(model, &version);
    if (!e)
        e = TRITONBACKEND_ModelRepository(model, &type, &location);
    if (!e && type != TRITONBACKEND_ARTIFACT_FILESYSTEM)
        e = tb_error(TRITONSERVER_ERROR_UNSUPPORTED, "tdeploy model %s: only file-system repositories are supported",
                     name);
    if (!e) {
        snprintf(m->name, sizeof m->name, "%s", name);
        if ((size_t)snprintf(m->version_dir, sizeof m->version_dir, "%s/%llu", location,
                             (unsigned long long)version) >= sizeof m->version_dir)
            e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "tdeploy model %s: repository path too long", name);
    }
    if (!e)
        e = tb_autocomplete(model, m->name, m->version_dir);
    if (!e)
        e = read_config(model, m);
    if (!e)
        e = load_tokenizer(m);
    if (!e)
        e = TRITONBACKEND_ModelSetState(model, m);
    if (e) {
        model_free(m);
        return e;
    }
    if (m->cfg.generate) {
        tb_log(TRITONSERVER_LOG_INFO, "tdeploy model %s version %llu: text generation, decoupled (%lld new tokens "
               "by default)", m->name, (unsigned long long)version, (long long)m->cfg.max_new_tokens);
        return NULL;
    }
    tb_log(TRITONSERVER_LOG_INFO, "tdeploy model %s version %llu: %s%s, max_length %lld (%s)", m->name,
           (unsigned long long)version, m->cfg.has_ids ? "token tensors" : "",
           m->cfg.has_text ? (m->cfg.has_ids ? " + text" : "text") : "", (long long)m->cfg.max_length,
           m->cfg.reject_too_long ? "longer rows rejected" : "longer texts truncated");
    return NULL;
}

TRITONSERVER_Error *TRITONBACKEND_ModelFinalize(TRITONBACKEND_Model *model) {
    void *state = NULL;
    TB_TRY(TRITONBACKEND_ModelState(model, &state));
    model_free(state);
    return NULL;
}

static void instance_free(tb_instance *in) {
    if (!in)
        return;
    td_session_free(in->s);
    td_generator_free(in->gen);
    td_ctx_free(in->ctx);
    free(in);
}

/* The session's inputs must be ones the backend fills, with the dtypes it fills them in. */
static TRITONSERVER_Error *bind_signature(tb_instance *in) {
    tb_model *m = in->m;
    in->ids_dtype = TD_DTYPE_INT64;
    bool has_ids = false;
    for (int i = 0; i < td_session_input_count(in->s); i++) {
        const char *nm = td_session_input_name(in->s, i);
        int32_t dt;
        int rank;
        const int64_t *dims;
        const char *const *params;
        td_session_input_info(in->s, i, &dt, &rank, &dims, &params);
        if (strcmp(nm, "input_ids") != 0 && strcmp(nm, "attention_mask") != 0 && strcmp(nm, "token_type_ids") != 0)
            return tb_error(TRITONSERVER_ERROR_UNSUPPORTED,
                            "tdeploy model %s: the model has an input \"%s\"; the backend feeds input_ids, "
                            "attention_mask and token_type_ids only",
                            m->name, nm);
        if ((dt != TD_DTYPE_INT64 && dt != TD_DTYPE_INT32) || rank != 2)
            return tb_error(TRITONSERVER_ERROR_UNSUPPORTED,
                            "tdeploy model %s: input \"%s\" must be an int64 or int32 (batch, sequence) tensor",
                            m->name, nm);
        if (dims[0] >= 0 || dims[1] >= 0)
            return tb_error(TRITONSERVER_ERROR_UNSUPPORTED,
                            "tdeploy model %s: input \"%s\" has a fixed dimension; export with dynamic batch and "
                            "sequence axes (tdeploy export does)",
                            m->name, nm);
        if (strcmp(nm, "input_ids") == 0)
            has_ids = true, in->ids_dtype = dt;
        in->feed_mask |= strcmp(nm, "attention_mask") == 0;
        in->feed_types |= strcmp(nm, "token_type_ids") == 0;
    }
    if (!has_ids)
        return tb_error(TRITONSERVER_ERROR_UNSUPPORTED, "tdeploy model %s: the model has no input_ids input", m->name);
    for (int i = 0; i < m->cfg.n_outputs; i++) {
        in->out_index[i] = td_session_output_index(in->s, m->cfg.outputs[i].name);
        if (in->out_index[i] < 0) {
            char names[1024] = "";
            for (int k = 0; k < td_session_output_count(in->s); k++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", k ? ", " : "",
                         td_session_output_name(in->s, k));
            return tb_error(TRITONSERVER_ERROR_INVALID_ARG,
                            "tdeploy model %s: config.pbtxt names an output \"%s\" that the model does not have "
                            "(it has: %s)",
                            m->name, m->cfg.outputs[i].name, names);
        }
    }
    return NULL;
}

TRITONSERVER_Error *TRITONBACKEND_ModelInstanceInitialize(TRITONBACKEND_ModelInstance *instance) {
    TRITONBACKEND_Model *model;
    void *state;
    TRITONSERVER_InstanceGroupKind kind;
    const char *iname = "";
    TB_TRY(TRITONBACKEND_ModelInstanceModel(instance, &model));
    TB_TRY(TRITONBACKEND_ModelState(model, &state));
    TB_TRY(TRITONBACKEND_ModelInstanceKind(instance, &kind));
    TB_TRY(TRITONBACKEND_ModelInstanceName(instance, &iname));
    tb_instance *in = calloc(1, sizeof *in);
    if (!in || !(in->ctx = td_ctx_new())) {
        free(in);
        return tb_error(TRITONSERVER_ERROR_INTERNAL, "out of memory");
    }
    in->m = state;
    in->triton = instance;
    tb_model *m = in->m;
    bool gpu = kind == TRITONSERVER_INSTANCEGROUPKIND_GPU;
    if (kind != TRITONSERVER_INSTANCEGROUPKIND_CPU && !gpu) {
        instance_free(in);
        return tb_error(TRITONSERVER_ERROR_UNSUPPORTED,
                        "tdeploy model %s: instance %s: use instance_group kind KIND_CPU or KIND_GPU", m->name, iname);
    }
    /* KIND_GPU: model.engine through the same session API on backend "cuda" (tb_open.h) */
    tb_opened op;
    char msg[2048];
    td_status st = tb_instance_open(in->ctx, &m->cfg, m->version_dir, gpu, &op, msg, sizeof msg);
    in->s = op.s;
    in->gen = op.gen;
    TRITONSERVER_Error *e = NULL;
    if (st != TD_OK)
        e = tb_error(st == TD_ERR_UNSUPPORTED ? TRITONSERVER_ERROR_UNSUPPORTED
                     : st == TD_ERR_NOT_FOUND ? TRITONSERVER_ERROR_NOT_FOUND
                                              : TRITONSERVER_ERROR_INVALID_ARG,
                     "tdeploy model %s: instance %s (%s): %s", m->name, iname, gpu ? "KIND_GPU" : "KIND_CPU", msg);
    if (!e && !m->cfg.generate)
        e = bind_signature(in);
    if (!e)
        e = TRITONBACKEND_ModelInstanceSetState(instance, in);
    if (e) {
        instance_free(in);
        return e;
    }
    tb_log(TRITONSERVER_LOG_INFO, "tdeploy model %s: instance %s runs %s on the %s backend (%d threads)", m->name,
           iname, op.path, op.backend, m->cfg.threads);
    return NULL;
}

TRITONSERVER_Error *TRITONBACKEND_ModelInstanceFinalize(TRITONBACKEND_ModelInstance *instance) {
    void *state = NULL;
    TB_TRY(TRITONBACKEND_ModelInstanceState(instance, &state));
    instance_free(state);
    return NULL;
}

TRITONSERVER_Error *TRITONBACKEND_ModelInstanceExecute(TRITONBACKEND_ModelInstance *instance,
                                                       TRITONBACKEND_Request **requests, const uint32_t count) {
    void *state = NULL;
    TB_TRY(TRITONBACKEND_ModelInstanceState(instance, &state));
    /* Every request is answered and released inside: returning an error here would make Triton fail them all. */
    tb_instance *in = state;
    if (in->m->cfg.generate)
        tb_generate_execute(in, requests, count);
    else
        tb_execute(in, requests, count);
    return NULL;
}
