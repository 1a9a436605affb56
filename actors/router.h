#pragma once
// The router actor: the front door of a replica set (ARCHITECTURE.md, "router"). A thin
// shell around serving::request_router (runtime/serving/request_router.h), which makes
// every decision — validation, admission, replica choice with the circuit breakers, the
// request contract, retry and resumption, the fallback chain. The actor feeds it messages
// with the time and carries out its actions: it knows the clients' and batchers' actor
// handles, monitors the batchers (a dead one is a replica down), asks the cache actor on
// fallback (with a timeout), and records the metrics.
#include <caf/all.hpp>

#include <memory>

#include "actors/messages.h"
#include "runtime/cache/response_cache.h"
#include "runtime/metrics/registry.h"
#include "runtime/serving/request_router.h"
#include "runtime/tokenizer/tokenizer.h"

namespace dsrt::actors {

struct router_options {
  serving::router_config policy;                 // every routing decision's settings
  cache::response_cache_config response_cache;   // the cache actor's (local_runtime spawns it)
  milliseconds cache_lookup_timeout_ms{1000};    // a fallback lookup that takes longer is a miss
  std::shared_ptr<metrics::registry> metrics;    // set by local_runtime and head_node; null: a private one
};

// The policy's counters plus the replicas' state, for metrics and dsbench (a snapshot via
// status_atom).
struct router_counters : serving::router_counters {
  std::int32_t replicas_up = 0;             // replicas with a live batcher
  std::vector<int> breaker_states;          // policy::breaker_state per replica
  std::vector<std::uint64_t> breaker_opens; // times each breaker opened
};

// Handles: generate_request (from a client actor; chunks and the final go to the sender);
// (cancel_atom, request_id); replica_up; replica_down; replica_chunk; replica_final;
// (status_atom) -> router_counters; (drain_atom): new requests get UNAVAILABLE.
// `cache`: the cache actor (null: no response cache).
caf::actor spawn_router(caf::actor_system& system, router_options options,
                        std::shared_ptr<const tokenizer::tokenizer> tokenizer, caf::actor cache);

}  // namespace dsrt::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::router_counters)
