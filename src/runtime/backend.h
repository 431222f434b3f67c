/* Execution backends behind the session API.
 *
 * The session does everything that does not depend on where ops run: graph
 * order, dtype checking (each op's init), value classification, shape
 * inference per input-shape profile (each op's shape function) and lifetime
 * analysis. A backend supplies the rest through this small vtable:
 *
 *   supports_op  can this node (op, opset, input dtypes) run here? The CPU
 *                backend says yes for every registered op; a CUDA backend
 *                would say no for ops it lacks and the session would report
 *                them at creation (or, later, place them on the CPU).
 *   prepare      once per session, after dtypes are known: pack constant
 *                weights into the layout its kernels want (GEMM B panels,
 *                fp16/bf16 copies), upload them (CUDA).
 *   run          execute the non-hoisted nodes of the current plan. Buffers are
 *                described by the plan (arena offsets); the CPU backend uses
 *                host memory, a CUDA backend would allocate its arena with
 *                cudaMalloc from the same offsets and copy inputs/outputs.
 *   free         release what prepare made.
 *
 * Ownership: the backend state returned by prepare belongs to the session and
 * is released with free. */
#ifndef TD_RUNTIME_BACKEND_H
#define TD_RUNTIME_BACKEND_H

#include "runtime/rt.h"

typedef struct td_session td_session;

typedef struct td_backend {
    const char *name;
    /* TD_OK when rn (def, opset, input dtypes already checked by init) can run
     * on this backend, else a TD_ERR_UNSUPPORTED message naming why. */
    td_status (*supports_op)(td_ctx *ctx, const td_rt_node *rn, const td_dtype *in_dtypes);
    td_status (*prepare)(td_ctx *ctx, td_session *s, void **state);
    td_status (*run)(td_ctx *ctx, td_session *s, void *state);
    void (*free)(void *state);
    /* The session runs every kernel on the reference loops (env.reference, one thread): see backend_ref.c. */
    bool reference_kernels;
} td_backend;

extern const td_backend td_backend_cpu;
/* "reference": the CPU ops on the reference kernels (ref_kern.h), no packing, no fusion, one thread. */
extern const td_backend td_backend_ref;

extern const td_backend td_backend_cuda; /* backend_cuda.c: loads libtdeploy_cuda.so on first use */

/* Backend by name ("cpu", "reference", "cuda"); NULL if unknown. */
const td_backend *td_backend_find(const char *name);

#endif
