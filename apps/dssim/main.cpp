// dssim: runs a named scenario in the deterministic simulator (sim/) and reports what a
// user would see — throughput, TTFT/TPOT, availability, errors — plus the trace hash. The
// same seed and build give the same hash; a run that breaks an invariant prints the
// command that replays it.
//   dssim --scenario basic --seed 7 [--gpus 8 --qps 40 --duration 60] [--json FILE]
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include <fmt/format.h>

#include "sim/simulation.h"

namespace {

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, std::size_t(q * double(v.size() - 1) + 0.5))];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dssim: dsrt's deterministic simulator (runs the real routing and batching policies)"};
  std::string scenario = "basic";
  std::uint64_t seed = 1;
  int gpus = 0;
  double qps = 0, duration_s = 0;
  std::string json_path;
  app.add_option("--scenario", scenario, "basic: 4 CPU replicas of bench-125m with a kill, a failing and a "
                                         "slow window; h100-node: 8 H100s serving an 8B model; recommendation: "
                                         "12 nodes of 8 H100s at 5,000 qps with a burst to 7,800, a node crash and "
                                         "a slow GPU")
      ->capture_default_str()
      ->check(CLI::IsMember({"basic", "h100-node", "recommendation"}));
  std::string variant = "both";
  app.add_option("--config", variant, "recommendation: dsrt (defaults), naive (no admission limits, "
                                      "breakers, retries or chunked prefill; fixed batches) or both")
      ->capture_default_str()
      ->check(CLI::IsMember({"dsrt", "naive", "both"}));
  app.add_option("--seed", seed, "the seed of arrivals and faults")->capture_default_str();
  app.add_option("--gpus", gpus, "replicas (one device each; default: the scenario's)")->check(CLI::Range(1, 4096));
  app.add_option("--qps", qps, "request arrivals per second (default: the scenario's)")->check(CLI::Range(0.0, 1e6));
  app.add_option("--duration", duration_s, "seconds of arrivals (default: the scenario's)")->check(CLI::Range(0.0, 86400.0));
  app.add_option("--json", json_path, "write the report as JSON");
  std::uint64_t sweep = 0;
  app.add_option("--sweep", sweep, "run seeds --seed .. --seed + N - 1 and report only invariant violations "
                                   "(the scenario's dsrt configuration)")
      ->check(CLI::Range(std::uint64_t(1), std::uint64_t(10'000'000)));
  CLI11_PARSE(app, argc, argv);

  dsrt::sim::sim_config c;
  c.seed = seed;
  if (scenario == "h100-node") {
    c.device = dsrt::sim::h100_8b_bf16();
    c.replicas = 8;
    c.qps = 400;
  } else if (scenario == "recommendation") {
    // The seed design's case: 8-GPU nodes at 5,000 qps with a burst to 7,800, a node crash,
    // a slow GPU; short answers, a 2 s deadline.
    c.device = dsrt::sim::h100_8b_bf16();
    c.replicas = 96;
    c.replicas_per_node = 8;
    c.qps = 5000;
    c.burst_qps = 7800;
    c.burst_at_ms = dsrt::milliseconds(20000);
    c.burst_ms = dsrt::milliseconds(10000);
    c.prompt_tokens_min = 64;
    c.prompt_tokens_max = 256;
    c.max_tokens_min = 8;
    c.max_tokens_max = 64;
    c.deadline_ms = dsrt::milliseconds(2000);
    c.kills = 1;
    c.failing_windows = 0;
    c.slow_windows = 1;
    c.restart_ms = dsrt::milliseconds(15000);
  }
  if (gpus > 0) c.replicas = gpus;
  if (qps > 0) c.qps = qps;
  // Admission limits sized to the cluster: 48 requests in flight per GPU (the defaults are
  // for one node), a quarter of that per tenant.
  if (scenario == "recommendation") {
    auto& a = c.router.admission;
    a.queue_requests_max = 48 * std::int64_t(c.replicas);
    a.queue_tokens_max = a.queue_requests_max * 320;
    a.tenant_queue_requests_max = a.queue_requests_max / 4;
    a.tenant_queue_tokens_max = a.queue_tokens_max / 4;
  }
  if (duration_s > 0) c.duration_ms = dsrt::milliseconds(std::int64_t(duration_s * 1000));

  if (sweep > 0) {
    // Seeds in order; every failing one is printed with its replay command.
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t failed = 0, requests = 0;
    for (std::uint64_t s = seed; s < seed + sweep; ++s) {
      c.seed = s;
      const auto r = dsrt::sim::run_simulation(c);
      requests += std::uint64_t(r.requests);
      if (r.violations.empty()) continue;
      ++failed;
      std::printf("seed %llu: %s\n  replay: %s --scenario %s --seed %llu\n", (unsigned long long)s,
                  r.violations.front().c_str(), argv[0], scenario.c_str(), (unsigned long long)s);
    }
    std::printf("sweep %s seeds %llu..%llu: %llu of %llu broke an invariant; %llu requests in %.1f s\n",
                scenario.c_str(), (unsigned long long)seed, (unsigned long long)(seed + sweep - 1),
                (unsigned long long)failed, (unsigned long long)sweep, (unsigned long long)requests,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return failed ? 1 : 0;
  }

  std::vector<std::pair<std::string, dsrt::sim::sim_config>> runs;
  if (scenario != "recommendation" || variant != "naive") runs.emplace_back("dsrt", c);
  if (scenario == "recommendation" && variant != "dsrt") runs.emplace_back("naive", dsrt::sim::naive(c));
  nlohmann::json out = nlohmann::json::array();
  bool broken = false;
  for (const auto& [label, config] : runs) {
    const auto start = std::chrono::steady_clock::now();
    const auto r = dsrt::sim::run_simulation(config);
    const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("== dssim %s (%s) seed %llu: %d replicas (%s), %.0f qps%s for %.0f s\n", scenario.c_str(),
                label.c_str(), (unsigned long long)seed, config.replicas, config.device.name.c_str(), config.qps,
                config.burst_qps > 0 ? fmt::format(" (burst {:.0f})", config.burst_qps).c_str() : "",
                config.duration_ms.count() / 1000.0);
    std::printf("requests %lld completed %lld availability %.4f (completed within the deadline / all)\n",
                (long long)r.requests, (long long)r.completed, r.availability());
    std::printf("throughput %.1f tokens/s simulated; TTFT ms p50 %.1f p99 %.1f; TPOT ms p50 %.2f p99 %.2f\n",
                double(r.tokens) / std::max(r.simulated_s, 1e-9), percentile(r.ttft_ms, 0.5),
                percentile(r.ttft_ms, 0.99), percentile(r.tpot_ms, 0.5), percentile(r.tpot_ms, 0.99));
    for (const auto& [code, n] : r.errors_by_code) std::printf("  error %s: %lld\n", code.c_str(), (long long)n);
    std::printf("kills %lld breaker opens %lld retries %lld resumptions %lld\n", (long long)r.kills,
                (long long)r.breaker_opens, (long long)r.retries, (long long)r.resumptions);
    std::printf("simulated %.1f s in %.2f s of wall time (%.0fx); %llu events; trace hash %016llx\n",
                r.simulated_s, wall_s, r.simulated_s / std::max(wall_s, 1e-9), (unsigned long long)r.events,
                (unsigned long long)r.trace_hash);
    nlohmann::json j;
    j["scenario"] = scenario;
    j["config"] = label;
    j["seed"] = seed;
    j["replicas"] = config.replicas;
    j["requests"] = r.requests;
    j["completed"] = r.completed;
    j["availability"] = r.availability();
    j["ttft_ms"] = {{"p50", percentile(r.ttft_ms, 0.5)}, {"p99", percentile(r.ttft_ms, 0.99)}};
    j["tpot_ms"] = {{"p50", percentile(r.tpot_ms, 0.5)}, {"p99", percentile(r.tpot_ms, 0.99)}};
    j["errors_by_code"] = r.errors_by_code;
    j["breaker_opens"] = r.breaker_opens;
    j["kills"] = r.kills;
    j["simulated_s"] = r.simulated_s;
    j["wall_s"] = wall_s;
    j["trace_hash"] = r.trace_hash;
    j["violations"] = r.violations;
    out.push_back(j);
    if (!r.violations.empty()) {
      broken = true;
      for (const auto& v : r.violations) std::fprintf(stderr, "INVARIANT (%s): %s\n", label.c_str(), v.c_str());
    }
  }
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << '\n';
  if (broken) {
    std::fprintf(stderr, "replay: %s --scenario %s --config %s --seed %llu%s\n", argv[0], scenario.c_str(),
                 variant.c_str(), (unsigned long long)seed,
                 gpus || qps > 0 || duration_s > 0 ? " (plus the same --gpus/--qps/--duration)" : "");
    return 1;
  }
  return 0;
}
