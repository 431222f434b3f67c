"""Chat templates (src/generate/chat_template.c) against jinja2 rendering them as transformers'
apply_chat_template does (trim_blocks, lstrip_blocks): the ChatML (SmolLM2, Qwen2), Llama-3, Mistral and Phi-3
families and whitespace-control cases, byte for byte, through the test driver tests/tools/chat_driver.c (the
renderer is internal to the library); raise_exception and constructs outside the subset are clean errors."""
import json
import os
import subprocess
import sys

import jinja2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "export"))
from export_common import Tally  # noqa: E402

TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(TD_BIN)), "td_chat_driver")
t = Tally()

CHATML_SMOL = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>"
               "system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
               "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
QWEN2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
         "You are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
         "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>"
         "assistant\n' }}{% endif %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' "
          "+ message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 "
          "== 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if "
          "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif "
           "message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only "
           "user and assistant roles are supported!') }}{% endif %}{% endfor %}")
PHI3 = ("{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
        "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif "
        "message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")
# Mistral-7B-Instruct-v0.3 (slices, `is defined` on a variable set in a branch), Llama-2-chat (slices, str.strip()),
# Zephyr (newlines between tags, loop.last), Gemma (raise_exception on a system message, a set role)
MISTRAL3 = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
          "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
          "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
          "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
          "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif "
          "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
          "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}"
          "\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
          "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
GEMMA = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
         "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
         "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
         "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
         "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
         "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
# slices (Python's bounds, on lists and on strings by code point), string methods, Python's whitespace in
# trim/strip, len() in code points
EXPRS = ("{{ messages[1:] | length }}|{{ messages[:-1] | length }}|{{ messages[-2:] | length }}|"
         "{{ messages[5:1] | length }}|{{ messages[-99:99] | length }}|{% for m in messages[1:-1] %}{{ m.role }},"
         "{% endfor %}|{{ messages[0].content[1:4] }}|{{ messages[0].content[-3:] }}|{{ messages[0].content[:] }}|"
         "{{ messages[0].content | length }}|{{ messages[0].content.strip() }}.|{{ messages[0].content.lstrip() }}.|"
         "{{ messages[0].content.rstrip() }}.|{{ messages[0].content | trim }}.|{{ messages[0].content.upper() }}|"
         "{{ messages[0].content.lower() }}|{{ messages[0].content.startswith('What') }}"
         "{{ messages[-1].content.endswith('?') }}{{ 'ab'.startswith('abc') }}{{ ''.endswith('') }}")

# whitespace control and the trim_blocks / lstrip_blocks rules, in the multi-line style many templates use
LAYOUT = """{%- for message in messages %}
    {%- if message.role == "system" -%}
        System: {{ message.content }}
    {% elif message.role == 'user' %}
  User said: "{{ message.content|upper }}" ({{ loop.index }}/{{ loop.length }}{{ ', last' if loop.last }})
    {%- else %}
{# a comment #}
    Assistant: {{ message['content'] ~ '!' }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 'x' in message.content }}
    {% endif %}
{%- endfor %}
{% if add_generation_prompt is defined and add_generation_prompt and not (messages | length) == 0 %}
Assistant:{% endif %}"""

CONVS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi \u00e9\u00e8 \U0001F600"},
     {"role": "assistant", "content": "  Hello!  "}, {"role": "user", "content": "x"}],
    [{"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "c"}, {"role": "user", "content": "d"}],
    [{"role": "user", "content": "\u3000\u00a0\t H\u00e9llo w\u00f6rld \U0001F600?\u2003\u200a\n"}],
]


def render_all(cases):
    """[(template, messages, gen)] -> [(text or None, error)] through the driver, one process for all."""
    payload = [{"template": tm, "messages": m, "bos": "<s>", "eos": "</s>", "gen": g} for tm, m, g in cases]
    r = subprocess.run([DRIVER], input=json.dumps(payload), capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        sys.exit(f"FAIL: chat driver exited {r.returncode}: {r.stderr[-300:]}")
    return [(o["text"], "") if o["ok"] else (None, o["error"]) for o in json.loads(r.stdout)]


env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


env.globals["raise_exception"] = raise_exception
cases, expected = [], []
for name, tmpl in [("ChatML/SmolLM2", CHATML_SMOL), ("ChatML/Qwen2", QWEN2), ("Llama-3", LLAMA3),
                   ("Mistral", MISTRAL), ("Phi-3", PHI3), ("Mistral-v0.3", MISTRAL3), ("Llama-2", LLAMA2),
                   ("Zephyr", ZEPHYR), ("Gemma", GEMMA), ("slices and methods", EXPRS), ("layout", LAYOUT)]:
    for i, msgs in enumerate(CONVS):
        for gen in (True, False):
            try:
                want, werr = env.from_string(tmpl).render(messages=msgs, bos_token="<s>", eos_token="</s>",
                                                          add_generation_prompt=gen), None
            except jinja2.exceptions.TemplateError as e:
                want, werr = None, str(e)
            cases.append((tmpl, msgs, gen))
            expected.append((f"{name} conv {i} gen={gen}", want, werr))
refusals = [("macro", "{% macro f() %}x{% endmacro %}", "macro"),
            ("namespace()", "{% set ns = namespace(a=1) %}", "namespace"),
            ("unclosed tag", "{{ messages", "unclosed"),
            ("missing endfor", "{% for m in messages %}x", "endfor"),
            ("unknown filter", "{{ 'a' | tojson }}", "tojson"),
            ("slice step", "{{ messages[::2] }}", "slice steps"),
            ("method outside the subset", "{{ messages[0].content.split() }}", "method .split()"),
            ("method of a list", "{{ messages.strip() }}", "only strings")]
results = render_all(cases + [(tm, CONVS[0], True) for _, tm, _ in refusals])
for (label, want, werr), (got, err) in zip(expected, results):
    if werr:
        t.check(got is None and werr in err, f"{label}: raise_exception refuses", err)
    else:
        t.check(got == want, f"{label}: same as jinja2", "" if got == want else
                f"\n got  {got!r}\n want {want!r}\n {err}")
for (label, _, needle), (got, err) in zip(refusals, results[len(cases):]):
    t.check(got is None and needle in err, f"refused: {label}", err)

# hostile templates (they come from model files): a clean error each, no crash, no hang, bounded memory. Before
# the limits, the chains overflowed the stack (SIGSEGV), INT64_MIN % -1 raised SIGFPE, 200k nested blocks took
# minutes (line numbers recounted per tag) and the bombs ate all memory.
N = 200000
hostile = [("INT64_MIN % -1", "{{ (-9223372036854775807 - 1) % -1 }}", "integer overflow"),
           ("INT64_MIN // -1", "{{ (-9223372036854775807 - 1) // -1 }}", "integer overflow"),
           ("multiplication overflow", "{{ 9223372036854775807 * 3 }}", "integer overflow"),
           ("negation overflow", "{{ -(-9223372036854775807 - 1) }}", "integer overflow"),
           ("literal past 64 bits", "{{ 99999999999999999999 }}", "64 bits"),
           (f"{N} nested ifs", "{% if true %}" * N + "x" + "{% endif %}" * N, "nested"),
           (f"{N} nested fors", "{% for m in messages %}" * N + "x" + "{% endfor %}" * N, "nested"),
           (f"{N} elifs", "{% if false %}" + "{% elif false %}" * N + "{% endif %}", "nested"),
           ("a million nots", "{{ " + "not " * 1000000 + "x }}", "nested"),
           ("a million minus signs", "{{ " + "-" * 1000000 + "1 }}", "nested"),
           ("a million filters", "{{ 'a'" + "|trim" * 1000000 + " }}", "nested"),
           ("a million attributes", "{{ x" + ".a" * 1000000 + " }}", "nested"),
           ("a million additions", "{{ 0" + "+1" * 1000000 + " }}", "nested"),
           ("a million brackets", "{{ " + "[" * 1000000 + " }}", "nested"),
           ("100000 nested parentheses", "{{ " + "(" * 100000 + "1" + ")" * 100000 + " }}", "nested"),
           ("loop bomb", "{% for a in [1,1,1,1,1,1,1,1,1,1] %}" * 9 + "x" + "{% endfor %}" * 9, "MiB"),
           ("string doubling", "{% set s = 'xxxxxxxxxxxxxxxx' %}" + "{% set s = s + s %}" * 40 + "{{ s }}", "MiB")]
try:
    results = render_all([(tm, CONVS[0], True) for _, tm, _ in hostile])
except subprocess.TimeoutExpired:
    results = [(None, "timeout")] * len(hostile)
for (label, _, needle), (got, err) in zip(hostile, results):
    t.check(got is None and needle in err, f"hostile: {label}", err[:160])
t.finish()
