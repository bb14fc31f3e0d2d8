#!/usr/bin/env bash
# benchmarks/peer_ggml.sh — the peer line of qvac's kernel tables: builds
# ggml alone (its CPU backend, as llama.cpp runs it; or its Vulkan backend)
# from a source tree the user gives (a llama.cpp or ggml checkout), compiles
# benchmarks/peer_ggml.c against it and times ggml's mul_mat at the shapes
# given, one JSON object per line on stdout.
#
#   benchmarks/peer_ggml.sh [--backend cpu|vulkan] [--device N] SOURCE_TREE
#                           [--min-ms MS] [TYPE:M,N,K ...]
#
# Default shapes: 512,2048,2048 and M=1 at the same N, K, for tq2_0 and f16
# (the ternary and 16-bit lines of benchmarks/reports). The CPU build goes
# to build/peer-ggml (minutes on 2 cores the first time; reused after).
# --backend vulkan (or QVAC_PEER_GGML_BACKEND=vulkan) builds ggml with
# GGML_VULKAN=ON in build/peer-ggml-vk (it compiles a few hundred shaders:
# about 5 minutes on 2 cores the first time; needs glslc, libvulkan-dev
# and spirv-headers from Debian) and times the cases on Vulkan physical
# device N (default 0; qvac's vulkan:N), lines "peer":"ggml-vulkan". Without
# a source tree it prints one line saying it skipped and exits 0, so a
# benchmark can call it unconditionally: QVAC_PEER_GGML=SOURCE_TREE.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BACKEND=${QVAC_PEER_GGML_BACKEND:-cpu}
VKDEV=0
while [ $# -gt 0 ]; do
    case "$1" in
    --backend) BACKEND=${2:-}; shift 2 || { echo "peer_ggml: --backend needs cpu or vulkan" >&2; exit 1; } ;;
    --device) VKDEV=${2:-}; shift 2 || { echo "peer_ggml: --device needs an index" >&2; exit 1; } ;;
    *) break ;;
    esac
done
case "$BACKEND" in cpu | vulkan) ;; *) echo "peer_ggml: backend '$BACKEND': use cpu or vulkan" >&2; exit 1 ;; esac
case "$VKDEV" in '' | *[!0-9]*) echo "peer_ggml: --device '$VKDEV' is not an index" >&2; exit 1 ;; esac
SRC=${1:-${QVAC_PEER_GGML:-}}
if [ -z "$SRC" ] || [ "$SRC" = -h ] || [ "$SRC" = --help ]; then
    [ -z "$SRC" ] && echo "peer_ggml: skipped: no ggml / llama.cpp source tree given (benchmarks/peer_ggml.sh SOURCE_TREE or QVAC_PEER_GGML=...)" >&2
    [ -n "$SRC" ] && sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
[ $# -gt 0 ] && shift
SRC=$(cd "$SRC" && pwd)
B=$ROOT/build/peer-ggml
VK=OFF
TARGETS=(ggml ggml-cpu)
LIBS=(-lggml -lggml-base -lggml-cpu)
DEFS=()
RUNARGS=()
CXXCOMPAT=()
if [ "$BACKEND" = vulkan ]; then
    B=$ROOT/build/peer-ggml-vk
    VK=ON
    TARGETS+=(ggml-vulkan)
    LIBS+=(-lggml-vulkan)
    DEFS=(-DPEER_GGML_VULKAN)
    RUNARGS=(--vulkan "$VKDEV")
    # Debian bookworm's Vulkan headers (1.3.239) lack VK_EXT_layer_settings,
    # which ggml-vulkan names; peer_ggml_vk_compat/ adds it (see that file).
    CXXCOMPAT=(-DCMAKE_CXX_FLAGS="-I$ROOT/benchmarks/peer_ggml_vk_compat")
    for need in glslc:glslc /usr/include/vulkan/vulkan.hpp:libvulkan-dev \
        /usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake:spirv-headers; do
        f=${need%%:*}
        if { [ "${f#/}" = "$f" ] && ! command -v "$f" >/dev/null; } || { [ "${f#/}" != "$f" ] && [ ! -e "$f" ]; }; then
            echo "peer_ggml: ggml-vulkan needs ${need##*:} (Debian: apt-get install ${need##*:})" >&2
            exit 1
        fi
    done
fi
if [ -f "$SRC/ggml/CMakeLists.txt" ]; then # a llama.cpp tree: ggml through its top level, nothing else
    INC=(-I "$SRC/ggml/include")
    [ -f "$B/build.ninja" ] || [ -f "$B/Makefile" ] || cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=ON -DGGML_VULKAN=$VK "${CXXCOMPAT[@]}" -DGGML_OPENCL=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF \
        -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >&2
elif [ -f "$SRC/include/ggml.h" ]; then # a ggml tree
    INC=(-I "$SRC/include")
    [ -f "$B/build.ninja" ] || [ -f "$B/Makefile" ] || cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=ON -DGGML_VULKAN=$VK "${CXXCOMPAT[@]}" -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF >&2
else
    echo "peer_ggml: $SRC is neither a llama.cpp nor a ggml source tree" >&2
    exit 1
fi
cmake --build "$B" -j "$(nproc)" --target "${TARGETS[@]}" >&2
LIB=$(dirname "$(find "$B" -name 'libggml.so' -o -name 'libggml.dylib' | head -n 1)")
[ -n "$LIB" ] || { echo "peer_ggml: no libggml in $B after the build" >&2; exit 1; }
cc -O2 -std=c11 -Wall -Wextra -Werror "${DEFS[@]}" "${INC[@]}" "$ROOT/benchmarks/peer_ggml.c" -L "$LIB" "${LIBS[@]}" \
    -Wl,-rpath,"$LIB" -o "$B/peer_ggml"
if [ $# -eq 0 ]; then
    set -- tq2_0:512,2048,2048 f16:512,2048,2048 tq2_0:1,2048,2048 f16:1,2048,2048
fi
COMMIT=$(git -C "$SRC" rev-parse --short=9 HEAD 2>/dev/null || echo unknown)
if [ "$BACKEND" = vulkan ]; then
    echo "peer_ggml: ggml-vulkan from $SRC ($COMMIT), Vulkan device $VKDEV" >&2
else
    echo "peer_ggml: ggml from $SRC ($COMMIT), $(nproc) threads" >&2
fi
"$B/peer_ggml" "${RUNARGS[@]}" "$@"
