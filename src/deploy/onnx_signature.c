/* ONNX model signature via the protobuf-c ModelProto. */
#include "deploy/onnx_signature.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "onnx.pb-c.h"

#include <stdlib.h>
#include <string.h>

static td_status fill_tensor(td_ctx *ctx, const char *path, const Onnx__ValueInfoProto *vi, const char *kind,
                             td_triton_tensor *t) {
    memset(t, 0, sizeof *t);
    if (!vi->name || !*vi->name)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: a graph %s has no name", path, kind);
    const Onnx__TypeProto *ty = vi->type;
    if (!ty || ty->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !ty->tensor_type)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: graph %s \"%s\" is not a tensor", path, kind, vi->name);
    const Onnx__TypeProto__Tensor *tt = ty->tensor_type;
    if (!tt->has_elem_type || tt->elem_type <= 0 || tt->elem_type >= TD_DTYPE_MAX)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: graph %s \"%s\" has no valid element type", path, kind, vi->name);
    if (!tt->shape)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: graph %s \"%s\" has no shape (rank unknown)", path, kind,
                       vi->name);
    if (tt->shape->n_dim > TD_TRITON_MAX_DIMS)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: graph %s \"%s\" has %zu dimensions (at most %d)", path, kind,
                       vi->name, tt->shape->n_dim, TD_TRITON_MAX_DIMS);
    if (!(t->name = strdup(vi->name)))
        return td_fail_oom(ctx, strlen(vi->name), "a name");
    t->dtype = (td_dtype)tt->elem_type;
    t->ndim = tt->shape->n_dim;
    for (size_t d = 0; d < t->ndim; d++) {
        const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
        bool fixed = dim && dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && dim->dim_value > 0;
        t->dims[d] = fixed ? dim->dim_value : -1;
    }
    return TD_OK;
}

static bool has_string(char **list, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

td_status td_onnx_signature_read(td_ctx *ctx, const char *path, td_onnx_signature *out) {
    memset(out, 0, sizeof *out);
    td_mapped_file *map = NULL;
    Onnx__ModelProto *m = NULL;
    td_status s = td_map_file(ctx, path, &map);
    if (s != TD_OK)
        return s;
    m = onnx__model_proto__unpack(NULL, map->size, map->data);
    if (!m || !m->graph) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s is not an ONNX model (the protobuf does not parse as a ModelProto with a graph)",
                    path);
        goto out;
    }
    const Onnx__GraphProto *g = m->graph;
    out->inputs = calloc(g->n_input + 1, sizeof *out->inputs);
    out->outputs = calloc(g->n_output + 1, sizeof *out->outputs);
    out->external_data = calloc(g->n_initializer + 1, sizeof *out->external_data);
    if (!out->inputs || !out->outputs || !out->external_data) {
        s = td_fail_oom(ctx, (g->n_input + g->n_output + g->n_initializer) * sizeof(td_triton_tensor), "the signature");
        goto out;
    }
    for (size_t i = 0; i < g->n_input; i++) {
        bool is_init = false; /* older exporters list initializers as inputs too */
        for (size_t k = 0; k < g->n_initializer && !is_init; k++)
            is_init = g->initializer[k]->name && g->input[i]->name && strcmp(g->initializer[k]->name, g->input[i]->name) == 0;
        if (is_init)
            continue;
        if ((s = fill_tensor(ctx, path, g->input[i], "input", &out->inputs[out->n_inputs])) != TD_OK)
            goto out;
        out->n_inputs++;
    }
    for (size_t i = 0; i < g->n_output; i++) {
        if ((s = fill_tensor(ctx, path, g->output[i], "output", &out->outputs[out->n_outputs])) != TD_OK)
            goto out;
        out->n_outputs++;
    }
    for (size_t k = 0; k < g->n_initializer; k++) {
        const Onnx__TensorProto *t = g->initializer[k];
        if (!t->has_data_location || t->data_location != ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
            continue;
        for (size_t e = 0; e < t->n_external_data; e++) {
            const Onnx__StringStringEntryProto *kv = t->external_data[e];
            if (!kv->key || strcmp(kv->key, "location") != 0 || !kv->value)
                continue;
            char *joined = NULL; /* checks that the location stays inside the model's folder */
            if ((s = td_path_join(ctx, ".", kv->value, true, &joined)) != TD_OK) {
                td_wrap(ctx, "%s: initializer \"%s\" external data", path, t->name ? t->name : "?");
                goto out;
            }
            free(joined);
            if (has_string(out->external_data, out->n_external_data, kv->value))
                continue;
            if (!(out->external_data[out->n_external_data] = strdup(kv->value))) {
                s = td_fail_oom(ctx, strlen(kv->value), "a file name");
                goto out;
            }
            out->n_external_data++;
        }
    }
out:
    if (m)
        onnx__model_proto__free_unpacked(m, NULL);
    td_mapped_file_unref(map);
    if (s != TD_OK)
        td_onnx_signature_free(out);
    return s;
}

void td_onnx_signature_free(td_onnx_signature *sig) {
    if (!sig)
        return;
    for (size_t i = 0; i < sig->n_inputs; i++)
        free(sig->inputs[i].name);
    for (size_t i = 0; i < sig->n_outputs; i++)
        free(sig->outputs[i].name);
    for (size_t i = 0; i < sig->n_external_data; i++)
        free(sig->external_data[i]);
    free(sig->inputs);
    free(sig->outputs);
    free(sig->external_data);
    memset(sig, 0, sizeof *sig);
}
