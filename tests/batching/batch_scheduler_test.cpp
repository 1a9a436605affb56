// Continuous batching, chunked prefill, the sequence cap, priorities with aging, light-load
// waiting, cancellation and deadlines, prefix reuse: the batch_scheduler stepped one step
// at a time (scheduler_driver.h checks every plan and the invariants after each step).
#include <gtest/gtest.h>

#include <algorithm>

#include <limits>

#include "tests/batching/scheduler_driver.h"

namespace dsrt::batching {
namespace {

using test::alone;
using test::driver;
using test::prompt_of;

constexpr int block_tokens = 4;

scheduler_config config_with(std::int64_t budget, int sequences, std::int64_t chunk) {
  scheduler_config c;
  c.step_tokens_max = budget;
  c.sequences_max = sequences;
  c.prefill_chunk_tokens = chunk;
  c.batch_wait_ms = milliseconds(0);
  return c;
}

TEST(BatchScheduler, ChunkedPrefillSamplesOnlyAfterTheLastChunk) {
  batch_scheduler s(config_with(64, 8, 16), 64, block_tokens);
  driver d{s};
  d.add(1, prompt_of(40, 1), 3);
  const std::vector<std::int64_t> slices = {16, 16, 8, 1, 1};
  for (std::size_t i = 0; i < slices.size(); ++i) {
    const auto plan = d.step();
    ASSERT_EQ(plan.sequences.size(), 1u) << "at step " << i;
    EXPECT_EQ(std::int64_t(plan.sequences[0].tokens.size()), slices[i]) << "at step " << i;
    EXPECT_EQ(plan.sequences[0].sample, i >= 2) << "at step " << i;
  }
  EXPECT_TRUE(d.all_done());
  EXPECT_EQ(d.sequences.at(1).tokens, alone(prompt_of(40, 1), 3));
  EXPECT_EQ(s.free_blocks() + s.prefix_cached_blocks(), s.total_blocks());
}

TEST(BatchScheduler, DecodesGoFirstAndPrefillFillsTheRestOfTheBudget) {
  batch_scheduler s(config_with(20, 8, 64), 256, block_tokens);
  driver d{s};
  for (std::uint64_t id = 1; id <= 4; ++id) d.add(id, prompt_of(4, int(id)), 50);
  d.step();   // four prompts of 4 tokens: 16 tokens
  d.add(9, prompt_of(100, 9), 2);
  for (int step = 0; step < 5; ++step) {
    const auto plan = d.step();
    ASSERT_GE(plan.sequences.size(), 4u) << "at step " << step;
    for (int i = 0; i < 4; ++i) EXPECT_EQ(plan.sequences[std::size_t(i)].tokens.size(), 1u) << "at step " << step;
    EXPECT_EQ(plan.tokens, 20) << "the prompt takes the rest of the budget, at step " << step;
  }
}

// Aging lifts waiting requests; it does not reorder running ones. A's long prefill began
// 300 ms before B arrived (same class); once A has aged a class (aging_ms) and B has not,
// B's decode still goes before A's chunk (when the budget binds, the chunk is what is cut).
TEST(BatchScheduler, AgingDoesNotPutAnOlderPrefillBeforeNewerDecodes) {
  auto c = config_with(9, 8, 8);
  c.batch_fill_sequences = 1;
  batch_scheduler s(c, 256, block_tokens);
  driver d{s};
  d.add(1, prompt_of(800, 1), 2);   // A: 100 chunks of 8
  int decodes_of_b = 0, b_first = 0;
  for (int step = 0; step < 80; ++step) {
    if (step == 30) d.add(2, prompt_of(4, 2), 60);   // B, at 300 ms: admitted with the token left
    const bool aged = d.now - (clock_time{} + std::chrono::hours(1)) >= c.aging_ms;
    const auto plan = d.step();
    const auto at = [&](std::uint64_t id) {
      return std::find_if(plan.sequences.begin(), plan.sequences.end(), [id](const auto& p) { return p.id == id; });
    };
    const auto a = at(1), b = at(2);
    if (aged && b != plan.sequences.end() && b->tokens.size() == 1 && b->sample) {
      ++decodes_of_b;
      b_first += a == plan.sequences.end() || b < a;
    }
    d.now += milliseconds(10);
  }
  ASSERT_GT(decodes_of_b, 20);
  EXPECT_EQ(b_first, decodes_of_b) << "A's aged prefill chunk went before B's decode";
}

// The order a step plans its running sequences in: class first, decodes before prefill
// chunks within a class, then arrival, whatever order they were admitted in.
TEST(BatchScheduler, RunningSequencesStepByClassThenDecodesFirstThenArrival) {
  batch_scheduler s(config_with(1000, 16, 8), 256, block_tokens);
  driver d{s};
  d.add(1, prompt_of(4, 1), 8, /*priority=*/2);    // decodes from the second step
  d.add(2, prompt_of(40, 2), 8, /*priority=*/0);   // five prefill chunks
  d.add(3, prompt_of(4, 3), 8, /*priority=*/1);
  d.add(4, prompt_of(4, 4), 8, /*priority=*/0);
  d.add(5, prompt_of(40, 5), 8, /*priority=*/2);
  d.add(6, prompt_of(40, 6), 8, /*priority=*/1);
  const auto ids = [](const step_plan& plan) {
    std::vector<std::uint64_t> out;
    for (const auto& p : plan.sequences) out.push_back(p.id);
    return out;
  };
  EXPECT_EQ(ids(d.step()), (std::vector<std::uint64_t>{2, 4, 3, 6, 1, 5})) << "admission: class, then arrival";
  for (int step = 0; step < 4; ++step)
    EXPECT_EQ(ids(d.step()), (std::vector<std::uint64_t>{4, 2, 3, 6, 1, 5})) << "at step " << step;
  EXPECT_EQ(ids(d.step()), (std::vector<std::uint64_t>{2, 4, 3, 6, 1, 5})) << "all decoding: class, then arrival";
}

TEST(BatchScheduler, SequenceCapBoundsRunningSequences) {
  batch_scheduler s(config_with(256, 3, 64), 256, block_tokens);
  driver d{s};
  for (std::uint64_t id = 1; id <= 7; ++id) d.add(id, prompt_of(5, int(id)), 4);
  for (int step = 0; step < 40 && !d.all_done(); ++step) {
    const auto plan = d.step();
    EXPECT_LE(plan.sequences.size(), 3u) << "at step " << step;
    EXPECT_LE(s.running(), 3) << "at step " << step;
  }
  ASSERT_TRUE(d.all_done());
  for (std::uint64_t id = 1; id <= 7; ++id)
    EXPECT_EQ(d.sequences.at(id).tokens, alone(prompt_of(5, int(id)), 4)) << "sequence " << id;
}

TEST(BatchScheduler, HigherPriorityIsAdmittedFirst) {
  batch_scheduler s(config_with(256, 1, 64), 256, block_tokens);
  driver d{s};
  d.add(1, prompt_of(4, 1), 1, /*priority=*/3);
  d.add(2, prompt_of(4, 2), 1, /*priority=*/0);
  d.add(3, prompt_of(4, 3), 1, /*priority=*/1);
  d.run(20, milliseconds(1));
  EXPECT_EQ(d.finished_order, (std::vector<std::uint64_t>{2, 3, 1}));
}

TEST(BatchScheduler, AgingLetsLowPriorityThroughAStreamOfHighPriority) {
  scheduler_config c = config_with(256, 1, 64);
  c.aging_ms = milliseconds(50);
  batch_scheduler s(c, 256, block_tokens);
  driver d{s};
  d.add(1, prompt_of(4, 1), 1, /*priority=*/3);
  // A new priority-0 request arrives every step (10 ms); each needs 2 steps.
  std::uint64_t next = 100;
  bool low_done = false;
  for (int step = 0; step < 200 && !low_done; ++step) {
    d.add(next, prompt_of(4, int(next)), 2, /*priority=*/0);
    ++next;
    d.step();
    d.now += milliseconds(10);
    low_done = d.sequences.at(1).done;
  }
  EXPECT_TRUE(low_done) << "priority 3 starved behind priority 0";
  // Three classes of 50 ms plus the time for one more 0-priority arrival tie: well inside 200 steps.
  EXPECT_LT(d.steps, 60) << "aging should lift it within a few aging periods";
}

TEST(BatchScheduler, LightLoadWaitsBrieflyToFillABatch) {
  scheduler_config c = config_with(256, 8, 64);
  c.batch_wait_ms = milliseconds(5);
  c.batch_fill_sequences = 3;
  batch_scheduler s(c, 256, block_tokens);
  driver d{s};
  d.add(1, prompt_of(4, 1), 2);
  auto plan = s.schedule(d.now);
  ASSERT_TRUE(plan.empty());
  ASSERT_TRUE(plan.wake_at.has_value());
  EXPECT_EQ(*plan.wake_at, d.now + milliseconds(5));
  d.now += milliseconds(2);
  d.add(2, prompt_of(4, 2), 2);
  d.add(3, prompt_of(4, 3), 2);
  plan = d.step();   // three waiting: the batch is full, no more waiting
  EXPECT_EQ(plan.sequences.size(), 3u);
  // Alone, a request starts once batch_wait_ms has passed.
  batch_scheduler lone(c, 256, block_tokens);
  driver l{lone};
  l.add(1, prompt_of(4, 1), 1);
  EXPECT_TRUE(lone.schedule(l.now).empty());
  l.now += milliseconds(5);
  EXPECT_EQ(l.step().sequences.size(), 1u);
}

TEST(BatchScheduler, CancelledAndExpiredSequencesStopAtTheNextStepAndFreeTheirBlocks) {
  batch_scheduler s(config_with(256, 8, 64), 64, block_tokens);
  driver d{s};
  d.add(1, prompt_of(30, 1), 100);
  sequence_request r;
  r.id = 2;
  r.tokens = prompt_of(30, 2);
  r.prompt_tokens = 30;
  r.max_new_tokens = 100;
  r.deadline = d.now + milliseconds(25);
  ASSERT_TRUE(s.submit(d.now, r).ok());
  d.sequences[2] = {r.tokens, 100};
  d.add(3, prompt_of(30, 3), 100);   // waits behind the others in the queue? no: all fit
  d.step();
  d.now += milliseconds(10);
  s.cancel(1);
  auto plan = d.step();
  ASSERT_EQ(plan.stopped.size(), 1u);
  EXPECT_EQ(plan.stopped[0].id, 1u);
  EXPECT_EQ(plan.stopped[0].cause, stop_cause::cancelled);
  d.now += milliseconds(20);
  plan = d.step();
  ASSERT_EQ(plan.stopped.size(), 1u);
  EXPECT_EQ(plan.stopped[0].id, 2u);
  EXPECT_EQ(plan.stopped[0].cause, stop_cause::deadline_exceeded);
  EXPECT_FALSE(s.has_sequence(1));
  EXPECT_FALSE(s.has_sequence(2));
  EXPECT_EQ(s.running(), 1);
  s.cancel(3);
  s.cancel(42);   // unknown: ignored
  plan = s.schedule(d.now);
  EXPECT_EQ(plan.stopped.size(), 1u);
  EXPECT_EQ(s.free_blocks() + s.prefix_cached_blocks(), s.total_blocks());
  EXPECT_EQ(s.leaked_blocks(), 0);
}

// schedule() walks the sequences for deadlines only once the earliest may have passed: a
// bound that goes stale (its sequence finished) or drops (a later arrival with an earlier
// deadline) must still stop each sequence at the first step past its own deadline.
TEST(BatchScheduler, EachDeadlineStopsItsSequenceWhateverFinishedOrArrivedBefore) {
  batch_scheduler s(config_with(256, 8, 64), 64, block_tokens);
  driver d{s};
  auto submit = [&](std::uint64_t id, std::int64_t max_new, milliseconds deadline) {
    sequence_request r;
    r.id = id;
    r.tokens = prompt_of(8, int(id));
    r.prompt_tokens = 8;
    r.max_new_tokens = max_new;
    r.deadline = d.now + deadline;
    ASSERT_TRUE(s.submit(d.now, r).ok());
    d.sequences[id] = {r.tokens, max_new};
  };
  submit(1, 2, milliseconds(10));     // the earliest deadline, but done in two steps
  submit(2, 100, milliseconds(30));
  submit(3, 100, milliseconds(50));
  std::vector<std::pair<std::uint64_t, int>> stopped;   // id, at which millisecond
  for (int ms = 0; ms <= 60; ++ms) {
    if (ms == 20) submit(4, 100, milliseconds(5));   // earlier than every deadline left
    const auto plan = d.step();
    for (const auto& st : plan.stopped) {
      EXPECT_EQ(st.cause, stop_cause::deadline_exceeded);
      stopped.emplace_back(st.id, ms);
    }
    d.now += milliseconds(1);
  }
  const std::vector<std::pair<std::uint64_t, int>> expected = {{4, 25}, {2, 30}, {3, 50}};
  EXPECT_EQ(stopped, expected);
  EXPECT_FALSE(s.has_sequence(1));   // finished before its deadline
  EXPECT_EQ(s.running() + s.waiting(), 0);
  EXPECT_EQ(s.leaked_blocks(), 0);
}

TEST(BatchScheduler, ASharedPrefixIsComputedOnce) {
  batch_scheduler s(config_with(256, 8, 64), 64, block_tokens);
  driver d{s};
  auto first = prompt_of(40, 1);
  d.add(1, first, 2);
  d.run(10);
  ASSERT_TRUE(d.sequences.at(1).done);
  const std::int64_t computed_before = s.counters().computed_tokens;
  auto second = first;
  second.resize(36);
  for (int i = 0; i < 6; ++i) second.push_back(400 + i);   // diverges after 36 tokens
  d.add(2, second, 2);
  const auto plan = d.step();
  EXPECT_EQ(plan.prefix_hit_tokens, 36) << "nine full blocks of the first prompt";
  ASSERT_EQ(plan.sequences.size(), 1u);
  EXPECT_EQ(plan.sequences[0].first_position, 36);
  d.run(10);
  EXPECT_EQ(d.sequences.at(2).tokens, alone(second, 2));
  // 6 uncached prompt tokens, then the first generated token fed back for the second.
  EXPECT_EQ(s.counters().computed_tokens - computed_before, 6 + 1);
  EXPECT_GT(s.prefix()->counters().hits, 0);
}

TEST(BatchScheduler, RejectsWhatCanNeverRunAndBoundsTheQueue) {
  scheduler_config c = config_with(256, 8, 64);
  c.waiting_sequences_max = 2;
  batch_scheduler s(c, 8, block_tokens);   // 32 tokens of KV in all
  clock_time now{};
  sequence_request r;
  r.id = 1;
  r.tokens = prompt_of(30, 1);
  r.max_new_tokens = 3;
  auto st = s.submit(now, r);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.err().code, error_code::invalid_argument) << "more KV than the replica has: the request's size";
  r.tokens = prompt_of(4, 1);
  r.max_new_tokens = std::numeric_limits<std::int64_t>::max();   // the sum must not wrap and pass
  EXPECT_EQ(s.submit(now, r).err().code, error_code::invalid_argument);
  r.tokens = {};
  EXPECT_EQ(s.submit(now, r).err().code, error_code::invalid_argument);
  r.tokens = prompt_of(4, 1);
  r.max_new_tokens = 0;
  EXPECT_EQ(s.submit(now, r).err().code, error_code::invalid_argument);
  r.max_new_tokens = 1;
  r.priority = 4;
  EXPECT_EQ(s.submit(now, r).err().code, error_code::invalid_argument);
  r.priority = 0;
  ASSERT_TRUE(s.submit(now, r).ok());
  EXPECT_EQ(s.submit(now, r).err().code, error_code::invalid_argument) << "duplicate id";
  r.id = 2;
  ASSERT_TRUE(s.submit(now, r).ok());
  r.id = 3;
  EXPECT_EQ(s.submit(now, r).err().code, error_code::overloaded);
  scheduler_config bad = c;
  bad.sequences_max = 0;
  EXPECT_FALSE(validate(bad).ok());
}

}  // namespace
}  // namespace dsrt::batching

namespace dsrt::batching {
namespace {

TEST(BatchScheduler, AStepsResultSkipsASequenceReplacedWhileItRan) {
  scheduler_config c;
  c.batch_wait_ms = milliseconds(0);
  batch_scheduler s(c, 64, 4);
  clock_time now{};
  sequence_request r;
  r.id = 5;
  r.tokens = test::prompt_of(6, 5);
  r.max_new_tokens = 4;
  ASSERT_TRUE(s.submit(now, r).ok());
  const auto plan = s.schedule(now);
  ASSERT_EQ(plan.sequences.size(), 1u);
  // While the step runs, the router gives up on the attempt and sends a new one.
  s.fail(5);
  ASSERT_TRUE(s.submit(now, r).ok());
  EXPECT_FALSE(s.is_current(plan.sequences[0]));
  s.complete(plan, std::vector<std::int32_t>{42});
  EXPECT_EQ(s.generated(5), 0) << "the old step's token must not land in the new sequence";
  EXPECT_EQ(s.waiting(), 1);
  s.check_invariants();
  const auto next = s.schedule(now);
  ASSERT_EQ(next.sequences.size(), 1u);
  EXPECT_TRUE(s.is_current(next.sequences[0]));
  EXPECT_EQ(next.sequences[0].first_position, 0);
}

// complete() and is_current(plan, entry) reach the latest plan's sequences without looking
// them up; a plan that is not the latest (an older one, or one rebuilt elsewhere) goes by
// id. Either way a sequence failed or finished since is not current, and the others advance.
TEST(BatchScheduler, AStepsResultAdvancesTheRestOfItsPlanLatestOrNot) {
  for (const bool latest : {true, false}) {
    scheduler_config c;
    c.batch_wait_ms = milliseconds(0);
    batch_scheduler s(c, 64, 4);
    clock_time now{};
    for (std::uint64_t id : {1, 2, 3}) {
      sequence_request r;
      r.id = id;
      r.tokens = test::prompt_of(6, int(id));
      r.max_new_tokens = 4;
      ASSERT_TRUE(s.submit(now, r).ok());
    }
    auto plan = s.schedule(now);
    ASSERT_EQ(plan.sequences.size(), 3u);
    if (!latest) plan.call = 0;
    s.fail(2);
    EXPECT_TRUE(s.is_current(plan, 0)) << latest;
    EXPECT_FALSE(s.is_current(plan, 1)) << latest;
    EXPECT_TRUE(s.is_current(plan, 2)) << latest;
    s.complete(plan, std::vector<std::int32_t>{41, 42, 43});
    EXPECT_FALSE(s.has_sequence(2)) << latest;
    EXPECT_EQ(s.generated(1), 1) << latest;
    s.finish(1);
    EXPECT_FALSE(s.is_current(plan, 0)) << latest;
    EXPECT_TRUE(s.is_current(plan, 2)) << latest;
    EXPECT_EQ(s.generated(3), 1) << latest;
    ASSERT_TRUE(s.submit(now, [] {
      sequence_request r;
      r.id = 1;
      r.tokens = test::prompt_of(6, 1);
      return r;
    }()).ok());
    EXPECT_FALSE(s.is_current(plan, 0)) << "a new submission of id 1 is not the planned one; latest " << latest;
    s.check_invariants();
    const auto next = s.schedule(now);
    ASSERT_EQ(next.sequences.size(), 2u) << latest;   // 3's decode, then the new 1's prefill
    EXPECT_EQ(next.sequences[0].tokens, std::vector<std::int32_t>{43}) << latest;
  }
}

}  // namespace
}  // namespace dsrt::batching
