/* tdeploy generate: text generation from a decoder (HF directory, cached hub id or .onnx with a KV cache). */
#define _GNU_SOURCE
#include "cli/cli.h"

#include "core/ctx.h"
#include "core/fs.h"
#include "core/log.h"
#include "generate/generator.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROMPTS 64

static volatile sig_atomic_t g_interrupted;
/* "generate", or "run" when tdeploy run hands a decoder over (messages name the command the user typed) */
static const char *g_cmd = "generate";

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C stops at once */
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: tdeploy generate MODEL (--prompt TEXT | --prompt-ids IDS | --chat TEXT | --messages JSON)...\n"
            "                        [--system TEXT] [--max-new-tokens N]\n"
            "                        [--do-sample] [--temperature T] [--top-k K] [--top-p P] [--min-p P]\n"
            "                        [--repetition-penalty R] [--seed S] [--stop STRING]... [--eos-id ID]...\n"
            "                        [--tokenizer DIR] [--precision auto|fp32|int8] [--threads N] [--json] [-q|-v]\n\n"
            "Generate text with a decoder (GPT-2, Llama, Mistral, Qwen2, Phi-3) through its KV cache on the CPU.\n"
            "MODEL is a Hugging Face directory or cached org/name (exported in memory) or a decoder .onnx\n"
            "(tdeploy export --task text-generation, or Optimum's text-generation-with-past export). Several\n"
            "prompts are generated together as one left-padded batch. Text is streamed to stdout as it is\n"
            "produced (one prompt, without --json).\n\n"
            "  --prompt TEXT          prompt text (tokenized with the model's tokenizer, special tokens added)\n"
            "  --prompt-ids IDS       prompt as comma-separated token ids\n"
            "  --chat TEXT            a user message, put into the model's chat template (tokenizer_config.json,\n"
            "                         chat_template.jinja or the GGUF's) with the generation prompt added\n"
            "  --system TEXT          a system message before each --chat message (else the template's default)\n"
            "  --messages JSON        a whole conversation for the chat template: [{\"role\": \"user\",\n"
            "                         \"content\": \"...\"}, ...], or @FILE holding it\n"
            "  --max-new-tokens N     tokens to generate at most (default 32); generation stops earlier when\n"
            "                         prompt + new tokens fill the model's context (finish \"context\")\n"
            "  --do-sample            sample instead of greedy decoding; --temperature, --top-k, --top-p and\n"
            "                         --min-p turn it on too (transformers' semantics, applied in that order)\n"
            "  --temperature T        divide logits by T > 0 (default 1)\n"
            "  --top-k K              keep the K most likely tokens (0 = off, default)\n"
            "  --top-p P              keep the most likely tokens up to probability mass P (default 1 = off)\n"
            "  --min-p P              drop tokens below P x the best probability (default 0 = off)\n"
            "  --repetition-penalty R penalize tokens already seen (1 = off, default; also applies to greedy)\n"
            "  --seed S               random seed for sampling (default 0): the same seed gives the same text\n"
            "  --stop STRING          end a prompt's generation when its text contains STRING (repeatable)\n"
            "  --eos-id ID            end-of-sequence id (repeatable; default: generation_config/config.json)\n"
            "  --tokenizer DIR        tokenizer.json (and config files) for an .onnx file (default: beside it)\n"
            "  --precision P          auto (default): a .gguf's Q4_0/Q4_1/Q8_0/Q4_K/Q6_K matrices stay in their\n"
            "                         blocks (MatMulNBits) and multiply fp32 activations (the dequantized model's\n"
            "                         results); int8: blocks kept, activations quantized to int8 per block as\n"
            "                         llama.cpp does (faster, answers may differ); fp32: dequantized to float32\n"
            "  --threads N            worker threads (default: one per core)\n"
            "  --json                 print ids, text, finish reason and timings as JSON on stdout\n"
            "  -q, --quiet / -v, --verbose\n\n"
            "Exit status: 0 done, 1 error, 2 usage, 130 interrupted.\n");
}

static bool parse_float(const char *s, double lo, double hi, float *out) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v) || v < lo || v > hi)
        return false;
    *out = (float)v;
    return true;
}

/* "1, 2,3" -> ids (malloc'd) */
static bool parse_ids(const char *s, int64_t **ids, size_t *n) {
    size_t cap = 16, k = 0;
    int64_t *v = malloc(cap * sizeof *v);
    const char *p = s;
    while (v && *p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        char *end = NULL;
        long long x = strtoll(p, &end, 10);
        if (end == p || x < 0) {
            free(v);
            return false;
        }
        if (k == cap) {
            int64_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                return false;
            }
            v = nv;
        }
        v[k++] = x;
        p = end;
    }
    if (!v || k == 0) {
        free(v);
        return false;
    }
    *ids = v;
    *n = k;
    return true;
}

static void stream_text(void *user, int row, const char *text, size_t len) {
    (void)user;
    (void)row;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

static cJSON *ids_json(const int64_t *ids, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)ids[i]));
    return a;
}

static void print_json(const char *model, int64_t *const *prompts, const size_t *lens, size_t n,
                       const td_gen_result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", model);
    cJSON *rows = cJSON_AddArrayToObject(j, "results");
    size_t tokens = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "prompt_ids", ids_json(prompts[i], lens[i]));
        cJSON_AddItemToObject(o, "ids", ids_json(r[i].ids, r[i].n_ids));
        if (r[i].text)
            cJSON_AddStringToObject(o, "text", r[i].text);
        cJSON_AddStringToObject(o, "finish", r[i].finish);
        cJSON_AddItemToArray(rows, o);
        tokens += r[i].n_ids;
    }
    cJSON_AddNumberToObject(j, "prefill_seconds", r[0].prefill_s);
    cJSON_AddNumberToObject(j, "decode_seconds", r[0].decode_s);
    cJSON_AddNumberToObject(j, "prefill_cpu_seconds", r[0].prefill_cpu_s);
    cJSON_AddNumberToObject(j, "decode_cpu_seconds", r[0].decode_cpu_s);
    cJSON_AddNumberToObject(j, "new_tokens", (double)tokens);
    cJSON *rt = cJSON_AddObjectToObject(j, "runtime"); /* what the request cost: see td_gen_result */
    cJSON_AddBoolToObject(rt, "kv_in_place", r[0].kv_in_place);
    cJSON_AddStringToObject(rt, "kv_cache", r[0].kv_cache ? r[0].kv_cache : "copied per step");
    cJSON_AddNumberToObject(rt, "plans", (double)r[0].plans);
    cJSON_AddNumberToObject(rt, "session_allocs", (double)r[0].session_allocs);
    cJSON_AddNumberToObject(rt, "cache_copy_bytes", (double)r[0].cache_copy_bytes);
    char *text = cJSON_Print(j);
    if (text)
        printf("%s\n", text);
    free(text);
    cJSON_Delete(j);
}

typedef struct args {
    const char *model;
    const char *texts[MAX_PROMPTS];
    int64_t *ids[MAX_PROMPTS];
    size_t lens[MAX_PROMPTS];
    bool is_text[MAX_PROMPTS];
    int chat[MAX_PROMPTS];   /* 0 prompt, 1 --chat text, 2 --messages JSON (in texts[]) */
    const char *system;
    size_t n;
    td_generator_options gopt;
    int64_t max_new;
    td_sampling sampling;
    bool sampling_flag;
    const char *stop[TD_GEN_MAX_STOP];
    size_t n_stop;
    int64_t eos[TD_GEN_MAX_EOS];
    size_t n_eos;
    bool json, ignore_eos;
} args;

static int parse_args(int argc, char **argv, args *a) {
    td_sampling_defaults(&a->sampling);
    a->max_new = 32;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        if (td_cli_is_help(s)) {
            usage(stdout);
            return -1;
        } else if (td_cli_common_flag(s)) {
            continue;
        } else if (!strcmp(s, "--json")) {
            a->json = true;
        } else if (!strcmp(s, "--ignore-eos")) {
            a->ignore_eos = true;
        } else if (!strcmp(s, "--do-sample")) {
            a->sampling.do_sample = true;
        } else if (s[0] == '-' && s[1] == '-') {
            if (!v)
                return td_cli_usage_error(g_cmd, "%s needs a value", s);
            i++;
            if (!strcmp(s, "--system")) {
                a->system = v;
            } else if (!strcmp(s, "--prompt") || !strcmp(s, "--prompt-ids") || !strcmp(s, "--chat") ||
                       !strcmp(s, "--messages")) {
                if (a->n == MAX_PROMPTS)
                    return td_cli_usage_error(g_cmd, "at most %d prompts", MAX_PROMPTS);
                a->chat[a->n] = !strcmp(s, "--chat") ? 1 : !strcmp(s, "--messages") ? 2 : 0;
                a->is_text[a->n] = strcmp(s, "--prompt-ids") != 0;
                if (a->is_text[a->n])
                    a->texts[a->n] = v;
                else if (!parse_ids(v, &a->ids[a->n], &a->lens[a->n]))
                    return td_cli_usage_error(g_cmd, "--prompt-ids '%s' is not a list of token ids", v);
                a->n++;
            } else if (!strcmp(s, "--max-new-tokens")) {
                if (!td_cli_parse_i64(v, 1, 1 << 24, &a->max_new))
                    return td_cli_usage_error(g_cmd, "--max-new-tokens '%s' must be in 1..%d", v, 1 << 24);
            } else if (!strcmp(s, "--temperature")) {
                a->sampling_flag = true;
                if (!parse_float(v, 1e-6, 1e6, &a->sampling.temperature))
                    return td_cli_usage_error(g_cmd, "--temperature '%s' must be a number > 0", v);
            } else if (!strcmp(s, "--top-k")) {
                a->sampling_flag = true;
                if (!td_cli_parse_i64(v, 0, INT32_MAX, &a->sampling.top_k))
                    return td_cli_usage_error(g_cmd, "--top-k '%s' must be a count >= 0", v);
            } else if (!strcmp(s, "--top-p")) {
                a->sampling_flag = true;
                if (!parse_float(v, 1e-9, 1.0, &a->sampling.top_p))
                    return td_cli_usage_error(g_cmd, "--top-p '%s' must be in (0, 1]", v);
            } else if (!strcmp(s, "--min-p")) {
                a->sampling_flag = true;
                if (!parse_float(v, 0.0, 1.0, &a->sampling.min_p))
                    return td_cli_usage_error(g_cmd, "--min-p '%s' must be in [0, 1]", v);
            } else if (!strcmp(s, "--repetition-penalty")) {
                if (!parse_float(v, 1e-6, 1e6, &a->sampling.repetition_penalty))
                    return td_cli_usage_error(g_cmd, "--repetition-penalty '%s' must be a number > 0", v);
            } else if (!strcmp(s, "--seed")) {
                if (!td_cli_parse_i64(v, 0, INT64_MAX, &x))
                    return td_cli_usage_error(g_cmd, "--seed '%s' must be an integer >= 0", v);
                a->sampling.seed = (uint64_t)x;
            } else if (!strcmp(s, "--stop")) {
                if (a->n_stop == TD_GEN_MAX_STOP || !*v)
                    return td_cli_usage_error(g_cmd, "--stop needs a non-empty string (at most %d)",
                                              TD_GEN_MAX_STOP);
                a->stop[a->n_stop++] = v;
            } else if (!strcmp(s, "--eos-id")) {
                if (a->n_eos == TD_GEN_MAX_EOS || !td_cli_parse_i64(v, 0, INT64_MAX, &x))
                    return td_cli_usage_error(g_cmd, "--eos-id '%s' must be a token id (at most %d)", v,
                                              TD_GEN_MAX_EOS);
                a->eos[a->n_eos++] = x;
            } else if (!strcmp(s, "--tokenizer")) {
                a->gopt.tokenizer_dir = v;
            } else if (!strcmp(s, "--precision")) {
                bool fp32 = !strcmp(v, "fp32") || !strcmp(v, "float32"), int8 = !strcmp(v, "int8");
                if (!fp32 && !int8 && strcmp(v, "auto") != 0)
                    return td_cli_usage_error(g_cmd, "--precision '%s' is not supported (auto, fp32, int8)", v);
                a->gopt.gguf_dequantize = fp32;
                a->gopt.gguf_int8_activations = int8;
            } else if (!strcmp(s, "--threads")) {
                if (!td_cli_parse_i64(v, 0, 1024, &x))
                    return td_cli_usage_error(g_cmd, "--threads '%s' must be in 0..1024", v);
                a->gopt.threads = (int)x;
            } else {
                return td_cli_usage_error(g_cmd, "unknown option '%s'", s);
            }
        } else if (!a->model) {
            a->model = s;
        } else {
            return td_cli_usage_error(g_cmd, "unexpected argument '%s'", s);
        }
    }
    if (!a->model)
        return td_cli_usage_error(g_cmd, "MODEL is required");
    if (a->n == 0)
        return td_cli_usage_error(g_cmd, "give a prompt with --prompt TEXT, --prompt-ids IDS, --chat TEXT or "
                                  "--messages JSON");
    if (a->sampling_flag)
        a->sampling.do_sample = true;
    return 0;
}

/* --messages JSON (or @FILE) -> messages; strings point into *json (kept by the caller). */
static td_status parse_messages(td_ctx *ctx, const char *arg, cJSON **json, td_chat_message **msgs, size_t *n) {
    char *text = NULL;
    size_t len = 0;
    if (arg[0] == '@')
        TD_TRY(td_read_file(ctx, arg + 1, 16 << 20, &text, &len));
    *json = cJSON_Parse(text ? text : arg);
    free(text);
    size_t count = cJSON_IsArray(*json) ? (size_t)cJSON_GetArraySize(*json) : 0;
    if (count == 0 || !(*msgs = calloc(count, sizeof **msgs)))
        return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "--messages must be a non-empty JSON array of {\"role\": ..., "
                       "\"content\": ...} objects");
    const cJSON *e;
    *n = 0;
    cJSON_ArrayForEach(e, *json) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(e, "role"), *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsString(r) || !cJSON_IsString(c))
            return td_fail(ctx, TD_ERR_INVALID_ARGUMENT, "--messages: message %zu needs string \"role\" and "
                           "\"content\"", *n);
        (*msgs)[(*n)++] = (td_chat_message){r->valuestring, c->valuestring};
    }
    return TD_OK;
}

/* The chat prompt of entry i: --system + --chat text, or the --messages conversation. */
static td_status chat_text(td_ctx *ctx, const td_generator *g, const args *a, size_t i, char **prompt) {
    if (a->chat[i] == 1) {
        td_chat_message m[2] = {{"system", a->system}, {"user", a->texts[i]}};
        return a->system ? td_generator_chat_prompt(ctx, g, m, 2, prompt)
                         : td_generator_chat_prompt(ctx, g, m + 1, 1, prompt);
    }
    cJSON *json = NULL;
    td_chat_message *msgs = NULL;
    size_t n = 0;
    td_status st = parse_messages(ctx, a->texts[i], &json, &msgs, &n);
    if (st == TD_OK)
        st = td_generator_chat_prompt(ctx, g, msgs, n, prompt);
    free(msgs);
    cJSON_Delete(json);
    return st;
}

/* Tokenize --prompt texts (special tokens added, as transformers' tokenizer(prompt) does) and chat prompts
 * (no special tokens added: the template wrote them, as apply_chat_template). */
static td_status tokenize_prompts(td_ctx *ctx, const td_generator *g, args *a) {
    const td_tokenizer *tok = td_generator_tokenizer(g);
    for (size_t i = 0; i < a->n; i++) {
        if (!a->is_text[i])
            continue;
        if (!tok)
            return td_fail(ctx, TD_ERR_NOT_FOUND, "--prompt and --chat need the model's tokenizer.json (pass "
                           "--tokenizer DIR) or give --prompt-ids");
        td_tok_options to;
        td_tokenizer_default_options(tok, &to);
        char *chat = NULL;
        if (a->chat[i]) {
            TD_TRY(chat_text(ctx, g, a, i, &chat));
            to.add_special_tokens = false;
            td_debug("chat prompt %zu: %s", i, chat);
        }
        const char *text = chat ? chat : a->texts[i];
        td_encoding enc;
        td_status est = td_tokenizer_encode(ctx, tok, text, strlen(text), NULL, 0, &to, &enc);
        free(chat);
        TD_TRY(est);
        a->ids[i] = malloc((enc.len ? enc.len : 1) * sizeof(int64_t));
        if (a->ids[i])
            memcpy(a->ids[i], enc.ids, enc.len * sizeof(int64_t));
        a->lens[i] = enc.len;
        td_encoding_free(&enc);
        if (!a->ids[i])
            return td_fail_oom(ctx, enc.len * sizeof(int64_t), "prompt ids");
    }
    return TD_OK;
}

int td_cmd_generate(int argc, char **argv) {
    g_cmd = argc > 0 && !strcmp(argv[0], "run") ? "run" : "generate";
    args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (rc != 0) {
        for (size_t i = 0; i < a.n; i++)
            free(a.ids[i]);
        return rc < 0 ? TD_EXIT_OK : rc;
    }
    if (a.json && td_log_get_level() > TD_LOG_WARN)
        td_log_set_level(TD_LOG_WARN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    td_ctx *ctx = td_ctx_new();
    td_generator *g = NULL;
    td_gen_result res[MAX_PROMPTS];
    memset(res, 0, sizeof res);
    td_status st = ctx ? td_generator_open(ctx, a.model, &a.gopt, &g) : TD_ERR_OUT_OF_MEMORY;
    if (st == TD_OK)
        st = tokenize_prompts(ctx, g, &a);
    if (st == TD_OK) {
        td_gen_options o;
        td_gen_options_defaults(g, &o);
        o.sampling = a.sampling;
        o.max_new_tokens = a.max_new;
        if (a.n_eos) {
            memcpy(o.eos_ids, a.eos, a.n_eos * sizeof a.eos[0]);
            o.n_eos = a.n_eos;
        }
        if (a.ignore_eos)
            o.n_eos = 0;
        memcpy(o.stop, a.stop, a.n_stop * sizeof a.stop[0]);
        o.n_stop = a.n_stop;
        o.interrupt = &g_interrupted;
        bool stream = !a.json && a.n == 1 && td_generator_tokenizer(g);
        if (stream)
            o.on_text = stream_text;
        st = td_generate(ctx, g, (const int64_t *const *)a.ids, a.lens, a.n, &o, res);
        if (st == TD_OK && a.json) {
            print_json(a.model, a.ids, a.lens, a.n, res);
        } else if (st == TD_OK && stream) {
            printf("\n");
            fflush(stdout);
        } else if (st == TD_OK) {
            for (size_t i = 0; i < a.n; i++) {
                if (res[i].text) {
                    printf("[%zu] %s\n", i, res[i].text);
                } else {
                    printf("[%zu]", i);
                    for (size_t k = 0; k < res[i].n_ids; k++)
                        printf(" %lld", (long long)res[i].ids[k]);
                    printf("\n");
                }
            }
        }
        if (st == TD_OK) {
            size_t tokens = 0, full = 0;
            for (size_t i = 0; i < a.n; i++) {
                tokens += res[i].n_ids;
                full += res[i].finish && !strcmp(res[i].finish, "context");
            }
            if (full)
                td_warn("context full: generation of %zu prompt(s) stopped at the model's %lld positions (prompt + new "
                        "tokens) before --max-new-tokens %lld", full, (long long)td_generator_context(g),
                        (long long)o.max_new_tokens);
            td_info("%zu prompt(s), %zu new tokens: prefill %.1f ms, decode %.1f ms/step", a.n, tokens,
                    res[0].prefill_s * 1e3, res[0].n_ids > 1 ? res[0].decode_s * 1e3 / (double)(res[0].n_ids - 1) : 0);
        }
    }
    if (st == TD_ERR_INTERRUPTED) {
        fprintf(stderr, "\ntdeploy %s: %s\n", g_cmd, td_error_message(ctx));
        rc = TD_EXIT_INTERRUPTED;
    } else if (st == TD_ERR_OUT_OF_MEMORY && !ctx) {
        fprintf(stderr, "tdeploy %s: out of memory\n", g_cmd);
        rc = TD_EXIT_FAIL;
    } else if (st != TD_OK) {
        rc = td_cli_report(g_cmd, ctx, st);
    }
    td_gen_results_free(res, a.n);
    td_generator_free(g);
    for (size_t i = 0; i < a.n; i++)
        free(a.ids[i]);
    td_ctx_free(ctx);
    return rc;
}
