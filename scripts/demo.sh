#!/usr/bin/env bash
# The demo: installs what is missing, builds, tokenizes the bundled corpus and trains the tiny GPT
# on it with two ranks under mpirun (tensor parallelism, tp = 2) — on the GPU when there is one,
# else on the CPU — then samples some text. Extra arguments go to tessera-train
# (e.g. --steps 2000, or --tp 1 --dp 2 for data parallelism).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh tessera-train tessera-prepare-data
if [ ! -f data/shakespeare_train.bin ] || [ data/tinyshakespeare.txt -nt data/shakespeare_train.bin ]; then
  ./build/tessera-prepare-data --out data/shakespeare data/tinyshakespeare.txt
fi
mkdir -p out
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
exec mpirun --oversubscribe --bind-to none -np "${TESSERA_RANKS:-2}" ./build/tessera-train --tp 2 \
  --model tiny --data data/shakespeare_train.bin --batch-size 16 --seq-len 128 --steps 600 --lr 2e-3 --min-lr 2e-4 \
  --warmup 40 --eval-every 200 --log out/demo.jsonl "$@"
