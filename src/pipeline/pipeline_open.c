/* td_pipeline_open: find what to run (HF directory / hub id, .onnx file, engine
 * directory), its tokenizer, task, labels and maximum length. */
#define _GNU_SOURCE
#include "pipeline/pipeline_internal.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "core/log.h"
#include "hf/config.h"
#include "hf/model_dir.h"
#include "hf/tokenizer_config.h"
#include "onnx/onnx_io.h"

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
    td_tokenizer_free(p->tok);
    for (size_t i = 0; p->labels && i < p->n_labels; i++)
        free(p->labels[i]);
    free(p->labels);
    free(p->description);
    free(p);
}

td_export_task td_pipeline_task(const td_pipeline *p) { return p->task; }
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

/* Longest row for an ONNX file without "max_seq_length" metadata: the model's
 * positions (RoBERTa-like models lose pad_token_id + 1 of them), capped by
 * sentence_bert_config.json's max_seq_length, else tokenizer_config.json's
 * model_max_length, as td_model_dir computes it for HF directories. */
static int64_t max_length_from_files(const td_hf_config *c, int64_t st_max, const td_tokenizer_config *tc) {
    int64_t limit = 0;
    if (c && td_hf_family_is_encoder(c->family)) {
        limit = c->max_position_embeddings;
        if (c->family == TD_HF_ROBERTA || c->family == TD_HF_XLM_ROBERTA)
            limit -= c->pad_token_id + 1;
        if (limit < 1)
            limit = 0;
    }
    int64_t cap = -1;
    if (st_max > 0)
        cap = st_max;
    else if (tc && tc->model_max_length > 0)
        cap = tc->model_max_length;
    if (cap > 0 && (limit == 0 || cap < limit))
        return cap;
    return limit;
}

/* sentence_bert_config.json's max_seq_length (0 when the file or the key is
 * absent). Read directly: an engine directory has the file but not the module
 * folders modules.json points to. */
static td_status st_max_seq_length(td_ctx *ctx, const char *dir, int64_t *out) {
    *out = 0;
    char *path = NULL, *text = NULL;
    size_t len = 0;
    cJSON *j = NULL;
    td_status st = td_path_join(ctx, dir, "sentence_bert_config.json", false, &path);
    if (st != TD_OK || !td_is_file(path))
        goto out;
    if ((st = td_read_file(ctx, path, 1 << 20, &text, &len)) != TD_OK)
        goto out;
    j = cJSON_ParseWithLength(text, len);
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, "max_seq_length") : NULL;
    if (!j || !cJSON_IsObject(j)) {
        st = td_fail(ctx, TD_ERR_FORMAT, "%s is not a JSON object", path);
    } else if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > (double)(1 << 24) ||
            v->valuedouble != (double)(int64_t)v->valuedouble)
            st = td_fail(ctx, TD_ERR_FORMAT, "%s: max_seq_length must be a positive integer", path);
        else
            *out = (int64_t)v->valuedouble;
    }
out:
    cJSON_Delete(j);
    free(text);
    free(path);
    return st;
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

/* (a) an HF model directory or cached hub id: export in memory. */
static td_status open_hf(td_ctx *ctx, td_pipeline *p, const td_pipeline_options *o) {
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
    p->task = sum.task;
    p->max_length = md->max_seq_length;
    p->multi_label = md->config->problem_type && !strcmp(md->config->problem_type, "multi_label_classification");
    if ((p->task == TD_TASK_CLASSIFICATION || p->task == TD_TASK_TOKEN_CLASSIFICATION) &&
        (st = labels_from_config(ctx, p, md->config)) != TD_OK)
        goto out;
    set_special_ids(p, md->tokenizer_config);
    if (asprintf(&p->description, "%s (Hugging Face model, exported in memory)", md->path) < 0) {
        p->description = NULL;
        st = td_fail_oom(ctx, 64, "description");
    }
out:
    td_model_dir_free(md);
    return st;
}

/* (b)/(c) an ONNX file with its tokenizer files in tok_dir. */
static td_status open_onnx(td_ctx *ctx, td_pipeline *p, const td_pipeline_options *o, const char *onnx_path,
                           const char *tok_dir) {
    td_hf_config *cfg = NULL;
    td_tokenizer_config *tc = NULL;
    int64_t st_max = 0;
    char *path = NULL;
    td_status st = td_onnx_load(ctx, onnx_path, &p->model);
    if (st != TD_OK)
        return st;
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
    if ((st = st_max_seq_length(ctx, tok_dir, &st_max)) != TD_OK)
        goto out;
    free(path);
    path = NULL;
    if ((st = td_path_join(ctx, tok_dir, "modules.json", false, &path)) != TD_OK)
        goto out;
    bool sentence_transformers = td_is_file(path);

    const td_model *m = p->model;
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
    } else {
        p->max_length = max_length_from_files(cfg, st_max, tc);
    }
    set_special_ids(p, tc);
    if (asprintf(&p->description, "%s (ONNX file, tokenizer from %s)", onnx_path, tok_dir) < 0) {
        p->description = NULL;
        st = td_fail_oom(ctx, 64, "description");
    }
out:
    free(path);
    td_hf_config_free(cfg);
    td_tokenizer_config_free(tc);
    return st;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
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
    char *onnx = NULL, *dir = NULL;
    if (td_is_file(o->model)) {
        if (!ends_with(o->model, ".onnx")) {
            st = td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                         "%s is a file but not an .onnx model; give an .onnx file, a model directory or a hub id",
                         o->model);
            goto out;
        }
        if (!(onnx = strdup(o->model)) || !(dir = td_path_dirname(o->model))) {
            st = td_fail_oom(ctx, strlen(o->model), "a path");
            goto out;
        }
    } else if (td_is_dir(o->model)) {
        /* an engine directory: the optimized graph when there is one */
        static const char *const names[] = {"model-optimized.onnx", "model.onnx"};
        for (size_t i = 0; i < 2 && !onnx; i++) {
            char *cand = NULL;
            if ((st = td_path_join(ctx, o->model, names[i], false, &cand)) != TD_OK)
                goto out;
            if (td_is_file(cand))
                onnx = cand;
            else
                free(cand);
        }
        if (onnx && !(dir = strdup(o->model))) {
            st = td_fail_oom(ctx, strlen(o->model), "a path");
            goto out;
        }
    }
    if (onnx)
        st = open_onnx(ctx, p, o, onnx, o->tokenizer_dir ? o->tokenizer_dir : dir);
    else
        st = open_hf(ctx, p, o);
    if (st != TD_OK)
        goto out;
    td_session_options so;
    td_session_options_init(&so);
    so.threads = o->threads;
    if ((st = td_session_create_model(ctx, p->model, &so, &p->session)) != TD_OK ||
        (st = check_inputs(ctx, p)) != TD_OK)
        goto out;
    if (o->max_length > 0)
        p->max_length = o->max_length;
    td_debug("run: %s, task %s, max length %lld", p->description, td_export_task_name(p->task),
           (long long)p->max_length);
    *out = p;
    p = NULL;
out:
    free(onnx);
    free(dir);
    td_pipeline_free(p);
    return st;
}
