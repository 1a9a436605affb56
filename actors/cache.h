#pragma once
// The cache actor (one per node): the response cache — exact-match answers of deterministic
// (temperature 0) requests — that the router fills as requests complete and asks when no
// replica can serve (the fallback chain: another replica -> this cache -> a clear error).
// The prefix cache is not here: its blocks are a replica's KV memory, so each batcher owns
// its replica's prefix index (runtime/cache/prefix_index.h) and consults it every step
// without a message hop.
#include <caf/all.hpp>

#include <optional>

#include "actors/messages.h"
#include "runtime/cache/response_cache.h"

namespace dsrt::actors {

// serving.capnp ResponseStore: remember a completed deterministic request's answer (its
// key is serving.capnp ResponseKey).
struct response_store {
  cache::response_key key;
  cache::cached_response response;
  // cache::key_hash(key) when the sender has it (the router computes it at admission); in
  // process only, not in the schema. Without it the cache hashes the key itself.
  std::optional<std::uint64_t> key_hash;
};
// serving.capnp ResponseLookup / ResponseFound: the answer for a key, if cached.
struct response_lookup {
  cache::response_key key;
};
struct response_found {
  std::optional<cache::cached_response> response;
};

// Handles: response_store; response_lookup -> response_found;
// (status_atom) -> cache::response_cache::stats.
caf::actor spawn_cache(caf::actor_system& system, cache::response_cache_config config);

}  // namespace dsrt::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::response_store)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::response_lookup)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::response_found)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::cache::response_cache::stats)
