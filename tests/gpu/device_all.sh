#!/usr/bin/env bash
# Everything GPU-side in ONE device call (the device has nvcc, compute-sanitizer, PyTorch, transformers,
# sentence-transformers, numpy, onnx, safetensors; not protobuf-c/utf8proc, hence the prebuilt binaries).
# Here first:  tests/gpu/prepare_device.sh      (fills the ignored .gpu/: binaries + libraries + MiniLM fp16)
# Device call: run(command="tests/gpu/device_all.sh", carry=[".gpu"], timeout_s=600)
# Stages, each under its own time limit so the call ends inside the 600 s a command may run, results under
# $OUT (machine.txt, nvcc.log, suite.log, gpu_summary.json, sanitizer.log, bench.log, bench_engine.json):
#   1. nvcc -Werror compile of every src/runtime/cuda/*.cu for sm_90 (the carried library was built here)
#   2. tests/gpu/run_gpu_tests.sh: gpu_suite.py (fixtures x graphs x precisions x corners, engines, 4 threads on
#      one engine, random MiniLM / bert-base engines incl. 32x512, TDEPLOY_CUDA_POISON node-by-node check,
#      Slice/ReduceSum, the real MiniLM fp16 cosine via `tdeploy run MODEL.engine`, 100-session leak check),
#      then compute-sanitizer memcheck, racecheck, initcheck, initcheck on the reference kernels
#   3. bench/gpu/run_bench.sh: engines (cold / warm timing-cache build, load, 200 timed runs per shape) beside
#      the PyTorch anchors, same GPU, same call
# Limits (seconds): SUITE_S (default 330), SAN_S (45 per sanitizer tool, 4 tools), BENCH_S (120). TD_GPU_PARTS / SAN_TOOLS / MODELS narrow.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=$ROOT/.gpu/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export TD_BIN=$ROOT/.gpu/bin/tdeploy TD_LIB=$ROOT/.gpu/bin/libtdeploy.so TDEPLOY_CUDA_LIB=$ROOT/.gpu/bin/libtdeploy_cuda.so
export TD_MINILM_DIR=$ROOT/.gpu/minilm-fp16 TD_TMP=${TD_TMP:-/tmp/td_gpu} TD_COMMIT=${TD_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}
export XDG_CACHE_HOME=$TD_TMP/xdg  # the default timing cache lands here (made by build), not in the image's home
mkdir -p "$TD_TMP"
[ -x "$TD_BIN" ] || { echo "device_all.sh: $TD_BIN missing: run tests/gpu/prepare_device.sh here and carry .gpu"; exit 2; }
rc=0
# the real MiniLM travels xz-compressed (prepare_device.sh): unpack it beside its small files
if [ -f "$ROOT/.gpu/minilm-fp16/model.safetensors.xz" ]; then
  rm -rf "$TD_TMP/minilm-fp16" && cp -r "$ROOT/.gpu/minilm-fp16" "$TD_TMP/minilm-fp16" && rm "$TD_TMP/minilm-fp16/model.safetensors.xz"
  python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.decompress(open(sys.argv[1],'rb').read()))" \
    "$ROOT/.gpu/minilm-fp16/model.safetensors.xz" "$TD_TMP/minilm-fp16/model.safetensors"
  export TD_MINILM_DIR=$TD_TMP/minilm-fp16
fi
# stage 1 runs in the background (16 cores) while the GPU stages run; its result is read at the end
( echo "== 1. nvcc -Werror, every .cu"; n=0; pids=()
  for cu in src/runtime/cuda/*.cu; do
    n=$((n+1))
    ( nvcc -std=c++17 -O3 -arch=sm_90 -Isrc -Iinclude -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter \
        -Werror=all-warnings -c "$cu" -o "$TD_TMP/$(basename "$cu").o" > "$TD_TMP/$(basename "$cu").log" 2>&1 \
      || { echo "FAIL $cu"; cat "$TD_TMP/$(basename "$cu").log"; exit 1; } ) & pids+=($!)
  done
  f=0; for p in "${pids[@]}"; do wait "$p" || f=$((f+1)); done
  echo "nvcc: $((n-f)) of $n compiled"; [ $f = 0 ] ) > "$OUT/nvcc.log" 2>&1 &
nvcc_pid=$!
echo "== 2. correctness + sanitizers"
SUITE_TIMEOUT=${SUITE_S:-330} SAN_TIMEOUT=${SAN_S:-45} OUT=$OUT tests/gpu/run_gpu_tests.sh || rc=1
echo "== 3. benchmark"
timeout ${BENCH_S:-120} env OUT=$OUT bench/gpu/run_bench.sh > "$OUT/bench.log" 2>&1 || { echo "bench: rc $? (see bench.log)"; rc=1; }
grep -h '^{' "$OUT/bench.log" | tail -20
wait $nvcc_pid || rc=1
tail -1 "$OUT/nvcc.log"
echo "device_all.sh: rc $rc"
exit $rc
