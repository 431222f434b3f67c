#!/bin/sh
# Builds bench/cpu/gemm_bench.c once per backend and runs every backend with 1 and
# 2 threads, one after the other on an otherwise idle machine. Output: one TSV per
# run in $OUT (default bench/out/gemm), then bench/cpu/gemm_table.py prints the
# markdown table for docs/benchmarks.md.
# Usage: sh bench/cpu/run_gemm_bench.sh [linear|attn|all]
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
    "$SRC/src/runtime/cpu/gemm_kernel.c" "$SRC/src/core/threadpool.c" "$SRC/src/core/ctx.c" \
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

for t in 1 2; do
  "$OUT/gemm_td" $t "$WHAT" > "$OUT/tdeploy_t$t.tsv"
  # OpenBLAS 0.3.21 predates this CPU: compare its own detection with forcing
  # the AVX-512 (SkylakeX) and AVX2 (Haswell) kernels.
  env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=$t "$OUT/gemm_openblas" $t "$WHAT" > "$OUT/openblas-auto_t$t.tsv"
  OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=$t "$OUT/gemm_openblas" $t "$WHAT" \
      | sed 's/^openblas/openblas-skylakex/' > "$OUT/openblas-skylakex_t$t.tsv"
  OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=$t "$OUT/gemm_openblas" $t "$WHAT" \
      | sed 's/^openblas/openblas-haswell/' > "$OUT/openblas-haswell_t$t.tsv"
  [ -x "$OUT/gemm_blis_openmp" ] && OMP_NUM_THREADS=$t BLIS_NUM_THREADS=$t "$OUT/gemm_blis_openmp" $t "$WHAT" \
      > "$OUT/blis-openmp_t$t.tsv"
  [ -x "$OUT/gemm_blis_pthread" ] && BLIS_NUM_THREADS=$t "$OUT/gemm_blis_pthread" $t "$WHAT" \
      > "$OUT/blis-pthread_t$t.tsv"
  [ -x "$OUT/gemm_onednn" ] && OMP_NUM_THREADS=$t "$OUT/gemm_onednn" $t "$WHAT" > "$OUT/onednn_t$t.tsv"
done
cat "$OUT"/*.tsv > "$OUT/all.tsv"
python3 "$SRC/bench/cpu/gemm_table.py" "$OUT/all.tsv"
