#include "sim/checker.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <span>

#include "kernels/assert.h"
#include "runtime/token_hash.h"

namespace dsrt::sim {

using namespace std::chrono;

namespace {
constexpr std::uint64_t model_vocab = 31990, model_step = 8759;   // tokens 3 .. 31992
}  // namespace

std::uint64_t prompt_key(std::span<const std::int32_t> prompt) { return hash_tokens(prompt, 0x5eed); }

std::int32_t model_token(std::uint64_t prompt_key, std::int64_t draw_index) {
  const std::uint64_t step = std::uint64_t(draw_index) % model_vocab * model_step;
  return std::int32_t(3 + (prompt_key % model_vocab + step) % model_vocab);
}

namespace {

// The first of `tokens` (the draws from `first_draw` on) that is not model_token's, or
// tokens.size(). Each check steps the residue on rather than dividing per token: the
// client side checks every token of a run (170 M in the scale scenario) twice.
std::size_t first_wrong_token(std::uint64_t key, std::int64_t first_draw, std::span<const std::int32_t> tokens) {
  std::uint64_t residue = std::uint64_t(model_token(key, first_draw) - 3);
  for (std::size_t k = 0; k < tokens.size(); ++k) {
    if (tokens[k] != std::int32_t(3 + residue)) return k;
    residue += model_step;
    if (residue >= model_vocab) residue -= model_vocab;
  }
  return tokens.size();
}

}  // namespace

checker_limits limits_of(const sim_config& c, milliseconds deadline_slack) {
  checker_limits l;
  l.queue_requests_max = c.router.admission.queue_requests_max;
  l.queue_tokens_max = c.router.admission.queue_tokens_max;
  l.tenant_queue_requests_max = c.router.admission.tenant_queue_requests_max;
  l.tenant_queue_tokens_max = c.router.admission.tenant_queue_tokens_max;
  l.sequences_max = c.scheduler.sequences_max;
  l.waiting_sequences_max = c.scheduler.waiting_sequences_max;
  l.deadline_slack_ms = deadline_slack;
  return l;
}

void invariant_checker::violation(std::string what) {
  if (violations_.size() < violations_max) violations_.push_back(std::move(what));
}

invariant_checker::client_view& invariant_checker::view(std::uint64_t request_id) {
  if (request_id >= clients_.size()) clients_.resize(request_id + 1);
  return clients_[request_id];
}

void invariant_checker::prefetch(std::uint64_t request_id) const {
  if (request_id < clients_.size()) __builtin_prefetch(&clients_[request_id], 1);
}

void invariant_checker::on_arrival(clock_time now, std::uint64_t request_id, clock_time deadline,
                                   std::int64_t max_tokens, std::uint64_t prompt_key) {
  auto& v = view(request_id);
  v.max_tokens = std::int32_t(std::clamp<std::int64_t>(max_tokens, 0, INT32_MAX));
  v.prompt_key = prompt_key;
  v.arrival = now;
  v.deadline = deadline;
}

void invariant_checker::on_chunk(clock_time now, const serving::token_chunk& chunk) {
  auto& v = view(chunk.request_id);
  if (v.finals > 0) violation(fmt::format("request {}: chunk {} after its final", chunk.request_id, chunk.sequence));
  if (chunk.sequence != v.next_sequence)
    violation(fmt::format("request {}: chunk {} where {} was due (repeated or missing)", chunk.request_id,
                          chunk.sequence, v.next_sequence));
  v.next_sequence = chunk.sequence + 1;
  if (limits_.model_tokens)
    if (const auto k = first_wrong_token(v.prompt_key, v.tokens, chunk.tokens); k < chunk.tokens.size())
      violation(fmt::format("request {}: token {} is {}, the model's is {}", chunk.request_id,
                            v.tokens + std::int64_t(k), chunk.tokens[k],
                            model_token(v.prompt_key, v.tokens + std::int64_t(k))));
  if (v.tokens == 0 && !chunk.tokens.empty()) v.first_chunk = now;
  v.tokens += std::int32_t(chunk.tokens.size());
}

void invariant_checker::on_final(clock_time now, const serving::final_message& f) {
  auto& v = view(f.request_id);
  if (v.finals < 255) ++v.finals;
  if (v.finals > 1) violation(fmt::format("request {}: {} finals", f.request_id, v.finals));
  if (f.chunks_sent != v.next_sequence)
    violation(fmt::format("request {}: final says {} chunks, {} arrived", f.request_id, f.chunks_sent, v.next_sequence));
  // The final's own copy of the answer (what a client that does not stream reads).
  if (f.tokens.size() != f.completion_tokens || std::int64_t(f.tokens.size()) != v.tokens)
    violation(fmt::format("request {}: the final holds {} tokens (completion_tokens {}), its chunks {}", f.request_id,
                          f.tokens.size(), f.completion_tokens, v.tokens));
  if (limits_.model_tokens)
    if (const auto k = first_wrong_token(v.prompt_key, 0, f.tokens); k < f.tokens.size())
      violation(fmt::format("request {}: the final's token {} is {}, the model's is {}", f.request_id, k, f.tokens[k],
                            model_token(v.prompt_key, std::int64_t(k))));
  if (now > v.deadline + limits_.deadline_slack_ms)
    violation(fmt::format("request {}: final {} ms after its deadline (slack {} ms)", f.request_id,
                          duration_cast<milliseconds>(now - v.deadline).count(), limits_.deadline_slack_ms.count()));
  if (f.failure && f.failure->code == error_code::deadline_exceeded &&
      now < v.deadline)
    violation(fmt::format("request {}: DEADLINE_EXCEEDED {} ms before its deadline", f.request_id,
                          duration_cast<milliseconds>(v.deadline - now).count()));
  v.failure = f.failure ? std::uint8_t(int(f.failure->code) + 1) : std::uint8_t(0);
  v.final_at = now;
}

void invariant_checker::on_router_routes(std::size_t routes) {
  if (std::int64_t(routes) > limits_.queue_requests_max)
    violation(fmt::format("the router holds {} requests, queue_requests_max is {}", routes, limits_.queue_requests_max));
}

// Preempted sequences go back to waiting past waiting_sequences_max (batch_scheduler.h):
// what is bounded is running alone and running + waiting.
void invariant_checker::on_admitted(std::uint64_t request_id, const std::string& tenant, std::int64_t weight) {
  auto& v = view(request_id);
  if (v.admitted_weight >= 0) return violation(fmt::format("request {} admitted twice", request_id));
  const auto [index, added] = tenant_index_.try_emplace(tenant, std::uint16_t(tenants_.size()));
  if (added) {
    DSRT_ASSERT(tenants_.size() < 65536, "the checker keeps at most 65,536 tenants");
    tenants_.emplace_back();
  }
  v.admitted_weight = weight;
  v.tenant = index->second;
  auto& t = tenants_[v.tenant];
  for (queued* q : {&all_, &t}) {
    ++q->requests;
    q->tokens += weight;
  }
  if (all_.tokens > limits_.queue_tokens_max)
    violation(fmt::format("the router holds {} tokens of requests, queue_tokens_max is {}", all_.tokens,
                          limits_.queue_tokens_max));
  if (t.requests > limits_.tenant_queue_requests_max || t.tokens > limits_.tenant_queue_tokens_max)
    violation(fmt::format("tenant {}: the router holds {} requests / {} tokens, the limits are {} / {}", tenant,
                          t.requests, t.tokens, limits_.tenant_queue_requests_max, limits_.tenant_queue_tokens_max));
}

void invariant_checker::on_router_final(std::uint64_t request_id) {
  if (request_id >= clients_.size() || clients_[request_id].admitted_weight < 0) return;   // refused at admission
  auto& v = clients_[request_id];
  for (queued* q : {&all_, &tenants_[v.tenant]}) {
    --q->requests;
    q->tokens -= v.admitted_weight;
  }
  v.admitted_weight = -1;
}

void invariant_checker::on_batcher(int replica, int running, int waiting) {
  if (running > limits_.sequences_max || running + waiting > limits_.sequences_max + limits_.waiting_sequences_max)
    violation(fmt::format("replica {}: {} running / {} waiting, the limits are {} / {} + {}", replica, running,
                          waiting, limits_.sequences_max, limits_.sequences_max, limits_.waiting_sequences_max));
}

void invariant_checker::on_breaker_transitions(int replica, const std::deque<policy::breaker_transition>& transitions) {
  using policy::breaker_state;
  for (const auto& t : transitions) {
    const bool legal = (t.from == breaker_state::closed && t.to == breaker_state::open) ||
                       (t.from == breaker_state::open && t.to == breaker_state::half_open) ||
                       (t.from == breaker_state::half_open && t.to != breaker_state::half_open);
    if (!legal) violation(fmt::format("replica {}: illegal breaker transition", replica));
  }
}

void invariant_checker::on_quiescent(int replica, const batching::batch_scheduler& s, bool expect_idle) {
  if (expect_idle && s.running() + s.waiting() > 0)
    violation(fmt::format("replica {}: work left at the end ({} running, {} waiting)", replica, s.running(), s.waiting()));
  if (s.leaked_blocks() != 0) violation(fmt::format("replica {}: {} KV blocks leaked", replica, s.leaked_blocks()));
  if (expect_idle && s.free_blocks() + s.prefix_cached_blocks() != s.total_blocks())
    violation(fmt::format("replica {}: {} of {} blocks held at quiescence", replica,
                          s.total_blocks() - s.free_blocks() - s.prefix_cached_blocks(), s.total_blocks()));
}

void invariant_checker::on_replica_end(int replica, int running, int waiting, std::int32_t leaked_blocks) {
  if (running + waiting > 0)
    violation(fmt::format("replica {}: work left at the end ({} running, {} waiting)", replica, running, waiting));
  if (leaked_blocks != 0) violation(fmt::format("replica {}: {} KV blocks leaked", replica, leaked_blocks));
}

void invariant_checker::finish_into(sim_report& report) {
  auto out = finish();
  report.requests = out.requests;
  report.completed = out.completed;
  report.completed_in_deadline = out.completed_in_deadline;
  report.tokens = out.tokens;
  report.errors_by_code = std::move(out.errors_by_code);
  report.ttft_ms = std::move(out.ttft_ms);
  report.tpot_ms = std::move(out.tpot_ms);
  report.violations = violations_;
}

invariant_checker::outcome invariant_checker::finish() {
  outcome out;
  for (std::uint64_t id = 1; id < clients_.size(); ++id) {
    const auto& v = clients_[id];
    ++out.requests;
    if (v.finals == 0) {
      violation(fmt::format("request {}: no final", id));
      continue;
    }
    if (v.failure != 0) {
      ++out.errors_by_code[std::string(error_code_name(error_code(v.failure - 1)))];
      continue;
    }
    ++out.completed;
    if (v.tokens != v.max_tokens)
      violation(fmt::format("request {}: completed with {} tokens, max_tokens is {}", id, v.tokens, v.max_tokens));
    out.tokens += v.tokens;
    if (v.final_at <= v.deadline) ++out.completed_in_deadline;
    if (v.tokens > 0) out.ttft_ms.push_back(duration<double, std::milli>(v.first_chunk - v.arrival).count());
    if (v.tokens > 1)
      out.tpot_ms.push_back(duration<double, std::milli>(v.final_at - v.first_chunk).count() / double(v.tokens - 1));
  }
  return out;
}

}  // namespace dsrt::sim
