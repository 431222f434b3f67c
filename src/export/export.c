/* Exporter entry points: options -> spec -> checkpoint -> graph (see export.h). */
#define _GNU_SOURCE
#include "export/export.h"

#include "core/fs.h"
#include "core/log.h"
#include "export/decoder.h"
#include "export/encoder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ONNX IR version that goes with an ai.onnx opset (onnx/helper.py VERSION_TABLE). */
static int64_t ir_version_for(int opset) {
    if (opset <= 14)
        return 7;
    if (opset <= 18)
        return 8;
    if (opset <= 20)
        return 9;
    return 10;
}

static const char *family_prefix(td_enc_family f) {
    switch (f) {
    case TD_FAM_BERT: return "bert.";
    case TD_FAM_ROBERTA: return "roberta."; /* XLM-R reuses RoBERTa's module names */
    case TD_FAM_DISTILBERT: return "distilbert.";
    case TD_FAM_ELECTRA: return "electra.";
    }
    return "";
}

/* Base models store the encoder at the top level, models with a head under the
 * family prefix ("bert.embeddings..."); sentence-transformers saves either. */
static td_status find_prefix(td_ctx *ctx, const td_checkpoint *ck, td_encoder_spec *s) {
    const char *fp = family_prefix(s->family);
    char name[96];
    snprintf(name, sizeof name, "%sembeddings.word_embeddings.weight", fp);
    if (td_checkpoint_find(ck, name)) {
        snprintf(s->prefix, sizeof s->prefix, "%s", fp);
        return TD_OK;
    }
    if (td_checkpoint_find(ck, "embeddings.word_embeddings.weight")) {
        s->prefix[0] = '\0';
        return TD_OK;
    }
    return td_fail(ctx, TD_ERR_NOT_FOUND,
                   "%s: tensor '%s' (or 'embeddings.word_embeddings.weight') is missing from the checkpoint; "
                   "is this a %s model?",
                   td_checkpoint_path(ck), name, s->model_type);
}

static td_status validate_options(td_ctx *ctx, const td_export_options *o, int *opset, td_dtype *dtype) {
    if (!o->model_dir || !*o->model_dir)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "export: no model directory given");
    *opset = o->opset ? o->opset : TD_EXPORT_OPSET_DEFAULT;
    if (*opset < TD_EXPORT_OPSET_MIN || *opset > TD_EXPORT_OPSET_MAX)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "export: opset %d is not supported (supported: %d..%d)", *opset,
                       TD_EXPORT_OPSET_MIN, TD_EXPORT_OPSET_MAX);
    *dtype = o->dtype == TD_UNDEFINED ? TD_F32 : o->dtype;
    if (*dtype != TD_F32 && *dtype != TD_F16)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "export: dtype %s is not supported (supported: fp32, fp16)",
                       td_dtype_name(*dtype));
    return TD_OK;
}

static td_status set_metadata(td_ctx *ctx, td_model *m, const td_encoder_spec *s, td_export_task task) {
    TD_TRY(td_model_set_metadata(ctx, m, "task", td_export_task_name(task)));
    TD_TRY(td_model_set_metadata(ctx, m, "model_type", s->model_type));
    if (s->architecture[0])
        TD_TRY(td_model_set_metadata(ctx, m, "architecture", s->architecture));
    if (s->id2label_json && (task == TD_TASK_CLASSIFICATION || task == TD_TASK_TOKEN_CLASSIFICATION))
        TD_TRY(td_model_set_metadata(ctx, m, "id2label", s->id2label_json));
    if (s->md && s->md->max_seq_length > 0) {
        /* the longest input in tokens, so runners of the exported file truncate as the source model does */
        char len[24];
        snprintf(len, sizeof len, "%lld", (long long)s->md->max_seq_length);
        TD_TRY(td_model_set_metadata(ctx, m, "max_seq_length", len));
    }
    if (task == TD_TASK_EMBEDDING) {
        char buf[96];
        td_st_pooling_name(s->pooling, buf, sizeof buf);
        TD_TRY(td_model_set_metadata(ctx, m, "pooling", buf));
        TD_TRY(td_model_set_metadata(ctx, m, "normalize", s->normalize ? "true" : "false"));
    }
    return TD_OK;
}

/* The graph inputs, int64 or int32 (then cast to int64 inside). */
static void add_inputs(td_eb *b, const td_encoder_spec *s, bool int32, td_enc_inputs *in, td_export_summary *sum) {
    static const char *const params[2] = {"batch", "sequence"};
    const int64_t dims[2] = {-1, -1};
    td_dtype it = int32 ? TD_I32 : TD_I64;
    td_eb_scope(b, "inputs");
    const char *names[3] = {"input_ids", s->token_type_input ? "token_type_ids" : NULL, "attention_mask"};
    td_value *vals[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        if (!names[i])
            continue;
        vals[i] = td_eb_input(b, names[i], it, 2, dims, params);
        snprintf(sum->inputs[sum->n_inputs++], sizeof sum->inputs[0], "%s", names[i]);
    }
    in->ids = td_eb_cast(b, vals[0], TD_I64);
    in->token_types = vals[1] ? td_eb_cast(b, vals[1], TD_I64) : NULL;
    in->mask = vals[2];
    in->mask_bias = td_eb_attention_bias(b, vals[2]);
}

static td_status build_graph(td_ctx *ctx, td_model *m, const td_checkpoint *ck, td_encoder_spec *s,
                             td_export_task task, int opset, td_dtype dtype, bool int32, td_export_summary *sum) {
    td_eb b;
    td_eb_init(&b, ctx, m, opset, dtype);
    td_xw w = {.b = &b, .ck = ck, .why = s->model_type};
    td_enc_inputs in = {0};
    add_inputs(&b, s, int32, &in, sum);
    td_value *h = td_enc_embeddings(&b, &w, s, &in);
    h = td_enc_layers(&b, &w, s, h, in.mask_bias);
    if (td_eb_status(&b) == TD_OK)
        td_enc_heads(&b, &w, s, task, h, &in, sum);
    sum->weight_bytes = w.bytes;
    return td_eb_status(&b);
}

/* An empty model with tdeploy's producer, the opset and graph name. */
static td_status new_model(td_ctx *ctx, int opset, const char *graph_name, td_model **out) {
    td_model *m = td_model_new();
    if (!m)
        return td_fail_oom(ctx, sizeof *m, "a model");
    m->ir_version = ir_version_for(opset);
    free(m->graph->name);
    m->graph->name = strdup(graph_name);
    if (!m->graph->name || !(m->producer_name = strdup("tdeploy")) ||
        !(m->producer_version = strdup(td_version()))) {
        td_model_free(m);
        return td_fail_oom(ctx, 16, "producer name");
    }
    td_status st = td_model_set_opset(ctx, m, "", opset);
    if (st != TD_OK) {
        td_model_free(m);
        return st;
    }
    *out = m;
    return TD_OK;
}

/* Decoders (decoder.h): text-generation with a KV cache, float32. Takes the spec. */
static td_status export_decoder(td_ctx *ctx, const td_export_options *opt, td_decoder_spec s, int opset,
                                td_dtype dtype, td_model **out, td_export_summary *sum, double t0) {
    td_model *m = NULL;
    td_export_task task = TD_TASK_AUTO;
    td_status st = td_decoder_spec_task(ctx, &s, opt->task, &task);
    if (st == TD_OK && dtype != TD_F32)
        st = td_fail(ctx, TD_ERR_UNSUPPORTED, "export: decoders (%s) are exported in fp32 only; drop --dtype %s and "
                     "let optimize convert precision", s.model_type, td_dtype_name(dtype));
    if (st == TD_OK)
        st = new_model(ctx, opset, s.architecture[0] ? s.architecture : s.model_type, &m);
    if (st == TD_OK)
        st = td_decoder_set_metadata(ctx, m, &s);
    if (st == TD_OK) {
        td_eb b;
        td_eb_init(&b, ctx, m, opset, TD_F32);
        td_xw w = {.b = &b, .ck = s.md ? s.md->checkpoint : NULL, .why = s.model_type};
        struct td_xw_gguf *gg = s.gguf ? td_xw_gguf_new(&s) : NULL;
        w.gguf = gg;
        w.gguf_quantized = !opt->gguf_dequantize;
        w.gguf_int8_act = opt->gguf_int8_activations;
        st = s.gguf && !gg ? td_fail_oom(ctx, 64, "GGUF source") : td_decoder_build(&b, &w, &s, opt->int32_inputs, sum);
        free(gg);
        sum->weight_bytes = w.bytes;
        if (st == TD_OK && w.gguf && w.gguf_quantized && td_model_opset(m, "com.microsoft") < 1)
            st = td_model_set_opset(ctx, m, "com.microsoft", 1); /* MatMulNBits, GatherBlockQuantized */
        if (st != TD_OK)
            td_wrap(ctx, "exporting %s", opt->model_dir);
    }
    if (st == TD_OK) {
        snprintf(sum->model_type, sizeof sum->model_type, "%s", s.model_type);
        snprintf(sum->architecture, sizeof sum->architecture, "%s", s.architecture);
        sum->task = task;
        sum->opset = opset;
        sum->dtype = TD_F32;
        sum->layers = s.layers;
        sum->hidden = s.hidden;
        sum->heads = s.heads;
        sum->vocab = s.vocab;
        sum->n_initializers = m->graph->n_initializers;
        sum->n_nodes = td_graph_live_nodes(m->graph);
        sum->seconds = td_now_s() - t0;
        *out = m;
        m = NULL;
    }
    td_model_free(m);
    td_decoder_spec_free(&s);
    return st;
}

td_status td_export_build(td_ctx *ctx, const td_export_options *opt, td_model **out, td_export_summary *sum) {
    *out = NULL;
    memset(sum, 0, sizeof *sum);
    double t0 = td_now_s();
    int opset = 0;
    td_dtype dtype = TD_F32;
    TD_TRY(validate_options(ctx, opt, &opset, &dtype));
    size_t len = strlen(opt->model_dir);
    if (len > 5 && !strcmp(opt->model_dir + len - 5, ".gguf") && td_is_file(opt->model_dir)) {
        td_decoder_spec ds;
        TD_TRY(td_decoder_spec_from_gguf(ctx, opt->model_dir, &ds));
        return export_decoder(ctx, opt, ds, opset, dtype, out, sum, t0);
    }
    td_model_dir *md = NULL;
    TD_TRY(td_model_dir_open(ctx, opt->model_dir, &md));
    if (td_decoder_family(md->config)) {
        td_decoder_spec ds;
        TD_TRY(td_decoder_spec_from_dir(ctx, md, &ds));
        return export_decoder(ctx, opt, ds, opset, dtype, out, sum, t0);
    }
    td_encoder_spec s;
    TD_TRY(td_encoder_spec_from_dir(ctx, md, &s));
    const td_checkpoint *ck = s.md->checkpoint;
    td_model *m = NULL;
    td_export_task task = TD_TASK_AUTO;
    td_status st = td_encoder_spec_task(ctx, &s, opt->task, &task);
    if (st == TD_OK)
        st = find_prefix(ctx, ck, &s);
    if (st != TD_OK)
        goto out;
    if ((st = new_model(ctx, opset, s.architecture[0] ? s.architecture : s.model_type, &m)) != TD_OK ||
        (st = set_metadata(ctx, m, &s, task)) != TD_OK)
        goto out;
    st = build_graph(ctx, m, ck, &s, task, opset, dtype, opt->int32_inputs, sum);
    if (st != TD_OK) {
        td_wrap(ctx, "exporting %s", opt->model_dir);
        goto out;
    }
    snprintf(sum->model_type, sizeof sum->model_type, "%s", s.model_type);
    snprintf(sum->architecture, sizeof sum->architecture, "%s", s.architecture);
    sum->task = task;
    sum->opset = opset;
    sum->dtype = dtype;
    sum->layers = s.layers;
    sum->hidden = s.hidden;
    sum->heads = s.heads;
    sum->vocab = s.vocab;
    sum->n_initializers = m->graph->n_initializers;
    sum->n_nodes = td_graph_live_nodes(m->graph);
    sum->seconds = td_now_s() - t0;
    *out = m;
    m = NULL;
out:
    td_model_free(m);
    /* closes the checkpoint; initializers hold their own references on the mappings */
    td_encoder_spec_free(&s);
    return st;
}
