/* The text-generation model of a Triton repository for the tdeploy backend (layout
 * in triton.h): one decoupled model that streams the new text of each prompt
 * (src/triton_backend/tb_generate.c) through tdeploy's generation loop. */
#define _GNU_SOURCE
#include "deploy/triton_write.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "deploy/tree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the request's optional controls (one value each): name, Triton type */
static const char *const controls[][2] = {
    {"max_new_tokens", "TYPE_INT32"}, {"temperature", "TYPE_FP32"},        {"top_k", "TYPE_INT32"},
    {"top_p", "TYPE_FP32"},           {"repetition_penalty", "TYPE_FP32"}, {"seed", "TYPE_UINT64"},
};

static void generation_config(td_pbtxt *b, const td_triton_gen_spec *sp) {
    td_triton_put_header(b, sp->name, "");
    /* one prompt per request, its tokens streamed as they come: Triton's decoupled mode, no batching */
    td_pbtxt_printf(b, "backend: \"tdeploy\"\nmax_batch_size: 0\nmodel_transaction_policy {\n  decoupled: true\n}\n");
    td_pbtxt_printf(b, "input [\n  {\n    name: \"TEXT\"\n    data_type: TYPE_STRING\n    dims: [ 1 ]\n  }");
    for (size_t i = 0; i < sizeof controls / sizeof *controls; i++)
        td_pbtxt_printf(b, ",\n  {\n    name: \"%s\"\n    data_type: %s\n    dims: [ 1 ]\n    optional: true\n  }",
                        controls[i][0], controls[i][1]);
    td_pbtxt_printf(b, "\n]\noutput [\n  {\n    name: \"TEXT_OUTPUT\"\n    data_type: TYPE_STRING\n    dims: [ 1 ]\n"
                       "  },\n  {\n    name: \"FINISH_REASON\"\n    data_type: TYPE_STRING\n    dims: [ 1 ]\n  }\n]\n");
    td_pbtxt_printf(b, "instance_group [\n  {\n    count: %d\n    kind: KIND_CPU\n  }\n]\n", sp->nb_instances);
    char num[32];
    td_triton_put_param(b, "task", "text-generation");
    snprintf(num, sizeof num, "%lld", (long long)sp->max_new_tokens);
    td_triton_put_param(b, "max_new_tokens", num);
    snprintf(num, sizeof num, "%d", sp->threads);
    td_triton_put_param(b, "threads", num);
    td_triton_put_param(b, "precision", sp->precision ? sp->precision : "fp32");
}

td_status td_triton_write_generation_model(td_ctx *ctx, const td_triton_gen_spec *sp, const char *root) {
    if (!td_triton_safe_model_name(sp->name))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "Triton model name '%s': use 1..128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
                       sp->name ? sp->name : "");
    if (sp->nb_instances < 1 || sp->max_new_tokens < 1 || sp->max_new_tokens > (1 << 24))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "Triton model %s: instances %d and max_new_tokens %lld must be >= 1 (max_new_tokens <= %d)",
                       sp->name, sp->nb_instances, (long long)sp->max_new_tokens, 1 << 24);
    if (sp->precision && strcmp(sp->precision, "fp32") != 0 && strcmp(sp->precision, "fp16") != 0 &&
        strcmp(sp->precision, "bf16") != 0)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "Triton model %s: precision %s is not fp32, fp16 or bf16",
                       sp->name, sp->precision);
    td_pbtxt b = {0};
    char *dir = NULL, *ver = NULL;
    td_status s;
    if ((s = td_triton_make_subdir(ctx, root, sp->name, &dir)) != TD_OK ||
        (s = td_triton_make_subdir(ctx, dir, "1", &ver)) != TD_OK)
        goto out;
    generation_config(&b, sp);
    if ((s = td_triton_write_text(ctx, dir, "config.pbtxt", &b)) != TD_OK)
        goto out;
    if ((s = td_triton_place_model(ctx, sp->onnx_path, sp->external_data, sp->n_external_data, ver)) != TD_OK)
        goto out;
    /* the generator reads its tokenizer, eos ids and context from these, beside the model */
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "config.json", "generation_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if ((s = td_triton_place_file(ctx, sp->model_dir, files[i], ver, i == 0)) != TD_OK)
            goto out;
out:
    td_pbtxt_free(&b);
    free(dir);
    free(ver);
    return s;
}
