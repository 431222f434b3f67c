/* The session object (private to src/runtime). See rt.h for the value
 * classification and backend.h for the backend split. */
#ifndef TD_RUNTIME_SESSION_IMPL_H
#define TD_RUNTIME_SESSION_IMPL_H

#include "runtime/backend.h"
#include "runtime/rt.h"
#include "tdeploy/session.h"

typedef enum td_vkind {
    TD_V_UNUSED = 0, /* neither produced nor consumed by a live node */
    TD_V_INPUT,      /* graph input: data bound by the caller */
    TD_V_CONST,      /* initializer */
    TD_V_HOIST,      /* computed while planning, kept in plan memory */
    TD_V_ARENA,      /* activation in the arena */
    TD_V_ALIAS,      /* view of another value's bytes (root) */
} td_vkind;

typedef struct td_rt_value {
    const td_value *v;
    td_vkind kind;
    td_dtype dtype;
    int producer;   /* node index or -1 */
    int root;       /* ALIAS: value whose bytes this one shares (never an ALIAS) */
    bool need_data; /* some shape function needs this value's data */
    bool is_static; /* known at plan time (const, hoisted, or a data-keyed input) */
    int first, last; /* lifetime in node steps (ARENA roots, including aliases' uses) */
    td_rt_tensor t; /* current shape and data pointer */
    void *hoist_buf; /* HOIST: plan-owned memory */
} td_rt_value;

typedef struct td_input_binding {
    bool set;
    int rank;
    int64_t shape[TD_MAX_RANK];
    const void *data;
    size_t nbytes;
} td_input_binding;

struct td_engine_info;

struct td_session {
    td_model *owned_model; /* loaded by create_file, else NULL */
    td_model_file *owned_file; /* opened by create_file, else NULL */
    const struct td_engine_info *engine; /* profiles, target GPU: set when the model came from an engine file */
    const td_model *model;
    const td_graph *g;
    td_session_options opt;
    td_rt_env env;
    const td_backend *backend;
    void *backend_state;

    int nv;
    td_rt_value *vals;
    int nn;
    td_rt_node *nodes; /* topological order */

    int n_inputs, n_outputs;
    int *input_vals, *output_vals; /* value indices */
    int32_t *in_dtype;
    int *in_rank;
    int64_t **in_dims;
    const char ***in_params;
    td_input_binding *bound;

    /* Current plan and its key (input shapes + data of data-keyed inputs). */
    bool planned;
    td_input_binding *key;  /* shapes */
    uint8_t **key_data;     /* copies of data-keyed inputs' bytes */
    uint8_t *arena;
    size_t arena_cap, arena_size, arena_naive;
    size_t hoisted_bytes, weight_bytes;
    uint64_t n_plans, n_runs;
    uint64_t n_allocs; /* heap allocations made by planning (td_session_stats.allocs) */
    bool outputs_valid; /* the last run succeeded: output pointers are good */
    int n_hoisted;
    int n_fused; /* nodes fused_away by the backend */
    double device_ms; /* set by the CUDA backend: GPU time of the last forward pass */
};

#endif
