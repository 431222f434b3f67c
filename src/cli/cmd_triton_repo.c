/* tdeploy triton-repo: write a Triton model repository for an ONNX file (or a
 * convert output folder): one model on the tdeploy backend (token tensors, and
 * TEXT with --tokenizer), or an ONNX Runtime model (with --tokenizer a Python
 * tokenizer model and a text-in ensemble), or both; for a decoder (also from an
 * HF folder or a GGUF file, triton_repo_source.h) the decoupled generation model
 * convert writes. */
#include "cli/cli.h"
#include "cli/triton_repo_source.h"

#include "deploy/onnx_signature.h"
#include "core/fs.h"
#include "core/log.h"
#include "deploy/triton.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: tdeploy triton-repo MODEL -o OUT [--name NAME] [--task TASK] [--tokenizer DIR]\n"
            "           [--triton-backend tdeploy|onnxruntime|both] [--batch-size MIN OPT MAX] [--nb-instances N]\n"
            "           [--device cpu|cuda] [--max-queue-delay-us N] [--max-length N] [--threads N]\n"
            "           [--precision fp32|fp16|bf16] [--max-new-tokens N] [--force] [--json] [-q|-v]\n\n"
            "MODEL: an ONNX file, a `tdeploy convert` output folder (its model-optimized.onnx, tokenizer and config\n"
            "files), or, for a decoder, a Hugging Face folder / cached org/name or a .gguf file (exported and\n"
            "optimized as convert does, in a temporary folder next to OUT).\n"
            "--triton-backend tdeploy (default) writes OUT/NAME for Triton's tdeploy backend (libtriton_tdeploy.so):\n"
            "token tensors in, and with --tokenizer also raw TEXT (+ TEXT_PAIR) tokenized inside the backend;\n"
            "the ONNX file becomes NAME/1/model-optimized.onnx. onnxruntime writes OUT/NAME (onnxruntime_onnx),\n"
            "and with --tokenizer also OUT/NAME_tokenize (Python backend, HF tokenizers on DIR/tokenizer.json)\n"
            "and OUT/NAME_inference (ensemble: TEXT -> tokenizer -> model -> the model's outputs). both writes\n"
            "the tdeploy model as NAME and the ONNX Runtime models as NAME_onnxruntime*.\n"
            "A decoder (task text-generation: --task, an HF folder or GGUF, or an ONNX graph with\n"
            "past_key_values.N inputs) becomes the decoupled model `convert --task text-generation` writes:\n"
            "OUT/NAME streams TEXT_OUTPUT pieces of each TEXT prompt and ends with FINISH_REASON \"eos\", \"length\"\n"
            "or \"context\" (docs/deploy.md); its tokenizer and config files come from --tokenizer DIR, else the\n"
            "model's folder. Decoupled models are unbatched: --batch-size, --max-queue-delay-us and --max-length\n"
            "do not apply to them.\n"
            "The ONNX file and its external data are copied, reflinked where possible.\n"
            "Everything is written into a temporary directory first. A new OUT is moved into place when complete;\n"
            "in an existing repository only this model's folders are swapped in, other models are left alone.\n\n"
            "  --name NAME            model name (default: model)\n"
            "  --task T               recorded in the ensemble (feature-extraction, embedding, classification,\n"
            "                         token-classification, question-answering, or an alias such as ner);\n"
            "                         text-generation: the decoupled generation model (found by itself for a\n"
            "                         decoder)\n"
            "  --batch-size MIN OPT MAX  max_batch_size = MAX, preferred batch sizes OPT and MAX\n"
            "                         (default 1 8 32; MAX 0 disables Triton batching: onnxruntime only)\n"
            "  --nb-instances N       instances of each model (default 1)\n"
            "  --device cpu|cuda      where the model runs (default cpu; gpu = cuda; the tokenizer always\n"
            "                         runs on CPU)\n"
            "  --max-queue-delay-us N dynamic batching delay (default 0: a lone request is not held back; under\n"
            "                         load batches form while the instance is busy)\n"
            "  --force                replace folders of this model's names that tdeploy did not write\n"
            "  --max-length N         tokenizer truncation (default: the model's fixed sequence length, else\n"
            "                         the model's max length as `tdeploy run` cuts: DIR's config.json positions,\n"
            "                         capped by sentence_bert_config.json max_seq_length, else by\n"
            "                         tokenizer_config.json model_max_length)\n"
            "  --threads N            tdeploy backend: threads per instance (default 0: one per core)\n"
            "  --precision P          tdeploy backend: fp32 | fp16 | bf16 weights (default fp32)\n"
            "  --max-new-tokens N     text generation: new tokens of a request without max_new_tokens (default 64)\n"
            "  --json                 print {\"repository\", \"models\"} as JSON instead of the repository path\n");
}

/* A decoder with a KV cache in the Optimum layout (export/decoder.h): past_key_values.N inputs. */
static bool is_decoder(const td_onnx_signature *sig) {
    for (size_t i = 0; i < sig->n_inputs; i++)
        if (strncmp(sig->inputs[i].name, "past_key_values.", 16) == 0)
            return true;
    return false;
}

static bool has_tokenizer(const char *dir) {
    char p[4096];
    return snprintf(p, sizeof p, "%s/tokenizer.json", dir) < (int)sizeof p && td_is_file(p);
}

/* The flags that do not apply to the decoupled generation model: a usage error (exit 2), else TD_EXIT_OK. */
static int generation_flags_error(const td_triton_spec *sp, bool batch_flags) {
    if (batch_flags)
        return td_cli_usage_error("triton-repo", "text generation is served unbatched (decoupled, one prompt per "
                                  "request): --batch-size, --max-queue-delay-us and --max-length do not apply");
    if (sp->serving != TD_TRITON_SERVE_TDEPLOY || sp->device != TD_TRITON_CPU)
        return td_cli_usage_error("triton-repo", "text generation is served by the tdeploy backend on CPU instances "
                                  "only: use --triton-backend tdeploy and --device cpu");
    return TD_EXIT_OK;
}

int td_cmd_triton_repo(int argc, char **argv) {
    const char *model = NULL, *out_dir = NULL;
    bool json = false, task_generation = false, batch_flags = false, max_new_given = false;
    int64_t max_new_tokens = 64;
    td_triton_spec sp = {.name = "model", .batch_min = 1, .batch_opt = 8, .batch_max = 32, .nb_instances = 1,
                         .max_queue_delay_us = TD_TRITON_DEFAULT_QUEUE_DELAY_US, .device = TD_TRITON_CPU,
                         .serving = TD_TRITON_SERVE_TDEPLOY};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int64_t v;
#define NEED(k)                                                                  \
    if (i + (k) >= argc)                                                         \
        return td_cli_usage_error("triton-repo", "%s needs %d value(s)", a, (k));
        if (td_cli_is_help(a)) {
            usage(stdout);
            return TD_EXIT_OK;
        } else if (td_cli_common_flag(a)) {
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            NEED(1);
            out_dir = argv[++i];
        } else if (strcmp(a, "--name") == 0) {
            NEED(1);
            sp.name = argv[++i];
        } else if (strcmp(a, "--task") == 0) {
            NEED(1);
            td_export_task task;
            int rc = td_cli_parse_task("triton-repo", argv[++i], &task);
            if (rc >= 0)
                return rc;
            task_generation = task == TD_TASK_TEXT_GENERATION;
            sp.task = td_export_task_name(task); /* the canonical name, whatever alias was given */
        } else if (strcmp(a, "--tokenizer") == 0) {
            NEED(1);
            sp.tokenizer_dir = argv[++i];
        } else if (strcmp(a, "--batch-size") == 0) {
            NEED(3);
            if (!td_cli_parse_i64(argv[i + 1], 0, 1 << 30, &sp.batch_min) || !td_cli_parse_i64(argv[i + 2], 0, 1 << 30, &sp.batch_opt) ||
                !td_cli_parse_i64(argv[i + 3], 0, 1 << 30, &sp.batch_max))
                return td_cli_usage_error("triton-repo", "--batch-size takes three integers MIN OPT MAX");
            i += 3;
            batch_flags = true;
        } else if (strcmp(a, "--nb-instances") == 0) {
            NEED(1);
            if (!td_cli_parse_i64(argv[++i], 1, 1024, &v))
                return td_cli_usage_error("triton-repo", "--nb-instances takes an integer from 1 to 1024");
            sp.nb_instances = (int)v;
        } else if (strcmp(a, "--device") == 0) {
            NEED(1);
            bool cuda;
            int rc = td_cli_parse_device("triton-repo", argv[++i], &cuda);
            if (rc >= 0)
                return rc;
            sp.device = cuda ? TD_TRITON_GPU : TD_TRITON_CPU;
        } else if (strcmp(a, "--max-queue-delay-us") == 0) {
            NEED(1);
            if (!td_cli_parse_i64(argv[++i], 0, 1LL << 40, &sp.max_queue_delay_us))
                return td_cli_usage_error("triton-repo", "--max-queue-delay-us takes a non-negative integer");
            batch_flags = true;
        } else if (strcmp(a, "--force") == 0) {
            sp.force = true;
        } else if (strcmp(a, "--triton-backend") == 0) {
            NEED(1);
            if (!td_triton_serving_parse(argv[++i], &sp.serving))
                return td_cli_usage_error("triton-repo", "--triton-backend takes tdeploy, onnxruntime or both, not '%s'",
                                          argv[i]);
        } else if (strcmp(a, "--threads") == 0) {
            NEED(1);
            if (!td_cli_parse_i64(argv[++i], 0, 1024, &v))
                return td_cli_usage_error("triton-repo", "--threads takes an integer from 0 to 1024");
            sp.threads = (int)v;
        } else if (strcmp(a, "--precision") == 0) {
            NEED(1);
            sp.precision = argv[++i];
            if (strcmp(sp.precision, "fp32") != 0 && strcmp(sp.precision, "fp16") != 0 &&
                strcmp(sp.precision, "bf16") != 0)
                return td_cli_usage_error("triton-repo", "--precision takes fp32, fp16 or bf16, not '%s'",
                                          sp.precision);
        } else if (strcmp(a, "--max-length") == 0) {
            NEED(1);
            if (!td_cli_parse_i64(argv[++i], 1, 1 << 24, &sp.max_length))
                return td_cli_usage_error("triton-repo", "--max-length takes a positive integer");
            batch_flags = true;
        } else if (strcmp(a, "--max-new-tokens") == 0) {
            NEED(1);
            if (!td_cli_parse_i64(argv[++i], 1, 1 << 24, &max_new_tokens))
                return td_cli_usage_error("triton-repo", "--max-new-tokens takes an integer from 1 to %d", 1 << 24);
            max_new_given = true;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (a[0] == '-') {
            return td_cli_usage_error("triton-repo", "unknown flag '%s'", a);
        } else if (!model) {
            model = a;
        } else {
            return td_cli_usage_error("triton-repo", "unexpected argument '%s'", a);
        }
#undef NEED
    }
    if (!model || !out_dir)
        return td_cli_usage_error("triton-repo", "need a MODEL (ONNX file, convert output folder, HF folder or GGUF) "
                                  "and -o OUT");
    if (sp.batch_max == 0)
        sp.batch_min = sp.batch_opt = 0;
    /* a decoder known from the flags or the path: flags it cannot take are usage errors before any export */
    if ((task_generation || td_triton_repo_source_exports(model)) &&
        (batch_flags || sp.serving != TD_TRITON_SERVE_TDEPLOY || sp.device != TD_TRITON_CPU))
        return generation_flags_error(&sp, batch_flags);

    td_ctx *ctx = td_ctx_new();
    if (!ctx) {
        fprintf(stderr, "tdeploy triton-repo: out of memory\n");
        return TD_EXIT_FAIL;
    }
    td_onnx_signature sig = {0};
    td_triton_repo_source src = {0};
    int rc = TD_EXIT_OK;
    td_status s = td_triton_repo_source_open(ctx, model, out_dir, &src);
    if (s == TD_OK)
        s = td_onnx_signature_read(ctx, src.onnx_path, &sig);
    if (s == TD_OK) {
        sp.onnx_path = src.onnx_path;
        sp.external_data = (const char *const *)sig.external_data;
        sp.n_external_data = sig.n_external_data;
        sp.generation = task_generation || src.exported || is_decoder(&sig);
        if (sp.generation) {
            rc = !is_decoder(&sig)
                     ? td_cli_usage_error("triton-repo", "--task text-generation: %s is not a decoder with a KV cache "
                                          "(no past_key_values.N inputs); export it with `tdeploy export --task "
                                          "text-generation`",
                                          sp.onnx_path)
                     : generation_flags_error(&sp, batch_flags);
            sp.tokenizer_dir = sp.tokenizer_dir ? sp.tokenizer_dir : src.files_dir;
            sp.max_new_tokens = max_new_tokens;
            sp.task = "text-generation";
        } else if (max_new_given) {
            rc = td_cli_usage_error("triton-repo", "--max-new-tokens is for text generation; %s is not a decoder "
                                    "(no past_key_values.N inputs)", model);
        } else {
            sp.inputs = sig.inputs;
            sp.n_inputs = sig.n_inputs;
            sp.outputs = sig.outputs;
            sp.n_outputs = sig.n_outputs;
            /* a convert output folder carries its tokenizer: TEXT in as convert's own repository has */
            if (!sp.tokenizer_dir && strcmp(src.onnx_path, model) != 0 && has_tokenizer(src.files_dir))
                sp.tokenizer_dir = src.files_dir;
        }
        if (rc == TD_EXIT_OK)
            s = td_triton_write_repository(ctx, &sp, out_dir);
    }
    if (rc != TD_EXIT_OK) {
    } else if (s != TD_OK) {
        rc = td_cli_report("triton-repo", ctx, s);
    } else if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "repository", out_dir);
        cJSON *models = cJSON_AddArrayToObject(j, "models");
        cJSON_AddItemToArray(models, cJSON_CreateString(sp.name));
        /* the ONNX Runtime models: NAME itself, or NAME_onnxruntime beside the tdeploy model with "both" */
        const char *ort = sp.serving == TD_TRITON_SERVE_BOTH ? "_onnxruntime" : "";
        char name[512];
        if (sp.serving == TD_TRITON_SERVE_BOTH) {
            snprintf(name, sizeof name, "%s_onnxruntime", sp.name);
            cJSON_AddItemToArray(models, cJSON_CreateString(name));
        }
        if (sp.tokenizer_dir && sp.serving != TD_TRITON_SERVE_TDEPLOY) {
            snprintf(name, sizeof name, "%s%s_tokenize", sp.name, ort);
            cJSON_AddItemToArray(models, cJSON_CreateString(name));
            snprintf(name, sizeof name, "%s%s_inference", sp.name, ort);
            cJSON_AddItemToArray(models, cJSON_CreateString(name));
        }
        cJSON_AddStringToObject(j, "triton_backend", sp.serving == TD_TRITON_SERVE_TDEPLOY ? "tdeploy"
                                                     : sp.serving == TD_TRITON_SERVE_BOTH  ? "both"
                                                                                            : "onnxruntime");
        cJSON_AddStringToObject(j, "device", sp.device == TD_TRITON_GPU ? "cuda" : "cpu");
        if (sp.task)
            cJSON_AddStringToObject(j, "task", sp.task);
        rc = td_cli_print_json("triton-repo", j);
    } else {
        printf("%s\n", out_dir);
    }
    for (size_t i = 0; s == TD_OK && i < sig.n_inputs + sig.n_outputs; i++) { /* -v: the served interface */
        const td_triton_tensor *t = i < sig.n_inputs ? &sig.inputs[i] : &sig.outputs[i - sig.n_inputs];
        char dims[160] = "";
        for (size_t d = 0, pos = 0; d < t->ndim && pos < sizeof dims; d++)
            pos += (size_t)snprintf(dims + pos, sizeof dims - pos, "%s%lld", d ? ", " : "", (long long)t->dims[d]);
        td_debug("triton-repo: %s %s %s [%s]", sp.name, i < sig.n_inputs ? "input " : "output", t->name, dims);
    }
    td_onnx_signature_free(&sig);
    td_triton_repo_source_close(&src);
    td_ctx_free(ctx);
    return rc;
}
