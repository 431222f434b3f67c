#!/usr/bin/env bash
# Every libFuzzer harness (tests/fuzz/fuzz_*.c) for FUZZ_SECONDS seconds each (default 60); scripts/test.sh
# runs this as its last step. Exits non-zero when a harness crashes, did not run, or has no seeds.
#
# Corpora persist in build-fuzz/corpus/<harness> (TD_FUZZ_CORPUS=DIR puts them elsewhere, e.g. a folder that
# outlives the checkout, as CI's fresh clones need) and grow across runs: each run first merges the seeds
# (the repository's fixture files that harness parses, plus tests/fuzz/seeds/<harness>) into the corpus
# with -merge=1 (only inputs that add coverage are kept), then fuzzes with the corpus as its output
# directory, so every new interesting input stays for the next run.
# A harness passes only when it exits cleanly AND its final stats report executed units > 0 (a fuzzer
# that cannot start, e.g. an empty build or a bad flag, must not count as a pass).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FIX=$ROOT/tests/fixtures
BUILD=${FUZZ_BUILD:-build-fuzz}
CORPORA=${TD_FUZZ_CORPUS:-$BUILD/corpus}

passed=0
failed=0
failures=()

# seed_dir HARNESS DIR: fill DIR with the fixture files HARNESS parses. A harness without an entry here
# fails the run, so a new harness cannot go unseeded.
seed_dir() {
  local name=$1 dir=$2 f
  rm -rf "$dir"; mkdir -p "$dir"
  case "$name" in
    fuzz_config) for f in "$FIX"/hf/*/config.json; do cp "$f" "$dir/$(basename "$(dirname "$f")").json"; done ;;
    fuzz_safetensors) for f in "$FIX"/hf/*/*.safetensors; do
        cp "$f" "$dir/$(basename "$(dirname "$f")")-$(basename "$f")"; done ;;
    fuzz_onnx_load|fuzz_optimize|fuzz_session) cp "$FIX"/onnx/*.onnx "$dir/" ;;
    fuzz_tokenizer) # first byte 0: the rest is tokenizer.json text (see the harness)
      for f in "$FIX"/hf/*/tokenizer.json; do
        { printf '\0'; cat "$f"; } > "$dir/$(basename "$(dirname "$f")")-tokenizer.json"; done ;;
    # harnesses whose inputs no fixture file is: their seeds are checked in under tests/fuzz/seeds/<harness>
    # (fuzz_engine's is the engine tests/unit/test_engine.c builds from bert-seqcls, fp16, two profiles;
    # fuzz_timing_cache's a two-entry cache as tdeploy build writes it)
    fuzz_chat_template|fuzz_gguf|fuzz_engine|fuzz_timing_cache) ;;
    *) return 1 ;;
  esac
  [ -d "tests/fuzz/seeds/$name" ] && cp -r "tests/fuzz/seeds/$name/." "$dir/"
  [ -n "$(ls -A "$dir")" ]
}

for fz in "$BUILD"/fuzz_*; do
  [ -x "$fz" ] || continue
  name=$(basename "$fz")
  corpus="$CORPORA/$name"
  seeds="$BUILD/seeds/$name"
  log="$BUILD/$name.log"
  mkdir -p "$corpus"
  echo "-- $name"
  if ! seed_dir "$name" "$seeds"; then
    failed=$((failed + 1)); failures+=("$name has no fixture seeds: add it to seed_dir in scripts/fuzz.sh")
    continue
  fi
  before=$(find "$corpus" -type f | wc -l)
  export TD_FIXTURES=$FIX
  if ! "$fz" -merge=1 -rss_limit_mb=4096 -timeout=20 "$corpus" "$seeds" >"$BUILD/$name.merge.log" 2>&1; then
    failed=$((failed + 1)); failures+=("$name: merging the seeds failed or crashed ($BUILD/$name.merge.log)")
    tail -n 40 "$BUILD/$name.merge.log"
    continue
  fi
  if "$fz" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 \
      -artifact_prefix="$BUILD/$name-" "$corpus" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    after=$(find "$corpus" -type f | wc -l)
    if [ -z "$execs" ] || [ "$execs" -eq 0 ]; then
      failed=$((failed + 1)); failures+=("$name did not run (executed units: ${execs:-none}; $log)")
      tail -n 20 "$log"
    else
      passed=$((passed + 1))
      echo "   $execs executions, corpus $before -> $after inputs"
    fi
  else
    failed=$((failed + 1)); failures+=("$name found a crash ($log)")
    tail -n 40 "$log"
  fi
done
[ $((passed + failed)) -gt 0 ] || { failed=1; failures+=("no fuzz harness in $BUILD"); }

for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
