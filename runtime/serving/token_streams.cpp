#include "runtime/serving/token_streams.h"

#include <algorithm>

#include "kernels/assert.h"

namespace dsrt::serving {

token_streams::token_streams(std::int32_t replica, int interval_tokens)
    : replica_(replica), interval_tokens_(std::size_t(interval_tokens)) {
  DSRT_ASSERT(interval_tokens >= 1 && interval_tokens <= batching::stream_interval_tokens_max,
              "interval_tokens {}", interval_tokens);
}

token_streams::~token_streams() = default;

void token_streams::open(std::uint64_t id, std::uint32_t attempt, std::int64_t max_new_tokens,
                         std::vector<std::int32_t> stop_token_ids) {
  streams_.erase(id);
  auto s = std::make_unique<stream>();
  s->attempt = attempt;
  s->max_new_tokens = max_new_tokens;
  if (stop_token_ids.size() <= inline_stops_max) {
    s->stop_count = std::uint8_t(stop_token_ids.size());
    std::copy(stop_token_ids.begin(), stop_token_ids.end(), s->stops);
  } else {
    s->stop_count = spilled;
    s->stops_more = std::move(stop_token_ids);
  }
  streams_.insert(id, std::move(s));
}

std::span<const std::int32_t> token_streams::waiting_tokens(const stream& s) const {
  return inline_unsent() ? std::span<const std::int32_t>(s.unsent, s.unsent_count)
                         : std::span<const std::int32_t>(s.unsent_more);
}

bool token_streams::is_stop(const stream& s, std::int32_t token) {
  const auto stops = s.stop_count == spilled ? std::span<const std::int32_t>(s.stops_more)
                                             : std::span<const std::int32_t>(s.stops, s.stop_count);
  return std::find(stops.begin(), stops.end(), token) != stops.end();
}

std::optional<std::uint32_t> token_streams::attempt(std::uint64_t id) const {
  if (const stream* s = streams_.find(id)) return s->attempt;
  return std::nullopt;
}

std::optional<replica_final> token_streams::close(std::uint64_t id, std::optional<error> failure,
                                                  finish_reason reason) {
  const stream* s = streams_.find(id);
  if (!s) return std::nullopt;
  replica_final f{id, s->attempt, replica_, std::move(failure), reason};
  streams_.erase(id);
  return f;
}

void token_streams::stop(std::uint64_t id, error failure, stream_output& out) {
  stream* s = streams_.find(id);
  if (!s) return;
  flush(id, *s, out);
  end(id, std::move(failure), finish_reason::length, out);
}

void token_streams::flush(std::uint64_t id, stream& s, stream_output& out) const {
  const auto tokens = waiting_tokens(s);
  if (tokens.empty()) return;
  out.chunks.chunks.push_back(replica_chunk{id, s.attempt, replica_, {tokens.begin(), tokens.end()}});
  s.sent += std::int64_t(tokens.size());
  if (inline_unsent()) s.unsent_count = 0;
  else s.unsent_more.clear();
}

void token_streams::end(std::uint64_t id, std::optional<error> failure, finish_reason reason,
                        stream_output& out) {
  if (auto f = close(id, std::move(failure), reason)) out.finals.push_back(std::move(*f));
}

void token_streams::on_step(batching::batch_scheduler& scheduler, const batching::step_plan& plan,
                            std::span<const std::int32_t> sampled, stream_output& out) {
  // The streams are cold (other replicas ran since): start loading their slots before the
  // scheduler's work, then the streams themselves, so the misses overlap.
  for (const auto& p : plan.sequences)
    if (p.sample) streams_.prefetch(p.id);
  scheduler.complete(plan, sampled);
  // Each sampled sequence's stream, looked up once (the loop below ends only the stream it
  // is at, and an id_map's other objects stay where they are).
  stepping_.clear();
  for (const auto& p : plan.sequences) {
    if (!p.sample) continue;
    stream* s = streams_.find(p.id);
    if (s) __builtin_prefetch(s, 1);
    stepping_.push_back(s);
  }
  std::size_t next = 0;
  for (std::size_t k = 0; k < plan.sequences.size(); ++k) {
    const auto& p = plan.sequences[k];
    if (!p.sample) continue;
    stream* s = stepping_[next];
    const std::int32_t token = sampled[next++];
    if (!scheduler.is_current(plan, k)) continue;   // replaced or dropped during the step
    if (!s) continue;
    if (is_stop(*s, token)) {
      scheduler.finish(p.id);
      flush(p.id, *s, out);
      end(p.id, std::nullopt, finish_reason::stop, out);
      continue;
    }
    // Never more than interval_tokens_ wait: the push that reaches it flushes.
    std::size_t waiting;
    if (inline_unsent()) {
      s->unsent[s->unsent_count] = token;
      waiting = ++s->unsent_count;
    } else {
      s->unsent_more.push_back(token);
      waiting = s->unsent_more.size();
    }
    // Every token of the attempt passes here, so sent + unsent == scheduler.generated(id).
    const bool done = s->sent + std::int64_t(waiting) >= s->max_new_tokens;
    if (done || s->sent == 0 || waiting >= interval_tokens_) flush(p.id, *s, out);
    if (done) {
      scheduler.finish(p.id);
      end(p.id, std::nullopt, finish_reason::length, out);
    }
  }
}

void token_streams::on_failed_step(batching::batch_scheduler& scheduler, const batching::step_plan& plan,
                                   const error& failure, stream_output& out) {
  for (std::size_t k = 0; k < plan.sequences.size(); ++k) {
    const auto& p = plan.sequences[k];
    if (!scheduler.is_current(plan, k)) continue;
    scheduler.fail(p.id);
    stop(p.id, failure, out);
  }
}

}  // namespace dsrt::serving
