/* File system helpers: atomic output files, safe path joining, read-only maps. */
#ifndef TD_CORE_FS_H
#define TD_CORE_FS_H

#include "tdeploy/tdeploy.h"
#include <stdbool.h>
#include <stdio.h>

/* An output file written atomically: data goes to a temp file in the same
 * directory; commit fsyncs it, renames it over the final path and fsyncs the
 * directory. abort (or free without commit) removes the temp file, so a reader
 * never sees a half-written output. */
typedef struct td_atomic_file {
    char *final_path;
    char *tmp_path;
    FILE *fp;
} td_atomic_file;

td_status td_atomic_open(td_ctx *ctx, td_atomic_file *af, const char *path);
td_status td_atomic_write(td_ctx *ctx, td_atomic_file *af, const void *data, size_t n);
td_status td_atomic_commit(td_ctx *ctx, td_atomic_file *af);
void td_atomic_abort(td_atomic_file *af); /* harmless after commit or on a zeroed struct */

/* Write a whole buffer to path atomically. */
td_status td_write_file_atomic(td_ctx *ctx, const char *path, const void *data, size_t n);

/* Read a whole (small) file into a NUL-terminated malloc'd buffer; max_bytes guards
 * against reading a huge file by mistake. */
td_status td_read_file(td_ctx *ctx, const char *path, size_t max_bytes, char **out, size_t *out_len);

/* Join dir + "/" + rel into a malloc'd string. With safe=true, rel must be
 * relative and contain no ".." component (used for paths that come from files,
 * such as ONNX external data locations). */
td_status td_path_join(td_ctx *ctx, const char *dir, const char *rel, bool safe, char **out);
/* Directory part of path ("." when there is none), malloc'd. */
char *td_path_dirname(const char *path);
bool td_is_dir(const char *path);
bool td_is_file(const char *path);
/* fsync a directory (after a rename into it). */
td_status td_fsync_dir(td_ctx *ctx, const char *dir);

/* A read-only mapping of a whole file, reference counted so that tensors can
 * point into it without copying and the map lives as long as any user. */
typedef struct td_mapped_file {
    char *path;
    const uint8_t *data;
    size_t size;
    int refcount;
} td_mapped_file;

td_status td_map_file(td_ctx *ctx, const char *path, td_mapped_file **out);
td_mapped_file *td_mapped_file_ref(td_mapped_file *m);
void td_mapped_file_unref(td_mapped_file *m); /* NULL is harmless */

#endif
