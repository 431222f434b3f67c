/* File system helpers: atomic output files, safe path joining, read-only maps. */
#ifndef TD_CORE_FS_H
#define TD_CORE_FS_H

#include "tdeploy/tdeploy.h"
#include <stdbool.h>
#include <stdio.h>

/* An output file written atomically: data goes to a temp file in the same
 * directory; commit fsyncs it, renames it over the final path and fsyncs the
 * directory. abort (or free without commit) removes the temp file, so a reader
 * never sees a half-written output.
 *
 * Write path (fs.c, "atomic file I/O"): bytes are gathered in 4 MiB aligned
 * staging buffers. A file that stays under one buffer is written with one
 * pwrite at commit. Larger files switch to O_DIRECT (when the file system takes
 * it) and a writer thread: the disk writes one buffer while the caller fills
 * the next, no page cache is filled for the output, and the final fsync has
 * only the tail and metadata left. Without O_DIRECT the buffers go through the
 * page cache and writeback of each is started at once (sync_file_range), so
 * the fsync again finds little to do; the same when the caller will read the
 * file back soon (td_atomic_keep_cached). Bytes that lie inside a registered
 * source mapping (td_atomic_add_source) are read from that file with pread
 * instead of through the mapping. */
struct td_atomic_io;
struct td_mapped_file;
typedef struct td_atomic_file {
    char *final_path;
    char *tmp_path;
    struct td_atomic_io *io; /* private to fs.c; NULL when not open */
} td_atomic_file;

td_status td_atomic_open(td_ctx *ctx, td_atomic_file *af, const char *path);
td_status td_atomic_write(td_ctx *ctx, td_atomic_file *af, const void *data, size_t n);
/* Declare that written bytes may come from mapping m (af takes a reference until
 * commit/abort). td_atomic_write of bytes inside m then preads them from m's
 * file: no page of the mapping is touched (no page faults, no RSS), and a file
 * that shrank since it was mapped is a clear TD_ERR_IO instead of a SIGBUS.
 * When m's path no longer names the mapped file (replaced since), or m is not
 * a file mapping, the bytes are copied from the mapping as for any pointer. */
td_status td_atomic_add_source(td_ctx *ctx, td_atomic_file *af, struct td_mapped_file *m);
/* The file will be read back soon (by this process, say): keep its pages in the
 * page cache, i.e. no O_DIRECT (writeback is still started buffer by buffer).
 * Call before the first write. Reading an O_DIRECT output back costs a disk
 * read, which on this project's disks took longer than the write saved. */
void td_atomic_keep_cached(td_atomic_file *af);
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
    uint64_t dev, ino; /* identity of the mapped file (st_dev, st_ino); both 0 for anonymous memory */
} td_mapped_file;

td_status td_map_file(td_ctx *ctx, const char *path, td_mapped_file **out);
td_mapped_file *td_mapped_file_ref(td_mapped_file *m);
void td_mapped_file_unref(td_mapped_file *m); /* NULL is harmless */

#endif
