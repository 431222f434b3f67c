/* tdeploy tokenize: encode text with a model directory's tokenizer.json and
 * print ids, tokens, byte offsets and the attention mask (text or JSON).
 * (The tokenizer bench and the JSON-lines mode of the HF comparison tests live
 * in the test tool tests/tools/td_tok_tool.c, not in the product.) */
#include "cli/cli.h"
#include "core/log.h"
#include "tdeploy/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: tdeploy tokenize -m MODEL_DIR \"text\" [--pair \"text2\"] [--max-length N] [--json]\n"
               "                        [--no-special-tokens] [--decode]\n"
               "  MODEL_DIR   directory with tokenizer.json (+ tokenizer_config.json), or a tokenizer.json path\n"
               "  --pair      second sequence (question/answer style pairs)\n"
               "  --max-length N  truncate to N tokens (longest_first), special tokens included\n"
               "  --no-special-tokens  do not add [CLS]/[SEP], <s></s> ...\n"
               "  --json      print one JSON object instead of a table\n"
               "  --decode    also print the ids decoded back to text (special tokens skipped)\n"
               "  -v, --verbose | -q, --quiet  tokenizer details on stderr / no warnings\n"
               "offsets are byte offsets [start, end) into the text they came from.\n");
}

int td_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *pair = NULL;
    long max_length = -1;
    bool as_json = false, add_special = true, decode = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (td_cli_is_help(a)) {
            usage(stdout);
            return TD_EXIT_OK;
        } else if (td_cli_common_flag(a)) {
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (++i >= argc)
                return td_cli_usage_error("tokenize", "%s needs a MODEL_DIR", a);
            model = argv[i];
        } else if (!strcmp(a, "--pair")) {
            if (++i >= argc)
                return td_cli_usage_error("tokenize", "--pair needs a text");
            pair = argv[i];
        } else if (!strcmp(a, "--max-length")) {
            char *end;
            if (++i >= argc || (max_length = strtol(argv[i], &end, 10)) < 0 || *end)
                return td_cli_usage_error("tokenize", "--max-length needs a non-negative integer");
        } else if (!strcmp(a, "--json"))
            as_json = true;
        else if (!strcmp(a, "--decode"))
            decode = true;
        else if (!strcmp(a, "--no-special-tokens"))
            add_special = false;
        else if (a[0] == '-' && a[1])
            return td_cli_usage_error("tokenize", "unknown flag '%s'", a);
        else if (!text)
            text = a;
        else
            return td_cli_usage_error("tokenize", "unexpected argument '%s' (quote the text)", a);
    }
    if (!model)
        return td_cli_usage_error("tokenize", "-m MODEL_DIR is required");
    if (!text)
        return td_cli_usage_error("tokenize", "give the text to tokenize");
    td_ctx *ctx = td_ctx_new();
    if (!ctx)
        return TD_EXIT_FAIL;
    td_tokenizer *tok = NULL;
    td_encoding enc = {0};
    char *decoded = NULL;
    int rc = TD_EXIT_OK;
    td_status st = td_tokenizer_load(ctx, model, &tok);
    if (!st) {
        td_tok_options o;
        td_tokenizer_default_options(tok, &o);
        o.add_special_tokens = add_special;
        o.padding = TD_PAD_NONE;
        o.truncation = max_length >= 0;
        if (max_length >= 0) {
            o.max_length = (size_t)max_length;
            o.trunc_strategy = TD_TRUNC_LONGEST_FIRST;
        }
        td_debug("tokenize: %s: vocabulary of %zu tokens; %s; truncation %s (max %zu)", model,
                 td_tokenizer_vocab_size(tok), add_special ? "special tokens added" : "no special tokens",
                 o.truncation ? "on" : "off", o.max_length);
        st = td_tokenizer_encode(ctx, tok, text, strlen(text), pair, pair ? strlen(pair) : 0, &o, &enc);
        if (!st)
            td_debug("tokenize: %zu tokens%s", enc.len, enc.truncated ? ", truncated" : "");
    }
    if (!st && decode) {
        st = td_tokenizer_decode(ctx, tok, enc.ids, enc.len, true, &decoded);
    }
    if (st) {
        rc = td_cli_report("tokenize", ctx, st);
        goto out;
    }
    if (as_json) {
        cJSON *root = cJSON_CreateObject();
        cJSON *ids = cJSON_AddArrayToObject(root, "ids");
        cJSON *toks = cJSON_AddArrayToObject(root, "tokens");
        cJSON *types = cJSON_AddArrayToObject(root, "type_ids");
        cJSON *offs = cJSON_AddArrayToObject(root, "offsets");
        cJSON *mask = cJSON_AddArrayToObject(root, "attention_mask");
        cJSON *smask = cJSON_AddArrayToObject(root, "special_tokens_mask");
        for (size_t i = 0; i < enc.len; i++) {
            cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)enc.ids[i]));
            cJSON_AddItemToArray(toks, cJSON_CreateString(enc.tokens[i]));
            cJSON_AddItemToArray(types, cJSON_CreateNumber((double)enc.type_ids[i]));
            cJSON *pr = cJSON_CreateArray();
            cJSON_AddItemToArray(pr, cJSON_CreateNumber((double)enc.offsets[2 * i]));
            cJSON_AddItemToArray(pr, cJSON_CreateNumber((double)enc.offsets[2 * i + 1]));
            cJSON_AddItemToArray(offs, pr);
            cJSON_AddItemToArray(mask, cJSON_CreateNumber((double)enc.attention_mask[i]));
            cJSON_AddItemToArray(smask, cJSON_CreateNumber((double)enc.special_tokens_mask[i]));
        }
        if (decoded)
            cJSON_AddStringToObject(root, "decoded", decoded);
        rc = td_cli_print_json("tokenize", root);
    } else {
        printf("%zu tokens\n", enc.len);
        printf("%5s %8s %4s %5s %14s  %s\n", "index", "id", "type", "mask", "offsets", "token");
        for (size_t i = 0; i < enc.len; i++) {
            char off[40];
            snprintf(off, sizeof off, "[%lld, %lld)", (long long)enc.offsets[2 * i],
                     (long long)enc.offsets[2 * i + 1]);
            printf("%5zu %8lld %4lld %5lld %14s  %s\n", i, (long long)enc.ids[i], (long long)enc.type_ids[i],
                   (long long)enc.attention_mask[i], off, enc.tokens[i]);
        }
        if (decoded)
            printf("decoded: %s\n", decoded);
    }
out:
    free(decoded);
    td_encoding_free(&enc);
    td_tokenizer_free(tok);
    td_ctx_free(ctx);
    return rc;
}
