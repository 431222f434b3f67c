/* Op tables of the CPU runtime, one per source file; ops_registry.c joins them. */
#ifndef TD_RUNTIME_CPU_OPS_H
#define TD_RUNTIME_CPU_OPS_H

#include "runtime/rt.h"

extern const td_op_def td_ops_elementwise[];
extern const int td_ops_elementwise_count;
extern const td_op_def td_ops_tensor[];
extern const int td_ops_tensor_count;
extern const td_op_def td_ops_nn[];
extern const int td_ops_nn_count;
extern const td_op_def td_ops_contrib[];
extern const int td_ops_contrib_count;
extern const td_op_def td_ops_decoder[];
extern const int td_ops_decoder_count;
extern const td_op_def td_ops_quant[];
extern const int td_ops_quant_count;
extern const td_op_def td_ops_nbits[];
extern const int td_ops_nbits_count;
extern const td_op_def td_ops_kvcache[];
extern const int td_ops_kvcache_count;
extern const td_op_def td_ops_gather_bq[];
extern const int td_ops_gather_bq_count;

/* Highest ai.onnx opset whose semantics the implementations follow. */
#define TD_MAX_ONNX_OPSET 21

#endif
