// The simulator runs the real routing and batching policies under virtual time: the same
// seed gives the same trace, different seeds differ, and every invariant holds over many
// seeds with every kind of fault and the production code's BUGGIFY points firing.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string>

#include "runtime/buggify.h"
#include "sim/scenarios.h"
#include "sim/simulation.h"
#include "tests/sim/sim_configs.h"

namespace dsrt::sim {
namespace {

using test::small;
using test::with_every_fault;

TEST(Simulation, TheSameSeedGivesTheSameTraceAndDifferentSeedsDiffer) {
  const auto a = run_simulation(with_every_fault(42));
  const auto b = run_simulation(with_every_fault(42));
  const auto c = run_simulation(with_every_fault(43));
  EXPECT_EQ(a.trace_hash, b.trace_hash);
  EXPECT_EQ(a.events, b.events);
  EXPECT_EQ(a.completed, b.completed);
  EXPECT_EQ(a.buggify_fired, b.buggify_fired);
  EXPECT_EQ(a.faults, b.faults);
  EXPECT_NE(a.trace_hash, c.trace_hash);
  EXPECT_GT(a.requests, 50);
  EXPECT_GT(a.completed, 0);
}

// The run is processes (the router's side, groups of nodes) that meet once per link
// latency; threads run them side by side. Which thread runs which process must change
// nothing: the same trace, events, outcomes, BUGGIFY firings and violations.
TEST(Simulation, ThreadsChangeNothingTheProcessesFixTheTrace) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    auto c = with_every_fault(seed);
    c.swizzles = seed % 2;
    c.replicas = 6;
    c.replica_processes = 3;
    const auto one = run_simulation(c);
    for (int threads : {2, 4, -2}) {
      // -2: two threads and one by turns (the tuner's epochs made short enough to switch
      // many times in a run of tens of milliseconds).
      c.threads = std::abs(threads);
      c.adapt_threads = threads < 0;
      c.thread_epoch_us = std::chrono::microseconds(200);
      const auto many = run_simulation(c);
      if (c.adapt_threads) {
        EXPECT_GT(many.thread_switches, 0) << "seed " << seed;
        EXPECT_GT(many.single_wall_s, 0) << "seed " << seed;
      }
      EXPECT_EQ(many.trace_hash, one.trace_hash) << "seed " << seed << ", " << threads << " threads";
      EXPECT_EQ(many.events, one.events) << "seed " << seed;
      EXPECT_EQ(many.completed, one.completed) << "seed " << seed;
      EXPECT_EQ(many.errors_by_code, one.errors_by_code) << "seed " << seed;
      EXPECT_EQ(many.buggify_fired, one.buggify_fired) << "seed " << seed;
      EXPECT_EQ(many.violations, one.violations) << "seed " << seed;
      EXPECT_EQ(many.corrupt_detected, one.corrupt_detected) << "seed " << seed;
    }
    EXPECT_TRUE(one.violations.empty()) << "seed " << seed << ": " << one.violations.front();
  }
  // Another partition is another (equally valid) run of the same seed.
  auto c = with_every_fault(3);
  c.replicas = 6;
  c.replica_processes = 1;
  const auto coarse = run_simulation(c);
  c.replica_processes = 6;
  const auto fine = run_simulation(c);
  EXPECT_TRUE(coarse.violations.empty() && fine.violations.empty());
  EXPECT_EQ(coarse.faults, fine.faults);
}

// A run without buggify fires no point even when its caller has a scope open: each
// simulated process runs under its own scope or none, on any thread.
TEST(Simulation, ACallersBuggifyScopeDoesNotReachTheRun) {
  auto c = small(4);
  const auto plain = run_simulation(c);
  buggify_config always;
  always.enable_probability = 1.0;
  always.fire_probability = 1.0;
  buggify_scope caller(9, always);
  for (int threads : {1, 2}) {
    c.threads = threads;
    const auto inside = run_simulation(c);
    EXPECT_EQ(inside.trace_hash, plain.trace_hash) << threads << " threads";
    EXPECT_TRUE(inside.buggify_fired.empty());
  }
  EXPECT_TRUE(caller.fired().empty());
}

TEST(Simulation, EveryInvariantHoldsOver200SeedsWithEveryFaultAndBuggify) {
  std::set<std::string> kinds, points;
  std::int64_t resumptions = 0, corrupt_refused = 0, recovered = 0;
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    const auto r = run_simulation(with_every_fault(seed));
    EXPECT_TRUE(r.violations.empty()) << "seed " << seed << ": " << r.violations.front()
                                      << "\nreplay: " << test::replay_command(seed);
    for (const auto& f : r.faults) {   // "12.345 s kind ..."
      std::istringstream words(f);
      std::string at, unit, kind;
      words >> at >> unit >> kind;
      kinds.insert(kind);
    }
    for (const auto& [point, n] : r.buggify_fired) points.insert(point);
    resumptions += r.resumptions;
    corrupt_refused += r.corrupt_detected;
    EXPECT_EQ(r.corrupt_undetected, 0) << "seed " << seed << ": a damaged frame was read as intact";
    recovered += r.recovered_after_ms.has_value();
  }
  // Every kind of fault did run, reached requests mid-stream, and the service came back.
  EXPECT_EQ(kinds, (std::set<std::string>{"kill_node", "fail_steps", "slow_device", "pause_node", "oom_step",
                                          "clock_jump", "corrupt_message"}));
  EXPECT_EQ(points, (std::set<std::string>{"scheduler.refuse_submit", "scheduler.preempt", "scheduler.small_step",
                                           "breaker.spurious_failure"}));
  EXPECT_GT(resumptions, 0);
  EXPECT_GT(corrupt_refused, 100) << "most corrupt_message faults hit a frame, and its checksum refuses it";
  EXPECT_EQ(recovered, 200);
}

// The fallback chain under faults: with one replica, each kill leaves the router nothing to
// route to, and repeated prompts find their answers in the response cache; the checker
// holds those answers to the model's tokens like any other.
TEST(Simulation, RepeatedPromptsAreAnsweredFromTheCacheWhenNoReplicaCanServe) {
  std::int64_t fallbacks = 0, hits = 0;
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    const auto r = run_simulation(test::falling_back_to_the_cache(seed));
    EXPECT_TRUE(r.violations.empty()) << "seed " << seed << ": " << r.violations.front();
    fallbacks += r.fallbacks;
    hits += r.response_cache_hits;
  }
  EXPECT_GT(fallbacks, 0);
  EXPECT_GT(hits, 0) << "no repeated prompt was answered from the cache";
}

TEST(Simulation, SwizzleCloggingTheLinksKeepsEveryInvariant) {
  std::int64_t resumptions = 0, retries = 0;
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    auto c = small(seed);
    c.kills = 0;
    c.swizzles = 2;
    c.swizzle_hold_ms = milliseconds(1500);   // longer than detection_ms: replicas go "down"
    const auto r = run_simulation(c);
    EXPECT_TRUE(r.violations.empty()) << "seed " << seed << ": " << r.violations.front();
    resumptions += r.resumptions;
    retries += r.retries;
  }
  EXPECT_GT(resumptions + retries, 0) << "clogs long enough to be detected move requests";
}

TEST(Simulation, AStreamIntervalChangesTheMessagesNotWhatClientsGet) {
  // Without faults, chunks of 4 tokens (the first alone) give every client the same tokens
  // at the same first-token and last-token times as a chunk per token, in fewer messages.
  auto c = test::without_faults(5);
  const auto per_token = run_simulation(c);
  c.scheduler.stream_interval_tokens = 4;
  const auto chunked = run_simulation(c);
  ASSERT_TRUE(chunked.violations.empty()) << chunked.violations.front();
  EXPECT_EQ(chunked.requests, per_token.requests);
  EXPECT_EQ(chunked.completed, per_token.completed);
  EXPECT_EQ(chunked.tokens, per_token.tokens);
  EXPECT_EQ(chunked.ttft_ms, per_token.ttft_ms);
  EXPECT_EQ(chunked.tpot_ms, per_token.tpot_ms);
  EXPECT_NE(chunked.trace_hash, per_token.trace_hash);
}

TEST(Simulation, EveryInvariantHoldsWithAStreamIntervalOver100SeedsWithEveryFault) {
  // Tokens that wait for their chunk are lost with a killed replica: the resumed attempt
  // must send them again, in order, without gaps; failed steps and stops send them first.
  std::int64_t resumptions = 0;
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    auto c = with_every_fault(seed);
    c.scheduler.stream_interval_tokens = 4;
    const auto r = run_simulation(c);
    EXPECT_TRUE(r.violations.empty()) << "seed " << seed << ": " << r.violations.front()
                                      << "\nreplay: " << test::replay_command(seed) << " --stream-interval 4";
    resumptions += r.resumptions;
  }
  EXPECT_GT(resumptions, 0);
}

TEST(Simulation, KeptFaultsReplayASubsetOfTheSchedule) {
  auto c = with_every_fault(9);
  const auto all = draw_faults(c);
  ASSERT_GE(all.size(), 8u);
  c.faults_kept = std::vector<std::size_t>{1, 3};
  const auto r = run_simulation(c);
  EXPECT_EQ(r.faults, (std::vector<std::string>{describe(all[1]), describe(all[3])}));
  c.faults_kept = std::vector<std::size_t>{};
  EXPECT_TRUE(run_simulation(c).faults.empty());
}

// BUGGIFY points are faults too: they go quiet when the last scheduled fault ends, so the
// recovery check sees a service with every fault stopped. Seeds of the 10,000-seed sweep
// (ninth session's traces: a new replica-choice score, prompts two tokens per draw, probes
// judged by their first tokens; 569 from a 12,000-seed sweep once requests of a replica that
// leaves stopped counting against its breaker and requests wait for a replica, the only one
// of those seeds still broken when the points keep firing)
// (dssim --scenario basic --duration 20 --pauses 1 --ooms 2 --clock-jumps 1 --corruptions 2
// --swizzles 1 --buggify --sweep 10000, with --buggify-after-faults to list them) where a
// spurious breaker failure after the faults reopened a breaker that no traffic was left to
// close: with the points firing to the end they are "not recovered"; quiet, every
// invariant holds.
TEST(Simulation, BuggifyGoesQuietWhenTheFaultsEndSoRecoveryIsJudgedWithoutIt) {
  int broken_when_firing = 0;
  for (std::uint64_t seed : {569, 923, 7403}) {
    auto c = scenario_config("basic", seed, 0, 0);
    c.duration_ms = milliseconds(20000);
    c.pauses = 1;
    c.ooms = 2;
    c.clock_jumps = 1;
    c.corruptions = 2;
    c.swizzles = 1;
    c.buggify = true;
    const auto quiet = run_simulation(c);
    EXPECT_TRUE(quiet.violations.empty()) << "seed " << seed << ": " << quiet.violations.front();
    c.buggify_after_faults = true;
    const auto firing = run_simulation(c);
    for (const auto& v : firing.violations) broken_when_firing += v.find("not recovered") != std::string::npos;
  }
  EXPECT_GT(broken_when_firing, 0) << "none of the seeds needs the quiet phase any more: pick new ones";
}

}  // namespace
}  // namespace dsrt::sim
