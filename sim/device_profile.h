#pragma once
// Step time of a simulated device: a fixed part (reading the weights once per step) plus a
// part per token of the step and per token of context attended to. Profiles state where
// their numbers come from.
#include <chrono>
#include <cstdint>
#include <string>

namespace dsrt::sim {

struct device_profile {
  std::string name;
  double step_fixed_us = 0;        // per step, whatever its size (weights streamed once)
  double per_token_us = 0;         // per token computed in the step
  double per_context_token_ns = 0; // per (token, context position) of attention
  std::chrono::nanoseconds step_time(std::int64_t tokens, std::int64_t context_tokens) const {
    const double us = step_fixed_us + per_token_us * double(tokens) + per_context_token_ns * 1e-3 * double(context_tokens);
    return std::chrono::nanoseconds(std::int64_t(us * 1e3));
  }
};

// bench-125m on this project's 2-core CPU VM, from docs/PERFORMANCE.md (dsbench engine):
// batch-1 decode 221 tokens/s (4.5 ms per step), batch-32 step 25-28 ms.
inline device_profile cpu_bench_125m() { return {"cpu-bench-125m", 4500, 680, 2}; }

// An 8B-parameter dense model in bf16 on one H100 SXM, from its datasheet roofline: 16 GB of
// weights at 3.35 TB/s HBM3 = 4.8 ms per step; 16 GFLOP per token at ~60 % of 989 TFLOPS
// dense bf16 = 27 us per token; attention ~ 0.5 ns per (token, position) at batch.
inline device_profile h100_8b_bf16() { return {"h100-8b-bf16", 4800, 27, 0.5}; }

// A 70B-parameter dense model in bf16 on one node of 8 H100 SXM, tensor-parallel (one
// replica per node), from the datasheet roofline: 140 GB of weights over 8 x 3.35 TB/s =
// 5.2 ms per step plus ~2.4 ms of all-reduces (80 layers x 2 x ~15 us over NVLink);
// 140 GFLOP per token at ~60 % of 8 x 989 TFLOPS = 30 us per token; attention reads 160 KB
// of KV per (token, position) (8 KV heads x 128 x 80 layers x K and V in bf16) over
// 26.8 TB/s = 6 ns.
inline device_profile h100x8_70b_bf16() { return {"h100x8-70b-bf16", 7600, 30, 6}; }

}  // namespace dsrt::sim
