#include "sim/scenarios.h"

#include <algorithm>

#include "kernels/assert.h"

namespace dsrt::sim {
namespace {

// Admission sized to the cluster: 48 requests in flight per GPU (the defaults are for one
// node), a quarter of that per tenant.
void size_admission(sim_config& c, int gpus) {
  auto& a = c.router.admission;
  a.queue_requests_max = 48 * std::int64_t(gpus);
  a.queue_tokens_max = a.queue_requests_max * 320;
  a.tenant_queue_requests_max = a.queue_requests_max / 4;
  a.tenant_queue_tokens_max = a.queue_tokens_max / 4;
}

// The seed design's recommendation service: short prompts and answers, a 2 s deadline.
void recommendation_load(sim_config& c) {
  c.prompt_tokens_min = 64;
  c.prompt_tokens_max = 256;
  c.max_tokens_min = 8;
  c.max_tokens_max = 64;
  c.deadline_ms = milliseconds(2000);
}

}  // namespace

const std::vector<scenario>& scenarios() {
  static const std::vector<scenario> all = {
      {"basic", "4 CPU replicas of bench-125m, 20 qps, a kill, a failing and a slow window", 1},
      {"h100-node", "8 H100s serving an 8B model at 400 qps", 1},
      {"recommendation", "12 nodes of 8 H100s (8B model) at 5,000 qps with a burst to 7,800, a node crash and a "
                         "slow GPU; --config compares dsrt's defaults with a naive setup", 1},
      {"scale", "1,024 H100s as 128 nodes, each one tensor-parallel replica of a 70B model, at 7,800 qps for "
                "10 minutes (streamed 8 tokens per chunk) with node kills and pauses, slow, failing and "
                "out-of-memory steps, clock jumps and corrupted messages", 8},
  };
  return all;
}

sim_config scenario_config(const std::string& name, std::uint64_t seed, int gpus, double qps) {
  const auto it = std::find_if(scenarios().begin(), scenarios().end(), [&](const scenario& s) { return s.name == name; });
  DSRT_ASSERT(it != scenarios().end(), "unknown scenario {}", name);
  sim_config c;
  c.seed = seed;
  if (name == "h100-node") {
    c.device = h100_8b_bf16();
    c.replicas = 8;
    c.qps = 400;
  } else if (name == "recommendation") {
    c.device = h100_8b_bf16();
    c.replicas = 96;
    c.replicas_per_node = 8;
    c.qps = 5000;
    c.burst_qps = 7800;
    c.burst_at_ms = milliseconds(20000);
    c.burst_ms = milliseconds(10000);
    recommendation_load(c);
    c.kills = 1;
    c.failing_windows = 0;
    c.slow_windows = 1;
    c.restart_ms = milliseconds(15000);
  } else if (name == "scale") {
    c.device = h100x8_70b_bf16();
    c.replicas = 128;
    c.qps = 7800;
    c.duration_ms = milliseconds(600'000);
    recommendation_load(c);
    c.kills = 2;
    c.pauses = 1;
    c.failing_windows = 1;
    c.slow_windows = 2;
    c.ooms = 4;
    c.clock_jumps = 2;
    c.corruptions = 4;
    c.restart_ms = milliseconds(30000);
    c.fault_window_ms = milliseconds(20000);
    // 128 replicas make ~280,000 tokens a second. Streamed one by one that is as many
    // chunk messages into the one router; in chunks of 8 (the first token still alone) a
    // sixth of them, at the same first-token and last-token times.
    c.scheduler.stream_interval_tokens = 8;
  }
  if (gpus > 0) c.replicas = std::max(1, gpus / it->gpus_per_replica);
  if (qps > 0) c.qps = qps;
  if (name == "recommendation" || name == "scale") size_admission(c, c.replicas * it->gpus_per_replica);
  return c;
}

}  // namespace dsrt::sim
