/* com.microsoft GatherBlockQuantized with ONNX Runtime's semantics: rows of a block-quantized table gathered
 * and dequantized (the token embedding of a decoder whose table stays quantized).
 *
 *   data    uint8 (D0, ..., Dr-1)        codes; bits 4: two per byte along the last axis (element 2i in the low
 *                                         nibble of byte i), so the table has C = Dr-1 * 8 / bits columns
 *   indices int32/int64 (I...)            rows of axis 0 (negative counts from the end)
 *   scales  float (D0, ..., ceil(C / block_size))  per block along the last axis
 *   zero_points uint8, optional           like scales (bits 4: packed two per byte along the last axis);
 *                                         absent: 2^(bits-1)
 *   Y       float (I..., D1, ..., C)      Y[i, ..., c] = (code - zp) * scale of row indices[i]
 * Supported: gather_axis 0 and quantize_axis the last axis (what exporters write). A gather reads a few rows per
 * token, so the plain loop below is both the kernel and its reference. */
#include "runtime/cpu/op_util.h"
#include "runtime/cpu/ops.h"

typedef struct gbq_state {
    int bits, block_size;
    int64_t quantize_axis;
} gbq_state;

static td_status gbq_init(td_ctx *ctx, td_rt_node *rn, const td_dtype *in, td_dtype *out) {
    TD_TRY(td_check_inputs(ctx, rn, 3, 4, 1, 1));
    if (in[0] != TD_U8)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "data must be uint8 (got %s; int4/uint4 tensors: not yet)",
                            td_dtype_name(in[0]));
    if (in[1] != TD_I32 && in[1] != TD_I64)
        return td_node_fail(ctx, rn, TD_ERR_DTYPE, "indices must be int32 or int64 (got %s)", td_dtype_name(in[1]));
    if (in[2] != TD_F32)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "scales must be float (got %s)", td_dtype_name(in[2]));
    if (rn->n_in > 3 && rn->in[3] >= 0 && in[3] != TD_U8)
        return td_node_fail(ctx, rn, TD_ERR_DTYPE, "zero_points must be uint8 like data (got %s)",
                            td_dtype_name(in[3]));
    int64_t ga = td_node_attr_int(rn->node, "gather_axis", 0), qa = td_node_attr_int(rn->node, "quantize_axis", 1);
    int64_t bits = td_node_attr_int(rn->node, "bits", 4), bs = td_node_attr_int(rn->node, "block_size", 128);
    if (ga != 0)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "gather_axis=%lld is not supported (0)", (long long)ga);
    if (bits != 4 && bits != 8)
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "bits=%lld is not supported (4 or 8)", (long long)bits);
    if (bs < 16 || bs > (1 << 20) || (bs & (bs - 1)))
        return td_node_fail(ctx, rn, TD_ERR_GRAPH, "block_size=%lld must be a power of two >= 16", (long long)bs);
    gbq_state *st = calloc(1, sizeof *st);
    if (!st)
        return td_fail_oom(ctx, sizeof *st, "op state");
    st->bits = (int)bits;
    st->block_size = (int)bs;
    st->quantize_axis = qa;
    rn->state = st;
    out[0] = TD_F32;
    return TD_OK;
}

static td_status gbq_shape(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out) {
    const gbq_state *st = rn->state;
    const td_rt_tensor *d = in[0], *ix = in[1], *s = in[2];
    int r = d->rank;
    if (r < 2 || (st->quantize_axis != r - 1 && st->quantize_axis != -1))
        return td_node_fail(ctx, rn, TD_ERR_UNSUPPORTED, "data of rank %d with quantize_axis=%lld: only the last "
                            "axis of data of rank >= 2 is supported", r, (long long)st->quantize_axis);
    if (ix->rank + r - 1 > TD_MAX_RANK)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "output rank %d exceeds %d", ix->rank + r - 1, TD_MAX_RANK);
    int64_t cols = d->shape[r - 1] * (8 / st->bits), nsb = (cols + st->block_size - 1) / st->block_size;
    if (cols <= 0)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "data's last axis must not be empty");
    bool ok = s->rank == r && s->shape[r - 1] == nsb;
    for (int i = 0; ok && i < r - 1; i++)
        ok = s->shape[i] == d->shape[i];
    if (!ok)
        return td_node_fail(ctx, rn, TD_ERR_SHAPE, "scales must have data's shape with %lld blocks on the last axis",
                            (long long)nsb);
    if (rn->n_in > 3 && in[3]) {
        int64_t want = td_rt_numel(s) / nsb * (st->bits == 4 ? (nsb + 1) / 2 : nsb);
        if (td_rt_numel(in[3]) != want)
            return td_node_fail(ctx, rn, TD_ERR_SHAPE, "zero_points must hold %lld values", (long long)want);
    }
    out[0]->rank = ix->rank + r - 1;
    for (int i = 0; i < ix->rank; i++)
        out[0]->shape[i] = ix->shape[i];
    for (int i = 1; i < r; i++)
        out[0]->shape[ix->rank + i - 1] = d->shape[i];
    out[0]->shape[out[0]->rank - 1] = cols;
    return TD_OK;
}

static td_status gbq_exec(td_ctx *ctx, td_rt_node *rn, td_rt_tensor *const *in, td_rt_tensor *const *out,
                          td_rt_env *env) {
    (void)env;
    const gbq_state *st = rn->state;
    const td_rt_tensor *d = in[0];
    int r = d->rank;
    int64_t rows = d->shape[0], bytes = d->shape[r - 1], cols = bytes * (8 / st->bits);
    int64_t nsb = (cols + st->block_size - 1) / st->block_size, zrow = st->bits == 4 ? (nsb + 1) / 2 : nsb;
    int64_t lines = td_rt_numel(d) / (rows ? rows : 1) / (bytes ? bytes : 1); /* last-axis lines per row */
    const uint8_t *codes = d->data, *zp = rn->n_in > 3 && in[3] ? in[3]->data : NULL;
    const float *scales = in[2]->data;
    float *y = out[0]->data;
    int64_t ni = td_rt_numel(in[1]);
    for (int64_t i = 0; i < ni; i++) {
        int64_t idx = td_ldi(in[1]->data, in[1]->dtype, i);
        if (idx < -rows || idx >= rows)
            return td_node_fail(ctx, rn, TD_ERR_INVALID_ARGUMENT, "index %lld at position %lld is outside [-%lld, %lld)",
                                (long long)idx, (long long)i, (long long)rows, (long long)rows);
    }
    for (int64_t i = 0; i < ni; i++) {
        int64_t idx = td_ldi(in[1]->data, in[1]->dtype, i);
        if (idx < 0)
            idx += rows;
        for (int64_t l = 0; l < lines; l++) {
            int64_t line = idx * lines + l; /* (row, line) of the table */
            const uint8_t *q = codes + line * bytes;
            const float *sc = scales + line * nsb;
            float *o = y + (i * lines + l) * cols;
            for (int64_t c = 0; c < cols; c++) {
                int64_t blk = c / st->block_size;
                int code = st->bits == 8 ? q[c] : (c & 1) ? q[c / 2] >> 4 : q[c / 2] & 15;
                int z = 1 << (st->bits - 1);
                if (zp)
                    z = st->bits == 8 ? zp[line * zrow + blk]
                                      : (blk & 1) ? zp[line * zrow + blk / 2] >> 4 : zp[line * zrow + blk / 2] & 15;
                o[c] = (float)(code - z) * sc[blk];
            }
        }
    }
    return TD_OK;
}

const td_op_def td_ops_gather_bq[] = {
    {"com.microsoft", "GatherBlockQuantized", 1, 1, gbq_init, gbq_shape, gbq_exec, 0, 0, NULL},
};
const int td_ops_gather_bq_count = (int)(sizeof td_ops_gather_bq / sizeof td_ops_gather_bq[0]);
