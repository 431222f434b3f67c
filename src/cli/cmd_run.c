/* tdeploy run: text in, answers out. Texts from --text (repeated) and/or a
 * file / stdin with one text per line, run through src/pipeline in batches;
 * printed as a short human summary or as one JSON object per input text. */
#define _GNU_SOURCE
#include "cli/cli.h"

#include "core/log.h"
#include "pipeline/text_pipeline.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "run"
#define DEFAULT_BATCH 8
#define MAX_BATCH 4096

static void usage(FILE *f) {
    fprintf(f,
            "usage: tdeploy run [-m] MODEL_OR_ENGINE --text \"...\" [--text-pair \"...\"] [--texts FILE|-]\n"
            "                   [--batch-size N] [--max-length N] [--stride N] [--task T] [--threads N]\n"
            "                   [--precision fp32|fp16|bf16] [--device cpu|cuda] [--backend cpu|reference|cuda]\n"
            "                   [--top-k N] [--max-answer-len N] [--tokenizer DIR] [--json] [-q] [-v]\n"
            "  [-m] MODEL_OR_ENGINE  Hugging Face model directory or cached hub id (org/name): exported in memory;\n"
            "                   an .onnx file (tokenizer.json and config.json beside it, or --tokenizer DIR);\n"
            "                   an .engine file from `tdeploy build` (runs on the GPU; tokenizer beside it, or\n"
            "                   --tokenizer DIR, else the one bundled in the engine when built from a model\n"
            "                   directory); or a directory from `tdeploy convert` (runs model-optimized.onnx,\n"
            "                   else model.onnx; with --device cuda its model.engine when there is one)\n"
            "                   A decoder (gpt2, llama, mistral, qwen2, phi3 in config.json, or --task\n"
            "                   text-generation) generates text from each --text as `tdeploy generate` does\n"
            "  --text T         an input text (repeat for more); for question-answering the question\n"
            "  --text-pair P    the second text of the --text with the same position (QA: the context;\n"
            "                   classification: optional pair, e.g. NLI)\n"
            "  --texts FILE     one text per line (- = stdin); for tasks that take pairs a tab separates the\n"
            "                   text from its pair, for the others a tab is part of the text\n"
            "  --batch-size N   texts per model run (default %d); texts are sorted by length into batches\n"
            "                   (answers keep the input order), so a batch pads little\n"
            "  --max-length N   tokens per text incl. special tokens (default and most: the model's maximum).\n"
            "                   Longer texts: question-answering and token-classification run them in\n"
            "                   overlapping windows and merge the answers (as HF pipelines do); the other\n"
            "                   tasks cut them (\"truncated\" in the output, and a warning)\n"
            "  --stride N       overlap of the windows in tokens (HF's doc_stride; default min(128, N/2))\n"
            "  --task T         embedding, feature-extraction, classification, token-classification,\n"
            "                   question-answering (default: from the model); also the names of transformers\n"
            "                   pipelines and Optimum: text-classification, sentiment-analysis,\n"
            "                   sentence-similarity, embeddings, ner, qa, default\n"
            "  --threads N      CPU threads (default or 0: one per core)\n"
            "  --precision P    fp32 (default), fp16 or bf16 weights on the CPU runtime\n"
            "  --device D       cpu or cuda (gpu): where the model runs (default cpu; cuda for engines)\n"
            "  --backend B      cpu, reference (the plain reference kernels, one thread, slow) or cuda;\n"
            "                   --backend cuda is --device cuda\n"
            "  --top-k N        classification: the N best labels (default 1)\n"
            "  --max-answer-len N  question-answering: longest answer in tokens (default 15)\n"
            "  --json           one JSON object per input text and line (JSON Lines): embeddings, logits,\n"
            "                   entities, answers\n"
            "  -q, --quiet      no progress or warnings; -v, --verbose: what runs, and per batch timings\n"
            "Offsets (start, end) are character offsets into the text (QA: into the context); token positions\n"
            "index the tokens of all windows one after the other.\n",
            DEFAULT_BATCH);
}

typedef struct run_args {
    const char *model, *tokenizer, *texts_file, *backend;
    const char **texts, **pairs;
    size_t n_texts, n_pairs;
    int64_t batch, max_length, stride, threads, top_k, max_answer_len;
    td_export_task task;
    td_precision precision;
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
        {"--stride", 1, 1 << 24, offsetof(run_args, stride)},
        {"--threads", 0, 1024, offsetof(run_args, threads)}, /* 0 = one per core, as convert and generate */
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
        if (!strcmp(f, "-m") || !strcmp(f, "--model")) { /* the spelling of export and convert */
            if (++i >= argc)
                return td_cli_usage_error(CMD, "%s needs a model", f);
            if (a->model)
                return td_cli_usage_error(CMD, "two models given ('%s' and '%s')", a->model, argv[i]);
            a->model = argv[i];
            continue;
        }
        bool takes_value = !strcmp(f, "--text") || !strcmp(f, "--text-pair") || !strcmp(f, "--texts") ||
                           !strcmp(f, "--task") || !strcmp(f, "--tokenizer") || !strcmp(f, "--precision") ||
                           !strcmp(f, "--device") || !strcmp(f, "--backend");
        if (takes_value && ++i >= argc)
            return td_cli_usage_error(CMD, "%s needs a value", f);
        int rc = -1;
        bool cuda = false;
        if (!strcmp(f, "--task") && (rc = td_cli_parse_task(CMD, argv[i], &a->task)) >= 0)
            return rc;
        if (!strcmp(f, "--precision") && (rc = td_cli_parse_precision(CMD, argv[i], &a->precision)) >= 0)
            return rc;
        if (!strcmp(f, "--device") && (rc = td_cli_parse_device(CMD, argv[i], &cuda)) >= 0)
            return rc;
        if (!strcmp(f, "--device")) {
            a->backend = cuda ? "cuda" : "cpu";
            continue;
        }
        if (!strcmp(f, "--backend")) {
            if (strcmp(argv[i], "cpu") && strcmp(argv[i], "reference") && strcmp(argv[i], "cuda"))
                return td_cli_usage_error(CMD, "--backend wants cpu, reference or cuda, got '%s'", argv[i]);
            a->backend = argv[i];
            continue;
        }
        if (!strcmp(f, "--task") || !strcmp(f, "--precision"))
            continue;
        if (!strcmp(f, "--text"))
            a->texts[a->n_texts++] = argv[i];
        else if (!strcmp(f, "--text-pair"))
            a->pairs[a->n_pairs++] = argv[i];
        else if (!strcmp(f, "--texts"))
            a->texts_file = argv[i];
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
        return td_cli_usage_error(CMD, "give the model: a model directory, hub id, .onnx file, .engine file or "
                                  "`tdeploy convert` directory");
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
    cJSON_AddNumberToObject(o, "windows", (double)r->n_windows);
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
    printf(" (%zu tokens%s", r->n_tokens, r->truncated ? ", truncated" : "");
    if (r->n_windows > 1)
        printf(" in %zu windows", r->n_windows);
    printf(")\n");
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

/* One input text (and pair) with its position in the input. */
typedef struct item {
    const char *text, *pair;
    char *owned; /* the line read from the file, which text and pair point into; NULL for --text */
    size_t index;
} item;

/* Texts are run in chunks of CHUNK_BATCHES batches: each chunk is sorted by
 * length so a batch holds texts of similar length (little padding), and its
 * answers are printed in input order before the next chunk is read, so memory
 * stays bounded and output streams. */
#define CHUNK_BATCHES 64

typedef struct runner {
    td_ctx *ctx;
    td_pipeline *p;
    const run_args *a;
    item *items;         /* (cap) the current chunk */
    size_t n, cap;
    td_pipe_result *res; /* (cap) answers of the chunk, by position in items */
    const char **texts, **pairs; /* (batch) one batch's inputs */
    size_t *order;       /* (cap) positions of items by length */
    size_t done, total, n_truncated;
    td_progress progress;
} runner;

static volatile sig_atomic_t g_interrupted;

static void on_interrupt(int sig) {
    (void)sig;
    g_interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C stops at once */
}

static int interrupted(const runner *R) {
    fprintf(stderr, "tdeploy run: interrupted (%zu texts had run); every answer printed is complete\n", R->done);
    return TD_EXIT_INTERRUPTED;
}

static size_t item_len(const item *it) { return strlen(it->text) + (it->pair ? strlen(it->pair) : 0); }

static const item *g_sort_items; /* qsort has no context argument in C11 */

static int by_length(const void *x, const void *y) {
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    size_t li = item_len(&g_sort_items[i]), lj = item_len(&g_sort_items[j]);
    if (li != lj)
        return li < lj ? -1 : 1;
    return i < j ? -1 : i > j; /* stable: equal lengths keep the input order */
}

static int print_result(const run_args *a, const item *it, const td_pipe_result *r) {
    if (!a->json) {
        print_human(it->index, it->text, r);
        return TD_EXIT_OK;
    }
    cJSON *o = result_json(it->index, it->text, it->pair, r);
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "tdeploy run: out of memory printing the results\n");
        return TD_EXIT_FAIL;
    }
    printf("%s\n", s);
    free(s);
    return TD_EXIT_OK;
}

/* Run and print the chunk: batches in length order, answers in input order. */
static int flush_chunk(runner *R) {
    if (!R->n)
        return TD_EXIT_OK;
    size_t bs = (size_t)R->a->batch;
    for (size_t i = 0; i < R->n; i++)
        R->order[i] = i;
    g_sort_items = R->items;
    qsort(R->order, R->n, sizeof *R->order, by_length);
    int rc = TD_EXIT_OK;
    size_t ran = 0;
    for (size_t b0 = 0; b0 < R->n && rc == TD_EXIT_OK; b0 += bs) {
        if (g_interrupted) {
            rc = interrupted(R);
            break;
        }
        size_t nb = R->n - b0 < bs ? R->n - b0 : bs;
        bool any_pair = false;
        for (size_t k = 0; k < nb; k++) {
            const item *it = &R->items[R->order[b0 + k]];
            R->texts[k] = it->text;
            R->pairs[k] = it->pair;
            any_pair |= it->pair != NULL;
        }
        td_pipe_result *out = R->res + b0; /* answers in sorted order for now */
        double t0 = td_now_s();
        /* error messages number inputs by the first of the batch in input order */
        td_status st = td_pipeline_run(R->ctx, R->p, R->texts, any_pair ? R->pairs : NULL, nb,
                                       R->items[R->order[b0]].index, out);
        /* the batch is in length order, so "input N" in a message may name the wrong text: find the text
         * that fails on its own and report that one under its input number */
        for (size_t k = 0; st != TD_OK && k < nb; k++) {
            const item *it = &R->items[R->order[b0 + k]];
            td_pipe_result one;
            const char *pair = it->pair;
            td_status s1 = td_pipeline_run(R->ctx, R->p, &it->text, pair ? &pair : NULL, 1, it->index, &one);
            if (s1 == TD_OK)
                td_pipe_results_free(&one, 1);
            else
                st = s1, k = nb; /* this text's own error */
        }
        if (st != TD_OK) {
            rc = td_cli_report(CMD, R->ctx, st);
            break;
        }
        ran = b0 + nb;
        td_debug("run: batch of %zu texts (%zu..%zu bytes) in %.3f s", nb, item_len(&R->items[R->order[b0]]),
                 item_len(&R->items[R->order[b0 + nb - 1]]), td_now_s() - t0);
        R->done += nb;
        td_progress_update(&R->progress, R->done);
    }
    if (rc == TD_EXIT_OK) {
        /* sorted position k holds the answer of items[order[k]]: print by input position */
        size_t *where = malloc(R->n * sizeof *where);
        if (!where) {
            fprintf(stderr, "tdeploy run: out of memory\n");
            rc = TD_EXIT_FAIL;
        }
        for (size_t k = 0; where && k < R->n; k++)
            where[R->order[k]] = k;
        for (size_t i = 0; where && i < R->n && rc == TD_EXIT_OK; i++) {
            R->n_truncated += R->res[where[i]].truncated;
            rc = print_result(R->a, &R->items[i], &R->res[where[i]]);
        }
        free(where);
        fflush(stdout);
    }
    td_pipe_results_free(R->res, ran);
    for (size_t i = 0; i < R->n; i++)
        free(R->items[i].owned);
    R->n = 0;
    return rc;
}

static int add_item(runner *R, const char *text, const char *pair, char *owned) {
    R->items[R->n] = (item){text, pair, owned, R->done + R->n};
    R->n++;
    return R->n == R->cap ? flush_chunk(R) : TD_EXIT_OK;
}

/* Lines of a regular file, for the progress total (0 for stdin and pipes: unknown). */
static size_t count_lines(const char *path) {
    if (!strcmp(path, "-"))
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = 0, got;
    char buf[65536];
    bool last_nl = true;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < got; i++)
            n += buf[i] == '\n';
        last_nl = buf[got - 1] == '\n';
    }
    fclose(f);
    return n + !last_nl;
}

static int read_file(runner *R) {
    const run_args *a = R->a;
    bool split_tabs = td_pipeline_accepts_pairs(R->p), needs_pair = td_pipeline_needs_pairs(R->p);
    FILE *f = strcmp(a->texts_file, "-") ? fopen(a->texts_file, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "tdeploy run: error: cannot open %s: %s\n", a->texts_file, strerror(errno));
        return TD_EXIT_FAIL;
    }
    char *line = NULL;
    size_t cap = 0, line_no = 0;
    ssize_t n;
    int rc = TD_EXIT_OK;
    while (rc == TD_EXIT_OK && !g_interrupted && (n = getline(&line, &cap, f)) >= 0) {
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
            rc = TD_EXIT_FAIL;
            break;
        }
        char *tab = split_tabs ? strchr(text, '\t') : NULL;
        if (needs_pair && !tab) {
            fprintf(stderr,
                    "tdeploy run: error: %s line %zu has no tab-separated context; question-answering needs "
                    "\"question<TAB>context\" on every line\n",
                    a->texts_file, line_no);
            rc = TD_EXIT_FAIL;
            break;
        }
        char *owned = malloc((size_t)n + 1);
        if (!owned) {
            fprintf(stderr, "tdeploy run: out of memory\n");
            rc = TD_EXIT_FAIL;
            break;
        }
        memcpy(owned, text, (size_t)n + 1);
        if (tab)
            owned[tab - text] = 0;
        rc = add_item(R, owned, tab ? owned + (tab - text) + 1 : NULL, owned);
    }
    if (rc == TD_EXIT_OK && g_interrupted)
        rc = interrupted(R); /* the read was cut short by Ctrl-C (EINTR) */
    if (rc == TD_EXIT_OK && ferror(f)) {
        fprintf(stderr, "tdeploy run: error: reading %s failed: %s\n", a->texts_file, strerror(errno));
        rc = TD_EXIT_FAIL;
    }
    if (f != stdin)
        fclose(f);
    free(line);
    return rc;
}

static int run_all(td_ctx *ctx, td_pipeline *p, const run_args *a) {
    runner R = {.ctx = ctx, .p = p, .a = a};
    size_t bs = (size_t)a->batch;
    R.cap = bs * CHUNK_BATCHES;
    R.items = calloc(R.cap, sizeof *R.items);
    R.res = calloc(R.cap, sizeof *R.res);
    R.order = calloc(R.cap, sizeof *R.order);
    R.texts = calloc(bs, sizeof *R.texts);
    R.pairs = calloc(bs, sizeof *R.pairs);
    int rc = TD_EXIT_FAIL;
    if (!R.items || !R.res || !R.order || !R.texts || !R.pairs) {
        fprintf(stderr, "tdeploy run: out of memory\n");
        goto out;
    }
    if (a->n_pairs && !td_pipeline_accepts_pairs(p)) {
        fprintf(stderr, "tdeploy run: error: task %s takes single texts, but --text-pair was given; drop it\n",
                td_export_task_name(td_pipeline_task(p)));
        goto out;
    }
    R.total = a->n_texts + (a->texts_file ? count_lines(a->texts_file) : 0);
    td_progress_begin(&R.progress, "run: texts", a->texts_file && !strcmp(a->texts_file, "-") ? 0 : R.total);
    rc = TD_EXIT_OK;
    for (size_t i = 0; i < a->n_texts && rc == TD_EXIT_OK; i++)
        rc = add_item(&R, a->texts[i], a->n_pairs ? a->pairs[i] : NULL, NULL);
    if (rc == TD_EXIT_OK && a->texts_file)
        rc = read_file(&R);
    if (rc == TD_EXIT_OK)
        rc = flush_chunk(&R);
    td_progress_end(&R.progress);
    if (rc == TD_EXIT_OK && R.done == 0) {
        fprintf(stderr, "tdeploy run: error: %s has no lines; nothing to run\n", a->texts_file);
        rc = TD_EXIT_FAIL;
    }
    if (rc == TD_EXIT_OK && R.n_truncated)
        td_warn("run: %zu of %zu texts were longer than %lld tokens and were cut (task %s reads one window; "
                "\"truncated\" marks them)",
                R.n_truncated, R.done, (long long)td_pipeline_max_length(p),
                td_export_task_name(td_pipeline_task(p)));
out:
    for (size_t i = 0; R.items && i < R.n; i++)
        free(R.items[i].owned);
    free(R.items);
    free(R.res);
    free(R.order);
    free(R.texts);
    free(R.pairs);
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
    if (td_run_is_decoder(a.model, a.tokenizer, a.task)) {
        rc = td_run_decoder(a.model, a.tokenizer, a.texts, a.n_texts, a.threads, a.json, a.texts_file);
        free(a.texts);
        free(a.pairs);
        return rc;
    }
    /* Ctrl-C: finish the batch that runs, print nothing more, exit 130 (no SA_RESTART: a read of stdin
     * returns at once) */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
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
    o.task = a.task;
    o.threads = (int)a.threads;
    o.stride = (size_t)a.stride;
    o.precision = a.precision;
    o.backend = a.backend;
    o.top_k = (size_t)a.top_k;
    o.max_answer_len = (size_t)a.max_answer_len;
    o.keep_hidden = a.json;
    td_status st = td_pipeline_open(ctx, &o, &p);
    if (st != TD_OK) {
        rc = td_cli_report(CMD, ctx, st);
        goto out;
    }
    /* a length above the model's limit is a usage error, said before any text runs */
    if (a.max_length && td_pipeline_set_max_length(ctx, p, a.max_length) != TD_OK) {
        rc = td_cli_usage_error(CMD, "%s", td_error_message(ctx));
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
