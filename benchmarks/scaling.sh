#!/usr/bin/env bash
# Weak and strong scaling of the real Trainer under mpirun, next to the planner's calibrated predictions.
#   bash benchmarks/scaling.sh [BUILD_DIR]      (default: build; needs tessera-bench-training,
#                                                tessera-calibrate and tessera-plan built there)
# Strong scaling: a fixed global batch (STRONG_BATCH sequences per step) split over the data-parallel
# ranks. Weak scaling: a fixed batch per data-parallel rank (WEAK_BATCH). Layouts per rank count: "dp"
# (every rank data-parallel) and "tp2" (tensor-parallel pairs, dp = ranks / 2). For each rank count and
# microbatch size, tessera-calibrate measures this machine and tessera-plan --calibration predicts each run.
# Writes out/scaling/*.json (raw JSON lines), scaling.json (all rows), scaling.dat and scaling.png
# (gnuplot: measured vs predicted tokens/s per layout and rank count). On a shared or small machine
# the ranks are oversubscribed, so the measured curves say more about the cores than the trainer.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
OUT=${OUT:-$ROOT/out/scaling}
RANKS=${RANKS:-"1 2 4 8"}
MODEL=${MODEL:-tiny}
SEQ=${SEQ:-64}
WEAK_BATCH=${WEAK_BATCH:-2}      # sequences per data-parallel rank per step
STRONG_BATCH=${STRONG_BATCH:-16}  # sequences per step in all
WARMUP=${WARMUP:-2}
STEPS=${STEPS:-5}
REPS=${REPS:-7}                  # tessera-calibrate repetitions per sample
# CPU threads per rank. One by default: with two per rank, OpenBLAS's and OpenMP's thread pools spin
# against each other on a small machine and single calibration samples come out several times slow.
THREADS=${THREADS:-1}

for tool in tessera-bench-training tessera-calibrate tessera-plan; do
  [[ -x "$BUILD/$tool" ]] || { echo "scaling.sh: $BUILD/$tool not found; build it first" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "scaling.sh: needs python3" >&2; exit 2; }

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Ranks bound to cores round-robin, as in the calibration test: left to the OS, oversubscribed ranks
# settle in placements whose step times differ by 25% from run to run.
MPIRUN=(mpirun --oversubscribe --bind-to core:overload-allowed --map-by core)
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/scaling.dat "$OUT"/scaling.png

for n in $RANKS; do
  for layout in dp tp2; do
    if [[ $layout == dp ]]; then spec="tp=1"; dp=$n; else spec="tp=2"; dp=$((n / 2)); fi
    (( dp >= 1 )) || continue
    for mode in strong weak; do
      if [[ $mode == weak ]]; then batch=$WEAK_BATCH; else batch=$((STRONG_BATCH / dp)); fi
      (( batch >= 1 )) || continue
      [[ $mode == weak ]] || (( batch * dp == STRONG_BATCH )) || continue
      # Calibrated at the shapes it predicts: per rank count and microbatch size.
      cal="$OUT/calibration-n$n-b$batch.json"
      if [[ ! -f $cal ]]; then
        echo "== $n rank(s), batch $batch: calibrating"
        "${MPIRUN[@]}" -np "$n" "$BUILD/tessera-calibrate" --model "$MODEL" --batch-size "$batch" --seq-len "$SEQ" \
          --threads "$THREADS" --reps "$REPS" --out "$cal" > "${cal%.json}.log"
      fi
      tag="$mode-$layout-n$n"
      echo "== $tag: batch $batch per data-parallel rank"
      "${MPIRUN[@]}" -np "$n" "$BUILD/tessera-bench-training" --model "$MODEL" --device cpu --seq-len "$SEQ" \
        --threads "$THREADS" --batch-size "$batch" --layouts "$spec" --warmup "$WARMUP" --steps "$STEPS" --json "$OUT/measured-$tag.json"
      "$BUILD/tessera-plan" --calibration "$cal" --predict-layouts "$spec" --ranks "$n" \
        --batch-size "$batch" --seq-len "$SEQ" --json > "$OUT/predicted-$tag.json"
    done
  done
done

# Collect: one row per (mode, layout, ranks).
python3 - "$OUT" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
rows = []
for path in sorted(glob.glob(os.path.join(out, "measured-*.json"))):
    tag = os.path.basename(path)[len("measured-"):-len(".json")]
    mode, layout, n = tag.split("-")
    meas = [json.loads(l) for l in open(path) if l.strip()]
    pred = [json.loads(l) for l in open(os.path.join(out, "predicted-" + tag + ".json")) if l.strip()]
    m, p = meas[-1], pred[-1]
    rows.append({"mode": mode, "layout": layout, "ranks": int(n[1:]), "trainer_layout": m.get("layout", ""),
                 "measured_ms": m["ms"], "measured_tokens_per_s": m["tokens_per_s"],
                 "predicted_ms": p["predicted_ms"], "predicted_tokens_per_s": p["tokens_per_s"],
                 "error": p["predicted_ms"] / m["ms"] - 1})
rows.sort(key=lambda r: (r["mode"], r["layout"], r["ranks"]))
json.dump({"rows": rows}, open(os.path.join(out, "scaling.json"), "w"), indent=2)
# gnuplot data: one block per (mode, layout), two blank lines between blocks (index i).
with open(os.path.join(out, "scaling.dat"), "w") as f:
    blocks = []
    for key in sorted({(r["mode"], r["layout"]) for r in rows}):
        blocks.append("# %s %s\n# ranks measured_tokens_per_s predicted_tokens_per_s\n" % key + "".join(
            "%d %.2f %.2f\n" % (r["ranks"], r["measured_tokens_per_s"], r["predicted_tokens_per_s"])
            for r in rows if (r["mode"], r["layout"]) == key))
    f.write("\n\n".join(blocks))
print("%-7s %-6s %5s %12s %12s %8s" % ("mode", "layout", "ranks", "measured/s", "predicted/s", "step-time error"))
for r in rows:
    print("%-7s %-6s %5d %12.0f %12.0f %+7.1f%%" % (r["mode"], r["layout"], r["ranks"], r["measured_tokens_per_s"],
                                                 r["predicted_tokens_per_s"], 100 * r["error"]))
EOF

if ! command -v gnuplot >/dev/null; then
  echo "scaling.sh: gnuplot not found (apt-get install -y gnuplot-nox); data in $OUT/scaling.dat" >&2
  exit 1
fi
# Block order in scaling.dat (sorted): strong dp, strong tp2, weak dp, weak tp2.
gnuplot <<EOF
set terminal pngcairo size 1200,500 noenhanced
set output "$OUT/scaling.png"
set multiplot layout 1,2 title "tessera $MODEL, seq $SEQ: measured (solid) vs calibrated prediction (dashed)"
set logscale x 2
set xlabel "ranks"
set ylabel "tokens/s"
set key bottom right
set grid
set title "strong scaling: $STRONG_BATCH sequences per step"
plot "$OUT/scaling.dat" index 0 using 1:2 with linespoints lw 2 lc 1 title "dp measured", \
     "" index 0 using 1:3 with linespoints dt 2 lc 1 title "dp predicted", \
     "" index 1 using 1:2 with linespoints lw 2 lc 2 title "tp2 measured", \
     "" index 1 using 1:3 with linespoints dt 2 lc 2 title "tp2 predicted"
set title "weak scaling: $WEAK_BATCH sequences per data-parallel rank"
plot "$OUT/scaling.dat" index 2 using 1:2 with linespoints lw 2 lc 1 title "dp measured", \
     "" index 2 using 1:3 with linespoints dt 2 lc 1 title "dp predicted", \
     "" index 3 using 1:2 with linespoints lw 2 lc 2 title "tp2 measured", \
     "" index 3 using 1:3 with linespoints dt 2 lc 2 title "tp2 predicted"
unset multiplot
EOF
echo "wrote $OUT/scaling.json, $OUT/scaling.dat, $OUT/scaling.png"
