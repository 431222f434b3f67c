/* pb_extra residuals, the arena allocator and the streaming file buffer. */
#include "onnx/pb_util.h"

#include <stdlib.h>
#include <string.h>

/* Clear one field of a (shallow copy of a) message so pack skips it. */
static void clear_field(uint8_t *msg, const ProtobufCFieldDescriptor *fd) {
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
        *(size_t *)(msg + fd->quantifier_offset) = 0;
    } else if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        *(uint32_t *)(msg + fd->quantifier_offset) = 0;
    } else if (fd->type == PROTOBUF_C_TYPE_STRING || fd->type == PROTOBUF_C_TYPE_MESSAGE) {
        *(void **)(msg + fd->offset) = NULL;
    } else if (fd->quantifier_offset) {
        *(protobuf_c_boolean *)(msg + fd->quantifier_offset) = 0;
    }
}

td_status td_pbx_bytes(td_ctx *ctx, const uint8_t *bytes, size_t len, uint32_t flags, td_pb_extra **out) {
    td_pb_extra *x = malloc(sizeof *x + len);
    if (!x)
        return td_fail_oom(ctx, sizeof *x + len, "protobuf fields kept for saving");
    x->flags = flags;
    x->aux = 0;
    x->len = len;
    if (len)
        memcpy(x->bytes, bytes, len);
    *out = x;
    return TD_OK;
}

td_status td_pbx_residual(td_ctx *ctx, const ProtobufCMessage *msg, const uint32_t *tags, size_t n_tags,
                          uint32_t flags, uint32_t aux, td_pb_extra **out) {
    *out = NULL;
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    uint8_t *copy = malloc(d->sizeof_message);
    if (!copy)
        return td_fail_oom(ctx, d->sizeof_message, "a message copy");
    memcpy(copy, msg, d->sizeof_message); /* shallow: pack only reads it */
    for (size_t i = 0; i < n_tags; i++) {
        const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, tags[i]);
        if (fd)
            clear_field(copy, fd);
    }
    size_t len = protobuf_c_message_get_packed_size((const ProtobufCMessage *)copy);
    td_status s = TD_OK;
    if (len == 0 && flags == 0 && aux == 0)
        goto out;
    td_pb_extra *x = malloc(sizeof *x + len);
    if (!x) {
        s = td_fail_oom(ctx, sizeof *x + len, "protobuf fields kept for saving");
        goto out;
    }
    x->flags = flags;
    x->aux = aux;
    x->len = protobuf_c_message_pack((const ProtobufCMessage *)copy, x->bytes);
    *out = x;
out:
    free(copy);
    return s;
}

/* ---- nesting depth ---- */

static bool rd_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* 1 = too deep, 0 = fine or malformed (stop). */
static int depth_walk(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end, int left) {
    while (p < end) {
        uint64_t key, v;
        if (!rd_varint(&p, end, &key))
            return 0;
        switch (key & 7) {
        case 0:
            if (!rd_varint(&p, end, &v))
                return 0;
            break;
        case 1:
            if (end - p < 8)
                return 0;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                return 0;
            p += 4;
            break;
        case 2: {
            if (!rd_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return 0;
            const ProtobufCFieldDescriptor *fd =
                (key >> 3) <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3)) : NULL;
            if (fd && fd->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (left <= 0)
                    return 1;
                if (depth_walk(fd->descriptor, p, p + v, left - 1))
                    return 1;
            }
            p += v;
            break;
        }
        default:
            return 0;
        }
    }
    return 0;
}

bool td_pb_too_deep(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int max_depth) {
    return p && depth_walk(d, p, p + len, max_depth) == 1;
}

/* ---- arena ---- */

struct td_arena_chunk {
    struct td_arena_chunk *next;
    size_t used, cap;
    _Alignas(16) uint8_t data[];
};

static void *arena_pb_alloc(void *data, size_t size) { return td_arena_alloc(data, size); }
static void arena_pb_free(void *data, void *p) {}

void td_arena_init(td_arena *a) {
    memset(a, 0, sizeof *a);
    a->pb.alloc = arena_pb_alloc;
    a->pb.free = arena_pb_free;
    a->pb.allocator_data = a;
}

void *td_arena_alloc(td_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    struct td_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + cap);
        if (!c) {
            a->failed = true;
            return NULL;
        }
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *td_arena_strdup(td_arena *a, const char *s) {
    size_t n = strlen(s) + 1;
    char *p = td_arena_alloc(a, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void td_arena_free(td_arena *a) {
    for (struct td_arena_chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    a->head = NULL;
}

/* ---- file buffer ---- */

static void file_append(ProtobufCBuffer *buf, size_t len, const uint8_t *data) {
    td_pb_file_buffer *b = (td_pb_file_buffer *)buf;
    if (b->status != TD_OK || len == 0)
        return;
    b->status = td_atomic_write(b->ctx, b->af, data, len);
    b->written += len;
}

void td_pb_file_buffer_init(td_pb_file_buffer *b, td_ctx *ctx, td_atomic_file *af) {
    memset(b, 0, sizeof *b);
    b->base.append = file_append;
    b->ctx = ctx;
    b->af = af;
}
