#!/usr/bin/env bash
# Fuzzes transport/'s decoders: builds the libFuzzer targets of tests/fuzz with clang, ASan
# and UBSan in build-fuzz/ (only them and what they compile: dsrt_wire's sources, the
# generated schemas, runtime/error.cpp, kernels/assert.cpp), then runs each for SECONDS
# (default 30) on a scratch copy of its seed corpus. Exits non-zero when a target finds a crash, a sanitizer error, a leak or a
# timeout; the input that did it is left in build-fuzz/findings/<target>/.
#
#   scripts/fuzz.sh [SECONDS]        DSRT_FUZZ_JOBS=N for a parallel build (default 1)
set -euo pipefail

seconds=${1:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DSRT_FUZZ_BUILD_DIR:-$root/build-fuzz}
jobs=${DSRT_FUZZ_JOBS:-1}
targets=(fuzz_frame fuzz_wire)

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DDSRT_FUZZ=ON -DDSRT_BUILD_TESTS=OFF \
  -DDSRT_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]}" fuzz_seeds

failed=()
for target in "${targets[@]}"; do
  corpus=$build/corpus/$target
  findings=$build/findings/$target
  rm -rf "$corpus"
  mkdir -p "$corpus" "$findings"
  # The checked-in seeds plus freshly encoded ones (the schema may have moved on).
  if compgen -G "$root/tests/fuzz/corpus/$target/*" >/dev/null; then
    cp "$root/tests/fuzz/corpus/$target/"* "$corpus/"
  fi
  "$build/tests/fuzz/fuzz_seeds" "$corpus" >/dev/null
  echo "== $target: ${seconds}s on $(ls "$corpus" | wc -l) seeds"
  if ! "$build/tests/fuzz/$target" -max_len=65536 -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/" "$corpus"; then
    failed+=("$target")
  fi
done

if ((${#failed[@]})); then
  echo "fuzz.sh: findings in ${failed[*]} (inputs under $build/findings/)" >&2
  exit 1
fi
echo "fuzz.sh: no findings in ${targets[*]} after ${seconds}s each"
