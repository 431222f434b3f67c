/* Tensor descriptor: dtype, shape (ne) and strides in elements (nb).
 * Shapes are int64 like ONNX's; a contiguous row-major tensor has
 * strides[rank-1] = 1, strides[i] = strides[i+1] * shape[i+1]. */
#ifndef TD_CORE_TENSOR_H
#define TD_CORE_TENSOR_H

#include "core/dtype.h"
#include "tdeploy/tdeploy.h"

#define TD_MAX_RANK 8

typedef struct td_tensor_desc {
    td_dtype dtype;
    int rank;                      /* 0 = scalar */
    int64_t shape[TD_MAX_RANK];    /* elements per axis */
    int64_t strides[TD_MAX_RANK];  /* elements, not bytes */
} td_tensor_desc;

/* Fill desc as contiguous row-major; checks rank <= TD_MAX_RANK, dims >= 0 and
 * that numel * dtype size fits in size_t. */
td_status td_tensor_desc_init(td_ctx *ctx, td_tensor_desc *desc, td_dtype dtype, int rank, const int64_t *shape);
int64_t td_tensor_desc_numel(const td_tensor_desc *desc);
size_t td_tensor_desc_nbytes(const td_tensor_desc *desc);
bool td_tensor_desc_is_contiguous(const td_tensor_desc *desc);
/* "[2, 8, 32]" into buf. */
const char *td_shape_str(const int64_t *shape, int rank, char *buf, size_t buflen);

#endif
