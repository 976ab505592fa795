#!/usr/bin/env bash
# The GPU check: one command that turns a bare GPU node (no network; a clean checkout, plus the
# offline bundle where the node lacks Open MPI, fmt, Catch2, OpenBLAS or cuDNN's frontend) into a
# verified tessera run, within about 10 minutes on one H100 with 16 cores:
#   1. setup: the bundle (if given), configure and build for the detected GPU architecture only;
#      the versions of the driver, CUDA, cuBLAS, cuDNN and NCCL;
#   2. the CUDA tests with TESSERA_REQUIRE_GPU=1, one process at a time: a skip is a failure, and so
#      is a fast path (cuBLASLt epilogues, cuDNN attention) that fell back;
#   3. compute-sanitizer memcheck and racecheck over the kernel tests (where the tool exists);
#   4. tiny and gpt2 trained 20 steps in bf16 on the GPU and in f32 on the CPU from one initialisation
#      and one batch sequence: losses within 2% relative, every fast path ran and none fell back;
#   5. the NCCL collectives on as many ranks as GPUs; tp, dp and pp layouts of two ranks sharing
#      one GPU through the MPI backend, against the one-GPU losses;
#   6. the peer benchmark (benchmarks/compare_peers.py): tessera, PyTorch eager, torch.compile and
#      llm.c (--llmc) on GPT-2 124M, T=1024, bf16, at B=64 or the largest B that all fit;
#   6b. the card's own rates for the planner (tessera-calibrate --card; card.json beside the summary);
#   7. a Markdown summary (summary.md) and the logs (logs.tar.gz) in one folder: $OUT when set,
#      else out/gpu_check; the build and scratch files stay in --work.
# On a machine without a GPU it goes as far as it can (the build, the CPU half of step 4), says
# where it stopped and why, and exits 1 (0 with --dry-run, if everything it could run passed).
#
#   usage: scripts/gpu_check.sh [--bundle DIR] [--llmc PATH] [--work DIR] [--budget SECONDS]
#                               [--skip STEP,...] [--dry-run]
# The steps run in the order 1, 2, 4, 5, 6, 3 (the slow sanitizer last); once --budget seconds
# (480) have passed, the steps left are reported as not run, so that the whole check fits in one
# 10-minute command. --skip names steps to leave out: setup (reuse --work's build), cuda_tests,
# sanitizer, training, multi_rank, benchmark, calibrate.
#
# Each step is a function step_<name> listed in STEPS and ORDER below; to add one, write the
# function (it returns 0 passed, 1 failed, 2 not run, and sets DETAIL) and add it to both.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

command_line="scripts/gpu_check.sh${*:+ $*}"
bundle="" llmc="" work="$repo/out/gpu_check-work" budget=480 dry_run=0 skip=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle="$2"; shift 2 ;;
    --llmc) llmc="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --skip) skip=",$2,"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 1 ;;
  esac
done
results="${OUT:-$repo/out/gpu_check}"
mkdir -p "$work" "$results" "$work/logs"
work="$(cd "$work" && pwd)" results="$(cd "$results" && pwd)"
logs="$work/logs" build="$work/build"
rm -f "$logs"/*
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cores="$(nproc)"
start_s=$(date +%s)

# ---------------------------------------------------------------------------------------------
# Bookkeeping: one row per step for the summary; notes and tables for its sections.

declare -a ROWS=() SECTIONS=()
DETAIL=""
say() { echo "gpu_check: $*" | tee -a "$logs/gpu_check.log"; }
elapsed() { echo $(( $(date +%s) - start_s )); }
section() { SECTIONS+=("$1"); }
# logged NAME CMD...: runs CMD with its output in logs/NAME.log (and the last lines on the terminal).
logged() {
  local name="$1"; shift
  echo "\$ $*" >> "$logs/$name.log"
  "$@" >> "$logs/$name.log" 2>&1
  local rc=$?
  tail -n 3 "$logs/$name.log" | sed "s/^/  [$name] /"
  return $rc
}

# ---------------------------------------------------------------------------------------------
# The machine.

gpu_names="" gpu_count=0 arch="" driver=""
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L > "$logs/nvidia-smi.log" 2>&1; then
  nvidia-smi >> "$logs/nvidia-smi.log" 2>&1
  gpu_count=$(nvidia-smi --query-gpu=name --format=csv,noheader | grep -c .)
  gpu_names=$(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | sed 's/^ *//; s/ / x /' | paste -sd';')
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | tr -d '.' | sort -u | paste -sd';')
fi
have_gpu=$([ "$gpu_count" -gt 0 ] && echo 1 || echo 0)
no_gpu_reason="no GPU: nvidia-smi $(command -v nvidia-smi >/dev/null 2>&1 && echo "lists none" || echo "is not installed")"
nvcc_bin="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
cuda_version=$("$nvcc_bin" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
[ -n "$arch" ] || arch=90  # no GPU to ask: build for Hopper, the target, so the dry run builds what the node will
say "$(date -u +%FT%TZ), commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null), $cores cores"
say "GPUs: ${gpu_names:-none} (driver ${driver:-none}), CUDA ${cuda_version:-not found}, building for sm_$arch"
[ "$have_gpu" = 1 ] || say "$no_gpu_reason: the steps that need one will say so"

# ---------------------------------------------------------------------------------------------
# 1. Setup: bundle, configure, build for the detected architecture.

step_setup() {
  if [ -n "$bundle" ]; then
    logged install bash "$repo/scripts/install_offline.sh" "$bundle" "$work/deps" || { DETAIL="the bundle did not install"; return 1; }
    # shellcheck disable=SC1091
    source "$work/deps/env.sh"
  fi
  local python; python="$(command -v python3 || true)"
  logged configure cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTESSERA_CUDA=ON \
    "-DCMAKE_CUDA_ARCHITECTURES=$arch" ${python:+"-DTESSERA_PYTHON=$python" "-DTESSERA_HF_PYTHON=$python"} \
    ${TESSERA_CMAKE_ARGS:-} || { DETAIL="configure failed (logs/configure.log)"; return 1; }
  logged build cmake --build "$build" -j "$cores" || { DETAIL="build failed (logs/build.log)"; return 1; }
  local versions
  versions=$(grep -E "tessera: (CUDA toolkit|cuBLAS|cuDNN|NCCL|cuDNN frontend)" "$logs/configure.log" | sed 's/^-- tessera: //')
  section "### Versions

- driver: ${driver:-none (no GPU)}; GPUs: ${gpu_names:-none}
$(echo "$versions" | sed 's/^/- /')"
  DETAIL="built for sm_$arch with $cores jobs"
  return 0
}

# ---------------------------------------------------------------------------------------------
# 2. The CUDA tests, TESSERA_REQUIRE_GPU=1, one GPU process at a time.

step_cuda_tests() {
  TESSERA_REQUIRE_GPU=1 logged cuda_tests ctest --test-dir "$build" -L cuda -j "$cores" --output-on-failure
  local rc=$?
  local total failed skipped
  total=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$logs/cuda_tests.log" | tail -1)
  failed=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of.*/\1/p' "$logs/cuda_tests.log" | tail -1)
  skipped=$(grep -c "Skipped" "$logs/cuda_tests.log")
  if [ "$have_gpu" = 0 ]; then
    DETAIL="$no_gpu_reason: ${failed:-?} of ${total:-?} CUDA tests fail under TESSERA_REQUIRE_GPU=1, as they must"
    return 2
  fi
  DETAIL="${total:-?} tests, ${failed:-?} failed, $skipped skipped (fast paths: tests/cuda/test_fast_paths.cpp)"
  [ $rc -eq 0 ] && [ "$skipped" -eq 0 ]
}

# ---------------------------------------------------------------------------------------------
# 3. compute-sanitizer over the kernel tests.

step_sanitizer() {
  # memcheck over every kernel test (cuBLASLt and cuDNN included: wrong strides read out of bounds);
  # racecheck over tessera's own kernels (shared-memory hazards), not the libraries': the tests
  # whose calls go to cuBLASLt (matmul) or cuDNN (bf16 attention) are left out by name.
  local own='[cuda]~[fast-paths]~"backend-ops: matmul*"~"backend-ops: attention*"~"attention: cuDNN*"'
  local checks=("memcheck:[cuda]" "racecheck:$own") selection="" check
  for check in "${checks[@]}"; do  # what each would run (a test spec that selects nothing is a bug)
    local n; n=$("$build/tests/tessera_cuda_tests" --list-test-names-only "${check#*:}" | grep -c .)
    [ "$n" -gt 0 ] || { DETAIL="${check%%:*}'s test spec selects no test"; return 1; }
    selection="$selection${selection:+, }${check%%:*} over $n tests"
  done
  local tool; tool="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)"
  if [ -z "$tool" ]; then DETAIL="compute-sanitizer not found ($selection)"; return 2; fi
  if [ "$have_gpu" = 0 ]; then DETAIL="$no_gpu_reason (compute-sanitizer is at $tool; $selection)"; return 2; fi
  local ok=0 notes="" limit=$(( (budget - $(elapsed)) / 2 ))
  [ "$limit" -gt "${SANITIZER_TIMEOUT:-150}" ] && limit="${SANITIZER_TIMEOUT:-150}"
  [ "$limit" -lt 30 ] && limit=30
  for check in "${checks[@]}"; do
    local tests="${check#*:}"; check="${check%%:*}"
    TESSERA_REQUIRE_GPU=1 logged "sanitizer_$check" timeout "$limit" "$tool" --tool "$check" \
      --error-exitcode 9 --print-limit 20 "$build/tests/tessera_cuda_tests" "$tests"
    local rc=$?
    local summary; summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$logs/sanitizer_$check.log" | tail -1)
    case $rc in
      0) notes="$notes $check: ${summary:-clean};" ;;
      124) notes="$notes $check: did not finish in $limit s;"; ok=1 ;;
      *) notes="$notes $check: exit $rc, ${summary:-see logs};"; ok=1 ;;
    esac
  done
  DETAIL="${notes# }"
  return $ok
}

# ---------------------------------------------------------------------------------------------
# 4. bf16 on the GPU against f32 on the CPU, from one initialisation and data.

corpus="$work/data/shakespeare"
train_common=(--data "${corpus}_train.bin" --steps 20 --lr 6e-4 --min-lr 6e-5 --warmup 5 --eval-every 0
              --eval-batches 1 --sample-tokens 0 --timeout 0)
# compare_losses A.jsonl B.jsonl TOLERANCE: prints the largest relative difference, fails above it.
compare_losses() {
  python3 - "$@" <<'PY'
import json, sys
def losses(path):
    return [r["loss"] for r in map(json.loads, open(path)) if r.get("kind") == "train"]
a, b, tol = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3])
if len(a) != len(b) or not a:
    print(f"{len(a)} and {len(b)} steps"); sys.exit(1)
worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
print(f"{len(a)} steps, first {a[0]:.4f} / {b[0]:.4f}, last {a[-1]:.4f} / {b[-1]:.4f}, largest relative difference {worst:.2e}")
sys.exit(0 if worst <= tol else 1)
PY
}
# fast_paths_ok LOG: every fast path in the report of a bf16 GPU run ran and none fell back.
fast_paths_ok() {
  python3 - "$1" <<'PY'
import re, sys
lines = [l for l in open(sys.argv[1]) if "tessera: fast paths on" in l]
if not lines:
    print("no fast-path report (TESSERA_REPORT_FAST_PATHS=1)"); sys.exit(1)
bad = []
for name, ran, fell in re.findall(r"([A-Za-z][A-Za-z ]+?) (\d+) ran, (\d+) fell back", lines[-1]):
    if int(ran) == 0 or int(fell) > 0:
        bad.append(f"{name.strip()}: {ran} ran, {fell} fell back")
print("; ".join(bad) if bad else "every fast path ran, none fell back")
sys.exit(1 if bad else 0)
PY
}

step_training() {
  mkdir -p "$work/data" "$work/train"
  [ -f "${corpus}_train.bin" ] || logged prepare "$build/tessera-prepare-data" --out "$corpus" "$repo/data/tinyshakespeare.txt" \
    || { DETAIL="tessera-prepare-data failed"; return 1; }
  local ok=0 notes="" table="| model | B x T | f32 CPU vs bf16 GPU | fast paths (GPU) |
| --- | --- | --- | --- |"
  for spec in "tiny 8 256" "gpt2 4 256"; do
    set -- $spec
    local model=$1 B=$2 T=$3 dir="$work/train/$1"
    mkdir -p "$dir" && rm -rf "$dir/init"
    logged "train_${model}_init" "$build/tessera-train" --model "$model" --steps 0 --export "$dir/init" --device cpu \
      --precision f32 --data "${corpus}_train.bin" --batch-size 1 --seq-len 8 --sample-tokens 0 --threads 1 \
      || { notes="$notes $model: export failed;"; ok=1; continue; }
    logged "train_${model}_cpu" "$build/tessera-train" --init-from "$dir/init" --device cpu --precision f32 \
      --batch-size "$B" --seq-len "$T" --threads "$cores" --log "$dir/cpu.jsonl" "${train_common[@]}" \
      || { notes="$notes $model: CPU run failed;"; ok=1; continue; }
    if [ "$have_gpu" = 0 ]; then
      notes="$notes $model: f32 CPU reference trained ($(grep -c '"train"' "$dir/cpu.jsonl") steps), bf16 GPU run needs a GPU;"
      table="$table
| $model | $B x $T | CPU reference only: $no_gpu_reason | |"
      continue
    fi
    TESSERA_REPORT_FAST_PATHS=1 logged "train_${model}_gpu" "$build/tessera-train" --init-from "$dir/init" --device cuda \
      --precision bf16 --batch-size "$B" --seq-len "$T" --log "$dir/gpu.jsonl" "${train_common[@]}" \
      || { notes="$notes $model: GPU run failed;"; ok=1; continue; }
    local cmp paths
    cmp=$(compare_losses "$dir/gpu.jsonl" "$dir/cpu.jsonl" 0.02) || ok=1
    paths=$(fast_paths_ok "$logs/train_${model}_gpu.log") || ok=1
    table="$table
| $model | $B x $T | $cmp | $paths |"
    notes="$notes $model: ${cmp##*, };"
  done
  section "### Training: bf16 GPU against f32 CPU (20 steps, one initialisation and batch sequence)

$table"
  DETAIL="${notes# }"
  [ "$have_gpu" = 0 ] && [ $ok -eq 0 ] && return 2
  return $ok
}

# ---------------------------------------------------------------------------------------------
# 5. NCCL on as many ranks as GPUs; layouts of two ranks on one GPU through the MPI backend.

step_multi_rank() {
  if [ "$have_gpu" = 0 ]; then DETAIL="$no_gpu_reason"; return 2; fi
  local ok=0 notes=""
  TESSERA_REQUIRE_GPU=1 TESSERA_REQUIRE_NCCL=1 logged nccl_collectives mpirun --oversubscribe --bind-to none \
    -np "$gpu_count" -x TESSERA_REQUIRE_GPU -x TESSERA_REQUIRE_NCCL "$build/tests/tessera_parallel_tests" "[collectives]" \
    && notes="NCCL collectives on $gpu_count rank(s) passed;" || { notes="NCCL collectives failed;"; ok=1; }
  logged nccl_bench mpirun --oversubscribe --bind-to none -np "$gpu_count" "$build/tessera-bench-collectives" \
    --device cuda -b 8 -e 64M -f 4 -n 5 -w 2 || { notes="$notes collective benchmark found wrong data;"; ok=1; }
  TESSERA_REQUIRE_GPU=1 logged dist_optim_gpu mpirun --oversubscribe --bind-to none -np 2 -x TESSERA_REQUIRE_GPU \
    -x CUDA_VISIBLE_DEVICES=0 "$build/tests/tessera_parallel_tests" "[dist-optim]" || { notes="$notes distributed optimizer on one GPU failed;"; ok=1; }
  local dir="$work/train/tiny" reference="$work/train/tiny/gpu.jsonl"
  for layout in "tp:--tp 2:8" "dp:--dp 2:4" "pp:--pp 2 --microbatches 2:4"; do
    IFS=: read -r name flags B <<< "$layout"
    # shellcheck disable=SC2086
    CUDA_VISIBLE_DEVICES=0 logged "layout_$name" mpirun --oversubscribe --bind-to none -np 2 -x CUDA_VISIBLE_DEVICES \
      "$build/tessera-train" --init-from "$dir/init" --device cuda --precision bf16 --batch-size "$B" --seq-len 256 \
      $flags --log "$dir/$name.jsonl" "${train_common[@]}" || { notes="$notes $name failed;"; ok=1; continue; }
    grep -q "backend mpi" "$logs/layout_$name.log" || { notes="$notes $name did not use the MPI backend;"; ok=1; }
    local cmp; cmp=$(compare_losses "$dir/$name.jsonl" "$reference" 0.02) || ok=1
    notes="$notes $name x2 on one GPU: ${cmp##*, };"
  done
  DETAIL="$notes"
  return $ok
}

# ---------------------------------------------------------------------------------------------
# 6. The peer benchmark: GPT-2 124M, T=1024, bf16, B=64 or the largest B that all peers fit.

step_benchmark() {
  if [ "$have_gpu" = 0 ]; then DETAIL="$no_gpu_reason"; return 2; fi
  local B rc=1
  for B in 64 32 16 8; do
    logged "peers_B$B" python3 "$repo/benchmarks/compare_peers.py" --build "$build" --device cuda --model gpt2 \
      --batch-size "$B" --seq-len 1024 --work "$work/peers" --json "$work/peers.json" --python python3 \
      --data "${corpus}_train.bin" ${llmc:+--llmc "$llmc"}
    rc=$?
    [ $rc -eq 0 ] && break
    grep -qi "out of memory" "$logs/peers_B$B.log" || break  # only a lack of memory is worth a smaller batch
  done
  if [ $rc -ne 0 ]; then DETAIL="the peer benchmark failed (logs/peers_B$B.log)"; return 1; fi
  section "### Peer benchmark (benchmarks/compare_peers.py, GPT-2 124M, B=$B, T=1024, bf16)

$(sed -n '/^model:/,$p' "$logs/peers_B$B.log")"
  DETAIL="B=$B: $(grep -E '^\| tessera ' "$logs/peers_B$B.log" | awk -F'|' '{print $4 " tokens/s, " $7 " MFU"}')"
  return 0
}

# ---------------------------------------------------------------------------------------------
# 6b. The card's own rates for the planner: tessera-calibrate --card on every GPU of the node
#     (collectives when there are several), kept as card.json beside the summary; tessera-plan
#     must take the file and say which constants it changed.

step_calibrate() {
  if [ "$have_gpu" = 0 ]; then DETAIL="$no_gpu_reason"; return 2; fi
  logged card_calibration mpirun --oversubscribe --bind-to none -np "$gpu_count" \
    "$build/tessera-calibrate" --card --device cuda --out "$results/card.json" \
    || { DETAIL="tessera-calibrate --card failed (logs/card_calibration.log)"; return 1; }
  logged card_plan "$build/tessera-plan" --model llama3-70b --gpus 1024 --cluster h100 \
    --card-calibration "$results/card.json" \
    || { DETAIL="tessera-plan refused card.json (logs/card_plan.log)"; return 1; }
  section "### Card calibration (card.json, for tessera-plan --card-calibration)

\`\`\`
$(cat "$logs/card_plan.log")
\`\`\`"
  DETAIL="card.json written from $gpu_count GPU(s); tessera-plan takes it"
  return 0
}

# ---------------------------------------------------------------------------------------------
# Run the steps in order; the summary's table has one row each.

STEPS=("setup:1. Setup and build" "cuda_tests:2. CUDA tests (TESSERA_REQUIRE_GPU=1)" "sanitizer:3. compute-sanitizer"
       "training:4. bf16 GPU vs f32 CPU training" "multi_rank:5. NCCL and multi-rank layouts" "benchmark:6. Peer benchmark"
       "calibrate:6b. Card calibration for the planner")
# The order they run in: the slow sanitizer last, so that a spent budget costs the least.
ORDER=(setup cuda_tests training multi_rank benchmark calibrate sanitizer)
declare -A ROW=()
if [[ "$skip" == *",setup,"* ]] && [ -f "$work/deps/env.sh" ]; then source "$work/deps/env.sh"; fi  # an earlier bundle
failed=0 not_run=0 stopped_at=""
title_of() { local e; for e in "${STEPS[@]}"; do [ "${e%%:*}" = "$1" ] && echo "${e#*:}"; done; }
for name in "${ORDER[@]}"; do
  title="$(title_of "$name")"
  if [[ "$skip" == *",$name,"* ]]; then
    ROW[$name]="| $title | not run | | skipped (--skip) |"; not_run=$((not_run + 1)); continue
  fi
  # The budget is for GPU minutes: without a GPU every step runs (those needing one stop at once).
  if [ "$have_gpu" = 1 ] && [ "$(elapsed)" -gt "$budget" ]; then
    ROW[$name]="| $title | not run | | the time budget ($budget s) was spent |"; not_run=$((not_run + 1)); continue
  fi
  if [ "$name" != setup ] && [ ! -x "$build/tessera-train" ]; then
    ROW[$name]="| $title | not run | | nothing was built |"; not_run=$((not_run + 1)); continue
  fi
  say "--- $title"
  t=$(date +%s); DETAIL=""
  "step_$name"; rc=$?
  secs=$(( $(date +%s) - t ))
  case $rc in
    0) status="passed" ;;
    2) status="not run"; not_run=$((not_run + 1)) ;;
    *) status="**FAILED**"; failed=$((failed + 1)) ;;
  esac
  say "$title: $status (${secs} s) $DETAIL"
  ROW[$name]="| $title | $status | $secs s | $DETAIL |"
done
for entry in "${STEPS[@]}"; do
  ROWS+=("${ROW[${entry%%:*}]}")
  if [ -z "$stopped_at" ] && [[ "${ROW[${entry%%:*}]}" == *"| not run |"* ]] && [[ "${ROW[${entry%%:*}]}" != *"(--skip)"* ]]; then
    stopped_at="${entry#*:}"
  fi
done

# ---------------------------------------------------------------------------------------------
# 7. The summary and the logs.

total=$(elapsed)
if [ $failed -gt 0 ]; then verdict="FAILED: $failed step(s) failed"
elif [ "$have_gpu" = 0 ]; then verdict="DRY RUN: stopped at \"$stopped_at\" for want of a GPU ($no_gpu_reason); everything before it passed"
elif [ $not_run -gt 0 ]; then verdict="INCOMPLETE: $not_run step(s) not run"
else verdict="PASSED"; fi
{
  echo "## GPU check: $(date -u +%F) at commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)"
  echo
  echo "Machine: ${gpu_names:-no GPU}, driver ${driver:-none}, CUDA ${cuda_version:-?}, $cores cores ($(uname -n)). Command:"
  echo "\`$command_line\`. Total $total s."
  echo
  echo "**$verdict**"
  echo
  echo "| step | result | time | detail |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${ROWS[@]}"
  for s in "${SECTIONS[@]}"; do echo; echo "$s"; done
} > "$results/summary.md"
cp "$results/summary.md" "$logs/summary.md"
tar -czf "$results/logs.tar.gz" -C "$work" logs
[ -f "$work/peers.json" ] && cp "$work/peers.json" "$results/peers.json"
say "$verdict ($total s). Summary: $results/summary.md; logs: $results/logs.tar.gz"
if [ $failed -gt 0 ]; then exit 1; fi
if [ "$have_gpu" = 0 ]; then exit $([ "$dry_run" = 1 ] && echo 0 || echo 1); fi
[ $not_run -eq 0 ]
