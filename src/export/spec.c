/* Reading config.json, tokenizer_config.json and the sentence-transformers files
 * into a td_encoder_spec (see spec.h). Defaults are transformers' for each config
 * class, so a config that omits a key means what it means to transformers. */
#define _GNU_SOURCE
#include "export/spec.h"

#include "export/builder.h"
#include "export/task.h"
#include "core/str.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static td_head_kind head_of(const char *arch) {
    if (!*arch || td_str_ends_with(arch, "Model"))
        return TD_HEAD_NONE;
    if (td_str_ends_with(arch, "ForSequenceClassification"))
        return TD_HEAD_SEQCLS;
    if (td_str_ends_with(arch, "ForTokenClassification"))
        return TD_HEAD_TOKCLS;
    if (td_str_ends_with(arch, "ForQuestionAnswering"))
        return TD_HEAD_QA;
    if (strcmp(arch, "ElectraForPreTraining") == 0)
        return TD_HEAD_ELECTRA_DISCRIM;
    return TD_HEAD_OTHER;
}

/* {"0": "NEG", "1": "POS"} as transformers writes id2label. */
static td_status labels_json(td_ctx *ctx, const td_hf_config *c, char **out) {
    *out = NULL;
    if (!c->has_id2label)
        return TD_OK;
    cJSON *o = cJSON_CreateObject();
    for (int64_t i = 0; o && i < c->num_labels; i++) {
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)c->id2label[i].id);
        if (!cJSON_AddStringToObject(o, key, c->id2label[i].label)) {
            cJSON_Delete(o);
            o = NULL;
        }
    }
    *out = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return *out ? TD_OK : td_fail_oom(ctx, 0, "id2label");
}

static td_status from_config(td_ctx *ctx, const td_hf_config *c, td_encoder_spec *s) {
    switch (c->family) {
    case TD_HF_BERT: s->family = TD_FAM_BERT; break;
    case TD_HF_ROBERTA:
    case TD_HF_XLM_ROBERTA: s->family = TD_FAM_ROBERTA; break;
    case TD_HF_DISTILBERT: s->family = TD_FAM_DISTILBERT; break;
    case TD_HF_ELECTRA: s->family = TD_FAM_ELECTRA; break;
    default:
        if (td_task_is_generation_model(c->model_type, (const char *const *)c->architectures, c->n_architectures))
            return td_task_refuse_generation_model(ctx, c->path, c->model_type ? c->model_type : "?");
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "%s: model_type \"%s\" is not supported by export (supported: bert, roberta, xlm-roberta, "
                       "distilbert, electra)",
                       c->path, c->model_type ? c->model_type : "?");
    }
    snprintf(s->model_type, sizeof s->model_type, "%s", td_hf_family_name(c->family));
    if (c->n_architectures > 0) {
        if (strlen(c->architectures[0]) >= sizeof s->architecture)
            return td_fail(ctx, TD_ERR_FORMAT, "%s: architectures[0] is too long", c->path);
        snprintf(s->architecture, sizeof s->architecture, "%s", c->architectures[0]);
    }
    s->head = head_of(s->architecture);
    s->vocab = c->vocab_size;
    s->hidden = c->hidden_size;
    s->layers = c->num_hidden_layers;
    s->heads = c->num_attention_heads;
    s->intermediate = c->intermediate_size;
    s->max_positions = c->max_position_embeddings;
    s->type_vocab = c->enc.type_vocab_size;
    s->embedding_size = c->family == TD_HF_ELECTRA ? c->enc.embedding_size : c->hidden_size;
    s->pad_token_id = c->pad_token_id;
    s->num_labels = c->num_labels;
    s->layer_norm_eps = (float)c->norm_eps;
    s->has_token_types = s->type_vocab > 0;
    if (s->vocab < 1 || s->hidden < 1 || s->heads < 1 || s->intermediate < 1 || s->max_positions < 1 ||
        s->embedding_size < 1)
        return td_fail(ctx, TD_ERR_FORMAT,
                       "%s: vocab_size, hidden_size, num_attention_heads, intermediate_size, max_position_embeddings "
                       "and embedding_size must all be at least 1",
                       c->path);
    if (s->num_labels < 1 && s->head != TD_HEAD_NONE && s->head != TD_HEAD_OTHER)
        return td_fail(ctx, TD_ERR_FORMAT, "%s: num_labels is 0; a %s head needs at least one label", c->path,
                       s->architecture);
    if (!c->hidden_act || strlen(c->hidden_act) >= sizeof s->hidden_act || !td_eb_activation_supported(c->hidden_act))
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: activation \"%s\" is not supported (supported: %s)", c->path,
                       c->hidden_act ? c->hidden_act : "", td_eb_activation_names());
    snprintf(s->hidden_act, sizeof s->hidden_act, "%s", c->hidden_act);
    /* attention here is plain scaled dot product: the width per head must be hidden / heads */
    if (s->hidden % s->heads != 0 || c->head_dim != s->hidden / s->heads)
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "%s: head_dim %lld with hidden_size %lld and %lld heads is not supported", c->path,
                       (long long)c->head_dim, (long long)s->hidden, (long long)s->heads);
    const char *pet = c->enc.position_embedding_type;
    if (pet && strcmp(pet, "absolute") != 0)
        return td_fail(ctx, TD_ERR_UNSUPPORTED,
                       "%s: position_embedding_type \"%s\" is not supported (only \"absolute\" is)", c->path, pet);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c->json, "is_decoder")))
        return td_fail(ctx, TD_ERR_UNSUPPORTED, "%s: is_decoder=true (a %s used as a causal decoder) is not supported",
                       c->path, s->model_type);
    if (s->family == TD_FAM_ROBERTA && s->pad_token_id < 0)
        return td_fail(ctx, TD_ERR_FORMAT,
                       "%s: pad_token_id is null, but %s computes position ids from the padding index", c->path,
                       s->model_type);
    return labels_json(ctx, c, &s->id2label_json);
}

/* tokenizer_config.json's model_input_names decides whether token_type_ids is an
 * input; without it, token types are an input when the model distinguishes more
 * than one. A model without a token type table never takes them. */
static void token_type_input(const td_model_dir *md, td_encoder_spec *s) {
    const td_tokenizer_config *tc = md->tokenizer_config;
    s->token_type_input = s->has_token_types && s->type_vocab > 1;
    if (!tc || !tc->model_input_names)
        return;
    s->tokenizer_names_known = true;
    bool listed = false;
    for (size_t i = 0; i < tc->n_model_input_names; i++)
        if (strcmp(tc->model_input_names[i], "token_type_ids") == 0)
            listed = true;
    s->token_type_input = listed && s->has_token_types;
}

td_status td_encoder_spec_load(td_ctx *ctx, const char *model, td_encoder_spec *s) {
    td_model_dir *md = NULL;
    td_status st = td_model_dir_open(ctx, model, &md);
    if (st != TD_OK) {
        memset(s, 0, sizeof *s);
        return st;
    }
    return td_encoder_spec_from_dir(ctx, md, s);
}

td_status td_encoder_spec_from_dir(td_ctx *ctx, td_model_dir *md, td_encoder_spec *s) {
    memset(s, 0, sizeof *s);
    s->md = md;
    td_status st = from_config(ctx, s->md->config, s);
    if (st == TD_OK && s->md->st) {
        /* Transformer -> Pooling -> Normalize only; Dense, weighted-mean, last-token... are refused by name */
        st = td_st_info_check_supported(ctx, s->md->st, s->md->path);
        if (st == TD_OK && !s->md->st->has_pooling)
            st = td_fail(ctx, TD_ERR_UNSUPPORTED, "%s/modules.json: no Pooling module; export needs one for embedding",
                         s->md->path);
        s->is_sentence_transformer = true;
        s->pooling = s->md->st->pooling_modes;
        s->normalize = s->md->st->has_normalize;
    }
    if (st == TD_OK)
        token_type_input(s->md, s);
    if (st != TD_OK)
        td_encoder_spec_free(s);
    return st;
}

void td_encoder_spec_free(td_encoder_spec *s) {
    if (!s)
        return;
    free(s->id2label_json);
    s->id2label_json = NULL;
    td_model_dir_free(s->md);
    s->md = NULL;
}

/* ---------------- tasks ---------------- */

static td_export_task head_task(td_head_kind h) {
    switch (h) {
    case TD_HEAD_SEQCLS: return TD_TASK_CLASSIFICATION;
    case TD_HEAD_TOKCLS:
    case TD_HEAD_ELECTRA_DISCRIM: return TD_TASK_TOKEN_CLASSIFICATION;
    case TD_HEAD_QA: return TD_TASK_QUESTION_ANSWERING;
    default: return TD_TASK_AUTO;
    }
}

td_status td_encoder_spec_task(td_ctx *ctx, const td_encoder_spec *s, td_export_task requested,
                               td_export_task *out) {
    /* possible: the encoder's features always; the embedding pipeline when
     * sentence-transformers describes one; the head task of the architecture */
    td_export_task possible[3];
    int n = 0;
    td_export_task ht = head_task(s->head);
    if (s->is_sentence_transformer)
        possible[n++] = TD_TASK_EMBEDDING;
    if (ht != TD_TASK_AUTO)
        possible[n++] = ht;
    possible[n++] = TD_TASK_FEATURES;
    if (requested == TD_TASK_AUTO) {
        *out = possible[0];
        return TD_OK;
    }
    for (int i = 0; i < n; i++)
        if (possible[i] == requested) {
            *out = requested;
            return TD_OK;
        }
    char list[160] = "";
    for (int i = 0; i < n; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", td_export_task_name(possible[i]));
    }
    return td_fail(ctx, TD_ERR_UNSUPPORTED,
                   "task %s is not possible for %s (model_type %s%s): possible tasks are %s",
                   td_export_task_name(requested), s->architecture[0] ? s->architecture : "this model", s->model_type,
                   s->is_sentence_transformer ? ", sentence-transformers" : "", list);
}
