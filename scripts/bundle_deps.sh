#!/usr/bin/env bash
# Downloads everything a GPU node without network lacks to build, test and train tessera into one
# folder (run on a Debian or Ubuntu machine with package access, of the node's architecture):
#   - the Debian packages marked "bundle" in scripts/deps/debian-packages.txt (Open MPI with its
#     runtime libraries, fmt, Catch2, OpenBLAS), as .deb files;
#   - cuDNN's frontend headers (the PyPI wheel nvidia-cudnn-frontend);
#   - MANIFEST.txt: what each file is, its version and SHA-256, and where it was downloaded.
# Carry the folder to the node and run scripts/install_offline.sh DIR PREFIX there.
#   usage: scripts/bundle_deps.sh DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
limit_mib=64
dir="${1:?usage: scripts/bundle_deps.sh DIR}"
command -v apt-get >/dev/null || { echo "bundle_deps: needs apt-get (Debian or Ubuntu)" >&2; exit 1; }
mkdir -p "$dir/debs"
dir="$(cd "$dir" && pwd)"
rm -f "$dir"/debs/*.deb

mapfile -t packages < <(awk '!/^#/ && NF && / bundle( |$)/ {print $1}' "$here/deps/debian-packages.txt")
arch="$(dpkg --print-architecture)"
echo "bundle_deps: downloading ${#packages[@]} Debian packages ($arch) into $dir/debs"
# apt-get download writes into the current folder; as root it warns that it runs unsandboxed.
(cd "$dir/debs" && apt-get download -q "${packages[@]}" 2>&1 | grep -v "unsandboxed" || true)
for p in "${packages[@]}"; do
  compgen -G "$dir/debs/${p}_*.deb" >/dev/null || { echo "bundle_deps: $p was not downloaded" >&2; exit 1; }
done

echo "bundle_deps: fetching cuDNN's frontend headers"
bash "$here/deps/fetch_cudnn_frontend.sh" "$dir/cudnn-frontend"

{
  echo "# tessera offline bundle: scripts/install_offline.sh $dir PREFIX"
  echo "made: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME") ($arch)"
  echo "architecture: $arch"
  frontend=$(grep -E '#define CUDNN_FRONTEND_(MAJOR|MINOR|PATCH)_VERSION' "$dir/cudnn-frontend/include/cudnn_frontend_version.h" \
             | awk '{print $3}' | paste -sd.)
  echo "cudnn-frontend: $frontend (headers in cudnn-frontend/include)"
  echo "# sha256 file package version"
  for deb in "$dir"/debs/*.deb; do
    echo "$(sha256sum "$deb" | cut -d' ' -f1) debs/$(basename "$deb") $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)"
  done
} > "$dir/MANIFEST.txt"

size_kib=$(du -sk "$dir" | cut -f1)
echo "bundle_deps: $dir holds $(( size_kib / 1024 )) MiB ($size_kib KiB): ${#packages[@]} packages and the cuDNN frontend headers"
if [ "$size_kib" -gt $(( limit_mib * 1024 )) ]; then
  echo "bundle_deps: the bundle is larger than $limit_mib MiB" >&2
  exit 1
fi
echo "bundle_deps: on the node: bash scripts/install_offline.sh $dir PREFIX"
