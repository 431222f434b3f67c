/* `tdeploy run` on a decoder: the texts are prompts and the answer is generated
 * text, through the same code as `tdeploy generate` (its defaults: greedy, 32 new
 * tokens, the model's eos). Detection is cheap (config.json or --task), so an
 * encoder run pays nothing for it. */
#define _GNU_SOURCE
#include "cli/cli.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "export/decoder_spec.h"
#include "export/export.h"
#include "generate/generator.h"
#include "hf/config.h"
#include "hf/model_dir.h"

#include <dirent.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* config.json of the model directory, or beside an .onnx file; NULL when there is none. */
static td_hf_config *config_of(td_ctx *ctx, const char *model) {
    char *dir = NULL, *rev = NULL, *path = NULL;
    size_t n = strlen(model);
    if (n > 5 && !strcmp(model + n - 5, ".onnx") && td_is_file(model)) {
        char *copy = strdup(model);
        dir = copy ? strdup(dirname(copy)) : NULL;
        free(copy);
    } else if (td_model_dir_resolve(ctx, model, &dir, &rev) != TD_OK) {
        dir = NULL;
    }
    td_hf_config *cfg = NULL;
    if (dir && td_path_join(ctx, dir, "config.json", false, &path) == TD_OK && td_is_file(path) &&
        td_hf_config_load(ctx, path, &cfg) != TD_OK)
        cfg = NULL;
    free(dir);
    free(rev);
    free(path);
    return cfg;
}

/* A model directory / hub id without config.json holding one .gguf file (generator.h). */
static bool dir_has_gguf(td_ctx *ctx, const char *model) {
    (void)ctx;
    char *g = td_generator_find_gguf(model);
    free(g);
    return g != NULL;
}

bool td_run_is_decoder(const char *model, const char *tokenizer, td_export_task task) {
    if (task != TD_TASK_AUTO)
        return task == TD_TASK_TEXT_GENERATION;
    td_ctx *ctx = td_ctx_new();
    if (!ctx)
        return false;
    size_t n = strlen(model);
    if (n > 5 && !strcmp(model + n - 5, ".gguf")) {
        td_ctx_free(ctx);
        return true;
    }
    td_hf_config *cfg = config_of(ctx, model);
    /* an .onnx without config.json beside it: the --tokenizer directory's (where run reads it too) */
    if (!cfg && tokenizer && n > 5 && !strcmp(model + n - 5, ".onnx")) {
        char *path = NULL;
        if (td_path_join(ctx, tokenizer, "config.json", false, &path) == TD_OK && td_is_file(path) &&
            td_hf_config_load(ctx, path, &cfg) != TD_OK)
            cfg = NULL;
        free(path);
    }
    bool dec = td_decoder_family(cfg) || (!cfg && dir_has_gguf(ctx, model));
    td_hf_config_free(cfg);
    td_ctx_free(ctx);
    return dec;
}

int td_run_decoder(const char *model, const char *tokenizer, const char *const *texts, size_t n, int64_t threads,
                   bool json, const char *texts_file) {
    if (texts_file)
        return td_cli_usage_error("run", "%s is a decoder: give its prompts with --text (or use tdeploy generate)",
                                  model);
    if (n == 0)
        return td_cli_usage_error("run", "give a prompt with --text");
    size_t cap = 2 * n + 8;
    char **argv = calloc(cap, sizeof *argv);
    char threads_s[24];
    if (!argv) {
        fprintf(stderr, "tdeploy run: out of memory\n");
        return TD_EXIT_FAIL;
    }
    int k = 0;
    argv[k++] = (char *)"run"; /* td_cmd_generate names the command the user typed */
    argv[k++] = (char *)model;
    for (size_t i = 0; i < n; i++) {
        argv[k++] = (char *)"--prompt";
        argv[k++] = (char *)texts[i];
    }
    if (tokenizer) {
        argv[k++] = (char *)"--tokenizer";
        argv[k++] = (char *)tokenizer;
    }
    if (threads > 0) {
        snprintf(threads_s, sizeof threads_s, "%lld", (long long)threads);
        argv[k++] = (char *)"--threads";
        argv[k++] = threads_s;
    }
    if (json)
        argv[k++] = (char *)"--json";
    int rc = td_cmd_generate(k, argv);
    free(argv);
    return rc;
}
