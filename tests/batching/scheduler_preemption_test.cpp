// Preemption by recompute when KV blocks run out: the lowest-precedence running sequence
// goes back to waiting, its blocks are reused, and it later recomputes to exactly the
// output it would have produced alone.
#include <gtest/gtest.h>

#include "runtime/buggify.h"
#include "runtime/random.h"
#include "tests/batching/scheduler_driver.h"

namespace dsrt::batching {
namespace {

using test::alone;
using test::driver;
using test::prompt_of;

constexpr int block_tokens = 4;

TEST(SchedulerPreemption, OutOfBlocksPreemptsTheLatestAndRecomputes) {
  scheduler_config c;
  c.step_tokens_max = 256;
  c.sequences_max = 8;
  c.batch_wait_ms = milliseconds(0);
  c.prefix_cache = false;
  batch_scheduler s(c, 12, block_tokens);   // 48 tokens of KV
  driver d{s};
  d.add(1, prompt_of(12, 1), 20);   // each needs 8 blocks at the end: both cannot fit
  d.add(2, prompt_of(12, 2), 20);
  std::vector<std::uint64_t> preempted;
  for (int step = 0; step < 200 && !d.all_done(); ++step) {
    const auto plan = d.step();
    preempted.insert(preempted.end(), plan.preempted.begin(), plan.preempted.end());
    d.now += milliseconds(10);
  }
  ASSERT_TRUE(d.all_done());
  ASSERT_FALSE(preempted.empty()) << "the cache is too small for both: one must be preempted";
  EXPECT_EQ(preempted.front(), 2u) << "the later arrival of equal priority goes first";
  EXPECT_EQ(s.counters().preemptions, std::int64_t(preempted.size()));
  EXPECT_EQ(d.sequences.at(1).tokens, alone(prompt_of(12, 1), 20));
  EXPECT_EQ(d.sequences.at(2).tokens, alone(prompt_of(12, 2), 20));
  EXPECT_EQ(s.free_blocks(), s.total_blocks());
}

// Priority decides who keeps its blocks. A (class 3) decodes while B (class 0) prefills
// in chunks; when B needs a block and none is free, A goes, not B — whichever of the two
// comes first in the step (decodes went before every prefill chunk, so A was planned, B
// found no victim and preempted itself), and a lower class's sequence never preempts a
// higher one to make room for itself.
TEST(SchedulerPreemption, AHigherPriorityClassKeepsItsBlocks) {
  scheduler_config c;
  c.step_tokens_max = 256;
  c.prefill_chunk_tokens = 4;
  c.batch_wait_ms = milliseconds(0);
  c.batch_fill_sequences = 1;
  c.prefix_cache = false;
  batch_scheduler s(c, 6, block_tokens);   // 24 tokens of KV
  driver d{s};
  d.add(1, prompt_of(3, 1), 16, /*priority=*/3);
  d.add(2, prompt_of(20, 2), 1, /*priority=*/0);
  std::vector<std::uint64_t> preempted;
  for (int step = 0; step < 200 && !d.all_done(); ++step) {
    const auto plan = d.step();
    preempted.insert(preempted.end(), plan.preempted.begin(), plan.preempted.end());
    d.now += milliseconds(1);   // well under aging_ms: the classes stay apart
  }
  ASSERT_TRUE(d.all_done());
  ASSERT_FALSE(preempted.empty()) << "the cache is too small for both";
  EXPECT_EQ(preempted, std::vector<std::uint64_t>(preempted.size(), 1u)) << "the class-0 sequence was preempted";
  EXPECT_EQ(d.sequences.at(1).tokens, alone(prompt_of(3, 1), 16));
  EXPECT_EQ(d.sequences.at(2).tokens, alone(prompt_of(20, 2), 1));
  EXPECT_EQ(s.free_blocks(), s.total_blocks());
}

// A preempted sequence goes back to waiting even when waiting_sequences_max already wait:
// it was accepted, and dropping it would lose a request. New submissions are refused while
// the queue is over its cap; what stays bounded is running + waiting.
TEST(SchedulerPreemption, APreemptedSequenceWaitsPastTheQueueCapAndNewOnesAreRefused) {
  scheduler_config c;
  c.step_tokens_max = 256;
  c.sequences_max = 2;
  c.waiting_sequences_max = 1;
  c.batch_wait_ms = milliseconds(0);
  c.batch_fill_sequences = 1;
  c.prefix_cache = false;
  batch_scheduler s(c, 6, block_tokens);   // 24 tokens of KV: A and B cannot both finish
  driver d{s};
  d.add(1, prompt_of(4, 1), 16);
  d.step();   // A runs
  d.add(2, prompt_of(4, 2), 16);
  d.step();   // B runs
  d.add(3, prompt_of(4, 3), 4);   // C waits (sequences_max)
  bool over_cap = false;
  for (int step = 0; step < 200 && !d.all_done(); ++step) {
    const auto plan = d.step();
    s.check_invariants();
    if (s.waiting() > c.waiting_sequences_max) {
      over_cap = true;
      sequence_request r;
      r.id = 4;
      r.tokens = prompt_of(4, 4);
      r.max_new_tokens = 1;
      EXPECT_EQ(s.submit(d.now, r).err().code, error_code::overloaded);
    }
    EXPECT_LE(s.running() + s.waiting(), c.sequences_max + c.waiting_sequences_max);
    d.now += milliseconds(10);
  }
  ASSERT_TRUE(d.all_done());
  EXPECT_TRUE(over_cap) << "no preemption put the queue over its cap";
  EXPECT_GT(s.counters().preemptions, 0);
  for (std::uint64_t id : {1u, 2u})
    EXPECT_EQ(d.sequences.at(id).tokens, alone(prompt_of(4, int(id)), 16)) << "sequence " << id;
  EXPECT_EQ(d.sequences.at(3).tokens, alone(prompt_of(4, 3), 4));
}

// A preempted sequence takes its own blocks back from the prefix index when it is
// re-admitted; that is no prefix hit (the hit rate, hits over prompt tokens, would pass 1).
TEST(SchedulerPreemption, BlocksARecomputeGetsBackAreNoPrefixHit) {
  scheduler_config c;
  c.step_tokens_max = 256;
  c.sequences_max = 8;
  c.batch_wait_ms = milliseconds(0);
  batch_scheduler s(c, 12, block_tokens);   // the prefix cache on, 48 tokens of KV
  driver d{s};
  d.add(1, prompt_of(12, 1), 20);   // distinct prompts: nothing to share
  d.add(2, prompt_of(12, 2), 20);
  for (int step = 0; step < 200 && !d.all_done(); ++step) {
    d.step();
    d.now += milliseconds(10);
  }
  ASSERT_TRUE(d.all_done());
  ASSERT_GT(s.counters().preemptions, 0);
  EXPECT_EQ(s.counters().prefix_hit_tokens, 0);
  EXPECT_EQ(d.sequences.at(2).tokens, alone(prompt_of(12, 2), 20));
}

TEST(SchedulerPreemption, ACallThatPreemptsEverythingRunningAsksToBeCalledAgain) {
  // Found by the simulator with BUGGIFY: when every running sequence was preempted and
  // nothing else planned, the empty plan did not count as a step, so the "not re-admitted
  // in this step" mark stayed on the preempted sequence forever and the replica stalled
  // with work waiting. Only the preempt point is on, firing whenever it is evaluated.
  scheduler_config c;
  c.batch_wait_ms = milliseconds(0);
  batch_scheduler s(c, 64, block_tokens);
  driver d{s};
  d.add(1, prompt_of(8, 1), 6);
  d.step();   // prefill: sequence 1 runs
  ASSERT_EQ(s.running(), 1);
  {
    buggify_config only_preempt;
    only_preempt.enable_probability = 1;
    only_preempt.fire_probability = 1;
    only_preempt.only = {"scheduler.preempt"};
    buggify_scope scope(7, only_preempt);
    const auto plan = s.schedule(d.now);
    EXPECT_TRUE(plan.empty());
    EXPECT_EQ(plan.preempted, std::vector<std::uint64_t>{1});
    ASSERT_TRUE(plan.wake_at.has_value()) << "nothing else would call schedule() again";
    EXPECT_EQ(*plan.wake_at, d.now);
    EXPECT_EQ(scope.fired().at("scheduler.preempt"), 1);
  }
  // The next call re-admits it (recompute), and it finishes with the output it has alone.
  for (int step = 0; step < 50 && !d.all_done(); ++step) {
    d.step();
    d.now += milliseconds(10);
  }
  ASSERT_TRUE(d.all_done());
  EXPECT_EQ(d.sequences.at(1).tokens, alone(prompt_of(8, 1), 6));
}

TEST(SchedulerPreemption, RandomLoadsMatchRunningAloneAndLeakNothing) {
  // Seeded random mixes of lengths, priorities, cancellations and a tight cache.
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    xoshiro256 rng(seed);
    scheduler_config c;
    c.step_tokens_max = 16 + std::int64_t(rng.next() % 64);
    c.sequences_max = 1 + int(rng.next() % 8);
    c.prefill_chunk_tokens = 1 + std::int64_t(rng.next() % 24);
    c.batch_wait_ms = milliseconds(0);
    c.prefix_cache = rng.next() % 2 == 0;
    c.prefix_cached_blocks_max = 8;
    if (c.sequences_max > c.step_tokens_max) c.sequences_max = int(c.step_tokens_max);
    batch_scheduler s(c, 24, block_tokens);   // 96 tokens of KV
    driver d{s};
    std::vector<std::uint64_t> cancelled;
    for (std::uint64_t id = 1; id <= 12; ++id) {
      // Some prompts share a prefix so the index has something to find.
      auto prompt = prompt_of(1 + rng.next() % 40, rng.next() % 2 ? 7 : int(id));
      d.add(id, prompt, 1 + std::int64_t(rng.next() % 30), int(rng.next() % 4));
    }
    for (int step = 0; step < 2000 && !d.all_done(); ++step) {
      if (rng.next() % 50 == 0) {
        const std::uint64_t victim = 1 + rng.next() % 12;
        if (!d.sequences.at(victim).done) {
          s.cancel(victim);
          cancelled.push_back(victim);
        }
      }
      d.step();
      d.now += milliseconds(1 + rng.next() % 20);
    }
    ASSERT_TRUE(d.all_done()) << "seed " << seed;
    for (auto& [id, e] : d.sequences) {
      if (std::find(cancelled.begin(), cancelled.end(), id) != cancelled.end()) continue;
      const std::vector<std::int32_t> prompt(e.tokens.begin(), e.tokens.end() - e.max_new);
      EXPECT_EQ(e.tokens, alone(prompt, e.max_new)) << "sequence " << id << " seed " << seed;
    }
    EXPECT_EQ(s.free_blocks() + s.prefix_cached_blocks(), s.total_blocks()) << "seed " << seed;
    EXPECT_EQ(s.leaked_blocks(), 0) << "seed " << seed;
  }
}

}  // namespace
}  // namespace dsrt::batching
