// The simulator runs the real routing and batching policies under virtual time: the same
// seed gives the same trace, different seeds differ, every invariant holds over many seeds
// with faults, and the checker catches bugs planted on purpose.
#include <gtest/gtest.h>

#include "sim/simulation.h"

namespace dsrt::sim {
namespace {

sim_config small(std::uint64_t seed) {
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

TEST(Simulation, TheSameSeedGivesTheSameTraceAndDifferentSeedsDiffer) {
  const auto a = run_simulation(small(42));
  const auto b = run_simulation(small(42));
  const auto c = run_simulation(small(43));
  EXPECT_EQ(a.trace_hash, b.trace_hash);
  EXPECT_EQ(a.events, b.events);
  EXPECT_EQ(a.completed, b.completed);
  EXPECT_NE(a.trace_hash, c.trace_hash);
  EXPECT_GT(a.requests, 50);
  EXPECT_GT(a.completed, 0);
}

TEST(Simulation, EveryInvariantHoldsOver200SeedsWithFaults) {
  std::int64_t kills = 0, resumptions = 0, errors = 0;
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    const auto r = run_simulation(small(seed));
    EXPECT_TRUE(r.violations.empty()) << "seed " << seed << ": " << r.violations.front()
                                      << "\nreplay: dssim --scenario basic --seed " << seed;
    kills += r.kills;
    resumptions += r.resumptions;
    for (const auto& [code, n] : r.errors_by_code) errors += n;
  }
  // The faults did happen and did reach requests mid-stream.
  EXPECT_EQ(kills, 200);
  EXPECT_GT(resumptions, 0);
  (void)errors;
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

TEST(Simulation, TheCheckerCatchesADuplicatedChunk) {
  planted_bugs bugs;
  bugs.duplicate_a_chunk = true;
  const auto r = run_simulation(small(5), bugs);
  ASSERT_FALSE(r.violations.empty());
  EXPECT_NE(r.violations.front().find("request 1"), std::string::npos) << r.violations.front();
}

TEST(Simulation, TheCheckerCatchesADroppedFinal) {
  planted_bugs bugs;
  bugs.drop_a_final = true;
  const auto r = run_simulation(small(5), bugs);
  ASSERT_FALSE(r.violations.empty());
  EXPECT_NE(r.violations.front().find("no final"), std::string::npos) << r.violations.front();
}

}  // namespace
}  // namespace dsrt::sim
