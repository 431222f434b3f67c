/* Chat templates: the Jinja subset Hugging Face chat templates use (ChatML,
 * Llama-3, Mistral, Phi-3 and alike), rendered as transformers'
 * apply_chat_template renders them (jinja2 with trim_blocks and lstrip_blocks).
 *
 * Supported: text, {{ expr }}, {% if/elif/else/endif %}, {% for x in expr %}
 * (with loop.index, index0, first, last, length, revindex) ... {% endfor %},
 * {% set name = expr %}, comments, whitespace control ({{- -}} {%- -%}); string,
 * integer, true/false/none literals; + - * / % ~, comparisons, and/or/not, in,
 * `x if c else y`, subscripts, slices x[a:b] (lists, and strings by code point;
 * no step) and attributes, the filters trim, length, upper, lower, string
 * (tojson-free); the string methods strip/lstrip/rstrip() (Python's whitespace),
 * upper/lower(), startswith/endswith(s); tests `is [not] defined/none/string`;
 * calls of raise_exception(msg). Anything else is TD_ERR_UNSUPPORTED naming the construct
 * and where it is, never a wrong prompt.
 *
 * A template comes from a model file, so it is treated as hostile input: blocks
 * (and elif chains) nest at most 64 deep, expressions 64 deep in the parser and
 * 256 in the evaluator, integers stay in 64 bits (overflow is an error, never
 * wrapped or trapped), a render does at most 20M steps and its values and output
 * stay under 256 MiB / 64 MiB; each limit is a TD_ERR_UNSUPPORTED naming it. */
#ifndef TD_GENERATE_CHAT_TEMPLATE_H
#define TD_GENERATE_CHAT_TEMPLATE_H

#include "core/ctx.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct td_chat_message {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} td_chat_message;

typedef struct td_chat_vars {
    const char *bos_token, *eos_token; /* "" when the model has none */
    bool add_generation_prompt;
} td_chat_vars;

/* Render template with messages[n]; *out is malloc'd. raise_exception in the
 * template becomes TD_ERR_INVALID_ARGUMENT with its message. */
td_status td_chat_render(td_ctx *ctx, const char *tmpl, const td_chat_message *messages, size_t n,
                         const td_chat_vars *vars, char **out);

#endif
