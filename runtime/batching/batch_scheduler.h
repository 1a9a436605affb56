#pragma once
// The batcher's policy: continuous batching for one model replica (ARCHITECTURE.md,
// "batcher"). Each call to schedule() builds one step plan from the waiting and running
// sequences under a token budget and a sequence cap: running sequences first (one decode
// token each, or their next prefill chunk), then waiting ones by effective priority. It
// owns the replica's KV block table (an engine::block_manager) and its prefix index, and
// preempts by recompute when blocks run out. Like TensorRT-LLM's schedulers it is a plain
// object: no threads, clocks or actors; `now` comes in with every call.
//
// A sequence is its token list (prompt, then every sampled token) and how many of those
// tokens already have KV in the cache (`computed`). A step feeds each planned sequence a
// slice of its uncomputed tail; when the slice reaches the end, the shard samples the next
// token. Prefill, chunked prefill, decode and recompute after preemption are all this one
// rule, which is why a preempted sequence resumes exactly where it was.
//
// Invariants (checked by check_invariants() in tests):
//  - every sequence is in exactly one of waiting_ / running_; by_arrival_ holds running_'s
//    sequences in arrival order;
//  - a waiting sequence holds no blocks; a running one holds blocks for exactly its
//    `computed` tokens plus what the last plan reserved;
//  - running_.size() <= sequences_max, and running_ + waiting_ <= sequences_max +
//    waiting_sequences_max: submit() refuses once waiting_sequences_max wait, but a
//    preempted sequence goes back to waiting whatever the count (it was accepted; dropping
//    it would lose a request), so waiting_ alone may pass its cap by what was preempted;
//  - blocks are held only by running sequences and the prefix index.
// Thread safety: none; the batcher actor is its only caller.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "runtime/cache/prefix_index.h"
#include "runtime/clock.h"
#include "runtime/engine/block_manager.h"
#include "runtime/engine/sampler.h"
#include "runtime/error.h"
#include "runtime/id_map.h"

namespace dsrt::batching {

// Recycled planned sequences kept for reuse (bounds the memory held for it).
inline constexpr std::size_t spare_sequences_max = 4096;
// The most tokens a stream may gather into one chunk (scheduler_config::stream_interval_tokens).
inline constexpr int stream_interval_tokens_max = 1024;
// The most tokens one step's chunks may carry together, sequences_max x
// stream_interval_tokens: they travel as one message, and the wire takes at most this many
// tokens per message (transport::wire_limits::tokens_per_message_max).
inline constexpr std::int64_t step_stream_tokens_max = std::int64_t(1) << 20;

struct scheduler_config {
  std::int64_t step_tokens_max = 2048;         // tokens one step may carry (the budget)
  int sequences_max = 256;                     // sequences running at once
  std::int64_t prefill_chunk_tokens = 512;     // uncomputed tokens of one sequence per step
  int waiting_sequences_max = 4096;            // sequences queued for admission (preempted ones
                                               // come on top, at most sequences_max of them)
  int priority_classes = 4;                    // priorities 0 (highest) .. classes - 1
  milliseconds aging_ms{500};                  // waiting this long raises a request one class
  // Adaptive batching under light load: with nothing running, wait up to batch_wait_ms
  // for batch_fill_sequences waiting requests before starting a step.
  milliseconds batch_wait_ms{2};
  int batch_fill_sequences = 8;
  std::int32_t prefix_cached_blocks_max = 1 << 20;  // blocks the prefix index may keep
  bool prefix_cache = true;
  // Tokens per chunk of a stream after its first token, which goes alone. Read by the
  // batcher's serving::token_streams, not by schedule(): 1 sends every token as it comes;
  // more sends fewer, larger messages (the router's and the client's work per token drops).
  int stream_interval_tokens = 1;
};

// invalid_argument naming the field.
status validate(const scheduler_config& c);

struct sequence_request {
  std::uint64_t id = 0;
  std::vector<std::int32_t> tokens;        // prompt (plus tokens already streamed, on resumption)
  std::int64_t prompt_tokens = 0;          // of which the prompt given by the client
  std::int64_t draw_base = 0;              // generated tokens before `tokens` ended (resumption)
  std::int64_t max_new_tokens = 1;         // tokens to generate after `tokens`
  engine::sampling_params sampling;
  int priority = 0;                        // 0 = highest class
  std::optional<clock_time> deadline;
};

enum class stop_cause { cancelled, deadline_exceeded, no_kv_space };

// One sequence's part of a step; the shard turns it into an engine::step_sequence.
// The scalars first: completing a step reads them for every entry, in one cache line.
struct alignas(64) planned_sequence {
  std::uint64_t id = 0;
  std::uint64_t serial = 0;                // which submission of `id` (an id can be resubmitted)
  std::int64_t first_position = 0;
  std::int64_t draw_index = 0;             // which generated token that sample is
  bool sample = false;                     // the slice ends the sequence: sample a token
  std::vector<std::int32_t> tokens;        // the slice to compute
  // The sequence's KV block table (covering first_position + tokens.size()) as a change to
  // the one the shard keeps from its earlier plans: keep its first table_kept entries,
  // then append new_blocks; table_kept 0 starts a new table. A decode step usually
  // carries no block id at all (vLLM v1's scheduler output does the same): a long
  // context's table is not copied every step. batching::block_tables applies it.
  std::int32_t table_kept = 0;
  std::vector<std::int32_t> new_blocks;
  engine::sampling_params sampling;
};

struct stopped_sequence {
  std::uint64_t id;
  stop_cause cause;
};

struct step_plan {
  std::vector<planned_sequence> sequences;
  std::vector<engine::block_copy> copies;  // apply before the step (copy-on-write)
  std::vector<stopped_sequence> stopped;   // removed this call; blocks already freed
  std::vector<std::uint64_t> preempted;    // sent back to waiting, recomputed later
  // Sequences whose block tables the shard drops, before it applies this plan's entries
  // (finished, failed, stopped or preempted since the last plan that ran); all of them
  // first when tables_reset (a new scheduler's first plan, or the first after clear()).
  std::vector<std::uint64_t> released;
  bool tables_reset = false;
  std::uint64_t scheduler = 0;             // which scheduler made it (unique in the process)
  std::uint64_t call = 0;                  // which of its schedule() calls (0: none)
  std::int64_t tokens = 0;
  std::int64_t prefix_hit_tokens = 0;      // request tokens taken from the prefix index at a
                                           // sequence's first admission (not after preemption)
  // Nothing to run now; call schedule() again at this time (or when a request arrives).
  std::optional<clock_time> wake_at;
  bool empty() const { return sequences.empty(); }
};

struct scheduler_counters {
  std::int64_t steps = 0, preemptions = 0, prefix_hit_tokens = 0, computed_tokens = 0;
};

class batch_scheduler {
 public:
  // REQUIRES: validate(config) succeeded, kv_blocks >= 1, kv_block_tokens >= 1.
  batch_scheduler(const scheduler_config& config, std::int32_t kv_blocks, int kv_block_tokens);
  ~batch_scheduler();
  batch_scheduler(const batch_scheduler&) = delete;
  batch_scheduler& operator=(const batch_scheduler&) = delete;

  // Queues a sequence. Errors: invalid_argument for an empty token list, a duplicate id,
  // max_new_tokens < 1, a priority outside the classes, or tokens + max_new_tokens needing
  // more KV blocks than the replica has (the request's size, not the replica's state: the
  // router passes it on without a retry); overloaded when waiting_sequences_max are queued.
  status submit(clock_time now, sequence_request request);
  // Stops a sequence at the next schedule() (reported there as cancelled). Unknown ids
  // are ignored: the sequence may have finished already.
  void cancel(std::uint64_t id);

  // The next step. Removes cancelled and expired sequences first.
  step_plan schedule(clock_time now);
  // The shard ran `plan`: sampled[i] is the token of the i-th planned sequence with
  // sample set, in plan order. Advances every planned sequence that is still current: one
  // finished, failed or replaced by a new submission of its id since is skipped.
  void complete(const step_plan& plan, std::span<const std::int32_t> sampled);
  // Whether a planned sequence is still the one the scheduler holds under its id.
  bool is_current(const planned_sequence& p) const;
  // The same for entry `entry` of `plan`, without a lookup when `plan` is the latest.
  bool is_current(const step_plan& plan, std::size_t entry) const;
  // The sequence is done (stop or length, decided by the caller): frees its blocks and
  // hands its full computed blocks to the prefix index. Unknown ids are ignored.
  void finish(std::uint64_t id);
  // The sequence failed (its step failed, so the KV it wrote may be garbage): frees its
  // blocks without caching them. Unknown ids are ignored.
  void fail(std::uint64_t id);
  // Hands back a plan that is no longer needed: its buffers are reused by later plans, so a
  // step allocates nothing once the batch has been seen (at most spare_sequences_max kept).
  void recycle(step_plan&& plan);
  // Drops every sequence (a replica restart); returns their ids.
  std::vector<std::uint64_t> clear();

  bool has_sequence(std::uint64_t id) const { return sequences_.contains(id); }
  // Tokens generated so far by a sequence (excluding draw_base). REQUIRES: has_sequence.
  std::int64_t generated(std::uint64_t id) const;
  // The KV block table sequence `id` holds now (empty when it is not queued).
  std::span<const std::int32_t> block_table(std::uint64_t id) const;
  int running() const { return int(running_.size()); }
  int waiting() const { return int(waiting_.size()); }
  std::int32_t free_blocks() const { return blocks_.free_blocks(); }
  std::int32_t total_blocks() const { return blocks_.blocks_total(); }
  std::int32_t prefix_cached_blocks() const;
  // Blocks referenced by neither a live sequence nor the prefix index: always 0 unless
  // there is a bug (exported as kv_blocks_leaked).
  std::int32_t leaked_blocks() const;
  const scheduler_counters& counters() const { return counters_; }
  const cache::prefix_index* prefix() const { return prefix_.get(); }
  // The block manager itself, for the simulator's planted-bug tests only: a reference taken
  // through it belongs to nothing the scheduler knows, which leaked_blocks() must report.
  engine::block_manager& block_manager_for_testing() { return blocks_; }

  // DSRT_ASSERTs the invariants above.
  void check_invariants() const;

 private:
  struct sequence;
  int effective_priority(const sequence& s, clock_time now) const;
  // Running sequences rank by their request's class, then arrival (aging is for admission).
  static bool runs_before(const sequence& a, const sequence& b);
  // Fills order_ with waiting sequences by precedence: class with aging, then arrival.
  void sort_by_precedence(clock_time now, const std::vector<sequence*>& list);
  // Fills order_ with the running sequences by class (no aging), decodes before prefill
  // chunks within a class, then arrival.
  void order_running();
  // Takes a sequence off running_ and by_arrival_.
  void unlist_running(sequence* s);
  void drop_stopped(clock_time now, step_plan& plan);
  bool reserve_or_evict(sequence& s, std::int64_t tokens, std::vector<engine::block_copy>& copies);
  bool preempt_one(const sequence* keep, step_plan& plan);
  void plan_slice(sequence& s, std::int64_t tokens, step_plan& plan);
  void release(sequence& s);

  scheduler_config config_;
  engine::block_manager blocks_;
  std::unique_ptr<cache::prefix_index> prefix_;
  id_map<sequence> sequences_;
  std::vector<sequence*> waiting_;   // schedule() sorts it by precedence; appended to between
  std::vector<sequence*> running_;   // in admission order
  std::vector<sequence*> by_arrival_;   // running_ by arrival_order, for order_running()
  std::uint64_t arrivals_ = 0;       // arrival counter: ties after equal priority and time
  std::uint64_t tick_ = 0;           // logical time for the prefix index's LRU
  std::uint64_t schedule_calls_ = 0; // numbers the plans being built (sequence::planned_in)
  // drop_stopped() walks the sequences only when one may be cancelled or past its deadline:
  // cancelled_ counts cancel()s since the last walk (at least the cancelled sequences),
  // deadline_bound_ is at most every queued sequence's deadline (the walk makes it exact).
  std::int64_t cancelled_ = 0;
  std::optional<clock_time> deadline_bound_;
  std::vector<planned_sequence> spare_;   // recycled plan entries with their capacity
  // What the shard's block tables need to hear with the next plan that carries sequences.
  std::vector<std::uint64_t> released_;
  bool tables_reset_ = true;
  const std::uint64_t id_;                 // step_plan::scheduler
  std::vector<planned_sequence> spare_plan_;   // the last recycled plan's entries, rewritten by the next
  std::size_t planned_ = 0;                    // entries of the plan being built (schedule())
  // Scratch of sort_by_precedence, kept to spare a step the allocations.
  struct ranked {
    std::uint64_t key;   // rank_key(): smaller runs first
    sequence* s;
  };
  static std::uint64_t rank_key(int priority, std::uint64_t arrival_order);
  std::vector<ranked> ranked_;
  std::vector<sequence*> order_;
  std::vector<std::uint32_t> bucket_start_;   // order_running()'s scratch: where each (class, kind) goes
  std::vector<sequence*> completing_;   // complete()'s scratch for a plan not the latest: each planned sequence, looked up once
  // The sequence behind each entry of the latest plan (call latest_call_), in plan order,
  // so complete() reaches them without an id lookup each (a cold hash slot per sequence
  // per step); fail() nulls the entry of a sequence it removes, so none dangles.
  std::vector<sequence*> latest_plan_;
  std::uint64_t latest_call_ = 0;
  bool is_latest(const step_plan& plan) const;
  scheduler_counters counters_;
};

}  // namespace dsrt::batching
