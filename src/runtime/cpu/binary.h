/* Elementwise binary ops with numpy broadcasting (ONNX Add, Sub, Mul, Div, Pow,
 * Equal, Less, Greater) and the ternary Where, on float / int64 / int32 tensors.
 * Comparisons write bool (one byte, 0/1). Integer semantics: Div truncates
 * toward zero like C (and ONNX Runtime); division by zero gives 0 and
 * INT_MIN / -1 gives INT_MIN instead of trapping; Add/Sub/Mul wrap around.
 * Pow on integers: exact by repeated squaring (wrapping); negative exponents
 * give 1 / base^-e truncated (so 0 unless |base| == 1; 0 ** negative gives 0).
 * Float Pow is powf. The output buffer must not overlap an input unless it is
 * that input with the same shape as the output. */
#ifndef TD_RUNTIME_CPU_BINARY_H
#define TD_RUNTIME_CPU_BINARY_H

#include "core/dtype.h"
#include "runtime/cpu/broadcast.h"

typedef enum td_binop {
    TD_BINOP_ADD,
    TD_BINOP_SUB,
    TD_BINOP_MUL,
    TD_BINOP_DIV,
    TD_BINOP_POW,
    TD_BINOP_EQUAL,
    TD_BINOP_LESS,
    TD_BINOP_GREATER,
} td_binop;

/* Output dtype of op on dtype (TD_BOOL for comparisons). */
td_dtype td_binop_out_dtype(td_binop op, td_dtype dtype);

/* out = a op b. plan from td_bcast_plan_make over (a, b). dtype: TD_F32, TD_I64
 * or TD_I32 (others: TD_ERR_UNSUPPORTED). */
td_status td_cpu_binary(td_ctx *ctx, td_threadpool *pool, td_binop op, td_dtype dtype, const td_bcast_plan *plan,
                        const void *a, const void *b, void *out);

/* out = cond ? x : y. plan over (cond, x, y); cond is bool (bytes), x/y/out of
 * dtype (any fixed-size type: only the bytes are copied). */
td_status td_cpu_where(td_ctx *ctx, td_threadpool *pool, td_dtype dtype, const td_bcast_plan *plan,
                       const uint8_t *cond, const void *x, const void *y, void *out);

#endif
