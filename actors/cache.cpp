#include "actors/cache.h"

namespace dsrt::actors {

struct cache_state {
  std::unique_ptr<cache::response_cache> responses;
  std::uint64_t tick = 0;   // LRU recency: one per message
  static inline const char* name = "dsrt.cache";
};

namespace {

caf::behavior cache_actor(caf::stateful_actor<cache_state>* self, cache::response_cache_config config) {
  self->state.responses = std::make_unique<cache::response_cache>(config);
  return {
      [self](response_store& s) {
        auto& cache = *self->state.responses;
        if (s.key_hash)
          cache.insert(std::move(s.key), *s.key_hash, std::move(s.response), ++self->state.tick);
        else
          cache.insert(std::move(s.key), std::move(s.response), ++self->state.tick);
      },
      [self](const response_lookup& l) {
        return response_found{self->state.responses->find(l.key, ++self->state.tick)};
      },
      [self](status_atom) { return self->state.responses->counters(); },
  };
}

}  // namespace

caf::actor spawn_cache(caf::actor_system& system, cache::response_cache_config config) {
  return system.spawn(cache_actor, config);
}

}  // namespace dsrt::actors
