"""Chat templates (src/generate/chat_template.c) against jinja2 rendering them as transformers'
apply_chat_template does (trim_blocks, lstrip_blocks): the ChatML (SmolLM2, Qwen2), Llama-3, Mistral and Phi-3
families and whitespace-control cases, byte for byte, through ctypes on libtdeploy.so; raise_exception and
constructs outside the subset are clean errors."""
import ctypes
import os
import subprocess
import sys

import jinja2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "export"))
from export_common import Tally  # noqa: E402

TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
LIB = os.path.join(os.path.dirname(os.path.abspath(TD_BIN)), "libtdeploy.so")
if os.environ.get("TD_CHAT_REEXEC") != "1":  # an ASan build of the library needs its runtime preloaded
    nm = subprocess.run(["nm", "-D", "--undefined-only", LIB], capture_output=True, text=True)
    if "__asan_" in nm.stdout:
        rt = subprocess.run(["clang", "-print-file-name=libclang_rt.asan-x86_64.so"], capture_output=True,
                            text=True).stdout.strip()
        env = dict(os.environ, LD_PRELOAD=rt, TD_CHAT_REEXEC="1",
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
        sys.exit(subprocess.run([sys.executable, *sys.argv], env=env).returncode)
lib = ctypes.CDLL(LIB)


class Msg(ctypes.Structure):
    _fields_ = [("role", ctypes.c_char_p), ("content", ctypes.c_char_p)]


class Vars(ctypes.Structure):
    _fields_ = [("bos_token", ctypes.c_char_p), ("eos_token", ctypes.c_char_p), ("add_generation_prompt", ctypes.c_bool)]


lib.td_ctx_new.restype = ctypes.c_void_p
lib.td_error_message.restype = ctypes.c_char_p
lib.td_error_message.argtypes = [ctypes.c_void_p]
lib.td_chat_render.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(Msg), ctypes.c_size_t,
                               ctypes.POINTER(Vars), ctypes.POINTER(ctypes.c_void_p)]
libc = ctypes.CDLL(None)
ctx = lib.td_ctx_new()
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


def render_c(tmpl, msgs, gen=True, bos="<s>", eos="</s>"):
    arr = (Msg * max(len(msgs), 1))(*[Msg(m["role"].encode(), m["content"].encode()) for m in msgs])
    v = Vars(bos.encode(), eos.encode(), gen)
    out = ctypes.c_void_p()
    st = lib.td_chat_render(ctx, tmpl.encode(), arr, len(msgs), ctypes.byref(v), ctypes.byref(out))
    if st != 0:
        return None, lib.td_error_message(ctx).decode()
    s = ctypes.string_at(out.value).decode()
    libc.free(out)
    return s, ""


env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


env.globals["raise_exception"] = raise_exception
for name, tmpl in [("ChatML/SmolLM2", CHATML_SMOL), ("ChatML/Qwen2", QWEN2), ("Llama-3", LLAMA3),
                   ("Mistral", MISTRAL), ("Phi-3", PHI3), ("layout", LAYOUT)]:
    for i, msgs in enumerate(CONVS):
        for gen in (True, False):
            try:
                want, werr = env.from_string(tmpl).render(messages=msgs, bos_token="<s>", eos_token="</s>",
                                                          add_generation_prompt=gen), None
            except jinja2.exceptions.TemplateError as e:
                want, werr = None, str(e)
            got, err = render_c(tmpl, msgs, gen)
            if werr:
                t.check(got is None and werr in err, f"{name} conv {i}: raise_exception refuses", err)
            else:
                t.check(got == want, f"{name} conv {i} gen={gen}: same as jinja2", "" if got == want else
                        f"\n got  {got!r}\n want {want!r}\n {err}")

for label, tmpl, needle in [("macro", "{% macro f() %}x{% endmacro %}", "macro"),
                            ("namespace()", "{% set ns = namespace(a=1) %}", "namespace"),
                            ("unclosed tag", "{{ messages", "unclosed"),
                            ("missing endfor", "{% for m in messages %}x", "endfor"),
                            ("unknown filter", "{{ 'a' | tojson }}", "tojson"),
                            ("slice", "{{ messages[1:] }}", "slices")]:
    got, err = render_c(tmpl, CONVS[0])
    t.check(got is None and needle in err, f"refused: {label}", err)
t.finish()
