#include "actors/router.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <unordered_map>

#include "actors/cache.h"

namespace dsrt::actors {

struct router_state {
  router_options options;
  std::shared_ptr<const tokenizer::tokenizer> tokenizer;
  std::unique_ptr<serving::request_router> policy;
  std::unordered_map<std::uint64_t, caf::actor> clients;   // requests without their final yet
  std::vector<caf::actor> batchers;                        // per replica; null while down
  caf::actor cache;                                        // null: no response cache
  // Metrics (the registry outlives the actor).
  metrics::histogram* ttft = nullptr;
  metrics::histogram* tpot = nullptr;
  std::vector<metrics::gauge*> breaker_state;
  metrics::gauge* replicas_up = nullptr;
  metrics::gauge* in_flight = nullptr;
  std::optional<clock_time> deadline_timer;                // when the armed expire timer fires
  std::vector<serving::router_action> action_buffer;       // act()'s, its capacity kept between calls
  static inline const char* name = "dsrt.router";
};

namespace {

using self_ptr = caf::stateful_actor<router_state>*;

// (expire_atom, due): the earliest deadline of a routed request, `due` in clock ticks.
using expire_atom = caf::atom_constant<caf::atom("expire")>;

serving::router_config config_of(const router_options& o, bool has_cache) {
  auto c = o.policy;
  c.response_cache = has_cache;
  return c;
}

void count_outcome(router_state& st, const std::optional<error>& failure) {
  st.options.metrics
      ->counter("dsrt_requests_total", "requests that got their final, by outcome",
                {{"outcome", failure ? std::string(error_code_name(failure->code)) : std::string("completed")}})
      .inc();
}

void on_cached(self_ptr self, std::uint64_t id, std::optional<cache::cached_response> hit);

// Carries out what the policy decided, in order.
void act(self_ptr self) {
  auto& st = self->state;
  // Moved out: on_cached() below may run act() again, which then starts from an empty one.
  auto actions = std::move(st.action_buffer);
  st.policy->take_actions(actions);
  for (auto& action : actions) {
    if (auto* a = std::get_if<serving::send_request>(&action)) {
      if (const auto& b = st.batchers[std::size_t(a->replica)]) self->send(b, std::move(a->request));
    } else if (auto* a = std::get_if<serving::cancel_on_replica>(&action)) {
      if (const auto& b = st.batchers[std::size_t(a->replica)]) self->send(b, cancel_atom::value, a->request_id);
    } else if (auto* a = std::get_if<serving::send_chunk>(&action)) {
      if (auto it = st.clients.find(a->chunk.request_id); it != st.clients.end())
        self->send(it->second, std::move(a->chunk));
    } else if (auto* a = std::get_if<serving::send_final>(&action)) {
      count_outcome(st, a->final.failure);
      if (a->ttft_seconds) st.ttft->observe(*a->ttft_seconds);
      if (a->tpot_seconds) st.tpot->observe(*a->tpot_seconds);
      if (auto it = st.clients.find(a->final.request_id); it != st.clients.end()) {
        self->send(it->second, std::move(a->final));
        st.clients.erase(it);
      }
    } else if (auto* a = std::get_if<serving::store_response>(&action)) {
      if (st.cache) self->send(st.cache, response_store{std::move(a->key), std::move(a->response), a->key_hash});
    } else if (auto* a = std::get_if<serving::lookup_response>(&action)) {
      const auto id = a->request_id;
      if (!st.cache) {
        on_cached(self, id, std::nullopt);
        continue;
      }
      self->request(st.cache, st.options.cache_lookup_timeout_ms, response_lookup{std::move(a->key)})
          .then([self, id](response_found& found) { on_cached(self, id, std::move(found.response)); },
                [self, id](caf::error&) { on_cached(self, id, std::nullopt); });
    }
  }
  actions.clear();
  if (actions.capacity() > st.action_buffer.capacity()) st.action_buffer = std::move(actions);
  for (std::size_t i = 0; i < st.breaker_state.size(); ++i)
    st.breaker_state[i]->set(double(int(st.policy->breaker(std::int32_t(i)).state())));
  st.replicas_up->set(double(st.policy->replicas_up()));
  const auto& counts = st.policy->counters();
  st.in_flight->set(double(counts.accepted - counts.completed - counts.failed));
  // One timer, for the earliest deadline; re-armed after every event that may change it.
  if (const auto next = st.policy->next_deadline(); next && (!st.deadline_timer || *next < *st.deadline_timer)) {
    st.deadline_timer = next;
    self->delayed_send(self, std::max(*next - self->clock().now(), clock_time::duration::zero()), expire_atom::value,
                       std::int64_t(next->time_since_epoch().count()));
  }
}

void on_cached(self_ptr self, std::uint64_t id, std::optional<cache::cached_response> hit) {
  self->state.policy->on_cached(self->clock().now(), id, std::move(hit));
  act(self);
}

void replica_gone(self_ptr self, std::int32_t replica) {
  auto& st = self->state;
  st.batchers[std::size_t(replica)] = nullptr;
  st.policy->on_replica_down(self->clock().now(), replica);
  act(self);
}

caf::behavior router_actor(caf::stateful_actor<router_state>* self, router_options options,
                           std::shared_ptr<const tokenizer::tokenizer> tokenizer, caf::actor cache) {
  auto& st = self->state;
  if (!options.metrics) options.metrics = std::make_shared<metrics::registry>();
  st.options = options;
  st.tokenizer = std::move(tokenizer);
  st.cache = std::move(cache);
  st.policy = std::make_unique<serving::request_router>(config_of(options, st.cache != nullptr), st.tokenizer.get());
  st.batchers.resize(std::size_t(options.policy.replicas));
  auto& m = *options.metrics;
  st.ttft = &m.histogram("dsrt_ttft_seconds", "time from admission to the first token", metrics::latency_buckets_seconds());
  st.tpot = &m.histogram("dsrt_tpot_seconds", "time per output token after the first", metrics::latency_buckets_seconds());
  for (int i = 0; i < options.policy.replicas; ++i)
    st.breaker_state.push_back(&m.gauge("dsrt_breaker_state", "0 closed, 1 open, 2 half-open", {{"replica", std::to_string(i)}}));
  st.replicas_up = &m.gauge("dsrt_replicas_up", "replicas with a live batcher");
  st.in_flight = &m.gauge("dsrt_requests_in_flight", "requests accepted whose final has not come");
  self->set_down_handler([self](caf::down_msg& down) {
    auto& st = self->state;
    for (std::size_t i = 0; i < st.batchers.size(); ++i)
      if (st.batchers[i] && st.batchers[i].address() == down.source) replica_gone(self, std::int32_t(i));
  });
  return {
      [self](generate_request& request) {
        auto& st = self->state;
        const auto id = request.request_id;
        // A second request with a live id is rejected by the policy; its final goes to the sender.
        auto client = caf::actor_cast<caf::actor>(self->current_sender());
        const bool duplicate = st.clients.count(id) != 0;
        if (!duplicate) st.clients.emplace(id, client);
        // Every handler carries out what it queued, so nothing is pending here; were
        // anything, it must not be taken for the duplicate's answer below.
        if (duplicate) act(self);
        st.policy->on_generate(self->clock().now(), std::move(request));
        if (duplicate) {
          for (auto& action : st.policy->take_actions())
            if (auto* a = std::get_if<serving::send_final>(&action)) {
              count_outcome(st, a->final.failure);
              self->send(client, std::move(a->final));
            }
          return;
        }
        act(self);
      },
      [self](cancel_atom, std::uint64_t id) {
        self->state.policy->on_cancel(self->clock().now(), id);
        act(self);
      },
      [self](replica_up& up) {
        auto& st = self->state;
        if (up.replica < 0 || up.replica >= std::int32_t(st.batchers.size())) {
          // A node placed by hand with a --replica-base or --replicas past the head's count.
          spdlog::warn("router: replica {} is outside this router's 0..{} (the head's --replicas): not used",
                       up.replica, st.batchers.size() - 1);
          return;
        }
        st.batchers[std::size_t(up.replica)] = up.batcher;
        self->monitor(up.batcher);
        st.policy->on_replica_up(self->clock().now(), up.replica);
        act(self);   // requests that waited for a replica go to it now
      },
      [self](replica_down& down) {
        auto& st = self->state;
        if (down.replica < 0 || down.replica >= std::int32_t(st.batchers.size())) return;
        if (auto& b = st.batchers[std::size_t(down.replica)]) self->demonitor(b);
        replica_gone(self, down.replica);
      },
      [self](replica_chunk& c) {
        self->state.policy->on_chunk(self->clock().now(), c);
        act(self);
      },
      [self](replica_chunks& batch) {
        const auto now = self->clock().now();
        self->state.policy->on_chunks(now, batch.chunks);
        act(self);
      },
      [self](replica_final& f) {
        self->state.policy->on_final(self->clock().now(), f);
        act(self);
      },
      [self](status_atom) {
        auto& st = self->state;
        router_counters c;
        static_cast<serving::router_counters&>(c) = st.policy->counters();
        c.replicas_up = st.policy->replicas_up();
        for (std::int32_t i = 0; i < std::int32_t(st.batchers.size()); ++i) {
          auto& breaker = st.policy->breaker(i);
          c.breaker_states.push_back(int(breaker.state(self->clock().now())));
          std::uint64_t opens = 0;
          for (const auto& t : breaker.transitions()) opens += t.to == policy::breaker_state::open;
          c.breaker_opens.push_back(opens);
        }
        return c;
      },
      [self](drain_atom) { self->state.policy->drain(); },
      [self](expire_atom, std::int64_t due) {
        auto& st = self->state;
        if (st.deadline_timer && st.deadline_timer->time_since_epoch().count() == due) st.deadline_timer.reset();
        st.policy->on_deadlines(self->clock().now());
        act(self);
      },
  };
}

}  // namespace

caf::actor spawn_router(caf::actor_system& system, router_options options,
                        std::shared_ptr<const tokenizer::tokenizer> tokenizer, caf::actor cache) {
  return system.spawn(router_actor, std::move(options), std::move(tokenizer), std::move(cache));
}

}  // namespace dsrt::actors
