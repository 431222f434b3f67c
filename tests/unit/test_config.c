/* config.json parsing: every fixture, transformers' defaults for absent keys,
 * and clear errors for wrong types, bad sizes, unsupported model types and
 * hostile JSON. */
#include "hf/config.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static td_ctx *ctx;
static char fixtures[1024];
static char tmpdir[1024];

static td_hf_config *load_fixture(const char *name) {
    char path[2048];
    snprintf(path, sizeof path, "%s/hf/%s/config.json", fixtures, name);
    td_hf_config *c = NULL;
    td_status s = td_hf_config_load(ctx, path, &c);
    CHECK_MSG(s == TD_OK, "%s: %s", name, td_error_message(ctx));
    return c;
}

static td_hf_config *parse(const char *text) {
    td_hf_config *c = NULL;
    td_clear_error(ctx);
    td_status s = td_hf_config_parse(ctx, text, strlen(text), "test/config.json", &c);
    CHECK_MSG(s == TD_OK, "%s: %s", text, td_error_message(ctx));
    return c;
}

static void expect_error(const char *text, td_status want, const char *needle) {
    td_hf_config *c = NULL;
    td_clear_error(ctx);
    td_status s = td_hf_config_parse(ctx, text, strlen(text), "test/config.json", &c);
    CHECK_MSG(s == want && c == NULL, "%.120s: got %s (%s)", text, td_status_string(s), td_error_message(ctx));
    CHECK_MSG(strstr(td_error_message(ctx), "test/config.json") != NULL, "no file name in: %s", td_error_message(ctx));
    if (needle)
        CHECK_MSG(strstr(td_error_message(ctx), needle) != NULL, "%.80s: message lacks '%s': %s", text, needle,
                  td_error_message(ctx));
    td_hf_config_free(c);
}

static bool close_to(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(1.0, fabs(b)); }

static void test_fixtures(void) {
    td_hf_config *c = load_fixture("bert-base");
    if (c) {
        CHECK(c->family == TD_HF_BERT && strcmp(c->model_type, "bert") == 0);
        CHECK(c->n_architectures == 1 && strcmp(c->architectures[0], "BertModel") == 0);
        CHECK(c->vocab_size == 1000 && c->hidden_size == 32 && c->num_hidden_layers == 2);
        CHECK(c->num_attention_heads == 4 && c->head_dim == 8 && c->intermediate_size == 64);
        CHECK(c->max_position_embeddings == 64 && c->enc.type_vocab_size == 2 && c->pad_token_id == 0);
        CHECK(close_to(c->norm_eps, 1e-12) && strcmp(c->hidden_act, "gelu") == 0);
        CHECK(strcmp(c->enc.position_embedding_type, "absolute") == 0 && c->enc.embedding_size == 32);
        CHECK(c->dtype && strcmp(c->dtype, "float32") == 0);
        CHECK(c->num_labels == 2 && !c->has_id2label && strcmp(td_hf_config_label(c, 1), "LABEL_1") == 0);
        CHECK(c->bos_token_id == -1 && c->n_eos_token_ids == 0 && c->tie_word_embeddings);
    }
    td_hf_config_free(c);

    c = load_fixture("bert-seqcls");
    if (c) {
        CHECK(c->num_labels == 3 && c->has_id2label);
        CHECK(strcmp(td_hf_config_label(c, 0), "negative") == 0 && strcmp(td_hf_config_label(c, 2), "positive") == 0);
        CHECK(td_hf_config_label(c, 3) == NULL);
        CHECK(strcmp(c->architectures[0], "BertForSequenceClassification") == 0);
    }
    td_hf_config_free(c);

    c = load_fixture("bert-tokcls");
    if (c)
        CHECK(c->num_labels == 5 && strcmp(td_hf_config_label(c, 3), "B-LOC") == 0);
    td_hf_config_free(c);

    c = load_fixture("bert-qa");
    if (c)
        CHECK(c->family == TD_HF_BERT && strcmp(c->architectures[0], "BertForQuestionAnswering") == 0);
    td_hf_config_free(c);

    c = load_fixture("minilm-st");
    if (c)
        CHECK(c->hidden_size == 48 && c->num_attention_heads == 6 && c->head_dim == 8 && c->num_hidden_layers == 3);
    td_hf_config_free(c);

    c = load_fixture("distilbert-seqcls");
    if (c) {
        CHECK(c->family == TD_HF_DISTILBERT && c->hidden_size == 32 && c->num_hidden_layers == 2);
        CHECK(c->num_attention_heads == 4 && c->intermediate_size == 64 && strcmp(c->hidden_act, "gelu") == 0);
        CHECK(close_to(c->norm_eps, 1e-12) && !c->enc.sinusoidal_pos_embds && c->enc.type_vocab_size == 0);
        CHECK(c->max_position_embeddings == 64 && c->vocab_size == 1000);
    }
    td_hf_config_free(c);

    c = load_fixture("electra-base");
    if (c)
        CHECK(c->family == TD_HF_ELECTRA && c->enc.embedding_size == 16 && c->hidden_size == 32);
    td_hf_config_free(c);

    c = load_fixture("roberta-seqcls");
    if (c) {
        CHECK(c->family == TD_HF_ROBERTA && c->pad_token_id == 1 && c->enc.type_vocab_size == 1);
        CHECK(c->max_position_embeddings == 66 && c->bos_token_id == 0 && c->eos_token_ids[0] == 2);
    }
    td_hf_config_free(c);

    c = load_fixture("xlmr-base");
    if (c)
        CHECK(c->family == TD_HF_XLM_ROBERTA && c->vocab_size == 800 && c->pad_token_id == 1);
    td_hf_config_free(c);

    c = load_fixture("gpt2-lm");
    if (c) {
        CHECK(c->family == TD_HF_GPT2 && c->hidden_size == 32 && c->num_hidden_layers == 2);
        CHECK(c->num_attention_heads == 4 && c->intermediate_size == 128); /* n_inner null -> 4 * n_embd */
        CHECK(c->max_position_embeddings == 64 && close_to(c->norm_eps, 1e-5));
        CHECK(strcmp(c->hidden_act, "gelu_new") == 0 && c->pad_token_id == -1 && c->bos_token_id == 0);
        CHECK(c->n_eos_token_ids == 1 && c->eos_token_ids[0] == 0 && c->gpt2.scale_attn_weights);
        CHECK(!c->gpt2.scale_attn_by_inverse_layer_idx && !c->gpt2.reorder_and_upcast_attn);
    }
    td_hf_config_free(c);

    c = load_fixture("llama-lm");
    if (c) {
        CHECK(c->family == TD_HF_LLAMA && c->hidden_size == 64 && c->intermediate_size == 128);
        CHECK(c->num_attention_heads == 4 && c->dec.num_key_value_heads == 2 && c->head_dim == 16);
        CHECK(close_to(c->norm_eps, 1e-6) && close_to(c->dec.rope_theta, 10000.0) && !c->tie_word_embeddings);
        CHECK(strcmp(c->hidden_act, "silu") == 0 && !c->dec.qkv_bias && !c->dec.mlp_bias);
        CHECK(c->dec.rope_scaling != NULL); /* rope_parameters kept raw */
        CHECK(c->max_position_embeddings == 128 && c->pad_token_id == -1);
    }
    td_hf_config_free(c);
}

static void test_defaults(void) {
    td_hf_config *c = parse("{\"model_type\":\"bert\"}");
    if (c) {
        CHECK(c->vocab_size == 30522 && c->hidden_size == 768 && c->num_hidden_layers == 12);
        CHECK(c->num_attention_heads == 12 && c->intermediate_size == 3072 && c->max_position_embeddings == 512);
        CHECK(c->enc.type_vocab_size == 2 && c->pad_token_id == 0 && close_to(c->norm_eps, 1e-12));
        CHECK(strcmp(c->hidden_act, "gelu") == 0 && c->tie_word_embeddings && c->num_labels == 2);
        CHECK(strcmp(c->enc.position_embedding_type, "absolute") == 0 && c->dtype == NULL && c->n_architectures == 0);
    }
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"roberta\"}");
    if (c)
        CHECK(c->vocab_size == 50265 && c->pad_token_id == 1 && c->bos_token_id == 0 && c->eos_token_ids[0] == 2);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"xlm-roberta\"}");
    if (c)
        CHECK(c->family == TD_HF_XLM_ROBERTA && c->vocab_size == 30522 && c->pad_token_id == 1);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"distilbert\"}");
    if (c)
        CHECK(c->hidden_size == 768 && c->num_hidden_layers == 6 && c->num_attention_heads == 12 &&
              c->intermediate_size == 3072 && !c->enc.sinusoidal_pos_embds);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"distilbert\",\"sinusoidal_pos_embds\":true,\"activation\":\"relu\"}");
    if (c)
        CHECK(c->enc.sinusoidal_pos_embds && strcmp(c->hidden_act, "relu") == 0);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"electra\"}");
    if (c)
        CHECK(c->hidden_size == 256 && c->enc.embedding_size == 128 && c->num_attention_heads == 4 &&
              c->intermediate_size == 1024);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"gpt2\"}");
    if (c)
        CHECK(c->vocab_size == 50257 && c->hidden_size == 768 && c->intermediate_size == 3072 &&
              c->max_position_embeddings == 1024 && close_to(c->norm_eps, 1e-5) &&
              strcmp(c->hidden_act, "gelu_new") == 0 && c->eos_token_ids[0] == 50256 && c->pad_token_id == -1);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_inner\":100,\"n_head\":2}");
    if (c)
        CHECK(c->intermediate_size == 100 && c->head_dim == 32);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"llama\"}");
    if (c)
        CHECK(c->vocab_size == 32000 && c->hidden_size == 4096 && c->intermediate_size == 11008 &&
              c->dec.num_key_value_heads == 32 && c->head_dim == 128 && c->max_position_embeddings == 2048 &&
              close_to(c->dec.rope_theta, 10000.0) && !c->tie_word_embeddings && c->bos_token_id == 1 &&
              c->dec.rope_scaling == NULL);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"mistral\"}");
    if (c)
        CHECK(c->dec.num_key_value_heads == 8 && c->intermediate_size == 14336 &&
              c->max_position_embeddings == 131072 && c->dec.sliding_window == 4096 && !c->dec.qkv_bias);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"mistral\",\"sliding_window\":null}");
    if (c)
        CHECK(c->dec.sliding_window == 0);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"qwen2\"}");
    if (c)
        CHECK(c->vocab_size == 151936 && c->intermediate_size == 22016 && c->dec.num_key_value_heads == 32 &&
              c->max_position_embeddings == 32768 && c->dec.qkv_bias && !c->dec.o_bias && c->dec.sliding_window == 0);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"qwen2\",\"use_sliding_window\":true,\"sliding_window\":1024}");
    if (c)
        CHECK(c->dec.sliding_window == 1024);
    td_hf_config_free(c);
    /* transformers < 5 spelling of rope settings, explicit head_dim not hidden / heads, GQA */
    c = parse("{\"model_type\":\"llama\",\"hidden_size\":5120,\"num_attention_heads\":32,\"head_dim\":128,"
              "\"num_key_value_heads\":8,\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\","
              "\"factor\":8.0},\"eos_token_id\":[128001,128008,128009],\"torch_dtype\":\"bfloat16\","
              "\"attention_bias\":true}");
    if (c) {
        CHECK(c->head_dim == 128 && c->dec.num_key_value_heads == 8 && close_to(c->dec.rope_theta, 500000.0));
        CHECK(c->dec.rope_scaling && c->n_eos_token_ids == 3 && c->eos_token_ids[2] == 128009);
        CHECK(c->dtype && strcmp(c->dtype, "bfloat16") == 0 && c->dec.qkv_bias && c->dec.o_bias);
    }
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"llama\",\"num_key_value_heads\":null,\"num_attention_heads\":16,"
              "\"rope_parameters\":{\"rope_theta\":1e6,\"rope_type\":\"default\"}}");
    if (c)
        CHECK(c->dec.num_key_value_heads == 16 && close_to(c->dec.rope_theta, 1e6));
    td_hf_config_free(c);
    /* num_labels: from the key when there is no id2label; id2label wins over it, as in transformers */
    c = parse("{\"model_type\":\"bert\",\"num_labels\":5,\"problem_type\":\"regression\"}");
    if (c)
        CHECK(c->num_labels == 5 && strcmp(td_hf_config_label(c, 4), "LABEL_4") == 0 &&
              strcmp(c->problem_type, "regression") == 0);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"bert\",\"num_labels\":5,\"id2label\":{\"1\":\"b\",\"0\":\"a\"}}");
    if (c)
        CHECK(c->num_labels == 2 && strcmp(c->id2label[0].label, "a") == 0 && c->id2label[1].id == 1);
    td_hf_config_free(c);
    c = parse("{\"model_type\":\"bert\",\"pad_token_id\":null}");
    if (c)
        CHECK(c->pad_token_id == -1);
    td_hf_config_free(c);
}

static void test_errors(void) {
    expect_error("{\"model_type\":\"t5\"}", TD_ERR_UNSUPPORTED, "llama");
    expect_error("{\"model_type\":\"t5\"}", TD_ERR_UNSUPPORTED, "xlm-roberta");
    expect_error("{\"hidden_size\":32}", TD_ERR_FORMAT, "model_type");
    expect_error("{\"model_type\":3}", TD_ERR_FORMAT, "model_type");
    expect_error("{\"model_type\":\"bert\",\"hidden_size\":\"32\"}", TD_ERR_FORMAT, "\"hidden_size\" is a string");
    expect_error("{\"model_type\":\"bert\",\"hidden_size\":-32}", TD_ERR_FORMAT, "hidden_size");
    expect_error("{\"model_type\":\"bert\",\"hidden_size\":0}", TD_ERR_FORMAT, "hidden_size");
    expect_error("{\"model_type\":\"bert\",\"hidden_size\":32.5}", TD_ERR_FORMAT, "hidden_size");
    expect_error("{\"model_type\":\"bert\",\"hidden_size\":null}", TD_ERR_FORMAT, "hidden_size");
    expect_error("{\"model_type\":\"bert\",\"hidden_size\":30,\"num_attention_heads\":4}", TD_ERR_FORMAT, "divisible");
    expect_error("{\"model_type\":\"bert\",\"vocab_size\":1e12}", TD_ERR_FORMAT, "vocab_size");
    expect_error("{\"model_type\":\"bert\",\"num_hidden_layers\":100000}", TD_ERR_FORMAT, "num_hidden_layers");
    expect_error("{\"model_type\":\"bert\",\"num_attention_heads\":[4]}", TD_ERR_FORMAT, "num_attention_heads");
    expect_error("{\"model_type\":\"bert\",\"layer_norm_eps\":\"1e-12\"}", TD_ERR_FORMAT, "layer_norm_eps");
    expect_error("{\"model_type\":\"bert\",\"layer_norm_eps\":-1}", TD_ERR_FORMAT, "layer_norm_eps");
    expect_error("{\"model_type\":\"bert\",\"hidden_act\":7}", TD_ERR_FORMAT, "hidden_act");
    expect_error("{\"model_type\":\"bert\",\"tie_word_embeddings\":\"yes\"}", TD_ERR_FORMAT, "tie_word_embeddings");
    expect_error("{\"model_type\":\"bert\",\"pad_token_id\":5000,\"vocab_size\":100}", TD_ERR_FORMAT, "pad_token_id");
    expect_error("{\"model_type\":\"bert\",\"position_embedding_type\":\"rotary\"}", TD_ERR_FORMAT,
                 "position_embedding_type");
    expect_error("{\"model_type\":\"bert\",\"type_vocab_size\":-1}", TD_ERR_FORMAT, "type_vocab_size");
    expect_error("{\"model_type\":\"bert\",\"id2label\":{\"x\":\"a\"}}", TD_ERR_FORMAT, "\"x\"");
    expect_error("{\"model_type\":\"bert\",\"id2label\":{\"0\":\"a\",\"00\":\"b\"}}", TD_ERR_FORMAT, "twice");
    expect_error("{\"model_type\":\"bert\",\"id2label\":{\"0\":1}}", TD_ERR_FORMAT, "id2label");
    expect_error("{\"model_type\":\"bert\",\"id2label\":[\"a\"]}", TD_ERR_FORMAT, "id2label");
    expect_error("{\"model_type\":\"bert\",\"num_labels\":-1}", TD_ERR_FORMAT, "num_labels");
    expect_error("{\"model_type\":\"bert\",\"problem_type\":\"ranking\"}", TD_ERR_FORMAT, "problem_type");
    expect_error("{\"model_type\":\"bert\",\"architectures\":\"BertModel\"}", TD_ERR_FORMAT, "architectures");
    expect_error("{\"model_type\":\"roberta\",\"pad_token_id\":null}", TD_ERR_FORMAT, "pad_token_id");
    expect_error("{\"model_type\":\"distilbert\",\"dim\":-8}", TD_ERR_FORMAT, "\"dim\"");
    expect_error("{\"model_type\":\"distilbert\",\"n_heads\":5}", TD_ERR_FORMAT, "divisible");
    expect_error("{\"model_type\":\"electra\",\"embedding_size\":\"16\"}", TD_ERR_FORMAT, "embedding_size");
    expect_error("{\"model_type\":\"gpt2\",\"n_embd\":\"32\"}", TD_ERR_FORMAT, "n_embd");
    expect_error("{\"model_type\":\"gpt2\",\"layer_norm_epsilon\":null}", TD_ERR_FORMAT, "layer_norm_epsilon");
    expect_error("{\"model_type\":\"llama\",\"num_key_value_heads\":3}", TD_ERR_FORMAT, "num_key_value_heads");
    expect_error("{\"model_type\":\"llama\",\"rms_norm_eps\":true}", TD_ERR_FORMAT, "rms_norm_eps");
    expect_error("{\"model_type\":\"llama\",\"rope_theta\":\"1e4\"}", TD_ERR_FORMAT, "rope_theta");
    expect_error("{\"model_type\":\"llama\",\"rope_scaling\":[1]}", TD_ERR_FORMAT, "rope_scaling");
    expect_error("{\"model_type\":\"llama\",\"eos_token_id\":[\"2\"]}", TD_ERR_FORMAT, "eos_token_id");
    expect_error("{\"model_type\":\"llama\",\"head_dim\":0}", TD_ERR_FORMAT, "head_dim");
    expect_error("{\"model_type\":\"qwen2\",\"use_sliding_window\":1}", TD_ERR_FORMAT, "use_sliding_window");
    /* JSON-level problems */
    expect_error("{\"model_type\":\"bert\",\"model_type\":\"gpt2\"}", TD_ERR_FORMAT, "twice");
    expect_error("[\"model_type\"]", TD_ERR_FORMAT, "object");
    expect_error("{\"model_type\":\"bert\"", TD_ERR_FORMAT, "JSON");
    expect_error("{\"model_type\":\"bert\"} {}", TD_ERR_FORMAT, "after");
    expect_error("{\"model_type\":\"be\xff\"}", TD_ERR_FORMAT, "UTF-8");
    expect_error("", TD_ERR_FORMAT, "JSON");

    /* 100k-deep nesting from a file: an error, not a stack overflow */
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 64);
    size_t n = (size_t)sprintf(deep, "{\"model_type\":\"bert\",\"x\":");
    memset(deep + n, '[', depth);
    n += depth;
    memset(deep + n, ']', depth);
    n += depth;
    deep[n++] = '}';
    char path[2048];
    snprintf(path, sizeof path, "%s/deep_config.json", tmpdir);
    CHECK(td_write_file_atomic(ctx, path, deep, n) == TD_OK);
    td_hf_config *c = NULL;
    td_status s = td_hf_config_load(ctx, path, &c);
    CHECK_MSG(s == TD_ERR_FORMAT && !c, "deep: %s", td_error_message(ctx));
    CHECK(strstr(td_error_message(ctx), "nested") != NULL);
    memset(deep, '[', depth);
    CHECK(td_write_file_atomic(ctx, path, deep, depth) == TD_OK);
    s = td_hf_config_load(ctx, path, &c);
    CHECK(s == TD_ERR_FORMAT && !c);
    free(deep);

    snprintf(path, sizeof path, "%s/no_such_dir/config.json", tmpdir);
    CHECK(td_hf_config_load(ctx, path, &c) == TD_ERR_NOT_FOUND && !c);
    CHECK(strstr(td_error_message(ctx), "no_such_dir/config.json") != NULL);
}

int main(void) {
    ctx = td_ctx_new();
    snprintf(fixtures, sizeof fixtures, "%s", td_test_env("TD_FIXTURES", "../tests/fixtures"));
    snprintf(tmpdir, sizeof tmpdir, "%s", td_test_env("TD_TMP", "/tmp"));
    test_fixtures();
    test_defaults();
    test_errors();
    CHECK(strcmp(td_hf_family_name(TD_HF_XLM_ROBERTA), "xlm-roberta") == 0);
    CHECK(strcmp(td_hf_family_name((td_hf_family)99), "unknown") == 0);
    td_ctx_free(ctx);
    return td_test_finish("test_config");
}
