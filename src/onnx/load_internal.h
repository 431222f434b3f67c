/* Shared state of one ONNX load (load.c, load_tensor.c, load_external.c). */
#ifndef TD_ONNX_LOAD_INTERNAL_H
#define TD_ONNX_LOAD_INTERNAL_H

#include "onnx.pb-c.h"
#include "onnx/ir.h"
#include "onnx/pb_util.h"

typedef struct td_ext_map {
    char *real_path;
    td_mapped_file *map;
} td_ext_map;

typedef struct td_onnx_loader {
    td_ctx *ctx;
    td_mapped_file *src;  /* the model bytes (file mapping or anonymous copy) */
    const char *src_name; /* for messages */
    const char *base_dir; /* NULL: external data not allowed */
    char *base_real;      /* realpath(base_dir), resolved on first use */
    td_ext_map *ext;      /* external data files, each mapped once */
    int n_ext;
    int depth; /* subgraph nesting */
    /* In-memory external data (engine files): tensors whose location is
     * blob_name read [offset, offset + length) of blob's bytes
     * [blob_off, blob_off + blob_len). NULL = none. */
    td_mapped_file *blob;
    const char *blob_name;
    size_t blob_off, blob_len;
} td_onnx_loader;

/* Where a tensor's raw_data lives when the splitter cut it out of the message. */
typedef struct td_raw_slice {
    const uint8_t *data; /* points into loader->src, or NULL when raw_data is in the message */
    size_t len;
} td_raw_slice;

/* TensorProto -> td_tensor. raw (optional) is raw_data cut out of the message by
 * the splitter. Buffers of tp may be stolen (tp stays valid to free). */
td_status td_onnx_load_tensor(td_onnx_loader *L, Onnx__TensorProto *tp, const td_raw_slice *raw, td_tensor **out);

/* Resolve an EXTERNAL tensor's data: on success *map_out holds a new reference
 * and *offset_out the byte offset of nbytes bytes inside it. */
td_status td_onnx_external_data(td_onnx_loader *L, const Onnx__TensorProto *tp, const char *name, size_t nbytes,
                                td_mapped_file **map_out, size_t *offset_out, char **location_out);

void td_onnx_loader_release(td_onnx_loader *L);

/* TypeProto <-> td_type helpers shared with save.c. */
bool td_onnx_type_matches(const Onnx__TypeProto *tp, const td_type *t);

#endif
