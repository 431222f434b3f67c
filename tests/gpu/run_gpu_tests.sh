#!/usr/bin/env bash
# All GPU tests in one go (one device call): the correctness suite
# (gpu_suite.py), compute-sanitizer memcheck / racecheck / initcheck on a small
# fp16 model, then the summary. Usage, from the source root:
#   TD_BIN=build/tdeploy TD_LIB=build/libtdeploy.so OUT=out/gpu tests/gpu/run_gpu_tests.sh
# TD_BIN's directory must also hold libtdeploy_cuda.so. Exit 0 only when every check passed.
set -u
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export TD_TMP=${TD_TMP:-/tmp/td_gpu}
export TD_FIXTURES=${TD_FIXTURES:-tests/fixtures}
mkdir -p "$TD_TMP"
{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "commit: ${TD_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}"
} | tee "$OUT/machine.txt"

rc=0
# SUITE_TIMEOUT / SAN_TIMEOUT (seconds, default none): stop a stage in time for the ones after it (device_all.sh)
timeout ${SUITE_TIMEOUT:-0} python3 tests/gpu/gpu_suite.py 2>&1 | tee "$OUT/suite.log"
[ "${PIPESTATUS[0]}" = 0 ] || { rc=1; echo "gpu_suite: failed or stopped at ${SUITE_TIMEOUT:-no} s (the summary line above counts what ran)"; }

# compute-sanitizer on the smallest model, fp16 (the tensor-core path), two runs (eager + graph capture)
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
M="$TD_TMP/bert-seqcls.torchscript.fp16.onnx"
[ -f "$M" ] || "$TD_BIN" optimize "$TD_FIXTURES/onnx/bert-seqcls.torchscript.onnx" -o "$M" --precision fp16
python3 - "$TD_TMP/san_in.safetensors" <<'PY'
import sys, numpy as np
from safetensors.numpy import save_file
ids = np.random.RandomState(0).randint(5, 1000, (2, 16)).astype(np.int64)
m = np.ones((2, 16), np.int64); m[1, 9:] = 0
save_file({"input_ids": ids, "attention_mask": m, "token_type_ids": np.zeros((2, 16), np.int64)}, sys.argv[1])
PY
san_pass=0; san_fail=0
# initcheck also runs on the reference kernels (TDEPLOY_CUDA_REFERENCE=1: no cuBLASLt), which tells a finding in
# our kernels from reads of cuBLASLt output that the sanitizer did not see written (TMA stores)
for tool in ${SAN_TOOLS:-memcheck racecheck initcheck initcheck-ref}; do
  env=(); t=$tool
  [ $tool = initcheck-ref ] && { env=(TDEPLOY_CUDA_REFERENCE=1); t=initcheck; }
  if timeout ${SAN_TIMEOUT:-0} env "${env[@]}" "$SAN" --tool $t --error-exitcode 9 "$TD_BIN" infer "$M" --inputs "$TD_TMP/san_in.safetensors" \
       -o "$TD_TMP/san_out.safetensors" --backend cuda --runs 2 > "$TD_TMP/sanitizer_$tool.log" 2>&1; then
    echo "PASS compute-sanitizer $tool"; san_pass=$((san_pass+1))
  else
    echo "FAIL compute-sanitizer $tool (see sanitizer.log)"; grep -m3 -A3 "=====.*\(Uninit\|Invalid\|Race\|Error\)" "$TD_TMP/sanitizer_$tool.log"; grep "ERROR SUMMARY" "$TD_TMP/sanitizer_$tool.log"; san_fail=$((san_fail+1)); rc=1
  fi
  { echo "== $tool"; tail -40 "$TD_TMP/sanitizer_$tool.log"; } >> "$OUT/sanitizer.log"
done
echo "sanitizer: $san_pass passed, $san_fail failed" | tee -a "$OUT/machine.txt"
exit $rc
