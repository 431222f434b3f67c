/* Aligned inline layout of a ModelProto (td_onnx_save_options.align_raw_data).
 *
 * Standard protobuf, decoded identically by every parser, but laid out so that
 * each inline raw_data of >= TD_ONNX_ALIGN_MIN_BYTES starts at a file offset that
 * is a multiple of TD_ONNX_ALIGN_BYTES (the loader then maps it in place):
 *   ModelProto fields except graph            (protobuf-c, canonical)
 *   graph: tag 7, 5-byte length
 *     GraphProto fields except initializer    (protobuf-c, canonical)
 *     per initializer: tag 5, then
 *       small or typed tensors: minimal length + canonical TensorProto
 *       large raw tensors: 5-byte length, the TensorProto without data_type and
 *         raw_data (canonical), data_type as an over-long varint of 1..8 bytes
 *         (the padding), raw_data with a 5-byte length, the bytes.
 * Protobuf accepts fields in any order and over-long varints; lengths stay
 * within 5 bytes (the limit of protobuf-c and C++ protobuf for length prefixes)
 * and the data_type varint within 10. Only the top-level graph's initializers
 * are aligned (subgraph constants are small). */
#ifndef TD_ONNX_SAVE_ALIGNED_H
#define TD_ONNX_SAVE_ALIGNED_H

#include "onnx/load_internal.h"

typedef struct td_onnx_aligned_plan {
    uint8_t *dtype_width; /* per top-level initializer: 0 = canonical, else data_type varint bytes */
    size_t n;
    uint64_t graph_len; /* GraphProto payload bytes */
    uint64_t total;     /* whole file */
} td_onnx_aligned_plan;

/* Size the layout of mp (which must have a graph). The plan owns dtype_width. */
td_status td_onnx_aligned_plan_make(td_ctx *ctx, Onnx__ModelProto *mp, td_onnx_aligned_plan *plan);

/* Write mp to buf following plan (made from the same, unchanged mp). mp is
 * modified while writing and restored before returning. */
void td_onnx_aligned_write(Onnx__ModelProto *mp, const td_onnx_aligned_plan *plan, ProtobufCBuffer *buf);

void td_onnx_aligned_plan_free(td_onnx_aligned_plan *plan);

#endif
