/* Tensor descriptors and checked shape arithmetic. */
#include "core/tensor.h"

#include "core/checked.h"
#include "core/ctx.h"

#include <stdio.h>

bool td_shape_numel(const int64_t *dims, int n, int64_t *out) {
    int64_t p = 1;
    for (int i = 0; i < n; i++) {
        if (dims[i] < 0 || !td_mul_i64(p, dims[i], &p))
            return false;
    }
    *out = p;
    return true;
}

td_status td_tensor_desc_init(td_ctx *ctx, td_tensor_desc *desc, td_dtype dtype, int rank, const int64_t *shape) {
    if (rank < 0 || rank > TD_MAX_RANK)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "tensor rank %d is outside 0..%d", rank, TD_MAX_RANK);
    int64_t numel;
    if (!td_shape_numel(shape, rank, &numel))
        return td_fail(ctx, TD_ERR_OVERFLOW, "tensor shape has a negative dim or its element count overflows");
    size_t nbytes;
    if ((uint64_t)numel > SIZE_MAX || !td_mul_size((size_t)numel, td_dtype_size(dtype), &nbytes))
        return td_fail(ctx, TD_ERR_OVERFLOW, "tensor byte size overflows");
    desc->dtype = dtype;
    desc->rank = rank;
    int64_t stride = 1;
    for (int i = rank - 1; i >= 0; i--) {
        desc->shape[i] = shape[i];
        desc->strides[i] = stride;
        stride *= shape[i] ? shape[i] : 1;
    }
    return TD_OK;
}

int64_t td_tensor_desc_numel(const td_tensor_desc *desc) {
    int64_t n = 1;
    for (int i = 0; i < desc->rank; i++)
        n *= desc->shape[i];
    return n;
}

size_t td_tensor_desc_nbytes(const td_tensor_desc *desc) {
    return (size_t)td_tensor_desc_numel(desc) * td_dtype_size(desc->dtype);
}

bool td_tensor_desc_is_contiguous(const td_tensor_desc *desc) {
    int64_t stride = 1;
    for (int i = desc->rank - 1; i >= 0; i--) {
        if (desc->shape[i] != 1 && desc->strides[i] != stride)
            return false;
        stride *= desc->shape[i];
    }
    return true;
}

const char *td_shape_str(const int64_t *shape, int rank, char *buf, size_t buflen) {
    size_t pos = 0;
    if (buflen == 0)
        return buf;
    buf[0] = '\0';
    pos += (size_t)snprintf(buf + pos, buflen - pos, "[");
    for (int i = 0; i < rank && pos < buflen; i++)
        pos += (size_t)snprintf(buf + pos, buflen - pos, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (pos < buflen)
        snprintf(buf + pos, buflen - pos, "]");
    return buf;
}
