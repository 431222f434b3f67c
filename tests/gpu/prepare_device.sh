#!/usr/bin/env bash
# Run HERE (the development host, no GPU needed) before the device call: puts everything one device call needs
# into .gpu/ (ignored by git, sent with `carry: [".gpu"]`, well under the 64 MiB a call takes):
#   .gpu/bin/   tdeploy, libtdeploy.so*, libtdeploy_cuda.so built with -DTD_NATIVE=OFF (portable x86-64, any
#               host CPU), and the shared libraries the device image lacks (protobuf-c, utf8proc)
#   .gpu/minilm-fp16/  the real all-MiniLM-L6-v2 (scripts/setup-default-model.sh's copy in the HF cache) with
#               its weights stored as fp16 (the fp16 engine rounds them to fp16 anyway) and the word-embedding
#               rows no reference text uses zeroed, xz-compressed (about 20 MB; the checkout is about 25 MB and a
#               call carries 64 MiB in all)
# Then on the device, from the repository root:  tests/gpu/device_all.sh   (builds nothing; see that script)
# Usage: tests/gpu/prepare_device.sh [--build-dir DIR] (default build-gpu)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=build-gpu
[ "${1:-}" = --build-dir ] && BUILD=$2
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-/work}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTD_NATIVE=OFF -DTD_WERROR=ON \
  -DCMAKE_C_COMPILER_LAUNCHER=ccache >/dev/null
ninja -C "$BUILD" -j2 tdeploy tdeploy_shared tdeploy_cuda 2>/dev/null || ninja -C "$BUILD" -j2
rm -rf .gpu/bin && mkdir -p .gpu/bin
cp -a "$BUILD"/tdeploy "$BUILD"/libtdeploy.so* "$BUILD"/libtdeploy_cuda.so .gpu/bin/
for lib in libprotobuf-c.so.1 libutf8proc.so.2; do
  src=$(set +o pipefail; ldconfig -p | awk -v l="$lib" '$1 == l {print $NF}' | head -n 1)
  [ -n "$src" ] || { echo "prepare_device.sh: $lib not found on this host" >&2; exit 1; }
  cp -L "$src" .gpu/bin/
done

# the real MiniLM, fp16 weights
cache=${HF_HUB_CACHE:-${HF_HOME:+$HF_HOME/hub}}
cache=${cache:-${XDG_CACHE_HOME:-$HOME/.cache}/huggingface/hub}
repo="$cache/models--sentence-transformers--all-MiniLM-L6-v2"
if [ ! -f "$repo/refs/main" ]; then
  bash scripts/setup-default-model.sh
fi
snap="$repo/snapshots/$(cat "$repo/refs/main")"
rm -rf .gpu/minilm-fp16 && mkdir -p .gpu/minilm-fp16/1_Pooling
for f in config.json tokenizer.json tokenizer_config.json special_tokens_map.json modules.json \
         sentence_bert_config.json config_sentence_transformers.json 1_Pooling/config.json; do
  [ -e "$snap/$f" ] && cp -L "$snap/$f" ".gpu/minilm-fp16/$f"
done
# fp16 weights; word-embedding rows of tokens that no reference text uses are zeroed so that the file
# compresses to fit a call's 64 MiB with the checkout (the rows the test reads are the model's own), xz'ed;
# device_all.sh unpacks it
python3 - "$snap/model.safetensors" .gpu/minilm-fp16/model.safetensors.xz tests/data/minilm_reference/reference.json <<'PY'
import json, lzma, sys
import numpy as np
from safetensors.numpy import load_file, save
t = load_file(sys.argv[1])
used = {i for c in json.load(open(sys.argv[3]))["cases"] for i in c["input_ids"]} | {0, 100, 101, 102, 103}
out = {}
for k, v in t.items():
    v = v.astype(np.float16) if v.dtype == np.float32 else v
    if k.endswith("word_embeddings.weight"):
        keep = np.zeros(v.shape[0], bool)
        keep[sorted(i for i in used if i < v.shape[0])] = True
        v = np.where(keep[:, None], v, np.float16(0))
        print(f"word embeddings: {int(keep.sum())} of {v.shape[0]} rows kept (tokens of the reference texts)")
    out[k] = v
open(sys.argv[2], "wb").write(lzma.compress(save(out), preset=6))
PY
du -sh .gpu
echo "prepare_device.sh: .gpu ready; device call: carry [\".gpu\"], command: tests/gpu/device_all.sh"
