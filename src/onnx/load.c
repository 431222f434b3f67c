/* ONNX ModelProto bytes -> td_model.
 *
 * Large models: protobuf-c's unpack copies every bytes field, so a plain unpack
 * of a 440 MB model would hold the file plus a full copy of every weight. The
 * splitter below walks the wire format of ModelProto -> GraphProto ->
 * initializer TensorProtos itself, cuts each initializer's raw_data out (it
 * stays in the mapped file and the tensor points at it), and gives protobuf-c
 * only the remaining, small bytes. Anything unexpected in that walk falls back
 * to a plain unpack of the whole buffer, which is always correct. */
#define _GNU_SOURCE
#include "onnx/load_internal.h"
#include "onnx/onnx_io.h"

#include "core/checked.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define MAX_SUBGRAPH_DEPTH 64
#define MAX_TYPE_RANK 1024
#define MAX_OPSETS 1024 /* real models import a handful; checks are per node x opset */
/* Message nesting allowed before parsing: each subgraph level is 3 messages (Graph, Node, Attribute). */
#define MAX_MESSAGE_DEPTH (3 * MAX_SUBGRAPH_DEPTH + 16)

static const uint32_t model_tags[] = {1, 2, 3, 4, 5, 6, 7, 8, 14};
static const uint32_t graph_tags[] = {1, 2, 5, 10, 11, 12, 13};
static const uint32_t node_tags[] = {1, 2, 3, 4, 5, 6, 7};
static const uint32_t value_info_tags[] = {1, 2, 3};

static char *dup_opt(const char *s, bool *oom) {
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

/* ---------------- types ---------------- */

static bool dim_exact(const Onnx__TensorShapeProto__Dimension *d) {
    if (d->base.n_unknown_fields || d->denotation)
        return false;
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
        return d->dim_value >= 0;
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM)
        return d->dim_param != NULL;
    return true;
}

/* True when the IR form (elem, rank, dims) rebuilds exactly this TypeProto. */
static bool tensor_type_exact(const Onnx__TypeProto *tp) {
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tp->base.n_unknown_fields || tt->base.n_unknown_fields)
        return false;
    if (tt->has_elem_type != (tt->elem_type != 0))
        return false;
    if (tt->shape) {
        if (tt->shape->base.n_unknown_fields || tt->shape->n_dim > MAX_TYPE_RANK)
            return false;
        for (size_t i = 0; i < tt->shape->n_dim; i++)
            if (!dim_exact(tt->shape->dim[i]))
                return false;
    }
    return true;
}

bool td_onnx_type_matches(const Onnx__TypeProto *tp, const td_type *t) {
    if (!tp)
        return t->elem == TD_UNDEFINED && t->rank < 0 && !t->raw && !t->denotation;
    if ((tp->denotation == NULL) != (t->denotation == NULL) ||
        (tp->denotation && strcmp(tp->denotation, t->denotation) != 0))
        return false;
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
        return t->elem == TD_UNDEFINED && t->rank < 0;
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if ((int)t->elem != (tt->has_elem_type ? tt->elem_type : 0))
        return false;
    if (!tt->shape)
        return t->rank < 0;
    if ((size_t)t->rank != tt->shape->n_dim || t->rank < 0)
        return false;
    for (int i = 0; i < t->rank; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        const td_dim *e = &t->dims[i];
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (e->param || e->value != (d->dim_value >= 0 ? d->dim_value : -1))
                return false;
        } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM) {
            if (!e->param || !d->dim_param || strcmp(e->param, d->dim_param) != 0)
                return false;
        } else if (e->param || e->value != -1) {
            return false;
        }
    }
    return true;
}

static td_status pack_to_extra(td_ctx *ctx, const ProtobufCMessage *m, uint32_t flags, td_pb_extra **out) {
    size_t len = protobuf_c_message_get_packed_size(m);
    td_pb_extra *x = malloc(sizeof *x + len);
    if (!x)
        return td_fail_oom(ctx, len, "a type kept verbatim");
    x->flags = flags;
    x->aux = 0;
    x->len = protobuf_c_message_pack(m, x->bytes);
    *out = x;
    return TD_OK;
}

static td_status load_type(td_ctx *ctx, const Onnx__TypeProto *tp, td_type *t) {
    bool oom = false;
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE) {
        if (tp->value_case == ONNX__TYPE_PROTO__VALUE__NOT_SET) /* keep it exactly (maybe only a denotation) */
            return pack_to_extra(ctx, &tp->base, TD_PBX_TYPE_EXACT, (td_pb_extra **)&t->pb_extra);
        size_t len = protobuf_c_message_get_packed_size(&tp->base);
        t->raw = malloc(len ? len : 1);
        if (!t->raw)
            return td_fail_oom(ctx, len, "a non-tensor type");
        t->raw_len = protobuf_c_message_pack(&tp->base, t->raw);
        return TD_OK;
    }
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    t->elem = tt->has_elem_type ? (td_dtype)tt->elem_type : TD_UNDEFINED;
    t->denotation = dup_opt(tp->denotation, &oom);
    if (tt->shape) {
        size_t n = tt->shape->n_dim;
        if (n > MAX_TYPE_RANK)
            return td_fail(ctx, TD_ERR_FORMAT, "a value type has rank %zu (more than %d)", n, MAX_TYPE_RANK);
        t->rank = (int)n;
        t->dims = calloc(n ? n : 1, sizeof *t->dims);
        if (!t->dims)
            return td_fail_oom(ctx, n * sizeof *t->dims, "value dims");
        for (size_t i = 0; i < n; i++) {
            const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
            t->dims[i].value = -1;
            if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0)
                t->dims[i].value = d->dim_value;
            else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM)
                t->dims[i].param = dup_opt(d->dim_param ? d->dim_param : "", &oom);
        }
    } else {
        t->rank = -1;
    }
    if (oom)
        return td_fail_oom(ctx, 0, "a value type");
    if (!tensor_type_exact(tp))
        return pack_to_extra(ctx, &tp->base, TD_PBX_TYPE_EXACT, (td_pb_extra **)&t->pb_extra);
    return TD_OK;
}

/* Fill a value from its (first) ValueInfoProto. */
static td_status load_value_info(td_ctx *ctx, const Onnx__ValueInfoProto *vi, td_value *v) {
    bool oom = false;
    v->doc_string = dup_opt(vi->doc_string, &oom);
    if (oom)
        return td_fail_oom(ctx, 0, "a doc string");
    if (vi->type)
        TD_TRY(load_type(ctx, vi->type, &v->type));
    return td_pbx_residual(ctx, &vi->base, value_info_tags, 3, vi->type ? 0 : TD_PBX_TYPE_ABSENT, 0,
                           (td_pb_extra **)&v->pb_extra);
}

/* ---------------- graphs ---------------- */

static td_status load_graph(td_onnx_loader *L, Onnx__GraphProto *gp, Onnx__TensorProto **inits,
                            const td_raw_slice *raws, size_t n_inits, td_graph *g);

static td_status load_attr(td_onnx_loader *L, Onnx__AttributeProto *ap, td_node *n) {
    td_ctx *ctx = L->ctx;
    td_attr *a;
    TD_TRY(td_node_new_attr(ctx, n, &a));
    bool oom = false;
    a->name = strdup(ap->name ? ap->name : "");
    a->ref_attr_name = dup_opt(ap->ref_attr_name, &oom);
    a->doc_string = dup_opt(ap->doc_string, &oom);
    if (!a->name || oom)
        return td_fail_oom(ctx, 0, "an attribute");
    uint32_t flags = ap->has_type ? 0 : TD_PBX_ATTR_NO_TYPE;
    a->type = ap->has_type ? (td_attr_type)ap->type : TD_ATTR_UNDEFINED;
    uint32_t tags[6] = {1, 13, 20, 21};
    size_t n_tags = 4;
    switch (a->type) {
    case TD_ATTR_FLOAT:
        tags[n_tags++] = 2;
        a->f = ap->f;
        flags |= ap->has_f ? 0 : TD_PBX_ATTR_NO_VALUE;
        break;
    case TD_ATTR_INT:
        tags[n_tags++] = 3;
        a->i = ap->i;
        flags |= ap->has_i ? 0 : TD_PBX_ATTR_NO_VALUE;
        break;
    case TD_ATTR_STRING:
        tags[n_tags++] = 4;
        if (!ap->has_s) {
            flags |= TD_PBX_ATTR_NO_VALUE;
            break;
        }
        a->s = malloc(ap->s.len + 1);
        if (!a->s)
            return td_fail_oom(ctx, ap->s.len, "an attribute string");
        if (ap->s.len)
            memcpy(a->s, ap->s.data, ap->s.len);
        a->s[ap->s.len] = 0;
        a->s_len = ap->s.len;
        break;
    case TD_ATTR_TENSOR:
        tags[n_tags++] = 5;
        if (!ap->t) {
            flags |= TD_PBX_ATTR_NO_VALUE;
            break;
        }
        TD_TRY(td_onnx_load_tensor(L, ap->t, NULL, &a->t));
        break;
    case TD_ATTR_GRAPH:
        tags[n_tags++] = 6;
        if (!ap->g) {
            flags |= TD_PBX_ATTR_NO_VALUE;
            break;
        }
        if (!(a->g = td_graph_new(n->graph)))
            return td_fail_oom(ctx, 0, "a subgraph");
        TD_TRY(load_graph(L, ap->g, ap->g->initializer, NULL, ap->g->n_initializer, a->g));
        break;
    case TD_ATTR_FLOATS:
        tags[n_tags++] = 7;
        a->floats = malloc(sizeof(float) * (ap->n_floats ? ap->n_floats : 1));
        if (!a->floats)
            return td_fail_oom(ctx, ap->n_floats * 4, "attribute floats");
        if (ap->n_floats)
            memcpy(a->floats, ap->floats, sizeof(float) * ap->n_floats);
        a->count = ap->n_floats;
        break;
    case TD_ATTR_INTS:
        tags[n_tags++] = 8;
        a->ints = malloc(sizeof(int64_t) * (ap->n_ints ? ap->n_ints : 1));
        if (!a->ints)
            return td_fail_oom(ctx, ap->n_ints * 8, "attribute ints");
        if (ap->n_ints)
            memcpy(a->ints, ap->ints, sizeof(int64_t) * ap->n_ints);
        a->count = ap->n_ints;
        break;
    case TD_ATTR_STRINGS:
        tags[n_tags++] = 9;
        a->strings = calloc(ap->n_strings ? ap->n_strings : 1, sizeof(char *));
        a->string_lens = calloc(ap->n_strings ? ap->n_strings : 1, sizeof(size_t));
        if (!a->strings || !a->string_lens)
            return td_fail_oom(ctx, ap->n_strings * 8, "attribute strings");
        a->count = ap->n_strings;
        for (size_t i = 0; i < ap->n_strings; i++) {
            a->strings[i] = malloc(ap->strings[i].len + 1);
            if (!a->strings[i])
                return td_fail_oom(ctx, ap->strings[i].len, "an attribute string");
            if (ap->strings[i].len)
                memcpy(a->strings[i], ap->strings[i].data, ap->strings[i].len);
            a->strings[i][ap->strings[i].len] = 0;
            a->string_lens[i] = ap->strings[i].len;
        }
        break;
    case TD_ATTR_TENSORS:
        tags[n_tags++] = 10;
        a->tensors = calloc(ap->n_tensors ? ap->n_tensors : 1, sizeof(td_tensor *));
        if (!a->tensors)
            return td_fail_oom(ctx, ap->n_tensors * 8, "attribute tensors");
        a->count = ap->n_tensors;
        for (size_t i = 0; i < ap->n_tensors; i++)
            TD_TRY(td_onnx_load_tensor(L, ap->tensors[i], NULL, &a->tensors[i]));
        break;
    case TD_ATTR_GRAPHS:
        tags[n_tags++] = 11;
        a->graphs = calloc(ap->n_graphs ? ap->n_graphs : 1, sizeof(td_graph *));
        if (!a->graphs)
            return td_fail_oom(ctx, ap->n_graphs * 8, "attribute graphs");
        a->count = ap->n_graphs;
        for (size_t i = 0; i < ap->n_graphs; i++) {
            if (!(a->graphs[i] = td_graph_new(n->graph)))
                return td_fail_oom(ctx, 0, "a subgraph");
            TD_TRY(load_graph(L, ap->graphs[i], ap->graphs[i]->initializer, NULL, ap->graphs[i]->n_initializer,
                              a->graphs[i]));
        }
        break;
    default: /* sparse tensors, type protos, unknown types: kept verbatim in pb_extra */
        break;
    }
    return td_pbx_residual(ctx, &ap->base, tags, n_tags, flags, 0, (td_pb_extra **)&a->pb_extra);
}

static const char *node_label(const Onnx__NodeProto *np, size_t index, char *buf, size_t n) {
    if (np->name && *np->name)
        return np->name;
    snprintf(buf, n, "#%zu", index);
    return buf;
}

static td_status load_node(td_onnx_loader *L, Onnx__NodeProto *np, size_t index, td_graph *g) {
    td_ctx *ctx = L->ctx;
    td_status s = TD_OK;
    char label[32];
    const char *op = np->op_type ? np->op_type : "";
    if (np->n_input > INT32_MAX / 2 || np->n_output > INT32_MAX / 2)
        return td_fail(ctx, TD_ERR_FORMAT, "node '%s' (%s) has too many inputs/outputs",
                       node_label(np, index, label, sizeof label), op);
    td_value **ins = calloc(np->n_input ? np->n_input : 1, sizeof *ins);
    td_value **outs = calloc(np->n_output ? np->n_output : 1, sizeof *outs);
    td_node *n = NULL;
    if (!ins || !outs) {
        s = td_fail_oom(ctx, 0, "node inputs");
        goto out;
    }
    for (size_t i = 0; i < np->n_input; i++) {
        const char *nm = np->input[i];
        if (!nm || !*nm)
            continue; /* omitted optional input */
        ins[i] = td_graph_lookup(g, nm);
        if (!ins[i] && (s = td_graph_add_value(ctx, g, nm, &ins[i])) != TD_OK) /* dangling: check reports it */
            goto out;
    }
    for (size_t i = 0; i < np->n_output; i++) {
        const char *nm = np->output[i];
        if (!nm || !*nm)
            continue;
        outs[i] = td_graph_find(g, nm); /* created by the first pass */
    }
    s = td_graph_add_node(ctx, g, op, np->domain, node_label(np, index, label, sizeof label), ins, (int)np->n_input,
                          outs, (int)np->n_output, &n);
    if (s != TD_OK)
        goto out;
    /* add_node gave each output its slot; a name listed twice kept only its last slot */
    for (size_t i = 0; i < np->n_output; i++)
        if (outs[i] && outs[i]->producer_slot != (int)i) {
            s = td_fail(ctx, TD_ERR_GRAPH, "node '%s' (%s) lists output '%s' twice",
                        node_label(np, index, label, sizeof label), op, outs[i]->name);
            goto out;
        }
    /* keep the name exactly as the file has it (add_node got a label for messages) */
    if (!np->name || !*np->name)
        n->name[0] = '\0';
    bool oom = false;
    n->doc_string = dup_opt(np->doc_string, &oom);
    if (oom) {
        s = td_fail_oom(ctx, 0, "a doc string");
        goto out;
    }
    uint32_t flags = (np->name ? TD_PBX_NAME_SET : 0) | (np->domain ? TD_PBX_DOMAIN_SET : 0);
    s = td_pbx_residual(ctx, &np->base, node_tags, sizeof node_tags / sizeof node_tags[0], flags, 0,
                        (td_pb_extra **)&n->pb_extra);
out:
    free(ins);
    free(outs);
    return s;
}

static td_status load_graph(td_onnx_loader *L, Onnx__GraphProto *gp, Onnx__TensorProto **inits,
                            const td_raw_slice *raws, size_t n_inits, td_graph *g) {
    td_ctx *ctx = L->ctx;
    if (++L->depth > MAX_SUBGRAPH_DEPTH)
        return td_fail(ctx, TD_ERR_FORMAT, "subgraphs are nested more than %d deep", MAX_SUBGRAPH_DEPTH);
    bool oom = false;
    if (gp->name) {
        free(g->name);
        g->name = dup_opt(gp->name, &oom);
    }
    g->doc_string = dup_opt(gp->doc_string, &oom);
    if (oom)
        return td_fail_oom(ctx, 0, "a graph name");
    TD_TRY(td_pbx_residual(ctx, &gp->base, graph_tags, sizeof graph_tags / sizeof graph_tags[0],
                           gp->name ? TD_PBX_NAME_SET : 0, 0, (td_pb_extra **)&g->pb_extra));
    /* value_info first so that g->values keeps value_info order (save writes them in values order) */
    for (size_t i = 0; i < gp->n_value_info; i++) {
        const Onnx__ValueInfoProto *vi = gp->value_info[i];
        td_value *v;
        TD_TRY(td_graph_get_value(ctx, g, vi->name ? vi->name : "", &v));
        if (!v->has_value_info)
            TD_TRY(load_value_info(ctx, vi, v));
        v->has_value_info = true;
    }
    for (int pass = 0; pass < 2; pass++) {
        size_t count = pass ? gp->n_output : gp->n_input;
        for (size_t i = 0; i < count; i++) {
            const Onnx__ValueInfoProto *vi = pass ? gp->output[i] : gp->input[i];
            td_value *v;
            TD_TRY(td_graph_get_value(ctx, g, vi->name ? vi->name : "", &v));
            bool fresh = !v->has_value_info && !v->is_input && !v->is_output;
            if (fresh)
                TD_TRY(load_value_info(ctx, vi, v));
            TD_TRY(pass ? td_graph_add_output(ctx, g, v) : td_graph_add_input(ctx, g, v));
        }
    }
    for (size_t i = 0; i < n_inits; i++) {
        Onnx__TensorProto *tp = inits[i];
        const char *nm = tp->name ? tp->name : "";
        td_value *v;
        TD_TRY(td_graph_get_value(ctx, g, nm, &v));
        if (v->initializer)
            return td_fail(ctx, TD_ERR_GRAPH, "initializer '%s' is defined twice in graph '%s'", nm, g->name);
        td_tensor *t;
        TD_TRY(td_onnx_load_tensor(L, tp, raws ? &raws[i] : NULL, &t));
        TD_TRY(td_graph_set_initializer(ctx, g, v, t));
        if (raws) { /* split path: free each tensor's message as soon as it is converted */
            protobuf_c_message_free_unpacked(&tp->base, NULL);
            inits[i] = NULL;
        }
    }
    /* pass 1: every node output exists before inputs are resolved (file order need not be topological) */
    for (size_t i = 0; i < gp->n_node; i++)
        for (size_t j = 0; j < gp->node[i]->n_output; j++) {
            const char *nm = gp->node[i]->output[j];
            td_value *v;
            if (nm && *nm)
                TD_TRY(td_graph_get_value(ctx, g, nm, &v));
        }
    for (size_t i = 0; i < gp->n_node; i++)
        TD_TRY(load_node(L, gp->node[i], i, g));
    /* attributes last: subgraphs may name any value of this graph */
    for (size_t i = 0; i < gp->n_node; i++)
        for (size_t j = 0; j < gp->node[i]->n_attribute; j++) {
            td_status s = load_attr(L, gp->node[i]->attribute[j], g->nodes[i]);
            if (s != TD_OK)
                return td_wrap(ctx, "node '%s' (%s) attribute '%s'", g->nodes[i]->name, g->nodes[i]->op_type,
                               gp->node[i]->attribute[j]->name ? gp->node[i]->attribute[j]->name : "");
        }
    L->depth--;
    return TD_OK;
}

/* ---------------- model ---------------- */

static td_status load_model(td_onnx_loader *L, Onnx__ModelProto *mp, Onnx__GraphProto *gp,
                            Onnx__TensorProto **inits, const td_raw_slice *raws, size_t n_inits, td_model *m) {
    td_ctx *ctx = L->ctx;
    bool oom = false;
    uint32_t flags = (mp->has_ir_version ? 0 : TD_PBX_NO_IR_VERSION) |
                     (mp->has_model_version ? TD_PBX_MODEL_VERSION_SET : 0);
    uint32_t aux = 0; /* bit i: opset_import[i].domain absent */
    m->ir_version = mp->has_ir_version ? mp->ir_version : 0;
    m->model_version = mp->model_version;
    m->producer_name = dup_opt(mp->producer_name, &oom);
    m->producer_version = dup_opt(mp->producer_version, &oom);
    m->domain = dup_opt(mp->domain, &oom);
    m->doc_string = dup_opt(mp->doc_string, &oom);
    if (mp->n_opset_import > MAX_OPSETS || mp->n_metadata_props > 1u << 24)
        return td_fail(ctx, TD_ERR_FORMAT, "model has %zu opset imports and %zu metadata entries (too many)",
                       mp->n_opset_import, mp->n_metadata_props);
    if (mp->n_opset_import) {
        m->opsets = calloc(mp->n_opset_import, sizeof *m->opsets);
        if (!m->opsets)
            return td_fail_oom(ctx, 0, "opset imports");
        for (size_t i = 0; i < mp->n_opset_import; i++) {
            const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
            m->opsets[i].domain = strdup(o->domain ? o->domain : "");
            m->opsets[i].version = o->version;
            oom |= !m->opsets[i].domain;
            m->n_opsets++;
            if (!o->domain && i < 32)
                aux |= 1u << i;
        }
    }
    if (mp->n_metadata_props) {
        m->metadata = calloc(mp->n_metadata_props, sizeof *m->metadata);
        if (!m->metadata)
            return td_fail_oom(ctx, 0, "metadata");
        for (size_t i = 0; i < mp->n_metadata_props; i++) {
            const Onnx__StringStringEntryProto *kv = mp->metadata_props[i];
            m->metadata[i].key = strdup(kv->key ? kv->key : "");
            m->metadata[i].value = strdup(kv->value ? kv->value : "");
            oom |= !m->metadata[i].key || !m->metadata[i].value;
            m->n_metadata++;
        }
    }
    if (oom)
        return td_fail_oom(ctx, 0, "model strings");
    TD_TRY(td_pbx_residual(ctx, &mp->base, model_tags, sizeof model_tags / sizeof model_tags[0], flags, aux,
                           (td_pb_extra **)&m->pb_extra));
    if (!gp)
        return td_fail(ctx, TD_ERR_FORMAT, "the model has no graph (ModelProto.graph is missing)");
    return load_graph(L, gp, inits, raws, n_inits, m->graph);
}

/* ---------------- wire splitter ---------------- */

typedef struct wire_field {
    uint32_t tag;
    int wt;
    const uint8_t *start, *payload, *end; /* whole field, length-delimited payload, end */
    size_t len;
} wire_field;

/* A varint of at most max_bytes bytes. Over-long encodings are valid protobuf,
 * but parsers bound them: 10 bytes for values, 5 for tags and length prefixes
 * (protobuf-c and C++ protobuf reject longer ones, so we do too). */
static bool read_varint(const uint8_t **p, const uint8_t *end, int max_bytes, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < max_bytes && *p < end; i++) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Next field at *p; false on malformed input (the caller falls back). */
static bool wire_next(const uint8_t **p, const uint8_t *end, wire_field *f) {
    uint64_t key, v;
    f->start = *p;
    if (!read_varint(p, end, 5, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
        return false;
    f->tag = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    switch (f->wt) {
    case 0:
        if (!read_varint(p, end, 10, &v))
            return false;
        break;
    case 1:
        if (end - *p < 8)
            return false;
        *p += 8;
        break;
    case 5:
        if (end - *p < 4)
            return false;
        *p += 4;
        break;
    case 2:
        if (!read_varint(p, end, 5, &v) || v > INT32_MAX || v > (uint64_t)(end - *p))
            return false;
        f->payload = *p;
        f->len = (size_t)v;
        *p += v;
        break;
    default:
        return false; /* groups: leave to protobuf-c */
    }
    f->end = *p;
    return true;
}

typedef struct split_buf {
    uint8_t *data;
    size_t len, cap;
} split_buf;

static bool sb_append(split_buf *b, const uint8_t *p, size_t n) {
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d)
            return false;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return true;
}

/* Copy every field of [p, end) except field `cut` (wire type 2) into rest; the
 * cut fields' payloads are reported through on_cut. */
typedef bool (*cut_fn)(void *arg, const wire_field *f);
static int split_message(const uint8_t *p, const uint8_t *end, uint32_t cut, split_buf *rest, cut_fn on_cut,
                         void *arg) {
    wire_field f;
    while (p < end) {
        if (!wire_next(&p, end, &f))
            return 0;
        if (f.tag == cut) {
            if (f.wt != 2 || !on_cut(arg, &f))
                return 0;
        } else if (!sb_append(rest, f.start, (size_t)(f.end - f.start))) {
            return -1;
        }
    }
    return 1;
}

typedef struct slice_list {
    td_raw_slice *items;
    size_t n, cap;
} slice_list;

static bool cut_one(void *arg, const wire_field *f) {
    td_raw_slice *s = arg;
    if (s->data) /* a repeated singular message field means merging: leave it to protobuf-c */
        return false;
    s->data = f->payload;
    s->len = f->len;
    return true;
}

static bool cut_last(void *arg, const wire_field *f) { /* bytes fields: the last occurrence wins */
    td_raw_slice *s = arg;
    s->data = f->payload ? f->payload : (const uint8_t *)"";
    s->len = f->len;
    return true;
}

static bool cut_list(void *arg, const wire_field *f) {
    slice_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        td_raw_slice *p = realloc(l->items, cap * sizeof *p);
        if (!p)
            return false;
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n].data = f->payload;
    l->items[l->n].len = f->len;
    l->n++;
    return true;
}

/* Split path: returns 1 = done (status in *st), 0 = input not splittable (fall back). */
static int load_split(td_onnx_loader *L, td_model *m, td_status *st) {
    td_ctx *ctx = L->ctx;
    const uint8_t *buf = L->src->data, *end = buf + L->src->size;
    split_buf model_rest = {0}, graph_rest = {0}, tensor_rest = {0};
    td_raw_slice graph = {0};
    slice_list inits = {0};
    Onnx__ModelProto *mp = NULL;
    Onnx__GraphProto *gp = NULL;
    Onnx__TensorProto **tps = NULL;
    td_raw_slice *raws = NULL;
    size_t n_tps = 0;
    int r = 0;
    if (!buf || split_message(buf, end, 7, &model_rest, cut_one, &graph) != 1 || !graph.data)
        goto out;
    if (split_message(graph.data, graph.data + graph.len, 5, &graph_rest, cut_list, &inits) != 1)
        goto out;
    tps = calloc(inits.n ? inits.n : 1, sizeof *tps);
    raws = calloc(inits.n ? inits.n : 1, sizeof *raws);
    if (!tps || !raws)
        goto out;
    for (size_t i = 0; i < inits.n; i++) {
        tensor_rest.len = 0;
        if (split_message(inits.items[i].data, inits.items[i].data + inits.items[i].len, 9, &tensor_rest, cut_last,
                          &raws[i]) != 1)
            goto out;
        tps[i] = (Onnx__TensorProto *)protobuf_c_message_unpack(&onnx__tensor_proto__descriptor, NULL,
                                                                tensor_rest.len, tensor_rest.data);
        if (!tps[i])
            goto out;
        n_tps = i + 1;
    }
    mp = onnx__model_proto__unpack(NULL, model_rest.len, model_rest.data);
    gp = onnx__graph_proto__unpack(NULL, graph_rest.len, graph_rest.data);
    if (!mp || !gp)
        goto out;
    free(model_rest.data), model_rest.data = NULL;
    free(graph_rest.data), graph_rest.data = NULL;
    r = 1;
    *st = load_model(L, mp, gp, tps, raws, inits.n, m);
out:
    for (size_t i = 0; i < n_tps; i++)
        if (tps[i])
            protobuf_c_message_free_unpacked(&tps[i]->base, NULL);
    if (mp)
        onnx__model_proto__free_unpacked(mp, NULL);
    if (gp)
        onnx__graph_proto__free_unpacked(gp, NULL);
    free(tps);
    free(raws);
    free(inits.items);
    free(model_rest.data);
    free(graph_rest.data);
    free(tensor_rest.data);
    (void)ctx;
    return r;
}

/* ---------------- entry points ---------------- */

static td_status load_mapped_blob(td_ctx *ctx, td_mapped_file *src, const char *name, const char *base_dir,
                                  const td_onnx_blob *blob, td_model **out) {
    td_onnx_loader L = {.ctx = ctx, .src = src, .src_name = name, .base_dir = base_dir};
    if (blob) {
        L.blob = blob->map;
        L.blob_name = blob->name;
        L.blob_off = blob->offset;
        L.blob_len = blob->length;
    }
    td_status s = TD_OK;
    td_model *m = td_model_new();
    *out = NULL;
    if (!m || (base_dir && !(m->base_dir = strdup(base_dir)))) {
        s = td_fail_oom(ctx, 0, "a model");
        goto out;
    }
    if (src->size == 0) {
        s = td_fail(ctx, TD_ERR_FORMAT, "%s is empty, not an ONNX model", name);
        goto out;
    }
    if (td_pb_too_deep(&onnx__model_proto__descriptor, src->data, src->size, MAX_MESSAGE_DEPTH)) {
        s = td_fail(ctx, TD_ERR_FORMAT,
                    "%s nests protobuf messages more than %d deep (deeply nested subgraphs or types); refusing to parse it",
                    name, MAX_MESSAGE_DEPTH);
        goto out;
    }
    if (!load_split(&L, m, &s)) {
        /* plain path: protobuf-c parses (and copies) everything */
        td_model_free(m);
        if (!(m = td_model_new()) || (base_dir && !(m->base_dir = strdup(base_dir)))) {
            s = td_fail_oom(ctx, 0, "a model");
            goto out;
        }
        Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, src->size, src->data);
        if (!mp) {
            s = td_fail(ctx, TD_ERR_FORMAT,
                        "%s is not a valid ONNX model: protobuf parsing of ModelProto failed (truncated file, wrong "
                        "wire type or a length past the end)", name);
            goto out;
        }
        s = load_model(&L, mp, mp->graph, mp->graph ? mp->graph->initializer : NULL, NULL,
                       mp->graph ? mp->graph->n_initializer : 0, m);
        onnx__model_proto__free_unpacked(mp, NULL);
    }
    if (s != TD_OK) {
        td_wrap(ctx, "loading %s", name);
        goto out;
    }
    s = td_onnx_check(ctx, m);
    if (s != TD_OK) {
        td_wrap(ctx, "%s", name);
        goto out;
    }
    *out = m;
    m = NULL;
out:
    td_onnx_loader_release(&L);
    td_model_free(m);
    return s;
}

td_status td_onnx_load(td_ctx *ctx, const char *path, td_model **out) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return td_fail(ctx, errno == ENOENT ? TD_ERR_NOT_FOUND : TD_ERR_IO, "cannot open %s: %s", path,
                       strerror(errno));
    if (!S_ISREG(st.st_mode)) /* opening a FIFO would block */
        return td_fail(ctx, TD_ERR_IO, "%s is not a regular file", path);
    td_mapped_file *src;
    TD_TRY(td_map_file(ctx, path, &src));
    char *dir = td_path_dirname(path);
    td_status s = dir ? load_mapped_blob(ctx, src, path, dir, NULL, out) : td_fail_oom(ctx, 0, "a path");
    free(dir);
    td_mapped_file_unref(src);
    return s;
}

td_status td_onnx_load_buffer(td_ctx *ctx, const void *data, size_t len, const char *base_dir, td_model **out) {
    return td_onnx_load_buffer_blob(ctx, data, len, base_dir, NULL, out);
}

td_status td_onnx_load_buffer_blob(td_ctx *ctx, const void *data, size_t len, const char *base_dir,
                                   const td_onnx_blob *blob, td_model **out) {
    *out = NULL;
    if (len == 0)
        return td_fail(ctx, TD_ERR_FORMAT, "empty buffer: not an ONNX model");
    /* one copy into an anonymous mapping so tensors can share it like a file mapping */
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return td_fail_oom(ctx, len, "a copy of the model bytes");
    memcpy(p, data, len);
    mprotect(p, len, PROT_READ);
    td_mapped_file *src = calloc(1, sizeof *src);
    if (!src || !(src->path = strdup("<memory>"))) {
        free(src);
        munmap(p, len);
        return td_fail_oom(ctx, 0, "a mapping");
    }
    src->data = p;
    src->size = len;
    src->refcount = 1;
    td_status s = load_mapped_blob(ctx, src, "<memory>", base_dir, blob, out);
    td_mapped_file_unref(src);
    return s;
}
