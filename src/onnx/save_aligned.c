/* Aligned inline layout of a ModelProto: see save_aligned.h. */
#include "onnx/save_aligned.h"
#include "onnx/onnx_io.h"

#include <stdlib.h>
#include <string.h>

#define KEY_GRAPH 0x3a       /* ModelProto.graph = 7, length-delimited */
#define KEY_INITIALIZER 0x2a /* GraphProto.initializer = 5, length-delimited */
#define KEY_DATA_TYPE 0x10   /* TensorProto.data_type = 2, varint */
#define KEY_RAW_DATA 0x4a    /* TensorProto.raw_data = 9, length-delimited */
#define WIDE_LEN 5           /* fixed width of length prefixes we must know in advance */

static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* v as exactly width bytes (width >= varint_size(v)): zero-payload
 * continuation bytes make it over-long, which every parser must accept. */
static void put_varint(ProtobufCBuffer *buf, uint64_t v, size_t width) {
    uint8_t b[10];
    for (size_t i = 0; i < width; i++) {
        b[i] = (uint8_t)((v & 0x7f) | (i + 1 < width ? 0x80 : 0));
        v >>= 7;
    }
    buf->append(buf, width, b);
}

static void put_byte(ProtobufCBuffer *buf, uint8_t b) { buf->append(buf, 1, &b); }

static bool wants_alignment(const Onnx__TensorProto *tp) {
    return tp && tp->has_raw_data && tp->raw_data.len >= TD_ONNX_ALIGN_MIN_BYTES && tp->has_data_type &&
           tp->data_type >= 0 && tp->data_type < 0x80;
}

/* Packed size of tp without data_type and raw_data (restored before returning). */
static size_t rest_size(Onnx__TensorProto *tp) {
    tp->has_raw_data = 0;
    tp->has_data_type = 0;
    size_t n = protobuf_c_message_get_packed_size(&tp->base);
    tp->has_raw_data = 1;
    tp->has_data_type = 1;
    return n;
}

static uint64_t aligned_tensor_len(size_t rest, size_t dtype_width, size_t raw_len) {
    return (uint64_t)rest + 1 + dtype_width + 1 + WIDE_LEN + raw_len;
}

/* Packed sizes of the ModelProto without graph and the GraphProto without initializers. */
static void head_sizes(Onnx__ModelProto *mp, size_t *model_head, size_t *graph_head) {
    Onnx__GraphProto *gp = mp->graph;
    size_t n_init = gp->n_initializer;
    mp->graph = NULL;
    gp->n_initializer = 0;
    *model_head = protobuf_c_message_get_packed_size(&mp->base);
    *graph_head = protobuf_c_message_get_packed_size(&gp->base);
    gp->n_initializer = n_init;
    mp->graph = gp;
}

td_status td_onnx_aligned_plan_make(td_ctx *ctx, Onnx__ModelProto *mp, td_onnx_aligned_plan *plan) {
    memset(plan, 0, sizeof *plan);
    Onnx__GraphProto *gp = mp->graph;
    if (!gp)
        return td_fail(ctx, TD_ERR_INTERNAL, "aligned layout of a model without a graph");
    plan->n = gp->n_initializer;
    plan->dtype_width = calloc(plan->n ? plan->n : 1, 1);
    if (!plan->dtype_width)
        return td_fail_oom(ctx, plan->n, "the aligned layout");
    size_t model_head, graph_head;
    head_sizes(mp, &model_head, &graph_head);
    uint64_t graph_start = (uint64_t)model_head + 1 + WIDE_LEN;
    uint64_t pos = graph_start + graph_head; /* file offset of the next initializer field */
    for (size_t i = 0; i < plan->n; i++) {
        Onnx__TensorProto *tp = gp->initializer[i];
        if (wants_alignment(tp)) {
            size_t rest = rest_size(tp);
            /* where the raw bytes would start with a 1-byte data_type: field tag + length + all before raw */
            uint64_t at = pos + 1 + WIDE_LEN + aligned_tensor_len(rest, 1, 0);
            size_t pad = (size_t)((TD_ONNX_ALIGN_BYTES - at % TD_ONNX_ALIGN_BYTES) % TD_ONNX_ALIGN_BYTES);
            plan->dtype_width[i] = (uint8_t)(1 + pad);
            pos += 1 + WIDE_LEN + aligned_tensor_len(rest, 1 + pad, tp->raw_data.len);
        } else {
            size_t len = protobuf_c_message_get_packed_size(&tp->base);
            pos += 1 + varint_size(len) + len;
        }
    }
    plan->graph_len = pos - graph_start;
    plan->total = pos;
    return TD_OK;
}

void td_onnx_aligned_write(Onnx__ModelProto *mp, const td_onnx_aligned_plan *plan, ProtobufCBuffer *buf) {
    Onnx__GraphProto *gp = mp->graph;
    size_t n_init = gp->n_initializer;
    mp->graph = NULL;
    gp->n_initializer = 0;
    protobuf_c_message_pack_to_buffer(&mp->base, buf);
    put_byte(buf, KEY_GRAPH);
    put_varint(buf, plan->graph_len, WIDE_LEN);
    protobuf_c_message_pack_to_buffer(&gp->base, buf);
    gp->n_initializer = n_init;
    mp->graph = gp;
    for (size_t i = 0; i < plan->n && i < n_init; i++) {
        Onnx__TensorProto *tp = gp->initializer[i];
        put_byte(buf, KEY_INITIALIZER);
        size_t width = plan->dtype_width[i];
        if (!width) {
            size_t len = protobuf_c_message_get_packed_size(&tp->base);
            put_varint(buf, len, varint_size(len));
            protobuf_c_message_pack_to_buffer(&tp->base, buf);
            continue;
        }
        size_t rest = rest_size(tp);
        put_varint(buf, aligned_tensor_len(rest, width, tp->raw_data.len), WIDE_LEN);
        tp->has_raw_data = 0;
        tp->has_data_type = 0;
        protobuf_c_message_pack_to_buffer(&tp->base, buf);
        tp->has_raw_data = 1;
        tp->has_data_type = 1;
        put_byte(buf, KEY_DATA_TYPE);
        put_varint(buf, (uint64_t)tp->data_type, width);
        put_byte(buf, KEY_RAW_DATA);
        put_varint(buf, tp->raw_data.len, WIDE_LEN);
        buf->append(buf, tp->raw_data.len, tp->raw_data.data);
    }
}

void td_onnx_aligned_plan_free(td_onnx_aligned_plan *plan) {
    free(plan->dtype_width);
    memset(plan, 0, sizeof *plan);
}
