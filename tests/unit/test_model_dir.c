/* Model directories: the fixtures, a fake Hugging Face cache, pickle-only
 * weights, sharded checkpoints written by our writer, sentence-transformers
 * layouts and tokenizer_config.json. */
#define _GNU_SOURCE
#include "hf/model_dir.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

static td_ctx *ctx;
static char fixtures[1024];
static char tmp[1024];

static void mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_MSG(td_write_file_atomic(ctx, path, text, strlen(text)) == TD_OK, "%s", td_error_message(ctx));
}

static void rm_rf(const char *path) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    CHECK(system(cmd) == 0);
}

static const char *tiny_config = "{\"model_type\":\"bert\",\"hidden_size\":8,\"num_attention_heads\":2,"
                                 "\"num_hidden_layers\":1,\"intermediate_size\":16,\"vocab_size\":10,"
                                 "\"max_position_embeddings\":20,\"architectures\":[\"BertModel\"]}";

/* A tiny model dir: config + one or two tensors. */
static void make_model(const char *dir, bool weights) {
    mkdirs(dir);
    write_text(dir, "config.json", tiny_config);
    if (!weights)
        return;
    float w[80] = {0};
    for (int i = 0; i < 80; i++)
        w[i] = (float)i;
    int64_t dims[2] = {10, 8};
    td_st_write_tensor t = {"embeddings.word_embeddings.weight", TD_F32, 2, dims, w};
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_MSG(td_st_write(ctx, path, &t, 1, NULL, NULL, 0) == TD_OK, "%s", td_error_message(ctx));
}

static void test_fixture_dirs(void) {
    static const struct {
        const char *name;
        td_hf_family family;
        size_t tensors;
        bool st;
        int64_t max_seq;
    } dirs[] = {
        {"bert-base", TD_HF_BERT, 39, false, 64},        {"bert-qa", TD_HF_BERT, 39, false, 64},
        {"bert-seqcls", TD_HF_BERT, 41, false, 64},      {"bert-tokcls", TD_HF_BERT, 39, false, 64},
        {"distilbert-seqcls", TD_HF_DISTILBERT, 40, false, 64}, {"electra-base", TD_HF_ELECTRA, 39, false, 64},
        {"gpt2-lm", TD_HF_GPT2, 28, false, 64},          {"llama-lm", TD_HF_LLAMA, 21, false, 64},
        {"minilm-st", TD_HF_BERT, 55, true, 32},         {"roberta-seqcls", TD_HF_ROBERTA, 41, false, 64},
        {"xlmr-base", TD_HF_XLM_ROBERTA, 37, false, 64},
    };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/hf/%s", fixtures, dirs[i].name);
        td_model_dir *md = NULL;
        td_status s = td_model_dir_open(ctx, path, &md);
        CHECK_MSG(s == TD_OK, "%s: %s", path, td_error_message(ctx));
        if (!md)
            continue;
        CHECK_MSG(md->config->family == dirs[i].family, "%s family", dirs[i].name);
        CHECK_MSG(td_checkpoint_count(md->checkpoint) == dirs[i].tensors, "%s: %zu tensors", dirs[i].name,
                  td_checkpoint_count(md->checkpoint));
        CHECK(!td_checkpoint_is_sharded(md->checkpoint) && md->revision == NULL);
        CHECK_MSG((md->st != NULL) == dirs[i].st, "%s: st", dirs[i].name);
        CHECK(md->tokenizer_json && strstr(md->tokenizer_json, "tokenizer.json"));
        CHECK(md->tokenizer_config != NULL);
        CHECK_MSG(md->max_seq_length == dirs[i].max_seq, "%s: max_seq_length %lld", dirs[i].name,
                  (long long)md->max_seq_length);
        td_model_dir_free(md);
    }

    /* sentence-transformers (newer pooling config spelling) and its tokenizer_config */
    char path[2048];
    snprintf(path, sizeof path, "%s/hf/minilm-st", fixtures);
    td_model_dir *md = NULL;
    if (td_model_dir_open(ctx, path, &md) == TD_OK) {
        const td_st_info *st = md->st;
        CHECK(st->n_modules == 3 && st->modules[0].kind == TD_ST_MODULE_TRANSFORMER);
        CHECK(st->modules[1].kind == TD_ST_MODULE_POOLING && strcmp(st->modules[1].path, "1_Pooling") == 0);
        CHECK(st->modules[2].kind == TD_ST_MODULE_NORMALIZE && st->has_normalize);
        CHECK(st->has_pooling && st->pooling_modes == TD_POOL_MEAN && st->word_embedding_dimension == 48);
        CHECK(st->include_prompt && st->max_seq_length == -1);
        CHECK(td_st_info_check_supported(ctx, st, path) == TD_OK);
        const td_tokenizer_config *tc = md->tokenizer_config;
        CHECK(tc->model_max_length == 32 && tc->n_model_input_names == 3);
        CHECK(strcmp(tc->model_input_names[1], "token_type_ids") == 0);
        CHECK(strcmp(tc->padding_side, "right") == 0 && strcmp(tc->truncation_side, "right") == 0);
        CHECK(tc->pad_token && strcmp(tc->pad_token, "[PAD]") == 0 && strcmp(tc->cls_token, "[CLS]") == 0);
        CHECK(tc->do_lower_case == -1 && tc->bos_token == NULL);
    }
    td_model_dir_free(md);
    snprintf(path, sizeof path, "%s/hf/gpt2-lm", fixtures);
    if (td_model_dir_open(ctx, path, &md) == TD_OK) {
        CHECK(md->tokenizer_config->eos_token && strcmp(md->tokenizer_config->eos_token, "<|endoftext|>") == 0);
        CHECK(md->tokenizer_config->n_model_input_names == 0);
    }
    td_model_dir_free(md);
}

static void test_hf_cache(void) {
    char home[2048], repo[2048], snap_a[2300], snap_b[2300], refs[2300];
    snprintf(home, sizeof home, "%s/hfhome", tmp);
    rm_rf(home);
    snprintf(repo, sizeof repo, "%s/hub/models--acme--tiny-bert", home);
    snprintf(snap_a, sizeof snap_a, "%s/snapshots/aaaa1111", repo);
    snprintf(snap_b, sizeof snap_b, "%s/snapshots/bbbb2222", repo);
    snprintf(refs, sizeof refs, "%s/refs", repo);
    make_model(snap_a, true);
    make_model(snap_b, true);
    mkdirs(refs);
    write_text(refs, "main", "aaaa1111\n");
    /* snapshot b is newer; refs/main still wins */
    struct timeval old[2] = {{1000000000, 0}, {1000000000, 0}};
    utimes(snap_a, old);
    unsetenv("HF_HUB_CACHE");
    setenv("HF_HOME", home, 1);

    td_model_dir *md = NULL;
    td_status s = td_model_dir_open(ctx, "acme/tiny-bert", &md);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    if (md) {
        CHECK(md->revision && strcmp(md->revision, "aaaa1111") == 0);
        CHECK(strcmp(md->path, snap_a) == 0);
        CHECK(md->config->hidden_size == 8 && td_checkpoint_count(md->checkpoint) == 1);
        CHECK(md->st == NULL && md->tokenizer_json == NULL && md->tokenizer_config == NULL);
        CHECK(md->max_seq_length == 20);
    }
    td_model_dir_free(md);

    /* refs/main with trailing whitespace (a tab, CRLF) names the same snapshot */
    write_text(refs, "main", "aaaa1111\t\r\n");
    char *dir = NULL, *rev = NULL;
    s = td_model_dir_resolve(ctx, "acme/tiny-bert", &dir, &rev);
    CHECK_MSG(s == TD_OK && rev && strcmp(rev, "aaaa1111") == 0, "%s", td_error_message(ctx));
    free(dir);
    free(rev);

    /* the same lookup as `tdeploy download`: refs/main naming a snapshot that is not
     * there, or no refs/main at all, is not in the cache (never another revision's snapshot) */
    write_text(refs, "main", "cccc3333");
    dir = rev = NULL;
    s = td_model_dir_resolve(ctx, "acme/tiny-bert", &dir, &rev);
    CHECK_MSG(s == TD_ERR_NOT_FOUND && !dir && !rev && strstr(td_error_message(ctx), "cccc3333"), "%s",
              td_error_message(ctx));
    char refs_main[2400];
    snprintf(refs_main, sizeof refs_main, "%s/main", refs);
    unlink(refs_main);
    s = td_model_dir_resolve(ctx, "acme/tiny-bert", &dir, &rev);
    CHECK_MSG(s == TD_ERR_NOT_FOUND && !dir && strstr(td_error_message(ctx), "refs/main"), "%s",
              td_error_message(ctx));

    /* refs/main that is a FIFO is refused at once (opening it for reading would wait for a writer) */
    CHECK(mkfifo(refs_main, 0644) == 0);
    s = td_model_dir_resolve(ctx, "acme/tiny-bert", &dir, &rev);
    CHECK(s == TD_ERR_NOT_FOUND && !dir);
    unlink(refs_main);

    /* `~` in HF_HOME is the home directory, as huggingface_hub reads it */
    write_text(refs, "main", "aaaa1111");
    const char *old_home = getenv("HOME");
    char *saved_home = old_home ? strdup(old_home) : NULL;
    setenv("HOME", tmp, 1);
    setenv("HF_HOME", "~/hfhome", 1);
    s = td_model_dir_resolve(ctx, "acme/tiny-bert", &dir, &rev);
    CHECK_MSG(s == TD_OK && dir && strcmp(dir, snap_a) == 0, "%s", s == TD_OK ? dir : td_error_message(ctx));
    free(dir);
    free(rev);
    if (saved_home)
        setenv("HOME", saved_home, 1);
    else
        unsetenv("HOME");
    free(saved_home);
    setenv("HF_HOME", home, 1);

    /* HF_HUB_CACHE beats HF_HOME */
    char hub2[2048];
    snprintf(hub2, sizeof hub2, "%s/hub2", tmp);
    rm_rf(hub2);
    char snap_c[2300];
    snprintf(snap_c, sizeof snap_c, "%s/models--solo/snapshots/dddd4444", hub2);
    make_model(snap_c, true);
    char refs_c[2300];
    snprintf(refs_c, sizeof refs_c, "%s/models--solo/refs", hub2);
    mkdirs(refs_c);
    write_text(refs_c, "main", "dddd4444");
    setenv("HF_HUB_CACHE", hub2, 1);
    s = td_model_dir_resolve(ctx, "solo", &dir, &rev);
    CHECK_MSG(s == TD_OK && rev && strcmp(rev, "dddd4444") == 0, "%s", td_error_message(ctx));
    free(dir);
    free(rev);
    s = td_model_dir_resolve(ctx, "acme/tiny-bert", &dir, &rev); /* only under HF_HOME: not found now */
    CHECK(s == TD_ERR_NOT_FOUND && !dir);
    CHECK_MSG(strstr(td_error_message(ctx), hub2) && strstr(td_error_message(ctx), "models--acme--tiny-bert"),
              "%s", td_error_message(ctx));
    unsetenv("HF_HUB_CACHE");

    /* not found: the message names each place looked */
    s = td_model_dir_open(ctx, "acme/missing", &md);
    CHECK(s == TD_ERR_NOT_FOUND && !md);
    CHECK_MSG(strstr(td_error_message(ctx), "acme/missing (not a directory)") &&
                  strstr(td_error_message(ctx), "models--acme--missing"),
              "%s", td_error_message(ctx));
    /* something that is not a hub id is never looked up in the cache */
    s = td_model_dir_open(ctx, "../../etc", &md);
    CHECK(s == TD_ERR_NOT_FOUND && !strstr(td_error_message(ctx), "models--"));
    CHECK(td_model_dir_open(ctx, "", &md) == TD_ERR_INVALID_ARGUMENT);
    unsetenv("HF_HOME");
}

static void test_bad_dirs(void) {
    char dir[2048];
    td_model_dir *md = NULL;
    /* pickles only */
    snprintf(dir, sizeof dir, "%s/pickle_only", tmp);
    rm_rf(dir);
    make_model(dir, false);
    write_text(dir, "pytorch_model.bin", "PK\x03\x04 not really");
    td_status s = td_model_dir_open(ctx, dir, &md);
    CHECK(s == TD_ERR_UNSUPPORTED && !md);
    CHECK_MSG(strstr(td_error_message(ctx), "pytorch_model.bin") && strstr(td_error_message(ctx), "safe_serialization"),
              "%s", td_error_message(ctx));
    /* no weights at all */
    snprintf(dir, sizeof dir, "%s/no_weights", tmp);
    rm_rf(dir);
    make_model(dir, false);
    CHECK(td_model_dir_open(ctx, dir, &md) == TD_ERR_NOT_FOUND && !md);
    CHECK(strstr(td_error_message(ctx), "model.safetensors") != NULL);
    /* no config.json */
    snprintf(dir, sizeof dir, "%s/no_config", tmp);
    rm_rf(dir);
    make_model(dir, true);
    char p[2300];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    CHECK(td_model_dir_open(ctx, dir, &md) == TD_ERR_NOT_FOUND && !md);
    CHECK(strstr(td_error_message(ctx), "config.json") != NULL);
    /* a broken config is reported, not skipped */
    snprintf(dir, sizeof dir, "%s/bad_config", tmp);
    rm_rf(dir);
    make_model(dir, true);
    write_text(dir, "config.json", "{\"model_type\":\"t5\"}");
    CHECK(td_model_dir_open(ctx, dir, &md) == TD_ERR_UNSUPPORTED && !md);
}

/* Two shards written by td_st_write plus an index json. */
static void write_shards(const char *dir, const char *index) {
    rm_rf(dir);
    mkdirs(dir);
    write_text(dir, "config.json", tiny_config);
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6}, c[3] = {7, 8, 9};
    int64_t d4[1] = {4}, d2[1] = {2}, d3[1] = {3};
    td_st_write_tensor s1[] = {{"a", TD_F32, 1, d4, a}, {"b", TD_F32, 1, d2, b}};
    td_st_write_tensor s2[] = {{"c", TD_F32, 1, d3, c}};
    char path[2300];
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    CHECK(td_st_write(ctx, path, s1, 2, NULL, NULL, 0) == TD_OK);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    CHECK(td_st_write(ctx, path, s2, 1, NULL, NULL, 0) == TD_OK);
    write_text(dir, "model.safetensors.index.json", index);
}

static void expect_shard_error(const char *index, td_status want, const char *needle) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/sharded_bad", tmp);
    write_shards(dir, index);
    td_checkpoint *ck = NULL;
    td_status s = td_checkpoint_open(ctx, dir, &ck);
    CHECK_MSG(s == want && !ck, "%s: got %s: %s", index, td_status_string(s), td_error_message(ctx));
    CHECK_MSG(strstr(td_error_message(ctx), needle) != NULL, "'%s' not in: %s", needle, td_error_message(ctx));
    td_checkpoint_close(ck);
}

static void test_sharded(void) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/sharded", tmp);
    write_shards(dir, "{\"metadata\":{\"total_size\":36},\"weight_map\":{"
                      "\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
                      "\"c\":\"model-00002-of-00002.safetensors\"}}");
    td_model_dir *md = NULL;
    td_status s = td_model_dir_open(ctx, dir, &md);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    if (md) {
        const td_checkpoint *ck = md->checkpoint;
        CHECK(td_checkpoint_is_sharded(ck) && td_checkpoint_shard_count(ck) == 2 && td_checkpoint_count(ck) == 3);
        CHECK(td_checkpoint_total_bytes(ck) == 36);
        const td_st_tensor *t = NULL;
        CHECK(td_checkpoint_get(ctx, ck, "c", &t) == TD_OK && t && t->numel == 3 && ((const float *)t->data)[2] == 9);
        CHECK(strstr(t->path, "00002") != NULL);
        CHECK(td_checkpoint_get(ctx, ck, "b", &t) == TD_OK && ((const float *)t->data)[1] == 6);
        CHECK(td_checkpoint_get(ctx, ck, "zzz", &t) == TD_ERR_NOT_FOUND && t == NULL);
        CHECK(strstr(td_error_message(ctx), "'zzz'") != NULL);
        CHECK(strcmp(td_checkpoint_tensor_at(ck, 0)->name, "a") == 0 && td_checkpoint_tensor_at(ck, 3) == NULL);
    }
    td_model_dir_free(md);

    const char *sh1 = "model-00001-of-00002.safetensors", *sh2 = "model-00002-of-00002.safetensors";
    char idx[1024];
    snprintf(idx, sizeof idx, "{\"weight_map\":{\"a\":\"%s\",\"b\":\"%s\",\"c\":\"model-00003.safetensors\"}}", sh1,
             sh1);
    expect_shard_error(idx, TD_ERR_NOT_FOUND, "model-00003.safetensors");
    snprintf(idx, sizeof idx, "{\"weight_map\":{\"a\":\"%s\",\"b\":\"%s\",\"c\":\"%s\"}}", sh2, sh1, sh2);
    expect_shard_error(idx, TD_ERR_FORMAT, "'a'");
    snprintf(idx, sizeof idx, "{\"weight_map\":{\"a\":\"%s\",\"x\":\"%s\",\"c\":\"%s\"}}", sh1, sh1, sh2);
    expect_shard_error(idx, TD_ERR_FORMAT, "'x'");
    snprintf(idx, sizeof idx, "{\"weight_map\":{\"a\":\"%s\",\"a\":\"%s\",\"c\":\"%s\"}}", sh1, sh1, sh2);
    expect_shard_error(idx, TD_ERR_FORMAT, "twice");
    snprintf(idx, sizeof idx, "{\"weight_map\":{\"a\":\"../%s\"}}", sh1);
    expect_shard_error(idx, TD_ERR_FORMAT, "..");
    snprintf(idx, sizeof idx, "{\"weight_map\":{\"a\":\"/etc/passwd\"}}");
    expect_shard_error(idx, TD_ERR_FORMAT, "absolute");
    expect_shard_error("{\"weight_map\":{}}", TD_ERR_FORMAT, "weight_map");
    expect_shard_error("{\"weight_map\":{\"a\":1}}", TD_ERR_FORMAT, "weight_map");
    expect_shard_error("{\"weight_map\":", TD_ERR_FORMAT, "JSON");

    /* a tensor in two shards */
    snprintf(dir, sizeof dir, "%s/sharded_dup", tmp);
    write_shards(dir, "");
    float x[3] = {0};
    int64_t d3[1] = {3};
    td_st_write_tensor t = {"c", TD_F32, 1, d3, x};
    char path[2300];
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    CHECK(td_st_write(ctx, path, &t, 1, NULL, NULL, 0) == TD_OK);
    snprintf(idx, sizeof idx, "{\"weight_map\":{\"c\":\"%s\",\"d\":\"%s\"}}", sh1, sh2);
    write_text(dir, "model.safetensors.index.json", idx);
    td_checkpoint *ck = NULL;
    s = td_checkpoint_open(ctx, dir, &ck);
    CHECK_MSG(s == TD_ERR_FORMAT && !ck && strstr(td_error_message(ctx), "two shards"), "%s", td_error_message(ctx));
    /* a bad shard: its own error (with the shard's name) comes through */
    write_text(dir, "model-00002-of-00002.safetensors", "garbage!");
    s = td_checkpoint_open(ctx, dir, &ck);
    CHECK_MSG(s == TD_ERR_FORMAT && strstr(td_error_message(ctx), "00002"), "%s", td_error_message(ctx));
}

static void test_st_layouts(void) {
    char dir[2048], sub[2300];
    snprintf(dir, sizeof dir, "%s/st_classic", tmp);
    rm_rf(dir);
    make_model(dir, true);
    write_text(dir, "modules.json",
               "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},"
               "{\"idx\":1,\"name\":\"1\",\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"}]");
    write_text(dir, "sentence_bert_config.json", "{\"max_seq_length\": 16, \"do_lower_case\": true}");
    snprintf(sub, sizeof sub, "%s/1_Pooling", dir);
    mkdirs(sub);
    write_text(sub, "config.json",
               "{\"word_embedding_dimension\": 8, \"pooling_mode_cls_token\": true, \"pooling_mode_mean_tokens\": "
               "false, \"pooling_mode_max_tokens\": true, \"pooling_mode_mean_sqrt_len_tokens\": false}");
    td_model_dir *md = NULL;
    td_status s = td_model_dir_open(ctx, dir, &md);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    if (md) {
        CHECK(md->st && md->st->pooling_modes == (TD_POOL_CLS | TD_POOL_MAX) && !md->st->has_normalize);
        CHECK(md->st->word_embedding_dimension == 8 && md->st->max_seq_length == 16 && md->st->do_lower_case == 1);
        CHECK(md->max_seq_length == 16);
        char buf[64];
        CHECK(strcmp(td_st_pooling_name(md->st->pooling_modes, buf, sizeof buf), "cls+max") == 0);
    }
    td_model_dir_free(md);

    /* a Dense module loads, but is reported unsupported when asked */
    write_text(dir, "modules.json",
               "[{\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},"
               "{\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"},"
               "{\"path\":\"2_Dense\",\"type\":\"sentence_transformers.models.Dense\"}]");
    s = td_model_dir_open(ctx, dir, &md);
    CHECK(s == TD_OK && md && md->st->modules[2].kind == TD_ST_MODULE_DENSE);
    if (md) {
        CHECK(td_st_info_check_supported(ctx, md->st, dir) == TD_ERR_UNSUPPORTED);
        CHECK(strstr(td_error_message(ctx), "Dense") != NULL);
    }
    td_model_dir_free(md);

    static const struct {
        const char *modules, *pooling;
        td_status want;
        const char *needle;
    } bad[] = {
        {"{\"path\":\"\"}", NULL, TD_ERR_FORMAT, "list"},
        {"[]", NULL, TD_ERR_FORMAT, "modules"},
        {"[{\"path\":\"\"}]", NULL, TD_ERR_FORMAT, "type"},
        {"[3]", NULL, TD_ERR_FORMAT, "entry 0"},
        {"[{\"path\":\"../x\",\"type\":\"a.Pooling\"}]", NULL, TD_ERR_FORMAT, ".."},
        {"[{\"path\":\"1_Pooling\",\"type\":\"a.Pooling\"}]", "{\"pooling_mode\":\"median\"}", TD_ERR_UNSUPPORTED,
         "median"},
        {"[{\"path\":\"1_Pooling\",\"type\":\"a.Pooling\"}]", "{\"pooling_mode_mean_tokens\":\"yes\"}", TD_ERR_FORMAT,
         "pooling_mode_mean_tokens"},
        {"[{\"path\":\"1_Pooling\",\"type\":\"a.Pooling\"}]", "{\"word_embedding_dimension\":8}", TD_ERR_FORMAT,
         "no pooling mode"},
        {"[{\"path\":\"2_Missing\",\"type\":\"a.Pooling\"}]", NULL, TD_ERR_NOT_FOUND, "2_Missing"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(dir, "modules.json", bad[i].modules);
        if (bad[i].pooling)
            write_text(sub, "config.json", bad[i].pooling);
        s = td_model_dir_open(ctx, dir, &md);
        CHECK_MSG(s == bad[i].want && !md, "case %zu: %s: %s", i, td_status_string(s), td_error_message(ctx));
        CHECK_MSG(strstr(td_error_message(ctx), bad[i].needle) != NULL, "case %zu: '%s' not in %s", i, bad[i].needle,
                  td_error_message(ctx));
        td_model_dir_free(md);
        md = NULL;
    }
}

static void test_tokenizer_config(void) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/tokcfg", tmp);
    rm_rf(dir);
    mkdirs(dir);
    char path[2300];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    write_text(dir, "tokenizer_config.json",
               "{\"model_max_length\": 1000000000000000019884624838656, \"do_lower_case\": true, "
               "\"padding_side\": \"left\", \"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\", "
               "\"lstrip\": false}, \"eos_token\": null, \"add_prefix_space\": false}");
    td_tokenizer_config *tc = NULL;
    td_status s = td_tokenizer_config_load(ctx, path, &tc);
    CHECK_MSG(s == TD_OK, "%s", td_error_message(ctx));
    if (tc) {
        CHECK(tc->model_max_length == -1 && tc->do_lower_case == 1 && strcmp(tc->padding_side, "left") == 0);
        CHECK(tc->bos_token && strcmp(tc->bos_token, "<s>") == 0 && tc->eos_token == NULL);
        CHECK(tc->add_prefix_space == 0 && tc->clean_up_tokenization_spaces == -1);
        CHECK(strcmp(tc->truncation_side, "right") == 0);
    }
    td_tokenizer_config_free(tc);
    static const char *bad[] = {
        "{\"padding_side\": \"middle\"}",
        "{\"model_max_length\": \"512\"}",
        "{\"model_input_names\": \"input_ids\"}",
        "{\"pad_token\": 0}",
        "{\"do_lower_case\": \"no\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(dir, "tokenizer_config.json", bad[i]);
        tc = NULL;
        s = td_tokenizer_config_load(ctx, path, &tc);
        CHECK_MSG(s == TD_ERR_FORMAT && !tc, "%s: %s", bad[i], td_error_message(ctx));
        CHECK(strstr(td_error_message(ctx), "tokenizer_config.json") != NULL);
    }
}

int main(void) {
    ctx = td_ctx_new();
    snprintf(fixtures, sizeof fixtures, "%s", td_test_env("TD_FIXTURES", "../tests/fixtures"));
    snprintf(tmp, sizeof tmp, "%s/test_model_dir", td_test_env("TD_TMP", "/tmp"));
    mkdirs(tmp);
    test_fixture_dirs();
    test_hf_cache();
    test_bad_dirs();
    test_sharded();
    test_st_layouts();
    test_tokenizer_config();
    td_ctx_free(ctx);
    return td_test_finish("test_model_dir");
}
