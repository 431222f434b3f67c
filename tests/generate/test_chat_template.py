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
                   ("Mistral", MISTRAL), ("Phi-3", PHI3), ("layout", LAYOUT)]:
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
            ("slice", "{{ messages[1:] }}", "slices"),
            ("100000 nested ifs", "{% if 1 %}" * 100000 + "x" + "{% endif %}" * 100000, "nested more than"),
            ("100000 nested parentheses", "{{ " + "(" * 100000 + "1" + ")" * 100000 + " }}", "nested too deeply"),
            ("a 100000-term sum", "{{ 1" + " + 1" * 100000 + " }}", "nested too deeply"),
            ("100000 nots", "{{ " + "not " * 100000 + "1 }}", "nested too deeply"),
            ("100000 elifs", "{% if 0 %}" + "{% elif 0 %}" * 100000 + "{% endif %}", "nested more than")]
results = render_all(cases + [(tm, CONVS[0], True) for _, tm, _ in refusals])
for (label, want, werr), (got, err) in zip(expected, results):
    if werr:
        t.check(got is None and werr in err, f"{label}: raise_exception refuses", err)
    else:
        t.check(got == want, f"{label}: same as jinja2", "" if got == want else
                f"\n got  {got!r}\n want {want!r}\n {err}")
for (label, _, needle), (got, err) in zip(refusals, results[len(cases):]):
    t.check(got is None and needle in err, f"refused: {label}", err)
t.finish()
