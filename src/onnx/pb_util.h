/* protobuf-c helpers shared by the ONNX loader and saver: the pb_extra record
 * that keeps unmodelled protobuf fields, an arena allocator for building and
 * unpacking messages, and a ProtobufCBuffer that streams to a file. */
#ifndef TD_ONNX_PB_UTIL_H
#define TD_ONNX_PB_UTIL_H

#include "core/ctx.h"
#include "core/fs.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What an IR object's pb_extra points to: one malloc'd block (so the IR frees it
 * with plain free()). bytes = the object's protobuf message serialized with the
 * fields the IR models cleared: unknown fields and unmodelled fields survive a
 * round trip by unpacking these bytes and filling the modelled fields in again.
 * flags remember details the IR cannot express (field presence, data layout). */
typedef struct td_pb_extra {
    uint32_t flags;
    uint32_t aux; /* per-kind extra bits (e.g. opset domain presence) */
    size_t len;
    uint8_t bytes[];
} td_pb_extra;

/* Flags (meaning depends on the object kind). */
enum {
    TD_PBX_NAME_SET = 1u << 0,       /* name field was present (even if "") */
    TD_PBX_DOMAIN_SET = 1u << 1,     /* node domain present */
    TD_PBX_NO_IR_VERSION = 1u << 2,  /* model: ir_version absent */
    TD_PBX_MODEL_VERSION_SET = 1u << 3,
    TD_PBX_ATTR_NO_TYPE = 1u << 4,   /* attribute: type field absent */
    TD_PBX_ATTR_NO_VALUE = 1u << 5,  /* attribute: the type's value field absent */
    TD_PBX_LOCATION_SET = 1u << 6,   /* tensor: data_location DEFAULT written explicitly */
    TD_PBX_RAW_SET = 1u << 7,        /* tensor: empty raw_data present */
    TD_PBX_OPAQUE = 1u << 8,         /* tensor: whole TensorProto kept in bytes (unsupported dtype) */
    TD_PBX_TYPE_EXACT = 1u << 9,     /* type: bytes are the original TypeProto (IR form is lossy) */
    TD_PBX_NO_DTYPE = 1u << 10,      /* tensor: data_type absent */
    TD_PBX_TYPE_ABSENT = 1u << 11,   /* value: ValueInfoProto without type */
};
/* Tensor data field used in the file (bits 16..19 of flags). */
enum { TD_PBX_DATA_NONE = 0, TD_PBX_DATA_RAW, TD_PBX_DATA_FLOAT, TD_PBX_DATA_INT32, TD_PBX_DATA_STRING,
       TD_PBX_DATA_INT64, TD_PBX_DATA_DOUBLE, TD_PBX_DATA_UINT64, TD_PBX_DATA_EXTERNAL };
#define TD_PBX_DATA_SHIFT 16
#define TD_PBX_DATA_OF(flags) (((flags) >> TD_PBX_DATA_SHIFT) & 0xF)

static inline uint32_t td_pbx_flags(const void *pb_extra) {
    return pb_extra ? ((const td_pb_extra *)pb_extra)->flags : 0;
}

/* Build a pb_extra from msg with the fields numbered in tags cleared. *out is
 * NULL when nothing remains and flags/aux are 0. */
td_status td_pbx_residual(td_ctx *ctx, const ProtobufCMessage *msg, const uint32_t *tags, size_t n_tags,
                          uint32_t flags, uint32_t aux, td_pb_extra **out);
/* pb_extra holding verbatim bytes. */
td_status td_pbx_bytes(td_ctx *ctx, const uint8_t *bytes, size_t len, uint32_t flags, td_pb_extra **out);

/* Walk serialized bytes of a message of type d and report whether messages
 * nest deeper than max_depth (protobuf-c's unpack recurses once per level, so
 * hostile nesting would overflow the stack). Malformed bytes end the walk and
 * count as "not too deep": protobuf-c rejects them afterwards. */
bool td_pb_too_deep(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int max_depth);

/* Bump allocator: everything is freed at once by td_arena_free. */
typedef struct td_arena {
    struct td_arena_chunk *head;
    ProtobufCAllocator pb; /* allocator view for protobuf_c_message_unpack */
    bool failed;
} td_arena;

void td_arena_init(td_arena *a);
void *td_arena_alloc(td_arena *a, size_t n); /* 16-byte aligned, zeroed; NULL on OOM */
char *td_arena_strdup(td_arena *a, const char *s);
void td_arena_free(td_arena *a);

/* ProtobufCBuffer writing to an atomic file; the first error is kept. */
typedef struct td_pb_file_buffer {
    ProtobufCBuffer base;
    td_ctx *ctx;
    td_atomic_file *af;
    uint64_t written;
    td_status status;
} td_pb_file_buffer;

void td_pb_file_buffer_init(td_pb_file_buffer *b, td_ctx *ctx, td_atomic_file *af);

#endif
