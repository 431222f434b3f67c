/* Rotary position embedding (transformers' rotate_half form, as the decoder
 * exporter writes it) -> com.microsoft RotaryEmbedding:
 *   x    = Transpose(Reshape(x3, (0, 0, N, D)), perm 0,2,1,3)         (B, N, S, D)
 *   ang  = Mul(Unsqueeze(Cast<float>(pos), axis 2), inv_freq)          (B, S, D/2)
 *   cos  = Unsqueeze(Cos(Concat(ang, ang, axis -1)), axis 1)           (B, 1, S, D), sin alike
 *   y    = Add(Mul(x, cos), Mul(Concat(Neg(x[..., D/2:]), x[..., :D/2], axis -1), sin))
 * -> r3 = RotaryEmbedding(x3, pos, cos_cache, sin_cache, num_heads=N)  (B, S, N*D)
 *    y  = Transpose(Reshape(r3, (0, 0, N, D)), perm 0,2,1,3)
 * so that the attention fusion, which wants (B, S, N*D) inputs, finds r3 under y.
 * The caches are cos/sin(p * inv_freq) for p < max_position_embeddings (model
 * metadata the exporter writes; without it nothing is fused), computed in float
 * as the graph computed them. pos must be int64 (ORT's RotaryEmbedding takes no
 * other type). A partial rotation (rotary_dim R < head_dim D: heads[..., :R]
 * rotated, Concat'ed with heads[..., R:]) becomes rotary_embedding_dim = R. */
#include "opt/opt_util.h"
#include "opt/pass.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* n is a Slice of x on the last axis from start to end (unit step). */
static bool is_last_axis_slice(const td_node *n, const td_value *x, int64_t start, int64_t end, int rank) {
    int64_t s[2], e[2], ax[2], st[2];
    int ns = 0, ne = 0, na = 0, nst = 0;
    if (!opt_is_op(n, "Slice") || n->n_inputs < 4 || n->inputs[0] != x || !opt_const_ints(n->inputs[1], s, 2, &ns) ||
        !opt_const_ints(n->inputs[2], e, 2, &ne) || !opt_const_ints(n->inputs[3], ax, 2, &na) || ns != 1 || ne != 1 ||
        na != 1)
        return false;
    if (n->n_inputs > 4 && n->inputs[4] && (!opt_const_ints(n->inputs[4], st, 2, &nst) || nst != 1 || st[0] != 1))
        return false;
    return (ax[0] == -1 || ax[0] == rank - 1) && s[0] == start && (e[0] == end || (end >= 0 && e[0] >= INT32_MAX));
}

static bool concat_last(const td_node *n, int rank) {
    int64_t axis = td_node_attr_int(n, "axis", 0);
    return opt_is_op(n, "Concat") && n->n_inputs == 2 && (axis == -1 || axis == rank - 1);
}

static bool unsqueeze_axis(const td_node *n, int64_t want) {
    int64_t ax[2];
    int na = 0;
    if (!opt_is_op(n, "Unsqueeze"))
        return false;
    size_t cnt = 0;
    const int64_t *a = td_node_attr_ints(n, "axes", &cnt);
    if (a)
        return cnt == 1 && a[0] == want;
    return n->n_inputs == 2 && opt_const_ints(n->inputs[1], ax, 2, &na) && na == 1 && ax[0] == want;
}

/* v = Unsqueeze(Cos|Sin(Concat(ang, ang)), axis 1): returns ang. */
static td_value *table_angles(const td_value *v, const char *fn) {
    td_node *u = v->producer;
    if (!u || !unsqueeze_axis(u, 1))
        return NULL;
    td_node *c = opt_producer(u->inputs[0], fn);
    td_node *cat = c ? opt_producer(c->inputs[0], "Concat") : NULL;
    if (!cat || !concat_last(cat, 3) || cat->inputs[0] != cat->inputs[1])
        return NULL;
    return cat->inputs[0];
}

/* ang = Mul(Unsqueeze(Cast<float>(pos), axis 2), inv_freq (R/2)): pos (int64) and the inverse frequencies. */
static bool angle_parts(td_value *ang, td_value **pos, const td_tensor **inv) {
    td_node *mul = opt_producer(ang, "Mul");
    if (!mul)
        return false;
    for (int i = 0; i < 2; i++) {
        const td_tensor *t = opt_const(mul->inputs[1 - i]);
        td_node *u = mul->inputs[i]->producer;
        if (!t || t->dtype != TD_F32 || t->rank != 1 || t->dims[0] <= 0 || !u || !unsqueeze_axis(u, 2))
            continue;
        td_node *cast = opt_producer(u->inputs[0], "Cast");
        if (!cast || td_node_attr_int(cast, "to", 0) != TD_F32 || cast->inputs[0]->type.elem != TD_I64)
            continue;
        *pos = cast->inputs[0];
        *inv = t;
        return true;
    }
    return false;
}

/* x = Transpose(Reshape(x3, (0|B, 0|S, N, D)), perm 0,2,1,3) -> x3, N, D, the shape constant. */
static td_value *split_source(const td_value *x, int64_t *N, int64_t *D, td_value **shape) {
    td_node *t = opt_producer(x, "Transpose");
    size_t pc = 0;
    const int64_t *perm = t ? td_node_attr_ints(t, "perm", &pc) : NULL;
    if (!perm || pc != 4 || perm[0] != 0 || perm[1] != 2 || perm[2] != 1 || perm[3] != 3)
        return NULL;
    td_node *r = opt_producer(t->inputs[0], "Reshape");
    int64_t s[4];
    int ns = 0;
    if (!r || !opt_const_ints(r->inputs[1], s, 4, &ns) || ns != 4 || s[2] <= 0 || s[3] <= 0 ||
        !((s[0] == 0 && (s[1] == 0 || s[1] == -1)) || (s[0] == -1 && s[1] == 0)) || /* batch, sequence kept */
        td_node_attr_int(r, "allowzero", 0) != 0 || opt_rank(r->inputs[0]) != 3)
        return NULL;
    *N = s[2];
    *D = s[3];
    *shape = r->inputs[1];
    return r->inputs[0];
}

typedef struct rope_cache {
    const td_tensor *inv;
    td_value *cos, *sin;
} rope_cache;

/* The (M, half) cos and sin tables of inv, made once per distinct inv_freq tensor. */
static td_status caches_for(td_ctx *ctx, td_graph *g, const td_tensor *inv, int64_t M, rope_cache *cache, int *n_cache,
                            td_value **cos_v, td_value **sin_v) {
    for (int i = 0; i < *n_cache; i++)
        if (cache[i].inv == inv) {
            *cos_v = cache[i].cos;
            *sin_v = cache[i].sin;
            return TD_OK;
        }
    int64_t half = inv->dims[0], dims[2] = {M, half};
    size_t n = (size_t)(M * half); /* <= 2^22 * 2^20 (checked by the caller) */
    float *c = malloc(n * sizeof(float)), *s = malloc(n * sizeof(float));
    if (!c || !s) {
        free(c);
        free(s);
        return td_fail_oom(ctx, 2 * n * sizeof(float), "rotary cos/sin caches");
    }
    const float *f = inv->data;
    for (int64_t p = 0; p < M; p++)
        for (int64_t i = 0; i < half; i++) {
            float a = (float)p * f[i]; /* the graph's float Mul, then Cos/Sin of that float */
            c[p * half + i] = cosf(a);
            s[p * half + i] = sinf(a);
        }
    TD_TRY(opt_new_const_owned(ctx, g, "rope_cos_cache", TD_F32, 2, dims, c, n * sizeof(float), cos_v));
    TD_TRY(opt_new_const_owned(ctx, g, "rope_sin_cache", TD_F32, 2, dims, s, n * sizeof(float), sin_v));
    if (*n_cache < 8)
        cache[(*n_cache)++] = (rope_cache){inv, *cos_v, *sin_v};
    return TD_OK;
}

/* The rotation of xr by the cos/sin tables: y = Add(Mul(xr, cos), Mul(Concat(Neg(xr[R/2:R]), xr[:R/2]), sin))
 * with add the Add node; fills xr, the angles value, and R from the tables. */
static bool match_rotation(const td_node *add, td_value **xr, td_value **ang, int64_t *R) {
    for (int o = 0; o < 2; o++) {
        td_node *mc = opt_producer(add->inputs[o], "Mul"), *ms = opt_producer(add->inputs[1 - o], "Mul");
        if (!mc || !ms || !opt_single_use(add->inputs[o]) || !opt_single_use(add->inputs[1 - o]))
            continue;
        for (int xi = 0; xi < 2; xi++)
            for (int ri = 0; ri < 2; ri++) {
                td_value *x = mc->inputs[xi], *a = table_angles(mc->inputs[1 - xi], "Cos");
                td_value *rh = ms->inputs[ri];
                if (!a || table_angles(ms->inputs[1 - ri], "Sin") != a)
                    continue;
                td_node *mul = opt_producer(a, "Mul");
                const td_tensor *inv = NULL;
                for (int k = 0; mul && k < 2 && !inv; k++)
                    inv = opt_const(mul->inputs[k]);
                if (!inv || inv->rank != 1 || inv->dims[0] <= 0)
                    continue;
                int64_t half = inv->dims[0];
                td_node *cat = opt_producer(rh, "Concat");
                td_node *neg = cat && concat_last(cat, 4) ? opt_producer(cat->inputs[0], "Neg") : NULL;
                if (!neg || !is_last_axis_slice(neg->inputs[0]->producer, x, half, 2 * half, 4) ||
                    !is_last_axis_slice(cat->inputs[1]->producer, x, 0, half, 4))
                    continue;
                *xr = x;
                *ang = a;
                *R = 2 * half;
                return true;
            }
    }
    return false;
}

td_status td_pass_fuse_rotary(td_ctx *ctx, td_opt_state *st, int *changes) {
    td_graph *g = st->model->graph;
    const char *mp = td_model_metadata(st->model, "max_position_embeddings");
    char *endp = NULL;
    long long M = mp ? strtoll(mp, &endp, 10) : 0;
    if (!mp || *endp || M <= 0 || M > (1 << 22)) /* no trustworthy cache length: keep the standard ops */
        return TD_OK;
    rope_cache cache[8];
    int n_cache = 0;
    int n_nodes = g->n_nodes;
    for (int i = 0; i < n_nodes; i++) {
        td_node *add = g->nodes[i];
        td_value *xr = NULL, *ang = NULL, *pos = NULL, *shape = NULL;
        const td_tensor *inv = NULL;
        int64_t R = 0, N = 0, D = 0;
        if (!opt_is_op(add, "Add") || add->n_inputs != 2 || !add->outputs[0] || !match_rotation(add, &xr, &ang, &R) ||
            !angle_parts(ang, &pos, &inv))
            continue;
        /* full rotation: xr is the heads; partial: xr = heads[..., :R] and y = Concat(rotated, heads[..., R:]) */
        td_value *x = xr, *y = add->outputs[0];
        td_node *last = add;
        td_node *part = xr->producer;
        if (part && opt_is_op(part, "Slice") && opt_rank(part->inputs[0]) == 4 &&
            is_last_axis_slice(part, part->inputs[0], 0, R, 4)) {
            x = part->inputs[0];
            td_node *cat = opt_single_use(y) ? y->consumers[0] : NULL;
            if (!cat || !concat_last(cat, 4) || cat->inputs[0] != y || !cat->inputs[1]->producer ||
                !opt_is_op(cat->inputs[1]->producer, "Slice"))
                continue;
            last = cat;
            y = cat->outputs[0];
        }
        td_value *x3 = split_source(x, &N, &D, &shape);
        if (!x3 || R > D || (x != xr && R == D) || R / 2 > (1 << 20) || (R / 2) * M > (1 << 26))
            continue; /* the caches would exceed 2 x 256 MB: not a real rotary table */
        if (x != xr) { /* the pass-through part must be heads[..., R:D] */
            td_node *rest = last->inputs[1]->producer;
            if (!is_last_axis_slice(rest, x, R, D, 4))
                continue;
        }
        td_value *cv = NULL, *sv = NULL;
        TD_TRY(caches_for(ctx, g, inv, M, cache, &n_cache, &cv, &sv));
        td_value *r3 = NULL, *r4 = NULL;
        TD_TRY(opt_new_value(ctx, g, "rope_out", &r3));
        TD_TRY(opt_copy_type(ctx, r3, x3));
        TD_TRY(opt_new_value(ctx, g, "rope_heads", &r4));
        td_graph_remove_node(g, last);
        td_value *ins[4] = {x3, pos, cv, sv}, *rs[2] = {r3, shape};
        td_node *rope = NULL, *rsh = NULL, *tr = NULL;
        TD_TRY(opt_add_node(ctx, g, "RotaryEmbedding", "com.microsoft", "RotaryEmbedding", ins, 4, &r3, 1, &rope));
        TD_TRY(td_node_add_attr_int(ctx, rope, "num_heads", N));
        if (R < D)
            TD_TRY(td_node_add_attr_int(ctx, rope, "rotary_embedding_dim", R));
        TD_TRY(opt_add_node(ctx, g, "Reshape", "", "rope_split", rs, 2, &r4, 1, &rsh));
        TD_TRY(opt_add_node(ctx, g, "Transpose", "", "rope_heads", &r4, 1, &y, 1, &tr));
        static const int64_t bnsd[4] = {0, 2, 1, 3};
        TD_TRY(td_node_add_attr_ints(ctx, tr, "perm", bnsd, 4));
        (*changes)++;
    }
    return TD_OK;
}
