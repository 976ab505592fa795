#!/usr/bin/env bash
# The demo with failures: the tiny GPT of scripts/demo.sh (two ranks, tp = 2; 200 steps of 8
# sequences, a few minutes on 2 CPU cores) under tessera-launch, with a rank killed at step 70 and,
# in the relaunched job, a rank hung at step 150 (no --timeout: the watchdogs' deadlines are
# learned); durable checkpoints every 50 steps, the local tier every 10.
# Then tessera-diagnose says what happened and tessera-plot draws the run, into out/failures-demo/.
# Extra arguments go to tessera-train (e.g. --steps 300).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh tessera-train tessera-prepare-data tessera-launch
if [ ! -f data/shakespeare_train.bin ] || [ data/tinyshakespeare.txt -nt data/shakespeare_train.bin ]; then
  ./build/tessera-prepare-data --out data/shakespeare data/tinyshakespeare.txt
fi
out=out/failures-demo
rm -rf "$out"
mkdir -p "$out"
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
./build/tessera-launch --max-restarts 3 --restart-delay 0 --checkpoint-dir "$out/ckpt" --log "$out/launch.jsonl" -- \
  mpirun --oversubscribe --bind-to none -np 2 ./build/tessera-train --tp 2 \
    --model tiny --data data/shakespeare_train.bin --batch-size 8 --seq-len 128 --steps 200 --lr 2e-3 --min-lr 2e-4 \
    --warmup 40 --eval-every 50 --sample-tokens 0 --checkpoint-dir "$out/ckpt" --checkpoint-every 50 \
    --local-checkpoint-dir "$out/local" --local-checkpoint-every 10 \
    --fault kill:rank=1:step=70:attempt=0,hang:rank=0:step=150:attempt=1 --log "$out/train.jsonl" "$@"
python3 ./build/tessera-diagnose "$out/ckpt" --log "$out/train.jsonl" --launch-log "$out/launch.jsonl"
"${TESSERA_HF_PYTHON:-python3}" ./build/tessera-plot "$out/train.jsonl" --out "$out/plots" ||
  echo "tessera-plot needs matplotlib (pip install matplotlib); the logs are in $out"
