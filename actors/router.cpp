#include "actors/router.h"

#include "actors/cache.h"

#include <unordered_map>

#include "runtime/engine/text_output.h"

namespace dsrt::actors {

struct route {
  generate_request request;
  caf::actor client;
  policy::admission_ticket ticket;
  std::vector<std::int32_t> streamed;        // tokens sent to the client
  std::uint32_t chunks = 0;                  // chunks sent to the client
  std::uint32_t attempt = 0;
  int replica = -1;
  std::optional<policy::breaker_ticket> breaker;
  std::unique_ptr<engine::text_output> text;
  clock_time accepted_at{}, first_chunk_at{};
  std::string cached_text;                   // the text of a response-cache answer
  bool awaiting_cache = false;               // a fallback lookup is in flight
};

struct replica_slot {
  caf::actor batcher;                        // null while down
  bool permanently_down = false;
  std::int64_t outstanding_tokens = 0;
  std::unique_ptr<policy::circuit_breaker> breaker;
};

struct router_state {
  router_options options;
  std::shared_ptr<const tokenizer::tokenizer> tokenizer;
  std::unique_ptr<policy::admission> admission;
  caf::actor cache;                          // null: no response cache
  std::vector<replica_slot> replicas;
  std::unordered_map<std::uint64_t, route> routes;
  router_counters counters;
  bool draining = false;
  metrics::histogram* ttft = nullptr;   // in the registry, which outlives the actor
  metrics::histogram* tpot = nullptr;
  static inline const char* name = "dsrt.router";
};

namespace {

using self_ptr = caf::stateful_actor<router_state>*;

std::int64_t weight(const generate_request& r) { return std::int64_t(r.prompt.size()) + r.max_tokens; }

cache::response_key key_of(const generate_request& r) {
  cache::response_key k;
  k.prompt = r.prompt;
  k.max_tokens = r.max_tokens;
  k.stop_strings = r.stop;
  return k;
}

bool deterministic(const generate_request& r) {
  return r.sampling.temperature < engine::greedy_temperature_below || r.sampling.top_k == 1;
}

status validate(const router_state& st, const generate_request& r) {
  const auto& o = st.options;
  auto bad = [&](std::string m) { return error{error_code::invalid_argument, fmt::format("request {}: {}", r.request_id, m)}; };
  if (r.prompt.empty()) return bad("the prompt is empty");
  for (std::int32_t t : r.prompt)
    if (t < 0 || t >= o.vocab_size) return bad(fmt::format("prompt token {} is outside the vocabulary (size {})", t, o.vocab_size));
  if (r.max_tokens < 1) return bad(fmt::format("max_tokens {} is below 1", r.max_tokens));
  if (weight(r) > o.context_tokens_max)
    return bad(fmt::format("prompt ({} tokens) + max_tokens ({}) exceeds the context of {} tokens",
                           r.prompt.size(), r.max_tokens, o.context_tokens_max));
  if (auto s = engine::validate(r.sampling); !s) return bad(s.err().message);
  if (int(r.stop.size()) > o.stop_strings_max) return bad(fmt::format("{} stop strings, at most {}", r.stop.size(), o.stop_strings_max));
  for (const auto& s : r.stop)
    if (s.empty() || int(s.size()) > o.stop_string_bytes_max)
      return bad(fmt::format("stop strings must have 1 to {} bytes", o.stop_string_bytes_max));
  if (r.priority < 0 || r.priority > 255) return bad(fmt::format("priority {} is outside 0 .. 255", r.priority));
  return ok_status();
}

// dsrt_requests_total{outcome}: every final the router sends, rejections included.
void count_outcome(router_state& st, const std::optional<error>& failure) {
  st.options.metrics
      ->counter("dsrt_requests_total", "requests that got their final, by outcome",
                {{"outcome", failure ? std::string(error_code_name(failure->code)) : std::string("completed")}})
      .inc();
}

// Sends the one final and forgets the request.
void finish(self_ptr self, route& r, std::optional<error> failure, finish_reason reason,
            milliseconds retry_after = milliseconds(0)) {
  auto& st = self->state;
  final_message f;
  f.request_id = r.request.request_id;
  f.chunks_sent = r.chunks;
  f.reason = reason;
  f.prompt_tokens = std::uint32_t(r.request.prompt.size());
  f.completion_tokens = std::uint32_t(r.streamed.size());
  f.tokens = r.streamed;
  f.text = r.text ? r.text->text() : r.cached_text;
  f.retry_after_ms = std::uint32_t(retry_after.count());
  const auto now = self->clock().now();
  if (failure) {
    ++st.counters.failed;
  } else {
    ++st.counters.completed;
    if (deterministic(r.request) && st.cache)
      self->send(st.cache, response_store{key_of(r.request), {f.tokens, f.text, reason == finish_reason::stop
                                                                          ? cache::finish_reason::stop
                                                                          : cache::finish_reason::length}});
  }
  count_outcome(st, failure);
  if (!failure && r.streamed.size() > 1 && r.first_chunk_at != clock_time{})
    st.tpot->observe(std::chrono::duration<double>(now - r.first_chunk_at).count() / double(r.streamed.size() - 1));
  f.failure = std::move(failure);
  if (r.replica >= 0) st.replicas[std::size_t(r.replica)].outstanding_tokens -= weight(r.request);
  st.admission->release(now, r.ticket);
  self->send(r.client, std::move(f));
  st.routes.erase(r.request.request_id);
}

// Completes a request successfully: releases the text held back for stop strings, then
// sends the final.
void complete(self_ptr self, route& r, finish_reason reason) {
  if (r.text) {
    if (auto tail = r.text->finish(); !tail.empty())
      self->send(r.client, token_chunk{r.request.request_id, r.chunks++, {}, std::string(tail)});
    if (r.text->stopped()) reason = finish_reason::stop;
  }
  finish(self, r, std::nullopt, reason);
}

void record_outcome(self_ptr self, route& r, bool success) {
  if (!r.breaker || r.replica < 0) return;
  auto& slot = self->state.replicas[std::size_t(r.replica)];
  slot.breaker->record(self->clock().now(), *r.breaker, success);
  r.breaker.reset();
  self->state.options.metrics
      ->gauge("dsrt_breaker_state", "0 closed, 1 open, 2 half-open", {{"replica", std::to_string(r.replica)}})
      .set(double(int(slot.breaker->state())));
}

// The rest of the fallback chain once no replica can take the request: the response cache
// (a deterministic request with nothing streamed yet), then UNAVAILABLE.
void fall_back(self_ptr self, route& r, std::string why) {
  auto& st = self->state;
  ++st.counters.fallbacks;
  auto unavailable = [self](route& r, const std::string& why) {
    finish(self, r, make_error(error_code::unavailable, "request {}: {}", r.request.request_id, why),
           finish_reason::length, self->state.options.unavailable_retry_after_ms);
  };
  if (!st.cache || !r.streamed.empty() || !deterministic(r.request)) {
    unavailable(r, why);
    return;
  }
  r.awaiting_cache = true;
  const auto id = r.request.request_id;
  // The route stays while the lookup runs; a cancel meanwhile ends it, and the answer finds
  // nothing to do.
  auto resume = [self, id, why, unavailable](std::optional<cache::cached_response> hit) {
    auto& st = self->state;
    auto it = st.routes.find(id);
    if (it == st.routes.end() || !it->second.awaiting_cache) return;
    route& r = it->second;
    r.awaiting_cache = false;
    if (!hit) {
      unavailable(r, why + "; not in the response cache");
      return;
    }
    ++st.counters.response_cache_hits;
    r.streamed = hit->tokens;
    self->send(r.client, token_chunk{id, r.chunks++, hit->tokens, hit->text});
    r.text.reset();
    r.cached_text = hit->text;
    finish(self, r, std::nullopt, hit->reason == cache::finish_reason::stop ? finish_reason::stop : finish_reason::length);
  };
  self->request(st.cache, st.options.cache_lookup_timeout_ms, response_lookup{key_of(r.request)})
      .then([resume](response_found& found) { resume(std::move(found.response)); },
            [resume](caf::error&) { resume(std::nullopt); });
}

// Sends the request (again) to a replica, or ends it through the fallback chain.
void dispatch(self_ptr self, route& r, int avoid) {
  auto& st = self->state;
  const auto now = self->clock().now();
  if (r.replica >= 0) st.replicas[std::size_t(r.replica)].outstanding_tokens -= weight(r.request);
  r.replica = -1;
  if (r.request.deadline && *r.request.deadline <= now) {
    finish(self, r, make_error(error_code::deadline_exceeded, "request {} passed its deadline", r.request.request_id), finish_reason::length);
    return;
  }
  const std::int64_t remaining = r.request.max_tokens - std::int64_t(r.streamed.size());
  if (remaining < 1) {
    // Every token arrived before the replica went away: the request is done.
    complete(self, r, finish_reason::length);
    return;
  }
  if (int(r.attempt) >= st.options.request_attempts_max) {
    fall_back(self, r, fmt::format("{} attempts failed", r.attempt));
    return;
  }
  std::vector<policy::replica_view> views(st.replicas.size());
  for (std::size_t i = 0; i < views.size(); ++i) {
    auto& slot = st.replicas[i];
    views[i].available = slot.batcher && int(i) != avoid && slot.breaker->state(now) != policy::breaker_state::open;
    views[i].outstanding_tokens = slot.outstanding_tokens;
  }
  // The breaker decides last: a half-open replica takes only its bounded probes.
  for (;;) {
    const auto choice = policy::choose_replica(views, r.request.prompt, st.options.choice);
    if (!choice) break;
    auto& slot = st.replicas[std::size_t(*choice)];
    r.breaker = slot.breaker->try_acquire(now);
    if (!r.breaker) {
      views[std::size_t(*choice)].available = false;
      continue;
    }
    r.replica = *choice;
    slot.outstanding_tokens += weight(r.request);
    replica_request rr;
    rr.request_id = r.request.request_id;
    rr.attempt = ++r.attempt;
    rr.sequence.id = r.request.request_id;
    rr.sequence.tokens = r.request.prompt;
    rr.sequence.tokens.insert(rr.sequence.tokens.end(), r.streamed.begin(), r.streamed.end());
    rr.sequence.prompt_tokens = std::int64_t(r.request.prompt.size());
    rr.sequence.draw_base = std::int64_t(r.streamed.size());
    rr.sequence.max_new_tokens = remaining;
    rr.sequence.sampling = r.request.sampling;
    rr.sequence.priority = std::min(r.request.priority, st.options.priority_classes - 1);
    rr.sequence.deadline = r.request.deadline;
    rr.stop_token_ids = st.options.stop_token_ids;
    self->send(slot.batcher, std::move(rr));
    return;
  }
  fall_back(self, r, "no replica can serve it now");
}

void on_generate(self_ptr self, generate_request& request, caf::actor client) {
  auto& st = self->state;
  const auto id = request.request_id;
  final_message reject;
  reject.request_id = id;
  reject.prompt_tokens = std::uint32_t(request.prompt.size());
  if (st.draining) {
    reject.failure = make_error(error_code::unavailable, "request {}: the service is draining", id);
    reject.retry_after_ms = std::uint32_t(st.options.unavailable_retry_after_ms.count());
  } else if (st.routes.count(id)) {
    reject.failure = make_error(error_code::invalid_argument, "request {}: the id is already in use", id);
  } else if (auto s = validate(st, request); !s) {
    reject.failure = s.err();
  }
  if (reject.failure) {
    ++st.counters.rejected;
    count_outcome(st, reject.failure);
    self->send(client, std::move(reject));
    return;
  }
  if (request.tenant.empty()) request.tenant = "default";
  auto decision = st.admission->admit(self->clock().now(), request.tenant, weight(request));
  if (!decision.ticket) {
    ++st.counters.rejected;
    reject.failure = decision.ticket.err();
    reject.retry_after_ms = std::uint32_t(decision.retry_after_ms.count());
    count_outcome(st, reject.failure);
    self->send(client, std::move(reject));
    return;
  }
  ++st.counters.accepted;
  route& r = st.routes[id];
  r.request = std::move(request);
  r.client = std::move(client);
  r.ticket = std::move(*decision.ticket);
  r.accepted_at = self->clock().now();
  r.text = std::make_unique<engine::text_output>(*st.tokenizer, r.request.stop);
  dispatch(self, r, -1);
}

// The attempt on r.replica failed or its replica went away: retry or resume elsewhere.
void redispatch(self_ptr self, route& r) {
  auto& st = self->state;
  record_outcome(self, r, false);
  ++(r.streamed.empty() ? st.counters.retries : st.counters.resumptions);
  dispatch(self, r, r.replica);
}

void on_replica_gone(self_ptr self, int replica) {
  auto& st = self->state;
  std::vector<std::uint64_t> affected;
  for (auto& [id, r] : st.routes)
    if (r.replica == replica) affected.push_back(id);
  for (auto id : affected)
    if (auto it = st.routes.find(id); it != st.routes.end()) redispatch(self, it->second);
}

void on_chunk(self_ptr self, replica_chunk& c) {
  auto& st = self->state;
  auto it = st.routes.find(c.request_id);
  if (it == st.routes.end() || it->second.attempt != c.attempt || it->second.replica != c.replica)
    return;
  route& r = it->second;
  token_chunk out{c.request_id, 0, {}, {}};
  for (std::int32_t t : c.tokens) {
    if (std::int64_t(r.streamed.size()) >= r.request.max_tokens) break;
    r.streamed.push_back(t);
    out.tokens.push_back(t);
    out.text += r.text->push(t);
    if (r.text->stopped()) break;
  }
  if (!out.tokens.empty()) {
    if (r.chunks == 0) {
      r.first_chunk_at = self->clock().now();
      st.ttft->observe(std::chrono::duration<double>(r.first_chunk_at - r.accepted_at).count());
    }
    out.sequence = r.chunks++;
    self->send(r.client, std::move(out));
  }
  if (r.text->stopped()) {
    if (const auto& batcher = st.replicas[std::size_t(r.replica)].batcher) self->send(batcher, cancel_atom::value, c.request_id);
    record_outcome(self, r, true);
    finish(self, r, std::nullopt, finish_reason::stop);
  }
}

caf::behavior router_actor(caf::stateful_actor<router_state>* self, router_options options,
                           std::shared_ptr<const tokenizer::tokenizer> tokenizer, caf::actor cache) {
  auto& st = self->state;
  st.cache = std::move(cache);
  if (!options.metrics) options.metrics = std::make_shared<metrics::registry>();
  st.options = options;
  st.tokenizer = std::move(tokenizer);
  st.admission = std::make_unique<policy::admission>(options.admission);
  st.ttft = &options.metrics->histogram("dsrt_ttft_seconds", "time from admission to the first token",
                                        metrics::latency_buckets_seconds());
  st.tpot = &options.metrics->histogram("dsrt_tpot_seconds", "time per output token after the first",
                                        metrics::latency_buckets_seconds());
  st.replicas.resize(std::size_t(options.replicas));
  for (auto& slot : st.replicas) slot.breaker = std::make_unique<policy::circuit_breaker>(options.breaker);
  self->set_down_handler([self](caf::down_msg& down) {
    auto& st = self->state;
    for (std::size_t i = 0; i < st.replicas.size(); ++i)
      if (st.replicas[i].batcher && st.replicas[i].batcher.address() == down.source) {
        st.replicas[i].batcher = nullptr;
        on_replica_gone(self, int(i));
      }
  });
  return {
      [self](generate_request& request) {
        auto client = caf::actor_cast<caf::actor>(self->current_sender());
        on_generate(self, request, std::move(client));
      },
      [self](cancel_atom, std::uint64_t id) {
        auto& st = self->state;
        auto it = st.routes.find(id);
        if (it == st.routes.end()) return;
        route& r = it->second;
        if (r.replica >= 0 && st.replicas[std::size_t(r.replica)].batcher)
          self->send(st.replicas[std::size_t(r.replica)].batcher, cancel_atom::value, id);
        // A cancel says nothing about the replica's health, so a closed-state ticket is
        // dropped. A half-open probe cannot be: the breaker counts probes issued and closes
        // only when all succeed, so a dropped probe would wedge it half-open and the replica
        // would never get traffic again. It counts as failed: open again, probe afresh later.
        if (r.breaker && r.breaker->probe) record_outcome(self, r, false);
        r.breaker.reset();
        finish(self, r, make_error(error_code::cancelled, "request {} was cancelled", id), finish_reason::length);
      },
      [self](replica_up& up) {
        auto& st = self->state;
        if (up.replica < 0 || up.replica >= int(st.replicas.size())) return;
        auto& slot = st.replicas[std::size_t(up.replica)];
        slot.batcher = up.batcher;
        slot.permanently_down = false;
        self->monitor(up.batcher);
      },
      [self](replica_down& down) {
        auto& st = self->state;
        if (down.replica < 0 || down.replica >= int(st.replicas.size())) return;
        auto& slot = st.replicas[std::size_t(down.replica)];
        slot.permanently_down = down.permanent;
        if (slot.batcher) {
          self->demonitor(slot.batcher);
          slot.batcher = nullptr;
          on_replica_gone(self, down.replica);
        }
      },
      [self](replica_chunk& c) { on_chunk(self, c); },
      [self](replica_chunks& batch) {
        for (auto& c : batch.chunks) on_chunk(self, c);
      },
      [self](replica_final& f) {
        auto& st = self->state;
        auto it = st.routes.find(f.request_id);
        if (it == st.routes.end() || it->second.attempt != f.attempt || it->second.replica != f.replica) return;
        route& r = it->second;
        if (!f.failure) {
          record_outcome(self, r, true);
          complete(self, r, f.reason);
          return;
        }
        const auto code = f.failure->code;
        if (code == error_code::cancelled || code == error_code::deadline_exceeded || code == error_code::invalid_argument) {
          record_outcome(self, r, code != error_code::invalid_argument);
          finish(self, r, f.failure, finish_reason::length);
          return;
        }
        redispatch(self, r);
      },
      [self](status_atom) {
        auto& st = self->state;
        auto c = st.counters;
        c.breaker_states.clear();
        c.breaker_opens.clear();
        c.replicas_up = 0;
        for (auto& slot : st.replicas) {
          c.replicas_up += slot.batcher != nullptr;
          c.breaker_states.push_back(int(slot.breaker->state(self->clock().now())));
          std::uint64_t opens = 0;
          for (const auto& t : slot.breaker->transitions()) opens += t.to == policy::breaker_state::open;
          c.breaker_opens.push_back(opens);
        }
        return c;
      },
      [self](drain_atom) { self->state.draining = true; },
  };
}

}  // namespace

caf::actor spawn_router(caf::actor_system& system, router_options options,
                        std::shared_ptr<const tokenizer::tokenizer> tokenizer, caf::actor cache) {
  return system.spawn(router_actor, std::move(options), std::move(tokenizer), std::move(cache));
}

}  // namespace dsrt::actors
