/* tdeploy inspect PATH [--json] [-v]: what a safetensors file, a sharded index,
 * a Hugging Face model directory (or cached hub id) or an ONNX file contains.
 *
 * Dispatch is by what PATH is: "*.onnx" goes to the ONNX inspector (see
 * inspect_onnx_entry below), a directory or hub id to the model-directory view, a
 * file to the safetensors / checkpoint view. */
#include "cli/cli.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/str.h"
#include "hf/checkpoint.h"
#include "hf/model_dir.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ONNX: src/cli/inspect_onnx.c ---- */
static int inspect_onnx_entry(const char *path, bool json) { return td_inspect_onnx(path, json); }

/* ---- shared pieces ---- */

static const char *st_dtype(td_dtype t) {
    const char *n = td_dtype_safetensors_name(t);
    return n ? n : td_dtype_name(t);
}

static void shape_str(const td_st_tensor *t, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->rank && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", d ? ", " : "", (long long)t->dims[d]);
    if (used < n)
        snprintf(buf + used, n - used, "]");
}

/* dtype histogram: count and bytes per dtype. */
struct dtype_hist {
    size_t count[TD_DTYPE_MAX];
    uint64_t bytes[TD_DTYPE_MAX];
};

static void hist_fill(const td_checkpoint *ck, struct dtype_hist *h) {
    memset(h, 0, sizeof *h);
    for (size_t i = 0; i < td_checkpoint_count(ck); i++) {
        const td_st_tensor *t = td_checkpoint_tensor_at(ck, i);
        h->count[t->dtype]++;
        h->bytes[t->dtype] += t->nbytes;
    }
}

static void human_bytes(uint64_t b, char *buf, size_t n) {
    if (b >= (1ull << 30))
        snprintf(buf, n, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, n, "%.2f MiB", (double)b / (1ull << 20));
    else if (b >= 1024)
        snprintf(buf, n, "%.1f KiB", (double)b / 1024);
    else
        snprintf(buf, n, "%llu B", (unsigned long long)b);
}

/* ---- text output ---- */

static void print_checkpoint(const td_checkpoint *ck, bool verbose) {
    struct dtype_hist h;
    hist_fill(ck, &h);
    char hb[32];
    human_bytes(td_checkpoint_total_bytes(ck), hb, sizeof hb);
    printf("weights:      %s%s\n", td_checkpoint_path(ck), td_checkpoint_is_sharded(ck) ? " (sharded)" : "");
    if (td_checkpoint_is_sharded(ck))
        printf("shards:       %zu\n", td_checkpoint_shard_count(ck));
    printf("tensors:      %zu, %llu bytes (%s)\n", td_checkpoint_count(ck),
           (unsigned long long)td_checkpoint_total_bytes(ck), hb);
    printf("dtypes:      ");
    for (int t = 0; t < TD_DTYPE_MAX; t++)
        if (h.count[t])
            printf(" %s x%zu (%llu bytes)", st_dtype((td_dtype)t), h.count[t], (unsigned long long)h.bytes[t]);
    printf("\n");
    for (size_t s = 0; s < td_checkpoint_shard_count(ck); s++) {
        const td_safetensors *sh = td_checkpoint_shard(ck, s);
        for (size_t m = 0; m < td_st_metadata_count(sh); m++) {
            const char *k, *v;
            td_st_metadata_at(sh, m, &k, &v);
            printf("metadata:     %s = %.200s%s\n", k, v, strlen(v) > 200 ? "..." : "");
        }
    }
    if (!verbose) {
        printf("(-v lists every tensor)\n");
        return;
    }
    for (size_t i = 0; i < td_checkpoint_count(ck); i++) {
        const td_st_tensor *t = td_checkpoint_tensor_at(ck, i);
        char sh[256];
        shape_str(t, sh, sizeof sh);
        printf("  %-60s %-8s %-20s %zu\n", t->name, st_dtype(t->dtype), sh, t->nbytes);
    }
}

static void print_config(const td_hf_config *c) {
    printf("model_type:   %s\n", c->model_type);
    printf("architecture:");
    for (size_t i = 0; i < c->n_architectures; i++)
        printf(" %s", c->architectures[i]);
    printf("%s\n", c->n_architectures ? "" : " (none listed)");
    printf("sizes:        vocab %lld, hidden %lld, layers %lld, heads %lld (head_dim %lld), intermediate %lld, "
           "positions %lld\n",
           (long long)c->vocab_size, (long long)c->hidden_size, (long long)c->num_hidden_layers,
           (long long)c->num_attention_heads, (long long)c->head_dim, (long long)c->intermediate_size,
           (long long)c->max_position_embeddings);
    printf("activation:   %s, norm eps %g\n", c->hidden_act, c->norm_eps);
    if (td_hf_family_is_encoder(c->family))
        printf("embeddings:   type_vocab %lld, width %lld, positions %s%s\n", (long long)c->enc.type_vocab_size,
               (long long)c->enc.embedding_size, c->enc.position_embedding_type,
               c->enc.sinusoidal_pos_embds ? " (sinusoidal)" : "");
    if (!td_hf_family_is_encoder(c->family) && c->family != TD_HF_GPT2)
        printf("attention:    %lld kv heads, rope_theta %g%s\n", (long long)c->dec.num_key_value_heads,
               c->dec.rope_theta, c->dec.sliding_window ? ", sliding window" : "");
    if (c->has_id2label) {
        printf("labels:       %lld:", (long long)c->num_labels);
        for (int64_t i = 0; i < c->num_labels && i < 16; i++)
            printf(" %lld=%s", (long long)c->id2label[i].id, c->id2label[i].label);
        printf("%s\n", c->num_labels > 16 ? " ..." : "");
    }
    if (c->dtype)
        printf("dtype:        %s\n", c->dtype);
}

static void print_model_dir(const td_model_dir *md, bool verbose) {
    printf("model:        %s\n", md->path);
    if (md->revision)
        printf("revision:     %s\n", md->revision);
    print_config(md->config);
    if (md->st) {
        char pool[128];
        printf("sentence-transformers: pooling %s (dim %lld), normalize %s, %zu modules\n",
               td_st_pooling_name(md->st->pooling_modes, pool, sizeof pool),
               (long long)md->st->word_embedding_dimension, md->st->has_normalize ? "yes" : "no",
               md->st->n_modules);
    }
    printf("tokenizer:    %s\n", md->tokenizer_json ? "tokenizer.json" : "(no tokenizer.json)");
    printf("max_seq_len:  %lld\n", (long long)md->max_seq_length);
    print_checkpoint(md->checkpoint, verbose);
}

/* ---- JSON output ---- */

static cJSON *checkpoint_json(const td_checkpoint *ck) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", td_checkpoint_path(ck));
    cJSON_AddBoolToObject(o, "sharded", td_checkpoint_is_sharded(ck));
    cJSON *shards = cJSON_AddArrayToObject(o, "shards");
    cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
    for (size_t s = 0; s < td_checkpoint_shard_count(ck); s++) {
        const td_safetensors *sh = td_checkpoint_shard(ck, s);
        cJSON_AddItemToArray(shards, cJSON_CreateString(td_st_path(sh)));
        for (size_t m = 0; m < td_st_metadata_count(sh); m++) {
            const char *k, *v;
            td_st_metadata_at(sh, m, &k, &v);
            if (!cJSON_GetObjectItemCaseSensitive(meta, k))
                cJSON_AddStringToObject(meta, k, v);
        }
    }
    cJSON_AddNumberToObject(o, "tensor_count", (double)td_checkpoint_count(ck));
    cJSON_AddNumberToObject(o, "total_bytes", (double)td_checkpoint_total_bytes(ck));
    struct dtype_hist h;
    hist_fill(ck, &h);
    cJSON *hist = cJSON_AddObjectToObject(o, "dtypes");
    for (int t = 0; t < TD_DTYPE_MAX; t++)
        if (h.count[t])
            cJSON_AddNumberToObject(hist, st_dtype((td_dtype)t), (double)h.count[t]);
    cJSON *tensors = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; i < td_checkpoint_count(ck); i++) {
        const td_st_tensor *t = td_checkpoint_tensor_at(ck, i);
        cJSON *tj = cJSON_CreateObject();
        cJSON_AddStringToObject(tj, "name", t->name);
        cJSON_AddStringToObject(tj, "dtype", st_dtype(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(tj, "shape");
        for (int d = 0; d < t->rank; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->dims[d]));
        cJSON_AddNumberToObject(tj, "nbytes", (double)t->nbytes);
        cJSON_AddStringToObject(tj, "file", t->path);
        cJSON_AddNumberToObject(tj, "offset", (double)t->file_offset);
        cJSON_AddItemToArray(tensors, tj);
    }
    return o;
}

static cJSON *config_json(const td_hf_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model_type", c->model_type);
    cJSON_AddStringToObject(o, "family", td_hf_family_name(c->family));
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    for (size_t i = 0; i < c->n_architectures; i++)
        cJSON_AddItemToArray(arch, cJSON_CreateString(c->architectures[i]));
    cJSON_AddNumberToObject(o, "vocab_size", (double)c->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", (double)c->hidden_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", (double)c->num_hidden_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", (double)c->num_attention_heads);
    cJSON_AddNumberToObject(o, "head_dim", (double)c->head_dim);
    cJSON_AddNumberToObject(o, "intermediate_size", (double)c->intermediate_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", (double)c->max_position_embeddings);
    cJSON_AddStringToObject(o, "hidden_act", c->hidden_act);
    cJSON_AddNumberToObject(o, "norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(o, "pad_token_id", (double)c->pad_token_id);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings);
    if (c->dtype)
        cJSON_AddStringToObject(o, "dtype", c->dtype);
    cJSON_AddNumberToObject(o, "num_labels", (double)c->num_labels);
    cJSON *labels = cJSON_AddObjectToObject(o, "id2label");
    for (int64_t i = 0; i < c->num_labels; i++) {
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)c->id2label[i].id);
        cJSON_AddStringToObject(labels, key, c->id2label[i].label);
    }
    if (c->problem_type)
        cJSON_AddStringToObject(o, "problem_type", c->problem_type);
    if (td_hf_family_is_encoder(c->family)) {
        cJSON_AddNumberToObject(o, "type_vocab_size", (double)c->enc.type_vocab_size);
        cJSON_AddNumberToObject(o, "embedding_size", (double)c->enc.embedding_size);
        cJSON_AddStringToObject(o, "position_embedding_type", c->enc.position_embedding_type);
        cJSON_AddBoolToObject(o, "sinusoidal_pos_embds", c->enc.sinusoidal_pos_embds);
    } else if (c->family != TD_HF_GPT2) {
        cJSON_AddNumberToObject(o, "num_key_value_heads", (double)c->dec.num_key_value_heads);
        cJSON_AddNumberToObject(o, "rope_theta", c->dec.rope_theta);
        cJSON_AddNumberToObject(o, "sliding_window", (double)c->dec.sliding_window);
    }
    return o;
}

static cJSON *model_dir_json(const td_model_dir *md) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "hf_model_dir");
    cJSON_AddStringToObject(o, "path", md->path);
    if (md->revision)
        cJSON_AddStringToObject(o, "revision", md->revision);
    cJSON_AddItemToObject(o, "config", config_json(md->config));
    if (md->st) {
        cJSON *st = cJSON_AddObjectToObject(o, "sentence_transformers");
        char pool[128];
        cJSON_AddStringToObject(st, "pooling", td_st_pooling_name(md->st->pooling_modes, pool, sizeof pool));
        cJSON_AddNumberToObject(st, "word_embedding_dimension", (double)md->st->word_embedding_dimension);
        cJSON_AddBoolToObject(st, "normalize", md->st->has_normalize);
        cJSON *mods = cJSON_AddArrayToObject(st, "modules");
        for (size_t i = 0; i < md->st->n_modules; i++) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "kind", td_st_module_kind_name(md->st->modules[i].kind));
            cJSON_AddStringToObject(m, "type", md->st->modules[i].type);
            cJSON_AddStringToObject(m, "path", md->st->modules[i].path);
            cJSON_AddItemToArray(mods, m);
        }
    }
    if (md->tokenizer_json)
        cJSON_AddStringToObject(o, "tokenizer_json", md->tokenizer_json);
    cJSON_AddNumberToObject(o, "max_seq_length", (double)md->max_seq_length);
    cJSON_AddItemToObject(o, "checkpoint", checkpoint_json(md->checkpoint));
    return o;
}

static int emit_json(cJSON *o) {
    char *text = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!text) {
        fprintf(stderr, "tdeploy inspect: error: out of memory building the JSON output\n");
        return TD_EXIT_FAIL;
    }
    printf("%s\n", text);
    free(text);
    return TD_EXIT_OK;
}

/* ---- entry ---- */

static void usage(FILE *f) {
    fprintf(f, "usage: tdeploy inspect PATH [--json] [-v]\n\n"
               "PATH is a .safetensors file, a model.safetensors.index.json, a Hugging Face model directory,\n"
               "a hub id (org/name) in the local Hugging Face cache, an .onnx file, a .gguf file or an .engine file.\n\n"
               "  --json         machine-readable output (every tensor with dtype and shape)\n"
               "  -v, --verbose  list every tensor in the text output\n"
               "  -q, --quiet    less logging\n");
}

int td_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    bool json = false, verbose = false;
    for (int i = 1; i < argc; i++) {
        if (td_cli_is_help(argv[i])) {
            usage(stdout);
            return TD_EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            verbose = true;
            td_cli_common_flag(argv[i]);
        } else if (td_cli_common_flag(argv[i])) {
            continue;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return td_cli_usage_error("inspect", "unknown flag '%s'", argv[i]);
        } else if (path) {
            return td_cli_usage_error("inspect", "one PATH only (got '%s' and '%s')", path, argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path)
        return td_cli_usage_error("inspect", "missing PATH");
    if (td_str_ends_with(path, ".onnx"))
        return inspect_onnx_entry(path, json);
    if (td_str_ends_with(path, ".engine"))
        return td_inspect_engine(path, json);
    if (td_str_ends_with(path, ".gguf"))
        return td_inspect_gguf(path, json, verbose);

    td_ctx *ctx = td_ctx_new();
    if (!ctx) {
        fprintf(stderr, "tdeploy inspect: error: out of memory\n");
        return TD_EXIT_FAIL;
    }
    int rc = TD_EXIT_OK;
    td_status s;
    if (td_is_file(path)) {
        td_checkpoint *ck = NULL;
        s = td_checkpoint_open(ctx, path, &ck);
        if (s != TD_OK) {
            rc = td_cli_report("inspect", ctx, s);
        } else if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "kind", td_checkpoint_is_sharded(ck) ? "safetensors_index" : "safetensors");
            cJSON_AddStringToObject(o, "path", path);
            cJSON_AddItemToObject(o, "checkpoint", checkpoint_json(ck));
            rc = emit_json(o);
        } else {
            print_checkpoint(ck, verbose);
        }
        td_checkpoint_close(ck);
    } else {
        td_model_dir *md = NULL;
        s = td_model_dir_open(ctx, path, &md);
        if (s != TD_OK)
            rc = td_cli_report("inspect", ctx, s);
        else if (json)
            rc = emit_json(model_dir_json(md));
        else
            print_model_dir(md, verbose);
        td_model_dir_free(md);
    }
    td_ctx_free(ctx);
    return rc;
}
