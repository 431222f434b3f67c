/* The in-memory graph IR shared by the exporter, ONNX load/save, the optimizer
 * and the engine builder. It mirrors ONNX's ModelProto closely enough that a
 * load -> save round trip is lossless, and is shaped for graph passes:
 *
 *   - every value (tensor name) is one td_value object that knows its producer
 *     node and its consumers, so "who makes X / who uses X" is O(1);
 *   - nodes are removed by marking them dead (td_graph_remove_node) and the node
 *     array is compacted by td_graph_compact; td_graph_toposort reorders nodes;
 *   - initializer data can point into a mapped file (safetensors or ONNX external
 *     data) without copying: td_tensor holds a reference on the mapping.
 *
 * Ownership: a td_model owns its graph; a graph owns its nodes, values and
 * tensors; a node owns its attributes; an attribute owns its tensors/subgraphs.
 * Strings are malloc'd copies owned by the object holding them.
 *
 * pb_extra slots belong to src/onnx/load.c + save.c: they keep the protobuf
 * fields the IR does not model (unknown fields, functions, training info...) so
 * that saving a loaded model loses nothing. Code that builds graphs leaves them NULL. */
#ifndef TD_ONNX_IR_H
#define TD_ONNX_IR_H

#include "core/ctx.h"
#include "core/dtype.h"
#include "core/fs.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct td_graph td_graph;
typedef struct td_node td_node;
typedef struct td_value td_value;

/* One dimension of a value's shape: a number, a symbolic name, or unknown. */
typedef struct td_dim {
    int64_t value; /* >= 0 when known, -1 when symbolic or unknown */
    char *param;   /* symbolic name ("batch", "sequence") or NULL */
} td_dim;

/* Type of a value. Tensor types are modelled; any other TypeProto (sequence,
 * map, optional, sparse) is kept as its serialized bytes in raw. */
typedef struct td_type {
    td_dtype elem; /* TD_UNDEFINED = not known */
    int rank;      /* -1 = rank unknown (no shape) */
    td_dim *dims;  /* rank entries */
    uint8_t *raw;  /* serialized TypeProto for non-tensor types, else NULL */
    size_t raw_len;
    char *denotation;
    void *pb_extra;
} td_type;

/* Constant tensor data: an initializer, a Constant's value or a tensor attribute. */
typedef struct td_tensor {
    char *name;
    td_dtype dtype;
    int rank;
    int64_t *dims;          /* rank entries */
    const void *data;       /* little-endian elements, row-major; NULL for STRING or when nbytes == 0 */
    size_t nbytes;          /* numel * dtype size */
    void *owned;            /* malloc'd buffer that data points into, freed with the tensor */
    td_mapped_file *map;    /* mapping that data points into (a reference is held) */
    char **strings;         /* STRING tensors: numel byte strings (lengths in string_lens) */
    size_t *string_lens;
    char *doc_string;
    /* Where the data lived in the source file when it was external (kept for inspect). */
    char *external_location;
    void *pb_extra;
} td_tensor;

/* ONNX AttributeProto.AttributeType numbering. */
typedef enum td_attr_type {
    TD_ATTR_UNDEFINED = 0,
    TD_ATTR_FLOAT = 1,
    TD_ATTR_INT = 2,
    TD_ATTR_STRING = 3,
    TD_ATTR_TENSOR = 4,
    TD_ATTR_GRAPH = 5,
    TD_ATTR_FLOATS = 6,
    TD_ATTR_INTS = 7,
    TD_ATTR_STRINGS = 8,
    TD_ATTR_TENSORS = 9,
    TD_ATTR_GRAPHS = 10,
    TD_ATTR_SPARSE_TENSOR = 11,
    TD_ATTR_SPARSE_TENSORS = 12,
    TD_ATTR_TYPE_PROTO = 13,
    TD_ATTR_TYPE_PROTOS = 14,
} td_attr_type;

typedef struct td_attr {
    char *name;
    td_attr_type type;
    float f;
    int64_t i;
    char *s; /* bytes, NUL-terminated for convenience; length in s_len */
    size_t s_len;
    td_tensor *t;
    td_graph *g;
    size_t count; /* entries in the list that matches type */
    float *floats;
    int64_t *ints;
    char **strings;
    size_t *string_lens;
    td_tensor **tensors;
    td_graph **graphs;
    char *ref_attr_name;
    char *doc_string;
    void *pb_extra; /* sparse tensors, type protos, unknown fields */
} td_attr;

struct td_node {
    char *name;
    char *op_type;
    char *domain;       /* "" for the default ONNX domain */
    td_value **inputs;  /* NULL entry = omitted optional input */
    int n_inputs;
    td_value **outputs; /* NULL entry = omitted optional output */
    int n_outputs;
    td_attr *attrs;
    int n_attrs;
    char *doc_string;
    td_graph *graph;    /* owner */
    bool dead;          /* removed; dropped by td_graph_compact */
    int order;          /* scratch for passes (toposort uses it) */
    void *pb_extra;
};

struct td_value {
    char *name;
    td_type type;
    td_node *producer;    /* NULL for graph inputs, initializers and outer-scope values */
    int producer_slot;    /* output index in producer */
    td_node **consumers;  /* one entry per use (a node using X twice appears twice) */
    int n_consumers;
    int cap_consumers;
    td_tensor *initializer; /* non-NULL: a constant initializer of this graph */
    bool is_input;          /* listed in graph.input */
    bool is_output;         /* listed in graph.output */
    bool has_value_info;    /* listed in graph.value_info (save writes it back) */
    td_graph *graph;        /* the graph that owns this value */
    char *doc_string;
    void *pb_extra;
};

struct td_graph {
    char *name;
    char *doc_string;
    td_node **nodes; /* execution order (topological after td_graph_toposort) */
    int n_nodes, cap_nodes;
    td_value **values; /* every value owned by this graph, in creation order */
    int n_values, cap_values;
    td_value **inputs; /* graph.input order */
    int n_inputs, cap_inputs;
    td_value **outputs; /* graph.output order */
    int n_outputs, cap_outputs;
    td_value **initializers; /* graph.initializer order */
    int n_initializers, cap_initializers;
    td_graph *parent;      /* enclosing graph of a subgraph, else NULL */
    struct td_value_map *map; /* name -> value, private to ir.c */
    void *pb_extra;        /* sparse initializers, quantization annotations, unknown fields */
};

typedef struct td_opset {
    char *domain; /* "" = ai.onnx */
    int64_t version;
} td_opset;

typedef struct td_kv {
    char *key, *value;
} td_kv;

typedef struct td_model {
    int64_t ir_version;
    td_opset *opsets;
    int n_opsets;
    char *producer_name, *producer_version, *domain, *doc_string;
    int64_t model_version;
    td_kv *metadata;
    int n_metadata;
    td_graph *graph;
    char *base_dir; /* directory external data is resolved against (load), or NULL */
    void *pb_extra; /* functions, training info, unknown fields */
} td_model;

/* ---- model ---- */
td_model *td_model_new(void); /* empty model with an empty graph; NULL on OOM */
void td_model_free(td_model *m);
/* Set (add or update) the opset version for a domain. */
td_status td_model_set_opset(td_ctx *ctx, td_model *m, const char *domain, int64_t version);
int64_t td_model_opset(const td_model *m, const char *domain); /* 0 if not imported */
td_status td_model_set_metadata(td_ctx *ctx, td_model *m, const char *key, const char *value);
const char *td_model_metadata(const td_model *m, const char *key);

/* ---- graph ---- */
td_graph *td_graph_new(td_graph *parent);
void td_graph_free(td_graph *g);
/* Value named name in this graph only, or NULL. */
td_value *td_graph_find(const td_graph *g, const char *name);
/* Value visible from g: this graph, then enclosing graphs. */
td_value *td_graph_lookup(const td_graph *g, const char *name);
/* New value; TD_ERR_GRAPH if the name exists in this graph. */
td_status td_graph_add_value(td_ctx *ctx, td_graph *g, const char *name, td_value **out);
/* Existing value of this graph or a new one. */
td_status td_graph_get_value(td_ctx *ctx, td_graph *g, const char *name, td_value **out);
/* A name not used in this graph: prefix, prefix_1, prefix_2 ... (malloc'd). */
char *td_graph_unique_name(td_graph *g, const char *prefix);
td_status td_graph_add_input(td_ctx *ctx, td_graph *g, td_value *v);
td_status td_graph_add_output(td_ctx *ctx, td_graph *g, td_value *v);
/* Make v an initializer holding t (the graph takes ownership of t). When v's type
 * has no shape (untyped or dtype only) it becomes t's dtype and shape, unless v
 * is a graph input with a declared type (a caller may feed another shape). */
td_status td_graph_set_initializer(td_ctx *ctx, td_graph *g, td_value *v, td_tensor *t);
/* Append a node; inputs/outputs may contain NULL for omitted optional slots.
 * Outputs must not already have a producer. Sets producer/consumer links. */
td_status td_graph_add_node(td_ctx *ctx, td_graph *g, const char *op_type, const char *domain, const char *name,
                            td_value *const *inputs, int n_inputs, td_value *const *outputs, int n_outputs,
                            td_node **out);
/* Mark node dead and unlink it from its values (outputs lose their producer). */
void td_graph_remove_node(td_graph *g, td_node *n);
/* Point input slot of n at v (either may be NULL), keeping consumer lists right. */
td_status td_node_set_input(td_ctx *ctx, td_node *n, int slot, td_value *v);
/* Redirect every use of old (node inputs, and graph outputs) to new_v. */
td_status td_value_replace_uses(td_ctx *ctx, td_value *old, td_value *new_v);
/* Drop dead nodes and values with no producer, no consumer and no role
 * (not input/output/initializer/value_info). */
void td_graph_compact(td_graph *g);
/* Reorder nodes topologically (stable: keeps file order where possible).
 * TD_ERR_GRAPH naming a node on the cycle when there is one. */
td_status td_graph_toposort(td_ctx *ctx, td_graph *g);
/* Remove v from the initializer list (it becomes an ordinary value). */
void td_graph_clear_initializer(td_graph *g, td_value *v);
/* Number of live (not dead) nodes. */
int td_graph_live_nodes(const td_graph *g);

/* ---- values ---- */
td_status td_value_set_tensor_type(td_ctx *ctx, td_value *v, td_dtype elem, int rank, const int64_t *dims,
                                   const char *const *params);
/* Producer's index of this value (or -1), cheap helpers for passes. */
static inline bool td_value_is_const(const td_value *v) { return v && v->initializer != NULL; }

/* ---- tensors ---- */
/* New tensor with a copy of data (nbytes must equal numel * dtype size). */
td_status td_tensor_new_copy(td_ctx *ctx, const char *name, td_dtype dtype, int rank, const int64_t *dims,
                             const void *data, size_t nbytes, td_tensor **out);
/* New tensor whose data points into map at offset (a reference on map is taken). */
td_status td_tensor_new_mapped(td_ctx *ctx, const char *name, td_dtype dtype, int rank, const int64_t *dims,
                               td_mapped_file *map, size_t offset, size_t nbytes, td_tensor **out);
/* New tensor taking ownership of a malloc'd buffer. */
td_status td_tensor_new_owned(td_ctx *ctx, const char *name, td_dtype dtype, int rank, const int64_t *dims,
                              void *buffer, size_t nbytes, td_tensor **out);
void td_tensor_free(td_tensor *t);
int64_t td_tensor_numel(const td_tensor *t);
td_status td_tensor_clone(td_ctx *ctx, const td_tensor *t, td_tensor **out);

/* ---- attributes ---- */
const td_attr *td_node_attr(const td_node *n, const char *name);
int64_t td_node_attr_int(const td_node *n, const char *name, int64_t dflt);
float td_node_attr_float(const td_node *n, const char *name, float dflt);
const char *td_node_attr_string(const td_node *n, const char *name, const char *dflt);
/* Ints list: count in *count, NULL (count 0) when absent. */
const int64_t *td_node_attr_ints(const td_node *n, const char *name, size_t *count);
td_status td_node_add_attr_int(td_ctx *ctx, td_node *n, const char *name, int64_t v);
td_status td_node_add_attr_float(td_ctx *ctx, td_node *n, const char *name, float v);
td_status td_node_add_attr_string(td_ctx *ctx, td_node *n, const char *name, const char *v);
td_status td_node_add_attr_ints(td_ctx *ctx, td_node *n, const char *name, const int64_t *v, size_t count);
td_status td_node_add_attr_floats(td_ctx *ctx, td_node *n, const char *name, const float *v, size_t count);
/* Takes ownership of t. */
td_status td_node_add_attr_tensor(td_ctx *ctx, td_node *n, const char *name, td_tensor *t);
/* Append a zero-initialized attribute slot (for the loader); returns it in *out. */
td_status td_node_new_attr(td_ctx *ctx, td_node *n, td_attr **out);
void td_attr_clear(td_attr *a);

#endif
