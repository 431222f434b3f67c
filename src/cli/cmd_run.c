/* tdeploy run: text in, answers out. Texts from --text (repeated) and/or a
 * file / stdin with one text per line, run through src/pipeline in batches;
 * printed as a short human summary or as one JSON object per input text. */
#define _GNU_SOURCE
#include "cli/cli.h"

#include "pipeline/text_pipeline.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "run"
#define DEFAULT_BATCH 8
#define MAX_BATCH 4096

static void usage(FILE *f) {
    fprintf(f,
            "usage: tdeploy run MODEL_OR_ENGINE --text \"...\" [--text-pair \"...\"] [--texts FILE|-]\n"
            "                   [--batch-size N] [--max-length N] [--task T] [--threads N] [--top-k N]\n"
            "                   [--max-answer-len N] [--tokenizer DIR] [--json] [-q] [-v]\n"
            "  MODEL_OR_ENGINE  Hugging Face model directory or cached hub id (org/name): exported in memory;\n"
            "                   an .onnx file (tokenizer.json and config.json beside it, or --tokenizer DIR);\n"
            "                   or a directory from `tdeploy convert` (runs model-optimized.onnx, else model.onnx)\n"
            "                   A decoder (gpt2, llama, mistral, qwen2, phi3 in config.json, or --task\n"
            "                   text-generation) generates text from each --text as `tdeploy generate` does\n"
            "  --text T         an input text (repeat for more); for question-answering the question\n"
            "  --text-pair P    the second text of the --text with the same position (QA: the context;\n"
            "                   classification: optional pair, e.g. NLI)\n"
            "  --texts FILE     one text per line (- = stdin); for tasks that take pairs a tab separates the\n"
            "                   text from its pair, for the others a tab is part of the text\n"
            "  --batch-size N   texts per model run (default %d); a batch is padded to its longest text\n"
            "  --max-length N   tokens per text incl. special tokens (default: the model's maximum)\n"
            "  --task T         embedding, feature-extraction, classification, token-classification,\n"
            "                   question-answering (default: from the model)\n"
            "  --threads N      CPU threads (default: all cores)\n"
            "  --top-k N        classification: the N best labels (default 1)\n"
            "  --max-answer-len N  question-answering: longest answer in tokens (default 15)\n"
            "  --json           one JSON object per input text (embeddings, logits, entities, answers)\n"
            "Offsets (start, end) are character offsets into the text (QA: into the context).\n",
            DEFAULT_BATCH);
}

typedef struct run_args {
    const char *model, *tokenizer, *texts_file;
    const char **texts, **pairs;
    size_t n_texts, n_pairs;
    int64_t batch, max_length, threads, top_k, max_answer_len;
    const char *task;
    bool json;
} run_args;

/* Returns -1 on success, else the exit code. */
static int parse_args(int argc, char **argv, run_args *a) {
    a->batch = DEFAULT_BATCH;
    if (!(a->texts = calloc((size_t)argc, sizeof *a->texts)) || !(a->pairs = calloc((size_t)argc, sizeof *a->pairs))) {
        fprintf(stderr, "tdeploy run: out of memory\n");
        return TD_EXIT_FAIL;
    }
    static const struct {
        const char *flag;
        int64_t lo, hi;
        size_t off;
    } nums[] = {
        {"--batch-size", 1, MAX_BATCH, offsetof(run_args, batch)},
        {"--max-length", 1, 1 << 24, offsetof(run_args, max_length)},
        {"--threads", 1, 1024, offsetof(run_args, threads)},
        {"--top-k", 1, 1000000, offsetof(run_args, top_k)},
        {"--max-answer-len", 1, 1 << 24, offsetof(run_args, max_answer_len)},
    };
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (td_cli_is_help(f)) {
            usage(stdout);
            return TD_EXIT_OK;
        }
        if (td_cli_common_flag(f))
            continue;
        bool numeric = false;
        for (size_t k = 0; k < sizeof nums / sizeof *nums; k++) {
            if (strcmp(f, nums[k].flag))
                continue;
            numeric = true;
            if (++i >= argc || !td_cli_parse_i64(argv[i], nums[k].lo, nums[k].hi, (int64_t *)((char *)a + nums[k].off)))
                return td_cli_usage_error(CMD, "%s needs an integer from %lld to %lld", f, (long long)nums[k].lo,
                                          (long long)nums[k].hi);
        }
        if (numeric)
            continue;
        bool takes_value = !strcmp(f, "--text") || !strcmp(f, "--text-pair") || !strcmp(f, "--texts") ||
                           !strcmp(f, "--task") || !strcmp(f, "--tokenizer");
        if (takes_value && ++i >= argc)
            return td_cli_usage_error(CMD, "%s needs a value", f);
        if (!strcmp(f, "--text"))
            a->texts[a->n_texts++] = argv[i];
        else if (!strcmp(f, "--text-pair"))
            a->pairs[a->n_pairs++] = argv[i];
        else if (!strcmp(f, "--texts"))
            a->texts_file = argv[i];
        else if (!strcmp(f, "--task"))
            a->task = argv[i];
        else if (!strcmp(f, "--tokenizer"))
            a->tokenizer = argv[i];
        else if (!strcmp(f, "--json"))
            a->json = true;
        else if (f[0] == '-' && f[1])
            return td_cli_usage_error(CMD, "unknown flag '%s'", f);
        else if (!a->model)
            a->model = f;
        else
            return td_cli_usage_error(CMD, "unexpected argument '%s' (texts go after --text; quote them)", f);
    }
    if (!a->model)
        return td_cli_usage_error(CMD, "give the model: a model directory, hub id, .onnx file or engine directory");
    if (!a->n_texts && !a->texts_file)
        return td_cli_usage_error(CMD, "give the input: --text \"...\" (repeatable) or --texts FILE (- for stdin)");
    if (a->n_pairs && a->n_pairs != a->n_texts)
        return td_cli_usage_error(CMD, "%zu --text-pair for %zu --text: give one pair per text", a->n_pairs,
                                  a->n_texts);
    return -1;
}

/* ---- printing ------------------------------------------------------------ */

static cJSON *float_array(const float *v, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(isfinite(v[i]) ? (double)v[i] : 0.0));
    return a;
}

static cJSON *float_matrix(const float *v, size_t rows, size_t cols) {
    cJSON *a = cJSON_CreateArray();
    for (size_t r = 0; a && r < rows; r++)
        cJSON_AddItemToArray(a, float_array(v + r * cols, cols));
    return a;
}

static cJSON *int_array(const int64_t *v, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

static cJSON *result_json(size_t index, const char *text, const char *pair, const td_pipe_result *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", (double)index);
    cJSON_AddStringToObject(o, "text", text);
    if (pair)
        cJSON_AddStringToObject(o, "text_pair", pair);
    cJSON_AddStringToObject(o, "task", td_export_task_name(r->task));
    cJSON_AddNumberToObject(o, "n_tokens", (double)r->n_tokens);
    cJSON_AddBoolToObject(o, "truncated", r->truncated);
    cJSON_AddItemToObject(o, "input_ids", int_array(r->input_ids, r->n_tokens));
    switch (r->task) {
    case TD_TASK_EMBEDDING: cJSON_AddItemToObject(o, "embedding", float_array(r->vector, r->dim)); break;
    case TD_TASK_FEATURES:
        cJSON_AddItemToObject(o, "mean_pooled", float_array(r->vector, r->dim));
        if (r->hidden)
            cJSON_AddItemToObject(o, "last_hidden_state", float_matrix(r->hidden, r->n_tokens, r->dim));
        break;
    case TD_TASK_CLASSIFICATION: {
        if (r->n_top) {
            cJSON_AddStringToObject(o, "label", r->labels[0].label);
            cJSON_AddNumberToObject(o, "score", r->labels[0].score);
        }
        cJSON *top = cJSON_AddArrayToObject(o, "top");
        for (size_t i = 0; top && i < r->n_top; i++) {
            cJSON *l = cJSON_CreateObject();
            cJSON_AddStringToObject(l, "label", r->labels[i].label);
            cJSON_AddNumberToObject(l, "id", (double)r->labels[i].id);
            cJSON_AddNumberToObject(l, "score", r->labels[i].score);
            cJSON_AddItemToArray(top, l);
        }
        cJSON_AddItemToObject(o, "logits", float_array(r->logits, r->n_labels));
        break;
    }
    case TD_TASK_TOKEN_CLASSIFICATION: {
        cJSON *ents = cJSON_AddArrayToObject(o, "entities");
        for (size_t i = 0; ents && i < r->n_entities; i++) {
            const td_pipe_entity *e = &r->entities[i];
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "entity_group", e->group);
            cJSON_AddNumberToObject(j, "score", e->score);
            cJSON_AddStringToObject(j, "word", e->word ? e->word : "");
            cJSON_AddNumberToObject(j, "start", (double)e->start);
            cJSON_AddNumberToObject(j, "end", (double)e->end);
            cJSON_AddNumberToObject(j, "first_token", (double)e->first_token);
            cJSON_AddNumberToObject(j, "last_token", (double)e->last_token);
            cJSON_AddItemToArray(ents, j);
        }
        cJSON_AddItemToObject(o, "logits", float_matrix(r->logits, r->n_tokens, r->n_labels));
        break;
    }
    case TD_TASK_QUESTION_ANSWERING:
        cJSON_AddStringToObject(o, "answer", r->answer ? r->answer : "");
        cJSON_AddNumberToObject(o, "score", r->score);
        cJSON_AddNumberToObject(o, "start", (double)r->answer_start);
        cJSON_AddNumberToObject(o, "end", (double)r->answer_end);
        cJSON_AddNumberToObject(o, "start_token", (double)r->answer_first_token);
        cJSON_AddNumberToObject(o, "end_token", (double)r->answer_last_token);
        cJSON_AddItemToObject(o, "start_logits", float_array(r->start_logits, r->n_tokens));
        cJSON_AddItemToObject(o, "end_logits", float_array(r->end_logits, r->n_tokens));
        break;
    case TD_TASK_AUTO:
    case TD_TASK_TEXT_GENERATION: break;
    }
    return o;
}

/* A short one-line rendering of a text: control characters escaped, cut at
 * about 48 bytes on a UTF-8 boundary. */
static void print_snippet(const char *s) {
    putchar('"');
    size_t n = 0;
    for (; *s && n < 48; s++, n++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c < 0x20)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    while (*s && ((unsigned char)*s & 0xC0) == 0x80)
        putchar(*s++);
    fputs(*s ? "...\"" : "\"", stdout);
}

static void print_floats(const float *v, size_t n, size_t shown) {
    putchar('[');
    for (size_t i = 0; i < n && i < shown; i++)
        printf("%s%.4f", i ? ", " : "", v[i]);
    printf("%s]", n > shown ? ", ..." : "");
}

static void print_human(size_t index, const char *text, const td_pipe_result *r) {
    printf("[%zu] ", index);
    print_snippet(text);
    printf(" (%zu tokens%s)\n", r->n_tokens, r->truncated ? ", truncated" : "");
    switch (r->task) {
    case TD_TASK_EMBEDDING: {
        double norm = 0;
        for (size_t i = 0; i < r->dim; i++)
            norm += (double)r->vector[i] * r->vector[i];
        printf("    embedding (%zu values, norm %.4f): ", r->dim, sqrt(norm));
        print_floats(r->vector, r->dim, 6);
        putchar('\n');
        break;
    }
    case TD_TASK_FEATURES:
        printf("    last_hidden_state (%zu, %zu) (--json prints it); mean-pooled: ", r->n_tokens, r->dim);
        print_floats(r->vector, r->dim, 6);
        putchar('\n');
        break;
    case TD_TASK_CLASSIFICATION:
        for (size_t i = 0; i < r->n_top; i++)
            printf("    %-20s %.4f\n", r->labels[i].label, r->labels[i].score);
        break;
    case TD_TASK_TOKEN_CLASSIFICATION:
        if (!r->n_entities)
            printf("    (no entities)\n");
        for (size_t i = 0; i < r->n_entities; i++) {
            const td_pipe_entity *e = &r->entities[i];
            printf("    %-10s %.4f  [%lld, %lld)  ", e->group, e->score, (long long)e->start, (long long)e->end);
            print_snippet(e->word ? e->word : "");
            putchar('\n');
        }
        break;
    case TD_TASK_QUESTION_ANSWERING:
        printf("    answer ");
        print_snippet(r->answer ? r->answer : "");
        printf("  score %.4f  [%lld, %lld) in the context\n", r->score, (long long)r->answer_start,
               (long long)r->answer_end);
        break;
    case TD_TASK_AUTO:
    case TD_TASK_TEXT_GENERATION: break;
    }
}

/* ---- input --------------------------------------------------------------- */

/* Inputs of one batch; lines read from the file are owned here. */
typedef struct batch {
    const char **texts, **pairs;
    char **owned;
    size_t n, n_owned;
    bool any_pair;
} batch;

static void batch_reset(batch *b) {
    for (size_t i = 0; i < b->n_owned; i++)
        free(b->owned[i]);
    b->n = b->n_owned = 0;
    b->any_pair = false;
}

static int run_batch(td_ctx *ctx, td_pipeline *p, batch *b, size_t first_index, bool json, td_pipe_result *res) {
    if (!b->n)
        return TD_EXIT_OK;
    const char *const *pairs = b->any_pair ? b->pairs : NULL;
    td_status st = td_pipeline_run(ctx, p, b->texts, pairs, b->n, first_index, res);
    if (st != TD_OK)
        return td_cli_report(CMD, ctx, st);
    int rc = TD_EXIT_OK;
    for (size_t i = 0; i < b->n; i++) {
        if (json) {
            cJSON *o = result_json(first_index + i, b->texts[i], pairs ? pairs[i] : NULL, &res[i]);
            char *s = o ? cJSON_PrintUnformatted(o) : NULL;
            if (s)
                printf("%s\n", s);
            else {
                fprintf(stderr, "tdeploy run: out of memory printing the results\n");
                rc = TD_EXIT_FAIL;
            }
            free(s);
            cJSON_Delete(o);
        } else {
            print_human(first_index + i, b->texts[i], &res[i]);
        }
    }
    td_pipe_results_free(res, b->n);
    fflush(stdout);
    return rc;
}

static int run_all(td_ctx *ctx, td_pipeline *p, const run_args *a) {
    batch b = {0};
    td_pipe_result *res = NULL;
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0, index = 0, line_no = 0;
    int rc = TD_EXIT_FAIL;
    size_t bs = (size_t)a->batch;
    b.texts = calloc(bs, sizeof *b.texts);
    b.pairs = calloc(bs, sizeof *b.pairs);
    b.owned = calloc(bs, sizeof *b.owned);
    res = calloc(bs, sizeof *res);
    if (!b.texts || !b.pairs || !b.owned || !res) {
        fprintf(stderr, "tdeploy run: out of memory\n");
        goto out;
    }
    bool split_tabs = td_pipeline_accepts_pairs(p);
    if (a->n_pairs && !split_tabs) {
        fprintf(stderr, "tdeploy run: error: task %s takes single texts, but --text-pair was given; drop it\n",
                td_export_task_name(td_pipeline_task(p)));
        goto out;
    }
    for (size_t i = 0; i < a->n_texts; i++) {
        b.texts[b.n] = a->texts[i];
        b.pairs[b.n] = a->n_pairs ? a->pairs[i] : NULL;
        b.any_pair |= a->n_pairs > 0;
        if (++b.n == bs) {
            if ((rc = run_batch(ctx, p, &b, index, a->json, res)) != TD_EXIT_OK)
                goto out;
            index += b.n;
            batch_reset(&b);
        }
    }
    if (a->texts_file) {
        /* --text inputs and file lines are separate batches: they may differ in having pairs */
        if ((rc = run_batch(ctx, p, &b, index, a->json, res)) != TD_EXIT_OK)
            goto out;
        index += b.n;
        batch_reset(&b);
        rc = TD_EXIT_FAIL;
        f = strcmp(a->texts_file, "-") ? fopen(a->texts_file, "rb") : stdin;
        if (!f) {
            fprintf(stderr, "tdeploy run: error: cannot open %s: %s\n", a->texts_file, strerror(errno));
            goto out;
        }
        ssize_t n;
        while ((n = getline(&line, &cap, f)) >= 0) {
            line_no++;
            if (n > 0 && line[n - 1] == '\n')
                line[--n] = 0;
            if (n > 0 && line[n - 1] == '\r')
                line[--n] = 0;
            char *text = line;
            if (line_no == 1 && n >= 3 && !memcmp(line, "\xef\xbb\xbf", 3)) {
                text += 3; /* a UTF-8 byte order mark (Windows editors) is not part of the first text */
                n -= 3;
            }
            if (memchr(text, 0, (size_t)n)) {
                fprintf(stderr, "tdeploy run: error: %s line %zu contains a NUL byte; texts must be UTF-8 text\n",
                        a->texts_file, line_no);
                goto out;
            }
            char *tab = split_tabs ? strchr(text, '\t') : NULL;
            if (tab)
                *tab = 0;
            if (b.n > 0 && (tab != NULL) != b.any_pair) {
                fprintf(stderr,
                        "tdeploy run: error: %s line %zu %s a tab-separated pair but the lines before it in its batch "
                        "%s; give every line a pair or none\n",
                        a->texts_file, line_no, tab ? "has" : "lacks", tab ? "do not" : "do");
                goto out;
            }
            if (!(b.owned[b.n_owned] = malloc((size_t)n + 1))) {
                fprintf(stderr, "tdeploy run: out of memory\n");
                goto out;
            }
            memcpy(b.owned[b.n_owned], text, (size_t)n + 1);
            b.texts[b.n] = b.owned[b.n_owned];
            b.pairs[b.n] = tab ? b.owned[b.n_owned] + (tab - text) + 1 : NULL;
            b.n_owned++;
            b.any_pair = tab != NULL;
            if (++b.n == bs) {
                if ((rc = run_batch(ctx, p, &b, index, a->json, res)) != TD_EXIT_OK)
                    goto out;
                rc = TD_EXIT_FAIL;
                index += b.n;
                batch_reset(&b);
            }
        }
        if (ferror(f)) {
            fprintf(stderr, "tdeploy run: error: reading %s failed: %s\n", a->texts_file, strerror(errno));
            goto out;
        }
    }
    if ((rc = run_batch(ctx, p, &b, index, a->json, res)) != TD_EXIT_OK)
        goto out;
    index += b.n;
    if (index == 0) {
        fprintf(stderr, "tdeploy run: error: %s has no lines; nothing to run\n", a->texts_file);
        rc = TD_EXIT_FAIL;
    }
out:
    if (f && f != stdin)
        fclose(f);
    free(line);
    batch_reset(&b);
    free(b.texts);
    free(b.pairs);
    free(b.owned);
    free(res);
    return rc;
}

int td_cmd_run(int argc, char **argv) {
    run_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) {
        free(a.texts);
        free(a.pairs);
        return rc;
    }
    if (td_run_is_decoder(a.model, a.task)) {
        rc = td_run_decoder(a.model, a.tokenizer, a.texts, a.n_texts, a.threads, a.json, a.texts_file);
        free(a.texts);
        free(a.pairs);
        return rc;
    }
    td_ctx *ctx = td_ctx_new();
    td_pipeline *p = NULL;
    if (!ctx) {
        rc = TD_EXIT_FAIL;
        goto out;
    }
    td_pipeline_options o;
    td_pipeline_options_init(&o);
    o.model = a.model;
    o.tokenizer_dir = a.tokenizer;
    o.threads = (int)a.threads;
    o.max_length = a.max_length;
    o.top_k = (size_t)a.top_k;
    o.max_answer_len = (size_t)a.max_answer_len;
    o.keep_hidden = a.json;
    if (a.task && !td_export_task_parse(a.task, &o.task)) {
        fprintf(stderr,
                "tdeploy run: error: unknown task '%s' (known: embedding, feature-extraction, classification, "
                "token-classification, question-answering)\n",
                a.task);
        rc = TD_EXIT_FAIL;
        goto out;
    }
    td_status st = td_pipeline_open(ctx, &o, &p);
    if (st != TD_OK) {
        rc = td_cli_report(CMD, ctx, st);
        goto out;
    }
    rc = run_all(ctx, p, &a);
out:
    td_pipeline_free(p);
    td_ctx_free(ctx);
    free(a.texts);
    free(a.pairs);
    return rc;
}
