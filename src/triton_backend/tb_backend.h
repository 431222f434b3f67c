/* State shared by the tdeploy Triton backend's files: one tb_model per loaded
 * model (config, tokenizer: read-only after load, shared by every instance) and
 * one tb_instance per model instance (its own session and td_ctx: Triton calls an
 * instance's execute from one thread at a time, and a session is not thread-safe). */
#ifndef TD_TRITON_BACKEND_H
#define TD_TRITON_BACKEND_H

#include "generate/generator.h"
#include "tdeploy/session.h"
#include "tdeploy/tokenizer.h"
#include "triton_backend/tb_config.h"
#include "triton_backend/tb_triton_c.h"

#include <limits.h>

typedef struct tb_model {
    char name[TB_NAME_MAX];
    char version_dir[PATH_MAX];
    tb_config cfg;
    td_tokenizer *tok;    /* NULL when the config has no TEXT input */
    td_tok_options tok_opt; /* add special tokens, no padding, truncation at cfg.max_length */
    int64_t pad_id;       /* id of padded positions (their mask is 0, so any valid id works) */
} tb_model;

typedef struct tb_instance {
    tb_model *m;
    TRITONBACKEND_ModelInstance *triton;
    td_session *s;        /* encoder models */
    td_generator *gen;    /* task text-generation (tb_generate.c); owns its own session */
    td_ctx *ctx;
    int32_t ids_dtype;             /* the session's input_ids dtype: INT64 or INT32 */
    bool feed_mask, feed_types;    /* the session has attention_mask / token_type_ids inputs */
    int out_index[TB_MAX_OUTPUTS]; /* session output of cfg.outputs[i] */
    uint64_t run_start_ns, run_end_ns; /* the last td_session_run: Triton's compute_infer, between the input
                                        * (read, tokenize, pack, bind) and output (scatter, send) phases */
} tb_instance;

/* Handle `count` requests (TRITONBACKEND_ModelInstanceExecute): every request gets one final response, good or
 * an error of its own, and is released. */
void tb_execute(tb_instance *inst, TRITONBACKEND_Request **requests, uint32_t count);

/* Generation (task text-generation, decoupled): each request streams TEXT_OUTPUT pieces and a final response
 * with FINISH_REASON, or one error response; every request is released inside. */
void tb_generate_execute(tb_instance *inst, TRITONBACKEND_Request **requests, uint32_t count);

/* Config auto-complete (tb_autocomplete.c): when the server allows it, fill what config.pbtxt leaves out
 * (max_batch_size, inputs, outputs) from the model file in version_dir and hand it back with ModelSetConfig. */
TRITONSERVER_Error *tb_autocomplete(TRITONBACKEND_Model *model, const char *name, const char *version_dir);

/* One input tensor copied into a contiguous host buffer (Triton may hand it over in several pieces). */
typedef struct tb_tensor_in {
    TRITONSERVER_DataType dtype;
    const int64_t *shape; /* owned by the request */
    uint32_t rank;
    char *data; /* malloc'd (also on error: free it) */
    uint64_t size;
} tb_tensor_in;

bool tb_has_input(TRITONBACKEND_Request *r, const char *name);
TRITONSERVER_Error *tb_read_input(TRITONBACKEND_Request *r, const char *name, tb_tensor_in *t);

/* TRITONSERVER_ErrorNew with a printf-style message. */
TRITONSERVER_Error *tb_error(TRITONSERVER_Error_Code code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tb_log(TRITONSERVER_LogLevel level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
