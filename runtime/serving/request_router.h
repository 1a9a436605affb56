#pragma once
// The router's policy: every decision about a request between the client and the replicas,
// as a plain object (STYLE.md: policies are plain objects handed time). The router actor
// feeds it events — a request, a chunk or final from a replica, a replica going up or down,
// a cancel, a response-cache answer — each with `now`, and carries out the actions it
// queues (send this to replica 2, this chunk to the client, ...). The simulator drives the
// same object.
//
// What it decides: validation and admission (policy::admission: OVERLOADED with a
// retry-after), replica choice (policy::choose_replica among replicas that are up and whose
// policy::circuit_breaker lets the request through), the request contract (chunks renumbered
// 0, 1, 2, ... per request, text decoded with stop strings applied so the text survives a
// change of replica, exactly one final), retry before the first token and resumption after
// it (prompt + tokens already streamed, draw_base, continuing sequence numbers; attempts
// tagged so stale messages are dropped) at most request_attempts_max times, and the fallback
// chain (another replica -> the response cache -> UNAVAILABLE).
//
// Invariants:
//  - a request has a route from its admission until the action carrying its final; no
//    action for it follows that final;
//  - a route's admission ticket is released exactly once, with its final;
//  - each breaker ticket handed out is recorded at most once; a half-open probe always is
//    (a success at its first tokens; cancelled or past its deadline before them — by the
//    router's timer or the replica's final, whichever comes first — a failure), so a breaker
//    never waits forever for a probe that ended, and never closes on probes that did not
//    answer.
// Thread safety: none; the router actor is its only caller.
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "runtime/cache/response_cache.h"
#include "runtime/clock.h"
#include "runtime/engine/text_output.h"
#include "runtime/id_map.h"
#include "runtime/policy/admission.h"
#include "runtime/policy/circuit_breaker.h"
#include "runtime/policy/replica_choice.h"
#include "runtime/serving/messages.h"
#include "runtime/tokenizer/tokenizer.h"

namespace dsrt::serving {

// Tokens of a route's stream reserved at its first chunk (max_tokens when smaller), so a
// stream grows without reallocating per chunk; longer answers grow past it as usual.
inline constexpr std::int64_t streamed_reserve_tokens_max = 1024;

struct router_config {
  std::int32_t replicas = 1;
  policy::admission_config admission;
  policy::breaker_config breaker;
  policy::replica_choice_config choice;
  int request_attempts_max = 3;             // replicas one request may try (retries + resumptions)
  std::int64_t context_tokens_max = 4096;   // prompt + max_tokens (the positions, and the KV a replica holds)
  std::int32_t vocab_size = 0;
  std::vector<std::int32_t> stop_token_ids; // end of sequence / end of turn
  int stop_strings_max = 16;
  int stop_string_bytes_max = 256;
  int priority_classes = 4;                 // the batchers' classes; higher priorities are clamped
  milliseconds unavailable_retry_after_ms{1000};
  // A half-open probe with no verdict (no tokens yet) this long after it went out counts as
  // failed (the request itself goes on): one with no deadline on a replica that never
  // answers it must not hold its breaker half-open. 0: no limit.
  milliseconds probe_verdict_ms{30000};
  // A request that finds no replica up at all (a restarting worker, a head whose workers
  // lost it for a moment) waits this long for one to come up before it falls back; one
  // that finds replicas up but none willing (breakers open) falls back at once. Waiting
  // requests keep their admission (so the admission limits bound them) and their own
  // deadlines. 0: fall back at once.
  milliseconds replica_wait_ms{1000};
  bool response_cache = true;               // ask the response cache on fallback
};

// Actions, in the order they must be carried out.
struct send_request { std::int32_t replica; replica_request request; };
struct cancel_on_replica { std::int32_t replica; std::uint64_t request_id; };
struct send_chunk { token_chunk chunk; };
struct send_final {
  final_message final;
  std::optional<double> ttft_seconds;       // admission to the first token, when it had one
  std::optional<double> tpot_seconds;       // per token after the first
};
struct store_response {
  cache::response_key key;
  cache::cached_response response;
  std::uint64_t key_hash = 0;   // cache::key_hash(key), computed at admission
};
struct lookup_response { std::uint64_t request_id; cache::response_key key; };
using router_action =
    std::variant<send_request, cancel_on_replica, send_chunk, send_final, store_response, lookup_response>;

struct router_counters {
  std::int64_t accepted = 0, rejected = 0, completed = 0, failed = 0;
  std::int64_t retries = 0, resumptions = 0, response_cache_hits = 0, fallbacks = 0;
  std::int64_t expired = 0;                 // ended by the router at their deadline
  std::int64_t waited = 0;                  // times a request waited for a replica to come up
};

class request_router {
 public:
  // REQUIRES: the policy configs validate; the tokenizer outlives the router. Without a
  // tokenizer (the simulator) streams carry tokens only and stop strings are rejected.
  request_router(const router_config& config, const tokenizer::tokenizer* tokenizer);
  ~request_router();
  request_router(const request_router&) = delete;
  request_router& operator=(const request_router&) = delete;

  void on_generate(clock_time now, generate_request request);
  void on_cancel(clock_time now, std::uint64_t request_id);
  void on_replica_up(clock_time now, std::int32_t replica);
  // The replica stopped serving (its batcher died, or the supervisor says so): its requests
  // are retried or resumed elsewhere.
  void on_replica_down(clock_time now, std::int32_t replica);
  void on_chunk(clock_time now, const replica_chunk& chunk);
  // The chunks of one message (a batcher's step), in order: as on_chunk for each, with
  // their routes loaded from memory together first.
  void on_chunks(clock_time now, std::span<const replica_chunk> chunks);
  void on_final(clock_time now, const replica_final& final);
  // The answer to a lookup_response (nullopt: a miss, or the lookup failed or timed out).
  void on_cached(clock_time now, std::uint64_t request_id, std::optional<cache::cached_response> hit);
  // Requests whose deadline has passed by `now` end here with DEADLINE_EXCEEDED (and a
  // cancel to their replica). The router holds every deadline on its own clock, so a replica
  // that is slow to answer, paused or cut off cannot keep a request past it — replicas stop
  // expired sequences too, but a deadline crosses the wire as time left and arrives late
  // by whatever delayed the message. The caller calls this at next_deadline().
  void on_deadlines(clock_time now);
  // The earliest deadline of a routed request or probe verdict (for the caller's timer);
  // nullopt: none.
  std::optional<clock_time> next_deadline();
  // New requests get UNAVAILABLE; accepted ones finish.
  void drain() { draining_ = true; }

  // The actions queued since the last call, oldest first.
  std::vector<router_action> take_actions();
  // The same into `out` (emptied first), which hands its buffer to the router for the next
  // actions: a caller that keeps one buffer between calls allocates nothing once it is warm
  // (an action is a few hundred bytes; a fresh vector grew by reallocation every call).
  void take_actions(std::vector<router_action>& out);

  const router_counters& counters() const { return counters_; }
  bool replica_up(std::int32_t replica) const { return replicas_.at(std::size_t(replica)).up; }
  std::int32_t replicas_up() const;
  // For observing (state(now), transitions()): outcomes go through the router only, which
  // caches whether each breaker is closed.
  policy::circuit_breaker& breaker(std::int32_t replica) { return *replicas_.at(std::size_t(replica)).breaker; }
  std::size_t routes() const { return routes_.size(); }

 private:
  struct route;
  struct replica_slot {
    bool up = false;
    // The breaker was closed after the router's last record() on it. Only record() closes
    // or opens a closed breaker, so while this holds dispatch need not ask the breaker
    // (one object per replica, per request). Outcomes are recorded only here, never
    // through breaker(i).
    bool breaker_closed = true;
    std::unique_ptr<policy::circuit_breaker> breaker;
  };

  status validate(const generate_request& r) const;
  void reject(generate_request& request, error e, milliseconds retry_after);
  void dispatch(clock_time now, route& r, int avoid);
  // Again, elsewhere: after a failure on its replica (counted by the breaker), or because
  // the replica left (not counted; see the definition).
  void redispatch(clock_time now, route& r, bool replica_left = false);
  void fall_back(clock_time now, route& r, const std::string& why);
  void complete(clock_time now, route& r, finish_reason reason);
  void finish(clock_time now, route& r, std::optional<error> failure, finish_reason reason,
              milliseconds retry_after = milliseconds(0));
  void record_outcome(clock_time now, route& r, bool success);
  // The request's cache key (pass it moved when the route ends: its prompt moves too).
  cache::response_key key_of(generate_request r) const;

  router_config config_;
  const tokenizer::tokenizer* tokenizer_;   // null: no text
  policy::admission admission_;
  std::vector<replica_slot> replicas_;
  // What choose_replica sees, one per replica, kept current rather than rebuilt per request
  // (128 replicas in the scale simulation): outstanding_tokens is the only copy of each
  // replica's count, and between dispatches available = up && breaker_closed. A breaker
  // that is not closed can change with time alone (open -> half-open), so dispatch asks
  // those few (not_closed_) afresh and restores every view it changed (touched_) before it
  // returns.
  std::vector<policy::replica_view> views_;
  std::vector<std::int32_t> not_closed_;   // replicas whose breaker_closed is false
  std::vector<std::size_t> touched_;       // dispatch's scratch
  void refresh_view(std::size_t replica);  // available = up && breaker_closed
  void set_view_available(std::size_t replica, bool available);   // within one dispatch
  id_map<route> routes_;
  // (deadline, request id) of routed requests, earliest first. Entries of finished requests
  // stay until they surface (or the heap is rebuilt when they outnumber live ones).
  using deadline_entry = std::pair<clock_time, std::uint64_t>;
  std::priority_queue<deadline_entry, std::vector<deadline_entry>, std::greater<>> deadlines_;
  // (verdict due, request id, attempt) of half-open probes, earliest first: at most
  // half_open_probes_max per replica and half-open phase are live; stale ones are dropped
  // as they surface.
  using probe_entry = std::tuple<clock_time, std::uint64_t, std::uint32_t>;
  std::priority_queue<probe_entry, std::vector<probe_entry>, std::greater<>> probe_verdicts_;
  bool probe_live(const probe_entry& e) const;
  // (wait over, request id) of requests waiting for a replica (replica_wait_ms), oldest
  // first (one wait for all: the order of arrival is the order of expiry). An entry is live
  // while its route waits with that end; others are dropped as they surface.
  std::deque<std::pair<clock_time, std::uint64_t>> waiting_;
  route* waiting_route(const std::pair<clock_time, std::uint64_t>& e);
  std::vector<router_action> actions_;
  router_counters counters_;
  bool draining_ = false;
};

}  // namespace dsrt::serving
