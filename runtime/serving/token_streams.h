#pragma once
// A replica's side of its requests' token streams: what the batcher sends back to the
// router after each step. The batcher actor and the simulator both use it, so the
// simulation runs the same output policy as the cluster.
//
// Each attempt the batcher accepts opens a stream (its attempt number, max_new_tokens and
// stop tokens). After a step, on_step() completes the plan in the scheduler and appends
// each sequence's sampled token to its stream. A stop token or max_new_tokens ends the
// sequence (scheduler.finish) with a final. Tokens go out as replica_chunks: a stream's
// first token at once (time to first token does not wait), then one chunk per
// stream_interval_tokens (scheduler_config), and whatever is left when the stream ends,
// before its final. An interval above 1 trades a smoother stream for fewer messages, as
// SGLang's --stream-interval does. A stream that ends otherwise — a failed step, a cancel,
// a deadline — sends what waits before its final too; only close() (an attempt the router
// has replaced) drops it.
//
// Thread safety: none; the batcher (or the simulator) is its only caller.
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "runtime/batching/batch_scheduler.h"
#include "runtime/error.h"
#include "runtime/id_map.h"
#include "runtime/serving/messages.h"

namespace dsrt::serving {

// What a step (or an event) sends to the router, in this order: the chunks in one
// message, then the finals, so a final never overtakes its request's last chunk.
struct stream_output {
  replica_chunks chunks;
  std::vector<replica_final> finals;
  bool empty() const { return chunks.chunks.empty() && finals.empty(); }
};

class token_streams {
 public:
  // REQUIRES: interval_tokens in 1 .. batching::stream_interval_tokens_max.
  token_streams(std::int32_t replica, int interval_tokens);
  ~token_streams();

  // Opens the stream of an attempt whose sequence the scheduler accepted; replaces any
  // stream still open under the id.
  void open(std::uint64_t id, std::uint32_t attempt, std::int64_t max_new_tokens,
            std::vector<std::int32_t> stop_token_ids);
  // The attempt streaming under `id`; nullopt when none is open.
  std::optional<std::uint32_t> attempt(std::uint64_t id) const;
  // Ends the stream under `id` without sending its unsent tokens: its final, or nullopt
  // when no stream is open under the id. For an attempt the router no longer wants.
  std::optional<replica_final> close(std::uint64_t id, std::optional<error> failure,
                                     finish_reason reason = finish_reason::length);
  // Ends the stream under `id` (the scheduler stopped it: cancelled, past its deadline):
  // its unsent tokens as a last chunk, then its final. Nothing when no stream is open.
  void stop(std::uint64_t id, error failure, stream_output& out);

  // The shard ran `plan` and sampled `sampled` (in plan order, one per sequence with
  // sample set): completes the plan in `scheduler`, then streams each still-current
  // sequence's token into `out` as described above.
  void on_step(batching::batch_scheduler& scheduler, const batching::step_plan& plan,
               std::span<const std::int32_t> sampled, stream_output& out);
  // The shard failed `plan` (its KV may be garbage): each still-current sequence fails in
  // `scheduler` and its stream ends with `failure`, after a last chunk of the tokens earlier
  // steps sampled (those are sound; the retry resumes after them).
  void on_failed_step(batching::batch_scheduler& scheduler, const batching::step_plan& plan,
                      const error& failure, stream_output& out);

  // Drops every stream (the replica restarts).
  void clear() { streams_.clear(); }
  std::size_t size() const { return streams_.size(); }

 private:
  // Up to these many unsent tokens (the stream interval) and stop tokens a stream keeps in
  // its first cache line; more go to its vectors.
  static constexpr std::size_t inline_unsent_max = 8;
  static constexpr std::size_t inline_stops_max = 2;
  static constexpr std::uint8_t spilled = 255;
  // What a step reads and writes per token, the stop tokens and the unsent tokens included,
  // fills the first cache line: the stream is cold by the next step (the other replicas'
  // steps ran since), and a vector's buffer would be one more miss per token each.
  struct alignas(64) stream {
    std::int64_t sent = 0;              // tokens sent in chunks
    std::int64_t max_new_tokens = 0;
    std::uint32_t attempt = 0;
    std::uint16_t unsent_count = 0;     // in unsent, or unsent_more when the interval is larger
    std::uint8_t stop_count = 0;        // in stops, or `spilled`: all in stops_more
    std::int32_t stops[inline_stops_max] = {};
    std::int32_t unsent[inline_unsent_max] = {};   // sampled, not yet in a chunk
    std::vector<std::int32_t> unsent_more;
    std::vector<std::int32_t> stops_more;
  };
  bool inline_unsent() const { return interval_tokens_ <= inline_unsent_max; }
  std::span<const std::int32_t> waiting_tokens(const stream& s) const;
  static bool is_stop(const stream& s, std::int32_t token);
  void flush(std::uint64_t id, stream& s, stream_output& out) const;
  void end(std::uint64_t id, std::optional<error> failure, finish_reason reason, stream_output& out);

  std::int32_t replica_;
  std::size_t interval_tokens_;
  id_map<stream> streams_;
  std::vector<stream*> stepping_;   // on_step's scratch: the sampled sequences' streams, in plan order
};

}  // namespace dsrt::serving
