/* Text generation over a decoder ONNX graph with a KV cache in the Optimum layout
 * (export/decoder.h): prefill the prompts, then one token per step through the
 * cache until every row has met eos, a stop string or max_new_tokens.
 *
 *     td_generator *g;
 *     TD_TRY(td_generator_open(ctx, "model_dir_or.onnx", &gopt, &g));
 *     td_gen_options o;  td_gen_options_defaults(g, &o);  o.max_new_tokens = 32;
 *     td_gen_result r[1];
 *     TD_TRY(td_generate(ctx, g, prompts, lens, 1, &o, r));   // r[0].ids, r[0].text
 *     td_gen_results_free(r, 1);  td_generator_free(g);
 *
 * Batches of prompts of different lengths are left-padded (position ids from the
 * attention mask, as transformers' generate). Memory for a request (ids, mask,
 * positions, the cache, sampler scratch) is allocated once, sized for the
 * longest prompt + max_new_tokens; per token only the decoded text of a row is
 * allocated, when streaming or stop strings need it. On tdeploy's exported graphs the cache is read and written in
 * place (kv_inplace.h: one plan for the prefill and one for all decode steps, no copy of the cache per step); on other
 * graphs (Optimum's) each step binds the cache as past_key_values.N and copies present.N back. */
#ifndef TD_GENERATE_GENERATOR_H
#define TD_GENERATE_GENERATOR_H

#include "generate/chat_template.h"
#include "generate/sampler.h"
#include "tdeploy/session.h"
#include "tdeploy/tokenizer.h"

#include <signal.h>

#define TD_GEN_MAX_EOS 16
#define TD_GEN_MAX_STOP 16

typedef struct td_generator td_generator;

typedef struct td_generator_options {
    const char *tokenizer_dir; /* tokenizer.json location for an .onnx file (default: beside it) */
    int threads;               /* session threads; 0 = one per core */
    const char *backend;       /* session backend (NULL = "cpu"; "reference": plain loops, convert's oracle) */
    td_precision precision;    /* weight precision of the session (0 = fp32) */
    bool gguf_dequantize;      /* .gguf: float32 weights instead of the file's blocks kept quantized */
    bool gguf_int8_activations; /* .gguf, blocks kept: int8 activations (llama.cpp's arithmetic), not fp32 */
    bool keep_graph;           /* run the graph as given, without the generator's optimization pass (the
                                * reference path of `convert` must run the exporter's graph untouched) */
    bool all_logits;           /* the prefill's logits at every position (convert compares them); default: the
                                * last position only, the one generation needs */
} td_generator_options;

/* The single .gguf file of a directory without config.json, or of a cached hub id whose snapshot holds one
 * (malloc'd); NULL otherwise. */
char *td_generator_find_gguf(const char *model);

/* model: an HF directory / cached hub id (exported in memory with --task
 * text-generation) or a decoder .onnx file (ours or Optimum's). */
td_status td_generator_open(td_ctx *ctx, const char *model, const td_generator_options *opt, td_generator **out);
void td_generator_free(td_generator *g);

const td_tokenizer *td_generator_tokenizer(const td_generator *g); /* NULL when none was found */
int64_t td_generator_vocab(const td_generator *g);
/* Longest prompt + new tokens the model's positions allow (0 when unknown). */
int64_t td_generator_context(const td_generator *g);

/* The prompt the model's chat template makes of msgs (with the generation prompt added); *out malloc'd.
 * TD_ERR_NOT_FOUND when the model has no template, TD_ERR_UNSUPPORTED for a construct outside the
 * supported Jinja subset (chat_template.h). Tokenize it without adding special tokens. */
td_status td_generator_chat_prompt(td_ctx *ctx, const td_generator *g, const td_chat_message *msgs, size_t n,
                                   char **out);

/* Logits of every forward pass: step 0 is the prefill (batch, seq, vocab) over the left-padded prompts (seq = 1:
 * the last position only, unless the generator was opened with all_logits), step k the (batch, 1, vocab) of decode
 * step k. Only valid during the call. */
typedef void (*td_gen_logits_fn)(void *user, int64_t step, const float *logits, size_t batch, size_t seq,
                                 int64_t vocab);

/* Streaming: text of row `row` that became complete UTF-8 since the last call. */
typedef void (*td_gen_text_fn)(void *user, int row, const char *text, size_t len);

typedef struct td_gen_options {
    td_sampling sampling;
    int64_t max_new_tokens;
    int64_t eos_ids[TD_GEN_MAX_EOS]; /* default: the model's eos ids */
    size_t n_eos;
    const char *stop[TD_GEN_MAX_STOP]; /* stop strings: generation of a row ends when its text contains one */
    size_t n_stop;
    int64_t pad_id;                  /* id fed for left padding and finished rows (never attended) */
    td_gen_text_fn on_text;          /* NULL: no streaming */
    void *user;
    td_gen_logits_fn on_logits;      /* NULL: none (convert's validation compares them); gets `user` */
    volatile sig_atomic_t *interrupt; /* polled once per step; non-zero stops with TD_ERR_INTERRUPTED */
} td_gen_options;

void td_gen_options_defaults(const td_generator *g, td_gen_options *o);

typedef struct td_gen_result {
    int64_t *ids;        /* new tokens (eos included when it ended the row) */
    size_t n_ids;
    char *text;          /* decoded new tokens without special tokens, cut before a stop string; NULL without tokenizer */
    const char *finish;  /* "eos", "stop", "length" (max_new_tokens made) or "context" (the model's context is
                          * full: prompt + new tokens reached it before max_new_tokens) */
    double prefill_s, decode_s; /* wall time of the prefill and of all decode steps (whole batch) */
    double prefill_cpu_s, decode_cpu_s; /* the same as CPU time of the process (all threads; busy hosts) */
    /* What the request cost the runtime (the same for every row): with the in-place cache, plans is 2 (prefill,
     * decode) and session_allocs and cache_copy_bytes do not grow with the number of tokens. */
    bool kv_in_place;          /* the cache was read and written in place (kv_inplace.h), not copied per step */
    const char *kv_cache;      /* how, in words (static): the fused attention or the appends in place, or why the
                                * cache is copied per step (a graph pattern the generator does not rewrite) */
    uint64_t plans;            /* session plans built during the request */
    uint64_t session_allocs;   /* heap allocations the session made during the request */
    uint64_t cache_copy_bytes; /* bytes of cache the generator copied: present.N outputs every step (copying path),
                                * or the prompt's K/V widened to the capacity once (in place, standard attention);
                                * 0 with the fused attention in place */
} td_gen_result;

/* Generate for n prompts (ids[i][0..lens[i]) ). out[n] is filled (free with td_gen_results_free). */
td_status td_generate(td_ctx *ctx, td_generator *g, const int64_t *const *ids, const size_t *lens, size_t n,
                      const td_gen_options *o, td_gen_result *out);
void td_gen_results_free(td_gen_result *r, size_t n);

#endif
