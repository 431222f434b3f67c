/* td_model -> ModelProto -> file. Messages are built in an arena and point at
 * the IR's memory (tensor data is never copied into the message); pb_extra
 * residuals are unpacked first so unmodelled and unknown fields come back.
 * The model (and its external data file) are written atomically; the mappings
 * initializers point into are registered with the atomic file, which preads
 * their bytes from the files instead of touching the mappings. With
 * align_raw_data the bytes are laid out by save_aligned.c instead of protobuf-c's
 * canonical packing (large raw_data at aligned offsets, same decoded message). */
#define _GNU_SOURCE
#include "onnx/load_internal.h"
#include "onnx/onnx_io.h"
#include "onnx/save_aligned.h"

#include "core/checked.h"

#include <stdlib.h>
#include <string.h>

#define PROTOBUF_LIMIT ((uint64_t)2147483647u) /* protobuf's 2 GB message limit */

typedef struct init_ref {
    Onnx__TensorProto *tp;
    const td_tensor *t;
} init_ref;

typedef struct saver {
    td_ctx *ctx;
    td_arena A;
    init_ref *inits; /* initializers that may go to external data */
    size_t n_inits, cap_inits;
    td_status status; /* first failure while building */
} saver;

static void *fail_oom(saver *S) {
    if (S->status == TD_OK)
        S->status = td_fail_oom(S->ctx, 0, "building the ONNX message");
    return NULL;
}

static void *alloc(saver *S, size_t n) {
    void *p = td_arena_alloc(&S->A, n);
    return p ? p : fail_oom(S);
}

/* A fresh message of descriptor d, pre-filled from the pb_extra residual. */
static void *new_msg(saver *S, const ProtobufCMessageDescriptor *d, const void *pb_extra) {
    const td_pb_extra *x = pb_extra;
    if (x && x->len && !(x->flags & TD_PBX_TYPE_EXACT)) {
        ProtobufCMessage *m = protobuf_c_message_unpack(d, &S->A.pb, x->len, x->bytes);
        if (!m && S->status == TD_OK)
            S->status = td_fail(S->ctx, TD_ERR_INTERNAL, "kept %s fields do not parse back", d->name);
        return m;
    }
    void *m = alloc(S, d->sizeof_message);
    if (m)
        d->message_init(m);
    return m;
}

static char *cstr(const char *s) { return (char *)s; } /* pack only reads */

/* ---------------- tensors ---------------- */

static int typed_kind_for(td_dtype dt) {
    switch (dt) {
    case TD_F32: case TD_C64: return TD_PBX_DATA_FLOAT;
    case TD_I32: case TD_I16: case TD_I8: case TD_U16: case TD_U8: case TD_BOOL: case TD_F16: case TD_BF16:
    case TD_F8E4M3FN: case TD_F8E4M3FNUZ: case TD_F8E5M2: case TD_F8E5M2FNUZ:
        return TD_PBX_DATA_INT32;
    case TD_I64: return TD_PBX_DATA_INT64;
    case TD_F64: case TD_C128: return TD_PBX_DATA_DOUBLE;
    case TD_U32: case TD_U64: return TD_PBX_DATA_UINT64;
    default: return -1;
    }
}

static void set_typed(saver *S, Onnx__TensorProto *tp, const td_tensor *t, int kind) {
    size_t esize = td_dtype_size(t->dtype);
    size_t n = esize ? t->nbytes / esize : 0;
    const void *d = t->data;
    switch (kind) {
    case TD_PBX_DATA_FLOAT:
        tp->n_float_data = t->dtype == TD_C64 ? 2 * n : n;
        tp->float_data = (float *)d;
        break;
    case TD_PBX_DATA_INT64:
        tp->n_int64_data = n;
        tp->int64_data = (int64_t *)d;
        break;
    case TD_PBX_DATA_DOUBLE:
        tp->n_double_data = t->dtype == TD_C128 ? 2 * n : n;
        tp->double_data = (double *)d;
        break;
    case TD_PBX_DATA_UINT64:
        if (t->dtype == TD_U64) {
            tp->uint64_data = (uint64_t *)d;
        } else {
            uint64_t *w = alloc(S, n * 8);
            if (!w)
                return;
            for (size_t i = 0; i < n; i++)
                w[i] = ((const uint32_t *)d)[i];
            tp->uint64_data = w;
        }
        tp->n_uint64_data = n;
        break;
    case TD_PBX_DATA_INT32:
        if (t->dtype == TD_I32) {
            tp->int32_data = (int32_t *)d;
        } else {
            int32_t *w = alloc(S, n * 4);
            if (!w)
                return;
            for (size_t i = 0; i < n; i++) {
                switch (t->dtype) {
                case TD_I8: w[i] = ((const int8_t *)d)[i]; break;
                case TD_I16: w[i] = ((const int16_t *)d)[i]; break;
                case TD_U16: case TD_F16: case TD_BF16: w[i] = ((const uint16_t *)d)[i]; break;
                default: w[i] = ((const uint8_t *)d)[i]; break;
                }
            }
            tp->int32_data = w;
        }
        tp->n_int32_data = n;
        break;
    }
}

static Onnx__TensorProto *build_tensor(saver *S, const td_tensor *t, bool is_initializer) {
    const td_pb_extra *x = t->pb_extra;
    uint32_t flags = x ? x->flags : 0;
    if (flags & TD_PBX_OPAQUE) {
        Onnx__TensorProto *tp = (Onnx__TensorProto *)protobuf_c_message_unpack(&onnx__tensor_proto__descriptor,
                                                                               &S->A.pb, x->len, x->bytes);
        if (!tp && S->status == TD_OK)
            S->status = td_fail(S->ctx, TD_ERR_INTERNAL, "kept tensor '%s' does not parse back", t->name);
        return tp;
    }
    Onnx__TensorProto *tp = new_msg(S, &onnx__tensor_proto__descriptor, x);
    if (!tp)
        return NULL;
    if ((t->name && *t->name) || (flags & TD_PBX_NAME_SET))
        tp->name = cstr(t->name ? t->name : "");
    tp->doc_string = cstr(t->doc_string);
    tp->n_dims = (size_t)t->rank;
    tp->dims = t->dims;
    tp->has_data_type = 1;
    tp->data_type = (int32_t)t->dtype;
    if (flags & TD_PBX_LOCATION_SET) {
        tp->has_data_location = 1;
        tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
    }
    int kind = x ? (int)TD_PBX_DATA_OF(flags) : (t->nbytes ? TD_PBX_DATA_RAW : TD_PBX_DATA_NONE);
    if (t->dtype == TD_STRING) {
        int64_t n = td_tensor_numel(t);
        if (n > 0) {
            ProtobufCBinaryData *sd = alloc(S, sizeof *sd * (size_t)n);
            if (!sd)
                return NULL;
            for (int64_t i = 0; i < n; i++) {
                sd[i].len = t->string_lens[i];
                sd[i].data = (uint8_t *)t->strings[i];
            }
            tp->string_data = sd;
            tp->n_string_data = (size_t)n;
        }
        return tp;
    }
    if (kind >= TD_PBX_DATA_FLOAT && kind <= TD_PBX_DATA_UINT64 && kind == typed_kind_for(t->dtype) && t->nbytes) {
        set_typed(S, tp, t, kind);
    } else if (kind != TD_PBX_DATA_NONE || t->nbytes) {
        tp->has_raw_data = 1;
        tp->raw_data.len = t->nbytes;
        tp->raw_data.data = (uint8_t *)t->data;
    }
    if (is_initializer && t->nbytes && t->data) {
        if (S->n_inits == S->cap_inits) {
            size_t cap = S->cap_inits ? S->cap_inits * 2 : 256;
            init_ref *p = realloc(S->inits, cap * sizeof *p);
            if (!p)
                return fail_oom(S);
            S->inits = p;
            S->cap_inits = cap;
        }
        S->inits[S->n_inits++] = (init_ref){tp, t};
    }
    return tp;
}

/* ---------------- types and values ---------------- */

static Onnx__TypeProto *build_type(saver *S, const td_type *t) {
    const td_pb_extra *x = t->pb_extra;
    if (x && (x->flags & TD_PBX_TYPE_EXACT)) {
        Onnx__TypeProto *tp =
            (Onnx__TypeProto *)protobuf_c_message_unpack(&onnx__type_proto__descriptor, &S->A.pb, x->len, x->bytes);
        if (tp && td_onnx_type_matches(tp, t))
            return tp; /* unchanged since load: write the original exactly */
    }
    if (t->raw) {
        Onnx__TypeProto *tp =
            (Onnx__TypeProto *)protobuf_c_message_unpack(&onnx__type_proto__descriptor, &S->A.pb, t->raw_len, t->raw);
        if (!tp && S->status == TD_OK)
            S->status = td_fail(S->ctx, TD_ERR_FORMAT, "a non-tensor value type does not parse");
        return tp;
    }
    if (t->elem == TD_UNDEFINED && t->rank < 0 && !t->denotation)
        return NULL;
    Onnx__TypeProto *tp = alloc(S, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = alloc(S, sizeof *tt);
    if (!tp || !tt)
        return NULL;
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    tp->denotation = cstr(t->denotation);
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    if (t->elem != TD_UNDEFINED) {
        tt->has_elem_type = 1;
        tt->elem_type = (int32_t)t->elem;
    }
    if (t->rank >= 0) {
        Onnx__TensorShapeProto *sh = alloc(S, sizeof *sh);
        Onnx__TensorShapeProto__Dimension **dims = alloc(S, sizeof *dims * (size_t)(t->rank ? t->rank : 1));
        Onnx__TensorShapeProto__Dimension *ds = alloc(S, sizeof *ds * (size_t)(t->rank ? t->rank : 1));
        if (!sh || !dims || !ds)
            return NULL;
        onnx__tensor_shape_proto__init(sh);
        for (int i = 0; i < t->rank; i++) {
            onnx__tensor_shape_proto__dimension__init(&ds[i]);
            if (t->dims[i].param) {
                ds[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                ds[i].dim_param = t->dims[i].param;
            } else if (t->dims[i].value >= 0) {
                ds[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                ds[i].dim_value = t->dims[i].value;
            }
            dims[i] = &ds[i];
        }
        sh->n_dim = (size_t)t->rank;
        sh->dim = dims;
        tt->shape = sh;
    }
    return tp;
}

static Onnx__ValueInfoProto *build_value_info(saver *S, const td_value *v) {
    Onnx__ValueInfoProto *vi = new_msg(S, &onnx__value_info_proto__descriptor, v->pb_extra);
    if (!vi)
        return NULL;
    vi->name = cstr(v->name);
    vi->doc_string = cstr(v->doc_string);
    bool type_absent = td_pbx_flags(v->pb_extra) & TD_PBX_TYPE_ABSENT;
    if (type_absent && v->initializer && v->type.elem == v->initializer->dtype && v->type.rank == v->initializer->rank)
        return vi; /* the type was only inferred from the initializer at load */
    vi->type = build_type(S, &v->type);
    return vi;
}

/* ---------------- graphs ---------------- */

static Onnx__GraphProto *build_graph(saver *S, const td_graph *g);

static Onnx__AttributeProto *build_attr(saver *S, const td_attr *a) {
    Onnx__AttributeProto *ap = new_msg(S, &onnx__attribute_proto__descriptor, a->pb_extra);
    if (!ap)
        return NULL;
    uint32_t flags = td_pbx_flags(a->pb_extra);
    ap->name = cstr(a->name);
    ap->ref_attr_name = cstr(a->ref_attr_name);
    ap->doc_string = cstr(a->doc_string);
    if (!(flags & TD_PBX_ATTR_NO_TYPE) || a->type != TD_ATTR_UNDEFINED) {
        ap->has_type = 1;
        ap->type = (Onnx__AttributeProto__AttributeType)a->type;
    }
    if (flags & TD_PBX_ATTR_NO_VALUE)
        return ap;
    switch (a->type) {
    case TD_ATTR_FLOAT: ap->has_f = 1, ap->f = a->f; break;
    case TD_ATTR_INT: ap->has_i = 1, ap->i = a->i; break;
    case TD_ATTR_STRING:
        ap->has_s = 1;
        ap->s.len = a->s_len;
        ap->s.data = (uint8_t *)a->s;
        break;
    case TD_ATTR_TENSOR: ap->t = a->t ? build_tensor(S, a->t, false) : NULL; break;
    case TD_ATTR_GRAPH: ap->g = a->g ? build_graph(S, a->g) : NULL; break;
    case TD_ATTR_FLOATS: ap->n_floats = a->count, ap->floats = a->floats; break;
    case TD_ATTR_INTS: ap->n_ints = a->count, ap->ints = a->ints; break;
    case TD_ATTR_STRINGS: {
        ProtobufCBinaryData *sd = alloc(S, sizeof *sd * (a->count ? a->count : 1));
        if (!sd)
            return NULL;
        for (size_t i = 0; i < a->count; i++)
            sd[i] = (ProtobufCBinaryData){a->string_lens[i], (uint8_t *)a->strings[i]};
        ap->n_strings = a->count;
        ap->strings = sd;
        break;
    }
    case TD_ATTR_TENSORS: {
        Onnx__TensorProto **ts = alloc(S, sizeof *ts * (a->count ? a->count : 1));
        if (!ts)
            return NULL;
        for (size_t i = 0; i < a->count; i++)
            ts[i] = build_tensor(S, a->tensors[i], false);
        ap->n_tensors = a->count;
        ap->tensors = ts;
        break;
    }
    case TD_ATTR_GRAPHS: {
        Onnx__GraphProto **gs = alloc(S, sizeof *gs * (a->count ? a->count : 1));
        if (!gs)
            return NULL;
        for (size_t i = 0; i < a->count; i++)
            gs[i] = build_graph(S, a->graphs[i]);
        ap->n_graphs = a->count;
        ap->graphs = gs;
        break;
    }
    default: break; /* kept in the residual */
    }
    return ap;
}

static char **value_names(saver *S, td_value *const *vals, int n) {
    char **names = alloc(S, sizeof(char *) * (size_t)(n ? n : 1));
    if (names)
        for (int i = 0; i < n; i++)
            names[i] = cstr(vals[i] ? vals[i]->name : "");
    return names;
}

static Onnx__NodeProto *build_node(saver *S, const td_node *n) {
    Onnx__NodeProto *np = new_msg(S, &onnx__node_proto__descriptor, n->pb_extra);
    if (!np)
        return NULL;
    uint32_t flags = td_pbx_flags(n->pb_extra);
    np->n_input = (size_t)n->n_inputs;
    np->input = value_names(S, n->inputs, n->n_inputs);
    np->n_output = (size_t)n->n_outputs;
    np->output = value_names(S, n->outputs, n->n_outputs);
    if ((n->name && *n->name) || (flags & TD_PBX_NAME_SET))
        np->name = cstr(n->name ? n->name : "");
    np->op_type = cstr(n->op_type);
    if ((n->domain && *n->domain) || (flags & TD_PBX_DOMAIN_SET))
        np->domain = cstr(n->domain ? n->domain : "");
    np->doc_string = cstr(n->doc_string);
    if (n->n_attrs) {
        np->attribute = alloc(S, sizeof *np->attribute * (size_t)n->n_attrs);
        if (!np->attribute)
            return NULL;
        for (int i = 0; i < n->n_attrs; i++)
            np->attribute[i] = build_attr(S, &n->attrs[i]);
        np->n_attribute = (size_t)n->n_attrs;
    }
    return np;
}

static Onnx__GraphProto *build_graph(saver *S, const td_graph *g) {
    Onnx__GraphProto *gp = new_msg(S, &onnx__graph_proto__descriptor, g->pb_extra);
    if (!gp)
        return NULL;
    if ((g->name && *g->name) || (td_pbx_flags(g->pb_extra) & TD_PBX_NAME_SET))
        gp->name = cstr(g->name ? g->name : "");
    gp->doc_string = cstr(g->doc_string);
    int live = td_graph_live_nodes(g);
    gp->node = alloc(S, sizeof *gp->node * (size_t)(live ? live : 1));
    gp->initializer = alloc(S, sizeof *gp->initializer * (size_t)(g->n_initializers ? g->n_initializers : 1));
    gp->input = alloc(S, sizeof *gp->input * (size_t)(g->n_inputs ? g->n_inputs : 1));
    gp->output = alloc(S, sizeof *gp->output * (size_t)(g->n_outputs ? g->n_outputs : 1));
    gp->value_info = alloc(S, sizeof *gp->value_info * (size_t)(g->n_values ? g->n_values : 1));
    if (!gp->node || !gp->initializer || !gp->input || !gp->output || !gp->value_info)
        return NULL;
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i]->dead)
            gp->node[gp->n_node++] = build_node(S, g->nodes[i]);
    for (int i = 0; i < g->n_initializers; i++)
        gp->initializer[gp->n_initializer++] = build_tensor(S, g->initializers[i]->initializer, true);
    for (int i = 0; i < g->n_inputs; i++)
        gp->input[gp->n_input++] = build_value_info(S, g->inputs[i]);
    for (int i = 0; i < g->n_outputs; i++)
        gp->output[gp->n_output++] = build_value_info(S, g->outputs[i]);
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i]->has_value_info)
            gp->value_info[gp->n_value_info++] = build_value_info(S, g->values[i]);
    return gp;
}

static Onnx__ModelProto *build_model(saver *S, const td_model *m) {
    Onnx__ModelProto *mp = new_msg(S, &onnx__model_proto__descriptor, m->pb_extra);
    if (!mp)
        return NULL;
    const td_pb_extra *x = m->pb_extra;
    uint32_t flags = x ? x->flags : 0, aux = x ? x->aux : 0;
    if (!(flags & TD_PBX_NO_IR_VERSION) || m->ir_version != 0) {
        mp->has_ir_version = 1;
        mp->ir_version = m->ir_version;
    }
    if (m->model_version != 0 || (flags & TD_PBX_MODEL_VERSION_SET)) {
        mp->has_model_version = 1;
        mp->model_version = m->model_version;
    }
    mp->producer_name = cstr(m->producer_name);
    mp->producer_version = cstr(m->producer_version);
    mp->domain = cstr(m->domain);
    mp->doc_string = cstr(m->doc_string);
    if (m->n_opsets) {
        mp->opset_import = alloc(S, sizeof *mp->opset_import * (size_t)m->n_opsets);
        Onnx__OperatorSetIdProto *ops = alloc(S, sizeof *ops * (size_t)m->n_opsets);
        if (!mp->opset_import || !ops)
            return NULL;
        for (int i = 0; i < m->n_opsets; i++) {
            onnx__operator_set_id_proto__init(&ops[i]);
            bool absent = i < 32 && (aux & (1u << i)) && !*m->opsets[i].domain;
            ops[i].domain = absent ? NULL : cstr(m->opsets[i].domain);
            ops[i].has_version = 1;
            ops[i].version = m->opsets[i].version;
            mp->opset_import[i] = &ops[i];
        }
        mp->n_opset_import = (size_t)m->n_opsets;
    }
    if (m->n_metadata) {
        mp->metadata_props = alloc(S, sizeof *mp->metadata_props * (size_t)m->n_metadata);
        Onnx__StringStringEntryProto *kv = alloc(S, sizeof *kv * (size_t)m->n_metadata);
        if (!mp->metadata_props || !kv)
            return NULL;
        for (int i = 0; i < m->n_metadata; i++) {
            onnx__string_string_entry_proto__init(&kv[i]);
            kv[i].key = cstr(m->metadata[i].key);
            kv[i].value = cstr(m->metadata[i].value);
            mp->metadata_props[i] = &kv[i];
        }
        mp->n_metadata_props = (size_t)m->n_metadata;
    }
    mp->graph = m->graph ? build_graph(S, m->graph) : NULL;
    return mp;
}

/* ---------------- external data ---------------- */

static td_status write_zeros(td_ctx *ctx, td_atomic_file *af, size_t n) {
    static const uint8_t zeros[4096];
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        TD_TRY(td_atomic_write(ctx, af, zeros, k));
        n -= k;
    }
    return TD_OK;
}

static char *u64_str(saver *S, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return td_arena_strdup(&S->A, buf);
}

/* Let af read the bytes of mapped initializers from their files (see
 * td_atomic_add_source): no page of a safetensors or ONNX mapping is touched. */
static td_status add_sources(saver *S, td_atomic_file *af) {
    for (size_t i = 0; i < S->n_inits; i++)
        if (S->inits[i].t->map)
            TD_TRY(td_atomic_add_source(S->ctx, af, S->inits[i].t->map));
    return TD_OK;
}

/* Move initializers of >= threshold bytes into data_path (written atomically). */
static td_status write_external(saver *S, const char *data_path, const char *location, size_t threshold,
                                size_t alignment, bool keep_cached) {
    td_ctx *ctx = S->ctx;
    td_atomic_file af;
    TD_TRY(td_atomic_open(ctx, &af, data_path));
    if (keep_cached)
        td_atomic_keep_cached(&af);
    td_status s = add_sources(S, &af);
    if (s != TD_OK)
        goto out;
    uint64_t pos = 0;
    for (size_t i = 0; i < S->n_inits; i++) {
        const td_tensor *t = S->inits[i].t;
        Onnx__TensorProto *tp = S->inits[i].tp;
        if (t->nbytes < threshold)
            continue;
        uint64_t off = (pos + alignment - 1) & ~(uint64_t)(alignment - 1);
        if ((s = write_zeros(ctx, &af, (size_t)(off - pos))) != TD_OK ||
            (s = td_atomic_write(ctx, &af, t->data, t->nbytes)) != TD_OK)
            goto out;
        pos = off + t->nbytes;
        Onnx__StringStringEntryProto **kv = alloc(S, sizeof *kv * 3);
        Onnx__StringStringEntryProto *e = alloc(S, sizeof *e * 3);
        if (!kv || !e) {
            s = S->status;
            goto out;
        }
        const char *keys[3] = {"location", "offset", "length"};
        char *vals[3] = {cstr(location), u64_str(S, off), u64_str(S, t->nbytes)};
        for (int k = 0; k < 3; k++) {
            onnx__string_string_entry_proto__init(&e[k]);
            e[k].key = cstr(keys[k]);
            e[k].value = vals[k];
            kv[k] = &e[k];
        }
        tp->n_external_data = 3;
        tp->external_data = kv;
        tp->has_data_location = 1;
        tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
        tp->has_raw_data = 0;
        tp->raw_data = (ProtobufCBinaryData){0, NULL};
        tp->n_float_data = tp->n_int32_data = tp->n_int64_data = tp->n_double_data = tp->n_uint64_data = 0;
    }
    s = td_atomic_commit(ctx, &af);
    return s;
out:
    td_atomic_abort(&af);
    return s;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

td_status td_onnx_save(td_ctx *ctx, const td_model *model, const char *path, const td_onnx_save_options *opts) {
    td_onnx_save_options o = opts ? *opts : (td_onnx_save_options){0};
    size_t threshold = o.size_threshold ? o.size_threshold : 1024;
    uint64_t auto_limit = o.auto_limit ? o.auto_limit : PROTOBUF_LIMIT - (1u << 20);
    size_t alignment = o.alignment ? o.alignment : 4096;
    if (alignment & (alignment - 1))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "external data alignment %zu is not a power of two", alignment);
    saver S = {.ctx = ctx};
    td_arena_init(&S.A);
    char *dir = NULL, *data_name = NULL, *data_path = NULL;
    td_atomic_file af = {0};
    td_onnx_aligned_plan plan = {0};
    bool aligned = false;
    td_status s = TD_OK;
    Onnx__ModelProto *mp = build_model(&S, model);
    if (S.status != TD_OK || !mp) {
        s = S.status != TD_OK ? S.status : td_fail_oom(ctx, 0, "the model message");
        goto out;
    }
    uint64_t size = protobuf_c_message_get_packed_size(&mp->base);
    bool external = o.external == TD_ONNX_EXTERNAL_ALWAYS || (o.external == TD_ONNX_EXTERNAL_AUTO && size > auto_limit);
    if (external) {
        if (o.data_file) {
            data_name = strdup(o.data_file);
        } else if (asprintf(&data_name, "%s.data", base_name(path)) < 0) {
            data_name = NULL;
        }
        dir = td_path_dirname(path);
        if (!data_name || !dir) {
            s = td_fail_oom(ctx, 0, "a path");
            goto out;
        }
        if ((s = td_path_join(ctx, dir, data_name, true, &data_path)) != TD_OK) {
            td_wrap(ctx, "external data file name");
            goto out;
        }
        if ((s = write_external(&S, data_path, data_name, threshold, alignment, o.keep_cached)) != TD_OK)
            goto out;
        size = protobuf_c_message_get_packed_size(&mp->base);
    }
    if (o.align_raw_data && mp->graph) {
        if ((s = td_onnx_aligned_plan_make(ctx, mp, &plan)) != TD_OK)
            goto out;
        aligned = true;
        size = plan.total;
    }
    if (size > PROTOBUF_LIMIT) {
        s = td_fail(ctx, TD_ERR_UNSUPPORTED,
                    "%s would be %llu bytes, over protobuf's 2 GB limit: save with external data (AUTO or ALWAYS)",
                    path, (unsigned long long)size);
        goto out;
    }
    if ((s = td_atomic_open(ctx, &af, path)) != TD_OK)
        goto out;
    if (o.keep_cached)
        td_atomic_keep_cached(&af);
    if ((s = add_sources(&S, &af)) != TD_OK) {
        td_atomic_abort(&af);
        goto out;
    }
    td_pb_file_buffer fb;
    td_pb_file_buffer_init(&fb, ctx, &af);
    if (aligned)
        td_onnx_aligned_write(mp, &plan, &fb.base);
    else
        protobuf_c_message_pack_to_buffer(&mp->base, &fb.base);
    s = fb.status; /* every earlier failure jumped to out */
    if (s == TD_OK && fb.written != size)
        s = td_fail(ctx, TD_ERR_INTERNAL, "wrote %llu bytes of %s but planned %llu", (unsigned long long)fb.written,
                    path, (unsigned long long)size);
    if (s != TD_OK) {
        td_atomic_abort(&af);
        goto out;
    }
    s = td_atomic_commit(ctx, &af);
out:
    td_onnx_aligned_plan_free(&plan);
    td_arena_free(&S.A);
    free(S.inits);
    free(dir);
    free(data_name);
    free(data_path);
    return s;
}

td_status td_onnx_save_buffer(td_ctx *ctx, const td_model *model, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    saver S = {.ctx = ctx};
    td_arena_init(&S.A);
    td_status s = TD_OK;
    Onnx__ModelProto *mp = build_model(&S, model);
    if (S.status != TD_OK || !mp) {
        s = S.status != TD_OK ? S.status : td_fail_oom(ctx, 0, "the model message");
        goto out;
    }
    size_t size = protobuf_c_message_get_packed_size(&mp->base);
    if (size > PROTOBUF_LIMIT) {
        s = td_fail(ctx, TD_ERR_UNSUPPORTED, "the model would be %zu bytes, over protobuf's 2 GB limit", size);
        goto out;
    }
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) {
        s = td_fail_oom(ctx, size, "the serialized model");
        goto out;
    }
    *out_len = protobuf_c_message_pack(&mp->base, buf);
    *out = buf;
out:
    td_arena_free(&S.A);
    free(S.inits);
    return s;
}
