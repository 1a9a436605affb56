#pragma once
// What a shard runs: a batcher's step plan in, one sampled token per sequence that asked
// for one out. model_executor runs the real model; null_executor returns tokens without
// any model math, so `dsbench load --null-backend` measures the runtime's own overhead.
// Sampling happens here, at the last stage, keyed by each sequence's draw index so a
// recomputed or resumed sequence samples the same tokens (engine/sampler.h).
//
// Ownership: model_executor uses, but does not own, the model. Thread safety: one caller
// at a time, holding lease() while it runs or skips a plan (the shard does).
#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "runtime/batching/batch_scheduler.h"
#include "runtime/batching/block_tables.h"
#include "runtime/engine/causal_lm.h"
#include "runtime/error.h"

namespace dsrt::serving {

class step_executor {
 public:
  virtual ~step_executor() = default;
  // The sampled tokens, in plan order, one per planned sequence with sample set.
  // Errors: the model's (invalid_argument for a malformed plan, internal for a failure).
  virtual result<std::vector<std::int32_t>> run(const batching::step_plan& plan) = 0;
  // The shard fails `plan` without running it (an injected fault): what the plan releases
  // is released all the same.
  virtual void skip(const batching::step_plan& plan) { (void)plan; }
  virtual std::int32_t kv_blocks() const = 0;
  virtual int kv_block_tokens() const = 0;
  virtual std::int64_t step_tokens_max() const = 0;

  // Exclusive use of the executor (its device, its KV, its step buffers) for one plan. A
  // replica's restarted shard shares the executor with its predecessor, which may still be
  // inside a step (killed by the watchdog while the device hangs or sleeps under a fault):
  // the new shard's first step waits here until that step has returned.
  [[nodiscard]] std::unique_lock<std::mutex> lease() { return std::unique_lock(in_use_); }
  // The replica's shards, newest last: each is spawned with a claim, and a step
  // of a shard no longer the latest claimant (killed and replaced while it waited for the
  // lease) must run nothing, not even skip(), whose plan belongs to a dead batcher.
  std::uint64_t claim() { return ++claims_; }
  bool claimed_by(std::uint64_t claim) const { return claims_.load() == claim; }

 private:
  std::mutex in_use_;
  std::atomic<std::uint64_t> claims_{0};
};

class model_executor final : public step_executor {
 public:
  explicit model_executor(engine::causal_lm& model) : model_(model) {}
  result<std::vector<std::int32_t>> run(const batching::step_plan& plan) override;
  void skip(const batching::step_plan& plan) override { tables_.release(plan); }
  std::int32_t kv_blocks() const override { return model_.kv_blocks(); }
  int kv_block_tokens() const override { return model_.kv_block_tokens(); }
  std::int64_t step_tokens_max() const override { return model_.step_tokens_max(); }

 private:
  engine::causal_lm& model_;
  batching::block_tables tables_;   // each sequence's, from plan to plan
  std::vector<engine::step_sequence> step_;
  std::vector<float> logits_;
  std::vector<std::int32_t> greedy_ids_;
};

// Deterministic tokens in [first_token, vocab) from the sequence's last token and draw
// index; no KV memory is touched, so kv_blocks is only the number the batcher manages.
class null_executor final : public step_executor {
 public:
  null_executor(std::int32_t vocab, std::int32_t first_token, std::int32_t kv_blocks,
                int kv_block_tokens, std::int64_t step_tokens_max)
      : vocab_(vocab), first_token_(first_token), kv_blocks_(kv_blocks),
        kv_block_tokens_(kv_block_tokens), step_tokens_max_(step_tokens_max) {}
  result<std::vector<std::int32_t>> run(const batching::step_plan& plan) override;
  std::int32_t kv_blocks() const override { return kv_blocks_; }
  int kv_block_tokens() const override { return kv_block_tokens_; }
  std::int64_t step_tokens_max() const override { return step_tokens_max_; }

 private:
  std::int32_t vocab_, first_token_, kv_blocks_;
  int kv_block_tokens_;
  std::int64_t step_tokens_max_;
};

}  // namespace dsrt::serving
