#include "apps/dsbench/load_bench.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "actors/client.h"
#include "actors/remote_runtime.h"
#include "apps/common/runtime_setup.h"
#include "apps/dsbench/fault_schedule.h"
#include "runtime/random.h"
#include "transport/auth.h"

namespace dsrt::apps {
namespace {

using steady = std::chrono::steady_clock;

struct load_flags {
  engine_flags engine;
  runtime_flags runtime;
  bool inproc = false;
  std::string connect;                 // dsrt://HOST:PORT of a running cluster
  std::string secret_file;
  int requests = 100;
  int concurrency = 8;
  int prompt_len = 128;
  int gen = 64;
  int priorities = 1;                  // requests cycle through priorities 0 .. priorities-1
  std::vector<std::string> faults;
  std::int64_t timeout_s = 600;        // the whole load; then the open requests are cancelled (exit 4)
  std::uint64_t seed = 1;
  std::string json_path;
  std::string metrics_path;
};

// Per request, what the client saw.
struct request_trace {
  steady::time_point submitted, first_chunk, last_chunk;
  // Chunks must arrive numbered 0, 1, 2, ...: next_sequence is the one expected; a lower
  // number is a repeat (or out of order), a higher one skips chunks.
  std::uint32_t next_sequence = 0;
  std::int64_t chunks = 0, skipped_chunks = 0;
  std::int64_t duplicate_chunks = 0;
  std::int64_t tokens = 0;
  int finals = 0;
  actors::final_message final;
  std::uint64_t id = 0;   // the client's, once submitted
};

// How long the requests still open when --timeout-s ends a run may take to end once cancelled.
constexpr std::chrono::seconds cancel_wait{10};

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, std::size_t(q * double(v.size() - 1) + 0.5))];
}

int run_load(const load_flags& f) {
  if (f.inproc == !f.connect.empty())
    return report(make_error(error_code::invalid_argument,
                             "dsbench load needs exactly one of --inproc and --connect dsrt://HOST:PORT"));
  if (!f.connect.empty() && !f.metrics_path.empty())
    return report(make_error(error_code::invalid_argument,
                             "--metrics reads an in-process runtime's registry; a cluster's nodes write theirs "
                             "(dsnode --metrics-file; dsrun: RUN_DIR/node-N.prom)"));
  if (!f.connect.empty())
    if (auto s = check_connect_flags(f.engine, f.runtime); !s)
      return report(s.err());
  if (!f.connect.empty() && !f.faults.empty())
    return report(make_error(error_code::invalid_argument,
                             "--fault injects into an in-process runtime; fault a cluster by killing its nodes"));
  // Spelling first (before a model loads); the replicas named are checked against the
  // runtime's count once it runs (settings may give another than --replicas).
  if (auto spelled = parse_faults(f.faults, actors::runtime_replicas_max); !spelled) return report(spelled.err());

  // What the request callbacks touch is declared before the runtime, so it outlives it:
  // requests still open when --timeout-s ends get their finals as the runtime stops.
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<request_trace> traces(std::size_t(f.requests));
  int submitted = 0, finals = 0;
  bool stopping = false;   // the run is over: a final submits nothing more
  bool timed_out = false;  // --timeout-s ended it before every request had its final

  // In process (everything measurable) or a running cluster (what its client sees).
  loaded_runtime loaded;
  std::unique_ptr<actors::remote_runtime> remote;
  actors::local_runtime* local = nullptr;
  actors::router_access* access = nullptr;
  result<std::vector<fault_event>> faults = std::vector<fault_event>{};
  if (f.inproc) {
    auto started = start_runtime(f.engine, f.runtime, actors::runtime_options{});
    if (!started) return report(started.err());
    loaded = std::move(*started);
    local = loaded.runtime.get();
    access = local;
    faults = parse_faults(f.faults, local->replicas());
    if (!faults) return report(faults.err());
  } else {
    auto secret = transport::read_secret_file(f.secret_file);
    if (!secret) return report(secret.err());
    auto tok = tokenizer::tokenizer::load(f.engine.model_dir);
    if (!tok) return report(tok.err());
    loaded.tokenizer = std::make_shared<tokenizer::tokenizer>(std::move(*tok));
    auto r = actors::remote_runtime::connect(f.connect, *secret, loaded.tokenizer);
    if (!r) return report(r.err());
    spdlog::info("dsbench load: connected to {}", f.connect);
    remote = std::move(*r);
    access = remote.get();
  }
  client c(*access);

  // Prompts of regular tokens, the same for a seed.
  const auto& tok = *loaded.tokenizer;
  xoshiro256 rng(f.seed);
  std::vector<std::vector<std::int32_t>> prompts(std::size_t(f.requests));
  for (auto& p : prompts) {
    while (int(p.size()) < f.prompt_len) {
      const auto id = std::int32_t(rng.next() % std::uint64_t(tok.vocab_size()));
      if (!tok.is_special(id)) p.push_back(id);
    }
  }

  // Submits the next request, unless the run is over. One the client refuses at once ends
  // there (its final is the refusal) and the next takes its place, so no slot is lost.
  std::function<void()> submit_next;   // REQUIRES: mutex held
  submit_next = [&] {
    while (!stopping && submitted < f.requests) {
      const std::size_t i = std::size_t(submitted++);
      client_request r;
      r.prompt_tokens = prompts[i];
      r.max_tokens = f.gen;
      r.priority = int(i % std::size_t(f.priorities));
      traces[i].submitted = steady::now();
      auto id = c.submit(
          r,
          [&, i](const actors::token_chunk& chunk) {
            std::lock_guard lock(mutex);
            auto& t = traces[i];
            const auto now = steady::now();
            if (t.chunks++ == 0) t.first_chunk = now;
            t.last_chunk = now;
            if (chunk.sequence < t.next_sequence) {
              ++t.duplicate_chunks;
            } else {
              t.skipped_chunks += chunk.sequence - t.next_sequence;
              t.next_sequence = chunk.sequence + 1;
            }
            t.tokens += std::int64_t(chunk.tokens.size());
          },
          [&, i](const actors::final_message& fin) {
            std::lock_guard lock(mutex);
            auto& t = traces[i];
            ++t.finals;
            t.final = fin;
            ++finals;
            submit_next();
            cv.notify_all();
          });
      if (id) {
        traces[i].id = *id;
        return;
      }
      traces[i].finals = 1;
      traces[i].final.failure = id.err();
      ++finals;
    }
  };

  const auto start = steady::now();
  std::thread fault_thread;
  std::atomic<bool> stop_faults{false};
  if (!faults->empty())
    fault_thread = std::thread([&] {
      for (const auto& e : *faults) {
        while (!stop_faults && steady::now() < start + std::chrono::milliseconds(e.at_ms))
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (stop_faults) return;
        apply_fault(*local, e);
      }
    });
  {
    std::unique_lock lock(mutex);
    for (int k = 0; k < std::min(f.concurrency, f.requests); ++k) submit_next();
    timed_out = !cv.wait_for(lock, std::chrono::seconds(f.timeout_s), [&] { return finals >= f.requests; });
    stopping = true;
  }
  if (timed_out) {   // the open requests are cancelled, and their CANCELLED finals awaited
    std::vector<std::uint64_t> open;
    {
      std::lock_guard lock(mutex);
      for (int i = 0; i < submitted; ++i)
        if (traces[std::size_t(i)].finals == 0) open.push_back(traces[std::size_t(i)].id);
    }
    for (const auto id : open) c.cancel(id);
    std::unique_lock lock(mutex);
    cv.wait_for(lock, cancel_wait, [&] { return finals >= submitted; });
  }
  const double wall_s = std::chrono::duration<double>(steady::now() - start).count();
  stop_faults = true;
  if (fault_thread.joinable()) fault_thread.join();
  // Let cancelled or stopped work settle before counting blocks.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // The runtime's own counters exist only in process; a cluster's client sees the streams.
  using statuses_t = std::vector<actors::replica_status>;
  result<statuses_t> statuses = make_error(error_code::unavailable, "remote");
  result<actors::router_counters> router = make_error(error_code::unavailable, "remote");
  result<actors::supervisor_counters> supervisor = make_error(error_code::unavailable, "remote");
  if (local) {
    statuses = local->replica_statuses();
    router = local->router_status();
    supervisor = local->supervisor_status();
  }

  std::lock_guard lock(mutex);
  std::int64_t completed = 0, tokens = 0, duplicates = 0, missing = 0, final_count = 0, extra_finals = 0;
  std::map<std::string, std::int64_t> errors;
  std::vector<double> ttft_ms, tpot_ms;
  for (int i = 0; i < submitted; ++i) {
    const auto& t = traces[std::size_t(i)];
    final_count += std::min(t.finals, 1);
    extra_finals += std::max(t.finals - 1, 0);
    duplicates += t.duplicate_chunks;
    // Chunks the final says were sent but never arrived, or sequence numbers skipped.
    const std::int64_t expected = t.finals ? std::int64_t(t.final.chunks_sent) : 0;
    // Skipped numbers, plus chunks the final counts that never came.
    missing += t.skipped_chunks + std::max<std::int64_t>(expected - std::int64_t(t.next_sequence), 0);
    if (!t.finals) continue;
    if (t.final.failure) {
      ++errors[std::string(error_code_name(t.final.failure->code))];
      continue;
    }
    ++completed;
    tokens += t.tokens;
    if (t.chunks > 0) {
      ttft_ms.push_back(std::chrono::duration<double, std::milli>(t.first_chunk - t.submitted).count());
      if (t.tokens > 1)
        tpot_ms.push_back(std::chrono::duration<double, std::milli>(t.last_chunk - t.first_chunk).count() /
                          double(t.tokens - 1));
    }
  }
  std::int64_t leaked = 0, steps = 0, preemptions = 0, prefix_hits = 0;
  if (statuses)
    for (const auto& s : *statuses) {
      leaked += s.leaked_blocks;
      steps += std::int64_t(s.steps);
      preemptions += s.preemptions;
      prefix_hits += s.prefix_hit_tokens;
    }
  const double tokens_per_s = double(tokens) / wall_s;
  if (local)
    std::printf("dsbench load --inproc: %d replicas%s, %d requests, concurrency %d, prompt %d, gen %d\n",
                local->replicas(), f.runtime.null_backend ? " (null backend)" : "", f.requests, f.concurrency,
                f.prompt_len, f.gen);
  else
    std::printf("dsbench load --connect %s: %d requests, concurrency %d, prompt %d, gen %d\n", f.connect.c_str(),
                f.requests, f.concurrency, f.prompt_len, f.gen);
  std::printf("wall %.2f s, %.1f tokens/s, %.2f requests/s, %lld steps (%.1f us per step)\n", wall_s,
              tokens_per_s, double(completed) / wall_s, (long long)steps, steps ? wall_s * 1e6 / double(steps) : 0.0);
  std::printf("TTFT ms p50 %.2f p99 %.2f; TPOT ms p50 %.3f p99 %.3f\n", percentile(ttft_ms, 0.5),
              percentile(ttft_ms, 0.99), percentile(tpot_ms, 0.5), percentile(tpot_ms, 0.99));
  std::printf("requests %d finals %lld completed %lld duplicate_chunks %lld missing_chunks %lld "
              "kv_blocks_leaked %s extra_finals %lld\n",
              submitted, (long long)final_count, (long long)completed, (long long)duplicates, (long long)missing,
              local ? std::to_string(leaked).c_str() : "n/a (remote)", (long long)extra_finals);
  for (const auto& [code, n] : errors) std::printf("  error %s: %lld\n", code.c_str(), (long long)n);

  if (!f.json_path.empty()) {
    nlohmann::json j;
    j["mode"] = local ? "inproc" : "connect";
    if (!local) j["connect"] = f.connect;
    j["model"] = f.engine.model_dir;
    if (local) j["replicas"] = local->replicas();
    j["null_backend"] = f.runtime.null_backend;
    j["concurrency"] = f.concurrency;
    j["prompt_len"] = f.prompt_len;
    j["gen"] = f.gen;
    j["wall_s"] = wall_s;
    j["tokens_per_s"] = tokens_per_s;
    j["requests_per_s"] = double(completed) / wall_s;
    j["steps"] = steps;
    j["us_per_step"] = steps ? wall_s * 1e6 / double(steps) : 0.0;
    j["ttft_ms"] = {{"p50", percentile(ttft_ms, 0.5)}, {"p99", percentile(ttft_ms, 0.99)}};
    j["tpot_ms"] = {{"p50", percentile(tpot_ms, 0.5)}, {"p99", percentile(tpot_ms, 0.99)}};
    j["requests"] = submitted;
    j["finals"] = final_count;
    j["extra_finals"] = extra_finals;
    j["completed"] = completed;
    j["errors_by_code"] = errors;
    j["duplicate_chunks"] = duplicates;
    j["missing_chunks"] = missing;
    if (local) j["kv_blocks_leaked"] = leaked;
    else j["kv_blocks_leaked"] = nullptr;   // not observable from a client
    j["preemptions"] = preemptions;
    j["prefix_hit_tokens"] = prefix_hits;
    if (router) {
      j["retries"] = router->retries;
      j["resumptions"] = router->resumptions;
      j["breaker_opens"] = router->breaker_opens;
    }
    if (supervisor) j["restarts"] = supervisor->restarts;
    j["faults"] = f.faults;
    std::ofstream out(f.json_path);
    out << j.dump(2) << '\n';
    if (!out) {
      std::fprintf(stderr, "dsrt: cannot write %s\n", f.json_path.c_str());
      return 1;
    }
  }
  if (!f.metrics_path.empty() && local) {
    std::ofstream out(f.metrics_path);
    out << local->metrics().prometheus_text();
    if (!out) {
      std::fprintf(stderr, "dsrt: cannot write %s\n", f.metrics_path.c_str());
      return 1;
    }
  }
  // A broken contract is a failed run, whatever the speed; one cut short by --timeout-s is
  // not a measurement of the load asked for.
  const bool contract_kept =
      final_count == submitted && extra_finals == 0 && duplicates == 0 && missing == 0 && leaked == 0;
  if (timed_out)
    std::fprintf(stderr, "dsbench load: --timeout-s %lld ended the run: %d of %d requests submitted\n",
                 (long long)f.timeout_s, submitted, f.requests);
  return !contract_kept ? 3 : timed_out ? 4 : 0;
}

}  // namespace

std::function<int()> add_load_bench(CLI::App& app) {
  auto f = std::make_shared<load_flags>();
  auto* cmd = app.add_subcommand("load", "serving load through the runtime: throughput, TTFT/TPOT, contract counters");
  add_engine_flags(*cmd, f->engine);
  add_runtime_flags(*cmd, f->runtime);
  cmd->add_flag("--inproc", f->inproc, "run the runtime in this process");
  auto* connect = cmd->add_option("--connect", f->connect,
                                  "load a running cluster at dsrt://HOST:PORT instead (dsrun --nodes N)");
  auto* secret = cmd->add_option("--secret-file", f->secret_file, "the cluster's secret file (with --connect)");
  secret->needs(connect);
  connect->needs(secret);
  cmd->add_option("--requests", f->requests, "requests in all")->capture_default_str()->check(CLI::Range(1, 1000000));
  cmd->add_option("--concurrency", f->concurrency, "requests in flight at once")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--prompt-len", f->prompt_len, "prompt tokens per request")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--gen", f->gen, "tokens to generate per request")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--priorities", f->priorities, "requests cycle through priorities 0..N-1")->capture_default_str()->check(CLI::Range(1, 4));
  cmd->add_option("--fault", f->faults, "kill-shard:R@T, fail-steps:R@T[-U], slow:R:S@T[-U] (ms since start)");
  cmd->add_option("--timeout-s", f->timeout_s, "stop waiting after this long")->capture_default_str()->check(CLI::Range(1, 86400));
  cmd->add_option("--seed", f->seed, "prompt seed")->capture_default_str();
  cmd->add_option("--json", f->json_path, "write the results as JSON");
  cmd->add_option("--metrics", f->metrics_path, "write the runtime's metrics (Prometheus text) at the end");
  return [f] { return run_load(*f); };
}

}  // namespace dsrt::apps
