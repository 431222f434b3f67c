/* Pass manager: runs a list of passes over a model, re-runs the cheap cleanup
 * passes after any pass that rewrote something, and keeps per-pass statistics. */
#ifndef TD_OPT_PASS_H
#define TD_OPT_PASS_H

#include "opt/optimize.h"

/* State shared by the passes of one td_optimize call. */
typedef struct td_opt_state {
    const td_opt_options *opts;
    td_model *model;
} td_opt_state;

/* A pass rewrites st->model->graph and adds the number of rewrites to *changes.
 * It must leave the graph consistent (producer/consumer links right) even on error. */
typedef td_status (*td_pass_fn)(td_ctx *ctx, td_opt_state *st, int *changes);

typedef struct td_pass {
    const char *name;
    const char *summary;
    td_pass_fn run;
    bool cleanup;       /* cheap: re-run after every rewriting pass until nothing changes */
    bool contrib;       /* emits com.microsoft ops: refused for --target portable */
} td_pass;

/* All passes, in default pipeline order. */
const td_pass *td_pass_table(int *count);
const td_pass *td_pass_find(const char *name);

/* Run passes[0..n) in order; after each pass that changed something, run the
 * cleanup passes of the same list until none changes anything (bounded). */
td_status td_pass_manager_run(td_ctx *ctx, td_opt_state *st, const td_pass *const *passes, int n,
                              td_opt_report *report);

/* The passes (one file each). */
td_status td_pass_dce(td_ctx *ctx, td_opt_state *st, int *changes);             /* pass_dce.c */
td_status td_pass_eliminate(td_ctx *ctx, td_opt_state *st, int *changes);       /* pass_eliminate.c */
td_status td_pass_fold(td_ctx *ctx, td_opt_state *st, int *changes);            /* pass_fold.c */
td_status td_pass_cse(td_ctx *ctx, td_opt_state *st, int *changes);             /* pass_cse.c */
td_status td_pass_shape(td_ctx *ctx, td_opt_state *st, int *changes);           /* pass_shape.c */
td_status td_pass_fuse_layernorm(td_ctx *ctx, td_opt_state *st, int *changes);  /* fuse_layernorm.c */
td_status td_pass_fuse_gelu(td_ctx *ctx, td_opt_state *st, int *changes);       /* fuse_gelu.c */
td_status td_pass_fuse_attention(td_ctx *ctx, td_opt_state *st, int *changes);  /* fuse_attention.c */
td_status td_pass_fuse_skip_layernorm(td_ctx *ctx, td_opt_state *st, int *changes); /* fuse_skip_layernorm.c */
td_status td_pass_fuse_bias_gelu(td_ctx *ctx, td_opt_state *st, int *changes);  /* fuse_bias_gelu.c */
td_status td_pass_fuse_embed_layernorm(td_ctx *ctx, td_opt_state *st, int *changes); /* fuse_embed_layernorm.c */
td_status td_pass_fuse_rmsnorm(td_ctx *ctx, td_opt_state *st, int *changes);    /* fuse_rmsnorm.c */
td_status td_pass_fuse_silu(td_ctx *ctx, td_opt_state *st, int *changes);      /* fuse_silu.c */
td_status td_pass_fuse_rotary(td_ctx *ctx, td_opt_state *st, int *changes);    /* fuse_rotary.c */
td_status td_pass_fuse_decoder_attention(td_ctx *ctx, td_opt_state *st, int *changes); /* fuse_decoder_attention.c */
td_status td_pass_matmul_bias(td_ctx *ctx, td_opt_state *st, int *changes);     /* pass_matmul_bias.c */
td_status td_pass_precision(td_ctx *ctx, td_opt_state *st, int *changes);       /* pass_precision.c */
td_status td_pass_quantize(td_ctx *ctx, td_opt_state *st, int *changes);        /* pass_quantize.c */

#endif
