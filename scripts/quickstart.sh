#!/usr/bin/env bash
# The main job: installs what is needed, builds dsrt, creates the default model with dsgen
# if it is missing, and streams an answer to a prompt.
# Usage: scripts/quickstart.sh [PROMPT]
# Environment: DSRT_BUILD_DIR (default build/), DSRT_MODEL_DIR (default models/default).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="${DSRT_BUILD_DIR:-$here/build}"
model="${DSRT_MODEL_DIR:-$here/models/default}"
prompt="${1:-The quickest way to serve a language model is}"

bash "$here/scripts/setup.sh"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j "$(nproc)" --target dsgen dsrun dsnode

if [ ! -f "$model/config.json" ]; then
  # bench-125m's shape with the real DeepSeek-V3 tokenizer (vocabulary sized to match), so
  # every generated id decodes to text.
  "$build/apps/dsgen/dsgen" --preset bench-125m --tokenizer deepseek-v3 --seed 0 --out "$model"
fi
# The default model has random weights: the text is noise, the work is real.
# Served by a local cluster of two dsnode processes — a head (router) and a worker (two
# batcher + shard replicas under its supervisor) — over UCX, through the embedded client;
# dsrun stops both nodes when the answer is in.
"$build/apps/dsrun/dsrun" --nodes 2 --replicas 2 --model "$model" --port "${DSRT_PORT:-7400}" \
  --prompt "$prompt" --max-tokens 64
