/* Config auto-complete (TRITONBACKEND_ModelAutoCompleteConfig: the server runs
 * with auto-complete on, its default, i.e. without --disable-auto-complete-config):
 * what config.pbtxt leaves out is filled from the model file, so a config of
 * just `backend: "tdeploy"` serves the model.
 *
 *   max_batch_size   absent or 0: 4 (Triton's default-max-batch-size) when every model input has a dynamic
 *                    batch axis, with dynamic_batching {} unless the config schedules otherwise
 *   input            absent: the graph's token inputs (dims [-1], ragged batching; only input_ids required),
 *                    plus TEXT / TEXT_PAIR (TYPE_STRING [1], optional) when tokenizer.json is in the version folder
 *   output           absent: the graph's outputs (float32, dims after the batch axis)
 *
 * Only absent fields are filled: a complete config is left as written. Text generation
 * models (parameter task "text-generation") are not completed: their config must be
 * whole (decoupled policy), as `tdeploy convert` writes it. Triton takes back only
 * max_batch_size, input, output and the scheduler from a completed config (not
 * parameters): a missing max_length is the backend's own default (tdeploy_backend.c). */
#define _GNU_SOURCE
#include "triton_backend/tb_backend.h"

#include "deploy/onnx_signature.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TB_AUTO_MAX_BATCH 4

static const char *param(const cJSON *root, const char *key) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "parameters"), key);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "string_value");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool has_entries(const cJSON *root, const char *key) {
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, key)) > 0;
}

static cJSON *tensor(const char *name, const char *type, const int64_t *dims, size_t n) {
    cJSON *t = cJSON_CreateObject();
    cJSON *d = cJSON_AddArrayToObject(t, "dims");
    cJSON_AddStringToObject(t, "name", name);
    cJSON_AddStringToObject(t, "data_type", type);
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(d, cJSON_CreateNumber((double)dims[i]));
    return t;
}

/* Complete root from the ONNX signature; false with err set when the model cannot be served as it is. */
static bool complete(cJSON *root, const td_onnx_signature *sig, bool tokenizer, char *done, size_t dn, char *err,
                     size_t en) {
    const cJSON *mbs = cJSON_GetObjectItemCaseSensitive(root, "max_batch_size");
    if (!mbs || (cJSON_IsNumber(mbs) && mbs->valuedouble == 0)) {
        bool batch = sig->n_inputs > 0;
        for (size_t i = 0; i < sig->n_inputs; i++)
            batch &= sig->inputs[i].ndim >= 1 && sig->inputs[i].dims[0] == -1;
        if (batch) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, "max_batch_size");
            cJSON_AddNumberToObject(root, "max_batch_size", TB_AUTO_MAX_BATCH);
            if (!cJSON_GetObjectItemCaseSensitive(root, "dynamic_batching") &&
                !cJSON_GetObjectItemCaseSensitive(root, "sequence_batching"))
                cJSON_AddObjectToObject(root, "dynamic_batching");
            snprintf(done + strlen(done), dn - strlen(done), " max_batch_size %d + dynamic_batching;",
                     TB_AUTO_MAX_BATCH);
        }
    }
    if (!has_entries(root, "input")) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, "input");
        cJSON *in = cJSON_AddArrayToObject(root, "input");
        for (size_t i = 0; i < sig->n_inputs; i++) {
            const td_triton_tensor *s = &sig->inputs[i];
            const char *type = td_triton_type_name(s->dtype);
            if (!type || s->ndim != 2) {
                snprintf(err, en, "model input \"%s\" is not a (batch, sequence) token tensor; write the inputs "
                         "into config.pbtxt", s->name);
                return false;
            }
            const int64_t seq[1] = {-1};
            cJSON *t = tensor(s->name, type, seq, 1);
            cJSON_AddBoolToObject(t, "allow_ragged_batch", true);
            if (tokenizer || strcmp(s->name, "input_ids") != 0)
                cJSON_AddBoolToObject(t, "optional", true);
            cJSON_AddItemToArray(in, t);
        }
        const int64_t one[1] = {1};
        for (int k = 0; tokenizer && k < 2; k++) {
            cJSON *t = tensor(k ? TB_PAIR_INPUT : TB_TEXT_INPUT, "TYPE_STRING", one, 1);
            cJSON_AddBoolToObject(t, "optional", true);
            cJSON_AddItemToArray(in, t);
        }
        snprintf(done + strlen(done), dn - strlen(done), " %zu inputs%s;", sig->n_inputs,
                 tokenizer ? " + TEXT, TEXT_PAIR" : "");
    }
    if (!has_entries(root, "output")) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, "output");
        cJSON *out = cJSON_AddArrayToObject(root, "output");
        for (size_t i = 0; i < sig->n_outputs; i++) {
            const td_triton_tensor *s = &sig->outputs[i];
            if (s->dtype != TD_F32 || s->ndim < 1) {
                snprintf(err, en, "model output \"%s\" is not a float32 tensor with a batch axis", s->name);
                return false;
            }
            cJSON_AddItemToArray(out, tensor(s->name, "TYPE_FP32", s->dims + 1, s->ndim - 1));
        }
        snprintf(done + strlen(done), dn - strlen(done), " %zu outputs;", sig->n_outputs);
    }
    return true;
}

TRITONSERVER_Error *tb_autocomplete(TRITONBACKEND_Model *model, const char *name, const char *version_dir) {
    bool enabled = false;
    TRITONSERVER_Error *e = TRITONBACKEND_ModelAutoCompleteConfig(model, &enabled);
    if (e || !enabled)
        return e;
    TRITONSERVER_Message *msg = NULL;
    const char *json = NULL;
    size_t len = 0;
    if ((e = TRITONBACKEND_ModelConfig(model, 1, &msg)) ||
        (e = TRITONSERVER_MessageSerializeToJson(msg, &json, &len))) {
        TRITONSERVER_MessageDelete(msg);
        return e;
    }
    cJSON *root = cJSON_ParseWithLength(json, len);
    TRITONSERVER_MessageDelete(msg);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return tb_error(TRITONSERVER_ERROR_INTERNAL, "tdeploy model %s: the model configuration is not JSON", name);
    }
    const char *task = param(root, "task");
    const cJSON *mbs = cJSON_GetObjectItemCaseSensitive(root, "max_batch_size");
    bool whole = has_entries(root, "input") && has_entries(root, "output") && cJSON_IsNumber(mbs) &&
                 mbs->valuedouble > 0;
    if (whole || (task && strcmp(task, TB_GEN_TASK) == 0)) {
        cJSON_Delete(root);
        return NULL;
    }
    const char *file = param(root, "model_file");
    if (!file)
        file = "model-optimized.onnx";
    char path[PATH_MAX + 300], tok[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", version_dir, file);
    snprintf(tok, sizeof tok, "%s/tokenizer.json", version_dir);
    struct stat st;
    bool tokenizer = stat(tok, &st) == 0 && S_ISREG(st.st_mode);
    td_ctx *ctx = td_ctx_new();
    td_onnx_signature sig = {0};
    char done[512] = "", err[512] = "";
    if (!ctx)
        e = tb_error(TRITONSERVER_ERROR_INTERNAL, "out of memory");
    else if (strchr(file, '/') || file[0] == '.')
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG,
                     "tdeploy model %s: parameter \"model_file\" is \"%s\"; it takes a file name inside the version "
                     "directory", name, file);
    else if (td_onnx_signature_read(ctx, path, &sig) != TD_OK)
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG,
                     "tdeploy model %s: auto-completing config.pbtxt from %s: %s (or write the inputs, outputs and "
                     "max_batch_size into config.pbtxt)", name, path, td_error_message(ctx));
    else if (!complete(root, &sig, tokenizer, done, sizeof done, err, sizeof err))
        e = tb_error(TRITONSERVER_ERROR_INVALID_ARG, "tdeploy model %s: auto-completing config.pbtxt from %s: %s",
                     name, path, err);
    char *out = e ? NULL : cJSON_PrintUnformatted(root);
    if (!e && !out)
        e = tb_error(TRITONSERVER_ERROR_INTERNAL, "out of memory");
    if (!e && done[0]) {
        TRITONSERVER_Message *m = NULL;
        e = TRITONSERVER_MessageNewFromSerializedJson(&m, out, strlen(out));
        if (!e)
            e = TRITONBACKEND_ModelSetConfig(model, 1, m);
        if (m)
            TRITONSERVER_MessageDelete(m);
        if (!e)
            tb_log(TRITONSERVER_LOG_INFO, "tdeploy model %s: config auto-completed from %s:%s", name, path, done);
    }
    free(out);
    td_onnx_signature_free(&sig);
    td_ctx_free(ctx);
    cJSON_Delete(root);
    return e;
}
