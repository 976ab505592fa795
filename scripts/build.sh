#!/usr/bin/env bash
# Configures and builds tessera into build/ (TESSERA_CUDA=AUTO|ON|OFF from the environment).
# Arguments name the targets to build (default: everything, tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
args=(-S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTESSERA_CUDA="${TESSERA_CUDA:-AUTO}")
if [ -n "${TESSERA_HF_PYTHON:-}" ]; then
  args+=(-DTESSERA_HF_PYTHON="$TESSERA_HF_PYTHON")
fi
cmake "${args[@]}" ${TESSERA_CMAKE_ARGS:-}
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build build -j "$(nproc)" "${targets[@]}"
