/* One view over a single safetensors file or a sharded checkpoint. */
#define _GNU_SOURCE
#include "hf/checkpoint.h"

#include "core/ctx.h"
#include "core/str.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_MAX_BYTES (64u << 20)

struct td_checkpoint {
    char *path;
    bool sharded;
    td_safetensors **shards;
    size_t n_shards;
    const td_st_tensor **all;     /* shard order, then file order */
    const td_st_tensor **by_name; /* sorted by name */
    size_t n;
    uint64_t total_bytes;
};

void td_checkpoint_close(td_checkpoint *ck) {
    if (!ck)
        return;
    for (size_t i = 0; i < ck->n_shards; i++)
        td_st_close(ck->shards[i]);
    free(ck->shards);
    free(ck->all);
    free(ck->by_name);
    free(ck->path);
    free(ck);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const td_st_tensor *const *)a)->name, (*(const td_st_tensor *const *)b)->name);
}

/* Build the combined tables once every shard is open; a name in two shards is an error. */
static td_status build_index(td_ctx *ctx, td_checkpoint *ck) {
    size_t n = 0;
    for (size_t s = 0; s < ck->n_shards; s++)
        n += td_st_count(ck->shards[s]);
    ck->all = calloc(n ? n : 1, sizeof *ck->all);
    ck->by_name = calloc(n ? n : 1, sizeof *ck->by_name);
    if (!ck->all || !ck->by_name)
        return td_fail_oom(ctx, n * sizeof *ck->all, "the checkpoint index");
    size_t k = 0;
    for (size_t s = 0; s < ck->n_shards; s++)
        for (size_t i = 0; i < td_st_count(ck->shards[s]); i++) {
            const td_st_tensor *t = td_st_tensor_at(ck->shards[s], i);
            ck->all[k] = ck->by_name[k] = t;
            ck->total_bytes += t->nbytes;
            k++;
        }
    ck->n = n;
    qsort(ck->by_name, n, sizeof *ck->by_name, cmp_tensor_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(ck->by_name[i - 1]->name, ck->by_name[i]->name) == 0)
            return td_fail(ctx, TD_ERR_FORMAT,
                           "%s: tensor '%s' is stored in two shards, %s and %s; the checkpoint is inconsistent: "
                           "re-download or re-save it",
                           ck->path, ck->by_name[i]->name, ck->by_name[i - 1]->path, ck->by_name[i]->path);
    return TD_OK;
}

static td_status open_single(td_ctx *ctx, td_checkpoint *ck, const char *file) {
    ck->shards = calloc(1, sizeof *ck->shards);
    if (!ck->shards)
        return td_fail_oom(ctx, sizeof *ck->shards, "the shard list");
    TD_TRY(td_st_open(ctx, file, &ck->shards[0]));
    ck->n_shards = 1;
    return build_index(ctx, ck);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Index: {"metadata": {...}, "weight_map": {"name": "model-00001-of-00002.safetensors", ...}} */
static td_status open_index(td_ctx *ctx, td_checkpoint *ck, const char *index_path) {
    td_status s = TD_OK;
    char *text = NULL, *dir = NULL;
    cJSON *root = NULL;
    char **files = NULL;
    const char **names = NULL;
    size_t len;
    s = td_read_file(ctx, index_path, INDEX_MAX_BYTES, &text, &len);
    if (s != TD_OK)
        goto out;
    size_t bad;
    if (!td_utf8_valid((const uint8_t *)text, len, &bad)) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: not valid UTF-8 at byte %zu; re-download the index file", index_path, bad);
        goto out;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: not a JSON object (error near byte %zu); re-download the index file",
                    index_path, root || !end ? (size_t)0 : (size_t)(end - text));
        goto out;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm) || !wm->child) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s: \"weight_map\" is missing or not a non-empty object of tensor name -> "
                    "shard file; re-download the index file", index_path);
        goto out;
    }
    size_t n_entries = (size_t)cJSON_GetArraySize(wm);
    files = calloc(n_entries, sizeof *files);
    ck->shards = calloc(n_entries, sizeof *ck->shards);
    if (!files || !ck->shards) {
        s = td_fail_oom(ctx, n_entries * sizeof *files, "the shard list");
        goto out;
    }
    dir = td_path_dirname(index_path);
    if (!dir) {
        s = td_fail_oom(ctx, strlen(index_path), "a path");
        goto out;
    }
    /* Distinct shard files in order of first mention; each opened once. */
    size_t n_files = 0;
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            s = td_fail(ctx, TD_ERR_FORMAT, "%s: weight_map[\"%s\"] is not a file name string", index_path, e->string);
            goto out;
        }
        size_t f = 0;
        while (f < n_files && strcmp(files[f], e->valuestring) != 0)
            f++;
        if (f < n_files)
            continue;
        files[n_files] = e->valuestring;
        char *shard_path = NULL;
        s = td_path_join(ctx, dir, e->valuestring, true, &shard_path);
        if (s != TD_OK) {
            td_wrap(ctx, "%s: weight_map[\"%s\"]", index_path, e->string);
            goto out;
        }
        if (!td_is_file(shard_path)) {
            s = td_fail(ctx, TD_ERR_NOT_FOUND, "%s: shard %s (holding '%s') does not exist; the download is "
                        "incomplete: fetch every file the index lists", index_path, shard_path, e->string);
            free(shard_path);
            goto out;
        }
        s = td_st_open(ctx, shard_path, &ck->shards[n_files]);
        free(shard_path);
        if (s != TD_OK)
            goto out;
        n_files++;
        ck->n_shards = n_files;
    }
    s = build_index(ctx, ck);
    if (s != TD_OK)
        goto out;
    /* Every listed name lives in the file the index says; a name listed twice is ambiguous. */
    names = calloc(n_entries, sizeof *names);
    if (!names) {
        s = td_fail_oom(ctx, n_entries * sizeof *names, "the weight_map names");
        goto out;
    }
    size_t k = 0;
    for (const cJSON *e = wm->child; e; e = e->next)
        names[k++] = e->string;
    qsort(names, n_entries, sizeof *names, cmp_str);
    for (k = 1; k < n_entries; k++)
        if (strcmp(names[k - 1], names[k]) == 0) {
            s = td_fail(ctx, TD_ERR_FORMAT, "%s: weight_map lists '%s' twice", index_path, names[k]);
            goto out;
        }
    for (const cJSON *e = wm->child; e; e = e->next) {
        const td_st_tensor *t = td_checkpoint_find(ck, e->string);
        size_t f = 0;
        while (f < n_files && strcmp(files[f], e->valuestring) != 0)
            f++;
        if (!t || t->path != td_st_path(ck->shards[f])) {
            s = td_fail(ctx, TD_ERR_FORMAT, "%s: weight_map says '%s' is in %s, but %s; the checkpoint is "
                        "inconsistent: re-download it", index_path, e->string, e->valuestring,
                        t ? "it is in another shard" : "no shard holds it");
            goto out;
        }
    }
out:
    free(names);
    free(files);
    free(dir);
    cJSON_Delete(root);
    free(text);
    return s;
}

td_status td_checkpoint_open(td_ctx *ctx, const char *path, td_checkpoint **out) {
    *out = NULL;
    td_status s = TD_OK;
    char *single = NULL, *index = NULL;
    td_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck)
        return td_fail_oom(ctx, sizeof *ck, "a checkpoint");
    if (td_is_dir(path)) {
        if ((s = td_path_join(ctx, path, "model.safetensors", false, &single)) != TD_OK ||
            (s = td_path_join(ctx, path, "model.safetensors.index.json", false, &index)) != TD_OK)
            goto out;
        if (td_is_file(single)) {
            ck->path = single, single = NULL;
        } else if (td_is_file(index)) {
            ck->path = index, index = NULL;
            ck->sharded = true;
        } else {
            s = td_fail(ctx, TD_ERR_NOT_FOUND, "%s holds neither model.safetensors nor model.safetensors.index.json",
                        path);
            goto out;
        }
    } else {
        if (!td_is_file(path)) {
            s = td_fail(ctx, TD_ERR_NOT_FOUND, "checkpoint %s does not exist", path);
            goto out;
        }
        ck->path = strdup(path);
        ck->sharded = td_str_ends_with(path, ".json");
        if (!ck->path) {
            s = td_fail_oom(ctx, strlen(path), "a path");
            goto out;
        }
    }
    s = ck->sharded ? open_index(ctx, ck, ck->path) : open_single(ctx, ck, ck->path);
out:
    free(single);
    free(index);
    if (s != TD_OK)
        td_checkpoint_close(ck);
    else
        *out = ck;
    return s;
}

const td_st_tensor *td_checkpoint_find(const td_checkpoint *ck, const char *name) {
    size_t lo = 0, hi = ck->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, ck->by_name[mid]->name);
        if (c == 0)
            return ck->by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

td_status td_checkpoint_get(td_ctx *ctx, const td_checkpoint *ck, const char *name, const td_st_tensor **out) {
    *out = td_checkpoint_find(ck, name);
    if (!*out)
        return td_fail(ctx, TD_ERR_NOT_FOUND, "tensor '%s' is not in %s (%zu tensors); the checkpoint does not match "
                       "the architecture its config.json names", name, ck->path, ck->n);
    return TD_OK;
}

size_t td_checkpoint_count(const td_checkpoint *ck) { return ck->n; }
const td_st_tensor *td_checkpoint_tensor_at(const td_checkpoint *ck, size_t i) { return i < ck->n ? ck->all[i] : NULL; }
uint64_t td_checkpoint_total_bytes(const td_checkpoint *ck) { return ck->total_bytes; }
const char *td_checkpoint_path(const td_checkpoint *ck) { return ck->path; }
bool td_checkpoint_is_sharded(const td_checkpoint *ck) { return ck->sharded; }
size_t td_checkpoint_shard_count(const td_checkpoint *ck) { return ck->n_shards; }
const td_safetensors *td_checkpoint_shard(const td_checkpoint *ck, size_t i) {
    return i < ck->n_shards ? ck->shards[i] : NULL;
}
