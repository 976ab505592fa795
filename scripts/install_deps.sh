#!/usr/bin/env bash
# Installs what tessera needs to build on Debian 12 (run as root): the packages marked "install" in
# scripts/deps/debian-packages.txt (compilers, CMake, Ninja, Open MPI, fmt, Catch2, OpenBLAS); and,
# when the CUDA toolkit is present, cuDNN's frontend headers from the PyPI wheel
# nvidia-cudnn-frontend (unpacked into .deps/, nothing installed system-wide).
# Without network, use the offline bundle instead: scripts/bundle_deps.sh, scripts/install_offline.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t packages < <(awk '!/^#/ && NF && / install( |$)/ {print $1}' scripts/deps/debian-packages.txt)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  if [ ! -f .deps/cudnn-frontend/include/cudnn_frontend.h ]; then
    echo "install_deps: fetching cuDNN frontend headers (PyPI nvidia-cudnn-frontend)"
    bash scripts/deps/fetch_cudnn_frontend.sh .deps/cudnn-frontend
  fi
fi
