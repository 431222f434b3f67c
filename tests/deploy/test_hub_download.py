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

FIX = os.path.join(os.environ.get("TD_FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")), "hf", "minilm-st")
TD_BIN = os.environ.get("TD_BIN", "build/tdeploy")
TMP = os.path.join(os.environ.get("TD_TMP", "/tmp"), "hub_download")
TOKEN = "hf_secret_test_token"

if not os.path.isfile(os.path.join(FIX, "model.safetensors")):
    print(f"FAIL: fixture {FIX} not found (set TD_FIXTURES to the shared fixtures directory)")
    print("0 passed, 1 failed")
    sys.exit(1)

signal.alarm(240)  # the whole test stops by itself whatever happens

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
RENAMED = {"test-org/old-name": "test-org/tiny-st"}
BLOBS = {}  # sha256 -> (repo, bytes)
for rid, repo in REPOS.items():
    for files in repo["commits"].values():
        for p, data in files.items():
            if p.endswith(LFS_SUFFIXES):
                BLOBS[hashlib.sha256(data).hexdigest()] = (rid, data)

requests_seen = []  # (method, path, headers dict)
dropped = set()
lock = threading.Lock()


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

    def route(self):
        self.record()
        parts = self.path.split("?")[0].split("/")
        if self.path.startswith("/api/models/") and len(parts) >= 7 and parts[5] == "revision":
            rid, rev = f"{parts[3]}/{parts[4]}", "/".join(parts[6:])
            rid = RENAMED.get(rid, rid)
            repo = REPOS.get(rid)
            if repo is None:
                return self.error(404, "RepoNotFound", "Repository not found")
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
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("ETag", f'"{git_blob_sha1(b"pointer " + digest.encode())}"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            return self.send_bytes(data, {"ETag": f'"{git_blob_sha1(data)}"', "X-Repo-Commit": sha})
        self.error(404, "NotFound", "no such route")

    do_GET = route
    do_HEAD = route


server = http.server.HTTPServer(("127.0.0.1", 0), Hub)
server.timeout = 5
PORT = server.server_address[1]
thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
thread.start()

shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)
HF_HOME = os.path.join(TMP, "hf_home")
CACHE = os.path.join(HF_HOME, "hub")


def run(*args, env_extra=None, drop_env=()):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k not in drop_env}
    env.update({"HF_ENDPOINT": f"http://127.0.0.1:{PORT}", "HF_HOME": HF_HOME})
    env.update(env_extra or {})
    with lock:
        before = len(requests_seen)
    p = subprocess.run([TD_BIN, "download", *args], capture_output=True, text=True, env=env, timeout=60)
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
    check("offline makes no request", len(reqs) == 0 and len(reqs2) == 0, reqs + reqs2)

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
finally:
    server.shutdown()
    server.server_close()

failed = sum(1 for _, ok in results if not ok)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
