/* td_pipeline_open: find what to run (HF directory / hub id, .onnx file, engine
 * file, convert directory), its tokenizer, task, labels and maximum length. */
#define _GNU_SOURCE
#include "pipeline/pipeline_internal.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/str.h"
#include "deploy/tree.h"
#include "engine/engine.h"
#include "export/task.h"
#include "hf/config.h"
#include "hf/max_length.h"
#include "hf/model_dir.h"
#include "hf/tokenizer_config.h"
#include "onnx/onnx_io.h"
#include "opt/optimize.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_ANSWER_LEN 15
#define MAX_LABELS 1000000

void td_pipeline_options_init(td_pipeline_options *o) { memset(o, 0, sizeof *o); }

void td_pipeline_free(td_pipeline *p) {
    if (!p)
        return;
    td_session_free(p->session);
    td_model_free(p->model);
    td_model_file_close(p->file);
    td_tokenizer_free(p->tok);
    for (size_t i = 0; p->labels && i < p->n_labels; i++)
        free(p->labels[i]);
    free(p->labels);
    free(p->description);
    free(p);
}

td_export_task td_pipeline_task(const td_pipeline *p) { return p->task; }
int64_t td_pipeline_model_max_length(const td_pipeline *p) { return p->model_max_length; }
int64_t td_pipeline_max_length(const td_pipeline *p) { return p->max_length; }

td_status td_pipeline_set_max_length(td_ctx *ctx, td_pipeline *p, int64_t n) {
    if (n < 1)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "--max-length %lld: give at least 1 token", (long long)n);
    if (p->model_max_length > 0 && n > p->model_max_length)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "--max-length %lld is above what the model takes (%lld tokens: its position embeddings or "
                       "configured maximum); give at most %lld (long texts run in windows for question-answering "
                       "and token-classification)",
                       (long long)n, (long long)p->model_max_length, (long long)p->model_max_length);
    p->max_length = n;
    return TD_OK;
}
const char *td_pipeline_description(const td_pipeline *p) { return p->description; }
bool td_pipeline_accepts_pairs(const td_pipeline *p) {
    return p->task == TD_TASK_CLASSIFICATION || p->task == TD_TASK_QUESTION_ANSWERING;
}
bool td_pipeline_needs_pairs(const td_pipeline *p) { return p->task == TD_TASK_QUESTION_ANSWERING; }

td_status td_pipeline_ensure_labels(td_ctx *ctx, td_pipeline *p, size_t n) {
    if (p->labels) {
        if (p->n_labels != n)
            return td_fail(ctx, TD_ERR_SHAPE,
                           "the model outputs %zu class scores but its id2label names %zu labels; fix id2label in "
                           "config.json (or the ONNX metadata)",
                           n, p->n_labels);
        return TD_OK;
    }
    if (n == 0 || n > MAX_LABELS)
        return td_fail(ctx, TD_ERR_SHAPE, "the model outputs %zu class scores per row (expected 1 to %d)", n,
                       MAX_LABELS);
    if (!(p->labels = calloc(n, sizeof *p->labels)))
        return td_fail_oom(ctx, n * sizeof *p->labels, "labels");
    p->n_labels = n;
    for (size_t i = 0; i < n; i++)
        if (asprintf(&p->labels[i], "LABEL_%zu", i) < 0) {
            p->labels[i] = NULL;
            return td_fail_oom(ctx, 16, "labels");
        }
    return TD_OK;
}

/* id2label as the exporter writes it into the metadata: {"0": "neg", "1": "pos"}. */
static td_status labels_from_json(td_ctx *ctx, td_pipeline *p, const char *json, const char *where) {
    cJSON *j = cJSON_Parse(json);
    td_status st = TD_OK;
    if (!cJSON_IsObject(j)) {
        st = td_fail(ctx, TD_ERR_FORMAT, "%s: id2label is not a JSON object", where);
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(j);
    if (n == 0 || n > MAX_LABELS) {
        st = td_fail(ctx, TD_ERR_FORMAT, "%s: id2label has %zu entries (expected 1 to %d)", where, n, MAX_LABELS);
        goto out;
    }
    if (!(p->labels = calloc(n, sizeof *p->labels))) {
        st = td_fail_oom(ctx, n * sizeof *p->labels, "labels");
        goto out;
    }
    p->n_labels = n;
    for (const cJSON *e = j->child; e; e = e->next) {
        char *end;
        errno = 0;
        long long id = strtoll(e->string, &end, 10);
        if (errno || *end || end == e->string || id < 0 || (size_t)id >= n || !cJSON_IsString(e) ||
            p->labels[id]) {
            st = td_fail(ctx, TD_ERR_FORMAT,
                         "%s: id2label entry \"%s\" is not a unique class id 0..%zu mapped to a string", where,
                         e->string, n - 1);
            goto out;
        }
        if (!(p->labels[id] = strdup(e->valuestring))) {
            st = td_fail_oom(ctx, strlen(e->valuestring), "labels");
            goto out;
        }
    }
out:
    cJSON_Delete(j);
    return st;
}

static td_status labels_from_config(td_ctx *ctx, td_pipeline *p, const td_hf_config *c) {
    if (!c->has_id2label || c->num_labels < 1)
        return TD_OK;
    size_t n = (size_t)c->num_labels;
    if (!(p->labels = calloc(n, sizeof *p->labels)))
        return td_fail_oom(ctx, n * sizeof *p->labels, "labels");
    p->n_labels = n;
    for (size_t i = 0; i < n; i++) {
        const char *l = td_hf_config_label(c, (int64_t)i);
        if (!l)
            return td_fail(ctx, TD_ERR_FORMAT, "%s: id2label has no entry for class %zu (ids must be 0..%zu)",
                           c->path, i, n - 1);
        if (!(p->labels[i] = strdup(l)))
            return td_fail_oom(ctx, strlen(l), "labels");
    }
    return TD_OK;
}

static const td_value *find_output(const td_model *m, const char *name) {
    for (int i = 0; i < m->graph->n_outputs; i++)
        if (strcmp(m->graph->outputs[i]->name, name) == 0)
            return m->graph->outputs[i];
    return NULL;
}

static bool has_output(const td_model *m, const char *name) { return find_output(m, name) != NULL; }

/* config.architectures -> task, for ONNX files without tdeploy's metadata. */
static td_export_task task_from_config(const td_hf_config *c, bool sentence_transformers) {
    if (sentence_transformers)
        return TD_TASK_EMBEDDING;
    for (size_t i = 0; c && i < c->n_architectures; i++) {
        const char *a = c->architectures[i];
        if (strstr(a, "ForSequenceClassification"))
            return TD_TASK_CLASSIFICATION;
        if (strstr(a, "ForTokenClassification"))
            return TD_TASK_TOKEN_CLASSIFICATION;
        if (strstr(a, "ForQuestionAnswering"))
            return TD_TASK_QUESTION_ANSWERING;
    }
    return TD_TASK_AUTO;
}

/* Last resort: the graph's output names. */
static td_export_task task_from_outputs(const td_model *m) {
    if (has_output(m, "sentence_embedding"))
        return TD_TASK_EMBEDDING;
    if (has_output(m, "start_logits") && has_output(m, "end_logits"))
        return TD_TASK_QUESTION_ANSWERING;
    const td_value *logits = find_output(m, "logits");
    if (logits)
        return logits->type.rank == 3 ? TD_TASK_TOKEN_CLASSIFICATION : TD_TASK_CLASSIFICATION;
    if (has_output(m, "last_hidden_state"))
        return TD_TASK_FEATURES;
    return TD_TASK_AUTO;
}

/* A text-generation model (GPT-2, Llama, ... exported to ONNX) must not be run
 * as an encoder: its logits (batch, sequence, vocabulary) look like token
 * classification. Refused when config.json beside it names a generation model,
 * when the graph takes or returns a KV cache, or when its rank-3 logits have one
 * score per vocabulary entry. */
static td_status refuse_generation(td_ctx *ctx, const td_pipeline *p, const td_model *m, const td_hf_config *cfg,
                                   const char *onnx_path) {
    char why[160];
    if (cfg && td_task_is_generation_model(cfg->model_type, (const char *const *)cfg->architectures,
                                           cfg->n_architectures)) {
        snprintf(why, sizeof why, "config.json: model_type %s%s%s", cfg->model_type ? cfg->model_type : "?",
                 cfg->n_architectures ? ", " : "", cfg->n_architectures ? cfg->architectures[0] : "");
        return td_task_refuse_generation_model(ctx, onnx_path, why);
    }
    for (int k = 0; k < 2; k++) {
        td_value *const *vals = k ? m->graph->outputs : m->graph->inputs;
        int n = k ? m->graph->n_outputs : m->graph->n_inputs;
        for (int i = 0; i < n; i++) {
            const char *name = vals[i]->name;
            if (strncmp(name, "past_key_values", 15) == 0 || strncmp(name, "present", 7) == 0) {
                snprintf(why, sizeof why, "it has a KV cache %s \"%.64s\"", k ? "output" : "input", name);
                return td_task_refuse_generation_model(ctx, onnx_path, why);
            }
        }
    }
    const td_value *logits = find_output(m, "logits");
    size_t vocab = td_tokenizer_vocab_size(p->tok);
    if (!td_model_metadata(m, "task") && logits && logits->type.rank == 3 && !logits->type.dims[2].param &&
        vocab > 0 && logits->type.dims[2].value >= (int64_t)vocab) {
        snprintf(why, sizeof why, "its logits score all %lld tokens of the vocabulary at every position",
                 (long long)logits->type.dims[2].value);
        return td_task_refuse_generation_model(ctx, onnx_path, why);
    }
    return TD_OK;
}

/* The outputs each task reads must exist. */
static td_status check_outputs(td_ctx *ctx, const td_model *m, td_export_task task, const char *what) {
    const char *need[2] = {NULL, NULL};
    switch (task) {
    case TD_TASK_EMBEDDING: need[0] = "sentence_embedding"; break;
    case TD_TASK_FEATURES: need[0] = "last_hidden_state"; break;
    case TD_TASK_CLASSIFICATION:
    case TD_TASK_TOKEN_CLASSIFICATION: need[0] = "logits"; break;
    case TD_TASK_QUESTION_ANSWERING: need[0] = "start_logits", need[1] = "end_logits"; break;
    case TD_TASK_TEXT_GENERATION: need[0] = "logits"; break;
    case TD_TASK_AUTO: return td_fail(ctx, TD_ERR_INTERNAL, "pipeline: task not resolved");
    }
    for (int i = 0; i < 2; i++)
        if (need[i] && !has_output(m, need[i]))
            return td_fail(ctx, TD_ERR_NOT_FOUND,
                           "%s has no output \"%s\", which task %s reads; give the right --task, or export the model "
                           "for that task",
                           what, need[i], td_export_task_name(task));
    return TD_OK;
}

/* Ids of the CLS and unknown tokens: tokenizer_config.json's names, else the usual spellings. */
static void set_special_ids(td_pipeline *p, const td_tokenizer_config *tc) {
    const char *cls[] = {tc && tc->cls_token ? tc->cls_token : "[CLS]", "[CLS]", "<s>"};
    const char *unk[] = {tc && tc->unk_token ? tc->unk_token : "[UNK]", "[UNK]", "<unk>"};
    p->cls_id = p->unk_id = -1;
    for (size_t i = 0; i < 3 && p->cls_id < 0; i++)
        p->cls_id = td_tokenizer_token_to_id(p->tok, cls[i]);
    for (size_t i = 0; i < 3 && p->unk_id < 0; i++)
        p->unk_id = td_tokenizer_token_to_id(p->tok, unk[i]);
}

static td_status load_tokenizer(td_ctx *ctx, td_pipeline *p, const char *dir, const char *what) {
    char *path = NULL;
    TD_TRY(td_path_join(ctx, dir, "tokenizer.json", false, &path));
    bool ok = td_is_file(path);
    free(path);
    if (!ok)
        return td_fail(ctx, TD_ERR_NOT_FOUND,
                       "no tokenizer.json in %s (needed to run %s on text); pass --tokenizer DIR with the model's "
                       "tokenizer.json",
                       dir, what);
    TD_TRY(td_tokenizer_load(ctx, dir, &p->tok));
    return TD_OK;
}

/* (a) an HF model directory or cached hub id: export and optimize in memory, as convert does, so `run` on a
 * model id gets the same fused graph (and speed) as `run` on convert's model-optimized.onnx, and the session's
 * fp16/bf16 weight packing finds the MatMul weights as constants (the raw export feeds them through Transpose
 * nodes, which the optimizer folds). */
static td_status open_hf(td_ctx *ctx, td_pipeline *p, const td_pipeline_options *o) {
    if (o->precision == TD_PRECISION_INT8)
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "--precision int8 needs a `tdeploy convert --precision int8` output (the int8 graph is built "
                       "at conversion); %s is a Hugging Face model: tdeploy convert -m %s --precision int8",
                       o->model, o->model);
    td_model_dir *md = NULL;
    td_status st = td_model_dir_open(ctx, o->model, &md);
    if (st != TD_OK)
        return st;
    if (o->tokenizer_dir) {
        if ((st = load_tokenizer(ctx, p, o->tokenizer_dir, o->model)) != TD_OK)
            goto out;
    } else if (!md->tokenizer_json) {
        st = td_fail(ctx, TD_ERR_NOT_FOUND,
                     "%s has no tokenizer.json (needed to run the model on text); pass --tokenizer DIR with the "
                     "model's tokenizer.json",
                     md->path);
        goto out;
    } else if ((st = td_tokenizer_load(ctx, md->path, &p->tok)) != TD_OK) {
        goto out;
    }
    td_export_options eo = {.model_dir = md->path, .task = o->task};
    td_export_summary sum;
    if ((st = td_export_build(ctx, &eo, &p->model, &sum)) != TD_OK)
        goto out;
    td_opt_options oo;
    td_opt_options_default(&oo);
    oo.target = TD_OPT_TARGET_FUSED;
    td_opt_report rep;
    if ((st = td_optimize(ctx, p->model, &oo, &rep)) != TD_OK) {
        td_wrap(ctx, "optimizing the exported graph of %s", md->path);
        goto out;
    }
    p->task = sum.task;
    p->max_length = md->max_seq_length;
    p->multi_label = md->config->problem_type && !strcmp(md->config->problem_type, "multi_label_classification");
    if ((p->task == TD_TASK_CLASSIFICATION || p->task == TD_TASK_TOKEN_CLASSIFICATION) &&
        (st = labels_from_config(ctx, p, md->config)) != TD_OK)
        goto out;
    set_special_ids(p, md->tokenizer_config);
    if (asprintf(&p->description, "%s (Hugging Face model, exported and optimized in memory)", md->path) < 0) {
        p->description = NULL;
        st = td_fail_oom(ctx, 64, "description");
    }
out:
    td_model_dir_free(md);
    return st;
}

/* (b)/(c) an ONNX file or an engine, already loaded (p->model or p->file), with its tokenizer files in tok_dir:
 * task, labels, maximum length from the graph's metadata and the files beside the tokenizer. */
static td_status describe_graph(td_ctx *ctx, td_pipeline *p, const td_pipeline_options *o, const char *onnx_path,
                                const char *tok_dir) {
    td_hf_config *cfg = NULL;
    td_tokenizer_config *tc = NULL;
    char *path = NULL;
    td_status st;
    if ((st = load_tokenizer(ctx, p, tok_dir, onnx_path)) != TD_OK)
        goto out;
    /* config.json, tokenizer_config.json, modules.json beside the tokenizer are optional helpers */
    if ((st = td_path_join(ctx, tok_dir, "config.json", false, &path)) != TD_OK)
        goto out;
    if (td_is_file(path) && (st = td_hf_config_load(ctx, path, &cfg)) != TD_OK)
        goto out;
    free(path);
    path = NULL;
    if ((st = td_path_join(ctx, tok_dir, "tokenizer_config.json", false, &path)) != TD_OK)
        goto out;
    if (td_is_file(path) && (st = td_tokenizer_config_load(ctx, path, &tc)) != TD_OK)
        goto out;
    free(path);
    path = NULL;
    if ((st = td_path_join(ctx, tok_dir, "modules.json", false, &path)) != TD_OK)
        goto out;
    bool sentence_transformers = td_is_file(path);

    const td_model *m = p->model ? p->model : td_model_file_model(p->file);
    if ((st = refuse_generation(ctx, p, m, cfg, onnx_path)) != TD_OK)
        goto out;
    const char *meta_task = td_model_metadata(m, "task");
    p->task = o->task;
    if (p->task == TD_TASK_AUTO && meta_task && !td_export_task_parse(meta_task, &p->task)) {
        st = td_fail(ctx, TD_ERR_FORMAT, "%s: metadata task \"%s\" is not a task tdeploy knows; pass --task",
                     onnx_path, meta_task);
        goto out;
    }
    if (p->task == TD_TASK_AUTO)
        p->task = task_from_config(cfg, sentence_transformers && has_output(m, "sentence_embedding"));
    if (p->task == TD_TASK_AUTO)
        p->task = task_from_outputs(m);
    if (p->task == TD_TASK_AUTO) {
        st = td_fail(ctx, TD_ERR_UNSUPPORTED,
                     "%s: cannot tell the task (no \"task\" metadata, no config.json architectures, no known output "
                     "name); pass --task",
                     onnx_path);
        goto out;
    }
    if ((st = check_outputs(ctx, m, p->task, onnx_path)) != TD_OK)
        goto out;

    const char *meta_labels = td_model_metadata(m, "id2label");
    if (p->task == TD_TASK_CLASSIFICATION || p->task == TD_TASK_TOKEN_CLASSIFICATION) {
        if (meta_labels)
            st = labels_from_json(ctx, p, meta_labels, onnx_path);
        else if (cfg)
            st = labels_from_config(ctx, p, cfg);
        if (st != TD_OK)
            goto out;
    }
    p->multi_label = cfg && cfg->problem_type && !strcmp(cfg->problem_type, "multi_label_classification");
    const char *meta_len = td_model_metadata(m, "max_seq_length");
    if (meta_len) {
        char *end;
        errno = 0;
        long long v = strtoll(meta_len, &end, 10);
        if (errno || *end || v < 1) {
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: metadata max_seq_length \"%s\" is not a positive integer",
                         onnx_path, meta_len);
            goto out;
        }
        p->max_length = v;
    } else if ((st = td_hf_max_length_of_dir(ctx, tok_dir, &p->max_length, NULL)) != TD_OK) {
        goto out; /* no "max_seq_length" metadata: the files beside the tokenizer, by the one rule */
    }
    set_special_ids(p, tc);
    if (asprintf(&p->description, "%s (%s, tokenizer from %s)", onnx_path, p->file ? "engine" : "ONNX file",
                 tok_dir) < 0) {
        p->description = NULL;
        st = td_fail_oom(ctx, 64, "description");
    }
out:
    free(path);
    td_hf_config_free(cfg);
    td_tokenizer_config_free(tc);
    return st;
}

static bool has_tokenizer_json(const char *dir) {
    char *path = NULL;
    td_ctx *quiet = td_ctx_new(); /* only asks whether the file is there */
    bool ok = quiet && td_path_join(quiet, dir, "tokenizer.json", false, &path) == TD_OK && td_is_file(path);
    free(path);
    td_ctx_free(quiet);
    return ok;
}

/* (d) an engine from `tdeploy build`: its tokenizer and config from --tokenizer, else beside the engine (a
 * `tdeploy convert` folder), else the model files bundled in the engine, extracted into *tmp_dir (a fresh
 * temporary folder the caller removes). Rows are cut to the longest sequence of the engine's profiles. */
static td_status open_engine(td_ctx *ctx, td_pipeline *p, const td_pipeline_options *o, const char *path,
                             const char *dir, char **tmp_dir) {
    TD_TRY(td_model_file_open(ctx, path, &p->file));
    const td_engine_info *ei = td_model_file_engine(p->file);
    if (!ei)
        return td_fail(ctx, TD_ERR_FORMAT, "%s is not a tdeploy engine file", path);
    const char *tok_dir = o->tokenizer_dir;
    if (!tok_dir && has_tokenizer_json(dir)) {
        tok_dir = dir;
    } else if (!tok_dir) {
        const char *tmp = getenv("TMPDIR");
        if (asprintf(tmp_dir, "%s/tdeploy-engine-files-XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0) {
            *tmp_dir = NULL;
            return td_fail_oom(ctx, 64, "a path");
        }
        if (!mkdtemp(*tmp_dir)) {
            td_status st = td_fail(ctx, TD_ERR_IO, "cannot create a temporary folder %s for the engine's tokenizer "
                                   "files: %s", *tmp_dir, strerror(errno));
            free(*tmp_dir);
            *tmp_dir = NULL;
            return st;
        }
        td_status st = td_model_file_extract_files(ctx, p->file, *tmp_dir);
        if (st == TD_ERR_NOT_FOUND)
            return td_fail(ctx, TD_ERR_NOT_FOUND,
                           "%s holds no tokenizer (it was built from an ONNX file) and there is no tokenizer.json "
                           "beside it: pass --tokenizer DIR with the model's tokenizer.json", path);
        if (st != TD_OK)
            return td_wrap(ctx, "%s: reading the model files bundled in the engine", path);
        tok_dir = *tmp_dir;
    }
    TD_TRY(describe_graph(ctx, p, o, path, tok_dir));
    if (*tmp_dir) { /* the folder goes away once the tokenizer is loaded: name where the files came from */
        free(p->description);
        if (asprintf(&p->description, "%s (engine, with the tokenizer bundled in it)", path) < 0) {
            p->description = NULL;
            return td_fail_oom(ctx, 64, "description");
        }
    }
    uint32_t max_s = 0;
    for (uint32_t i = 0; i < ei->n_profiles; i++)
        if (ei->profiles[i].max_s > max_s)
            max_s = ei->profiles[i].max_s;
    if (max_s && (p->max_length <= 0 || p->max_length > (int64_t)max_s))
        p->max_length = max_s; /* longer rows would be refused by every profile at run time */
    return TD_OK;
}

static bool is_engine_file(const char *path) {
    unsigned char magic[8];
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    bool yes = fread(magic, 1, sizeof magic, f) == sizeof magic && td_engine_sniff(magic, sizeof magic);
    fclose(f);
    return yes;
}

/* The graph inputs must be the tokenizer's: input_ids (+ attention_mask, token_type_ids). */
static td_status check_inputs(td_ctx *ctx, td_pipeline *p) {
    int n = td_session_input_count(p->session);
    bool have_ids = false;
    for (int i = 0; i < n; i++) {
        const char *name = td_session_input_name(p->session, i);
        int32_t dt;
        int rank;
        const int64_t *dims;
        const char *const *params;
        td_session_input_info(p->session, i, &dt, &rank, &dims, &params);
        if (strcmp(name, "input_ids") && strcmp(name, "attention_mask") && strcmp(name, "token_type_ids"))
            return td_fail(ctx, TD_ERR_UNSUPPORTED,
                           "model input \"%s\" is not one the tokenizer produces (input_ids, attention_mask, "
                           "token_type_ids)",
                           name);
        if ((dt != TD_DTYPE_INT64 && dt != TD_DTYPE_INT32) || rank != 2)
            return td_fail(ctx, TD_ERR_UNSUPPORTED,
                           "model input \"%s\" must be a rank-2 int64 or int32 tensor (batch, sequence); it is "
                           "rank %d of ONNX dtype %d",
                           name, rank, (int)dt);
        if (!strcmp(name, "input_ids")) {
            have_ids = true;
            p->ids_dtype = dt;
        }
        p->has_mask |= !strcmp(name, "attention_mask");
        p->has_token_types |= !strcmp(name, "token_type_ids");
    }
    if (!have_ids)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "the model has no \"input_ids\" input; it cannot be run on text");
    return TD_OK;
}

td_status td_pipeline_open(td_ctx *ctx, const td_pipeline_options *o, td_pipeline **out) {
    *out = NULL;
    if (!o->model || !*o->model)
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "run: no model given");
    td_pipeline *p = calloc(1, sizeof *p);
    if (!p)
        return td_fail_oom(ctx, sizeof *p, "a pipeline");
    p->top_k = o->top_k ? o->top_k : 1;
    p->max_answer_len = o->max_answer_len ? o->max_answer_len : DEFAULT_MAX_ANSWER_LEN;
    p->keep_hidden = o->keep_hidden;
    p->ids_dtype = TD_DTYPE_INT64;
    td_status st = TD_OK;
    char *onnx = NULL, *dir = NULL, *tmp_dir = NULL;
    bool engine = false, want_cuda = o->backend && strcmp(o->backend, "cuda") == 0;
    if (td_is_file(o->model)) {
        engine = is_engine_file(o->model);
        if (!engine && !td_str_ends_with(o->model, ".onnx")) {
            st = td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                         "%s is a file but neither an .onnx model nor a tdeploy engine; give an .onnx file, an "
                         ".engine file, a model directory or a hub id",
                         o->model);
            goto out;
        }
        if (!(onnx = strdup(o->model)) || !(dir = td_path_dirname(o->model))) {
            st = td_fail_oom(ctx, strlen(o->model), "a path");
            goto out;
        }
    } else if (td_is_dir(o->model)) {
        /* a `tdeploy convert` folder: the optimized graph when there is one; its engine for --device cuda, or
         * when the folder holds only the engine */
        static const char *const cpu_order[] = {"model-optimized.onnx", "model.onnx", "model.engine"};
        static const char *const cuda_order[] = {"model.engine", "model-optimized.onnx", "model.onnx"};
        const char *const *names = want_cuda ? cuda_order : cpu_order;
        for (size_t i = 0; i < 3 && !onnx; i++) {
            char *cand = NULL;
            if ((st = td_path_join(ctx, o->model, names[i], false, &cand)) != TD_OK)
                goto out;
            if (td_is_file(cand))
                onnx = cand;
            else
                free(cand);
        }
        engine = onnx && is_engine_file(onnx);
        if (onnx && !(dir = strdup(o->model))) {
            st = td_fail_oom(ctx, strlen(o->model), "a path");
            goto out;
        }
    }
    if (engine) {
        st = open_engine(ctx, p, o, onnx, dir, &tmp_dir);
    } else if (onnx) {
        if ((st = td_onnx_load(ctx, onnx, &p->model)) == TD_OK)
            st = describe_graph(ctx, p, o, onnx, o->tokenizer_dir ? o->tokenizer_dir : dir);
    } else {
        st = open_hf(ctx, p, o);
    }
    if (st != TD_OK)
        goto out;
    td_session_options so;
    td_session_options_init(&so);
    so.threads = o->threads;
    so.precision = o->precision;
    so.backend = o->backend;
    if (p->file)
        st = td_session_create_shared(ctx, p->file, &so, &p->session);
    else
        st = td_session_create_model(ctx, p->model, &so, &p->session);
    if (st != TD_OK || (st = check_inputs(ctx, p)) != TD_OK)
        goto out;
    p->model_max_length = p->max_length;
    p->stride = o->stride;
    if (o->max_length > 0 && (st = td_pipeline_set_max_length(ctx, p, o->max_length)) != TD_OK)
        goto out;
    td_debug("run: %s, task %s, max length %lld", p->description, td_export_task_name(p->task),
           (long long)p->max_length);
    *out = p;
    p = NULL;
out:
    if (tmp_dir) { /* the tokenizer is loaded: the extracted files are no longer needed */
        td_ctx *quiet = td_ctx_new(); /* a cleanup failure must not replace the real error */
        if (quiet)
            td_remove_tree(quiet, tmp_dir);
        td_ctx_free(quiet);
        free(tmp_dir);
    }
    free(onnx);
    free(dir);
    td_pipeline_free(p);
    return st;
}
