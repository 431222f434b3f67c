"""tdeploy optimize as a command: usage errors exit 2, bad input exits 1 with a message naming the problem, and no
output file is left behind on failure; -v logs what each pass changed; --passes runs only the named passes."""
import os
import subprocess

from opt_common import BIN, FIX, Results, require_env, TMP

require_env()
R = Results("test_optimize_cli")
OUT = os.path.join(TMP, "opt_cli")
os.makedirs(OUT, exist_ok=True)
SRC = os.path.join(FIX, "onnx", "bert-base.torchscript.onnx")


def run(*args):
    return subprocess.run([BIN, "optimize", *args], capture_output=True, text=True)


dst = os.path.join(OUT, "out.onnx")
cases = [
    ("no output", [SRC], 2, "need an input model"),
    ("bad target", [SRC, "-o", dst, "--target", "gpu"], 2, "fused or portable"),
    ("bad precision", [SRC, "-o", dst, "--precision", "int2"], 2, "fp32, fp16, bf16, int8 or int4"),
    ("int4 portable", [SRC, "-o", dst, "--precision", "int4", "--target", "portable"], 2, "--target fused"),
    ("int8 portable", [SRC, "-o", dst, "--precision", "int8", "--target", "portable"], 2, "--target fused"),
    ("unknown flag", [SRC, "-o", dst, "--fast"], 2, "unknown option"),
    ("unknown pass", [SRC, "-o", dst, "--passes", "dce,magic"], 1, "unknown pass 'magic'"),
    ("contrib pass on portable", [SRC, "-o", dst, "--target", "portable", "--passes", "attention"], 1,
     "com.microsoft"),
    ("bad fold limit", [SRC, "-o", dst, "--fold-limit", "-5"], 2, "positive element count"),
    ("missing input", [os.path.join(OUT, "nope.onnx"), "-o", dst], 1, "nope.onnx"),
]
garbage = os.path.join(OUT, "garbage.onnx")
with open(garbage, "wb") as f:
    f.write(b"\x0a\xff\xff\xff\xff\x0f this is not a model")
cases.append(("garbage input", [garbage, "-o", dst], 1, "garbage.onnx"))
for name, args, code, needle in cases:
    if os.path.exists(dst):
        os.remove(dst)
    p = run(*args)
    R.check(f"{name}: exit {code}", p.returncode == code, f"got {p.returncode}: {p.stderr.strip()[:200]}")
    R.check(f"{name}: message", needle in p.stderr, p.stderr.strip()[:200])
    R.check(f"{name}: no output written", not os.path.exists(dst))

p = run(SRC, "-o", dst, "-v")
R.check("-v logs passes", p.returncode == 0 and "pass attention" in p.stderr and "change(s)" in p.stderr,
        p.stderr.strip()[:200])
p = run(SRC, "-o", dst, "--passes", "dce,eliminate", "--json")
import json  # noqa: E402
rep = json.loads(p.stdout) if p.returncode == 0 else {}
names = sorted(x["name"] for x in rep.get("passes", []))
R.check("--passes runs only those", names == ["dce", "eliminate"], str(names))
fused = {k: v for k, v in rep.get("fusions", {"x": 1}).items() if v and k != "LayerNormalization"}
R.check("--passes fuses nothing", not fused, str(fused))  # (the export already has LayerNormalization nodes)

# --cache-output only changes how the file reaches the disk (page cache instead of O_DIRECT; tests/unit/
# test_atomic_file checks the residency itself), never its bytes.
cached = os.path.join(OUT, "cached.onnx")
p1 = run(SRC, "-o", dst)
p2 = run(SRC, "-o", cached, "--cache-output")
same = p1.returncode == 0 and p2.returncode == 0 and open(dst, "rb").read() == open(cached, "rb").read()
R.check("--cache-output: same bytes as the default write", same, f"{p1.stderr.strip()[:120]} {p2.stderr.strip()[:120]}")
R.finish()
