#!/usr/bin/env bash
# Install everything tdeploy needs to build and test on Debian 12: compilers and
# libraries from Debian, test oracles from PyPI. Safe to run again (idempotent).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  protobuf-c-compiler libprotobuf-c-dev libonnx-dev libonnx-testdata
  libcjson-dev libutf8proc-dev libpcre2-dev libcurl4-openssl-dev zlib1g-dev
  python3 python3-pip python3-venv
)
# Test oracles and helpers (never needed at run time).
PIP_PACKAGES=(
  "numpy>=1.26" "onnx>=1.16" "onnxruntime>=1.18" "safetensors>=0.4" "tokenizers>=0.19"
  "tritonclient[grpc,http]>=2.40" "protobuf>=4" "gguf>=0.17" "jinja2>=3.1"
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" - <<'PYEOF' 2>/dev/null
import importlib, sys
for m in ("numpy", "onnx", "onnxruntime", "safetensors", "tokenizers", "tritonclient.grpc", "tritonclient.http", "gguf",
          "jinja2"):
    importlib.import_module(m)
PYEOF
then
  echo "install-deps: pip install ${PIP_PACKAGES[*]}"
  "$PY" -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}" 2>&1 | grep -v "Running pip as the 'root' user" || true
  "$PY" -c "import numpy, onnx, onnxruntime, safetensors, tokenizers, tritonclient.grpc, tritonclient.http, gguf, jinja2" \
    || { echo "install-deps: Python test dependencies failed to install" >&2; exit 1; }
fi
# The real Triton Inference Server for tests/triton and bench/triton (never needed by tdeploy itself): PyPI's
# nvidia-pytriton wheel ships tritonserver 2.51.0 (r24.10) with its libraries and the Python backend, and it runs
# without a GPU. Unpacked (no dependencies) into a cache folder the tests look in (TD_TRITONSERVER_DIR overrides).
TRITON_DIR=${TD_TRITONSERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tdeploy/pytriton-0.7.0}
if [ ! -x "$TRITON_DIR/pytriton/tritonserver/bin/tritonserver" ]; then
  echo "install-deps: nvidia-pytriton==0.7.0 (tritonserver) into $TRITON_DIR"
  rm -rf "$TRITON_DIR.partial"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --target "$TRITON_DIR.partial" "nvidia-pytriton==0.7.0" \
    2>&1 | grep -v "Running pip as the 'root' user" || true
  [ -x "$TRITON_DIR.partial/pytriton/tritonserver/bin/tritonserver" ] \
    || { echo "install-deps: nvidia-pytriton did not install a tritonserver binary" >&2; exit 1; }
  rm -rf "$TRITON_DIR" && mkdir -p "$(dirname "$TRITON_DIR")" && mv "$TRITON_DIR.partial" "$TRITON_DIR"
fi
# The Python backend of that server runs model.py (the tokenizer of the ONNX Runtime variant) in the system's
# libpython of this minor version, ignoring PYTHONPATH, and its stub breaks with numpy 2: numpy < 2 and tokenizers
# for it go to a folder of their own, which the tests hand to model.py through TDEPLOY_TRITON_PYTHONPATH.
PYVER=$("$PY" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')
TRITON_PY=${TD_TRITON_PYTHONPATH:-${XDG_CACHE_HOME:-$HOME/.cache}/tdeploy/triton-python-$PYVER}
if [ ! -d "$TRITON_PY/numpy" ] || [ ! -d "$TRITON_PY/tokenizers" ]; then
  echo "install-deps: numpy<2 and tokenizers for the Triton Python backend into $TRITON_PY"
  rm -rf "$TRITON_PY.partial"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --target "$TRITON_PY.partial" "numpy<2" \
    "tokenizers>=0.19" 2>&1 | grep -v "Running pip as the 'root' user" || true
  [ -d "$TRITON_PY.partial/numpy" ] && [ -d "$TRITON_PY.partial/tokenizers" ] \
    || { echo "install-deps: numpy<2 / tokenizers for the Triton Python backend failed to install" >&2; exit 1; }
  rm -rf "$TRITON_PY" && mv "$TRITON_PY.partial" "$TRITON_PY"
fi
echo "install-deps: ok"
