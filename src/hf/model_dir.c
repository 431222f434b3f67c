/* Resolve -m MODEL to a directory (plain or HF cache snapshot) and load it. */
#define _GNU_SOURCE
#include "hf/model_dir.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "hf/hub.h"
#include "hf/max_length.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void td_model_dir_free(td_model_dir *md) {
    if (!md)
        return;
    free(md->source);
    free(md->path);
    free(md->revision);
    td_hf_config_free(md->config);
    td_checkpoint_close(md->checkpoint);
    td_st_info_free(md->st);
    td_tokenizer_config_free(md->tokenizer_config);
    free(md->tokenizer_json);
    free(md);
}

/* -m ORG/NAME: the snapshot refs/main names in the Hugging Face cache, found
 * exactly as `tdeploy download` finds it (hf/hub_cache.c), so that a model
 * just downloaded is the model opened. */
td_status td_model_dir_resolve(td_ctx *ctx, const char *model, char **dir, char **revision) {
    *dir = NULL;
    *revision = NULL;
    if (!model || !*model)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "no model given; pass a model directory or a hub id (org/name)");
    if (td_is_dir(model)) {
        *dir = strdup(model);
        return *dir ? TD_OK : td_fail_oom(ctx, strlen(model), "a path");
    }
    td_ctx quiet = {0};
    if (td_hub_check_repo_id(&quiet, model) != TD_OK)
        return td_fail(ctx, TD_ERR_NOT_FOUND,
                       "model '%s' not found; looked at: %s (not a directory). Pass a directory written by "
                       "save_pretrained or a hub id (org/name) that is in the local Hugging Face cache",
                       model, model);
    char *snap = NULL;
    td_status s = td_hub_cached_snapshot(&quiet, model, "main", NULL, &snap);
    if (s == TD_ERR_NOT_FOUND || s == TD_ERR_INVALID_ARGUMENT)
        return td_fail(ctx, TD_ERR_NOT_FOUND,
                       "model '%s' not found; looked at: %s (not a directory), then the Hugging Face cache: %s. "
                       "Download it first (tdeploy download %s) or pass a directory written by save_pretrained",
                       model, model, quiet.message, model);
    if (s != TD_OK)
        return td_fail(ctx, s, "%s", quiet.message);
    const char *slash = strrchr(snap, '/');
    if (!(*revision = strdup(slash ? slash + 1 : snap))) {
        free(snap);
        return td_fail_oom(ctx, strlen(snap), "a revision");
    }
    *dir = snap;
    return TD_OK;
}

/* Pickled weights only: say how to convert, never load them. */
static td_status check_pickles(td_ctx *ctx, const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return td_fail(ctx, TD_ERR_IO, "cannot list %s", dir);
    char found[256] = "";
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        const char *ext = strrchr(e->d_name, '.');
        if (ext && n > 3 && (strcmp(ext, ".bin") == 0 || strcmp(ext, ".pt") == 0 || strcmp(ext, ".pth") == 0 ||
                             strcmp(ext, ".ckpt") == 0)) {
            snprintf(found, sizeof found, "%s", e->d_name);
            break;
        }
    }
    closedir(d);
    if (found[0])
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "%s has weights only in %s, a pickle file; tdeploy does not unpickle (it can run arbitrary "
                       "code). Convert it to safetensors first, for example: python -c \"from transformers import "
                       "AutoModel; AutoModel.from_pretrained('%s').save_pretrained('%s', safe_serialization=True)\" "
                       "(or the safetensors project's convert.py)",
                       dir, found, dir, dir);
    return td_fail(ctx, TD_ERR_NOT_FOUND, "%s has no model.safetensors or model.safetensors.index.json; tdeploy "
                   "reads weights from safetensors files", dir);
}

td_status td_model_dir_open(td_ctx *ctx, const char *model, td_model_dir **out) {
    *out = NULL;
    td_status s = TD_OK;
    char *p = NULL;
    td_model_dir *md = calloc(1, sizeof *md);
    if (!md || !(md->source = strdup(model ? model : ""))) {
        free(md);
        return td_fail_oom(ctx, sizeof *md, "a model directory");
    }
    if ((s = td_model_dir_resolve(ctx, model, &md->path, &md->revision)) != TD_OK)
        goto out;
    if ((s = td_path_join(ctx, md->path, "config.json", false, &p)) != TD_OK)
        goto out;
    if (!td_is_file(p)) {
        s = td_fail(ctx, TD_ERR_NOT_FOUND, "%s has no config.json (looked for %s); it is not a Hugging Face model "
                    "directory written by save_pretrained", md->path, p);
        goto out;
    }
    if ((s = td_hf_config_load(ctx, p, &md->config)) != TD_OK)
        goto out;
    free(p);
    p = NULL;

    char *single = NULL, *index = NULL;
    if ((s = td_path_join(ctx, md->path, "model.safetensors", false, &single)) != TD_OK)
        goto out;
    if ((s = td_path_join(ctx, md->path, "model.safetensors.index.json", false, &index)) != TD_OK) {
        free(single);
        goto out;
    }
    bool have_weights = td_is_file(single) || td_is_file(index);
    free(single);
    free(index);
    if (!have_weights) {
        s = check_pickles(ctx, md->path);
        goto out;
    }
    if ((s = td_checkpoint_open(ctx, md->path, &md->checkpoint)) != TD_OK)
        goto out;
    if ((s = td_st_info_load(ctx, md->path, &md->st)) != TD_OK)
        goto out;

    if ((s = td_path_join(ctx, md->path, "tokenizer_config.json", false, &p)) != TD_OK)
        goto out;
    if (td_is_file(p) && (s = td_tokenizer_config_load(ctx, p, &md->tokenizer_config)) != TD_OK)
        goto out;
    free(p);
    p = NULL;
    if ((s = td_path_join(ctx, md->path, "tokenizer.json", false, &p)) != TD_OK)
        goto out;
    if (td_is_file(p)) {
        md->tokenizer_json = p;
        p = NULL;
    }

    const td_hf_config *c = md->config;
    if (td_hf_position_limit(c) < 1) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: max_position_embeddings %lld leaves no positions after pad_token_id "
                    "%lld", c->path, (long long)c->max_position_embeddings, (long long)c->pad_token_id);
        goto out;
    }
    md->max_seq_length = td_hf_max_length(c, md->st ? md->st->max_seq_length : -1,
                                          md->tokenizer_config ? md->tokenizer_config->model_max_length : -1,
                                          &md->max_seq_length_source);
out:
    free(p);
    if (s != TD_OK)
        td_model_dir_free(md);
    else
        *out = md;
    return s;
}
