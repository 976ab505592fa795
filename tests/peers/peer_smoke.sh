#!/bin/sh
# Smoke run of the peer benchmark (benchmarks/compare_peers.py): tessera on two ranks (tp=2) against
# PyTorch eager and torch.compile on the same global batch. Passes when the table has a row for every
# peer and their first-step losses agree (same model, initialisation and data). Exit 77 (skipped)
# when the Python given cannot import torch.
#   usage: peer_smoke.sh PYTHON BUILD_DIR WORK_DIR MPIRUN
set -u
python="$1" build="$2" work="$3" mpirun="$4"
here="$(cd "$(dirname "$0")" && pwd)"
rm -rf "$work" && mkdir -p "$work"
python3 "$here/../../benchmarks/compare_peers.py" --python "$python" --build "$build" --work "$work" \
  --mpirun "$mpirun" --device cpu --model tiny --batch-size 4 --seq-len 64 --steps 2 --warmup-steps 1 --threads 2 \
  --ranks 2 --layout tp=2 --check-loss 1e-4 --json "$work/peers.json" >"$work/table.txt" 2>&1
rc=$?
cat "$work/table.txt"
[ $rc -eq 0 ] || exit $rc
for row in "tessera" "pytorch eager" "torch.compile"; do
  if ! grep -Eq "^\| $row \| [0-9.]+ \| [0-9,]+ \| [0-9.]+x \| [0-9,]+ MiB \| n/a \| n/a \|" "$work/table.txt"; then
    echo "FAIL: the table has no complete row for $row"
    exit 1
  fi
done
echo "PASS: one row per peer"
