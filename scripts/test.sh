#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds (CUDA too when nvcc is present), runs CTest.
# On a machine without a GPU the CUDA tests report themselves skipped, by name.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" ${TESSERA_CTEST_ARGS:-}
