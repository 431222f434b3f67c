/* Task names (see task.h): canonical names, the aliases users bring from other
 * tools, and the tasks and model families refused as "not supported (yet)". */
#include "export/task.h"

#include "core/ctx.h"
#include "core/str.h"

#include <stdio.h>
#include <string.h>

static const char *const k_task_names[] = {"auto", "feature-extraction", "embedding", "classification",
                                           "token-classification", "question-answering", "text-generation"};

/* Every accepted spelling. Sources: transformers pipeline names and their aliases
 * ("sentiment-analysis", "ner"), Optimum export tasks ("default", "text-classification",
 * "sentence-similarity"), transformer-deploy ("embedding", "classification"). */
static const struct {
    const char *name;
    td_export_task task;
} k_aliases[] = {
    {"auto", TD_TASK_AUTO},
    {"feature-extraction", TD_TASK_FEATURES},
    {"features", TD_TASK_FEATURES},
    {"default", TD_TASK_FEATURES}, /* Optimum's name for the bare encoder */
    {"embedding", TD_TASK_EMBEDDING},
    {"embeddings", TD_TASK_EMBEDDING},
    {"sentence-embedding", TD_TASK_EMBEDDING},
    {"sentence-embeddings", TD_TASK_EMBEDDING},
    {"sentence-similarity", TD_TASK_EMBEDDING},
    {"classification", TD_TASK_CLASSIFICATION},
    {"text-classification", TD_TASK_CLASSIFICATION},
    {"sequence-classification", TD_TASK_CLASSIFICATION},
    {"sentiment-analysis", TD_TASK_CLASSIFICATION},
    {"token-classification", TD_TASK_TOKEN_CLASSIFICATION},
    {"ner", TD_TASK_TOKEN_CLASSIFICATION},
    {"question-answering", TD_TASK_QUESTION_ANSWERING},
    {"qa", TD_TASK_QUESTION_ANSWERING},
    {"text-generation", TD_TASK_TEXT_GENERATION},
    {"text-generation-with-past", TD_TASK_TEXT_GENERATION}, /* Optimum's name for the KV-cache export */
    {"causal-lm", TD_TASK_TEXT_GENERATION},
    {"causal-lm-with-past", TD_TASK_TEXT_GENERATION},
};

/* Tasks users ask for that tdeploy cannot run yet (transformers / Optimum names). */
static const char *const k_not_yet[] = {
    "text2text-generation",
    "text2text-generation-with-past", "seq2seq-lm", "summarization", "translation", "fill-mask", "masked-lm",
    "zero-shot-classification", "multiple-choice", "table-question-answering", "document-question-answering",
    "image-classification", "object-detection", "image-segmentation", "automatic-speech-recognition",
    "audio-classification", "image-to-text", "conversational", "feature-extraction-with-past",
};

/* model_type values of generation models (decoders and encoder-decoders). */
static const char *const k_generation_types[] = {
    "gpt2", "gptj", "gpt_neo", "gpt_neox", "gpt_bigcode", "llama", "mistral", "mixtral", "phi", "phi3", "qwen2",
    "qwen2_moe", "qwen3", "gemma", "gemma2", "gemma3", "falcon", "bloom", "opt", "mpt", "codegen", "starcoder2",
    "olmo", "t5", "mt5", "bart", "mbart", "marian", "pegasus", "whisper",
};

static const char *const k_generation_arch_suffixes[] = {"ForCausalLM", "LMHeadModel", "ForConditionalGeneration"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *td_export_task_name(td_export_task t) {
    return (unsigned)t < COUNT(k_task_names) ? k_task_names[t] : "?";
}

bool td_export_task_parse(const char *s, td_export_task *out) {
    for (size_t i = 0; s && i < COUNT(k_aliases); i++)
        if (strcmp(s, k_aliases[i].name) == 0) {
            *out = k_aliases[i].task;
            return true;
        }
    return false;
}

const char *td_task_names(void) {
    return "feature-extraction, embedding, classification, token-classification, question-answering, "
           "text-generation";
}

td_status td_task_from_name(td_ctx *ctx, const char *name, td_export_task *out) {
    if (td_export_task_parse(name, out))
        return TD_OK;
    for (size_t i = 0; i < COUNT(k_not_yet); i++)
        if (strcmp(name, k_not_yet[i]) == 0)
            return td_fail(ctx, TD_ERR_UNSUPPORTED,
                           "task '%s' is not supported (yet); tdeploy runs encoder models and causal decoders "
                           "for %s", name, td_task_names());
    return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                   "unknown task '%s' (tasks: %s; also accepted: text-classification, sentiment-analysis, "
                   "sentence-similarity, embeddings, ner, qa, default)",
                   name, td_task_names());
}

bool td_task_is_generation_model(const char *model_type, const char *const *architectures, size_t n_architectures) {
    for (size_t i = 0; model_type && i < COUNT(k_generation_types); i++)
        if (strcmp(model_type, k_generation_types[i]) == 0)
            return true;
    for (size_t a = 0; a < n_architectures; a++)
        for (size_t i = 0; architectures[a] && i < COUNT(k_generation_arch_suffixes); i++)
            if (td_str_ends_with(architectures[a], k_generation_arch_suffixes[i]))
                return true;
    return false;
}

td_status td_task_refuse_generation_model(td_ctx *ctx, const char *what, const char *why) {
    return td_fail(ctx, TD_ERR_UNSUPPORTED,
                   "%s is a text-generation model (%s): running it as an encoder is not supported (yet) and never "
                   "will be; generate text with `tdeploy generate` (gpt2, llama, mistral, qwen2, phi3 decoders from "
                   "their model directory, a GGUF file, or an .onnx exported with --task text-generation)",
                   what, why);
}
