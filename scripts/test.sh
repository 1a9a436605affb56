#!/usr/bin/env bash
# Builds dsrt and runs every test. Installs what it needs first (scripts/setup.sh).
# Usage: scripts/test.sh [extra ctest args]     Build dir: $DSRT_BUILD_DIR (default build/)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="${DSRT_BUILD_DIR:-$here/build}"

bash "$here/scripts/setup.sh"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSRT_WERROR=ON
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"
# A short fuzz of the transport's decoders (clang, ASan, UBSan; longer runs: scripts/fuzz.sh 600).
DSRT_FUZZ_JOBS="$(nproc)" bash "$here/scripts/fuzz.sh" "${DSRT_FUZZ_SECONDS:-15}"
