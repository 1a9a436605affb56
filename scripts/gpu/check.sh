#!/usr/bin/env bash
# The GPU check, run ON the GPU machine from a bundle made by scripts/gpu/bundle.sh:
#   bash .gpu-bundle/check.sh            (results and logs under $OUT, else /tmp/gpu-check)
# 1. the CUDA tests: test_cuda_host, test_cuda_backend (every op against the CPU backend),
#    test_cuda_forward (tiny Llama, Qwen2 and DeepSeek-V3 forwards against the CPU);
# 2. dsbench engine on bench-1b at batch 1, 32, 128 and 256 (decode against the HBM roofline
#    from a device-to-device copy measured in the same run, prefill against the bf16 peak),
#    and at batch 1 and 32 again with DSRT_CUDA_GRAPHS=0;
# 3. transformers' generate on the same model at batch 1 and 32 (bench_transformers.py).
# Every step's output goes to $OUT/check.log (the device tool brings back at most 8 files:
# check.log, gpu.txt and the three JSON results); a failing step does not stop the later
# ones; the exit status is the number of failed steps.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
cublas=$(find /usr/local/cuda* /usr/lib /opt -name 'libcublasLt.so.13*' 2>/dev/null | head -1)
[ -n "$cublas" ] || cublas=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(nvidia.cublas.__path__[0], "lib", "libcublasLt.so.13"))' 2>/dev/null)
export LD_LIBRARY_PATH="$here/lib:$(dirname "${cublas:-/nonexistent}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DSRT_DSGEN="$here/bin/dsgen"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
failed=0
log="$out/check.log"
: > "$log"
step() {  # step NAME COMMAND...
  local name=$1; shift
  echo "== $name: $*" | tee -a "$log"
  local tmp; tmp=$(mktemp)
  if "$@" > "$tmp" 2>&1; then echo "   ok"; else echo "   FAILED (rc $?)"; failed=$((failed + 1)); fi
  cat "$tmp" >> "$log"
  tail -n 25 "$tmp"
  rm -f "$tmp"
}
step cuda_host "$here/bin/test_cuda_host"
step cuda_backend "$here/bin/test_cuda_backend"
step cuda_forward "$here/bin/test_cuda_forward"
model=/tmp/bench-1b
[ -f "$model/config.json" ] || step dsgen "$here/bin/dsgen" --preset bench-1b --seed 1 --out "$model"
step dsbench "$here/bin/dsbench" engine --model "$model" --device cuda:0 --batch 1,32,128,256 \
  --prompt-len 128 --gen 64 --kv-cache-mb 8192 --json "$out/dsbench.json"
# The same without step graphs, to see what they bring (and to tell a graph problem apart).
step dsbench_no_graphs env DSRT_CUDA_GRAPHS=0 "$here/bin/dsbench" engine --model "$model" --device cuda:0 \
  --batch 1,32 --prompt-len 128 --gen 64 --kv-cache-mb 8192 --json "$out/dsbench_no_graphs.json"
step transformers env PYTHONUNBUFFERED=1 python3 "$here/bench_transformers.py" --model "$model" \
  --batch 1,32 --prompt-len 128 --gen 64 --json "$out/transformers.json"
python3 - "$out" <<'PY' || true
import json, sys, os
out = sys.argv[1]
try:
    ours = {r["batch"]: r for r in json.load(open(os.path.join(out, "dsbench.json")))["results"]}
    peer = {r["batch"]: r for r in json.load(open(os.path.join(out, "transformers.json")))["results"]}
except (OSError, ValueError, KeyError) as e:
    sys.exit(f"no comparison: {e}")
for b in sorted(ours):
    line = (f"batch {b:4d}: dsrt {ours[b]['decode_tokens_per_s']:10.1f} tok/s = "
            f"{ours[b]['roofline_ratio']:.3f} of the roofline")
    if b in peer:
        line += f"; transformers {peer[b]['decode_tokens_per_s']:10.1f} tok/s; ratio {ours[b]['decode_tokens_per_s'] / peer[b]['decode_tokens_per_s']:.2f}x"
    print(line)
PY
echo "failed steps: $failed"
exit "$failed"
