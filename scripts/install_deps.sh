#!/usr/bin/env bash
# Installs what tessera needs to build on Debian 12 (run as root): compilers, CMake, Ninja, Open MPI,
# fmt, Catch2, OpenBLAS; and, when the CUDA toolkit is present, cuDNN's frontend headers from the
# PyPI wheel nvidia-cudnn-frontend (unpacked into .deps/, nothing installed system-wide).
set -euo pipefail
cd "$(dirname "$0")/.."

# BLAS: OpenBLAS's pthread flavour (Debian's default for libopenblas-dev), named here so the choice
# is explicit. tessera runs it single-threaded on each of its own OpenMP threads (one thread pool;
# src/kernels/cpu/gemm.h), where the pthread build is safe to call concurrently. Measured on the
# model's GEMMs (benchmarks/RESULTS.md): OpenBLAS's own threads, pthread or OpenMP flavour, were
# 1.5-8x slower than that on 2 cores (its pool spinning against OpenMP's), and serial BLIS 10-30%
# slower than OpenBLAS per call.
packages=(build-essential cmake ninja-build pkg-config python3 python3-pip
          libopenmpi-dev openmpi-bin libfmt-dev catch2 libopenblas-pthread-dev)
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
    rm -rf .deps/wheels && mkdir -p .deps/wheels .deps/cudnn-frontend
    python3 -m pip download -q --no-deps --only-binary=:all: -d .deps/wheels nvidia-cudnn-frontend
    python3 - <<'PY'
import glob, zipfile
wheel = glob.glob(".deps/wheels/nvidia_cudnn_frontend-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("include/"):
            z.extract(name, ".deps/cudnn-frontend")
PY
  fi
fi
