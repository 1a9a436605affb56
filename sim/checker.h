#pragma once
// The simulator's invariant checker: what a client and an operator may rely on, checked
// from the outside of the policies, event by event.
//  - exactly one final per request;
//  - chunks numbered 0, 1, 2, ... without repeats or gaps, none after the final, and the
//    final's chunk count equal to what arrived;
//  - every token is the model's token for its place in the stream (across retries,
//    resumptions and corrupted messages), and a completed request has max_tokens of them
//    (the simulated model never samples a stop token);
//  - deadlines honoured: no final later than deadline + deadline_slack (the router ends a
//    request at its deadline; the slack is the way to the client), and no
//    DEADLINE_EXCEEDED before the deadline;
//  - queues within their limits (the router's requests; each batcher's running sequences,
//    and running + waiting, since preempted sequences wait past waiting_sequences_max);
//  - only legal breaker transitions (closed -> open -> half_open -> closed | open);
//  - at quiescence no work left on a replica and no KV block leaked;
//  - recovery: recovery_ms after the last fault ends, every replica is up in the router's
//    view and no breaker is open.
// The checker keeps the first violations_max descriptions.
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/batching/batch_scheduler.h"
#include "runtime/clock.h"
#include "runtime/policy/circuit_breaker.h"
#include "runtime/serving/messages.h"
#include "sim/simulation.h"

namespace dsrt::sim {

inline constexpr std::size_t violations_max = 100;

struct checker_limits {
  std::int64_t queue_requests_max = 0;      // the router's requests
  std::int64_t queue_tokens_max = 0;        // their prompt + max_tokens
  std::int64_t tenant_queue_requests_max = 0, tenant_queue_tokens_max = 0;   // per tenant
  int sequences_max = 0, waiting_sequences_max = 0;   // per batcher
  milliseconds deadline_slack_ms{0};        // how late a final may come after the deadline
  bool model_tokens = true;                 // tokens come from model_token() (not null_executor's)
};

// The limits of a configuration's router and batchers, with the given deadline slack.
checker_limits limits_of(const sim_config& config, milliseconds deadline_slack);

// The simulated model, greedy: the token it draws at `draw_index` (the n-th generated
// token) for a prompt, known by prompt_key(). The same prompt gets the same answer
// whichever request asks, so an answer from the response cache is the model's too.
std::uint64_t prompt_key(std::span<const std::int32_t> prompt);
std::int32_t model_token(std::uint64_t prompt_key, std::int64_t draw_index);

class invariant_checker {
 public:
  explicit invariant_checker(const checker_limits& limits) : limits_(limits) {}

  // A request was sent: its deadline, token budget and prompt_key (what its tokens must be).
  void on_arrival(clock_time now, std::uint64_t request_id, clock_time deadline, std::int64_t max_tokens,
                  std::uint64_t prompt_key);
  void on_chunk(clock_time now, const serving::token_chunk& chunk);
  void on_final(clock_time now, const serving::final_message& final);
  // Starts loading what on_chunk() and on_final() read of this request (its view is cold:
  // there is one per request of the run), so that a batch's loads overlap.
  void prefetch(std::uint64_t request_id) const;
  void on_router_routes(std::size_t routes);
  // The router admitted a request (its prompt + max_tokens: `weight`) / ended it (its final
  // left the router): the checker's own ledger of what is queued, in all and per tenant,
  // held against the admission limits.
  void on_admitted(std::uint64_t request_id, const std::string& tenant, std::int64_t weight);
  void on_router_final(std::uint64_t request_id);
  void on_batcher(int replica, int running, int waiting);
  void on_breaker_transitions(int replica, const std::deque<policy::breaker_transition>& transitions);
  // A replica at the end of the run (or just cleared by a kill).
  void on_quiescent(int replica, const batching::batch_scheduler& scheduler, bool expect_idle);
  // A replica at the end of the run, as its batcher reports itself.
  void on_replica_end(int replica, int running, int waiting, std::int32_t leaked_blocks);
  void violation(std::string what);

  // Per-request checks at the end, and what a user would see.
  struct outcome {
    std::int64_t requests = 0, completed = 0, completed_in_deadline = 0, tokens = 0;
    std::map<std::string, std::int64_t> errors_by_code;
    std::vector<double> ttft_ms, tpot_ms;
  };
  outcome finish();
  // finish(), written into a report with the violations.
  void finish_into(sim_report& report);
  const std::vector<std::string>& violations() const { return violations_; }

 private:
  // One per request for the whole run (4.7 M in the scale scenario): a cache line. The
  // admission ledger's part (weight, tenant) lives here too: a hash map entry per request
  // cost the router's side more than every other check together.
  struct client_view {
    clock_time arrival{}, deadline{}, first_chunk{}, final_at{};
    std::uint64_t prompt_key = 0;
    std::int32_t tokens = 0, max_tokens = 0;
    std::int64_t admitted_weight = -1;   // prompt + max_tokens while queued at the router; -1: not
    std::uint32_t next_sequence = 0;
    std::uint16_t tenant = 0;            // index into tenants_ while admitted
    std::uint8_t finals = 0;             // saturates at 255
    std::uint8_t failure = 0;            // 0: none, else the final's error_code + 1
  };
  static_assert(sizeof(client_view) == 64);
  client_view& view(std::uint64_t request_id);

  checker_limits limits_;
  std::vector<client_view> clients_;   // by request id (ids are 1, 2, 3, ...)
  // The admission ledger: what the router holds (from admission until the final leaves
  // it), in all and per tenant, held against the limits.
  struct queued {
    std::int64_t requests = 0, tokens = 0;
  };
  std::unordered_map<std::string, std::uint16_t> tenant_index_;
  std::vector<queued> tenants_;
  queued all_;
  std::vector<std::string> violations_;
};

}  // namespace dsrt::sim
