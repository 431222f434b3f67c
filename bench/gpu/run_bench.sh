#!/usr/bin/env bash
# GPU benchmark, one device call: tdeploy engines (bench_engine.py) and the PyTorch anchors
# (bench_anchors.py eager: fp16 eager and the GEMM+SDPA CUDA-graph floor) on the same GPU in the same run.
# Usage from the source root: TD_BIN=... TD_LIB=... OUT=out/bench bench/gpu/run_bench.sh
set -u
OUT=${OUT:-out/bench}
mkdir -p "$OUT"
export TD_TMP=${TD_TMP:-/tmp/td_gpu}
mkdir -p "$TD_TMP"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/gpu/bench_engine.py 2>&1
MODELS=minilm-l6-h384,bert-base OUT="$OUT" python3 bench/gpu/bench_anchors.py eager 2>&1 | tail -12
