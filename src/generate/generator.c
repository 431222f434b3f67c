/* Opening a decoder for generation: the graph (exported in memory or loaded),
 * its cache inputs/outputs, the tokenizer and the generation defaults (eos, pad,
 * context) from the ONNX metadata or the HF files beside the model. */
#define _GNU_SOURCE
#include "generate/gen_internal.h"

#include "core/fs.h"
#include "core/str.h"
#include "export/export.h"
#include "gguf/gguf_tokenizer.h"
#include "hf/config.h"
#include "hf/hub.h"
#include "hf/hub_cache.h"
#include "hf/json_util.h"
#include "hf/model_dir.h"
#include "onnx/onnx_io.h"
#include "opt/optimize.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void td_generator_free(td_generator *g) {
    if (!g)
        return;
    td_session_free(g->s);
    td_model_free(g->model);
    td_tokenizer_free(g->tok);
    free(g->caches);
    free(g->chat_template);
    free(g->bos_token);
    free(g->eos_token);
    free(g);
}

const td_tokenizer *td_generator_tokenizer(const td_generator *g) { return g->tok; }
int64_t td_generator_vocab(const td_generator *g) { return g->vocab; }
int64_t td_generator_context(const td_generator *g) { return g->context; }

/* eos_token_id as an int or a list of ints (config.json, generation_config.json, ONNX metadata). */
static void eos_from_json(const cJSON *v, td_generator *g) {
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < (double)INT64_MAX) {
        g->eos[0] = (int64_t)v->valuedouble;
        g->n_eos = 1;
    } else if (cJSON_IsArray(v)) {
        size_t n = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble < (double)INT64_MAX && n < TD_GEN_MAX_EOS)
                g->eos[n++] = (int64_t)e->valuedouble;
        }
        g->n_eos = n;
    }
}

/* generation_config.json (what transformers' generate() reads): eos and pad ids override config.json's. */
static td_status read_generation_config(td_ctx *ctx, const char *dir, td_generator *g) {
    char *path = NULL, *text = NULL;
    size_t len = 0;
    cJSON *j = NULL;
    td_status st = td_path_join(ctx, dir, "generation_config.json", false, &path);
    if (st != TD_OK || !td_is_file(path))
        goto out;
    if ((st = td_read_file(ctx, path, TD_HF_JSON_MAX_BYTES, &text, &len)) != TD_OK)
        goto out;
    if ((st = td_hf_json_parse(ctx, text, len, path, &j)) != TD_OK)
        goto out;
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(j, "eos_token_id");
    if (eos && !cJSON_IsNull(eos))
        eos_from_json(eos, g);
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(j, "pad_token_id");
    if (cJSON_IsNumber(pad) && pad->valuedouble >= 0)
        g->pad = (int64_t)pad->valuedouble;
out:
    cJSON_Delete(j);
    free(text);
    free(path);
    return st;
}

/* config.json beside an .onnx file or in the model directory. */
static void defaults_from_config(const td_hf_config *c, td_generator *g) {
    g->n_eos = c->n_eos_token_ids < TD_GEN_MAX_EOS ? c->n_eos_token_ids : TD_GEN_MAX_EOS;
    memcpy(g->eos, c->eos_token_ids, g->n_eos * sizeof g->eos[0]);
    g->pad = c->pad_token_id >= 0 ? c->pad_token_id : (g->n_eos ? g->eos[0] : 0);
    g->context = c->max_position_embeddings;
}

static void defaults_from_metadata(const td_model *m, td_generator *g) {
    const char *v = td_model_metadata(m, "max_position_embeddings");
    if (v)
        g->context = strtoll(v, NULL, 10);
    if ((v = td_model_metadata(m, "eos_token_id"))) {
        cJSON *j = cJSON_Parse(v);
        eos_from_json(j, g);
        cJSON_Delete(j);
    }
    if ((v = td_model_metadata(m, "pad_token_id")))
        g->pad = strtoll(v, NULL, 10);
    else if (g->n_eos)
        g->pad = g->eos[0];
}

static td_status load_tokenizer_from(td_ctx *ctx, const char *dir, td_generator *g, bool required) {
    char *path = NULL;
    TD_TRY(td_path_join(ctx, dir, "tokenizer.json", false, &path));
    bool ok = td_is_file(path);
    free(path);
    if (!ok)
        return required ? td_fail(ctx, TD_ERR_NOT_FOUND, "no tokenizer.json in %s; pass --tokenizer DIR", dir)
                        : TD_OK;
    return td_tokenizer_load(ctx, dir, &g->tok);
}

/* Name the cache inputs/outputs and check the graph is a decoder in the Optimum layout. */
static td_status bind_graph(td_ctx *ctx, td_generator *g, const char *what) {
    td_session *s = g->s;
    int n_in = td_session_input_count(s);
    if (td_session_input_index(s, "input_ids") < 0 || td_session_input_index(s, "attention_mask") < 0 ||
        (g->i_logits = td_session_output_index(s, "logits")) < 0)
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "%s is not a decoder with a KV cache: it needs inputs input_ids, attention_mask and "
                       "past_key_values.N.key/value and outputs logits and present.N.key/value (export it with "
                       "--task text-generation)",
                       what);
    int32_t dt;
    int rank;
    const int64_t *dims;
    const char *const *params;
    td_session_input_info(s, td_session_input_index(s, "input_ids"), &dt, &rank, &dims, &params);
    if (dt != TD_DTYPE_INT64 && dt != TD_DTYPE_INT32)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: input_ids must be int64 or int32", what);
    g->int32 = dt == TD_DTYPE_INT32;
    g->has_pos = td_session_input_index(s, "position_ids") >= 0;
    g->caches = calloc((size_t)n_in, sizeof *g->caches);
    if (!g->caches)
        return td_fail_oom(ctx, (size_t)n_in * sizeof *g->caches, "cache table");
    for (int i = 0; i < n_in; i++) {
        const char *name = td_session_input_name(s, i);
        if (strncmp(name, "past_key_values.", 16) != 0)
            continue;
        td_gen_cache *c = &g->caches[g->n_caches];
        c->input = name;
        char present[256];
        snprintf(present, sizeof present, "present.%s", name + 16);
        c->output = td_session_output_index(s, present);
        td_session_input_info(s, i, &dt, &rank, &dims, &params);
        if (c->output < 0 || rank != 4 || dims[1] < 1 || dims[3] < 1 || dt != TD_DTYPE_FLOAT32)
            return td_fail(ctx, TD_ERR_UNSUPPORTED,
                           "%s: cache input %s must be float32 (batch, kv_heads, past, head_dim) with fixed "
                           "kv_heads and head_dim and a matching output %s",
                           what, name, present);
        c->kv_heads = dims[1];
        c->head_dim = dims[3];
        g->n_caches++;
    }
    if (g->n_caches == 0)
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s is a text-generation model without a KV cache (no "
                       "past_key_values.N inputs): generating with it is not supported (yet), it would recompute the "
                       "whole text every token; export the model with --task text-generation", what);
    return TD_OK;
}

/* The one .gguf file in dir (malloc'd), or NULL when there is none or several. */
static char *only_gguf_in(const char *dir) {
    td_ctx quiet = {0};
    char *found = NULL;
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len > 5 && !strcmp(e->d_name + len - 5, ".gguf") && n++ == 0)
            td_path_join(&quiet, dir, e->d_name, true, &found);
    }
    if (d)
        closedir(d);
    if (n != 1) {
        free(found);
        found = NULL;
    }
    return found;
}

char *td_generator_find_gguf(const char *model) {
    if (td_is_file(model))
        return NULL;
    td_ctx quiet = {0};
    char *cfg = NULL, *found = NULL;
    if (td_is_dir(model)) {
        /* a model directory with config.json is an HF model, whatever else it holds */
        if (td_path_join(&quiet, model, "config.json", false, &cfg) == TD_OK && !td_is_file(cfg))
            found = only_gguf_in(model);
        free(cfg);
        return found;
    }
    /* org/name in the HF cache: the snapshot refs/main names (setup-smollm2.sh lays one out like that); the
     * cache's usable-snapshot check wants config.json + safetensors, which a GGUF repository does not have */
    char *cache = NULL, *repo = NULL, *commit = NULL, *snap = NULL;
    if (td_hub_check_repo_id(&quiet, model) == TD_OK && td_hub_cache_dir(&quiet, NULL, &cache) == TD_OK &&
        (repo = td_hub_repo_dir(cache, model)) && (commit = td_hub_cached_commit(repo, "main")) &&
        asprintf(&snap, "%s/snapshots/%s", repo, commit) > 0 && td_is_dir(snap))
        found = only_gguf_in(snap);
    free(cache);
    free(repo);
    free(commit);
    free(snap);
    return found;
}

td_status td_generator_open(td_ctx *ctx, const char *model, const td_generator_options *opt, td_generator **out) {
    *out = NULL;
    char *gguf_in_dir = td_generator_find_gguf(model);
    if (gguf_in_dir) {
        td_status st = td_generator_open(ctx, gguf_in_dir, opt, out);
        free(gguf_in_dir);
        return st;
    }
    /* (fp32 is what an HF model or .onnx file computes anyway; int8 activations exist only for a GGUF's blocks) */
    if (opt && opt->gguf_int8_activations && !(td_is_file(model) && td_str_ends_with(model, ".gguf")))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT,
                       "%s: --precision int8 applies to a .gguf file (its quantized blocks with int8 activations); "
                       "quantize an HF model with `tdeploy convert --task text-generation --precision int8` or "
                       "`tdeploy optimize --precision int8`",
                       model);
    td_generator *g = calloc(1, sizeof *g);
    if (!g)
        return td_fail_oom(ctx, sizeof *g, "a generator");
    td_status st = TD_OK;
    td_model_dir *md = NULL;
    char *dir = NULL;
    if (td_is_file(model) && td_str_ends_with(model, ".onnx")) {
        if ((st = td_onnx_load(ctx, model, &g->model)) != TD_OK)
            goto out;
        char *copy = strdup(model);
        dir = copy ? strdup(dirname(copy)) : NULL;
        free(copy);
        if (!dir) {
            st = td_fail_oom(ctx, strlen(model), "a path");
            goto out;
        }
        const char *files = opt && opt->tokenizer_dir ? opt->tokenizer_dir : dir;
        char *cfg_path = NULL;
        if ((st = td_path_join(ctx, files, "config.json", false, &cfg_path)) != TD_OK)
            goto out;
        td_hf_config *cfg = NULL;
        if (td_is_file(cfg_path) && (st = td_hf_config_load(ctx, cfg_path, &cfg)) == TD_OK)
            defaults_from_config(cfg, g);
        td_hf_config_free(cfg);
        free(cfg_path);
        if (st != TD_OK)
            goto out;
        defaults_from_metadata(g->model, g);
        if ((st = read_generation_config(ctx, files, g)) != TD_OK ||
            (st = load_tokenizer_from(ctx, files, g, opt && opt->tokenizer_dir)) != TD_OK ||
            (st = td_gen_chat_from_dir(ctx, g, files)) != TD_OK)
            goto out;
    } else if (td_is_file(model) && td_str_ends_with(model, ".gguf")) {
        /* llama.cpp file: exported in memory (blocks kept quantized unless gguf_dequantize), tokenizer from its
         * metadata */
        td_export_options eo = {.model_dir = model, .task = TD_TASK_TEXT_GENERATION,
                                .gguf_dequantize = opt && opt->gguf_dequantize,
                                .gguf_int8_activations = opt && opt->gguf_int8_activations};
        td_export_summary sum;
        if ((st = td_export_build(ctx, &eo, &g->model, &sum)) != TD_OK)
            goto out;
        defaults_from_metadata(g->model, g);
        if (opt && opt->tokenizer_dir) {
            st = load_tokenizer_from(ctx, opt->tokenizer_dir, g, true);
        } else {
            td_gguf *f = NULL;
            if ((st = td_gguf_open(ctx, model, &f)) == TD_OK)
                st = td_gguf_tokenizer_load(ctx, f, &g->tok);
            if (st == TD_OK)
                st = td_gen_chat_from_gguf(ctx, g, f);
            td_gguf_free(f);
        }
        if (st == TD_OK && opt && opt->tokenizer_dir)
            st = td_gen_chat_from_dir(ctx, g, opt->tokenizer_dir);
        if (st != TD_OK)
            goto out;
    } else {
        if ((st = td_model_dir_open(ctx, model, &md)) != TD_OK)
            goto out;
        td_export_options eo = {.model_dir = md->path, .task = TD_TASK_TEXT_GENERATION};
        td_export_summary sum;
        if ((st = td_export_build(ctx, &eo, &g->model, &sum)) != TD_OK)
            goto out;
        defaults_from_config(md->config, g);
        const char *files = opt && opt->tokenizer_dir ? opt->tokenizer_dir : md->path;
        if ((st = read_generation_config(ctx, md->path, g)) != TD_OK ||
            (st = load_tokenizer_from(ctx, files, g, opt && opt->tokenizer_dir)) != TD_OK ||
            (st = td_gen_chat_from_dir(ctx, g, files)) != TD_OK)
            goto out;
    }
    /* Optimize once with the optimizer's default (fused) pipeline: fold constants (above all the exporter's
     * Transpose of every weight) and fuse what the runtime has kernels for (RMSNorm, residual + norm, SiLU MLP,
     * rotary embeddings, attention with its cache -> GroupQueryAttention / MultiHeadAttention); kv_inplace.c then
     * binds the fused attention (or, where attention stayed standard, the Concat appends) to the request's cache
     * in place. */
    td_opt_options oo;
    td_opt_options_default(&oo);
    oo.fold_max_elements = TD_OPT_FOLD_ALL_DECODER;
    td_opt_report rep;
    if (!(opt && opt->keep_graph) && (st = td_optimize(ctx, g->model, &oo, &rep)) != TD_OK)
        goto out;
    /* then the in-place KV cache: decode steps of fixed shapes that read and write the request's cache */
    if (!(opt && opt->keep_graph) && (st = td_gen_kv_inplace(ctx, g->model, &g->kv)) != TD_OK)
        goto out;
    if (opt && opt->keep_graph)
        g->kv.how = "copied per step: the graph is run as given (not rewritten)";
    if (!(opt && (opt->keep_graph || opt->all_logits)) && (st = td_gen_last_logits(ctx, g->model, &g->last_logits)) != TD_OK)
        goto out;
    td_session_options so;
    td_session_options_init(&so);
    so.threads = opt ? opt->threads : 0;
    if (opt && opt->backend)
        so.backend = opt->backend;
    if (opt && opt->precision)
        so.precision = opt->precision;
    if ((st = td_session_create_model(ctx, g->model, &so, &g->s)) != TD_OK)
        goto out;
    if ((st = bind_graph(ctx, g, model)) != TD_OK)
        goto out;
    /* vocabulary: the logits width is fixed in the graph's output type */
    const td_value *lv = NULL;
    for (int i = 0; i < g->model->graph->n_outputs; i++)
        if (!strcmp(g->model->graph->outputs[i]->name, "logits"))
            lv = g->model->graph->outputs[i];
    if (!lv || lv->type.rank != 3 || lv->type.dims[2].value < 1) {
        st = td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: output logits must be (batch, sequence, vocab) with a fixed vocab",
                     model);
        goto out;
    }
    g->vocab = lv->type.dims[2].value;
out:
    free(dir);
    td_model_dir_free(md);
    if (st != TD_OK) {
        td_generator_free(g);
        return td_wrap(ctx, "opening %s for generation", model);
    }
    *out = g;
    return TD_OK;
}
