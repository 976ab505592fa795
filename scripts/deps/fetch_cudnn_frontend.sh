#!/usr/bin/env bash
# Unpacks cuDNN's frontend headers (header-only C++) from the PyPI wheel nvidia-cudnn-frontend into
# DEST/include. Used by scripts/install_deps.sh (DEST = .deps/cudnn-frontend) and by
# scripts/bundle_deps.sh (DEST inside the offline bundle). Needs pip and the network.
#   usage: scripts/deps/fetch_cudnn_frontend.sh DEST
set -euo pipefail
dest="${1:?usage: fetch_cudnn_frontend.sh DEST}"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: -d "$wheels" nvidia-cudnn-frontend
rm -rf "$dest/include"
mkdir -p "$dest"
python3 - "$wheels" "$dest" <<'PY'
import glob, sys, zipfile
wheels, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(f"{wheels}/nvidia_cudnn_frontend-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("include/"):
            z.extract(name, dest)
print(f"cudnn frontend: {wheel.split('/')[-1]} -> {dest}/include")
PY
