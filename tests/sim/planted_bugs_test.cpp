// Each invariant of the checker (sim/checker.h) catches a bug planted on purpose: the same
// configuration runs clean without the bug and breaks that invariant with it. Shrinking a
// failing run keeps the fault that causes it and drops the rest.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>

#include "sim/checker.h"
#include "sim/shrink.h"
#include "sim/simulation.h"
#include "tests/sim/sim_configs.h"

namespace dsrt::sim {
namespace {

using test::small;

bool mentions(const sim_report& r, const std::string& fragment) {
  for (const auto& v : r.violations)
    if (v.find(fragment) != std::string::npos) return true;
  return false;
}

// The configuration is clean without the bug and shows `fragment` with it.
void expect_caught(const sim_config& c, const planted_bugs& bugs, const std::string& fragment) {
  const auto clean = run_simulation(c);
  ASSERT_TRUE(clean.violations.empty()) << "without the bug: " << clean.violations.front();
  const auto planted = run_simulation(c, bugs);
  ASSERT_FALSE(planted.violations.empty()) << "the planted bug went unnoticed";
  EXPECT_TRUE(mentions(planted, fragment)) << "expected \"" << fragment << "\", first: " << planted.violations.front();
}

// The first seed from 1 whose clean run satisfies `wanted`.
template <class Wanted>
sim_config first_seed(sim_config c, Wanted wanted) {
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    c.seed = seed;
    if (wanted(c, run_simulation(c))) return c;
  }
  ADD_FAILURE() << "no seed in 1..50 sets the scene";
  return c;
}

// The batcher bound the checker holds: running <= sequences_max and running + waiting <=
// sequences_max + waiting_sequences_max (preempted sequences wait past the queue's cap).
TEST(CheckerLimits, ABatcherIsOverItsLimitsOnlyPastWhatPreemptionAllows) {
  checker_limits limits;
  limits.sequences_max = 2;
  limits.waiting_sequences_max = 1;
  invariant_checker ok(limits);
  ok.on_batcher(0, 2, 1);
  ok.on_batcher(0, 1, 2);   // one preempted on top of a full queue
  EXPECT_TRUE(ok.violations().empty()) << ok.violations().front();
  invariant_checker too_many_running(limits);
  too_many_running.on_batcher(0, 3, 0);
  EXPECT_EQ(too_many_running.violations().size(), 1u);
  invariant_checker too_many_held(limits);
  too_many_held.on_batcher(0, 2, 2);
  EXPECT_EQ(too_many_held.violations().size(), 1u);
}

TEST(CheckerTokens, EveryTokenOfAChunkIsTheModelsAtItsPlace) {
  checker_limits limits;
  const std::uint64_t id = 77, key = prompt_key(std::vector<std::int32_t>{5, 6, 7});
  const auto chunk = [&](std::uint32_t sequence, std::int64_t first, int count) {
    serving::token_chunk c{id, sequence, {}, {}};
    for (int k = 0; k < count; ++k) c.tokens.push_back(model_token(key, first + k));
    return c;
  };
  // A request with its first token streamed.
  const auto started = [&](invariant_checker& checker) {
    checker.on_arrival(clock_time{}, id, clock_time{} + std::chrono::seconds(10), 400, key);
    checker.on_chunk(clock_time{}, chunk(0, 0, 1));
  };
  invariant_checker ok(limits);
  started(ok);
  ok.on_chunk(clock_time{}, chunk(1, 1, 399));   // the model's residues wrap around many times
  EXPECT_TRUE(ok.violations().empty()) << ok.violations().front();
  for (int wrong : {0, 1, 150, 398}) {
    invariant_checker checker(limits);
    started(checker);
    auto c = chunk(1, 1, 399);
    c.tokens[std::size_t(wrong)] += 1;
    checker.on_chunk(clock_time{}, c);
    ASSERT_EQ(checker.violations().size(), 1u) << wrong;
    EXPECT_NE(checker.violations().front().find(fmt::format("token {} is", 1 + wrong)), std::string::npos)
        << checker.violations().front();
  }
}

TEST(PlantedBugs, ACachedAnswerOfAnotherPromptIsCaught) {
  const auto c = first_seed(test::falling_back_to_the_cache(1),
                            [](const sim_config&, const sim_report& r) { return r.response_cache_hits > 0; });
  planted_bugs bugs;
  bugs.wrong_cached_answer = true;
  expect_caught(c, bugs, "token 0 is");
}

TEST(PlantedBugs, ADuplicatedChunkBreaksTheStreamOrder) {
  planted_bugs bugs;
  bugs.duplicate_a_chunk = true;
  expect_caught(small(5), bugs, "request 1: chunk 0 where 1 was due");
}

TEST(PlantedBugs, AFinalWithATokenNoChunkCarriedIsCaught) {
  planted_bugs bugs;
  bugs.final_with_an_extra_token = true;
  expect_caught(small(5), bugs, "the final holds");
}

TEST(PlantedBugs, AFinalWithAWrongTokenIsCaught) {
  planted_bugs bugs;
  bugs.final_with_a_wrong_token = true;
  expect_caught(small(5), bugs, "the final's token");
}

TEST(PlantedBugs, ADroppedFinalIsARequestWithoutOne) {
  planted_bugs bugs;
  bugs.drop_a_final = true;
  expect_caught(small(5), bugs, "no final");
}

TEST(PlantedBugs, AChunkAfterTheFinalIsCaught) {
  planted_bugs bugs;
  bugs.chunk_after_final = true;
  expect_caught(small(5), bugs, "after its final");
}

TEST(PlantedBugs, AResumptionThatDrawsFromTheStartGivesWrongTokens) {
  const auto c = first_seed(small(1), [](const sim_config&, const sim_report& r) { return r.resumptions > 0; });
  planted_bugs bugs;
  bugs.wrong_token = true;
  expect_caught(c, bugs, "the model's is");
}

TEST(PlantedBugs, UnenforcedDeadlinesLetFinalsComeLate) {
  auto c = test::without_faults(3);
  c.qps = 60;   // four times what three CPU replicas serve: queues grow
  c.deadline_ms = milliseconds(3000);
  planted_bugs bugs;
  bugs.ignore_deadlines = true;
  expect_caught(c, bugs, "after its deadline");
}

TEST(PlantedBugs, DeadlinesReadAgainstASkewedClockStopRequestsEarly) {
  // A node's system clock jumps 29 s ahead; a 30 s deadline read as Unix time on that node
  // leaves requests there a second.
  auto c = test::without_faults(1);
  c.clock_jumps = 1;
  c.clock_jump_ms = milliseconds(29000);
  c = first_seed(c, [](const sim_config& s, const sim_report&) {
    const auto faults = draw_faults(s);
    return faults.front().shift.count() > 0 && faults.front().at < milliseconds(5000);
  });
  planted_bugs bugs;
  bugs.skewed_deadlines = true;
  expect_caught(c, bugs, "DEADLINE_EXCEEDED");
}

TEST(PlantedBugs, AdmissionPastItsLimitIsCaught) {
  auto c = small(2);
  c.qps = 60;
  c.router.admission.queue_requests_max = 20;
  c.router.admission.tenant_queue_requests_max = 20;
  planted_bugs bugs;
  bugs.admit_past_limit = true;
  expect_caught(c, bugs, "queue_requests_max is 20");
}

// The token limits and the per-tenant ones, each alone the one that binds.
TEST(PlantedBugs, AdmissionPastItsTokenAndTenantLimitsIsCaught) {
  auto tokens = small(2);
  tokens.qps = 60;
  tokens.router.admission.queue_tokens_max = 3000;
  tokens.router.admission.tenant_queue_tokens_max = 3000;
  planted_bugs bugs;
  bugs.admit_past_token_limits = true;
  expect_caught(tokens, bugs, "queue_tokens_max is 3000");
  auto tenant = small(2);
  tenant.qps = 60;
  tenant.router.admission.tenant_queue_requests_max = 3;
  expect_caught(tenant, bugs, "the limits are 3 /");
}

// Both quiescence checks see it: the sequences left over, and the KV blocks they hold.
TEST(PlantedBugs, SequencesNotReleasedOnARestartAreLeftOverWorkHoldingKvBlocks) {
  const auto c = first_seed(small(1), [](const sim_config&, const sim_report& r) { return r.resumptions > 0; });
  planted_bugs bugs;
  bugs.leak_a_sequence = true;
  expect_caught(c, bugs, "work left");
  EXPECT_TRUE(mentions(run_simulation(c, bugs), "blocks held at quiescence"));
}

// A KV block reference that nothing accounts for (neither a sequence nor the prefix index)
// is a leak even while every request is answered and no work is left.
TEST(PlantedBugs, ABlockReferenceNeverGivenBackIsALeakedKvBlock) {
  planted_bugs bugs;
  bugs.leak_a_block_reference = true;
  const auto planted = run_simulation(small(1), bugs);
  EXPECT_TRUE(mentions(planted, "KV blocks leaked")) << (planted.violations.empty() ? "unnoticed" : planted.violations.front());
  EXPECT_FALSE(mentions(planted, "work left"));
  expect_caught(small(1), bugs, "1 KV blocks leaked");
}

// A route the router keeps after its replica finished (here: a final it never acts on, for
// a request without a deadline that would otherwise end it) is caught at the end. Without
// faults: a kill of request 1's replica after its last token would end the route another
// way (the router completes a request whose tokens all arrived when its replica goes).
TEST(PlantedBugs, ARouteTheRouterNeverClosesIsHeldAtTheEnd) {
  planted_bugs bugs;
  bugs.lose_a_final_in_the_router = true;
  expect_caught(test::without_faults(1), bugs, "the router holds 1 routes at the end");
}

TEST(PlantedBugs, ABreakerThatSkipsHalfOpenIsAnIllegalTransition) {
  const auto c = first_seed(small(1), [](const sim_config&, const sim_report& r) { return r.breaker_opens > 0; });
  planted_bugs bugs;
  bugs.skip_half_open = true;
  expect_caught(c, bugs, "illegal breaker transition");
}

TEST(PlantedBugs, AReplicaThatNeverRejoinsIsNoRecovery) {
  planted_bugs bugs;
  bugs.lose_a_rejoin = true;
  expect_caught(small(4), bugs, "not recovered");
}

// Recovery is judged when recovery_ms has passed, not at the first healthy moment: a
// replica that rejoins and then falls silent again is no recovery.
TEST(PlantedBugs, AReplicaThatRejoinsThenFallsSilentIsNoRecovery) {
  auto c = small(4);
  c.failing_windows = c.slow_windows = 0;   // the kill alone: the service is whole at its rejoin
  planted_bugs bugs;
  bugs.rejoin_then_fall_silent = true;
  expect_caught(c, bugs, "not recovered");
}

TEST(Shrink, KeepsTheFaultThatBreaksAnInvariantAndDropsTheRest) {
  // A replica that never rejoins after a kill: of a schedule with many faults, only the
  // kill matters.
  auto c = test::with_every_fault(4);
  c.buggify = false;
  c.kills = 1;
  planted_bugs bugs;
  bugs.lose_a_rejoin = true;
  const auto all = draw_faults(c);
  const auto shrunk = shrink_faults(c, bugs);
  ASSERT_TRUE(shrunk.has_value());
  ASSERT_EQ(shrunk->kept.size(), 1u) << shrunk->violation;
  EXPECT_EQ(all[shrunk->kept[0]].kind, fault_kind::kill_node);
  EXPECT_NE(shrunk->violation.find("not recovered"), std::string::npos) << shrunk->violation;
  EXPECT_FALSE(shrink_faults(c).has_value()) << "without the bug nothing breaks";
}

}  // namespace
}  // namespace dsrt::sim
