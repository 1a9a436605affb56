#include "runtime/serving/request_router.h"

#include <algorithm>

namespace dsrt::serving {

struct request_router::route {
  generate_request request;
  policy::admission_ticket ticket;
  std::vector<std::int32_t> streamed;        // tokens sent to the client
  std::uint32_t chunks = 0;                  // chunks sent to the client
  std::uint32_t attempt = 0;
  int replica = -1;
  std::optional<policy::breaker_ticket> breaker;
  std::unique_ptr<engine::text_output> text; // null without a tokenizer or for a cached answer
  bool from_cache = false;                   // answered by the response cache
  std::string cached_text;
  std::string fallback_reason;               // why the response cache was asked
  clock_time accepted_at{}, first_chunk_at{};
  bool awaiting_cache = false;               // a lookup_response is out
  std::optional<clock_time> waiting_until;   // waiting for a replica to come up, until then
  std::uint64_t cache_hash = 0;              // its response's cache key hash (when it goes there)
};

namespace {

std::int64_t weight(const generate_request& r) { return std::int64_t(r.prompt.size()) + r.max_tokens; }

bool deterministic(const generate_request& r) {
  return r.sampling.temperature < engine::greedy_temperature_below || r.sampling.top_k == 1;
}

double seconds(clock_time::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

request_router::request_router(const router_config& config, const tokenizer::tokenizer* tokenizer)
    : config_(config), tokenizer_(tokenizer), admission_(config.admission),
      replicas_(std::size_t(std::max(config.replicas, 0))), views_(replicas_.size()) {
  for (auto& slot : replicas_) slot.breaker = std::make_unique<policy::circuit_breaker>(config.breaker);
}

request_router::~request_router() = default;

std::vector<router_action> request_router::take_actions() {
  std::vector<router_action> out;
  out.swap(actions_);
  return out;
}

void request_router::take_actions(std::vector<router_action>& out) {
  out.clear();
  out.swap(actions_);
}

std::int32_t request_router::replicas_up() const {
  return std::int32_t(std::count_if(replicas_.begin(), replicas_.end(), [](const auto& s) { return s.up; }));
}

cache::response_key request_router::key_of(generate_request r) const {
  cache::response_key k;
  k.prompt = std::move(r.prompt);
  k.max_tokens = r.max_tokens;
  k.stop_token_ids = config_.stop_token_ids;
  k.stop_strings = std::move(r.stop);
  return k;
}

status request_router::validate(const generate_request& r) const {
  const auto& o = config_;
  auto bad = [&](std::string m) {
    return error{error_code::invalid_argument, fmt::format("request {}: {}", r.request_id, m)};
  };
  if (r.prompt.empty()) return bad("the prompt is empty");
  // One unsigned comparison per token without an exit in the loop (it vectorizes: a
  // prompt is hundreds of tokens, once per request), then the first offender for the message.
  const auto outside = [&](std::int32_t t) { return std::uint32_t(t) >= std::uint32_t(o.vocab_size); };
  bool any_outside = false;
  for (std::int32_t t : r.prompt) any_outside |= outside(t);
  if (any_outside) {
    const std::int32_t t = *std::find_if(r.prompt.begin(), r.prompt.end(), outside);
    return bad(fmt::format("prompt token {} is outside the vocabulary (size {})", t, o.vocab_size));
  }
  if (r.max_tokens < 1) return bad(fmt::format("max_tokens {} is below 1", r.max_tokens));
  if (weight(r) > o.context_tokens_max)
    return bad(fmt::format("prompt ({} tokens) + max_tokens ({}) exceeds the context of {} tokens",
                           r.prompt.size(), r.max_tokens, o.context_tokens_max));
  if (auto s = engine::validate(r.sampling); !s) return bad(s.err().message);
  if (int(r.stop.size()) > o.stop_strings_max)
    return bad(fmt::format("{} stop strings, at most {}", r.stop.size(), o.stop_strings_max));
  for (const auto& s : r.stop)
    if (s.empty() || int(s.size()) > o.stop_string_bytes_max)
      return bad(fmt::format("stop strings must have 1 to {} bytes", o.stop_string_bytes_max));
  if (!r.stop.empty() && !tokenizer_) return bad("stop strings need the tokenizer, which this router has not");
  if (r.priority < 0 || r.priority > 255) return bad(fmt::format("priority {} is outside 0 .. 255", r.priority));
  return ok_status();
}

void request_router::reject(generate_request& request, error e, milliseconds retry_after) {
  ++counters_.rejected;
  final_message f;
  f.request_id = request.request_id;
  f.prompt_tokens = std::uint32_t(request.prompt.size());
  f.failure = std::move(e);
  f.retry_after_ms = std::uint32_t(retry_after.count());
  actions_.push_back(send_final{std::move(f), std::nullopt, std::nullopt});
}

void request_router::on_generate(clock_time now, generate_request request) {
  const auto id = request.request_id;
  if (draining_)
    return reject(request, make_error(error_code::unavailable, "request {}: the service is draining", id),
                  config_.unavailable_retry_after_ms);
  if (routes_.contains(id))
    return reject(request, make_error(error_code::invalid_argument, "request {}: the id is already in use", id),
                  milliseconds(0));
  if (auto s = validate(request); !s) return reject(request, s.err(), milliseconds(0));
  if (request.tenant.empty()) request.tenant = "default";
  auto decision = admission_.admit(now, request.tenant, weight(request));
  if (!decision.ticket) return reject(request, decision.ticket.err(), decision.retry_after_ms);
  ++counters_.accepted;
  auto r = std::make_unique<route>();
  r->request = std::move(request);
  r->ticket = std::move(*decision.ticket);
  r->accepted_at = now;
  // Hashed now, while validate() has just read the prompt: at completion it is cold.
  if (config_.response_cache && deterministic(r->request))
    r->cache_hash = cache::key_hash({}, r->request.prompt, r->request.max_tokens, config_.stop_token_ids, r->request.stop);
  if (tokenizer_) r->text = std::make_unique<engine::text_output>(*tokenizer_, r->request.stop);
  route& ref = routes_.insert(id, std::move(r));
  if (ref.request.deadline) {
    // Finished routes leave entries behind; rebuild before they outnumber the live ones.
    if (deadlines_.size() > 2 * routes_.size() + 1024) {
      std::vector<deadline_entry> live;
      routes_.for_each([&](std::uint64_t rid, const route& rt) {
        if (rt.request.deadline) live.emplace_back(*rt.request.deadline, rid);
      });
      deadlines_ = decltype(deadlines_)(std::greater<>(), std::move(live));
    } else {
      deadlines_.emplace(*ref.request.deadline, id);
    }
  }
  dispatch(now, ref, -1);
}

bool request_router::probe_live(const probe_entry& e) const {
  const route* r = routes_.find(std::get<1>(e));
  return r && r->attempt == std::get<2>(e) && r->breaker && r->breaker->probe;
}

request_router::route* request_router::waiting_route(const std::pair<clock_time, std::uint64_t>& e) {
  route* r = routes_.find(e.second);
  return r && r->waiting_until == e.first ? r : nullptr;
}

void request_router::on_deadlines(clock_time now) {
  while (!waiting_.empty() && waiting_.front().first <= now) {
    const auto e = waiting_.front();
    waiting_.pop_front();
    if (route* r = waiting_route(e)) {
      r->waiting_until.reset();
      fall_back(now, *r, fmt::format("no replica came up within {} ms (replica_wait_ms)",
                                     config_.replica_wait_ms.count()));
    }
  }
  while (!probe_verdicts_.empty() && std::get<0>(probe_verdicts_.top()) <= now) {
    const auto e = probe_verdicts_.top();
    probe_verdicts_.pop();
    if (probe_live(e)) record_outcome(now, *routes_.find(std::get<1>(e)), false);   // the request goes on
  }
  while (!deadlines_.empty() && deadlines_.top().first <= now) {
    const auto [deadline, id] = deadlines_.top();
    deadlines_.pop();
    route* found = routes_.find(id);
    // Gone, or a later request that reuses the id with another deadline.
    if (!found || found->request.deadline != deadline) continue;
    route& r = *found;
    ++counters_.expired;
    if (r.replica >= 0) actions_.push_back(cancel_on_replica{r.replica, id});
    // As for a cancel: a closed-state ticket says nothing; a half-open probe that did not
    // answer in time counts as failed, so the breaker cannot wait for it forever.
    if (r.breaker && r.breaker->probe) record_outcome(now, r, false);
    r.breaker.reset();
    finish(now, r, make_error(error_code::deadline_exceeded, "request {} passed its deadline", id),
           finish_reason::length);
  }
}

std::optional<clock_time> request_router::next_deadline() {
  // Entries of finished requests (and probes with a verdict) are dropped here, so the
  // answer is a live one.
  std::optional<clock_time> next;
  while (!deadlines_.empty()) {
    const auto& [deadline, id] = deadlines_.top();
    if (const route* r = routes_.find(id); r && r->request.deadline == deadline) {
      next = deadline;
      break;
    }
    deadlines_.pop();
  }
  while (!waiting_.empty() && !waiting_route(waiting_.front())) waiting_.pop_front();
  if (!waiting_.empty() && (!next || waiting_.front().first < *next)) next = waiting_.front().first;
  while (!probe_verdicts_.empty() && !probe_live(probe_verdicts_.top())) probe_verdicts_.pop();
  if (!probe_verdicts_.empty() && (!next || std::get<0>(probe_verdicts_.top()) < *next))
    next = std::get<0>(probe_verdicts_.top());
  return next;
}

void request_router::finish(clock_time now, route& r, std::optional<error> failure, finish_reason reason,
                            milliseconds retry_after) {
  // The route ends here: what it holds moves into the final and the cache entry, not copied.
  if (r.replica >= 0) views_[std::size_t(r.replica)].outstanding_tokens -= weight(r.request);
  admission_.release(now, r.ticket);
  send_final out;
  final_message& f = out.final;
  f.request_id = r.request.request_id;
  f.chunks_sent = r.chunks;
  f.reason = reason;
  f.prompt_tokens = std::uint32_t(r.request.prompt.size());
  f.completion_tokens = std::uint32_t(r.streamed.size());
  f.text = r.text ? r.text->text() : std::move(r.cached_text);
  f.retry_after_ms = std::uint32_t(retry_after.count());
  if (r.first_chunk_at != clock_time{}) {
    out.ttft_seconds = seconds(r.first_chunk_at - r.accepted_at);
    if (!failure && r.streamed.size() > 1)
      out.tpot_seconds = seconds(now - r.first_chunk_at) / double(r.streamed.size() - 1);
  }
  if (failure) {
    ++counters_.failed;
  } else {
    ++counters_.completed;
    if (config_.response_cache && deterministic(r.request) && !r.from_cache) {
      actions_.push_back(store_response{key_of(std::move(r.request)),
                                        {r.streamed, f.text,
                                         reason == finish_reason::stop ? cache::finish_reason::stop
                                                                       : cache::finish_reason::length},
                                        r.cache_hash});
    }
  }
  f.tokens = std::move(r.streamed);
  f.failure = std::move(failure);
  actions_.push_back(std::move(out));
  routes_.erase(r.request.request_id);   // r is gone from here on
}

void request_router::complete(clock_time now, route& r, finish_reason reason) {
  if (r.text) {
    if (auto tail = r.text->finish(); !tail.empty())
      actions_.push_back(send_chunk{{r.request.request_id, r.chunks++, {}, std::string(tail)}});
    if (r.text->stopped()) reason = finish_reason::stop;
  }
  finish(now, r, std::nullopt, reason);
}

void request_router::record_outcome(clock_time now, route& r, bool success) {
  if (!r.breaker || r.replica < 0) return;
  replica_slot& slot = replicas_[std::size_t(r.replica)];
  slot.breaker->record(now, *r.breaker, success);
  const bool closed = slot.breaker->state() == policy::breaker_state::closed;
  if (closed != slot.breaker_closed) {
    slot.breaker_closed = closed;
    if (closed) std::erase(not_closed_, r.replica);
    else not_closed_.push_back(r.replica);
    refresh_view(std::size_t(r.replica));
  }
  r.breaker.reset();
}

void request_router::refresh_view(std::size_t replica) {
  const replica_slot& slot = replicas_[replica];
  views_[replica].available = slot.up && slot.breaker_closed;
}

void request_router::set_view_available(std::size_t replica, bool available) {
  if (views_[replica].available == available) return;
  views_[replica].available = available;
  touched_.push_back(replica);
}

void request_router::dispatch(clock_time now, route& r, int avoid) {
  if (r.replica >= 0) views_[std::size_t(r.replica)].outstanding_tokens -= weight(r.request);
  r.replica = -1;
  if (r.request.deadline && *r.request.deadline <= now)
    return finish(now, r, make_error(error_code::deadline_exceeded, "request {} passed its deadline",
                                     r.request.request_id),
                  finish_reason::length);
  const std::int64_t remaining = r.request.max_tokens - std::int64_t(r.streamed.size());
  // Every token arrived before the replica went away: the request is done.
  if (remaining < 1) return complete(now, r, finish_reason::length);
  if (int(r.attempt) >= config_.request_attempts_max)
    return fall_back(now, r, fmt::format("{} attempts failed", r.attempt));
  // This request's views: a breaker that is not closed may let it through by now (or still
  // not), and `avoid` is out. Every change is undone on the way out.
  touched_.clear();
  struct restore_views {
    request_router& router;
    ~restore_views() {
      for (std::size_t i : router.touched_) router.refresh_view(i);
    }
  } restore{*this};
  for (std::int32_t i : not_closed_)
    if (replicas_[std::size_t(i)].up)
      set_view_available(std::size_t(i), replicas_[std::size_t(i)].breaker->state(now) != policy::breaker_state::open);
  if (avoid >= 0 && std::size_t(avoid) < views_.size()) set_view_available(std::size_t(avoid), false);
  // The breaker decides last: a half-open replica takes only its bounded probes.
  while (const auto choice = policy::choose_replica(views_, r.request.prompt, config_.choice)) {
    auto& slot = replicas_[std::size_t(*choice)];
    r.breaker = slot.breaker->try_acquire(now);
    if (!r.breaker) {
      set_view_available(std::size_t(*choice), false);
      continue;
    }
    r.replica = *choice;
    views_[std::size_t(*choice)].outstanding_tokens += weight(r.request);
    replica_request rr;
    rr.request_id = r.request.request_id;
    rr.attempt = ++r.attempt;
    if (r.breaker->probe && config_.probe_verdict_ms.count() > 0)
      probe_verdicts_.emplace(now + config_.probe_verdict_ms, r.request.request_id, r.attempt);
    rr.sequence.id = r.request.request_id;
    // Room for every token the replica may append, so its sequence never regrows (when the
    // request reaches it in process; a decoded one is sized by the codec).
    rr.sequence.tokens.reserve(r.request.prompt.size() + r.streamed.size() + std::size_t(remaining));
    rr.sequence.tokens.assign(r.request.prompt.begin(), r.request.prompt.end());
    rr.sequence.tokens.insert(rr.sequence.tokens.end(), r.streamed.begin(), r.streamed.end());
    rr.sequence.prompt_tokens = std::int64_t(r.request.prompt.size());
    rr.sequence.draw_base = std::int64_t(r.streamed.size());
    rr.sequence.max_new_tokens = remaining;
    rr.sequence.sampling = r.request.sampling;
    rr.sequence.priority = std::min(r.request.priority, config_.priority_classes - 1);
    rr.sequence.deadline = r.request.deadline;
    rr.stop_token_ids = config_.stop_token_ids;
    rr.replica = *choice;
    actions_.push_back(send_request{*choice, std::move(rr)});
    return;
  }
  // No replica up at all, as while a worker restarts or reconnects: wait for one (once per
  // dispatch; attempts still bound how often a request is dispatched).
  if (config_.replica_wait_ms.count() > 0 && replicas_up() == 0) {
    r.waiting_until = now + config_.replica_wait_ms;
    waiting_.emplace_back(*r.waiting_until, r.request.request_id);
    ++counters_.waited;
    return;
  }
  fall_back(now, r, "no replica can serve it now");
}

void request_router::redispatch(clock_time now, route& r, bool replica_left) {
  if (!replica_left) {
    record_outcome(now, r, false);
  } else {
    // The replica left (its node lost, its batcher gone): membership took it out of
    // rotation, and its breaker is for a replica that stays up and fails. So, as for a
    // cancel, a closed-state ticket says nothing; a half-open probe counts as failed (every
    // probe must be recorded). Counted as failures, a network blip that cut every worker
    // off for a moment opened every breaker, and the replicas, back at once, refused all
    // requests for open_ms.
    if (r.breaker && r.breaker->probe) record_outcome(now, r, false);
    r.breaker.reset();
  }
  ++(r.streamed.empty() ? counters_.retries : counters_.resumptions);
  dispatch(now, r, r.replica);
}

void request_router::fall_back(clock_time now, route& r, const std::string& why) {
  ++counters_.fallbacks;
  if (config_.response_cache && r.streamed.empty() && deterministic(r.request)) {
    // The route stays while the lookup runs; a cancel meanwhile ends it, and the answer
    // then finds nothing to do.
    r.awaiting_cache = true;
    r.fallback_reason = why;
    actions_.push_back(lookup_response{r.request.request_id, key_of(r.request)});
    return;
  }
  finish(now, r, make_error(error_code::unavailable, "request {}: {}", r.request.request_id, why),
         finish_reason::length, config_.unavailable_retry_after_ms);
}

void request_router::on_cached(clock_time now, std::uint64_t request_id, std::optional<cache::cached_response> hit) {
  route* found = routes_.find(request_id);
  if (!found || !found->awaiting_cache) return;
  route& r = *found;
  r.awaiting_cache = false;
  if (!hit)
    return finish(now, r,
                  make_error(error_code::unavailable, "request {}: {}; not in the response cache", request_id,
                             r.fallback_reason),
                  finish_reason::length, config_.unavailable_retry_after_ms);
  ++counters_.response_cache_hits;
  r.streamed = hit->tokens;
  actions_.push_back(send_chunk{{request_id, r.chunks++, hit->tokens, hit->text}});
  r.text.reset();
  r.from_cache = true;
  r.cached_text = hit->text;
  finish(now, r, std::nullopt, hit->reason == cache::finish_reason::stop ? finish_reason::stop : finish_reason::length);
}

void request_router::on_cancel(clock_time now, std::uint64_t request_id) {
  route* found = routes_.find(request_id);
  if (!found) return;
  route& r = *found;
  if (r.replica >= 0) actions_.push_back(cancel_on_replica{r.replica, request_id});
  // A cancel says nothing about the replica's health, so a closed-state ticket is dropped.
  // A half-open probe cannot be: the breaker closes only when all its probes succeed, so a
  // dropped probe would wedge it half-open. It counts as failed: open again, probe later.
  if (r.breaker && r.breaker->probe) record_outcome(now, r, false);
  r.breaker.reset();
  finish(now, r, make_error(error_code::cancelled, "request {} was cancelled", request_id), finish_reason::length);
}

void request_router::on_replica_up(clock_time now, std::int32_t replica) {
  if (replica < 0 || replica >= std::int32_t(replicas_.size())) return;
  replicas_[std::size_t(replica)].up = true;
  refresh_view(std::size_t(replica));
  // Requests waiting for a replica go now, in the order they began to wait.
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (const auto& e : waiting)
    if (route* r = waiting_route(e)) {
      r->waiting_until.reset();
      dispatch(now, *r, -1);
    }
}

void request_router::on_replica_down(clock_time now, std::int32_t replica) {
  if (replica < 0 || replica >= std::int32_t(replicas_.size()) || !replicas_[std::size_t(replica)].up) return;
  replicas_[std::size_t(replica)].up = false;
  refresh_view(std::size_t(replica));
  std::vector<std::uint64_t> affected;
  routes_.for_each([&](std::uint64_t id, const route& r) {
    if (r.replica == replica) affected.push_back(id);
  });
  std::sort(affected.begin(), affected.end());   // a deterministic order for the simulator
  for (auto id : affected)
    if (route* r = routes_.find(id)) redispatch(now, *r, /*replica_left=*/true);
}

void request_router::on_chunk(clock_time now, const replica_chunk& c) {
  route* found = routes_.find(c.request_id);
  if (!found || found->attempt != c.attempt || found->replica != c.replica) return;
  route& r = *found;
  // A half-open probe's verdict is the replica's first answer, not the end of a generation
  // that may take minutes: tokens from it mean the replica serves again.
  if (r.breaker && r.breaker->probe) record_outcome(now, r, true);
  if (r.streamed.empty())
    r.streamed.reserve(std::size_t(std::clamp<std::int64_t>(r.request.max_tokens, 0, streamed_reserve_tokens_max)));
  token_chunk out{c.request_id, 0, {}, {}};
  out.tokens.reserve(c.tokens.size());
  for (std::int32_t t : c.tokens) {
    if (std::int64_t(r.streamed.size()) >= r.request.max_tokens) break;
    r.streamed.push_back(t);
    out.tokens.push_back(t);
    if (!r.text) continue;
    out.text += r.text->push(t);
    if (r.text->stopped()) break;
  }
  if (!out.tokens.empty()) {
    if (r.chunks == 0) r.first_chunk_at = now;
    out.sequence = r.chunks++;
    actions_.push_back(send_chunk{std::move(out)});
  }
  if (r.text && r.text->stopped()) {
    actions_.push_back(cancel_on_replica{r.replica, c.request_id});
    record_outcome(now, r, true);
    finish(now, r, std::nullopt, finish_reason::stop);
  }
}

void request_router::on_chunks(clock_time now, std::span<const replica_chunk> chunks) {
  // Other replicas' messages came between this one's: its routes are cold. Their slots,
  // then the routes, then the streamed tokens' ends, each set of loads issued together.
  for (const auto& c : chunks) routes_.prefetch(c.request_id);
  for (const auto& c : chunks)
    if (const route* r = routes_.find(c.request_id)) {
      __builtin_prefetch(&r->streamed);
      __builtin_prefetch(&r->request.max_tokens);
    }
  for (const auto& c : chunks)
    if (const route* r = routes_.find(c.request_id)) __builtin_prefetch(r->streamed.data() + r->streamed.size(), 1);
  for (const auto& c : chunks) on_chunk(now, c);
}

void request_router::on_final(clock_time now, const replica_final& f) {
  route* found = routes_.find(f.request_id);
  if (!found || found->attempt != f.attempt || found->replica != f.replica) return;
  route& r = *found;
  if (!f.failure) {
    record_outcome(now, r, true);
    return complete(now, r, f.reason);
  }
  const auto code = f.failure->code;
  // Ends of the request's own making. invalid_argument (a request larger than the
  // replica's KV cache, say): the replica answered as it should. A deadline or a cancel
  // the replica reports is taken as the router's own timer or cancel would be (on_deadlines,
  // on_cancel): a closed-state ticket says nothing about the replica, a half-open probe
  // that did not finish counts as failed — whichever of the two comes first.
  if (code == error_code::invalid_argument) {
    record_outcome(now, r, true);
    return finish(now, r, f.failure, finish_reason::length);
  }
  if (code == error_code::cancelled || code == error_code::deadline_exceeded) {
    if (r.breaker && r.breaker->probe) record_outcome(now, r, false);
    r.breaker.reset();
    return finish(now, r, f.failure, finish_reason::length);
  }
  redispatch(now, r);
}

}  // namespace dsrt::serving
