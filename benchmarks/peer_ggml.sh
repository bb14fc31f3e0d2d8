#!/usr/bin/env bash
# benchmarks/peer_ggml.sh — the peer line of qvac's kernel tables: builds
# ggml alone (its CPU backend, as llama.cpp runs it) from a source tree the
# user gives (a llama.cpp or ggml checkout), compiles benchmarks/peer_ggml.c
# against it and times ggml's mul_mat at the shapes given, one JSON object
# per line on stdout.
#
#   benchmarks/peer_ggml.sh SOURCE_TREE [TYPE:M,N,K ...]
#
# Default shapes: 512,2048,2048 and M=1 at the same N, K, for tq2_0 and f16
# (the ternary and 16-bit lines of benchmarks/reports). The build goes to
# build/peer-ggml (minutes on 2 cores the first time; reused after). Without
# a source tree it prints one line saying it skipped and exits 0, so a
# benchmark can call it unconditionally: QVAC_PEER_GGML=SOURCE_TREE.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${1:-${QVAC_PEER_GGML:-}}
if [ -z "$SRC" ] || [ "$SRC" = -h ] || [ "$SRC" = --help ]; then
    [ -z "$SRC" ] && echo "peer_ggml: skipped: no ggml / llama.cpp source tree given (benchmarks/peer_ggml.sh SOURCE_TREE or QVAC_PEER_GGML=...)" >&2
    [ -n "$SRC" ] && sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
[ $# -gt 0 ] && shift
SRC=$(cd "$SRC" && pwd)
B=$ROOT/build/peer-ggml
if [ -f "$SRC/ggml/CMakeLists.txt" ]; then # a llama.cpp tree: ggml through its top level, nothing else
    INC=(-I "$SRC/ggml/include")
    [ -f "$B/build.ninja" ] || [ -f "$B/Makefile" ] || cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=ON -DGGML_VULKAN=OFF -DGGML_OPENCL=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF \
        -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >&2
elif [ -f "$SRC/include/ggml.h" ]; then # a ggml tree
    INC=(-I "$SRC/include")
    [ -f "$B/build.ninja" ] || [ -f "$B/Makefile" ] || cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=ON -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF >&2
else
    echo "peer_ggml: $SRC is neither a llama.cpp nor a ggml source tree" >&2
    exit 1
fi
cmake --build "$B" -j "$(nproc)" --target ggml ggml-cpu >&2
LIB=$(dirname "$(find "$B" -name 'libggml.so' -o -name 'libggml.dylib' | head -n 1)")
[ -n "$LIB" ] || { echo "peer_ggml: no libggml in $B after the build" >&2; exit 1; }
cc -O2 -std=c11 -Wall -Wextra -Werror "${INC[@]}" "$ROOT/benchmarks/peer_ggml.c" -L "$LIB" -lggml -lggml-base -lggml-cpu \
    -Wl,-rpath,"$LIB" -o "$B/peer_ggml"
if [ $# -eq 0 ]; then
    set -- tq2_0:512,2048,2048 f16:512,2048,2048 tq2_0:1,2048,2048 f16:1,2048,2048
fi
COMMIT=$(git -C "$SRC" rev-parse --short=9 HEAD 2>/dev/null || echo unknown)
echo "peer_ggml: ggml from $SRC ($COMMIT), $(nproc) threads" >&2
"$B/peer_ggml" "$@"
