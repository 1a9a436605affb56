#!/usr/bin/env bash
# The DeepSeek MoE benchmark of docs/PERFORMANCE.md: dsbench engine on bench-125m,
# bench-dsv3-1b and bench-dsv3-1b --fp8 (through the fp8 dot path, and through bf16 tiles
# with DSRT_CPU_FP8=tiles as its peer), interleaved ROUNDS times so the machine's memory
# bandwidth (which swings here) is shared by the three, and the ratios the DeepSeek issue
# sets: decode weight GB/s (routed experts only) of each DeepSeek model over bench-125m's in
# the same round at batch 1, and batch-32 over batch-1 tokens/s.
#
#   bash scripts/bench_moe.sh [BUILD_DIR] [ROUNDS]
# Models are generated into models/ when missing (about a minute, 3.3 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-3}
dsgen=$build/apps/dsgen/dsgen
dsbench=$build/apps/dsbench/dsbench
out=${BENCH_OUT:-/tmp/dsrt-bench-moe}
mkdir -p "$out"

[ -d models/bench-125m ] || "$dsgen" --preset bench-125m --seed 0 --out models/bench-125m
[ -d models/bench-dsv3-1b ] || "$dsgen" --preset bench-dsv3-1b --seed 0 --out models/bench-dsv3-1b
[ -d models/bench-dsv3-1b-fp8 ] ||
  "$dsgen" --preset bench-dsv3-1b --seed 0 --fp8 --out models/bench-dsv3-1b-fp8

for round in $(seq 1 "$rounds"); do
  for run in bench-125m bench-dsv3-1b bench-dsv3-1b-fp8 bench-dsv3-1b-fp8-tiles; do
    model=${run%-tiles}
    fp8=dot
    [ "$run" = "$model" ] || fp8=tiles
    DSRT_CPU_FP8=$fp8 "$dsbench" engine --model "models/$model" --batch 1,32 --prompt-len 128 \
      --gen 64 --bw-buffer-mb 512 --json "$out/$run-$round.json" > "$out/$run-$round.txt"
  done
done

# Summarise with node (scripts/setup.sh installs it).
node - "$out" "$rounds" <<'JS'
const fs = require('fs');
const [dir, rounds] = [process.argv[2], Number(process.argv[3])];
const get = (model, round) => JSON.parse(fs.readFileSync(`${dir}/${model}-${round}.json`));
const at = (j, batch) => j.results.find((r) => r.batch === batch);
console.log('round model                    b1 tok/s  b1 weight GB/s  vs 125m  b32 tok/s  b32/b1  mem GB/s');
for (let round = 1; round <= rounds; ++round) {
  const base = at(get('bench-125m', round), 1).weight_read_gbps;
  for (const model of ['bench-125m', 'bench-dsv3-1b', 'bench-dsv3-1b-fp8', 'bench-dsv3-1b-fp8-tiles']) {
    const j = get(model, round);
    const [b1, b32] = [at(j, 1), at(j, 32)];
    console.log(`${String(round).padEnd(5)} ${model.padEnd(24)} ${b1.decode_tokens_per_s.toFixed(1).padStart(8)}` +
      ` ${b1.weight_read_gbps.toFixed(1).padStart(15)} ${(b1.weight_read_gbps / base).toFixed(2).padStart(8)}` +
      ` ${b32.decode_tokens_per_s.toFixed(1).padStart(10)} ${(b32.decode_tokens_per_s / b1.decode_tokens_per_s).toFixed(1).padStart(7)}` +
      ` ${b1.mem_bw_gbps.toFixed(1).padStart(9)}`);
  }
}
JS
