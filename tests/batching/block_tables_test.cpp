// The shard's side of the plans' block tables: a plan carries only what changed in each
// sequence's table, and the shard's copy follows it exactly.
#include <gtest/gtest.h>

#include <vector>

#include "runtime/batching/block_tables.h"
#include "tests/batching/scheduler_driver.h"

namespace dsrt::batching {
namespace {

planned_sequence entry(std::uint64_t id, std::int32_t kept, std::vector<std::int32_t> blocks) {
  planned_sequence p;
  p.id = id;
  p.table_kept = kept;
  p.new_blocks = std::move(blocks);
  return p;
}

std::vector<std::int32_t> held(const block_tables& t, std::uint64_t id) {
  const auto s = t.table(id);
  return {s.begin(), s.end()};
}

TEST(BlockTables, FollowNewKeptCopiedAndReleasedTables) {
  block_tables t;
  step_plan first;
  first.sequences = {entry(1, 0, {10, 11}), entry(2, 0, {20})};
  ASSERT_TRUE(t.apply(first).ok());
  EXPECT_EQ(held(t, 1), (std::vector<std::int32_t>{10, 11}));
  step_plan second;   // 1 grows by a block; 2's last block was copied on write (21 replaces 20)
  second.sequences = {entry(1, 2, {12}), entry(2, 0, {21})};
  ASSERT_TRUE(t.apply(second).ok());
  EXPECT_EQ(held(t, 1), (std::vector<std::int32_t>{10, 11, 12}));
  EXPECT_EQ(held(t, 2), (std::vector<std::int32_t>{21}));
  step_plan third;    // 1 decodes into its last block: nothing to send; 2 is released
  third.sequences = {entry(1, 3, {})};
  third.released = {2};
  ASSERT_TRUE(t.apply(third).ok());
  EXPECT_EQ(held(t, 1), (std::vector<std::int32_t>{10, 11, 12}));
  EXPECT_TRUE(held(t, 2).empty());
  EXPECT_EQ(t.size(), 1u);
  step_plan fourth;   // released and admitted again in one plan: the release goes first
  fourth.released = {1};
  fourth.sequences = {entry(1, 0, {30})};
  ASSERT_TRUE(t.apply(fourth).ok());
  EXPECT_EQ(held(t, 1), (std::vector<std::int32_t>{30}));
}

TEST(BlockTables, APlanKeepingMoreThanTheShardHoldsIsATypedError) {
  block_tables t;
  step_plan first;
  first.sequences = {entry(1, 0, {10})};
  ASSERT_TRUE(t.apply(first).ok());
  step_plan bad;
  bad.sequences = {entry(1, 1, {11}), entry(7, 2, {70})};   // 7: a table this shard never saw
  const auto s = bad.sequences.size();
  const auto applied = t.apply(bad);
  ASSERT_FALSE(applied.ok());
  EXPECT_EQ(applied.err().code, error_code::internal);   // the router retries, the request is not at fault
  EXPECT_NE(applied.err().to_string().find("sequence 7 keeps 2 blocks of a table of 0"), std::string::npos)
      << applied.err().to_string();
  EXPECT_EQ(s, 2u);
  EXPECT_EQ(held(t, 1), (std::vector<std::int32_t>{10, 11}));   // the entries before it applied
  step_plan reset;    // a new scheduler (a restarted replica) starts over
  reset.tables_reset = true;
  reset.sequences = {entry(9, 0, {90})};
  ASSERT_TRUE(t.apply(reset).ok());
  EXPECT_TRUE(held(t, 1).empty());
  EXPECT_EQ(t.size(), 1u);
}

// A replica's old batcher (its scheduler) may still send a plan after the new one took
// over: the shard follows the scheduler of the last reset and refuses the other's plans.
TEST(BlockTables, FollowTheSchedulerOfTheLastResetAndRefuseAnothers) {
  block_tables t;
  step_plan mine;
  mine.scheduler = 5;
  mine.tables_reset = true;
  mine.sequences = {entry(1, 0, {10})};
  ASSERT_TRUE(t.apply(mine).ok());
  step_plan stale;   // the old scheduler's, a table for the same request id
  stale.scheduler = 4;
  stale.sequences = {entry(1, 0, {99})};
  stale.released = {1};
  const auto refused = t.apply(stale);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.err().code, error_code::internal);
  t.release(stale);   // nor do its releases apply
  EXPECT_EQ(held(t, 1), (std::vector<std::int32_t>{10}));
  step_plan skipped;  // a plan the shard fails without running still releases
  skipped.scheduler = 5;
  skipped.released = {1};
  skipped.sequences = {entry(2, 0, {20})};
  t.release(skipped);
  EXPECT_TRUE(held(t, 1).empty());
  EXPECT_TRUE(held(t, 2).empty());
  EXPECT_EQ(t.size(), 0u);
}

// The point of sending changes: each block id crosses to the shard once, not once per step.
TEST(BlockTables, EachBlockIdIsSentOnceOverASequencesLife) {
  scheduler_config c;
  c.step_tokens_max = 64;
  c.sequences_max = 8;
  c.prefill_chunk_tokens = 16;
  c.batch_wait_ms = milliseconds(0);
  c.prefix_cache = false;
  batch_scheduler s(c, 64, 4);
  test::driver d{s};
  d.add(1, test::prompt_of(30, 1), 50);   // 80 tokens: 20 blocks of 4, over 2 prefill and 50 decode steps
  while (!d.all_done()) d.step();
  EXPECT_EQ(d.block_ids_sent, 20);
  EXPECT_GT(d.steps, 50);
}

}  // namespace
}  // namespace dsrt::batching
