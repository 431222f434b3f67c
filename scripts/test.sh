#!/usr/bin/env bash
# The whole test suite, exactly what CI runs (.ci/run calls this):
#   1. install dependencies (scripts/install-deps.sh)
#   2. release build with -Werror, ctest
#   3. every src/runtime/cuda/*.cu through nvcc -Werror with clang++ as host compiler (when nvcc exists);
#      AddressSanitizer + UndefinedBehaviorSanitizer build (clang), ctest
#   4. every libFuzzer harness for FUZZ_SECONDS seconds (default 60), seeded with the fixture files,
#      corpora kept and grown in build-fuzz/corpus, each checked to have run (scripts/fuzz.sh)
# Sanitizer reports exit with status 99 so tests that expect a clean error (status 1)
# cannot mistake a sanitizer report for one.
# Set TD_QUICK=1 to run only steps 1-2. Exits non-zero when anything fails.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
JOBS=$(nproc)

bash scripts/install-deps.sh || exit 1

passed=0
failed=0
failures=()

# Count ctest results from its summary line "NN% tests passed, F tests failed out of T".
run_ctest() { # name builddir
  local name=$1 dir=$2 log
  log=$(mktemp)
  (cd "$dir" && ctest --output-on-failure -j "$JOBS" --timeout 1800) 2>&1 | tee "$log"
  local line total fail
  line=$(grep -E "tests passed, [0-9]+ tests? failed out of [0-9]+" "$log" | tail -n 1)
  if [ -z "$line" ]; then
    failed=$((failed + 1)); failures+=("$name: ctest did not run")
  else
    fail=$(echo "$line" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
    total=$(echo "$line" | sed -E 's/.* failed out of ([0-9]+).*/\1/')
    passed=$((passed + total - fail)); failed=$((failed + fail))
    [ "$fail" -eq 0 ] || failures+=("$name: $fail ctest failure(s)")
  fi
  rm -f "$log"
}

step() { echo; echo "==== $* ===="; }

step "release build (-Werror)"
if cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTD_WERROR=ON >/dev/null && ninja -C build; then
  run_ctest release build
else
  failed=$((failed + 1)); failures+=("release build failed")
fi

if [ "${TD_QUICK:-0}" != "1" ]; then
  # the release build compiles src/runtime/cuda/*.cu with gcc as nvcc's host compiler; clang as host too
  if command -v nvcc >/dev/null && command -v clang++ >/dev/null; then
    step "every .cu with nvcc -Werror, clang++ as host compiler"
    cu_fail=0
    for cu in src/runtime/cuda/*.cu; do
      nvcc -ccbin clang++ -std=c++17 -O1 -arch=sm_90 -Isrc -Iinclude -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter \
        -Werror=all-warnings -c "$cu" -o /dev/null || { cu_fail=1; failures+=("nvcc/clang++: $cu"); }
    done
    if [ $cu_fail = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  fi

  step "ASan + UBSan build and tests"
  if CC=clang cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTD_WERROR=ON -DTD_SANITIZE=ON \
        -DTD_CUDA=OFF >/dev/null && ninja -C build-asan; then
    ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:exitcode=99 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=99 \
      run_ctest asan build-asan
  else
    failed=$((failed + 1)); failures+=("sanitizer build failed")
  fi

  step "libFuzzer harnesses (${FUZZ_SECONDS}s each, seeded with the fixtures; scripts/fuzz.sh)"
  if CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTD_SANITIZE=ON -DTD_FUZZ=ON \
        -DTD_CUDA=OFF >/dev/null && ninja -C build-fuzz; then
    log=$(mktemp)
    FUZZ_SECONDS=$FUZZ_SECONDS bash scripts/fuzz.sh 2>&1 | tee "$log"
    line=$(grep -E "^fuzz: [0-9]+ passed, [0-9]+ failed" "$log" | tail -n 1)
    if [ -z "$line" ]; then
      failed=$((failed + 1)); failures+=("scripts/fuzz.sh did not finish")
    else
      fp=$(echo "$line" | sed -E 's/^fuzz: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
      ff=$(echo "$line" | sed -E 's/^fuzz: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
      passed=$((passed + fp)); failed=$((failed + ff))
      while IFS= read -r f; do failures+=("${f#FAILED: }"); done < <(grep "^FAILED: " "$log")
    fi
    rm -f "$log"
  else
    failed=$((failed + 1)); failures+=("fuzz build failed")
  fi
fi

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
