/* Graph optimizer: cleanup, constant folding, shape inference, fusions into
 * ONNX Runtime's com.microsoft contrib operators, and fp16/bf16 conversion,
 * run on the IR in place (src/onnx/ir.h).
 *
 *   td_opt_options o;
 *   td_opt_options_default(&o);
 *   o.precision = TD_OPT_FP16;
 *   td_opt_report r;
 *   td_status s = td_optimize(ctx, model, &o, &r);
 *
 * Ownership: td_optimize rewrites model in place; the report holds no pointers
 * into the model and needs no freeing. */
#ifndef TD_OPT_OPTIMIZE_H
#define TD_OPT_OPTIMIZE_H

#include "onnx/ir.h"

typedef enum td_opt_target {
    TD_OPT_TARGET_FUSED = 0,    /* contrib ops (com.microsoft) allowed */
    TD_OPT_TARGET_PORTABLE = 1, /* standard ONNX domain only */
} td_opt_target;

/* INT8: dynamic quantization of weight matrix products (pass_quantize.c); needs the fused target. */
/* INT4: MatMul weights -> com.microsoft MatMulNBits, 4-bit blocks of 32 (pass_quantize.c) */
typedef enum td_opt_precision { TD_OPT_FP32 = 0, TD_OPT_FP16 = 1, TD_OPT_BF16 = 2, TD_OPT_INT8 = 3, TD_OPT_INT4 = 4 } td_opt_precision;

/* "Evaluate this node on these constant tensors": constant folding calls it for
 * every node whose inputs are all constant. inputs[i] is NULL for an omitted
 * optional input. On success the callee fills outputs[0..n_outputs) with new
 * tensors the caller takes over. It must refuse (TD_ERR_UNSUPPORTED, the node
 * is then simply not folded) any op it does not implement and any output with
 * more than max_elements elements; any other failure is a real error. */
typedef td_status (*td_opt_eval_fn)(void *user, td_ctx *ctx, const td_node *node, const td_tensor *const *inputs,
                                    int n_inputs, td_tensor **outputs, int n_outputs, int64_t max_elements);

typedef struct td_opt_options {
    td_opt_target target;
    td_opt_precision precision;
    bool keep_io_types;        /* fp16/bf16: graph inputs/outputs stay float32 (default true) */
    int int8_weight_bits;      /* int8: 8 (default, [-127, 127]) or 7 ([-63, 63]: coarser weights that the AVX2
                                  kernel runs 1.2x faster, exactly; ONNX Runtime's reduce_range) */
    const char *passes;        /* comma-separated pass names; NULL = the default pipeline of target */
    int64_t fold_max_elements; /* largest tensor constant folding may create (default 1M elements) */
    td_opt_eval_fn eval;       /* NULL = the CPU runtime's op kernels, falling back to the optimizer's
                                  reference kernels for what the runtime lacks (src/opt/fold_runtime.c) */
    void *eval_user;
    bool verbose;              /* log what each pass changed (td_info) */
} td_opt_options;

void td_opt_options_default(td_opt_options *o);

/* fold_max_elements for a decoder that generates: fold every constant (above all the exporter's Transpose of each
 * weight), since every decode step is run by a plan that would otherwise redo them. convert, triton-repo and the
 * generator use it. */
#define TD_OPT_FOLD_ALL_DECODER (INT64_C(1) << 40)

#define TD_OPT_MAX_PASS_STATS 40
#define TD_OPT_N_FUSION_KINDS 13

typedef struct td_opt_pass_stat {
    char name[32];
    int runs;       /* how often the manager ran it (cleanups re-run after rewrites) */
    int changes;    /* rewrites it made in total */
    double seconds; /* time spent in it in total */
} td_opt_pass_stat;

typedef struct td_opt_report {
    int nodes_before, nodes_after;
    int initializers_before, initializers_after;
    td_opt_pass_stat passes[TD_OPT_MAX_PASS_STATS];
    int n_passes;
    /* Nodes of each fused op type in the result (same op list as fusion_names). */
    const char *fusion_names[TD_OPT_N_FUSION_KINDS];
    int fusion_counts[TD_OPT_N_FUSION_KINDS];
    double seconds;
} td_opt_report;

/* Optimize m in place. report may be NULL. On failure the model may be partly
 * rewritten but stays a valid graph (every pass keeps the graph consistent). */
td_status td_optimize(td_ctx *ctx, td_model *m, const td_opt_options *opts, td_opt_report *report);

/* Names of all passes known to --passes, comma-separated, static string. */
const char *td_opt_pass_names(void);

#endif
