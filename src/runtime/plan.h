/* Per-shape-profile planning: shape inference over the graph for the bound
 * input shapes, evaluation of hoisted (shape-only) nodes, lifetimes and arena
 * offsets. A plan stays valid while the input shapes (and the data of inputs
 * that feed shape computations) stay the same. */
#ifndef TD_RUNTIME_PLAN_H
#define TD_RUNTIME_PLAN_H

#include "runtime/session_impl.h"

/* True when the bound inputs differ from the current plan's key. */
bool td_plan_key_changed(const td_session *s);
/* Build a plan for the bound inputs (replacing the current one). */
td_status td_plan_build(td_ctx *ctx, td_session *s);
/* Point input values (and views of them) at the bound data for this run. */
void td_plan_bind_inputs(td_session *s);
/* Free plan memory (hoisted buffers, arena). */
void td_plan_release(td_session *s);

/* Plan for the bound inputs without running (the engine builder sizes each
 * profile's activation arena this way). */
td_status td_session_plan_only(td_ctx *ctx, td_session *s);

/* Engine sessions: the bound (batch, sequence) must lie inside one of the
 * engine's shape profiles (session_file.c). */
td_status td_session_check_profile(td_ctx *ctx, const td_session *s);

/* Let a session own the model it was created from (create_file). */
td_status td_session_adopt_model(td_session *s, td_model *model);

#endif
