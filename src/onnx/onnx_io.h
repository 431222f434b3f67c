/* ONNX persistence and validation: ModelProto bytes <-> td_model.
 *
 * Load keeps everything the IR does not model (functions, training info, sparse
 * initializers, quantization annotations, non-tensor types, unknown fields...)
 * in the objects' pb_extra slots, so load -> save is lossless. Initializer data
 * read from a file points into a shared read-only mapping of that file when it
 * is suitably aligned (no copy); misaligned data is copied once into an aligned
 * buffer. External data files are mapped once and shared by their tensors.
 *
 * Every load runs td_onnx_check; a model that fails it is not returned. */
#ifndef TD_ONNX_IO_H
#define TD_ONNX_IO_H

#include "core/fs.h"
#include "onnx/ir.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Load path; on success *out is a new model owned by the caller (td_model_free)
 * with base_dir set to path's directory. On failure *out is NULL and ctx holds
 * a message naming the file and the offending tensor/node. */
td_status td_onnx_load(td_ctx *ctx, const char *path, td_model **out);

/* Load from memory (the bytes are copied once; data need not outlive the call).
 * base_dir resolves external data locations; NULL = external data is an error. */
td_status td_onnx_load_buffer(td_ctx *ctx, const void *data, size_t len, const char *base_dir, td_model **out);

/* External data held in memory: a tensor whose external_data location equals
 * name reads its bytes from map at offset + its own offset (bounds-checked
 * against length). Used by engine files, whose weights section follows the plan. */
typedef struct td_onnx_blob {
    const char *name;
    td_mapped_file *map;
    size_t offset, length;
} td_onnx_blob;
td_status td_onnx_load_buffer_blob(td_ctx *ctx, const void *data, size_t len, const char *base_dir,
                                   const td_onnx_blob *blob, td_model **out);

typedef enum td_onnx_external_mode {
    TD_ONNX_EXTERNAL_AUTO = 0, /* external only when the inline file would exceed auto_limit */
    TD_ONNX_EXTERNAL_NEVER,    /* all data inline (fails above protobuf's 2 GB limit) */
    TD_ONNX_EXTERNAL_ALWAYS,   /* initializers of >= size_threshold bytes go to the data file */
} td_onnx_external_mode;

typedef struct td_onnx_save_options {
    td_onnx_external_mode external;
    /* Data file name, relative to the model's directory; NULL = "<model file name>.data". */
    const char *data_file;
    /* Initializers with at least this many bytes go external (0 = default 1024). */
    size_t size_threshold;
    /* AUTO switches to external data above this serialized size (0 = default 2 GB - 1 MB). */
    uint64_t auto_limit;
    /* Alignment of each tensor in the data file (0 = default 4096; must be a power of two). */
    size_t alignment;
    /* The files will be read back soon (e.g. loaded again by this process): write
     * them through the page cache instead of O_DIRECT (td_atomic_keep_cached). */
    bool keep_cached;
    /* Lay out every inline raw_data of >= TD_ONNX_ALIGN_MIN_BYTES at a file offset
     * that is a multiple of TD_ONNX_ALIGN_BYTES, so loading maps it in place instead
     * of copying it. The file stays standard protobuf read identically by every
     * parser (the top-level graph and its initializers are written after the other
     * fields, with fixed-width length prefixes and an over-long data_type varint as
     * padding); false = protobuf-c's canonical bytes (lossless round trips). */
    bool align_raw_data;
} td_onnx_save_options;

#define TD_ONNX_ALIGN_MIN_BYTES 4096
#define TD_ONNX_ALIGN_BYTES 8 /* the largest natural alignment of any ONNX dtype */

/* Write model to path atomically (and its data file, when external data is
 * used). opts NULL = defaults (AUTO). The model is not modified. */
td_status td_onnx_save(td_ctx *ctx, const td_model *model, const char *path, const td_onnx_save_options *opts);

/* Serialize to a malloc'd buffer with all data inline (for tests and tools). */
td_status td_onnx_save_buffer(td_ctx *ctx, const td_model *model, uint8_t **out, size_t *out_len);

/* Structural validation: ir_version, opset imports, node domains, SSA names,
 * producers of every input (outer scopes for subgraphs), acyclicity. Errors name
 * the node and its op type. Dead nodes are compacted away; node order is kept. */
td_status td_onnx_check(td_ctx *ctx, td_model *model);

#endif
