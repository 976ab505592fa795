#!/usr/bin/env bash
# The demo: installs what is missing, builds, tokenizes the bundled corpus and trains the tiny
# GPT on it (on the GPU when there is one, else on the CPU), then samples some text.
# Extra arguments go to tessera-train (e.g. --steps 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh
if [ ! -f data/shakespeare_train.bin ] || [ data/tinyshakespeare.txt -nt data/shakespeare_train.bin ]; then
  ./build/tessera-prepare-data --out data/shakespeare data/tinyshakespeare.txt
fi
mkdir -p out
exec ./build/tessera-train --model tiny --data data/shakespeare_train.bin --batch-size 8 --seq-len 128 \
  --steps 300 --lr 1e-3 --warmup 20 --eval-every 100 --log out/demo.jsonl "$@"
