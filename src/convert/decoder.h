/* The decoder branch of `tdeploy convert` (task text-generation): validation and
 * benchmark of model-optimized.onnx through the generation loop (generate/generator.h).
 *
 * Validation runs the same prompts through two generators: the reference one on
 * model.onnx with the reference backend (plain loops, graph untouched) and the
 * backend one on model-optimized.onnx with the backend's precision. For each case
 * (every prompt alone, then all prompts as one left-padded batch) the prefill
 * logits at the real positions must agree within atol + rtol |ref|, and the greedy
 * tokens of both must be identical.
 *
 * Quantized precisions (int8 / int4: MatMulNBits weight blocks) move every logit by
 * quantization noise, and a free-running greedy continuation legitimately takes
 * another path once one near-tie flips. Their rule, over the real prefill positions
 * (the prompts, teacher-forced: both sides see the same tokens): every backend logit
 * finite, and near-top agreement >= 95%: the backend's top-1 token t must sit near the
 * top of the reference's own logits row a, a[top] - a[t] <= near_tol * (a[top] -
 * mean(a)), near_tol 0.1 for int8 and 0.5 for int4. A wrong kernel or block layout
 * picks tokens near the row's mean (gap ~ the standout, 1.0); the tiny random-weight
 * fixtures, whose Gaussian weights lose ~10% to 4-bit blocks, need up to 0.035 (int8)
 * and 0.42 (int4) at their 95th percentile. The max abs logits error, the plain top-1
 * agreement and the greedy-token agreement (identical leading tokens per generation)
 * are reported; the elementwise atol/rtol test also decides when --atol/--rtol are
 * given.
 *
 * --seq-len MIN OPT MAX sets the prompt lengths (validation prompts cut or extended
 * into MIN..MAX, the benchmark prompt OPT) and --batch-size MIN OPT MAX the batches
 * (a validated left-padded batch of MAX rows, a benchmark at MIN, OPT and MAX);
 * without them validation uses prompts of at most 32 tokens and a batch of 4.
 *
 * The benchmark generates from random prompts at batch 1 and 8 with eos off (so
 * every run makes the same number of tokens): time to first token (the prefill),
 * prefill tokens/s and decode ms/token (one step of the whole batch), p50/p95. */
#ifndef TD_CONVERT_DECODER_H
#define TD_CONVERT_DECODER_H

#include "convert/convert.h"
#include "deploy/report.h"
#include "deploy/stats.h"
#include "tdeploy/session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_DECODER_BENCH_BATCHES 3 /* batch 1 and 8, or --batch-size MIN OPT MAX (distinct values) */

typedef struct td_decoder_bench {
    int64_t batch, prompt, new_tokens;
    td_latency_stats ttft;       /* seconds: the prefill of the batch, first token included */
    td_latency_stats decode;     /* seconds per decode step (one new token for every row) */
    double prefill_tokens_per_s; /* batch * prompt / median ttft */
} td_decoder_bench;

typedef struct td_convert_decoder {
    /* in */
    const td_convert_options *o;
    const char *backend;   /* "cpu" */
    const char *ref_onnx;  /* model.onnx: fp32 reference */
    const char *opt_onnx;  /* model-optimized.onnx: what the backend runs */
    td_precision precision;
    double atol, rtol;
    bool elementwise;      /* |got - ref| <= atol + rtol |ref| decides (always for float precisions) */
    double min_near_top;   /* > 0 (int8 / int4): the near-top agreement must reach it; greedy tokens may differ */
    double near_tol;       /* the near-top tolerance, a fraction of the reference top's standout */
    int64_t prompt_len;    /* benchmark prompt length (the profile's opt sequence length) */
    bool seq_given;        /* --seq-len given: validation prompts have seq_min..seq_max tokens (else at most 32) */
    int64_t seq_min, seq_max;
    bool batch_given;      /* --batch-size given: the validated left-padded batch has batch[2] rows (else 4) and
                            * the benchmark runs at each distinct batch[0..2] (else at 1 and 8) */
    int64_t batch[3];
    uint64_t seed;
    /* out: validation */
    bool passed;
    size_t n_compared, n_failed;  /* prefill logits elements at real positions */
    double max_abs, max_rel;      /* rel = |got - ref| / max(|ref|, 1e-3), as convert/compare.h */
    int n_cases;                  /* generations compared (single prompts + the padded batch rows) */
    int n_token_mismatch;         /* rows whose greedy tokens differ */
    size_t n_positions, n_top1_agree; /* real prefill positions compared, and those whose argmax agrees */
    size_t n_near_top;            /* positions whose backend argmax is near the reference's top (near_tol) */
    bool non_finite;              /* a backend logit was NaN or infinite */
    size_t greedy_total, greedy_same; /* greedy tokens made by the reference, and those before each row's first
                                       * difference (the identical leading tokens) */
    size_t greedy_first_diff_min; /* the earliest first difference over the generations (SIZE_MAX: none) */
    int64_t new_tokens;           /* greedy tokens asked per validation case */
    size_t prompt_min, prompt_max; /* validation prompt lengths (tokens) */
    size_t batch_rows;            /* rows of the validated left-padded batch */
    char mismatch[256];           /* the first differing row, for the report */
    /* out: benchmark (n_bench = 0: not run) */
    td_decoder_bench bench[TD_DECODER_BENCH_BATCHES];
    int n_bench;
} td_convert_decoder;

/* Validate (fills the out fields; a failed comparison is TD_OK with passed = false). */
td_status td_convert_decoder_validate(td_ctx *ctx, td_convert_decoder *d);
td_status td_convert_decoder_benchmark(td_ctx *ctx, td_convert_decoder *d);
/* The rule's two halves (the report's validation[].passed and greedy_tokens.passed). */
bool td_convert_decoder_logits_pass(const td_convert_decoder *d);
bool td_convert_decoder_greedy_pass(const td_convert_decoder *d);
/* validation + generation_benchmark entries of report.json */
td_status td_convert_decoder_report(td_ctx *ctx, const td_convert_decoder *d, td_report *r);
/* The summary table rows (appended to buf). */
void td_convert_decoder_summary(const td_convert_decoder *d, char *buf, size_t n);

#endif
