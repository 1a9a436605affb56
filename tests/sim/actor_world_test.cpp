// The real actors under CAF's test coordinator, driven by the simulator: deterministic,
// every invariant holding over many seeds with kills and failing, slow and out-of-memory
// steps, and the same picture as the policy-level simulation of the same load.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "sim/actor_world.h"
#include "sim/scenarios.h"
#include "tests/sim/sim_configs.h"

namespace dsrt::sim {
namespace {

using test::small;

sim_config actor_faults(std::uint64_t seed) {
  auto c = small(seed);
  c.ooms = 2;
  c.buggify = true;
  c.buggify_probabilities.enable_probability = 0.5;
  return c;
}

TEST(ActorWorld, TheSameSeedGivesTheSameTraceAndDifferentSeedsDiffer) {
  const auto a = run_actor_world(actor_faults(11));
  const auto b = run_actor_world(actor_faults(11));
  const auto c = run_actor_world(actor_faults(12));
  EXPECT_EQ(a.trace_hash, b.trace_hash);
  EXPECT_EQ(a.events, b.events);
  EXPECT_NE(a.trace_hash, c.trace_hash);
  EXPECT_GT(a.requests, 50);
  EXPECT_GT(a.completed, 0);
}

TEST(ActorWorld, EveryInvariantHoldsOver100SeedsWithKillsFailingStepsAndBuggify) {
  std::int64_t restarts = 0, retries = 0, resumptions = 0, fired = 0;
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    const auto r = run_actor_world(actor_faults(seed));
    EXPECT_TRUE(r.violations.empty()) << "seed " << seed << ": " << r.violations.front();
    EXPECT_EQ(r.kills, 1) << "seed " << seed;
    restarts += r.restarts;
    for (const auto& [point, n] : r.buggify_fired) fired += n;
    retries += r.retries;
    resumptions += r.resumptions;
  }
  EXPECT_EQ(restarts, 100) << "the supervisor restarted every killed replica";
  EXPECT_GT(retries + resumptions, 0);
  EXPECT_GT(fired, 0) << "the actors' BUGGIFY points fired";
}

TEST(ActorWorld, AgreesWithThePolicySimulationOfTheSameLoad) {
  // No faults: the actors and the policy-level model see the same arrivals and the same
  // device, so they serve the same requests with nearly the same latencies.
  auto c = test::without_faults(3);
  const auto actors = run_actor_world(c);
  const auto policies = run_simulation(c);
  ASSERT_TRUE(actors.violations.empty()) << actors.violations.front();
  EXPECT_EQ(actors.requests, policies.requests);
  EXPECT_EQ(actors.completed, policies.completed);
  EXPECT_EQ(actors.tokens, policies.tokens);
  ASSERT_FALSE(actors.ttft_ms.empty());
  ASSERT_FALSE(actors.tpot_ms.empty());
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  EXPECT_NEAR(median(actors.ttft_ms), median(policies.ttft_ms), 0.1 * median(policies.ttft_ms) + 1);
  EXPECT_NEAR(median(actors.tpot_ms), median(policies.tpot_ms), 0.1 * median(policies.tpot_ms) + 1);
}

TEST(ActorWorld, TheBatcherStreamsByTheIntervalAsThePolicySimulationDoes) {
  // The batcher actor reads batcher.stream_interval_tokens: with faults and BUGGIFY every
  // invariant holds, and without faults it serves what the policy-level model serves.
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    auto c = actor_faults(seed);
    c.scheduler.stream_interval_tokens = 4;
    const auto r = run_actor_world(c);
    EXPECT_TRUE(r.violations.empty()) << "seed " << seed << ": " << r.violations.front();
  }
  auto c = test::without_faults(3);
  const auto per_token = run_actor_world(c);
  c.scheduler.stream_interval_tokens = 4;
  const auto actors = run_actor_world(c);
  const auto policies = run_simulation(c);
  ASSERT_TRUE(actors.violations.empty()) << actors.violations.front();
  EXPECT_EQ(actors.completed, policies.completed);
  EXPECT_EQ(actors.tokens, policies.tokens);
  EXPECT_EQ(actors.tokens, per_token.tokens);
  EXPECT_LT(actors.events, per_token.events) << "fewer chunk messages";
}

TEST(ActorWorld, AReplicaTheSupervisorMayNotRestartIsNoRecovery) {
  // With no restarts allowed, a killed replica stays down: the recovery invariant says so.
  auto c = small(4);
  c.failing_windows = c.slow_windows = 0;
  c.recovery_ms = milliseconds(5000);
  auto r = run_actor_world(c);
  ASSERT_TRUE(r.violations.empty()) << r.violations.front();
  EXPECT_TRUE(validate_actor_world(c).ok());
  c.restarts.restarts_max = 0;
  r = run_actor_world(c);
  ASSERT_FALSE(r.violations.empty());
  EXPECT_NE(r.violations.front().find("not recovered"), std::string::npos) << r.violations.front();
}

TEST(ActorWorld, FaultsThatNeedLinksAreRefused) {
  auto c = small(1);
  c.pauses = 1;
  const auto v = validate_actor_world(c);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.err().code, error_code::invalid_argument);
  EXPECT_NE(v.err().message.find("pauses"), std::string::npos);
}

// As in the policy world, BUGGIFY goes quiet when the last fault ends. The run of
// dssim --scenario basic --actors --duration 20 --ooms 2 --buggify --buggify-points
// breaker.spurious_failure --buggify-enable 1 --buggify-fire 0.2 (the spurious breaker
// failure in every run, on one outcome in five): seeds (of 3,000, where 5 did and none
// broke an invariant quiet; --buggify-after-faults --sweep 3000 lists them) whose spurious
// failures after the faults left a breaker open at the recovery check. Firing to the end they are "not recovered";
// quiet, they hold. (The 10,000 seeds with the default probabilities have no such seed
// since probes succeed with their first tokens.)
TEST(ActorWorld, BuggifyGoesQuietWhenTheFaultsEnd) {
  int broken_when_firing = 0;
  for (std::uint64_t seed : {197, 334, 1091}) {
    auto c = scenario_config("basic", seed, 0, 0);
    c.duration_ms = milliseconds(20000);
    c.ooms = 2;
    c.buggify = true;
    c.buggify_probabilities.only = {"breaker.spurious_failure"};
    c.buggify_probabilities.enable_probability = 1;
    c.buggify_probabilities.fire_probability = 0.2;
    const auto quiet = run_actor_world(c);
    EXPECT_TRUE(quiet.violations.empty()) << "seed " << seed << ": " << quiet.violations.front();
    c.buggify_after_faults = true;
    const auto firing = run_actor_world(c);
    for (const auto& v : firing.violations) broken_when_firing += v.find("not recovered") != std::string::npos;
  }
  EXPECT_GT(broken_when_firing, 0) << "none of the seeds needs the quiet phase any more: pick new ones";
}

}  // namespace
}  // namespace dsrt::sim
