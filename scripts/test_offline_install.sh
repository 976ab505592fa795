#!/usr/bin/env bash
# Proves the offline path end to end on this machine (root, Linux): downloads the bundle
# (scripts/bundle_deps.sh), then, in a mount and network namespace with no network (unshare -m -n)
# where every file of the bundled Debian packages installed on this system is hidden (an overlay
# of whiteouts over /usr and /etc), and so are the CUDA toolkit's cuDNN and NCCL when a Python with
# the nvidia-cudnn-cu13 and nvidia-nccl-cu13 wheels is given (as on a PyTorch GPU node):
# installs the bundle (scripts/install_offline.sh), configures and builds tessera with CUDA, and
# runs it (two ranks under the bundle's mpirun, the collectives, a kernel test).
# What stays visible: the compilers, CMake, Ninja, Python, the C/C++ runtime (libc6, libstdc++6,
# libgcc-s1, zlib1g, ...), the CUDA toolkit (nvcc, cudart, cuBLAS) and the Python given.
#   usage: scripts/test_offline_install.sh [WORK_DIR] [PYTHON_WITH_NVIDIA_WHEELS]
#   (TESSERA_CUDA=OFF in the environment builds without CUDA: quicker, for trying the script out)
# Writes WORK_DIR/summary.txt (bundle size, times, where each dependency came from).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$repo/out/offline}"
python="${2:-${TESSERA_HF_PYTHON:-python3}}"
[ "$(id -u)" = 0 ] || { echo "test_offline_install: needs root (unshare -m -n, overlay mounts)" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work"
work="$(cd "$work" && pwd)"
t0=$(date +%s)

# 1. The bundle, with network; and the source as a node gets it: the working tree without what git
#    ignores (no .deps/, no build folders).
bash "$repo/scripts/bundle_deps.sh" "$work/bundle" | tail -2
mkdir -p "$work/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$work/src"
bundle_kib=$(du -sk "$work/bundle" | cut -f1)

# 2. Whiteouts for every file of the bundled packages installed here (paths through /lib, /bin
#    resolved to /usr), and for the toolkit's cuDNN and NCCL when the Python has the wheels.
hide="$work/hide"
mkdir -p "$hide/usr" "$hide/etc"
whiteout() {  # whiteout PATH: hide PATH (a file or link under /usr or /etc)
  local dir base
  dir="$(readlink -f "$(dirname "$1")")"
  base="$(basename "$1")"
  case "$dir" in /usr*|/etc*) ;; *) return ;; esac
  [ -e "$dir/$base" ] || [ -L "$dir/$base" ] || return 0
  [ -d "$dir/$base" ] && [ ! -L "$dir/$base" ] && return 0
  mkdir -p "$hide$dir"
  [ -e "$hide$dir/$base" ] || mknod "$hide$dir/$base" c 0 0
}
hidden_packages=0
for p in $(awk '!/^#/ && NF && / bundle( |$)/ {print $1}' "$repo/scripts/deps/debian-packages.txt"); do
  dpkg -s "$p" >/dev/null 2>&1 || continue
  hidden_packages=$((hidden_packages + 1))
  while read -r f; do whiteout "$f"; done < <(dpkg -L "$p")
done
wheels=$("$python" -c "import nvidia, os; print(' '.join(p for p in nvidia.__path__ if os.path.isdir(p + '/cudnn') and os.path.isdir(p + '/nccl')))" 2>/dev/null || true)
cuda_lib_note="the CUDA toolkit's cuDNN and NCCL stay visible (no Python with the nvidia wheels given)"
if [ -n "$wheels" ]; then
  for d in /usr/local/cuda/lib /usr/local/cuda/lib64 /usr/local/cuda/targets/*/lib /usr/local/cuda/include \
           /usr/local/cuda/targets/*/include /usr/lib/x86_64-linux-gnu /usr/include; do
    for f in "$d"/libcudnn* "$d"/libnccl* "$d"/cudnn*.h "$d"/nccl*.h; do
      [ -e "$f" ] || [ -L "$f" ] && whiteout "$f"
    done
  done
  cuda_lib_note="the CUDA toolkit's cuDNN and NCCL hidden: they must come from the wheels in $wheels"
fi
echo "test_offline_install: hiding $(find "$hide" -type c | wc -l) files of $hidden_packages installed packages; $cuda_lib_note"

# Where the libraries tessera links may come from: the prefix, the wheels, the toolkit.
allowed="$work/prefix|/usr/local/cuda"
for w in $wheels; do allowed="$allowed|$w"; done

# 3. Inside the namespace: no network, the system's copies hidden.
cat > "$work/inside.sh" <<INSIDE
set -euo pipefail
mount -t overlay overlay -o lowerdir=$hide/usr:/usr /usr
mount -t overlay overlay -o lowerdir=$hide/etc:/etc /etc
ip link set lo up 2>/dev/null || true  # loopback only: Open MPI's local launch talks over it
echo "--- isolation"
if python3 -c 'import socket; socket.create_connection(("deb.debian.org", 80), timeout=5)' 2>/dev/null; then
  echo "the network is reachable inside the namespace" >&2; exit 1
fi
echo "no network: deb.debian.org unreachable"
for gone in /usr/bin/mpirun /usr/include/fmt/core.h /usr/include/catch2/catch.hpp /usr/lib/x86_64-linux-gnu/libopenblas.so \\
            /usr/include/x86_64-linux-gnu/cblas.h /usr/lib/x86_64-linux-gnu/libmpi.so.40; do
  if [ -e "\$gone" ]; then echo "\$gone is still visible" >&2; exit 1; fi
done
echo "hidden: mpirun, fmt, Catch2, OpenBLAS, libmpi (and every other file of the bundled packages)"
echo "--- install"
t=\$(date +%s)
bash $work/src/scripts/install_offline.sh $work/bundle $work/prefix | tail -1
echo "install_s=\$((\$(date +%s) - t))" > $work/times.txt
source $work/prefix/env.sh
echo "--- configure"
t=\$(date +%s)
cmake -S $work/src -B $work/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTESSERA_CUDA=${TESSERA_CUDA:-ON} -DCMAKE_CUDA_ARCHITECTURES=90 \\
      -DTESSERA_PYTHON=$python ${TESSERA_CMAKE_ARGS:-} > $work/configure.log 2>&1 || { cat $work/configure.log; exit 1; }
grep "tessera:" $work/configure.log
expect_origin() {  # expect_origin WHAT PATTERN: the configure found WHAT where it should
  grep -Eq "\$2" $work/configure.log || { echo "\$1 did not come from where it should (\$2)" >&2; exit 1; }
}
if [ "\${TESSERA_CUDA:-ON}" = ON ]; then
  expect_origin "cuDNN's frontend" "cuDNN frontend .*from the prefix path"
  $([ -n "$wheels" ] && echo 'expect_origin cuDNN "cuDNN [0-9.]+: .*from the Python wheel"; expect_origin NCCL "NCCL [0-9.]+: .*from the Python wheel"')
fi
expect_origin fmt "fmt .*$work/prefix"
expect_origin MPI "MPI .*$work/prefix"
expect_origin OpenBLAS "BLAS $work/prefix"
echo "--- build"
cmake --build $work/build -j "\$(nproc)" > $work/build.log 2>&1 || { tail -50 $work/build.log; exit 1; }
echo "build_s=\$((\$(date +%s) - t))" >> $work/times.txt
tail -1 $work/build.log
echo "--- run"
ldd $work/build/libtessera.so | grep -E "mpi|openblas|fmt|cudnn|nccl|gfortran" | tee $work/ldd.txt
if grep -Ev "$allowed" $work/ldd.txt | grep -q .; then
  echo "a dependency resolved outside the prefix, the wheels and the toolkit" >&2; exit 1
fi
$work/build/tessera-prepare-data --out $work/corpus $work/src/data/tinyshakespeare.txt > /dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe --bind-to none -np 2 $work/build/tessera-train --device cpu --tp 2 --model tiny \\
  --data $work/corpus_train.bin --batch-size 4 --seq-len 64 --steps 3 --threads 1 --sample-tokens 0 --eval-batches 1 \\
  2>&1 | grep -E "backend|layout|step +3/3"
mpirun --oversubscribe --bind-to none -np 2 $work/build/tests/tessera_parallel_tests "[collectives]" 2>&1 | tail -1
$work/build/tests/tessera_tests "[zero-rows],[fast-paths]" | grep -E "passed|failed"
INSIDE
unshare -m -n --propagation private bash "$work/inside.sh" 2>&1 | tee "$work/inside.log"
status=${PIPESTATUS[0]}
total_s=$(( $(date +%s) - t0 ))
{
  echo "bundle: $(( bundle_kib / 1024 )) MiB ($bundle_kib KiB), $(grep -c '^[0-9a-f]\{64\} ' "$work/bundle/MANIFEST.txt") packages + cuDNN frontend headers"
  cat "$work/times.txt" 2>/dev/null || true
  echo "total_s=$total_s"
  echo "hidden: $(find "$hide" -type c | wc -l) files of $hidden_packages installed packages; $cuda_lib_note"
  grep "tessera:" "$work/configure.log" 2>/dev/null || true
  echo "exit: $status"
} > "$work/summary.txt"
cat "$work/summary.txt"
exit "$status"
