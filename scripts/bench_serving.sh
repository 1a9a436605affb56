#!/usr/bin/env bash
# The serving-runtime benchmark of docs/PERFORMANCE.md, interleaved ROUNDS times:
#  1. runtime overhead per decode step: dsbench load --null-backend (no model math; one
#     replica, batch = concurrency 1, 32, 256) — wall time per step is the runtime's own cost —
#     as a fraction of a real bench-125m decode step at batch 32 (dsbench engine, same round);
#  2. dsbench load --inproc on bench-125m at concurrency 32 against dsbench engine's batch-32
#     decode tokens/s in the same round.
#
#   bash scripts/bench_serving.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-3}
dsgen=$build/apps/dsgen/dsgen
dsbench=$build/apps/dsbench/dsbench
out=${BENCH_OUT:-/tmp/dsrt-bench-serving}
mkdir -p "$out"
model=models/bench-125m
[ -d "$model" ] || "$dsgen" --preset bench-125m --seed 0 --out "$model"

for round in $(seq 1 "$rounds"); do
  "$dsbench" engine --model "$model" --batch 32 --prompt-len 32 --gen 128 \
    --json "$out/engine-$round.json" > "$out/engine-$round.txt"
  for batch in 1 32 256; do
    "$dsbench" load --inproc --null-backend --ignore-eos --model "$model" --replicas 1 \
      --requests $((batch * 4)) --concurrency "$batch" --prompt-len 8 --gen 256 \
      --json "$out/null-$batch-$round.json" > "$out/null-$batch-$round.txt"
  done
  "$dsbench" load --inproc --ignore-eos --model "$model" --replicas 1 --requests 64 \
    --concurrency 32 --prompt-len 32 --gen 128 --json "$out/load-$round.json" > "$out/load-$round.txt"
done

node - "$out" "$rounds" <<'JS'
const fs = require('fs');
const [dir, rounds] = [process.argv[2], Number(process.argv[3])];
const get = (name) => JSON.parse(fs.readFileSync(`${dir}/${name}.json`));
console.log('round  engine b32 step ms  null b1/b32/b256 us per step  overhead vs b32 step  ' +
            'load b32 tok/s  engine b32 tok/s  load/engine');
for (let round = 1; round <= rounds; ++round) {
  const engine = get(`engine-${round}`).results.find((r) => r.batch === 32);
  const nulls = [1, 32, 256].map((b) => get(`null-${b}-${round}`).us_per_step);
  const overhead = nulls.map((us) => (us / 1000 / engine.step_ms * 100).toFixed(2) + '%').join(' / ');
  const load = get(`load-${round}`);
  console.log(`${String(round).padEnd(6)} ${engine.step_ms.toFixed(2).padStart(18)}  ` +
    `${nulls.map((x) => x.toFixed(1)).join(' / ').padStart(28)}  ${overhead.padStart(22)}  ` +
    `${load.tokens_per_s.toFixed(1).padStart(14)}  ${engine.decode_tokens_per_s.toFixed(1).padStart(16)}  ` +
    `${(load.tokens_per_s / engine.decode_tokens_per_s).toFixed(2).padStart(11)}`);
}
JS
