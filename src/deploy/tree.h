/* Directory-tree helpers for writing output folders: recursive removal that
 * never follows symlinks, and placing a file by hard link or copy. */
#ifndef TD_DEPLOY_TREE_H
#define TD_DEPLOY_TREE_H

#include "tdeploy/tdeploy.h"

/* rm -rf path (symlinks are removed, never followed). A missing path is fine. */
td_status td_remove_tree(td_ctx *ctx, const char *path);

/* Make dst a hard link to src, or a copy when linking is impossible (another
 * file system, no permission). dst must not exist. */
td_status td_link_or_copy_file(td_ctx *ctx, const char *src, const char *dst);

/* Put the finished directory tmp at out_dir: when out_dir exists (a directory)
 * the two are swapped atomically (renameat2 RENAME_EXCHANGE; a move aside and
 * back on file systems without it) and the old tree is removed, so a reader of
 * out_dir sees either the old or the new tree, never a half-written one. */
td_status td_tree_move_into_place(td_ctx *ctx, const char *tmp, const char *out_dir);

#endif
