#!/usr/bin/env python3
"""Export benchmark: `tdeploy export` vs `optimum-cli export onnx` on random-weight
bert-base and bert-large Hugging Face directories.

Measures wall time and peak RSS of each exporter as a separate process (os.wait4
gives the child's own ru_maxrss), median over --runs runs, model files warm in the
page cache (one untimed warm-up run each). Both exporters write to the same disk.

Equal work: `tdeploy export` builds and writes the ONNX file and checks nothing against a framework, so
optimum is timed without its output validation (optimum-cli runs ONNX Runtime against PyTorch after every
export by default; the CLI has no switch for it): the script calls optimum.exporters.onnx.main_export(...,
do_validation=False) in a fresh interpreter, the code path optimum-cli runs, minus the validation.
--optimum-validate also times `optimum-cli export onnx` as users run it (validation included), reported on
its own row and never used for the ratio.

optimum + transformers + torch (CPU wheels) are installed into a separate venv by
this script (--optimum-venv, created when missing); CI never runs this. With
--skip-optimum only tdeploy is measured.

usage: bench/export_bench.py --tdeploy build/tdeploy [--workdir /tmp/tdeploy-export-bench] [--runs 5]
                             [--models bert-base,bert-large] [--optimum-venv DIR] [--skip-optimum]
                             [--optimum-validate] [--json results.json]
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "export"))

SIZES = {
    # BertConfig of bert-base-uncased / bert-large-uncased
    "bert-base": dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2),
    "bert-large": dict(vocab_size=30522, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                       intermediate_size=4096, max_position_embeddings=512, type_vocab_size=2),
}


def generate(name, d):
    import hf_random_model as gen  # numpy + safetensors only
    gen.write_model(d, "bert", "BertModel", seed=0, weight_scale=0.02,
                    input_names=["input_ids", "token_type_ids", "attention_mask"], **SIZES[name])


def make_models(workdir, names):
    """Write the model directories in a child process: ru_maxrss survives fork + exec, so the
    benchmark process must stay small for the exporters' peak RSS to be their own."""
    dirs = {}
    for name in names:
        d = os.path.join(workdir, "models", name)
        if not os.path.isfile(os.path.join(d, "model.safetensors")):
            print(f"writing random-weight {name} to {d} ...", flush=True)
            subprocess.run([sys.executable, os.path.abspath(__file__), "--generate", name, d], check=True)
        dirs[name] = d
    return dirs


def timed(cmd, env=None):
    """Run cmd; return (seconds, peak RSS bytes of that process tree's largest member, returncode)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise RuntimeError(f"{cmd[0]} failed ({rc}): {err[-2000:]}")
    return dt, ru.ru_maxrss * 1024, ru.ru_utime + ru.ru_stime


def measure(label, cmd, runs, out_path, env=None):
    def clean():
        if os.path.isdir(out_path):
            shutil.rmtree(out_path)
        elif os.path.exists(out_path):
            os.remove(out_path)
        if os.path.exists(out_path + ".data"):
            os.remove(out_path + ".data")
    clean()
    timed(cmd, env)  # warm-up: model files into the page cache, imports compiled
    times, rss, cpu = [], [], []
    for _ in range(runs):
        clean()
        dt, peak, c = timed(cmd, env)
        times.append(dt)
        rss.append(peak)
        cpu.append(c)
        print(f"  {label}: {dt:.3f} s wall, {c:.3f} s CPU, peak RSS {peak / 2**20:.0f} MiB", flush=True)
    clean()
    return {"seconds_median": statistics.median(times), "seconds_all": times,
            "cpu_seconds_median": statistics.median(cpu), "peak_rss_median": statistics.median(rss)}


def ensure_optimum(venv):
    py = os.path.join(venv, "bin", "python")
    if os.path.isfile(os.path.join(venv, ".installed")):
        return py
    print(f"creating {venv} and installing torch (CPU), transformers, optimum ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [py, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    # CPU-only wheels when PyTorch's index is reachable, else PyPI's default (CUDA) build
    if subprocess.run(pip + ["torch", "--index-url", "https://download.pytorch.org/whl/cpu", "--retries", "1",
                             "--timeout", "15"]).returncode != 0:
        subprocess.run(pip + ["torch"], check=True)
    subprocess.run(pip + ["optimum-onnx[onnxruntime]", "transformers"], check=True)
    open(os.path.join(venv, ".installed"), "w").close()
    return py


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tdeploy", required=True)
    ap.add_argument("--workdir", default="/tmp/tdeploy-export-bench")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--optimum-runs", type=int, default=3)
    ap.add_argument("--models", default="bert-base,bert-large")
    ap.add_argument("--optimum-venv", default=None)
    ap.add_argument("--skip-optimum", action="store_true")
    ap.add_argument("--optimum-validate", action="store_true",
                    help="also time optimum-cli with its default validation (own row, not in the ratio)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--outdir", default=None, help="where exports are written (default: workdir)")
    ap.add_argument("--generate", nargs=2, metavar=("NAME", "DIR"), help=argparse.SUPPRESS)
    if "--generate" in sys.argv:
        i = sys.argv.index("--generate")
        generate(sys.argv[i + 1], sys.argv[i + 2])
        return
    args = ap.parse_args()
    outdir = args.outdir or args.workdir
    os.makedirs(outdir, exist_ok=True)
    os.makedirs(args.workdir, exist_ok=True)
    names = args.models.split(",")
    dirs = make_models(args.workdir, names)
    optimum_py = None
    if not args.skip_optimum:
        optimum_py = ensure_optimum(args.optimum_venv or os.path.join(args.workdir, "optimum-venv"))
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "models": {}}
    for name in names:
        d = dirs[name]
        st = os.path.join(d, "model.safetensors")
        size = os.path.getsize(st)
        r = {"safetensors_bytes": size}
        print(f"{name}: {size / 2**20:.0f} MiB of weights", flush=True)
        out = os.path.join(outdir, f"{name}.tdeploy.onnx")
        r["tdeploy"] = measure("tdeploy export", [args.tdeploy, "export", "-m", d, "-o", out, "-q"], args.runs, out,
                               env)
        r["tdeploy"]["rss_over_model"] = r["tdeploy"]["peak_rss_median"] / size
        if optimum_py:
            out_dir = os.path.join(outdir, f"{name}.optimum")
            cli = os.path.join(os.path.dirname(optimum_py), "optimum-cli")
            # optimum's export without its validation: the same work tdeploy export does
            code = ("import sys; from optimum.exporters.onnx import main_export; "
                    "main_export(sys.argv[1], sys.argv[2], task='feature-extraction', opset=17, do_validation=False)")
            r["optimum"] = measure("optimum main_export, no validation", [optimum_py, "-c", code, d, out_dir],
                                   args.optimum_runs, out_dir, env)
            r["optimum"]["rss_over_model"] = r["optimum"]["peak_rss_median"] / size
            r["speedup"] = r["optimum"]["seconds_median"] / r["tdeploy"]["seconds_median"]
            if args.optimum_validate:  # as users run it, validation included: shown, not compared
                r["optimum-cli"] = measure("optimum-cli export onnx (validates)",
                                           [cli, "export", "onnx", "--model", d, "--task", "feature-extraction",
                                            "--opset", "17", out_dir], args.optimum_runs, out_dir, env)
                r["optimum-cli"]["rss_over_model"] = r["optimum-cli"]["peak_rss_median"] / size
        results["models"][name] = r
    load = os.getloadavg()
    results["loadavg"] = load
    print(f"\nload average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; outputs in {outdir}")
    print("\n| model | weights | exporter | wall time (median, range) | CPU time (median) | peak RSS (median) | RSS / weights |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results["models"].items():
        for ex in ("tdeploy", "optimum", "optimum-cli"):
            if ex in r:
                e = r[ex]
                print(f"| {name} | {r['safetensors_bytes'] / 2**20:.0f} MiB | {ex} | {e['seconds_median']:.3f} s "
                      f"({min(e['seconds_all']):.3f}-{max(e['seconds_all']):.3f}) | "
                      f"{e['cpu_seconds_median']:.3f} s | {e['peak_rss_median'] / 2**20:.0f} MiB | "
                      f"{e['rss_over_model']:.2f}x |")
        if "speedup" in r:
            print(f"| {name} | | optimum (no validation) / tdeploy | {r['speedup']:.1f}x | "
                  f"{r['optimum']['cpu_seconds_median'] / r['tdeploy']['cpu_seconds_median']:.1f}x | | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
