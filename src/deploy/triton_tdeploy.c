/* The tdeploy-backend model of a Triton repository (layout in triton.h): one
 * model that takes token tensors or raw text and runs tdeploy's own runtime
 * inside Triton (src/triton_backend/), instead of ONNX Runtime + a Python
 * tokenizer + an ensemble. */
#define _GNU_SOURCE
#include "deploy/triton_write.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "deploy/tree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool td_triton_serving_parse(const char *s, td_triton_serving *out) {
    static const char *const names[] = {"onnxruntime", "tdeploy", "both"};
    for (int i = 0; s && i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (td_triton_serving)i;
            return true;
        }
    return false;
}

static const char *const token_inputs[] = {"input_ids", "attention_mask", "token_type_ids"};

/* What the backend can serve: (batch, sequence) int token inputs, float32 outputs with the batch first. */
static td_status check_servable(td_ctx *ctx, const td_triton_spec *sp) {
    const char *fix = "; write it for ONNX Runtime instead (--triton-backend onnxruntime)";
    if (sp->batch_max < 1)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "Triton model %s: the tdeploy backend batches requests itself and needs a max batch size >= 1 "
                       "(--batch-size MIN OPT MAX with MAX >= 1)",
                       sp->name);
    if (sp->precision && strcmp(sp->precision, "fp32") != 0 && strcmp(sp->precision, "fp16") != 0 &&
        strcmp(sp->precision, "bf16") != 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "Triton model %s: precision %s is not fp32, fp16 or bf16",
                       sp->name, sp->precision);
    bool has_ids = false;
    for (size_t i = 0; i < sp->n_inputs; i++) {
        const td_triton_tensor *t = &sp->inputs[i];
        bool known = false;
        for (size_t k = 0; k < sizeof token_inputs / sizeof *token_inputs; k++)
            known |= strcmp(t->name, token_inputs[k]) == 0;
        if (!known || (t->dtype != TD_I64 && t->dtype != TD_I32) || t->ndim != 2 || t->dims[1] != -1)
            return td_fail(ctx, TD_ERR_UNSUPPORTED,
                           "Triton model %s: input \"%s\" is not a (batch, sequence) int64/int32 token tensor with a "
                           "dynamic sequence (input_ids, attention_mask, token_type_ids), which is all the tdeploy "
                           "backend feeds%s",
                           sp->name, t->name, fix);
        has_ids |= strcmp(t->name, "input_ids") == 0;
    }
    if (!has_ids)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "Triton model %s has no input_ids input%s", sp->name, fix);
    for (size_t i = 0; i < sp->n_outputs; i++)
        if (sp->outputs[i].dtype != TD_F32 || strcmp(sp->outputs[i].name, "TEXT") == 0 ||
            strcmp(sp->outputs[i].name, "TEXT_PAIR") == 0)
            return td_fail(ctx, TD_ERR_UNSUPPORTED,
                           "Triton model %s: output \"%s\" is %s; the tdeploy backend returns float32 outputs not "
                           "named TEXT or TEXT_PAIR%s",
                           sp->name, sp->outputs[i].name, td_dtype_name(sp->outputs[i].dtype), fix);
    return TD_OK;
}

static void put_inputs(td_pbtxt *b, const td_triton_spec *sp) {
    bool text = sp->tokenizer_dir != NULL;
    td_pbtxt_printf(b, "input [\n");
    for (size_t i = 0; i < sp->n_inputs; i++) {
        td_pbtxt_printf(b, "  {\n    name: ");
        td_pbtxt_quoted(b, sp->inputs[i].name);
        /* each request may have its own sequence length: the backend pads the batch it is given */
        td_pbtxt_printf(b, "\n    data_type: %s\n    dims: [ -1 ]\n    allow_ragged_batch: true\n",
                        td_triton_type_name(sp->inputs[i].dtype));
        /* input_ids is required unless TEXT can stand in; the mask and token types default to all-ones / zeros */
        if (text || strcmp(sp->inputs[i].name, "input_ids") != 0)
            td_pbtxt_printf(b, "    optional: true\n");
        td_pbtxt_printf(b, "  }%s\n", i + 1 < sp->n_inputs || text ? "," : "");
    }
    if (text)
        td_pbtxt_printf(b, "  {\n    name: \"TEXT\"\n    data_type: TYPE_STRING\n    dims: [ 1 ]\n    optional: true\n"
                           "  },\n  {\n    name: \"TEXT_PAIR\"\n    data_type: TYPE_STRING\n    dims: [ 1 ]\n"
                           "    optional: true\n  }\n");
    td_pbtxt_printf(b, "]\n");
}

static void tdeploy_config(td_pbtxt *b, const td_triton_spec *sp, int64_t max_length) {
    td_triton_put_header(b, sp->name, "");
    td_pbtxt_printf(b, "backend: \"tdeploy\"\nmax_batch_size: %lld\n", (long long)sp->batch_max);
    put_inputs(b, sp);
    td_triton_put_tensors(b, "output", sp->outputs, sp->n_outputs, true);
    td_pbtxt_printf(b, "dynamic_batching {\n  preferred_batch_size: [ %lld", (long long)sp->batch_opt);
    if (sp->batch_max != sp->batch_opt)
        td_pbtxt_printf(b, ", %lld", (long long)sp->batch_max);
    td_pbtxt_printf(b, " ]\n  max_queue_delay_microseconds: %lld\n}\n", (long long)sp->max_queue_delay_us);
    td_pbtxt_printf(b, "instance_group [\n  {\n    count: %d\n    kind: %s\n  }\n]\n", sp->nb_instances,
                    sp->device == TD_TRITON_GPU ? "KIND_GPU" : "KIND_CPU");
    char num[32];
    snprintf(num, sizeof num, "%d", sp->threads);
    td_triton_put_param(b, "threads", num);
    td_triton_put_param(b, "precision", sp->precision ? sp->precision : "fp32");
    snprintf(num, sizeof num, "%lld", (long long)max_length);
    td_triton_put_param(b, "max_length", num);
    td_triton_put_param(b, "truncation", "truncate");
    if (sp->task)
        td_triton_put_param(b, "task", sp->task);
}

td_status td_triton_write_tdeploy_model(td_ctx *ctx, const td_triton_spec *sp, const char *root) {
    TD_TRY(check_servable(ctx, sp));
    td_triton_tok_params tp = {0};
    if (sp->tokenizer_dir)
        TD_TRY(td_triton_tokenizer_params(ctx, sp, &tp));
    /* rows longer than this are cut (text) or refused (token tensors) by the backend; 0 = no limit */
    int64_t max_length = sp->max_length > 0 ? sp->max_length : tp.max_length;
    td_pbtxt b = {0};
    char *dir = NULL, *ver = NULL;
    td_status s;
    if ((s = td_triton_make_subdir(ctx, root, sp->name, &dir)) != TD_OK ||
        (s = td_triton_make_subdir(ctx, dir, "1", &ver)) != TD_OK)
        goto out;
    tdeploy_config(&b, sp, max_length);
    if ((s = td_triton_write_text(ctx, dir, "config.pbtxt", &b)) != TD_OK)
        goto out;
    if ((s = td_triton_place_model(ctx, sp->onnx_path, sp->external_data, sp->n_external_data, ver)) != TD_OK)
        goto out;
    if (sp->tokenizer_dir &&
        ((s = td_triton_place_file(ctx, sp->tokenizer_dir, "tokenizer.json", ver, true)) != TD_OK ||
         (s = td_triton_place_file(ctx, sp->tokenizer_dir, "tokenizer_config.json", ver, false)) != TD_OK ||
         (s = td_triton_place_file(ctx, sp->tokenizer_dir, "special_tokens_map.json", ver, false)) != TD_OK))
        goto out;
out:
    td_pbtxt_free(&b);
    free(dir);
    free(ver);
    return s;
}
