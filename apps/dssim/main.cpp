// dssim: runs a named scenario in the deterministic simulator (sim/) and reports what a
// user would see — throughput, TTFT/TPOT, availability, errors — plus the trace hash. The
// same seed and build give the same hash; a run that breaks an invariant prints the
// command that replays it.
//   dssim --scenario basic --seed 7 [--gpus 8 --qps 40 --duration 60] [--json FILE]
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "runtime/buggify.h"
#include "sim/actor_world.h"
#include "sim/scenarios.h"
#include "sim/shrink.h"
#include "sim/simulation.h"

namespace {

// The q-quantile (nearest rank); nth_element, since a scale run has millions of samples.
double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  const auto k = std::min(v.size() - 1, std::size_t(q * double(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dssim: dsrt's deterministic simulator (runs the real routing and batching policies)"};
  std::string scenario = "basic";
  std::uint64_t seed = 1;
  int gpus = 0;
  double qps = 0, duration_s = 0;
  std::string json_path;
  std::string scenario_help;
  std::vector<std::string> names;
  for (const auto& sc : dsrt::sim::scenarios()) {
    scenario_help += sc.name + ": " + sc.description + "; ";
    names.push_back(sc.name);
  }
  app.add_option("--scenario", scenario, scenario_help)->capture_default_str()->check(CLI::IsMember(names));
  std::string variant = "both";
  app.add_option("--config", variant, "recommendation: dsrt (defaults), naive (no admission limits, "
                                      "breakers, retries or chunked prefill; fixed batches) or both")
      ->capture_default_str()
      ->check(CLI::IsMember({"dsrt", "naive", "both"}));
  app.add_option("--seed", seed, "the seed of arrivals and faults")->capture_default_str();
  app.add_option("--gpus", gpus, "GPUs (default: the scenario's; scale puts 8 in each replica)")->check(CLI::Range(1, 65536));
  app.add_option("--qps", qps, "request arrivals per second (default: the scenario's)")->check(CLI::Range(0.0, 1e6));
  app.add_option("--duration", duration_s, "seconds of arrivals (default: the scenario's)")->check(CLI::Range(0.0, 86400.0));
  app.add_option("--json", json_path, "write the report as JSON");
  int stream_interval = 0;
  app.add_option("--stream-interval", stream_interval,
                 "tokens per streamed chunk after a request's first (batcher.stream_interval_tokens; default: "
                 "the scenario's)")
      ->check(CLI::Range(1, dsrt::batching::stream_interval_tokens_max));
  double repeat_prompts = -1;
  app.add_option("--repeat-prompts", repeat_prompts,
                 "the share of requests that repeat a recent request's prompt and max_tokens (prefix-index hits, "
                 "and response-cache answers when no replica can serve; default: the scenario's, 0)")
      ->check(CLI::Range(0.0, 1.0));
  int threads = int(std::max(1u, std::thread::hardware_concurrency()));
  auto* threads_option =
      app.add_option("--threads", threads, "threads running the simulated processes (default: this machine's, "
                                           "and one whenever that is measured to run faster); the trace does not "
                                           "depend on it")
          ->check(CLI::Range(1, 256));
  int processes = 0;
  app.add_option("--processes", processes, "the replicas' side as this many simulated processes, groups of whole "
                                           "nodes (default: 4, at most one per node and 4096); part of what fixes the "
                                           "trace")
      ->check(CLI::Range(1, 4096));
  std::uint64_t sweep = 0;
  app.add_option("--sweep", sweep, "run seeds --seed .. --seed + N - 1 and report only invariant violations "
                                   "(the scenario's dsrt configuration)")
      ->check(CLI::Range(std::uint64_t(1), std::uint64_t(10'000'000)));
  // Fault counts (-1: the scenario's); each fault's time and target come from the seed.
  int kills = -1, failing = -1, slow = -1, swizzles = -1, pauses = -1, ooms = -1, jumps = -1, corruptions = -1;
  auto* faults = app.add_option_group("faults", "how many of each fault (default: the scenario's)");
  faults->add_option("--kills", kills, "node kills (the node serves again after the scenario's restart time)")->check(CLI::Range(0, 10000));
  faults->add_option("--failing-windows", failing, "windows in which a replica's steps fail")->check(CLI::Range(0, 10000));
  faults->add_option("--slow-windows", slow, "windows in which a replica's device is slow")->check(CLI::Range(0, 10000));
  faults->add_option("--swizzles", swizzles, "swizzle-clogs of the links")->check(CLI::Range(0, 10000));
  faults->add_option("--pauses", pauses, "node pauses longer than the heartbeat timeout")->check(CLI::Range(0, 10000));
  faults->add_option("--ooms", ooms, "steps that run out of device memory")->check(CLI::Range(0, 10000));
  faults->add_option("--clock-jumps", jumps, "jumps of a node's system clock")->check(CLI::Range(0, 10000));
  faults->add_option("--corruptions", corruptions, "messages corrupted in transit")->check(CLI::Range(0, 10000));
  bool buggify = false, shrink = false, list_faults = false, with_actors = false;
  app.add_flag("--actors", with_actors, "run the real router, cache, supervisor and batcher actors under CAF's "
                                        "deterministic test coordinator (a simulated device behind each shard) "
                                        "instead of the policies on the simulator's own event queue; kills, "
                                        "failing, slow and out-of-memory steps only");
  std::string keep_faults;
  auto* buggify_flag =
      app.add_flag("--buggify", buggify, "fire the DSRT_BUGGIFY points of the production code (chosen from the seed)");
  bool buggify_after_faults = false;
  std::vector<std::string> buggify_only;
  double buggify_enable = -1, buggify_fire = -1;
  app.add_flag("--buggify-after-faults", buggify_after_faults,
               "keep BUGGIFY firing after the last fault ends (by default the points go quiet then, so recovery "
               "is judged without them); how the seeds the quiet-phase tests pin are found")
      ->needs(buggify_flag);
  app.add_option("--buggify-points", buggify_only, "only these BUGGIFY points may be enabled (comma-separated)")
      ->delimiter(',')
      ->check([](const std::string& name) -> std::string {
        for (auto known : dsrt::buggify_points)
          if (name == known) return "";
        std::string list;
        for (auto known : dsrt::buggify_points) list += (list.empty() ? "" : ", ") + std::string(known);
        return "no BUGGIFY point is named " + name + " (there are: " + list + ")";
      })
      ->needs(buggify_flag);
  const dsrt::buggify_config buggify_defaults;
  app.add_option("--buggify-enable", buggify_enable,
                 fmt::format("the chance that a point is enabled for a run (default {})",
                             buggify_defaults.enable_probability))
      ->check(CLI::Range(0.0, 1.0))
      ->needs(buggify_flag);
  app.add_option("--buggify-fire", buggify_fire,
                 fmt::format("the chance that an enabled point fires each time it is reached (default {})",
                             buggify_defaults.fire_probability))
      ->check(CLI::Range(0.0, 1.0))
      ->needs(buggify_flag);
  app.add_option("--keep-faults", keep_faults, "run only these faults of the seed's schedule: indices as "
                                                "--list-faults numbers them, comma-separated, or none (what "
                                                "--shrink prints)")
      ->check([](const std::string& v) -> std::string {
        if (v == "none") return "";
        std::size_t digits = 0;
        for (char ch : v) {
          if (!(std::isdigit(static_cast<unsigned char>(ch)) || ch == ',')) return "expected indices like 0,3,4 or none";
          digits = ch == ',' ? 0 : digits + 1;
          if (digits > 9) return "a fault index is at most 9 digits";
        }
        return "";
      });
  app.add_flag("--list-faults", list_faults, "print the seed's fault schedule, numbered, and exit");
  app.add_flag("--shrink", shrink, "if the run breaks an invariant, find a smaller set of its faults that still "
                                   "does and print the command that replays it");
  CLI11_PARSE(app, argc, argv);

  auto c = dsrt::sim::scenario_config(scenario, seed, gpus, qps);
  int gpus_per_replica = 1;
  for (const auto& sc : dsrt::sim::scenarios())
    if (sc.name == scenario) gpus_per_replica = sc.gpus_per_replica;
  if (duration_s > 0) c.duration_ms = dsrt::milliseconds(std::int64_t(duration_s * 1000));
  if (stream_interval > 0) c.scheduler.stream_interval_tokens = stream_interval;
  if (repeat_prompts >= 0) c.repeat_prompt_fraction = repeat_prompts;
  for (auto [flag, field] : {std::pair{kills, &c.kills}, {failing, &c.failing_windows}, {slow, &c.slow_windows},
                             {swizzles, &c.swizzles}, {pauses, &c.pauses}, {ooms, &c.ooms}, {jumps, &c.clock_jumps},
                             {corruptions, &c.corruptions}})
    if (flag >= 0) *field = flag;
  c.buggify = buggify;
  c.buggify_after_faults = buggify_after_faults;
  c.buggify_probabilities.only = buggify_only;
  if (buggify_enable >= 0) c.buggify_probabilities.enable_probability = buggify_enable;
  if (buggify_fire >= 0) c.buggify_probabilities.fire_probability = buggify_fire;
  c.threads = threads;
  c.adapt_threads = threads_option->count() == 0;
  if (processes > 0) c.replica_processes = processes;
  if (!keep_faults.empty()) {
    c.faults_kept.emplace();
    std::size_t from = 0;
    while (keep_faults != "none" && from < keep_faults.size()) {
      const auto comma = std::min(keep_faults.find(',', from), keep_faults.size());
      if (comma > from) c.faults_kept->push_back(std::stoul(keep_faults.substr(from, comma - from)));
      from = comma + 1;
    }
  }
  if (with_actors) {
    if (const auto ok = dsrt::sim::validate_actor_world(c); !ok) {
      std::fprintf(stderr, "dssim: %s\n", ok.err().to_string().c_str());
      return 2;
    }
  }
  const auto simulate = [&](const dsrt::sim::sim_config& config) {
    return with_actors ? dsrt::sim::run_actor_world(config) : dsrt::sim::run_simulation(config);
  };
  if (list_faults) {
    const auto all = dsrt::sim::draw_faults(c);
    for (std::size_t k = 0; k < all.size(); ++k) std::printf("%zu  %s\n", k, dsrt::sim::describe(all[k]).c_str());
    return 0;
  }

  // The command that replays a run: this one's arguments with the seed (and the faults
  // kept) replaced, and without --sweep, --shrink and --json.
  const auto replay = [&](std::uint64_t run_seed, const std::string& label,
                          const std::optional<std::vector<std::size_t>>& kept) {
    std::string cmd = argv[0];
    const std::vector<std::string> dropped = {"--seed", "--sweep", "--json", "--keep-faults", "--config"};
    for (int a = 1; a < argc; ++a) {
      const std::string arg = argv[a];
      if (arg == "--shrink") continue;
      const auto name = arg.substr(0, arg.find('='));
      if (std::find(dropped.begin(), dropped.end(), name) != dropped.end()) {
        if (arg.find('=') == std::string::npos) ++a;   // and its value
        continue;
      }
      cmd += " " + arg;
    }
    cmd += fmt::format(" --seed {}", run_seed);
    if (scenario == "recommendation") cmd += " --config " + label;
    if (kept) {
      cmd += " --keep-faults ";
      for (std::size_t k = 0; k < kept->size(); ++k) cmd += (k ? "," : "") + std::to_string((*kept)[k]);
      if (kept->empty()) cmd += "none";
    }
    return cmd;
  };

  if (sweep > 0) {
    // Seeds side by side, one run per thread (each run on one thread), a batch of
    // sweep_batch_seeds at a time so memory stays bounded and failures print as batches
    // end, in seed order, each with its replay command.
    constexpr std::uint64_t sweep_batch_seeds = 1024;
    const auto start = std::chrono::steady_clock::now();
    struct seed_result {
      std::int64_t requests = 0;
      std::string first_violation;   // empty when every invariant held
    };
    const int sweepers = with_actors ? 1 : int(std::min<std::uint64_t>(std::uint64_t(threads), sweep));
    std::uint64_t failed = 0, requests = 0;
    for (std::uint64_t base = 0; base < sweep; base += sweep_batch_seeds) {
      const std::uint64_t batch = std::min(sweep_batch_seeds, sweep - base);
      std::vector<seed_result> results(batch);
      std::atomic<std::uint64_t> next{0};
      auto work = [&] {
        auto config = c;
        config.threads = 1;
        for (std::uint64_t k = next++; k < batch; k = next++) {
          config.seed = seed + base + k;
          const auto r = simulate(config);
          results[k].requests = r.requests;
          if (!r.violations.empty()) results[k].first_violation = r.violations.front();
        }
      };
      std::vector<std::thread> pool;
      for (int t = 1; t < sweepers; ++t) pool.emplace_back(work);
      work();
      for (auto& t : pool) t.join();
      for (std::uint64_t k = 0; k < batch; ++k) {
        requests += std::uint64_t(results[k].requests);
        if (results[k].first_violation.empty()) continue;
        ++failed;
        std::printf("seed %llu: %s\n  replay: %s\n", (unsigned long long)(seed + base + k),
                    results[k].first_violation.c_str(), replay(seed + base + k, "dsrt", c.faults_kept).c_str());
      }
      std::fflush(stdout);
    }
    std::printf("sweep %s seeds %llu..%llu: %llu of %llu broke an invariant; %llu requests in %.1f s (%d threads)\n",
                scenario.c_str(), (unsigned long long)seed, (unsigned long long)(seed + sweep - 1),
                (unsigned long long)failed, (unsigned long long)sweep, (unsigned long long)requests,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), sweepers);
    return failed ? 1 : 0;
  }

  std::vector<std::pair<std::string, dsrt::sim::sim_config>> runs;
  if (scenario != "recommendation" || variant != "naive") runs.emplace_back("dsrt", c);
  if (scenario == "recommendation" && variant != "dsrt") runs.emplace_back("naive", dsrt::sim::naive(c));
  nlohmann::json out = nlohmann::json::array();
  bool broken = false;
  for (const auto& [label, config] : runs) {
    const auto start = std::chrono::steady_clock::now();
    const auto r = simulate(config);
    const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("== dssim %s (%s) seed %llu: %d replicas x %d GPU (%s), %.0f qps%s for %.0f s\n", scenario.c_str(),
                label.c_str(), (unsigned long long)seed, config.replicas, gpus_per_replica, config.device.name.c_str(), config.qps,
                config.burst_qps > 0 ? fmt::format(" (burst {:.0f})", config.burst_qps).c_str() : "",
                config.duration_ms.count() / 1000.0);
    std::printf("requests %lld completed %lld availability %.4f (completed within the deadline / all)\n",
                (long long)r.requests, (long long)r.completed, r.availability());
    std::printf("throughput %.1f tokens/s simulated; TTFT ms p50 %.1f p99 %.1f; TPOT ms p50 %.2f p99 %.2f\n",
                double(r.tokens) / std::max(r.simulated_s, 1e-9), percentile(r.ttft_ms, 0.5),
                percentile(r.ttft_ms, 0.99), percentile(r.tpot_ms, 0.5), percentile(r.tpot_ms, 0.99));
    for (const auto& [code, n] : r.errors_by_code) std::printf("  error %s: %lld\n", code.c_str(), (long long)n);
    std::printf("faults %zu (kills %lld, restarts %lld); breaker opens %lld retries %lld resumptions %lld\n",
                r.faults.size(), (long long)r.kills, (long long)r.restarts, (long long)r.breaker_opens,
                (long long)r.retries, (long long)r.resumptions);
    if (r.fallbacks > 0)
      std::printf("fallbacks %lld (no replica could take the request), %lld answered by the response cache\n",
                  (long long)r.fallbacks, (long long)r.response_cache_hits);
    if (r.corrupt_detected + r.corrupt_undetected > 0)
      std::printf("corrupted frames: %lld refused by the decoder, %lld read back\n", (long long)r.corrupt_detected,
                  (long long)r.corrupt_undetected);
    if (r.recovered_after_ms) std::printf("recovered %.0f ms after the last fault ended\n", *r.recovered_after_ms);
    for (const auto& [point, n] : r.buggify_fired) std::printf("  buggify %s fired %lld times\n", point.c_str(), (long long)n);
    std::printf("simulated %.1f s in %.2f s of wall time (%.0fx); %llu events; trace hash %016llx\n",
                r.simulated_s, wall_s, r.simulated_s / std::max(wall_s, 1e-9), (unsigned long long)r.events,
                (unsigned long long)r.trace_hash);
    if (config.adapt_threads && config.threads > 1)
      std::printf("threads: %d for %.1f s, 1 for %.1f s (measured faster then); %d switches\n", config.threads,
                  r.parallel_wall_s, r.single_wall_s, r.thread_switches);
    nlohmann::json j;
    j["scenario"] = scenario;
    j["config"] = label;
    j["seed"] = seed;
    j["replicas"] = config.replicas;
    j["gpus"] = config.replicas * gpus_per_replica;
    j["requests"] = r.requests;
    j["completed"] = r.completed;
    j["availability"] = r.availability();
    j["ttft_ms"] = {{"p50", percentile(r.ttft_ms, 0.5)}, {"p99", percentile(r.ttft_ms, 0.99)}};
    j["tpot_ms"] = {{"p50", percentile(r.tpot_ms, 0.5)}, {"p99", percentile(r.tpot_ms, 0.99)}};
    j["errors_by_code"] = r.errors_by_code;
    j["breaker_opens"] = r.breaker_opens;
    j["kills"] = r.kills;
    j["restarts"] = r.restarts;
    j["world"] = with_actors ? "actors" : "policies";
    j["retries"] = r.retries;
    j["resumptions"] = r.resumptions;
    j["fallbacks"] = r.fallbacks;
    j["response_cache_hits"] = r.response_cache_hits;
    j["faults"] = r.faults;
    j["buggify_fired"] = r.buggify_fired;
    j["recovered_after_ms"] = r.recovered_after_ms ? nlohmann::json(*r.recovered_after_ms) : nlohmann::json();
    j["simulated_s"] = r.simulated_s;
    j["wall_s"] = wall_s;
    j["threads"] = {{"configured", config.threads},
                    {"adaptive", config.adapt_threads},
                    {"parallel_wall_s", r.parallel_wall_s},
                    {"single_wall_s", r.single_wall_s},
                    {"switches", r.thread_switches}};
    j["trace_hash"] = fmt::format("{:016x}", r.trace_hash);
    j["violations"] = r.violations;
    out.push_back(j);
    if (r.violations.empty()) continue;
    broken = true;
    for (const auto& v : r.violations) std::fprintf(stderr, "INVARIANT (%s): %s\n", label.c_str(), v.c_str());
    std::fprintf(stderr, "replay: %s\n", replay(seed, label, config.faults_kept).c_str());
    if (!shrink) continue;
    if (const auto s = dsrt::sim::shrink_faults(config, simulate)) {
      const auto all = dsrt::sim::draw_faults(config);
      std::fprintf(stderr, "shrunk to %zu of %zu faults in %d runs; it still breaks: %s\n", s->kept.size(),
                   config.faults_kept ? config.faults_kept->size() : all.size(), s->runs, s->violation.c_str());
      for (auto k : s->kept) std::fprintf(stderr, "  %zu  %s\n", k, dsrt::sim::describe(all[k]).c_str());
      std::fprintf(stderr, "replay: %s\n", replay(seed, label, s->kept).c_str());
    }
  }
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << '\n';
  return broken ? 1 : 0;
}
