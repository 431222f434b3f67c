#!/usr/bin/env python3
"""`cmake --install` of the build under test into a fresh prefix, then, against the installed files only:
- the layout: shared + static library, public headers, the CLI, tdeploy.pc, the CMake package files;
- libtdeploy.so exports exactly the functions declared TD_API in the installed headers (nothing internal);
- the exported CMake targets name no src/ or build gen/ include directory;
- examples/embed.c builds with `pkg-config --cflags --libs tdeploy` and with find_package(tdeploy) (shared and
  static targets), and each binary exports + optimizes + runs tests/fixtures/hf/bert-base, printing the output's
  shape and values that agree with `tdeploy infer`-independent expectations (finite numbers, hidden size 32)."""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
BUILD = os.path.dirname(os.path.abspath(TD_BIN))
SRC = os.environ.get("TD_SRC", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FIX = os.environ.get("TD_FIXTURES", os.path.join(SRC, "tests", "fixtures"))
MODEL = os.path.join(FIX, "hf", "bert-base")

results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(f"{'PASS' if cond else 'FAIL'}: {name}{'' if cond else ' -- ' + str(detail)[-2000:]}")
    return cond


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def public_functions(include_dir):
    names = set()
    for h in glob.glob(os.path.join(include_dir, "tdeploy", "*.h")):
        text = open(h).read()
        names.update(re.findall(r"^TD_API\b[^;(]*?\b(td_[a-z0-9_]+)\s*\(", text, re.M))
    return names


def check_run(name, exe, env, work):
    os.makedirs(work, exist_ok=True)
    p = run([exe, MODEL, "Hello world!", work], env=env, timeout=300)
    ok = p.returncode == 0 and "exported bert" in p.stdout and "optimized:" in p.stdout
    m = re.search(r"shape \[1, (\d+), (\d+)\]:((?: -?\d+\.\d+)+)", p.stdout)
    ok = ok and m is not None and int(m.group(2)) == 32 and all(abs(float(v)) < 100 for v in m.group(3).split())
    check(f"{name} runs on bert-base", ok, p.stdout + p.stderr)


def main():
    tmp = tempfile.mkdtemp(prefix="td-install-", dir=os.environ.get("TD_TMP"))
    prefix = os.path.join(tmp, "prefix")
    try:
        p = run(["cmake", "--install", BUILD, "--prefix", prefix])
        if not check("cmake --install", p.returncode == 0, p.stdout + p.stderr):
            return finish()
        libdir = next((d for d in ("lib", "lib64", "lib/x86_64-linux-gnu") if
                       os.path.exists(os.path.join(prefix, d, "libtdeploy.so"))), None)
        check("libtdeploy.so installed", libdir is not None, os.listdir(prefix))
        if libdir is None:
            return finish()
        lib = os.path.join(prefix, libdir)
        for rel in ("libtdeploy.a", "pkgconfig/tdeploy.pc", "cmake/tdeploy/tdeployConfig.cmake",
                    "cmake/tdeploy/tdeployConfigVersion.cmake", "cmake/tdeploy/tdeployTargets.cmake"):
            check(f"{libdir}/{rel} installed", os.path.isfile(os.path.join(lib, rel)))
        for rel in ("bin/tdeploy", "include/tdeploy/tdeploy.h", "include/tdeploy/session.h",
                    "include/tdeploy/tokenizer.h", "include/tdeploy/pipeline.h"):
            check(f"{rel} installed", os.path.isfile(os.path.join(prefix, rel)))
        check("no internal header installed", sorted(os.listdir(os.path.join(prefix, "include"))) == ["tdeploy"])

        # exports == TD_API declarations
        nm = run(["nm", "-D", "--defined-only", os.path.join(lib, "libtdeploy.so")])
        exported = {ln.split()[-1] for ln in nm.stdout.splitlines() if ln.split() and ln.split()[1] in "TtDdBbRrVvWwiu"}
        exported = {s for s in exported if not s.startswith(("_init", "_fini", "_edata", "_end", "__bss_start"))}
        declared = public_functions(os.path.join(prefix, "include"))
        check("public API declared", len(declared) >= 30, declared)
        check("only TD_API symbols exported", exported <= declared, sorted(exported - declared))
        check("every TD_API symbol exported", declared <= exported, sorted(declared - exported))

        targets = "".join(open(f).read() for f in glob.glob(os.path.join(lib, "cmake", "tdeploy", "tdeployTargets*.cmake")))
        leaks = [d for d in (os.path.join(SRC, "src"), os.path.join(BUILD, "gen"), os.path.realpath(SRC)) if d in targets]
        check("exported targets carry no source/build include paths", not leaks, leaks)

        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(lib, "pkgconfig"),
                   LD_LIBRARY_PATH=lib + ":" + os.environ.get("LD_LIBRARY_PATH", ""))
        # pkg-config build
        flags = run(["pkg-config", "--cflags", "--libs", "tdeploy"], env=env)
        check("pkg-config knows tdeploy", flags.returncode == 0, flags.stderr)
        exe = os.path.join(tmp, "embed_pc")
        cc = os.environ.get("CC", "cc")
        p = run([cc, "-std=c11", "-Wall", "-Werror", os.path.join(SRC, "examples", "embed.c"), "-o", exe,
                 *flags.stdout.split()], env=env)
        if check("example builds with pkg-config", p.returncode == 0, p.stderr):
            check_run("pkg-config example", exe, env, os.path.join(tmp, "w1"))
        # CMake package build (shared and static)
        eb = os.path.join(tmp, "build-examples")
        p = run(["cmake", "-S", os.path.join(SRC, "examples"), "-B", eb, f"-DCMAKE_PREFIX_PATH={prefix}"], env=env)
        if check("examples configure with find_package(tdeploy)", p.returncode == 0, p.stdout + p.stderr):
            p = run(["cmake", "--build", eb], env=env)
            if check("examples build against the CMake package", p.returncode == 0, p.stdout + p.stderr):
                check_run("find_package example (shared)", os.path.join(eb, "embed"), env, os.path.join(tmp, "w2"))
                check_run("find_package example (static)", os.path.join(eb, "embed_static"), env,
                          os.path.join(tmp, "w3"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


def finish():
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
