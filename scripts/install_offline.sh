#!/usr/bin/env bash
# Installs the offline bundle (scripts/bundle_deps.sh) into PREFIX on a node without network, with
# no change to the system: each .deb is unpacked with dpkg -x (no package database, no maintainer
# scripts), the links Debian's alternatives would make are made inside PREFIX, cuDNN's frontend
# headers go to PREFIX/usr/include, and PREFIX/env.sh sets what a build and a run need (Open MPI
# relocated through OPAL_PREFIX, the library path, CMake's prefix path). Prints that environment.
#   usage: scripts/install_offline.sh BUNDLE_DIR PREFIX
#   then:  source PREFIX/env.sh && cmake -S . -B build -G Ninja && cmake --build build
set -euo pipefail
bundle="${1:?usage: scripts/install_offline.sh BUNDLE_DIR PREFIX}"
prefix="${2:?usage: scripts/install_offline.sh BUNDLE_DIR PREFIX}"
[ -f "$bundle/MANIFEST.txt" ] || { echo "install_offline: $bundle has no MANIFEST.txt (made by scripts/bundle_deps.sh?)" >&2; exit 2; }
bundle="$(cd "$bundle" && pwd)"
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"

arch_bundle="$(awk '/^architecture:/ {print $2}' "$bundle/MANIFEST.txt")"
arch_here="$(dpkg --print-architecture 2>/dev/null || uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/')"
if [ "$arch_bundle" != "$arch_here" ]; then
  echo "install_offline: the bundle is for $arch_bundle, this machine is $arch_here" >&2
  exit 2
fi
triplet="$(case "$arch_here" in amd64) echo x86_64-linux-gnu ;; arm64) echo aarch64-linux-gnu ;; *) echo "$arch_here" ;; esac)"

# Every .deb as the manifest lists it (a copy damaged on the way is caught here), then unpacked.
count=0
while read -r sum file package version; do
  [ -f "$bundle/$file" ] || { echo "install_offline: $bundle/$file is missing" >&2; exit 2; }
  if [ "$(sha256sum "$bundle/$file" | cut -d' ' -f1)" != "$sum" ]; then
    echo "install_offline: $bundle/$file does not match its SHA-256 in MANIFEST.txt (damaged copy?)" >&2
    exit 2
  fi
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$bundle/$file" "$prefix"
  else  # no dpkg: a .deb is an ar archive holding data.tar.*
    tmp="$(mktemp -d)"
    (cd "$tmp" && ar x "$bundle/$file" && tar -xf data.tar.* -C "$prefix")
    rm -rf "$tmp"
  fi
  count=$((count + 1))
done < <(grep -E '^[0-9a-f]{64} ' "$bundle/MANIFEST.txt")
echo "install_offline: unpacked $count packages into $prefix"

# What Debian's alternatives system would link (dpkg -x runs no maintainer scripts).
lib="$prefix/usr/lib/$triplet"
link() {  # link TARGET NAME: NAME -> TARGET when TARGET exists
  if [ -e "$(dirname "$2")/$1" ] || [ -e "$1" ]; then ln -sfn "$1" "$2"; fi
}
for tool in mpirun mpiexec mpicc mpicxx mpic++ mpiCC; do link "$tool.openmpi" "$prefix/usr/bin/$tool"; done
for so in libopenblas.so libopenblas.so.0 libblas.so libblas.so.3 liblapack.so liblapack.so.3; do
  link "openblas-pthread/$so" "$lib/$so"
done
mkdir -p "$prefix/usr/include/$triplet"
for h in cblas.h f77blas.h openblas_config.h; do link "openblas-pthread/$h" "$prefix/usr/include/$triplet/$h"; done
link "$lib/openmpi/include" "$prefix/usr/include/$triplet/mpi"

# cuDNN's frontend headers (header-only).
cp -r "$bundle/cudnn-frontend/include/." "$prefix/usr/include/"

cat > "$prefix/env.sh" <<ENV
# tessera's offline dependencies in $prefix (scripts/install_offline.sh): source this file before
# building or running tessera.
export TESSERA_DEPS_PREFIX="$prefix"
# Open MPI, relocated: its prefix, its configuration file and its fabric providers.
export OPAL_PREFIX="$prefix/usr"
export OMPI_MCA_mca_base_param_files="$prefix/etc/openmpi/openmpi-mca-params.conf"
export FI_PROVIDER_PATH="$lib/libfabric"
export PMIX_MCA_mca_base_component_path="$lib/pmix2/lib/pmix"
export PATH="$prefix/usr/bin\${PATH:+:\$PATH}"
export LD_LIBRARY_PATH="$lib:$lib/openmpi/lib:$lib/openblas-pthread\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export CMAKE_PREFIX_PATH="$prefix/usr\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
ENV
echo "install_offline: done. The environment (in $prefix/env.sh):"
sed -n '/^export/p' "$prefix/env.sh"
echo "install_offline: source $prefix/env.sh, then build: cmake -S . -B build -G Ninja && cmake --build build"
