/* Resolve -m MODEL to a directory (plain or HF cache snapshot) and load it. */
#define _GNU_SOURCE
#include "hf/model_dir.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "hf/max_length.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LOOKED_MAX 2048

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

/* A hub repo id: "name" or "org/name" of [A-Za-z0-9._-], no "..", no leading '.' or '-'. */
static bool is_repo_id(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 200 || strstr(s, "..") || strstr(s, "--"))
        return false;
    int slashes = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '/') {
            if (++slashes > 1 || i == 0 || i == n - 1)
                return false;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                     c == '_' || c == '-')) {
            return false;
        }
    }
    return s[0] != '.' && s[0] != '-';
}

/* The hub cache directory huggingface_hub would use, malloc'd. */
static char *hub_cache_dir(void) {
    const char *v = getenv("HF_HUB_CACHE");
    char *out = NULL;
    if (v && *v)
        return strdup(v);
    v = getenv("HF_HOME");
    if (v && *v)
        return asprintf(&out, "%s/hub", v) < 0 ? NULL : out;
    v = getenv("XDG_CACHE_HOME");
    if (v && *v)
        return asprintf(&out, "%s/huggingface/hub", v) < 0 ? NULL : out;
    v = getenv("HOME");
    if (v && *v)
        return asprintf(&out, "%s/.cache/huggingface/hub", v) < 0 ? NULL : out;
    return NULL;
}

/* A snapshot name from refs/main or the directory listing: one path component. */
static bool safe_component(const char *s) {
    return s[0] && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\') && strlen(s) < 256;
}

/* Pick snapshots/<rev>: refs/main if it names an existing snapshot, else the
 * only or newest (by mtime) snapshot directory. */
static td_status pick_snapshot(td_ctx *ctx, const char *repo_dir, char *looked, char **dir, char **revision) {
    char *snapshots = NULL, *ref_path = NULL, *ref = NULL, *best = NULL;
    td_status s = TD_ERR_NOT_FOUND;
    if (asprintf(&snapshots, "%s/snapshots", repo_dir) < 0 || asprintf(&ref_path, "%s/refs/main", repo_dir) < 0) {
        s = td_fail_oom(ctx, strlen(repo_dir) + 32, "a path");
        goto out;
    }
    if (td_is_file(ref_path) && td_read_file(ctx, ref_path, 4096, &ref, NULL) == TD_OK) {
        size_t n = strlen(ref);
        while (n && (ref[n - 1] == '\n' || ref[n - 1] == '\r' || ref[n - 1] == ' '))
            ref[--n] = '\0';
        char *cand = NULL;
        if (safe_component(ref) && asprintf(&cand, "%s/%s", snapshots, ref) >= 0 && td_is_dir(cand)) {
            *dir = cand;
            *revision = ref;
            ref = NULL;
            s = TD_OK;
            goto out;
        }
        free(cand);
    }
    td_clear_error(ctx);
    DIR *d = opendir(snapshots);
    if (d) {
        double best_mtime = -1;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!safe_component(e->d_name))
                continue;
            char *cand = NULL;
            struct stat st;
            if (asprintf(&cand, "%s/%s", snapshots, e->d_name) < 0)
                break;
            if (stat(cand, &st) == 0 && S_ISDIR(st.st_mode)) {
                double mt = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
                if (mt > best_mtime) {
                    best_mtime = mt;
                    free(best);
                    best = strdup(e->d_name);
                }
            }
            free(cand);
        }
        closedir(d);
    }
    if (best) {
        if (asprintf(dir, "%s/%s", snapshots, best) < 0) {
            s = td_fail_oom(ctx, strlen(snapshots), "a path");
            goto out;
        }
        *revision = best;
        best = NULL;
        s = TD_OK;
        goto out;
    }
    size_t used = strlen(looked);
    snprintf(looked + used, LOOKED_MAX - used, "%s%s (no snapshot)", used ? ", " : "", snapshots);
out:
    free(snapshots);
    free(ref_path);
    free(ref);
    free(best);
    return s;
}

td_status td_model_dir_resolve(td_ctx *ctx, const char *model, char **dir, char **revision) {
    *dir = NULL;
    *revision = NULL;
    if (!model || !*model)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "no model given; pass a model directory or a hub id (org/name)");
    if (td_is_dir(model)) {
        *dir = strdup(model);
        return *dir ? TD_OK : td_fail_oom(ctx, strlen(model), "a path");
    }
    char looked[LOOKED_MAX];
    snprintf(looked, sizeof looked, "%s (not a directory)", model);
    if (is_repo_id(model)) {
        char *cache = hub_cache_dir();
        if (cache) {
            char *repo_dir = NULL;
            /* org/name -> models--org--name */
            const char *slash = strchr(model, '/');
            int w = slash ? asprintf(&repo_dir, "%s/models--%.*s--%s", cache, (int)(slash - model), model, slash + 1)
                          : asprintf(&repo_dir, "%s/models--%s", cache, model);
            free(cache);
            if (w < 0)
                return td_fail_oom(ctx, 256, "a path");
            if (td_is_dir(repo_dir)) {
                td_status s = pick_snapshot(ctx, repo_dir, looked, dir, revision);
                free(repo_dir);
                if (s != TD_ERR_NOT_FOUND)
                    return s;
            } else {
                size_t used = strlen(looked);
                snprintf(looked + used, sizeof looked - used, ", %s (not in the cache)", repo_dir);
                free(repo_dir);
            }
        } else {
            size_t used = strlen(looked);
            snprintf(looked + used, sizeof looked - used, ", no Hugging Face cache (HF_HUB_CACHE, HF_HOME and HOME unset)");
        }
    }
    if (!is_repo_id(model))
        return td_fail(ctx, TD_ERR_NOT_FOUND,
                       "model '%s' not found; looked at: %s. Pass a directory written by save_pretrained or a hub id "
                       "(org/name) that is in the local Hugging Face cache",
                       model, looked);
    return td_fail(ctx, TD_ERR_NOT_FOUND,
                   "model '%s' not found; looked at: %s. Download it first (huggingface-cli download %s) or pass a "
                   "directory written by save_pretrained",
                   model, looked, model);
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
