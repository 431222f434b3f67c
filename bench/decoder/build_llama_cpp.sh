#!/bin/sh
# Builds llama.cpp's llama-bench from the llama-cpp-python source package (PyPI), the anchor of issue 16.
# Usage: bench/decoder/build_llama_cpp.sh [CACHE_DIR]   (default /tmp/llamacpp)
# The build is cached: a second run only prints the path of llama-bench. Needs pip, cmake, a C/C++ compiler.
set -eu
cache=${1:-/tmp/llamacpp}
version=0.3.36
mkdir -p "$cache"
cd "$cache"
bin="$cache/build/bin/llama-bench"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
src="$cache/llama_cpp_python-$version/vendor/llama.cpp"
if [ -n "${LLAMA_SRC_TARBALL:-}" ]; then
    # offline machines: a tar of that vendor/llama.cpp folder (made where PyPI is reachable)
    mkdir -p "$src" && tar xJf "$LLAMA_SRC_TARBALL" -C "$src/.." >&2
else
    if [ ! -f "llama_cpp_python-$version.tar.gz" ]; then
        pip download --no-binary :all: --no-deps "llama-cpp-python==$version" -d . >&2
    fi
    if [ ! -d "llama_cpp_python-$version" ]; then tar xzf "llama_cpp_python-$version.tar.gz"; fi
fi
# GGML_NATIVE: the same -march=native build the anchor used; no BLAS, no OpenMP surprises beyond the default.
nice -n 10 cmake -S "$src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF >&2
nice -n 10 cmake --build "$cache/build" --target llama-bench -j"${JOBS:-2}" >&2
echo "$bin"
