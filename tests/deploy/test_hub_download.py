#!/usr/bin/env python3
"""tdeploy download against a local stand-in for the Hugging Face Hub.

The server (127.0.0.1, a free port, bounded in time) serves the Hub's URL
layout for a few fake repositories built from the minilm-st fixture:
  GET  /api/models/ORG/NAME/revision/REV  -> {"sha", "siblings": [{"rfilename"}]}
  HEAD|GET /ORG/NAME/resolve/REV/PATH     -> small files: 200 + ETag (git blob sha1) + X-Repo-Commit;
                                             LFS files: 302 to /cdn/SHA256 + X-Linked-Etag/X-Linked-Size
  GET  /cdn/SHA256                        -> the bytes, with Range support
plus a gated repo (401 + X-Error-Code: GatedRepo without the token), a missing
repo (404), a pickle-only repo, a sharded repo and a repo whose big file drops
the connection half-way on the first attempt. Every request is recorded, so the
test can check that a cache hit makes none.

Hostile repositories (issue 18), each misbehaving in one way: a weights body
longer than announced, a Content-Length beyond the announced size, a gzip
bomb as Transfer-Encoding, absurd and disk-filling sizes, endless and plain HTML
error bodies, a slow drip (against TDEPLOY_HUB_DEADLINE), and an index of
200,000 shard names. Planted symlinks and a FIFO in the cache check that nothing
is written outside HF_HOME and nothing blocks. Every stream the server sends is
bounded in bytes and seconds, and counted, so the test sees when the client
stopped reading.

Last, one resolver for every command: a download into HF_HOME=~/... is what
`inspect` and `convert` open for ORG/NAME, and ORG/NAME means refs/main for both.
"""
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib

FIX = os.path.join(os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")), "hf", "minilm-st")
TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
TMP = os.path.join(os.environ.get("TD_TMP", "/tmp"), "hub_download")
TOKEN = "hf_secret_test_token"

if not os.path.isfile(os.path.join(FIX, "model.safetensors")):
    print(f"FAIL: fixture {FIX} not found (set TD_FIXTURES to the shared fixtures directory)")
    print("0 passed, 1 failed")
    sys.exit(1)

signal.alarm(420)  # the whole test stops by itself whatever happens

results = []


def check(name, cond, detail=""):
    results.append((name, bool(cond)))
    print(f"{'PASS' if cond else 'FAIL'}: {name}{'' if cond else ' -- ' + str(detail)}", flush=True)


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_id(tag):
    return hashlib.sha1(tag.encode()).hexdigest()


def read(path):
    """File bytes, or None when it cannot be read (a failed check, not a crash)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


# ---------------------------------------------------------------- fake repositories
ST_FILES = ["config.json", "config_sentence_transformers.json", "modules.json", "sentence_bert_config.json",
            "tokenizer.json", "tokenizer_config.json", "1_Pooling/config.json", "2_Normalize/config.json",
            "model.safetensors"]
base = {p: read(os.path.join(FIX, p)) for p in ST_FILES}
extras = {"README.md": b"# not needed\n", "pytorch_model.bin": b"\x80\x04pickle" * 100,
          "onnx/model.onnx": b"onnx bytes" * 50, ".gitattributes": b"*.safetensors filter=lfs\n"}
LFS_SUFFIXES = (".safetensors", ".bin", ".onnx")

weights = base["model.safetensors"]
half = len(weights) // 2
shard1, shard2 = weights[:half], weights[half:]  # bytes only: the downloader does not parse shards
index = json.dumps({"metadata": {"total_size": len(weights)},
                    "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                                   "b.weight": "model-00002-of-00002.safetensors",
                                   "c.weight": "model-00001-of-00002.safetensors"}}).encode()

flaky_weights = weights[::-1]  # its own blob, so only this repository's transfer drops
C_MAIN, C_V1 = commit_id("main"), commit_id("v1")
config_v1 = base["config.json"].replace(b"{", b'{"_tag": "v1",', 1)
REPOS = {
    "test-org/tiny-st": {"refs": {"main": C_MAIN, "v1": C_V1},
                         "commits": {C_MAIN: {**base, **extras}, C_V1: {**base, "config.json": config_v1}}},
    "test-org/gated": {"refs": {"main": C_MAIN}, "commits": {C_MAIN: dict(base)}, "token": TOKEN},
    "test-org/pickle-only": {"refs": {"main": C_MAIN},
                             "commits": {C_MAIN: {"config.json": base["config.json"],
                                                  "pytorch_model.bin": extras["pytorch_model.bin"]}}},
    "test-org/sharded": {"refs": {"main": C_MAIN},
                         "commits": {C_MAIN: {"config.json": base["config.json"],
                                              "tokenizer.json": base["tokenizer.json"],
                                              "model.safetensors.index.json": index,
                                              "model-00001-of-00002.safetensors": shard1,
                                              "model-00002-of-00002.safetensors": shard2}}},
    "test-org/flaky": {"refs": {"main": C_MAIN}, "drop_first": True,
                       "commits": {C_MAIN: {**base, "model.safetensors": flaky_weights}}},
}
# Hostile repositories: the base model with their own weights bytes (their own blob), misbehaving on the CDN
# ("cdn"), in the announced size ("size") or on the API ("api").
HOSTILE = {"overlong": {"cdn": "overlong"}, "biglen": {"cdn": "biglen"}, "gzbomb": {"cdn": "gzip"},
           "drip": {"cdn": "drip"}, "err500": {"cdn": "endless500"}, "huge": {"size": 2**63 - 1},
           "nospace": {"size": 2**40 - 1}, "endless404": {"api": "endless404"}, "html404": {"api": "html404"}}
for name, how in HOSTILE.items():
    REPOS[f"test-org/{name}"] = {"refs": {"main": C_MAIN}, **how,
                                 "commits": {C_MAIN: {**base, "model.safetensors": weights + name.encode()}}}
N_SHARDS = 200_000  # distinct shard names in one index: quadratic dedupe or lookups would take minutes
many_index = json.dumps({"weight_map": {f"t{i}.weight": f"model-{i:06d}-of-{N_SHARDS}.safetensors"
                                        for i in range(N_SHARDS)}}).encode()
# every shard but the last is in the file list, so the download fails on the last one after all the lookups
REPOS["test-org/many-shards"] = {"refs": {"main": C_MAIN}, "commits": {C_MAIN: {
    "config.json": base["config.json"], "model.safetensors.index.json": many_index,
    **{f"model-{i:06d}-of-{N_SHARDS}.safetensors": b"" for i in range(N_SHARDS - 1)}}}}
RENAMED = {"test-org/old-name": "test-org/tiny-st"}
BLOBS = {}  # sha256 -> (repo, bytes)
for rid, repo in REPOS.items():
    for files in repo["commits"].values():
        for p, data in files.items():
            if p.endswith(LFS_SUFFIXES):
                BLOBS[hashlib.sha256(data).hexdigest()] = (rid, data)

requests_seen = []  # (method, path, headers dict)
dropped = set()
sent_bytes = {}  # repo -> body bytes a hostile stream handed to the socket
lock = threading.Lock()
BOMB_INFLATED = 64 << 20
_z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
GZIP_BOMB = b"".join(_z.compress(bytes(1 << 20)) for _ in range(BOMB_INFLATED >> 20)) + _z.flush()


class Hub(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def record(self):
        with lock:
            requests_seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))

    def send_json(self, code, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, code, err_code, msg):
        self.send_json(code, {"error": msg}, {"X-Error-Code": err_code, "X-Error-Message": msg})

    def authorized(self, repo):
        need = repo.get("token")
        return not need or self.headers.get("Authorization") == f"Bearer {need}"

    def send_bytes(self, data, headers, drop_half=False):
        start, end, code = 0, len(data), 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            code = 206
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        if drop_half:
            self.wfile.write(data[start:start + (end - start) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(data[start:end])

    def stream(self, key, chunk, limit, seconds, delay=0.0, chunked=False):
        """Send chunk again and again until limit bytes, `seconds` or the client hangs up; count what was sent."""
        sent, t0 = 0, time.monotonic()
        try:
            while sent < limit and time.monotonic() - t0 < seconds:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                sent += len(chunk)
                if delay:
                    time.sleep(delay)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        with lock:
            sent_bytes[key] = sent_bytes.get(key, 0) + sent
        self.close_connection = True

    def hostile_cdn(self, rid, how, data):
        key = rid.split("/")[1]
        if how == "overlong":  # the right bytes, then zeros with no end announced
            self.send_response(200)
            self.end_headers()
            self.wfile.write(data)
            return self.stream(key, bytes(1 << 16), 256 << 20, 30)
        if how == "biglen":  # a Content-Length far beyond the announced size
            self.send_response(200)
            self.send_header("Content-Length", str(300 << 20))
            self.end_headers()
            return self.stream(key, bytes(1 << 16), 300 << 20, 30)
        if how == "gzip":  # 64 MiB of zeros in a few KB, as Transfer-Encoding
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Transfer-Encoding", "gzip, chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            body = b"".join(b"%x\r\n%s\r\n" % (len(GZIP_BOMB[i:i + 4096]), GZIP_BOMB[i:i + 4096])
                            for i in range(0, len(GZIP_BOMB), 4096)) + b"0\r\n\r\n"
            return self.stream(key, body, len(body), 30)
        if how == "drip":  # the announced length, one byte every 0.2 s: never stalls, never ends in time
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return self.stream(key, b"x", len(data), 90, delay=0.2)
        if how == "endless500":  # an error page without end
            self.send_response(500)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            return self.stream(key, b"<p>Internal Server Error</p>" * 2000, 256 << 20, 30)

    def hostile_api(self, rid, how):
        key = rid.split("/")[1]
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        if how == "html404":  # a plain 5 KB HTML page, as a proxy or a static server answers
            page = b"<html><head><title>404 Not Found</title></head><body>" + b"<p>nothing here</p>" * 256 + b"</body></html>"
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        self.end_headers()
        return self.stream(key, b"<html>not found</html>" * 3000, 256 << 20, 30)

    def route(self):
        self.record()
        parts = self.path.split("?")[0].split("/")
        if self.path.startswith("/api/models/") and len(parts) >= 7 and parts[5] == "revision":
            rid, rev = f"{parts[3]}/{parts[4]}", "/".join(parts[6:])
            rid = RENAMED.get(rid, rid)
            repo = REPOS.get(rid)
            if repo is None:
                return self.error(404, "RepoNotFound", "Repository not found")
            if repo.get("api"):
                return self.hostile_api(rid, repo["api"])
            if not self.authorized(repo):
                return self.error(401, "GatedRepo", "Access to this repo is restricted")
            sha = repo["refs"].get(rev, rev if rev in repo["commits"] else None)
            if sha is None:
                return self.error(404, "RevisionNotFound", "Invalid rev id")
            files = repo["commits"][sha]
            return self.send_json(200, {"id": rid, "sha": sha, "siblings": [{"rfilename": p} for p in files]})
        if parts[1] == "cdn" and len(parts) == 3:
            rid, data = BLOBS[parts[2]]
            repo = REPOS[rid]
            if repo.get("cdn"):
                return self.hostile_cdn(rid, repo["cdn"], data)
            drop = repo.get("drop_first") and parts[2] not in dropped and not self.headers.get("Range")
            if drop:
                dropped.add(parts[2])
            return self.send_bytes(data, {"ETag": f'"{parts[2]}"'}, drop_half=drop)
        if len(parts) >= 6 and parts[3] == "resolve" and f"{parts[1]}/{parts[2]}" in RENAMED:
            # a renamed repository: the Hub answers with a relative redirect to the new name
            self.send_response(307)
            self.send_header("Location", "/" + RENAMED[f"{parts[1]}/{parts[2]}"] + "/" + "/".join(parts[3:]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if len(parts) >= 6 and parts[3] == "resolve":
            rid, rev, path = f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:])
            repo = REPOS.get(rid)
            if repo is None:
                return self.error(404, "RepoNotFound", "Repository not found")
            if not self.authorized(repo):
                return self.error(401, "GatedRepo", "Access to this repo is restricted")
            sha = repo["refs"].get(rev, rev if rev in repo["commits"] else None)
            if sha is None or path not in repo["commits"][sha]:
                return self.error(404, "EntryNotFound", "Entry not found")
            data = repo["commits"][sha][path]
            if path.endswith(LFS_SUFFIXES):
                digest = hashlib.sha256(data).hexdigest()
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{PORT}/cdn/{digest}")
                self.send_header("X-Repo-Commit", sha)
                self.send_header("X-Linked-Etag", f'"{digest}"')
                self.send_header("X-Linked-Size", str(repo.get("size", len(data))))
                self.send_header("ETag", f'"{git_blob_sha1(b"pointer " + digest.encode())}"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            return self.send_bytes(data, {"ETag": f'"{git_blob_sha1(data)}"', "X-Repo-Commit": sha})
        self.error(404, "NotFound", "no such route")

    do_GET = route
    do_HEAD = route


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
server.daemon_threads = True
server.timeout = 5
PORT = server.server_address[1]
thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
thread.start()

shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)
HF_HOME = os.path.join(TMP, "hf_home")
CACHE = os.path.join(HF_HOME, "hub")


def run(*args, env_extra=None, drop_env=(), cmd="download", timeout=60):
    """tdeploy CMD ARGS against the local Hub; a run past `timeout` seconds is killed and reads as exit None."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HF_") and k != "TDEPLOY_HUB_DEADLINE" and k not in drop_env}
    env.update({"HF_ENDPOINT": f"http://127.0.0.1:{PORT}", "HF_HOME": HF_HOME})
    env.update(env_extra or {})
    with lock:
        before = len(requests_seen)
    try:
        p = subprocess.run([TD_BIN, cmd, *args], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out, err = (x.decode(errors="replace") if isinstance(x, bytes) else (x or "") for x in (e.stdout, e.stderr))
        p = subprocess.CompletedProcess(e.cmd, None, out, f"(killed after {timeout} s) {err}")
    with lock:
        reqs = requests_seen[before:]
    return p, reqs


def repo_dir(rid):
    return os.path.join(CACHE, "models--" + rid.replace("/", "--"))


try:
    # ---- 1. first download: the huggingface_hub layout
    rid = "test-org/tiny-st"
    p, reqs = run(rid)
    snap = os.path.join(repo_dir(rid), "snapshots", C_MAIN)
    check("download exits 0", p.returncode == 0, p.stderr)
    check("prints the snapshot dir", p.stdout.strip() == snap, p.stdout)
    check("refs/main holds the commit", read(os.path.join(repo_dir(rid), "refs", "main")) == C_MAIN.encode())
    for path in ST_FILES:
        link = os.path.join(snap, path)
        data = base[path]
        is_lfs = path.endswith(LFS_SUFFIXES)
        etag = hashlib.sha256(data).hexdigest() if is_lfs else git_blob_sha1(data)
        depth = 2 + path.count("/")
        want_target = "../" * depth + "blobs/" + etag
        ok_link = os.path.islink(link) and os.readlink(link) == want_target
        check(f"{path}: relative symlink to blobs/<etag>", ok_link, os.readlink(link) if os.path.islink(link) else "no link")
        check(f"{path}: same bytes as the repository", os.path.isfile(link) and read(link) == data)
    for path in extras:
        check(f"{path}: not downloaded", not os.path.lexists(os.path.join(snap, path)))
    blobs = os.listdir(os.path.join(repo_dir(rid), "blobs"))
    check("no .incomplete left", not any(b.endswith(".incomplete") for b in blobs), blobs)
    check("one blob per downloaded file", len(blobs) == len(ST_FILES), blobs)
    ua = [r[2].get("user-agent", "") for r in reqs]
    check("first run asked the API and the files", any(r[1].startswith("/api/models/test-org/tiny-st/revision/main") for r in reqs)
          and any(r[0] == "HEAD" for r in reqs), reqs)
    check("no Authorization header without HF_TOKEN", all("authorization" not in r[2] for r in reqs))
    check("no request for unwanted files", not any("README" in r[1] or "pytorch_model" in r[1] or "onnx/" in r[1] for r in reqs))

    # ---- 2. second run: cache hit without a single request
    p, reqs = run(rid)
    check("cache hit exits 0", p.returncode == 0, p.stderr)
    check("cache hit prints the same dir", p.stdout.strip() == snap)
    check("cache hit makes no request", len(reqs) == 0, reqs)

    # ---- 3. --json
    p, reqs = run(rid, "--json")
    try:
        j = json.loads(p.stdout)
    except ValueError:
        j = {}
    check("--json fields", j.get("snapshot_dir") == snap and j.get("commit") == C_MAIN and j.get("repo_id") == rid, p.stdout)

    # ---- 4. --refresh asks again but downloads nothing new
    p, reqs = run(rid, "--refresh")
    check("--refresh exits 0", p.returncode == 0, p.stderr)
    check("--refresh asks the API only (files of a commit never change)",
          [r[1] for r in reqs] == [f"/api/models/{rid}/revision/main"], reqs)

    # ---- 5. another revision shares unchanged blobs
    p, reqs = run(rid, "--revision", "v1")
    snap_v1 = os.path.join(repo_dir(rid), "snapshots", C_V1)
    check("--revision v1 exits 0", p.returncode == 0, p.stderr)
    check("--revision v1 prints its own snapshot", p.stdout.strip() == snap_v1, p.stdout)
    check("refs/v1 written", read(os.path.join(repo_dir(rid), "refs", "v1")) == C_V1.encode())
    check("v1 config differs", read(os.path.join(snap_v1, "config.json")) == config_v1)
    check("unchanged blobs are not fetched again", not any(r[1].startswith("/cdn/") for r in reqs), reqs)

    # ---- 6. offline: from the cache, and a clear error when not cached
    p, reqs = run(rid, env_extra={"HF_HUB_OFFLINE": "1"})
    check("offline cache hit exits 0", p.returncode == 0 and p.stdout.strip() == snap, p.stderr)
    p2, reqs2 = run("test-org/never-seen", env_extra={"HF_HUB_OFFLINE": "1"})
    check("offline miss fails", p2.returncode != 0)
    check("offline miss names HF_HUB_OFFLINE and where it looked",
          "HF_HUB_OFFLINE" in p2.stderr and repo_dir("test-org/never-seen") in p2.stderr, p2.stderr)
    p3, reqs3 = run("test-org/never-seen", "--offline")
    check("--offline miss names the flag, not HF_HUB_OFFLINE (which is unset)",
          p3.returncode == 1 and "--offline" in p3.stderr and "HF_HUB_OFFLINE" not in p3.stderr, p3.stderr)
    check("offline makes no request", len(reqs) == 0 and len(reqs2) == 0 and len(reqs3) == 0, reqs + reqs2 + reqs3)

    # ---- 7. gated repo: 401 without token, success with HF_TOKEN and the header sent
    p, reqs = run("test-org/gated")
    check("gated without token fails", p.returncode != 0)
    check("gated error says to set HF_TOKEN", "HF_TOKEN" in p.stderr and "gated" in p.stderr, p.stderr)
    p, reqs = run("test-org/gated", env_extra={"HF_TOKEN": TOKEN})
    check("gated with HF_TOKEN exits 0", p.returncode == 0, p.stderr)
    hub_reqs = [r for r in reqs if not r[1].startswith("/cdn/")]
    check("Authorization: Bearer sent on every Hub request",
          hub_reqs and all(r[2].get("authorization") == f"Bearer {TOKEN}" for r in hub_reqs), reqs)

    # ---- 7b. the token file that `huggingface-cli login` writes, when HF_TOKEN is not set
    with open(os.path.join(HF_HOME, "token"), "w") as f:
        f.write(TOKEN + "\n")
    shutil.rmtree(repo_dir("test-org/gated"))
    p, reqs = run("test-org/gated")
    os.unlink(os.path.join(HF_HOME, "token"))
    check("token file used when HF_TOKEN is unset", p.returncode == 0 and reqs
          and reqs[0][2].get("authorization") == f"Bearer {TOKEN}", p.stderr)

    # ---- 7c. a renamed repository: relative redirects are followed for metadata and data
    p, reqs = run("test-org/old-name")
    osnap = os.path.join(repo_dir("test-org/old-name"), "snapshots", C_MAIN)
    check("renamed repository downloads through the relative redirect", p.returncode == 0
          and read(os.path.join(osnap, "1_Pooling", "config.json")) == base["1_Pooling/config.json"]
          and read(os.path.join(osnap, "model.safetensors")) == weights, p.stderr)
    check("redirect was followed to the new name", any(r[1].startswith("/test-org/tiny-st/resolve/") for r in reqs))

    # ---- 8. not found
    p, reqs = run("test-org/does-not-exist")
    check("404 repo fails", p.returncode != 0 and "not found" in p.stderr, p.stderr)
    p, reqs = run(rid, "--revision", "no-such-branch")
    check("404 revision fails naming the revision", p.returncode != 0 and "no-such-branch" in p.stderr, p.stderr)

    # ---- 9. pickle-only repository refused
    p, reqs = run("test-org/pickle-only")
    check("pickle-only refused", p.returncode != 0 and "does not unpickle" in p.stderr and "safetensors" in p.stderr, p.stderr)
    check("pickle-only downloads nothing", not any("pytorch_model" in r[1] for r in reqs), reqs)

    # ---- 10. sharded weights follow the index
    p, reqs = run("test-org/sharded")
    ssnap = os.path.join(repo_dir("test-org/sharded"), "snapshots", C_MAIN)
    check("sharded exits 0", p.returncode == 0, p.stderr)
    check("both shards present", read(os.path.join(ssnap, "model-00001-of-00002.safetensors")) == shard1
          and read(os.path.join(ssnap, "model-00002-of-00002.safetensors")) == shard2)

    # ---- 11. an interrupted transfer resumes with a Range request
    p, reqs = run("test-org/flaky")
    lfs_sha = hashlib.sha256(flaky_weights).hexdigest()
    inc = os.path.join(repo_dir("test-org/flaky"), "blobs", lfs_sha + ".incomplete")
    check("dropped transfer fails", p.returncode != 0, p.stderr)
    check("failure says a rerun resumes", "rerun resumes" in p.stderr, p.stderr)
    check("partial bytes kept in blobs/<sha256>.incomplete", os.path.isfile(inc) and os.path.getsize(inc) == len(flaky_weights) // 2,
          os.path.getsize(inc) if os.path.isfile(inc) else "missing")
    p, reqs = run("test-org/flaky")
    check("rerun exits 0", p.returncode == 0, p.stderr)
    ranged = [r for r in reqs if r[1] == f"/cdn/{lfs_sha}"]
    check("rerun asks only for the missing bytes", len(ranged) == 1 and ranged[0][2].get("range") == f"bytes={len(flaky_weights) // 2}-", ranged)
    fsnap = os.path.join(repo_dir("test-org/flaky"), "snapshots", C_MAIN)
    check("resumed file is complete and correct", read(os.path.join(fsnap, "model.safetensors")) == flaky_weights)
    check("no .incomplete after resume", not os.path.exists(inc))
    check("small files were not fetched again on resume", not any(r[0] == "HEAD" and "config.json" in r[1] for r in reqs), reqs)

    # ---- 12. network failure: a port nobody listens on
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()
    p, reqs = run("test-org/other", env_extra={"HF_ENDPOINT": f"http://127.0.0.1:{dead_port}"})
    check("network failure fails clearly", p.returncode != 0 and "cannot reach the Hub" in p.stderr, p.stderr)

    # ---- 13. bad repo ids are refused before any request
    for bad in ["../etc", "a/b/c", "org/na--me", "-x/y", ""]:
        p, reqs = run(bad)
        check(f"bad repo id {bad!r} refused", p.returncode != 0 and not reqs, p.stderr)
    p, reqs = run(rid, "--revision", "../../x")
    check("bad revision refused", p.returncode != 0 and not reqs, p.stderr)

    # ---- 14. a body longer than announced stops at the announced size, and the partial file goes
    def blob_state(name):
        """(size of blobs/<sha>.incomplete or None, whether blobs/<sha> exists) of a hostile repo's weights."""
        sha = hashlib.sha256(weights + name.encode()).hexdigest()
        d = os.path.join(repo_dir(f"test-org/{name}"), "blobs")
        inc = os.path.join(d, sha + ".incomplete")
        return (os.path.getsize(inc) if os.path.isfile(inc) else None), os.path.exists(os.path.join(d, sha))

    for name, what in [("overlong", "endless body after the announced bytes"),
                       ("biglen", "Content-Length beyond the announced size"),
                       ("gzbomb", "gzip bomb as Transfer-Encoding")]:
        p, reqs = run(f"test-org/{name}")
        inc_size, blob = blob_state(name)
        check(f"{what}: fails", p.returncode == 1, p.stderr)
        check(f"{what}: nothing past the announced size on disk", not blob and (inc_size or 0) <= len(weights) + len(name),
              (inc_size, blob))
        if name != "gzbomb":  # the bomb is small on the wire: its size on disk above is what counts
            check(f"{what}: the client stopped reading", sent_bytes.get(name, 0) < (64 << 20), sent_bytes.get(name))
    p, _ = run("test-org/overlong")
    check("overlong: says the server sent more than expected", "more than the" in p.stderr and "removed" in p.stderr,
          p.stderr)
    p, _ = run("test-org/biglen")
    check("biglen: refused before writing a byte", "announced more than" in p.stderr and blob_state("biglen")[0] in (None, 0),
          p.stderr)

    # ---- 15. absurd and disk-filling sizes are refused before any byte is fetched
    p, reqs = run("test-org/huge")
    check("size 2^63-1 refused up front", p.returncode == 1 and "more than any file" in p.stderr
          and not any(r[1].startswith("/cdn/") for r in reqs), p.stderr)
    vfs = os.statvfs(TMP)
    if vfs.f_bavail * vfs.f_frsize < 2**40:
        p, reqs = run("test-org/nospace")
        check("a file larger than the free disk space refused with a clear message",
              p.returncode == 1 and "not enough disk space" in p.stderr and "HF_HOME" in p.stderr
              and not any(r[1].startswith("/cdn/") for r in reqs), p.stderr)
    else:
        print("note: more than 1 TiB free under TD_TMP, the free-space check is not exercised")

    # ---- 16. error bodies: cut at the cap, reported by status
    p, reqs = run("test-org/endless404", timeout=30)
    check("endless 404 body: fails with the status, not a size", p.returncode == 1 and "404 Not Found" in p.stderr
          and "larger than" not in p.stderr, p.stderr)
    check("endless 404 body: the client stopped reading", sent_bytes.get("endless404", 0) < (64 << 20),
          sent_bytes.get("endless404"))
    p, reqs = run("test-org/html404")
    check("plain 5 KB HTML 404 reads as 404 Not Found", p.returncode == 1 and "404 Not Found" in p.stderr
          and "<html" not in p.stderr, p.stderr)
    p, reqs = run("test-org/err500", timeout=30)
    check("endless 500 body on a file: fails with the status", p.returncode == 1
          and "500 Internal Server Error" in p.stderr, p.stderr)
    check("endless 500 body: the client stopped reading", sent_bytes.get("err500", 0) < (64 << 20),
          sent_bytes.get("err500"))

    # ---- 17. total deadline per request: a drip that never stalls still ends
    p, reqs = run("test-org/drip", env_extra={"TDEPLOY_HUB_DEADLINE": "2"}, timeout=40)
    check("slow drip stopped by TDEPLOY_HUB_DEADLINE", p.returncode == 1 and "timed out" in p.stderr
          and "TDEPLOY_HUB_DEADLINE" in p.stderr, p.stderr)
    check("slow drip: partial bytes kept for a resume", (blob_state("drip")[0] or 0) < len(weights) + 4)
    p, reqs = run("test-org/drip", env_extra={"TDEPLOY_HUB_DEADLINE": "soon"})
    check("unusable TDEPLOY_HUB_DEADLINE refused before any request", p.returncode != 0 and not reqs
          and "TDEPLOY_HUB_DEADLINE" in p.stderr, p.stderr)

    # ---- 18. 200,000 distinct shard names: n log n, not quadratic (a bound minutes away from the answer)
    p, reqs = run("test-org/many-shards", timeout=90)
    last = f"model-{N_SHARDS - 1:06d}-of-{N_SHARDS}.safetensors"
    check("200k-entry shard index handled without quadratic work", p.returncode == 1 and last in p.stderr
          and "does not have" in p.stderr, p.stderr[-300:])

    # ---- 19. symlinks and a FIFO planted in the cache: nothing written outside HF_HOME, nothing blocks
    outside = os.path.join(TMP, "outside")
    os.makedirs(outside)
    w_sha = hashlib.sha256(weights).hexdigest()

    def planted(case, plant):
        """A fresh HF_HOME with one thing planted by plant(repo_dir); the download of tiny-st must refuse it."""
        home = os.path.join(TMP, "plant_" + case)
        rd = os.path.join(home, "hub", "models--test-org--tiny-st")
        os.makedirs(os.path.join(rd, "refs"))
        plant(rd)
        return run("test-org/tiny-st", env_extra={"HF_HOME": home})

    victim = os.path.join(outside, "victim.bin")
    with open(victim, "wb") as f:
        f.write(b"user data")

    def plant_incomplete(rd):
        os.makedirs(os.path.join(rd, "blobs"))
        os.symlink(victim, os.path.join(rd, "blobs", w_sha + ".incomplete"))
    p, _ = planted("incomplete", plant_incomplete)
    check("symlinked blobs/<sha>.incomplete refused", p.returncode == 1 and "symbolic link" in p.stderr, p.stderr)
    check("the file it pointed to is untouched", read(victim) == b"user data", read(victim)[:40])
    for case, sub in [("snapshot", os.path.join("snapshots", C_MAIN)), ("blobs", "blobs"), ("refs", "refs"),
                      ("module", os.path.join("snapshots", C_MAIN, "1_Pooling")),
                      ("locks", os.path.join("..", ".locks", "models--test-org--tiny-st"))]:
        target = os.path.join(outside, case)
        os.makedirs(target)

        def plant_dir(rd, sub=sub, target=target):
            link = os.path.normpath(os.path.join(rd, sub))
            if os.path.isdir(link):
                os.rmdir(link)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(target, link)
        p, _ = planted(case, plant_dir)
        check(f"symlinked {sub} refused", p.returncode == 1 and "symbolic link" in p.stderr, p.stderr)
        check(f"nothing written into the directory {sub} pointed to", os.listdir(target) == [], os.listdir(target))

    fifo_home = os.path.join(TMP, "plant_fifo")
    fifo_rd = os.path.join(fifo_home, "hub", "models--test-org--tiny-st")
    os.makedirs(os.path.join(fifo_rd, "refs"))
    os.mkfifo(os.path.join(fifo_rd, "refs", "main"))
    p, reqs = run("test-org/tiny-st", "--offline", env_extra={"HF_HOME": fifo_home}, timeout=20)
    check("refs/main FIFO: download --offline fails at once instead of blocking", p.returncode == 1
          and "refs/main" in p.stderr, p.stderr)
    p, reqs = run("test-org/tiny-st", env_extra={"HF_HOME": fifo_home}, timeout=30)
    check("refs/main FIFO: an online download replaces it with a regular file", p.returncode == 0
          and read(os.path.join(fifo_rd, "refs", "main")) == C_MAIN.encode(), p.stderr)

    # ---- 20. one cache resolver for every command: HF_HOME with ~, and ORG/NAME meaning refs/main
    user_home = os.path.join(TMP, "user_home")
    os.makedirs(user_home)
    tilde = {"HOME": user_home, "HF_HOME": "~/hf"}
    want = os.path.join(user_home, "hf", "hub", "models--test-org--tiny-st", "snapshots", C_MAIN)
    p, reqs = run("test-org/tiny-st", env_extra=tilde)
    check("download with HF_HOME=~/hf goes under $HOME", p.returncode == 0 and p.stdout.strip() == want, p.stderr)
    p, reqs = run("test-org/tiny-st", "--json", cmd="inspect", env_extra=tilde)
    try:
        j = json.loads(p.stdout)
    except ValueError:
        j = {}
    check("inspect ORG/NAME opens what download just wrote (HF_HOME=~/hf)", p.returncode == 0
          and os.path.realpath(str(j.get("path", ""))) == os.path.realpath(want) and not reqs, p.stderr + p.stdout[:200])
    out = os.path.join(TMP, "convert_out")
    p, reqs = run("-m", "test-org/tiny-st", "-o", out, "--seq-len", "1", "8", "8", "--nb-measures", "1",
                  "--warmup", "0", "-q", cmd="convert", env_extra={**tilde, "HF_HUB_OFFLINE": "1"}, timeout=120)
    check("convert ORG/NAME right after the download, offline, with HF_HOME=~/hf", p.returncode == 0
          and os.path.isfile(os.path.join(out, "model.onnx")), p.stderr[-400:])
    # only --revision v1 is cached: ORG/NAME is main for download and for inspect alike
    v1_only = {"HF_HOME": os.path.join(TMP, "v1_only")}
    p, _ = run("test-org/tiny-st", "--revision", "v1", env_extra=v1_only)
    check("download --revision v1 into an empty cache", p.returncode == 0, p.stderr)
    p, _ = run("test-org/tiny-st", "--offline", env_extra=v1_only)
    p2, _ = run("test-org/tiny-st", cmd="inspect", env_extra=v1_only)
    check("ORG/NAME with only v1 cached: download --offline and inspect both say main is not cached",
          p.returncode == 1 and p2.returncode != 0 and "refs/main" in p.stderr and "refs/main" in p2.stderr,
          p.stderr + " | " + p2.stderr)
finally:
    server.shutdown()
    server.server_close()

failed = sum(1 for _, ok in results if not ok)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
