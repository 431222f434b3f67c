/* tdeploy export: Hugging Face model (encoder, or decoder with a KV cache; or a GGUF decoder) -> standard ONNX. */
#include "cli/cli.h"

#include "core/ctx.h"
#include "core/log.h"
#include "core/str.h"
#include "export/export.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: tdeploy export -m MODEL [--task T] [-o model.onnx] [--opset N] [--precision fp32|fp16|int8]\n"
            "                      [--int32-inputs] [--cache-output] [--json] [-q|-v]\n\n"
            "Build a standard ONNX graph for a Hugging Face model directly from its config.json and\n"
            "safetensors weights (no tracing). Supported: bert, roberta, xlm-roberta, distilbert, electra,\n"
            "and sentence-transformers directories built on them; decoders gpt2, llama, mistral, qwen2, phi3\n"
            "(text-generation with a KV cache in Optimum's layout), also from llama.cpp .gguf files (llama,\n"
            "qwen2; Q4_0, Q4_1, Q8_0, Q4_K and Q6_K matrices stay in their blocks as com.microsoft\n"
            "MatMulNBits / GatherBlockQuantized, other types are dequantized to fp32).\n\n"
            "  -m, --model MODEL   model directory (config.json + *.safetensors) or a .gguf file\n"
            "  --task T            feature-extraction | embedding | classification | token-classification |\n"
            "                      question-answering | text-generation (default: from config.architectures /\n"
            "                      modules.json); also: text-classification, sentiment-analysis,\n"
            "                      sentence-similarity, ner, qa, causal-lm\n"
            "  -o, --output PATH   output file (default model.onnx); external data is written beside it\n"
            "                      automatically when the model exceeds 2 GB; weights of >= 4 KiB sit at\n"
            "                      8-byte aligned offsets (standard protobuf), so loading maps them in place\n"
            "  --opset N           ai.onnx opset, %d..%d (default %d)\n"
            "  --precision P       fp32 (default) or fp16 weights; LayerNorm, softmax and the mask stay fp32;\n"
            "                      a .gguf keeps its blocks (fp32 activations) unless --precision fp32\n"
            "                      (dequantized) is given; int8 (.gguf only): blocks kept, activations\n"
            "                      quantized to int8 per block as llama.cpp does (MatMulNBits accuracy_level 4)\n"
            "                      (--dtype is the older spelling, still accepted)\n"
            "  --int32-inputs      int32 graph inputs (TensorRT/Triton style), cast to int64 inside\n"
            "  --cache-output      leave the written file in the page cache (for a program that reads it\n"
            "                      right after); default: large outputs go to disk with O_DIRECT, faster\n"
            "                      to write, but the next reader reads them from disk\n"
            "  --json              print a JSON summary on stdout\n"
            "  -q, --quiet         no progress or info output\n"
            "  -v, --verbose       debug output\n",
            TD_EXPORT_OPSET_MIN, TD_EXPORT_OPSET_MAX, TD_EXPORT_OPSET_DEFAULT);
}

static int print_json(const td_export_summary *s, const char *output) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "output", output);
    cJSON_AddStringToObject(j, "model_type", s->model_type);
    cJSON_AddStringToObject(j, "architecture", s->architecture);
    cJSON_AddStringToObject(j, "task", td_export_task_name(s->task));
    cJSON_AddNumberToObject(j, "opset", s->opset);
    cJSON_AddStringToObject(j, "dtype", s->dtype == TD_F16 ? "fp16" : "fp32");
    cJSON_AddNumberToObject(j, "layers", (double)s->layers);
    cJSON_AddNumberToObject(j, "hidden_size", (double)s->hidden);
    cJSON_AddNumberToObject(j, "num_heads", (double)s->heads);
    cJSON_AddNumberToObject(j, "vocab_size", (double)s->vocab);
    if (s->num_labels)
        cJSON_AddNumberToObject(j, "num_labels", (double)s->num_labels);
    cJSON *in = cJSON_AddArrayToObject(j, "inputs");
    for (int i = 0; i < s->n_inputs; i++)
        cJSON_AddItemToArray(in, cJSON_CreateString(s->inputs[i]));
    cJSON *out = cJSON_AddArrayToObject(j, "outputs");
    for (int i = 0; i < s->n_outputs; i++)
        cJSON_AddItemToArray(out, cJSON_CreateString(s->outputs[i]));
    cJSON_AddNumberToObject(j, "initializers", s->n_initializers);
    cJSON_AddNumberToObject(j, "nodes", s->n_nodes);
    cJSON_AddNumberToObject(j, "weight_bytes", (double)s->weight_bytes);
    cJSON_AddNumberToObject(j, "file_bytes", (double)s->file_bytes);
    cJSON_AddBoolToObject(j, "external_data", s->external_data);
    cJSON_AddNumberToObject(j, "seconds", s->seconds);
    return td_cli_print_json("export", j);
}

int td_cmd_export(int argc, char **argv) {
    td_export_options opt = {.output = "model.onnx", .dtype = TD_F32};
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (td_cli_is_help(a)) {
            usage(stdout);
            return TD_EXIT_OK;
        } else if (td_cli_common_flag(a)) {
            continue;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--int32-inputs")) {
            opt.int32_inputs = true;
        } else if (!strcmp(a, "--cache-output")) {
            opt.cache_output = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-o") || !strcmp(a, "--output") ||
                   !strcmp(a, "--task") || !strcmp(a, "--opset") || !strcmp(a, "--precision") ||
                   !strcmp(a, "--dtype")) {
            if (!next)
                return td_cli_usage_error("export", "%s needs a value", a);
            i++;
            if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
                opt.model_dir = next;
            } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
                opt.output = next;
            } else if (!strcmp(a, "--task")) {
                int rc = td_cli_parse_task("export", next, &opt.task);
                if (rc >= 0)
                    return rc;
            } else if (!strcmp(a, "--opset")) {
                char *end = NULL;
                long v = strtol(next, &end, 10);
                if (!*next || *end || v < TD_EXPORT_OPSET_MIN || v > TD_EXPORT_OPSET_MAX)
                    return td_cli_usage_error("export", "--opset '%s' is not supported (supported: %d..%d)", next,
                                              TD_EXPORT_OPSET_MIN, TD_EXPORT_OPSET_MAX);
                opt.opset = (int)v;
            } else {
                if (!strcmp(next, "fp32") || !strcmp(next, "float32"))
                    opt.dtype = TD_F32, opt.gguf_dequantize = true; /* a GGUF's blocks too */
                else if (!strcmp(next, "fp16") || !strcmp(next, "float16"))
                    opt.dtype = TD_F16;
                else if (!strcmp(next, "int8"))
                    opt.gguf_int8_activations = true;
                else
                    return td_cli_usage_error("export", "%s '%s' is not supported (supported: fp32, fp16, int8)", a,
                                              next);
            }
        } else {
            return td_cli_usage_error("export", "unexpected argument '%s'", a);
        }
    }
    if (!opt.model_dir)
        return td_cli_usage_error("export", "-m MODEL is required");
    if (opt.gguf_int8_activations && !td_str_ends_with(opt.model_dir, ".gguf"))
        return td_cli_usage_error("export", "--precision int8 applies to a .gguf file (its blocks kept, int8 "
                                            "activations); quantize an HF model with `tdeploy optimize --precision int8`");
    td_ctx *ctx = td_ctx_new();
    if (!ctx) {
        fprintf(stderr, "tdeploy export: out of memory\n");
        return TD_EXIT_FAIL;
    }
    td_export_summary sum;
    td_status st = td_export_to_file(ctx, &opt, &sum);
    int rc = TD_EXIT_OK;
    if (st != TD_OK) {
        rc = td_cli_report("export", ctx, st);
    } else if (json) {
        rc = print_json(&sum, opt.output);
    } else {
        td_info("exported %s (%s, task %s, opset %d, %s) -> %s: %d nodes, %d initializers, %.1f MB, %.2f s",
                sum.architecture[0] ? sum.architecture : sum.model_type, sum.model_type, td_export_task_name(sum.task),
                sum.opset, sum.dtype == TD_F16 ? "fp16" : "fp32", opt.output, sum.n_nodes, sum.n_initializers,
                (double)sum.file_bytes / 1e6, sum.seconds);
    }
    if (st == TD_OK) { /* -v: the graph's interface and sizes */
        td_debug("export: %lld layers, hidden %lld, %lld heads, vocabulary %lld%s", (long long)sum.layers,
                 (long long)sum.hidden, (long long)sum.heads, (long long)sum.vocab,
                 sum.external_data ? ", weights in an external data file" : "");
        for (int i = 0; i < sum.n_inputs; i++)
            td_debug("export: input  %s", sum.inputs[i]);
        for (int i = 0; i < sum.n_outputs; i++)
            td_debug("export: output %s", sum.outputs[i]);
        td_debug("export: %.1f MB of weights, %.1f MB file", (double)sum.weight_bytes / 1e6,
                 (double)sum.file_bytes / 1e6);
    }
    td_ctx_free(ctx);
    return rc;
}
