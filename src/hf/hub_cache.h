/* The Hugging Face cache on disk, one reading of it for every command:
 *   - where it is (td_hub_cache_dir in hub.h: `~` expanded in every variable,
 *     as huggingface_hub does),
 *   - which snapshot a repository's revision names (refs/<revision>, read only
 *     when it is a regular file, or the revision itself when it is a commit id),
 *   - whether that snapshot is complete (config.json and every weights file),
 *   - creating directories inside it without following symlinks planted there.
 * `tdeploy download` (hub.c) and every -m ORG/NAME lookup (model_dir.c) go
 * through td_hub_cached_snapshot, so a snapshot one finds the other finds. */
#ifndef TD_HF_HUB_CACHE_H
#define TD_HF_HUB_CACHE_H

#include "tdeploy/tdeploy.h"
#include <stdbool.h>
#include <stddef.h>

/* "~" and "~/x" -> $HOME, "~user/x" -> that user's home; anything else copied.
 * malloc'd, NULL on OOM. */
char *td_hub_expand_home(const char *path);

/* huggingface_hub's HF_HOME: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else
 * ~/.cache/huggingface, `~` expanded. malloc'd; NULL when there is no home
 * directory to place it in (or on OOM). The token file and the cache live here. */
char *td_hub_home_dir(void);

/* CACHE/models--ORG--NAME (malloc'd, NULL on OOM). */
char *td_hub_repo_dir(const char *cache, const char *repo_id);

/* The commit (or snapshot name) a revision points to in the cache: the
 * revision itself when it is a 40-hex commit id, else the content of
 * refs/<revision> when that is a regular file holding one safe path component.
 * malloc'd, or NULL. A FIFO or device there is never opened for reading. */
char *td_hub_cached_commit(const char *repo_dir, const char *revision);

/* Whether a snapshot directory holds what tdeploy needs: config.json and the
 * complete safetensors weights. why receives the first thing missing. */
bool td_hub_snapshot_usable(const char *dir, char *why, size_t why_len);

/* Shard file names of a safetensors index (weight_map values, each once, sorted;
 * n log n in the number of entries). */
td_status td_hub_index_shards(td_ctx *ctx, const char *index_path, char ***shards_out, size_t *n_out);

/* mkdir -p path. Components up to and including root may be symlinks (a user's
 * cache on another disk); every component below root must be a real directory,
 * so that nothing downloaded is written outside the cache. path must start with root. */
td_status td_hub_make_dirs(td_ctx *ctx, const char *root, const char *path);

/* td_hub_make_dirs, then the directory's descriptor (*fd_out, O_CLOEXEC; the
 * caller closes it) for openat/renameat/symlinkat. Each component below root is
 * opened with O_NOFOLLOW from its parent's descriptor, so a symlink planted (or
 * swapped in while a download runs) is refused, never followed. */
td_status td_hub_open_dir(td_ctx *ctx, const char *root, const char *path, int *fd_out);

/* A repository path from the Hub or an index file: relative, no "." or ".."
 * component, no empty component, no backslash or control character. */
bool td_hub_safe_repo_path(const char *path);

/* s is exactly `len` lowercase hex digits: a commit id (40) or an LFS sha256 (64). */
bool td_hub_is_lower_hex(const char *s, size_t len);

void td_hub_free_list(char **list, size_t n);

#endif
