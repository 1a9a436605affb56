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

}  // namespace dsrt::sim
