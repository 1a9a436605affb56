#pragma once
// Drives a batch_scheduler the way the batcher actor does, with a fake model in place of
// the shard: the sampled token is a hash of the whole sequence so far, so any slicing or
// recompute mistake changes the output. Each step checks the plan against the driver's
// own copy of every sequence and the scheduler's invariants.
#include <gtest/gtest.h>

#include <map>

#include "runtime/batching/batch_scheduler.h"
#include "runtime/batching/block_tables.h"

namespace dsrt::batching::test {

inline std::int32_t fake_token(const std::vector<std::int32_t>& tokens) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::int32_t t : tokens) h = (h ^ std::uint64_t(t)) * 1099511628211ull;
  return std::int32_t(h % 997) + 3;
}

struct driver {
  struct expected {
    std::vector<std::int32_t> tokens;   // what the sequence holds (request + sampled)
    std::int64_t max_new = 0;
    std::int64_t generated = 0;
    bool done = false;
  };
  batch_scheduler& scheduler;
  clock_time now = clock_time{} + std::chrono::hours(1);
  std::map<std::uint64_t, expected> sequences;
  std::vector<std::uint64_t> finished_order;
  std::int64_t steps = 0;
  block_tables tables;                     // the shard's side of the plans' table changes
  std::int64_t block_ids_sent = 0;         // in plans' new_blocks, over the run

  // Submits and records the request under its id.
  void add(std::uint64_t id, std::vector<std::int32_t> prompt, std::int64_t max_new, int priority = 0) {
    sequence_request r;
    r.id = id;
    r.tokens = prompt;
    r.prompt_tokens = std::int64_t(prompt.size());
    r.max_new_tokens = max_new;
    r.priority = priority;
    ASSERT_TRUE(scheduler.submit(now, std::move(r)).ok()) << "submit " << id;
    sequences[id] = {std::move(prompt), max_new};
  }

  // One step: schedule, check, "run", complete, finish what reached max_new.
  step_plan step() {
    step_plan plan = scheduler.schedule(now);
    const auto applied = tables.apply(plan);
    EXPECT_TRUE(applied.ok()) << applied.err().to_string() << " at step " << steps;
    std::vector<std::int32_t> sampled;
    for (const auto& p : plan.sequences) {
      block_ids_sent += std::int64_t(p.new_blocks.size());
      // The shard's table, rebuilt from the plans' changes, is the scheduler's.
      const auto held = scheduler.block_table(p.id);
      const auto rebuilt = tables.table(p.id);
      EXPECT_TRUE(std::equal(held.begin(), held.end(), rebuilt.begin(), rebuilt.end()))
          << "sequence " << p.id << ": the shard's table differs from the scheduler's at step " << steps;
      auto& e = sequences.at(p.id);
      EXPECT_LE(p.first_position + std::int64_t(p.tokens.size()), std::int64_t(e.tokens.size()))
          << "sequence " << p.id << " at step " << steps;
      EXPECT_TRUE(std::equal(p.tokens.begin(), p.tokens.end(), e.tokens.begin() + p.first_position))
          << "sequence " << p.id << " planned the wrong tokens at step " << steps;
      EXPECT_EQ(p.sample, p.first_position + std::int64_t(p.tokens.size()) == std::int64_t(e.tokens.size()))
          << "sequence " << p.id << " at step " << steps;
      EXPECT_GE(std::int64_t(rebuilt.size()) * 4, p.first_position + std::int64_t(p.tokens.size()))
          << "block table too short for sequence " << p.id << " at step " << steps;
      if (p.sample) {
        EXPECT_EQ(p.draw_index, e.generated) << "sequence " << p.id << " at step " << steps;
        sampled.push_back(fake_token(e.tokens));
      }
    }
    for (const auto& st : plan.stopped) sequences.at(st.id).done = true;
    scheduler.complete(plan, sampled);
    std::size_t next = 0;
    for (const auto& p : plan.sequences) {
      if (!p.sample) continue;
      auto& e = sequences.at(p.id);
      e.tokens.push_back(sampled[next++]);
      if (++e.generated == e.max_new) {
        scheduler.finish(p.id);
        e.done = true;
        finished_order.push_back(p.id);
      }
    }
    scheduler.check_invariants();
    ++steps;
    return plan;
  }

  bool all_done() const {
    for (const auto& [id, e] : sequences)
      if (!e.done) return false;
    return true;
  }

  // Steps until every sequence is done; at most steps_max steps (advancing time by
  // step_ms each). Returns the steps taken.
  std::int64_t run(std::int64_t steps_max, milliseconds step_ms = milliseconds(10)) {
    std::int64_t taken = 0;
    while (!all_done() && taken < steps_max) {
      const auto plan = step();
      now += plan.wake_at ? std::max<clock_time::duration>(*plan.wake_at - now, step_ms) : step_ms;
      ++taken;
    }
    return taken;
  }
};

// A deterministic prompt.
inline std::vector<std::int32_t> prompt_of(std::size_t length, std::int32_t salt) {
  std::vector<std::int32_t> p(length);
  for (std::size_t i = 0; i < length; ++i) p[i] = std::int32_t((i * 7 + std::size_t(salt) * 131) % 500) + 3;
  return p;
}

// What a sequence generates alone: the reference for any batching.
inline std::vector<std::int32_t> alone(std::vector<std::int32_t> tokens, std::int64_t max_new) {
  for (std::int64_t i = 0; i < max_new; ++i) tokens.push_back(fake_token(tokens));
  return tokens;
}

}  // namespace dsrt::batching::test
