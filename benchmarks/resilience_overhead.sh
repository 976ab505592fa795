#!/usr/bin/env bash
# What the resilience costs without failures: the 4-rank job of benchmarks/ettr.py (tiny, tp 2 x dp 2,
# durable checkpoints every 20 steps) for 80 steps, an earlier build and this one without and with the
# local tier every 4 steps, interleaved ROUNDS times (default 3); prints each run's wall time from the
# first step to the end (the summary record) and the median step time.
#   bash benchmarks/resilience_overhead.sh BUILD_DIR BEFORE_BUILD_DIR
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" && pwd)
BEFORE=$(cd "$2" && pwd)
OUT=${OUT:-$ROOT/out/resilience_overhead}
rm -rf "$OUT"
mkdir -p "$OUT"
"$BUILD/tessera-prepare-data" --out "$OUT/corpus" "$ROOT/data/tinyshakespeare.txt" >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export TESSERA_TEST_NODES="nodeA nodeA nodeB nodeB"
MPI=(mpirun --oversubscribe --bind-to none -np 4 sh "$ROOT/tests/support/fake_nodes.sh")
ARGS=(--model tiny --data "$OUT/corpus_train.bin" --tp 2 --batch-size 4 --seq-len 64 --steps 80 --eval-every 0
      --sample-tokens 0 --threads 1 --seed 3 --checkpoint-every 20)
for i in $(seq "${ROUNDS:-3}"); do
  rm -rf "$OUT/ck" "$OUT/local"
  "${MPI[@]}" "$BEFORE/tessera-train" "${ARGS[@]}" --checkpoint-dir "$OUT/ck" --log "$OUT/before-$i.jsonl" >/dev/null 2>&1
  rm -rf "$OUT/ck"
  "${MPI[@]}" "$BUILD/tessera-train" "${ARGS[@]}" --checkpoint-dir "$OUT/ck" --log "$OUT/after-$i.jsonl" >/dev/null 2>&1
  rm -rf "$OUT/ck"
  "${MPI[@]}" "$BUILD/tessera-train" "${ARGS[@]}" --checkpoint-dir "$OUT/ck" --local-checkpoint-dir "$OUT/local" \
    --local-checkpoint-every 4 --log "$OUT/local-$i.jsonl" >/dev/null 2>&1
done
python3 - "$OUT" <<'PY'
import glob, json, statistics, sys
for kind in ("before", "after", "local"):
    walls, steps = [], []
    for path in sorted(glob.glob("%s/%s-*.jsonl" % (sys.argv[1], kind))):
        records = [json.loads(line) for line in open(path)]
        walls.append([r for r in records if r.get("kind") == "summary"][-1]["wall_seconds"])
        steps.append(statistics.median(r["ms"] for r in records if r.get("kind") == "train" and r["step"] >= 5))
    print("%-6s wall %s s (median %.1f s), median step %s ms" % (
        kind, ", ".join("%.1f" % w for w in walls), statistics.median(walls), ", ".join("%.0f" % s for s in steps)))
PY
