#!/usr/bin/env python3
"""Repository hygiene, as CI checks it: no unresolved merge-conflict markers in
any tracked file, no merge=union attributes (they hide conflicts in sources),
and every command the README's "Commands" section lists answers `--help` and
`tdeploy help CMD` with exit 0 and a usage line (so the README cannot describe a
command that does not exist). Every command of `tdeploy --help` must be in the
README too."""
import os
import re
import subprocess
import sys

TD_BIN = os.environ["TD_BIN"]
SRC = os.path.abspath(os.environ.get("TD_SRC", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")))
passed = failed = 0


def check(ok, what, detail=""):
    global passed, failed
    passed += bool(ok)
    failed += not ok
    print(f"{'PASS' if ok else 'FAIL'} {what}{'' if ok else ' ' + detail}")


def tracked_files():
    try:
        out = subprocess.run(["git", "-C", SRC, "ls-files", "-z"], capture_output=True, check=True).stdout
        return [os.path.join(SRC, p) for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):  # a source tarball: walk it
        files = []
        for root, dirs, names in os.walk(SRC):
            dirs[:] = [d for d in dirs if not d.startswith((".git", "build"))]
            files += [os.path.join(root, n) for n in names]
        return files


# a marker is 7 of <, |, = or > alone at the start of a line (git writes "<<<<<<< HEAD", "=======", ...)
MARKER = re.compile(rb"^(<{7}|\|{7}|>{7})( |$)|^={7}$", re.M)
bad = []
n_text = 0
for path in tracked_files():
    if not os.path.isfile(path):
        continue
    data = open(path, "rb").read()
    if b"\0" in data[:8192]:
        continue  # binary (ONNX, safetensors fixtures)
    n_text += 1
    for m in MARKER.finditer(data):
        line = data.count(b"\n", 0, m.start()) + 1
        bad.append(f"{os.path.relpath(path, SRC)}:{line}")
check(n_text > 50 and not bad, f"no merge-conflict markers in {n_text} tracked text files", " ".join(bad[:20]))

union = []
for path in tracked_files():
    if os.path.basename(path) == ".gitattributes" and os.path.isfile(path):
        union += [f"{os.path.relpath(path, SRC)}: {l.strip()}" for l in open(path) if "merge=union" in l]
check(not union, "no merge=union attributes", "; ".join(union))

# the commands the README documents
readme = open(os.path.join(SRC, "README.md")).read()
section = readme.split("## Commands", 1)[1].split("\n## ", 1)[0] if "## Commands" in readme else ""
listed = []
for line in section.splitlines():
    m = re.match(r"^\s+tdeploy ([a-z][a-z-]*)\b", line)
    if m and m.group(1) not in listed:
        listed.append(m.group(1))
check(len(listed) >= 10, f"README lists the commands ({', '.join(listed)})")
for cmd in listed:
    for args in ([cmd, "--help"], ["help", cmd]):
        p = subprocess.run([TD_BIN] + args, capture_output=True, text=True, timeout=60)
        check(p.returncode == 0 and "usage: tdeploy " + cmd in p.stdout and not p.stderr,
              f"tdeploy {' '.join(args)}: exit 0 with a usage line", f"rc={p.returncode} err={p.stderr[:200]}")

# every command tdeploy has is in the README
p = subprocess.run([TD_BIN, "--help"], capture_output=True, text=True, timeout=60)
known = re.findall(r"^  ([a-z][a-z-]*) ", p.stdout, re.M)
missing = [c for c in known if c not in listed]
check(p.returncode == 0 and known and not missing, "every command of `tdeploy --help` is in README's Commands",
      f"missing: {missing}")
p = subprocess.run([TD_BIN, "help", "no-such-command"], capture_output=True, text=True, timeout=60)
check(p.returncode == 2 and "no-such-command" in p.stderr, "tdeploy help UNKNOWN: exit 2 naming it", p.stderr[:200])

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
