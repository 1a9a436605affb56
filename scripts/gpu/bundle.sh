#!/usr/bin/env bash
# Packs what the GPU check needs into one folder that travels to a GPU machine whose image has
# the CUDA toolkit, PyTorch and transformers but none of our Debian libraries (see
# docs/PERFORMANCE.md, "CUDA backend"): the stripped binaries built here with CUDA, the shared
# libraries they load that such an image lacks, and the check script.
#
#   scripts/gpu/bundle.sh [BUNDLE_DIR]      (default .gpu-bundle, git-ignored)
#
# Needs a CUDA build in $DSRT_BUILD_DIR (default build/, DSRT_HAVE_CUDA on). cuBLASLt (0.5 GB)
# does not travel: check.sh finds the GPU machine's own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
build=${DSRT_BUILD_DIR:-build}
out=${1:-.gpu-bundle}
grep -q "DSRT_HAVE_CUDA:INTERNAL=ON\|CMAKE_CUDA_COMPILER:" "$build/CMakeCache.txt" ||
  { echo "bundle.sh: $build is not a CUDA build" >&2; exit 2; }
targets=(dsgen dsbench dsrun test_cuda_host test_cuda_backend test_cuda_forward)
cmake --build "$build" --target "${targets[@]}"
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
for t in "${targets[@]}"; do
  bin=$(find "$build/apps" "$build/tests" -type f -name "$t" -perm -u+x | head -1)
  [ -n "$bin" ] || { echo "bundle.sh: $t not built" >&2; exit 1; }
  strip -o "$out/bin/$t" "$bin"
  # Every shared library but glibc's, the C++ runtime's and CUDA's own.
  ldd "$bin" | awk '/=> \// {print $3}' |
    grep -vE '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libstdc\+\+|libgcc_s|libcuda|libcublas[^/]*|libcudart[^/]*)\.so' |
    while read -r lib; do cp -Lu "$lib" "$out/lib/"; done
done
cp scripts/gpu/check.sh scripts/gpu/bench_transformers.py "$out/"
du -sh "$out"
