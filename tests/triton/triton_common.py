"""Shared helpers for the tests that serve tdeploy models in the real Triton
Inference Server (tritonserver 2.51.0 from PyPI's nvidia-pytriton 0.7.0, which
scripts/install-deps.sh unpacks; TD_TRITONSERVER_DIR overrides where).

Every server listens on 127.0.0.1 on free ports picked at run time, every wait is
bounded, and every server started here is killed when the test exits, also on
failure (atexit plus the `Server` context manager)."""
import atexit
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np

TD_BIN = os.environ["TD_BIN"]
FIX = os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
TMP = os.path.join(os.environ.get("TD_TMP", "/tmp"), "triton")
SRC = os.environ.get("TD_SRC", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
# the backend CMake builds next to the CLI: build/triton_backends/tdeploy/libtriton_tdeploy.so
BACKEND_DIR = os.environ.get("TD_TRITON_BACKEND_DIR",
                             os.path.join(os.path.dirname(os.path.abspath(TD_BIN)), "triton_backends"))
CACHE = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
SERVER_DIR = os.environ.get("TD_TRITONSERVER_DIR", os.path.join(CACHE, "tdeploy", "pytriton-0.7.0"))
SERVER_BIN = os.path.join(SERVER_DIR, "pytriton", "tritonserver", "bin", "tritonserver")
SERVER_LIBS = os.path.join(SERVER_DIR, "nvidia_pytriton.libs")
STOCK_BACKENDS = os.path.join(SERVER_DIR, "pytriton", "tritonserver", "backends")
# numpy < 2 and tokenizers for the server's own Python (the Python backend's stub links the system libpython of
# this minor version and ignores PYTHONPATH): scripts/install-deps.sh puts them here; TD_TRITON_PYTHONPATH overrides
PY_DEPS = os.environ.get("TD_TRITON_PYTHONPATH", os.path.join(
    CACHE, "tdeploy", f"triton-python-{sys.version_info.major}.{sys.version_info.minor}"))

# the encoder fixtures (tests/fixtures/hf) and what their tokenizer pairs mean
ENCODERS = ["bert-base", "bert-seqcls", "bert-tokcls", "bert-qa", "distilbert-seqcls", "roberta-seqcls", "xlmr-base",
            "electra-base", "minilm-st"]


class Tally:
    def __init__(self):
        self.failed = 0
        self.passed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {what}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {what} {str(detail)[:1500]}", flush=True)
        return ok

    def note(self, what):
        print(f"NOTE {what}", flush=True)

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        sys.exit(1 if self.failed else 0)


def require_server(t):
    """Fail (never skip) when the server or the backend is missing: both are installed by the test setup."""
    ok = t.check(os.access(SERVER_BIN, os.X_OK), f"tritonserver present at {SERVER_BIN}",
                 "run scripts/install-deps.sh (it unpacks nvidia-pytriton==0.7.0) or set TD_TRITONSERVER_DIR")
    ok &= t.check(os.path.isfile(os.path.join(BACKEND_DIR, "tdeploy", "libtriton_tdeploy.so")),
                  f"libtriton_tdeploy.so built under {BACKEND_DIR}", "build the triton_tdeploy target")
    if not ok:
        t.finish()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sanitizer_env(env):
    """A backend built with -DTD_SANITIZE=ON (the ASan CI job) is loaded into the uninstrumented tritonserver by
    preloading the sanitizer runtime. Leak detection is off there: the server's own allocations at exit are not
    ours to judge; every other ASan/UBSan report aborts the server, which fails the test."""
    lib = os.path.join(BACKEND_DIR, "tdeploy", "libtriton_tdeploy.so")
    try:
        dyn = subprocess.run(["nm", "-D", "--undefined-only", lib], capture_output=True, text=True).stdout
        needed = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True).stdout
    except OSError:
        return None
    if "libasan" in needed:
        rt = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    elif "__asan_init" in dyn:
        rt = subprocess.run(["clang", "-print-file-name=libclang_rt.asan-x86_64.so"], capture_output=True,
                            text=True).stdout.strip()
    else:
        return None
    env["LD_PRELOAD"] = rt
    env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1:abort_on_error=1:verify_asan_link_order=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return rt


_live = []


def _kill_all():
    for p in _live:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait(timeout=30)


atexit.register(_kill_all)


class Server:
    """tritonserver over the given repositories, the tdeploy backend plus the wheel's Python backend."""

    def __init__(self, repos, name, explicit=False, extra=(), env=None):
        self.repos, self.name, self.explicit, self.extra = list(repos), name, explicit, list(extra)
        self.env = dict(os.environ if env is None else env)
        self.env["LD_LIBRARY_PATH"] = SERVER_LIBS + (":" + self.env["LD_LIBRARY_PATH"]
                                                     if self.env.get("LD_LIBRARY_PATH") else "")
        self.sanitizer = sanitizer_env(self.env)
        if self.sanitizer:
            print(f"NOTE the backend is sanitizer-instrumented: server runs with LD_PRELOAD={self.sanitizer}")
        self.log_path = os.path.join(TMP, f"server-{name}.log")
        self.proc = None

    def start(self, timeout=120):
        # the server wants one backend directory: link ours beside the wheel's python backend
        bdir = os.path.join(TMP, f"backends-{self.name}")
        os.makedirs(bdir, exist_ok=True)
        dst = os.path.join(bdir, "tdeploy")
        if os.path.islink(dst):
            os.unlink(dst)
        os.symlink(os.path.abspath(os.path.join(BACKEND_DIR, "tdeploy")), dst)
        # the wheel's Python backend, with the stub built for this Python (as pytriton installs it)
        py = os.path.join(bdir, "python")
        os.makedirs(py, exist_ok=True)
        stub = os.path.join(SERVER_DIR, "pytriton", "tritonserver", "python_backend_stubs",
                            f"{sys.version_info.major}.{sys.version_info.minor}", "triton_python_backend_stub")
        for f in ["libtriton_python.so", "triton_python_backend_utils.py"]:
            if not os.path.lexists(os.path.join(py, f)):
                os.symlink(os.path.join(STOCK_BACKENDS, "python", f), os.path.join(py, f))
        if os.path.isfile(stub) and not os.path.lexists(os.path.join(py, "triton_python_backend_stub")):
            os.symlink(stub, os.path.join(py, "triton_python_backend_stub"))
        for attempt in range(3):  # a port taken between free_port() and bind(): pick new ones
            self.http, self.grpc = free_port(), free_port()
            args = [SERVER_BIN, "--backend-directory", bdir, "--http-address", "127.0.0.1", "--http-port",
                    str(self.http), "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc),
                    "--allow-metrics", "false", "--exit-on-error", "false", "--strict-readiness", "false",
                    "--exit-timeout-secs", "20"]
            for r in self.repos:
                args += ["--model-repository", r]
            if self.explicit:
                args += ["--model-control-mode", "explicit", "--load-model", "*"]
            self.log = open(self.log_path, "w")
            self.proc = subprocess.Popen(args + self.extra, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
            _live.append(self.proc)
            deadline = time.time() + timeout
            while time.time() < deadline and self.proc.poll() is None:
                if self.get("/v2/health/live") == 200:
                    return self
                time.sleep(0.2)
            bound = "Address already in use" in self.log_text()
            self.stop()
            if not bound:
                break
        raise RuntimeError(f"tritonserver did not come up; log {self.log_path}:\n{self.log_text()[-3000:]}")

    def get(self, path, method="GET", body=None):
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", method=method, data=body)
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def index(self):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}/v2/repository/index", method="POST", data=b"{}")
        with urllib.request.urlopen(req, timeout=10) as r:
            return {m["name"]: m for m in json.loads(r.read())}

    def ready(self, model):
        return self.get(f"/v2/models/{model}/ready") == 200

    def log_text(self):
        try:
            return open(self.log_path, errors="replace").read()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGKILL, timeout=60):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def convert(model, out, *extra):
    """tdeploy convert with a dynamic-batching profile; returns the CompletedProcess."""
    return subprocess.run([TD_BIN, "convert", "-m", model, "-o", out, "--batch-size", "1", "4", "8", "--no-bench",
                           "-q", *extra],
                          capture_output=True, text=True, timeout=900)


def load_safetensors(path):
    from safetensors.numpy import load_file
    return load_file(path)


def bytes_tensor(texts):
    """(n, 1) object array of UTF-8 bytes, as tritonclient sends TYPE_STRING."""
    return np.array([[t.encode("utf-8") if isinstance(t, str) else t] for t in texts], dtype=object)


def close(a, b, atol, rtol=0.0):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False, f"shape {a.shape} vs {b.shape}"
    err = np.abs(a - b) - (atol + rtol * np.abs(b))
    return bool((err <= 0).all()), f"max abs diff {np.abs(a - b).max() if a.size else 0:.3g}"


# ---- decoupled (streaming) generation models over gRPC
class Stream:
    """One gRPC stream; run() sends a request and collects its responses up to the final one or an error."""

    def __init__(self, port, wait=300):
        self.wait = wait  # seconds for any one response (the ASan job is slow)
        import tritonclient.grpc as tg

        self.tg = tg
        self.client = tg.InferenceServerClient(f"127.0.0.1:{port}")
        self.q = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.q.put((result, error)))

    def send(self, model, inputs, rid):
        ins = []
        for name, (arr, dt) in inputs.items():
            x = self.tg.InferInput(name, list(arr.shape), dt)
            x.set_data_from_numpy(arr)
            ins.append(x)
        self.client.async_stream_infer(model, ins, request_id=rid, enable_empty_final_response=True)

    def collect(self, rid, timeout=None):
        """(pieces, finish_reason, error, final_seen)"""
        pieces, finish, deadline = [], None, time.time() + (timeout or self.wait)
        while time.time() < deadline:
            try:
                result, error = self.q.get(timeout=max(0.1, deadline - time.time()))
            except queue.Empty:
                break
            if error is not None:
                return pieces, finish, str(error), True
            resp = result.get_response()
            if resp.id != rid:
                continue
            text = result.as_numpy("TEXT_OUTPUT")
            if text is not None and text.size and text.reshape(-1)[0]:
                pieces.append(text.reshape(-1)[0])
            fin = result.as_numpy("FINISH_REASON")
            if fin is not None and fin.size:
                finish = fin.reshape(-1)[0].decode()
            if resp.parameters.get("triton_final_response") and resp.parameters["triton_final_response"].bool_param:
                return pieces, finish, None, True
        return pieces, finish, "timed out", False

    def run(self, model, inputs, rid, timeout=None):
        self.send(model, inputs, rid)
        return self.collect(rid, timeout)

    def close(self, cancel=False):
        self.client.stop_stream(cancel_requests=cancel)
        self.client.close()


def text_in(s):
    return np.array([s.encode("utf-8") if isinstance(s, str) else s], dtype=object), "BYTES"


def scalar(v, dt):
    return np.array([v], dtype={"INT32": np.int32, "FP32": np.float32, "UINT64": np.uint64}[dt]), dt
