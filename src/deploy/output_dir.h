/* Output folders tdeploy owns: a marker file says tdeploy created a folder, and
 * only such a folder (or a missing or empty one) is ever replaced, unless the
 * user says --force. Replacing swaps a finished staging folder in, so a failure
 * at any point before leaves the previous output as it was.
 *
 *   td_output_check_replaceable(ctx, "out", "convert", force)   // before any work: refuse early
 *   ... write everything into a staging sibling, td_output_write_marker(ctx, stage, "convert") ...
 *   td_output_replace(ctx, stage, "out", "convert", force, "triton")
 *
 * Model folders inside a Triton repository are tdeploy's when their
 * config.pbtxt starts with the header tdeploy writes (td_triton_model_is_tdeploys). */
#ifndef TD_DEPLOY_OUTPUT_DIR_H
#define TD_DEPLOY_OUTPUT_DIR_H

#include "tdeploy/tdeploy.h"

#include <stdbool.h>

#define TD_OUTPUT_MARKER ".tdeploy-output"

/* TD_OK when path may be replaced: it does not exist, or is an empty directory,
 * or a directory holding the marker written by the same command ("convert": a
 * triton-repo repository is not replaced whole), or any directory with force. A
 * file, a symlink, or a directory with other contents and no such marker is
 * refused (TD_ERR_INVALID_ARGUMENT naming the folder and --force). */
td_status td_output_check_replaceable(td_ctx *ctx, const char *path, const char *command, bool force);

/* Writes dir/TD_OUTPUT_MARKER naming the command that wrote the folder. */
td_status td_output_write_marker(td_ctx *ctx, const char *dir, const char *command);

/* Puts the finished folder stage at out (td_output_check_replaceable is checked
 * again first; stage is left as it is on any failure). When keep_subdir is not
 * NULL, entries of the old out/keep_subdir that the new tree lacks (other
 * models of a Triton repository) are moved into the new one before the old
 * tree is removed; if one cannot be moved, the old tree stays where it was
 * swapped to and the error names it, so nothing is lost. */
td_status td_output_replace(td_ctx *ctx, const char *stage, const char *out, const char *command, bool force,
                            const char *keep_subdir);

/* Removes path when it is a directory with command's marker (a stale output tdeploy
 * wrote, e.g. OUTDIR.failed after a later run passed); anything else is left alone. */
td_status td_output_remove_if_ours(td_ctx *ctx, const char *path, const char *command);

/* Whether dir/config.pbtxt was written by tdeploy (its first line is tdeploy's header). */
bool td_triton_model_is_tdeploys(const char *dir);

#endif
