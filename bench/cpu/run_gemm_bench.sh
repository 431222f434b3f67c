#!/bin/sh
# Builds bench/cpu/gemm_bench.c once per backend and runs every backend with 1 and
# 2 threads. Output: $OUT/raw.tsv (default bench/out/gemm), then
# bench/cpu/gemm_table.py prints the markdown tables for docs/benchmarks.md.
# Usage: [ROUNDS=3] sh bench/cpu/run_gemm_bench.sh [linear|attn|all]
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$SRC/bench/out/gemm}
WHAT=${1:-all}
LIB=/usr/lib/x86_64-linux-gnu
mkdir -p "$OUT"
CC=${CC:-gcc}
CFLAGS="-O3 -march=native -Wall"
B="$SRC/bench/cpu/gemm_bench.c"

$CC $CFLAGS -DBACKEND_TD -I"$SRC/src" -I"$SRC/include" "$B" "$SRC/src/runtime/cpu/gemm.c" \
    "$SRC/src/runtime/cpu/gemm_kernel.c" "$SRC/src/runtime/cpu/gemm_kernel_avx2.c" "$SRC/src/core/threadpool.c" "$SRC/src/core/ctx.c" "$SRC/src/core/large_alloc.c" \
    "$SRC/src/core/dtype.c" -o "$OUT/gemm_td" -lpthread -lm
$CC $CFLAGS -DBACKEND_BLAS -DBACKEND_NAME='"openblas"' "$B" -o "$OUT/gemm_openblas" \
    "$LIB/openblas-pthread/libopenblas.so" -Wl,-rpath,"$LIB/openblas-pthread"
if [ -e "$LIB/blis-openmp/libblis.so" ]; then
  $CC $CFLAGS -DBACKEND_BLAS -DBACKEND_NAME='"blis-openmp"' "$B" -o "$OUT/gemm_blis_openmp" \
      "$LIB/blis-openmp/libblis.so" -Wl,-rpath,"$LIB/blis-openmp"
fi
if [ -e "$LIB/blis-pthread/libblis.so.4" ]; then
  $CC $CFLAGS -DBACKEND_BLAS -DBACKEND_NAME='"blis-pthread"' "$B" -o "$OUT/gemm_blis_pthread" \
      "$LIB/blis-pthread/libblis.so.4" -Wl,-rpath,"$LIB/blis-pthread"
fi
if [ -e /usr/include/dnnl.h ]; then
  $CC $CFLAGS -DBACKEND_DNNL "$B" -o "$OUT/gemm_onednn" -ldnnl
fi

# Backends are interleaved shape-group by shape-group over ROUNDS rounds so that
# load from other processes hits all of them alike; the table takes the median
# over rounds of each run's median.
ROUNDS=${ROUNDS:-3}
: > "$OUT/raw.tsv"
run() { # label threads env... -- binary
  label=$1; t=$2; shift 2
  env "$@" $t "$WHAT" | awk -v r="$round" -v l="$label" 'BEGIN{OFS="\t"} {$1=l; print r, $0}' >> "$OUT/raw.tsv"
}
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round: $(uptime)" >&2
  for t in 1 2; do
    run tdeploy $t "$OUT/gemm_td"
    # OpenBLAS 0.3.21 predates this CPU: its own detection (OPENBLAS_CORETYPE unset)
    # vs forcing the AVX-512 (SkylakeX) and AVX2 (Haswell) kernels.
    run openblas $t -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=$t "$OUT/gemm_openblas"
    run openblas-skylakex $t OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=$t "$OUT/gemm_openblas"
    run openblas-haswell $t OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=$t "$OUT/gemm_openblas"
    [ -x "$OUT/gemm_blis_openmp" ] && run blis-openmp $t OMP_NUM_THREADS=$t BLIS_NUM_THREADS=$t "$OUT/gemm_blis_openmp"
    [ -x "$OUT/gemm_blis_pthread" ] && run blis-pthread $t BLIS_NUM_THREADS=$t "$OUT/gemm_blis_pthread"
    [ -x "$OUT/gemm_onednn" ] && run onednn $t OMP_NUM_THREADS=$t "$OUT/gemm_onednn"
  done
done
echo "done: $(uptime)" >&2
python3 "$SRC/bench/cpu/gemm_table.py" "$OUT/raw.tsv" wall
python3 "$SRC/bench/cpu/gemm_table.py" "$OUT/raw.tsv" cpu

