/* ONNX model signature through the ONNX loader (which validates the model and
 * maps initializer data instead of copying it). */
#include "deploy/onnx_signature.h"

#include "core/ctx.h"
#include "onnx/onnx_io.h"

#include <stdlib.h>
#include <string.h>

static td_status fill_tensor(td_ctx *ctx, const char *path, const td_value *v, const char *kind,
                             td_triton_tensor *t) {
    memset(t, 0, sizeof *t);
    if (v->type.elem == TD_UNDEFINED)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: graph %s \"%s\" has no element type (not a tensor?)", path,
                       kind, v->name);
    if (v->type.rank < 0)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: graph %s \"%s\" has no shape (rank unknown); Triton needs dims",
                       path, kind, v->name);
    if (v->type.rank > TD_TRITON_MAX_DIMS)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: graph %s \"%s\" has %d dimensions (at most %d)", path, kind,
                       v->name, v->type.rank, TD_TRITON_MAX_DIMS);
    char *name = strdup(v->name);
    if (!name)
        return td_fail_oom(ctx, strlen(v->name), "a name");
    t->name = name;
    t->dtype = v->type.elem;
    t->ndim = (size_t)v->type.rank;
    for (size_t d = 0; d < t->ndim; d++)
        t->dims[d] = v->type.dims[d].value >= 1 ? v->type.dims[d].value : -1; /* symbolic or unknown */
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
    td_model *m = NULL;
    td_status s = td_onnx_load(ctx, path, &m);
    if (s != TD_OK)
        return s;
    const td_graph *g = m->graph;
    size_t n_in = (size_t)g->n_inputs, n_out = (size_t)g->n_outputs, n_init = (size_t)g->n_initializers;
    out->inputs = calloc(n_in + 1, sizeof *out->inputs);
    out->outputs = calloc(n_out + 1, sizeof *out->outputs);
    out->external_data = calloc(n_init + 1, sizeof *out->external_data);
    if (!out->inputs || !out->outputs || !out->external_data) {
        s = td_fail_oom(ctx, (n_in + n_out + n_init) * sizeof(td_triton_tensor), "the signature");
        goto out;
    }
    for (size_t i = 0; i < n_in; i++) {
        if (g->inputs[i]->initializer) /* older exporters list initializers as inputs too */
            continue;
        if ((s = fill_tensor(ctx, path, g->inputs[i], "input", &out->inputs[out->n_inputs])) != TD_OK)
            goto out;
        out->n_inputs++;
    }
    for (size_t i = 0; i < n_out; i++) {
        if ((s = fill_tensor(ctx, path, g->outputs[i], "output", &out->outputs[out->n_outputs])) != TD_OK)
            goto out;
        out->n_outputs++;
    }
    /* The loader resolved (and bounds-checked) every location against the model's folder. */
    for (size_t k = 0; k < n_init; k++) {
        const td_tensor *t = g->initializers[k]->initializer;
        const char *loc = t ? t->external_location : NULL;
        if (!loc || has_string(out->external_data, out->n_external_data, loc))
            continue;
        if (!(out->external_data[out->n_external_data] = strdup(loc))) {
            s = td_fail_oom(ctx, strlen(loc), "a file name");
            goto out;
        }
        out->n_external_data++;
    }
out:
    td_model_free(m);
    if (s != TD_OK)
        td_onnx_signature_free(out);
    return s;
}

void td_onnx_signature_free(td_onnx_signature *sig) {
    if (!sig)
        return;
    for (size_t i = 0; i < sig->n_inputs; i++)
        free((char *)sig->inputs[i].name); /* strdup'd by fill_tensor */
    for (size_t i = 0; i < sig->n_outputs; i++)
        free((char *)sig->outputs[i].name);
    for (size_t i = 0; i < sig->n_external_data; i++)
        free(sig->external_data[i]);
    free(sig->inputs);
    free(sig->outputs);
    free(sig->external_data);
    memset(sig, 0, sizeof *sig);
}
