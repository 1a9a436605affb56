#pragma once
// Small simulated clusters for the simulator's tests: 3 CPU replicas (one per node) at
// 15 qps for 10 s, fast enough for hundreds of seeds per test.
#include <string>

#include "sim/simulation.h"

namespace dsrt::sim::test {

// A kill, a failing window and a slow window (dssim --scenario basic's kinds).
inline sim_config small(std::uint64_t seed) {
  sim_config c;
  c.seed = seed;
  c.replicas = 3;
  c.qps = 15;
  c.duration_ms = milliseconds(10000);
  c.max_tokens_max = 48;
  c.fault_window_ms = milliseconds(2000);
  c.router.breaker.window_requests_min = 5;
  return c;
}

// small() without its faults: the same load on healthy replicas.
inline sim_config without_faults(std::uint64_t seed) {
  auto c = small(seed);
  c.kills = c.failing_windows = c.slow_windows = 0;
  return c;
}

// One of every kind of fault but swizzles (their own test), and BUGGIFY.
inline sim_config with_every_fault(std::uint64_t seed) {
  auto c = small(seed);
  c.pauses = 1;
  c.ooms = 2;
  c.clock_jumps = 1;
  c.corruptions = 2;
  c.buggify = true;
  c.buggify_probabilities.enable_probability = 0.5;
  return c;
}

// One replica (each kill leaves none: the router falls back to its response cache) and
// half of the requests repeating a recent prompt, so the cache has the answers.
inline sim_config falling_back_to_the_cache(std::uint64_t seed) {
  auto c = small(seed);
  c.replicas = 1;
  c.kills = 2;
  c.failing_windows = c.slow_windows = 0;
  c.repeat_prompt_fraction = 0.5;
  c.restart_ms = milliseconds(1500);
  return c;
}

inline std::string replay_command(std::uint64_t seed) {
  return "dssim --scenario basic --gpus 3 --qps 15 --duration 10 --pauses 1 --ooms 2 --clock-jumps 1 "
         "--corruptions 2 --buggify --seed " + std::to_string(seed) + " (max_tokens 48, 2 s windows)";
}

}  // namespace dsrt::sim::test
