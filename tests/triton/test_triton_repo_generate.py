"""`tdeploy triton-repo` for decoders, served by the real tritonserver (2.51.0) in
decoupled (streaming) mode over gRPC:

- one repository written model by model by triton-repo from every kind of source:
  the gpt2-gen and llama-gen HF folders (exported + optimized in a temporary folder),
  llama-gen written as GGUF by gguf-py (F32 and Q8_0, tokenizer from its metadata), a
  convert output folder (gpt2-gen) and an Optimum ONNX export (llama-gen, with
  --tokenizer); each writes the same decoupled model convert writes (config.pbtxt
  compared with convert's, apart from the name);
- greedy: the streamed text of each fixture's `greedy` goldens equals HF tokenizers'
  decode of transformers' new tokens, FINISH_REASON "length" (F32 GGUF and the Optimum
  export included); the Q8_0 GGUF streams the same text as `tdeploy generate` on the
  .gguf file;
- the repository rules: adding a model keeps the others; a folder tdeploy did not
  write is refused (exit 1, untouched) unless --force; no temporary folder is left;
- flags: --max-new-tokens becomes the default of a request; --batch-size, --device cuda,
  --triton-backend onnxruntime with a decoder are usage errors (exit 2); an encoder HF
  folder is refused with a message naming convert (exit 1)."""
import json
import os
import shutil
import subprocess
import sys

from safetensors import safe_open
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "gguf"))
from triton_common import FIX, TD_BIN, TMP, Server, Stream, Tally, convert, require_server, scalar, text_in  # noqa: E402

t = Tally()
require_server(t)
ROOT = os.path.join(TMP, "repo_generate")
shutil.rmtree(ROOT, ignore_errors=True)
os.makedirs(ROOT)
REPO = os.path.join(ROOT, "repo")


def triton_repo(model, name, *extra):
    return subprocess.run([TD_BIN, "triton-repo", model, "-o", REPO, "--name", name, "--threads", "2", "-q", *extra],
                          capture_output=True, text=True, timeout=600)


def config_body(path):
    """config.pbtxt without its header and name lines (those name the tdeploy version and the model)."""
    lines = open(path).read().splitlines()
    return [ln for ln in lines if not ln.startswith("# written by") and not ln.startswith("name:")]


# ---- sources
gguf_ok = True
try:
    from gguf import GGMLQuantizationType as Q
    from gguf_fixture import write_gguf
except ImportError as e:  # gguf-py is a test dependency (install-deps.sh): its absence is a failure
    gguf_ok = t.check(False, "gguf-py importable (it writes the GGUF fixtures)", str(e))

conv = os.path.join(ROOT, "conv-gpt2")
p = convert(os.path.join(FIX, "hf", "gpt2-gen"), conv, "--threads", "2")
t.check(p.returncode == 0, "gpt2-gen: convert --task text-generation (the folder triton-repo reads back)",
        p.stderr[-600:])

sources = [("gpt2_hf", os.path.join(FIX, "hf", "gpt2-gen"), "gpt2-gen", ()),
           ("llama_hf", os.path.join(FIX, "hf", "llama-gen"), "llama-gen", ()),
           ("gpt2_conv", conv, "gpt2-gen", ()),
           ("llama_optimum", os.path.join(FIX, "onnx", "llama-gen.optimum-past.onnx"), "llama-gen",
            ("--tokenizer", os.path.join(FIX, "hf", "llama-gen")))]
if gguf_ok:
    for qname, qt in (("f32", Q.F32), ("q8", Q.Q8_0)):
        g = os.path.join(ROOT, f"llama-gen.{qname}.gguf")
        write_gguf(os.path.join(FIX, "hf", "llama-gen"), g, "llama", qt)
        sources.append((f"llama_gguf_{qname}", g, "llama-gen", ()))

written = {}
for name, src, fixture, extra in sources:
    p = triton_repo(src, name, *extra)
    cfg = os.path.join(REPO, name, "config.pbtxt")
    if t.check(p.returncode == 0 and os.path.isfile(cfg), f"{name}: triton-repo writes {name}", p.stderr[-600:]):
        written[name] = fixture
t.check(all(os.path.isdir(os.path.join(REPO, n)) for n in written),
        "adding models one by one keeps the earlier ones", str(sorted(os.listdir(REPO))))
conv_cfg = os.path.join(conv, "triton", "gpt2-gen", "config.pbtxt")
for name in written:
    if os.path.isfile(conv_cfg):
        t.check(config_body(os.path.join(REPO, name, "config.pbtxt")) == config_body(conv_cfg),
                f"{name}: config.pbtxt is the one convert writes (name aside)")
ver = os.path.join(REPO, "llama_gguf_f32", "1")
if "llama_gguf_f32" in written:
    t.check(os.path.isfile(os.path.join(ver, "tokenizer.json")) and os.path.isfile(os.path.join(ver, "model-optimized.onnx")),
            "GGUF: model-optimized.onnx and the tokenizer.json of its metadata in the version folder",
            str(os.listdir(ver)))

# ---- flags: usage errors and the --max-new-tokens default
gpt2 = os.path.join(FIX, "hf", "gpt2-gen")
for what, extra in [("--batch-size", ("--batch-size", "1", "2", "4")), ("--device cuda", ("--device", "cuda")),
                    ("--triton-backend onnxruntime", ("--triton-backend", "onnxruntime"))]:
    p = triton_repo(gpt2, "refused", *extra)
    t.check(p.returncode == 2 and "generation" in p.stderr and not os.path.exists(os.path.join(REPO, "refused")),
            f"decoder with {what}: usage error (exit 2) naming text generation, nothing written",
            f"rc={p.returncode} {p.stderr[-300:]}")
p = triton_repo(os.path.join(FIX, "hf", "bert-base"), "encoder")
t.check(p.returncode == 1 and "convert" in p.stderr and not os.path.exists(os.path.join(REPO, "encoder")),
        "an encoder HF folder: refused (exit 1) with a message naming convert", f"rc={p.returncode} {p.stderr[-300:]}")
p = triton_repo(gpt2, "short", "--max-new-tokens", "3")
t.check(p.returncode == 0 and 'string_value: "3"' in open(os.path.join(REPO, "short", "config.pbtxt")).read(),
        "--max-new-tokens 3: parameter max_new_tokens 3", p.stderr[-300:])

t.check(not [f for f in os.listdir(ROOT) if ".tmp." in f or ".export." in f],
        "no temporary folder left beside OUT (after the writes and the refusals)", str(os.listdir(ROOT)))

# ---- repository rules: a folder tdeploy did not write is refused unless --force
alien = os.path.join(REPO, "alien")
os.makedirs(os.path.join(alien, "1"))
with open(os.path.join(alien, "config.pbtxt"), "w") as f:
    f.write('name: "alien"\nbackend: "python"\n')
p = triton_repo(gpt2, "alien")
t.check(p.returncode == 1 and "--force" in p.stderr and 'backend: "python"' in open(os.path.join(alien, "config.pbtxt")).read(),
        "a model folder tdeploy did not write: refused (exit 1) naming --force, left untouched", p.stderr[-300:])
p = triton_repo(gpt2, "alien", "--force")
t.check(p.returncode == 0 and "decoupled: true" in open(os.path.join(alien, "config.pbtxt")).read(),
        "with --force it is replaced by the generation model", p.stderr[-300:])
written["alien"] = "gpt2-gen"

# ---- served: greedy goldens over gRPC streaming
srv = Server([REPO], "repo_generate").start()
index = srv.index()
stream = Stream(srv.grpc)
rid = 0


def run(model, inputs):
    global rid
    rid += 1
    return stream.run(model, inputs, str(rid))


for name, fixture in written.items():
    if not t.check(srv.ready(name), f"{name}: loads in tritonserver", index.get(name)):
        continue
    if name == "llama_gguf_q8":
        continue  # quantized weights: compared with tdeploy generate below
    tok = Tokenizer.from_file(os.path.join(FIX, "hf", fixture, "tokenizer.json"))
    meta = safe_open(os.path.join(FIX, "hf", fixture, "golden.safetensors"), "np").metadata()
    for k, g in enumerate(json.loads(meta["greedy"])):
        new_ids = g["output_ids"][len(g["prompt_ids"]):]
        prompt = tok.decode(g["prompt_ids"], skip_special_tokens=False)
        want = tok.decode(new_ids, skip_special_tokens=True)
        pieces, finish, err, final = run(name, {"TEXT": text_in(prompt), "temperature": scalar(0, "FP32"),
                                                "max_new_tokens": scalar(len(new_ids), "INT32")})
        got = b"".join(pieces).decode("utf-8", errors="replace")
        t.check(err is None and final and finish == "length" and got == want,
                f"{name} greedy[{k}]: streamed text == transformers' greedy tokens, FINISH_REASON length",
                f"err={err} finish={finish} got={got!r} want={want!r}")
if srv.ready("short"):
    pieces, finish, err, final = run("short", {"TEXT": text_in("Once upon a time")})
    t.check(err is None and finish == "length", "short: a request without max_new_tokens ends at the model's 3",
            f"err={err} finish={finish}")
if "llama_gguf_q8" in written and srv.ready("llama_gguf_q8"):
    prompt = "Once upon a time"
    pieces, finish, err, final = run("llama_gguf_q8", {"TEXT": text_in(prompt), "temperature": scalar(0, "FP32"),
                                                       "max_new_tokens": scalar(12, "INT32")})
    cli = subprocess.run([TD_BIN, "generate", os.path.join(ROOT, "llama-gen.q8.gguf"), "--prompt", prompt,
                          "--max-new-tokens", "12", "--threads", "2", "--json", "-q"],
                         capture_output=True, text=True, timeout=600)
    want = json.loads(cli.stdout)["results"][0]["text"] if cli.returncode == 0 else None
    got = b"".join(pieces).decode("utf-8", errors="replace")
    t.check(err is None and want is not None and got == want and finish == "length",
            "llama_gguf_q8 (Q8_0 blocks): streamed greedy text == tdeploy generate on the .gguf",
            f"err={err} got={got!r} want={want!r} {cli.stderr[-300:]}")
stream.close()
srv.stop()
t.finish()
