/* Optimizing the exporter's in-memory graph must fuse exactly what optimizing the
 * same graph after a save/load round trip fuses (convert optimizes in memory).
 *
 * The two IRs differ legally: the exporter gives intermediates a dtype and no
 * shape, the loader gives them no type; the exporter's constants were values
 * with a dtype before they became initializers, the loader's come from
 * TensorProtos. Matchers read shapes from value types, so a constant left
 * shapeless once blocked Attention, SkipLayerNormalization and BiasGelu in
 * memory only. For every encoder fixture this test exports, optimizes in three
 * forms (as built, round-tripped, and as built with every constant's type cut
 * back to a dtype) and requires per layer one Attention, two
 * SkipLayerNormalization and one BiasGelu, the expected embedding fusion, and
 * the same fusion counts and optimized op sequence in every form. The decoder
 * fixtures get the same three forms with their decoder fusions counted. */
#include "export/export.h"
#include "onnx/ir.h"
#include "onnx/onnx_io.h"
#include "opt/optimize.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Encoder fixtures and the op the embedding LayerNorm becomes. RoBERTa-style
 * position ids (padding offset, cumulative sum over the mask) are not matched by
 * the EmbedLayerNormalization fusion, in memory or after a round trip alike, so
 * their embedding LayerNorm fuses to a plain LayerNormalization. */
static const struct {
    const char *dir;
    const char *embed_op;
} fixtures[] = {
    {"bert-base", "EmbedLayerNormalization"},   {"bert-qa", "EmbedLayerNormalization"},
    {"bert-seqcls", "EmbedLayerNormalization"}, {"bert-tokcls", "EmbedLayerNormalization"},
    {"minilm-st", "EmbedLayerNormalization"},   {"distilbert-seqcls", "EmbedLayerNormalization"},
    {"electra-base", "EmbedLayerNormalization"}, {"roberta-seqcls", "LayerNormalization"},
    {"xlmr-base", "LayerNormalization"},
};

static int count_of(const td_opt_report *r, const char *op) {
    for (int k = 0; k < TD_OPT_N_FUSION_KINDS; k++)
        if (r->fusion_names[k] && strcmp(r->fusion_names[k], op) == 0)
            return r->fusion_counts[k];
    return -1; /* not a fusion kind the report knows: fails every count check */
}

/* Op types of the live nodes, ';'-joined, into buf. */
static void op_sequence(const td_graph *g, char *buf, size_t cap) {
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < g->n_nodes && off < cap; i++) {
        if (g->nodes[i]->dead)
            continue;
        int w = snprintf(buf + off, cap - off, "%s;", g->nodes[i]->op_type);
        off += w > 0 ? (size_t)w : 0;
    }
}

typedef enum { FORM_BUILT, FORM_ROUND_TRIP, FORM_SHAPELESS_CONSTANTS, N_FORMS } form;
static const char *const form_names[N_FORMS] = {"in memory", "after save/load", "in memory, constants shapeless"};

/* Export dir, bring the graph into form f, optimize it. *ops gets the op sequence (malloc'd). */
static bool optimize_form_task(td_ctx *ctx, const char *dir, td_export_task task, form f, td_opt_report *rep,
                               int64_t *layers, char **ops) {
    td_export_options eo = {0};
    eo.model_dir = dir;
    eo.task = task;
    eo.opset = TD_EXPORT_OPSET_DEFAULT;
    eo.dtype = TD_F32;
    td_export_summary xs;
    td_model *m = NULL, *loaded = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    bool ok = false;
    *ops = NULL;
    if (td_export_build(ctx, &eo, &m, &xs) != TD_OK)
        goto out;
    *layers = xs.layers;
    if (f == FORM_ROUND_TRIP) {
        if (td_onnx_save_buffer(ctx, m, &buf, &len) != TD_OK || td_onnx_load_buffer(ctx, buf, len, dir, &loaded) != TD_OK)
            goto out;
        td_model_free(m);
        m = loaded;
        loaded = NULL;
    } else if (f == FORM_SHAPELESS_CONSTANTS) {
        td_graph *g = m->graph;
        for (int i = 0; i < g->n_initializers; i++) {
            td_value *v = g->initializers[i];
            if (!v->is_input && td_value_set_tensor_type(ctx, v, v->initializer->dtype, -1, NULL, NULL) != TD_OK)
                goto out;
        }
    }
    td_opt_options oo;
    td_opt_options_default(&oo);
    oo.target = TD_OPT_TARGET_FUSED;
    if (td_optimize(ctx, m, &oo, rep) != TD_OK)
        goto out;
    *ops = malloc(1 << 16);
    if (!*ops)
        goto out;
    op_sequence(m->graph, *ops, 1 << 16);
    ok = true;
out:
    if (!ok)
        fprintf(stderr, "%s (%s): %s\n", dir, form_names[f], td_error_message(ctx));
    free(buf);
    td_model_free(loaded);
    td_model_free(m);
    return ok;
}

static bool optimize_form(td_ctx *ctx, const char *dir, form f, td_opt_report *rep, int64_t *layers, char **ops) {
    return optimize_form_task(ctx, dir, TD_TASK_AUTO, f, rep, layers, ops);
}

static void check_fixture(const char *root, const char *name, const char *embed_op) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/hf/%s", root, name);
    int failures_before = td_test_fail_count;
    td_ctx *ctx = td_ctx_new();
    td_opt_report rep[N_FORMS];
    char *ops[N_FORMS] = {0};
    int64_t layers[N_FORMS] = {0};
    bool ok = true;
    for (int f = 0; f < N_FORMS; f++)
        ok &= optimize_form(ctx, dir, (form)f, &rep[f], &layers[f], &ops[f]);
    CHECK_MSG(ok, "%s: export or optimize failed", name);
    static const char *const kinds[] = {"Attention", "SkipLayerNormalization", "BiasGelu", "EmbedLayerNormalization",
                                        "LayerNormalization", "Gelu"};
    for (int f = 0; ok && f < N_FORMS; f++) {
        int64_t n = layers[f];
        int attn = count_of(&rep[f], "Attention"), sln = count_of(&rep[f], "SkipLayerNormalization");
        int bg = count_of(&rep[f], "BiasGelu"), emb = count_of(&rep[f], embed_op);
        CHECK_MSG(n > 0 && attn == n && sln == 2 * n && bg == n && emb == 1,
                  "%s (%s): %lld layers but Attention %d, SkipLayerNormalization %d, BiasGelu %d, %s %d", name,
                  form_names[f], (long long)n, attn, sln, bg, embed_op, emb);
        if (f == FORM_BUILT)
            continue;
        for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
            CHECK_MSG(count_of(&rep[f], kinds[k]) == count_of(&rep[FORM_BUILT], kinds[k]), "%s: %s %d %s, %d %s",
                      name, kinds[k], count_of(&rep[FORM_BUILT], kinds[k]), form_names[FORM_BUILT],
                      count_of(&rep[f], kinds[k]), form_names[f]);
        CHECK_MSG(rep[f].nodes_before == rep[FORM_BUILT].nodes_before &&
                      rep[f].nodes_after == rep[FORM_BUILT].nodes_after,
                  "%s: nodes %d -> %d %s, %d -> %d %s", name, rep[FORM_BUILT].nodes_before,
                  rep[FORM_BUILT].nodes_after, form_names[FORM_BUILT], rep[f].nodes_before, rep[f].nodes_after,
                  form_names[f]);
        CHECK_MSG(strcmp(ops[f], ops[FORM_BUILT]) == 0, "%s: optimized op sequence differs %s:\n  %s\n%s:\n  %s", name,
                  form_names[FORM_BUILT], ops[FORM_BUILT], form_names[f], ops[f]);
    }
    if (td_test_fail_count == failures_before)
        printf("%-18s %lld layers: Attention %d, SkipLayerNormalization %d, BiasGelu %d, %s %d, nodes %d -> %d in "
               "every form\n",
               name, (long long)layers[0], count_of(&rep[0], "Attention"), count_of(&rep[0], "SkipLayerNormalization"),
               count_of(&rep[0], "BiasGelu"), embed_op, count_of(&rep[0], embed_op), rep[0].nodes_before,
               rep[0].nodes_after);
    for (int f = 0; f < N_FORMS; f++)
        free(ops[f]);
    td_ctx_free(ctx);
}

/* The IR rule the fix rests on: an initializer's value takes its data's shape
 * when its own type has none, even a dtype-only one; a declared input keeps its type. */
static void test_initializer_type_from_data(void) {
    td_graph *g = td_graph_new(NULL);
    CHECK(g != NULL);
    if (!g)
        return;
    const int64_t dims[2] = {2, 3};
    const float data[6] = {0};
    td_value *v = NULL, *in = NULL;
    CHECK(td_graph_add_value(NULL, g, "w", &v) == TD_OK);
    v->type.elem = TD_F32; /* the exporter's form: dtype, no shape */
    td_tensor *t = NULL;
    CHECK(td_tensor_new_copy(NULL, "w", TD_F32, 2, dims, data, sizeof data, &t) == TD_OK);
    CHECK(td_graph_set_initializer(NULL, g, v, t) == TD_OK);
    CHECK(v->type.elem == TD_F32 && v->type.rank == 2 && v->type.dims[0].value == 2 && v->type.dims[1].value == 3);

    /* replacing the data of a value whose type was cut back restores the shape */
    CHECK(td_value_set_tensor_type(NULL, v, TD_F32, -1, NULL, NULL) == TD_OK);
    t = NULL;
    CHECK(td_tensor_new_copy(NULL, "w", TD_F32, 2, dims, data, sizeof data, &t) == TD_OK);
    CHECK(td_graph_set_initializer(NULL, g, v, t) == TD_OK);
    CHECK(v->type.rank == 2);

    /* an overridable initializer: the input's declared (dtype-only) type stands */
    CHECK(td_graph_add_value(NULL, g, "x", &in) == TD_OK);
    CHECK(td_value_set_tensor_type(NULL, in, TD_F32, -1, NULL, NULL) == TD_OK);
    CHECK(td_graph_add_input(NULL, g, in) == TD_OK);
    t = NULL;
    CHECK(td_tensor_new_copy(NULL, "x", TD_F32, 2, dims, data, sizeof data, &t) == TD_OK);
    CHECK(td_graph_set_initializer(NULL, g, in, t) == TD_OK);
    CHECK(in->type.elem == TD_F32 && in->type.rank == -1);
    td_graph_free(g);
}

/* Decoders (`tdeploy generate` and `convert` optimize the exporter's graph in memory): per layer
 * GroupQueryAttention, two RotaryEmbedding, QuickGelu and two SkipSimplifiedLayerNormalization (Llama
 * family; the rope fusion reads max_position_embeddings from the model metadata, which the in-memory
 * model carries too) or MultiHeadAttention, two SkipLayerNormalization and FastGelu (GPT-2's gelu_new
 * written x*x*x), in all three forms,
 * with the same optimized op sequence. Every decoder fixture has 2 layers. */
static void check_decoder(const char *root, const char *name) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/hf/%s", root, name);
    bool gpt2 = strncmp(name, "gpt2", 4) == 0;
    static const char *const llama_kinds[] = {"GroupQueryAttention", "RotaryEmbedding", "QuickGelu",
                                              "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization"};
    static const char *const gpt2_kinds[] = {"MultiHeadAttention", "SkipLayerNormalization", "FastGelu",
                                             "LayerNormalization"};
    static const int llama_per_layer[] = {1, 2, 1, 2, 0}, gpt2_per_layer[] = {1, 2, 1, 0};
    const char *const *kinds = gpt2 ? gpt2_kinds : llama_kinds;
    const int *per_layer = gpt2 ? gpt2_per_layer : llama_per_layer;
    int n_kinds = gpt2 ? 4 : 5;
    const int64_t layers = 2;
    td_ctx *ctx = td_ctx_new();
    td_opt_report rep[N_FORMS];
    char *ops[N_FORMS] = {0};
    int64_t unused = 0;
    bool ok = true;
    for (int f = 0; f < N_FORMS; f++)
        ok &= optimize_form_task(ctx, dir, TD_TASK_TEXT_GENERATION, (form)f, &rep[f], &unused, &ops[f]);
    CHECK_MSG(ok, "%s: export or optimize failed", name);
    for (int f = 0; ok && f < N_FORMS; f++) {
        for (int k = 0; k < n_kinds; k++) {
            int want = per_layer[k] ? per_layer[k] * (int)layers : 1; /* the final norm */
            CHECK_MSG(count_of(&rep[f], kinds[k]) == want, "%s (%s): %s %d, want %d", name, form_names[f], kinds[k],
                      count_of(&rep[f], kinds[k]), want);
        }
        if (f != FORM_BUILT)
            CHECK_MSG(strcmp(ops[f], ops[FORM_BUILT]) == 0, "%s: optimized op sequence differs %s:\n  %s\n%s:\n  %s",
                      name, form_names[FORM_BUILT], ops[FORM_BUILT], form_names[f], ops[f]);
    }
    if (ok)
        printf("%-18s %s %d, %s %d in every form\n", name, kinds[0], count_of(&rep[0], kinds[0]), kinds[1],
               count_of(&rep[0], kinds[1]));
    for (int f = 0; f < N_FORMS; f++)
        free(ops[f]);
    td_ctx_free(ctx);
}

int main(void) {
    const char *root = td_test_env("TD_FIXTURES", "../tests/fixtures");
    static const char *const decoders[] = {"gpt2-lm", "llama-lm", "gpt2-gen", "llama-gen", "qwen2-lm", "mistral-lm",
                                           "phi3-lm"};
    for (size_t i = 0; i < sizeof decoders / sizeof *decoders; i++)
        check_decoder(root, decoders[i]);
    test_initializer_type_from_data();
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++)
        check_fixture(root, fixtures[i].dir, fixtures[i].embed_op);
    return td_test_finish("test_opt_inmem");
}
