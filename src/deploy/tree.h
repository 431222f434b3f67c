/* Directory-tree helpers for writing output folders: recursive removal that
 * never follows symlinks, and placing a copy of a file. */
#ifndef TD_DEPLOY_TREE_H
#define TD_DEPLOY_TREE_H

#include "tdeploy/tdeploy.h"

/* rm -rf path (symlinks are removed, never followed). A missing path is fine. */
td_status td_remove_tree(td_ctx *ctx, const char *path);

/* dst becomes a copy of src (a symlink src is followed): a reflink (FICLONE)
 * where the file system shares blocks copy-on-write, else the bytes copied.
 * Never a hard link: an output that shares its inode with the source model or
 * the HF cache would let an edit of the output change the source. dst must not
 * exist; on failure it is removed. */
td_status td_copy_file(td_ctx *ctx, const char *src, const char *dst);

#endif
