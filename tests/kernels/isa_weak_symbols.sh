#!/usr/bin/env bash
# Inline functions and template instances that an ISA-flagged file (-mavx2, -mavx512*)
# emits are weak symbols: the linker keeps one copy for the whole program, and it may keep
# that file's. If such a copy held AVX instructions, generic code calling it would die with
# SIGILL on a CPU without them, which the run-time ISA choice (cpu_features.cpp) is there to
# prevent. This fails if any weak symbol defined in an ISA-flagged object uses a VEX/EVEX
# instruction or a mask register.
# Usage: isa_weak_symbols.sh OBJECT_DIR (build/kernels/CMakeFiles/dsrt_kernels.dir/cpu).
set -euo pipefail
dir="$1"
bad=0
checked=0
for f in isa_avx2 isa_avx512 isa_avx512bf16 fp8_dot; do
  obj="$dir/$f.cpp.o"
  if [ ! -f "$obj" ]; then
    echo "missing $obj (build dsrt_kernels first)"
    exit 1
  fi
  for sym in $(nm "$obj" | awk '$2 == "W" || $2 == "V" {print $3}'); do
    checked=$((checked + 1))
    n=$(objdump -d --no-show-raw-insn --disassemble="$sym" "$obj" |
        grep -cP '^\s*[0-9a-f]+:\s+v[a-z0-9]+\s|%k[0-7]' || true)
    if [ "$n" -gt 0 ]; then
      echo "$f.cpp: weak symbol $(echo "$sym" | c++filt) has $n AVX instructions"
      bad=1
    fi
  done
done
echo "$checked weak symbols of the ISA-flagged objects checked"
exit $bad
