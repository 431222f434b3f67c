/* Download a model repository from the Hugging Face Hub into the HF cache, laid
 * out exactly as huggingface_hub lays it out so that both tools share one cache:
 *
 *   CACHE/models--ORG--NAME/blobs/<etag>             file contents (etag = sha256 for LFS files)
 *   CACHE/models--ORG--NAME/blobs/<etag>.incomplete  a partial download; the next run resumes it
 *   CACHE/models--ORG--NAME/snapshots/<commit>/<path> relative symlink to ../../blobs/<etag>
 *   CACHE/models--ORG--NAME/refs/<revision>          the commit hash a branch or tag resolved to
 *   CACHE/.locks/models--ORG--NAME/<etag>.lock       serialises concurrent downloads of a blob
 *
 * CACHE is $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
 * else ~/.cache/huggingface/hub, with a leading `~` expanded in each (as huggingface_hub
 * does); hub_cache.c is the one reading of this layout for every command. Nothing is
 * written through a symlink inside the cache, and a file is never written past the
 * size the Hub announced for it. Only the files tdeploy uses are fetched (config,
 * safetensors weights, tokenizer.json and its configs, sentence-transformers
 * module configs, generation config); a repository with only pickled PyTorch
 * weights is refused, since tdeploy never unpickles. */
#ifndef TD_HF_HUB_H
#define TD_HF_HUB_H

#include "tdeploy/tdeploy.h"
#include <stdbool.h>

typedef struct td_hub_options {
    const char *endpoint;  /* NULL: $HF_ENDPOINT, else https://huggingface.co */
    const char *token;     /* NULL: $HF_TOKEN, else the file `huggingface-cli login` writes ($HF_TOKEN_PATH,
                              else $HF_HOME/token, else ~/.cache/huggingface/token); sent as
                              "Authorization: Bearer" to the endpoint only */
    const char *cache_dir; /* NULL: the HF cache as described above */
    int offline;           /* < 0: from $HF_HUB_OFFLINE; 0: online; > 0: never touch the network */
    bool refresh;          /* ask the Hub what the revision points to even when a usable snapshot is cached */
    bool progress;         /* per-file progress bar (drawn only when stderr is a terminal) */
    long deadline_s;       /* <= 0: $TDEPLOY_HUB_DEADLINE, else a generous default (see hub_http.h); the most
                              seconds one HTTP request may take in all, however steadily bytes arrive */
} td_hub_options;

/* Defaults: everything from the environment, progress on. */
void td_hub_options_init(td_hub_options *opts);

/* The cache directory opts resolves to (malloc'd, caller frees). */
td_status td_hub_cache_dir(td_ctx *ctx, const td_hub_options *opts, char **out);

/* Checks a revision (branch, tag or commit) before it becomes a path under refs/. */
td_status td_hub_check_revision(td_ctx *ctx, const char *revision);

/* Checks repo_id the way the Hub does ("name" or "org/name", [A-Za-z0-9_.-],
 * no "--" or "..", at most 96 characters). */
td_status td_hub_check_repo_id(td_ctx *ctx, const char *repo_id);

/* The snapshot directory of repo_id at revision when the cache already holds a
 * usable copy (config.json and complete safetensors weights), without any
 * network access. TD_ERR_NOT_FOUND (with a message naming where it looked)
 * otherwise. *snapshot_dir_out is malloc'd; the caller frees it. */
td_status td_hub_cached_snapshot(td_ctx *ctx, const char *repo_id, const char *revision, const td_hub_options *opts,
                                 char **snapshot_dir_out);

/* Makes repo_id at revision (NULL: "main") available in the cache and returns its
 * snapshot directory (malloc'd; caller frees). A usable cached snapshot is
 * returned without any request unless opts->refresh. opts may be NULL
 * (defaults). Interrupted downloads leave blobs/<etag>.incomplete behind, and
 * the next call resumes them with a Range request. */
td_status td_hub_download(td_ctx *ctx, const char *repo_id, const char *revision, const td_hub_options *opts,
                          char **snapshot_dir_out);

#endif
