/* Embedding sum + LayerNormalization -> com.microsoft EmbedLayerNormalization.
 *   s = word[input_ids] + position[position_ids] (+ segment[segment_ids])   (Adds in any order)
 *   y = LayerNormalization(s, gamma, beta, axis=-1)
 * The word table is the largest one indexed directly by a graph input; of the
 * other lookups the larger table is the position table and the smaller one the
 * segment (token type) table. The index tensors are passed as they are computed
 * (Cast to int32, the op's index type), so position ids derived from input_ids
 * (RoBERTa's padding offset) or sliced from a buffer both stay exact; a position
 * table sliced to the sequence length (rows 0..seq-1) is the op's default
 * position ids, so that input is omitted. Only when
 * the sum has no other reader (post-LN encoders). */
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    td_node *g[3];
    int n;
    td_node *pos_slice; /* position rows taken by Slice instead of Gather, or NULL */
} gathers;

/* Slice(table, [0], n, [0] [, [1]]) of a 2-D float constant: the rows of positions 0..n-1. */
static td_node *position_slice(const td_value *v) {
    td_node *sl = opt_producer(v, "Slice");
    int64_t st[2], ax[2], sp[2];
    int cs = 0, ca = 0, cp = 0;
    if (!sl || sl->n_inputs < 3 || !opt_single_use(v))
        return NULL;
    const td_tensor *t = opt_const(sl->inputs[0]);
    if (!t || t->rank != 2 || t->dtype != TD_F32 || !opt_const_ints(sl->inputs[1], st, 2, &cs) || cs != 1 || st[0] != 0)
        return NULL;
    if (sl->n_inputs > 3 && sl->inputs[3] && (!opt_const_ints(sl->inputs[3], ax, 2, &ca) || ca != 1 || ax[0] != 0))
        return NULL;
    if (sl->n_inputs > 4 && sl->inputs[4] && (!opt_const_ints(sl->inputs[4], sp, 2, &cp) || cp != 1 || sp[0] != 1))
        return NULL;
    return v->type.rank == 2 ? sl : NULL;
}

/* Leaves of a single-use Add tree that are Gathers from 2-D float constants
 * (and at most one position Slice, kept in gs->pos_slice). */
static bool collect(td_value *v, gathers *gs, int depth) {
    if (depth > 3)
        return false;
    td_node *ps = position_slice(v);
    if (ps && !gs->pos_slice && depth > 0) {
        gs->pos_slice = ps;
        return true;
    }
    td_node *g = opt_producer(v, "Gather");
    if (g) {
        const td_tensor *t = opt_const(g->inputs[0]);
        if (!t || t->rank != 2 || t->dtype != TD_F32 || td_node_attr_int(g, "axis", 0) != 0 || gs->n >= 3 ||
            v->is_output)
            return false;
        /* besides the sum, only Shape may read a lookup (rewired to the ids below) */
        int sum_uses = 0;
        for (int c = 0; c < v->n_consumers; c++) {
            if (opt_is_op(v->consumers[c], "Shape"))
                continue;
            sum_uses++;
        }
        if (sum_uses != 1)
            return false;
        gs->g[gs->n++] = g;
        return true;
    }
    td_node *add = opt_producer(v, "Add");
    if (!add || (depth > 0 && !opt_single_use(v)))
        return false;
    return collect(add->inputs[0], gs, depth + 1) && collect(add->inputs[1], gs, depth + 1);
}

/* Shape(lookup) = Concat(Shape(ids), [hidden]): the lookup itself goes away. */
static td_status rewire_shape_users(td_ctx *ctx, td_graph *g, td_node *gather, int64_t hidden) {
    td_value *v = gather->outputs[0], *ids = gather->inputs[1];
    for (int c = v->n_consumers - 1; c >= 0; c--) {
        td_node *sh = v->consumers[c];
        if (!opt_is_op(sh, "Shape"))
            continue;
        if (td_node_attr(sh, "start") || td_node_attr(sh, "end"))
            return td_fail(ctx, TD_ERR_UNSUPPORTED, "Shape node '%s' with start/end reads embedding lookup '%s'",
                           sh->name, v->name);
        td_value *ids_shape = NULL, *h = NULL;
        int64_t one = 1;
        TD_TRY(opt_new_value(ctx, g, "embed_ids_shape", &ids_shape));
        TD_TRY(opt_add_node(ctx, g, "Shape", "", "Shape", &ids, 1, &ids_shape, 1, NULL));
        TD_TRY(opt_new_const(ctx, g, "embed_hidden", TD_I64, 1, &one, &hidden, sizeof hidden, &h));
        td_value *cat_in[2] = {ids_shape, h};
        td_value *out = sh->outputs[0];
        td_node *cat = NULL;
        TD_TRY(opt_replace_producer(ctx, g, out, "Concat", "", "Concat", cat_in, 2, &cat));
        TD_TRY(td_node_add_attr_int(ctx, cat, "axis", 0));
    }
    return TD_OK;
}

static int64_t rows(const td_node *g) { return g->inputs[0]->initializer->dims[0]; }

static td_status as_int32(td_ctx *ctx, td_graph *g, td_value *idx, td_value **out) {
    if (idx->type.elem == TD_I32) {
        *out = idx;
        return TD_OK;
    }
    return opt_add_cast(ctx, g, "embed_ids_int32", idx, TD_I32, out, NULL);
}

td_status td_pass_fuse_embed_layernorm(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    int n_nodes = g->n_nodes;
    for (int i = 0; i < n_nodes; i++) {
        td_node *ln = g->nodes[i];
        if (!opt_is_op(ln, "LayerNormalization") || ln->n_inputs < 3 || !ln->inputs[2])
            continue;
        bool extra = false;
        for (int j = 1; j < ln->n_outputs; j++)
            extra |= ln->outputs[j] && (ln->outputs[j]->n_consumers || ln->outputs[j]->is_output);
        int64_t axis = td_node_attr_int(ln, "axis", -1);
        td_value *s = ln->inputs[0];
        if (extra || (axis != -1 && axis != 2) || s->type.rank != 3 || !opt_single_use(s))
            continue;
        int64_t hidden = s->type.dims[2].value;
        if (hidden <= 0 || !opt_is_vector_const(ln->inputs[1], hidden) || !opt_is_vector_const(ln->inputs[2], hidden))
            continue;
        gathers gs = {{0}, 0, NULL};
        if (!opt_producer(s, "Add") || !collect(s, &gs, 0) || gs.n + (gs.pos_slice != NULL) < 2 ||
            (gs.pos_slice && gs.n > 2))
            continue;
        td_node *pslice = gs.pos_slice;
        /* word: the largest table indexed by a 2-D int graph input */
        int w = -1;
        for (int k = 0; k < gs.n; k++) {
            td_value *idx = gs.g[k]->inputs[1];
            if (idx->is_input && idx->type.rank == 2 && (idx->type.elem == TD_I64 || idx->type.elem == TD_I32) &&
                (w < 0 || rows(gs.g[k]) > rows(gs.g[w])))
                w = k;
        }
        if (w < 0)
            continue;
        int p = -1, sg = -1;
        if (!pslice)
            for (int k = 0; k < gs.n; k++)
                if (k != w && (p < 0 || rows(gs.g[k]) > rows(gs.g[p])))
                    p = k;
        for (int k = 0; k < gs.n; k++)
            if (k != w && k != p)
                sg = k;
        if (pslice && pslice->inputs[0]->initializer->dims[1] != hidden)
            continue;
        bool shapes_ok = true;
        for (int k = 0; k < gs.n; k++) {
            const td_value *idx = gs.g[k]->inputs[1];
            shapes_ok &= gs.g[k]->inputs[0]->initializer->dims[1] == hidden && idx->type.rank == 2 &&
                         (idx->type.elem == TD_I64 || idx->type.elem == TD_I32);
        }
        if (!shapes_ok)
            continue;
        for (int k = 0; k < gs.n; k++)
            if (gs.g[k]->inputs[1]->type.rank != 2)
                shapes_ok = false;
        if (!shapes_ok)
            continue;
        for (int k = 0; k < gs.n; k++)
            TD_TRY(rewire_shape_users(ctx, g, gs.g[k], hidden));
        td_value *ids = NULL, *seg = NULL, *pos = NULL;
        TD_TRY(as_int32(ctx, g, gs.g[w]->inputs[1], &ids));
        if (!pslice) /* a sliced table means positions 0..seq-1: EmbedLayerNormalization's default */
            TD_TRY(as_int32(ctx, g, gs.g[p]->inputs[1], &pos));
        td_value *seg_table = NULL;
        if (sg >= 0) {
            TD_TRY(as_int32(ctx, g, gs.g[sg]->inputs[1], &seg));
            seg_table = gs.g[sg]->inputs[0];
        } else {
            /* no token types (DistilBERT): a zero segment row looked up by ids * 0, which adds
             * exactly nothing; runtimes that require the segment inputs (tdeploy's) can run it */
            int64_t tdims[2] = {1, hidden};
            float *zeros = calloc((size_t)hidden, sizeof(float));
            td_value *zi = NULL, *mi[2];
            if (!zeros)
                return td_fail_oom(ctx, sizeof(float) * (size_t)hidden, "a zero segment table");
            TD_TRY(opt_new_const_owned(ctx, g, "embed_zero_segment", TD_F32, 2, tdims, zeros,
                                       sizeof(float) * (size_t)hidden, &seg_table)); /* takes zeros */
            int32_t z32 = 0;
            TD_TRY(opt_new_const(ctx, g, "embed_zero_i32", TD_I32, 0, NULL, &z32, sizeof z32, &zi));
            mi[0] = ids;
            mi[1] = zi;
            TD_TRY(opt_new_value(ctx, g, "embed_segment_ids", &seg));
            TD_TRY(opt_copy_type(ctx, seg, ids));
            TD_TRY(opt_add_node(ctx, g, "Mul", "", "Mul", mi, 2, &seg, 1, NULL));
        }
        td_value *ins[9] = {ids, seg, gs.g[w]->inputs[0], pslice ? pslice->inputs[0] : gs.g[p]->inputs[0],
                            seg_table, ln->inputs[1], ln->inputs[2], NULL, pos};
        float eps = td_node_attr_float(ln, "epsilon", 1e-5f);
        /* ONNX Runtime's type inference wants the mask_index output slot present */
        td_value *outs[2] = {ln->outputs[0], NULL};
        TD_TRY(opt_new_value(ctx, g, "embed_mask_index", &outs[1]));
        td_graph_remove_node(g, ln);
        td_node *e = NULL;
        TD_TRY(opt_add_node(ctx, g, "EmbedLayerNormalization", "com.microsoft", "EmbedLayerNorm", ins, pos ? 9 : 7,
                            outs, 2, &e));
        TD_TRY(td_node_add_attr_float(ctx, e, "epsilon", eps));
        (*changes)++;
    }
    return TD_OK;
}
