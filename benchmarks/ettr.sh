#!/usr/bin/env bash
# Effective training time under injected failures (benchmarks/ettr.py): this build, and optionally a
# build of an earlier commit for comparison (its freezes caught by --timeout, BEFORE_TIMEOUT seconds).
#   bash benchmarks/ettr.sh [BUILD_DIR [BEFORE_BUILD_DIR]]
# Needs tessera-train, tessera-launch and tessera-prepare-data in each build dir; writes out/ettr/.
# SECONDS_PER_RUN (default 240) and EVERY (mean seconds between failures, default 30) set the length.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
OUT=${OUT:-$ROOT/out/ettr}
RUN_S=${SECONDS_PER_RUN:-240}
EVERY=${EVERY:-30}
python3 "$ROOT/benchmarks/ettr.py" --build "$BUILD" --out "$OUT/after" --seconds "$RUN_S" --every "$EVERY"
if [[ $# -ge 2 ]]; then
  python3 "$ROOT/benchmarks/ettr.py" --build "$(cd "$2" && pwd)" --out "$OUT/before" --seconds "$RUN_S" --every "$EVERY" \
    --legacy --timeout "${BEFORE_TIMEOUT:-60}"
fi
