#pragma once
// The batcher actor (one per replica): a thin shell around batching::batch_scheduler. It
// queues replica_requests, asks the policy for a step whenever the shard is idle, sends the
// plan to its shard, and turns the sampled tokens into replica_chunks and replica_finals
// for the router through serving::token_streams (stop tokens and max_tokens end a sequence
// here; stop strings are the router's, which holds the text). Linked to its shard: either dying takes the other down,
// and the supervisor restarts the pair (one-for-all).
#include <caf/all.hpp>

#include "actors/messages.h"
#include "runtime/metrics/registry.h"

namespace dsrt::actors {

struct batcher_options {
  std::int32_t replica = 0;
  batching::scheduler_config scheduler;
  std::int32_t kv_blocks = 0;
  int kv_block_tokens = 16;
  std::shared_ptr<metrics::registry> metrics;   // null: a private one
};

// Spawns a batcher linked to `shard`. Handles: replica_request; (cancel_atom, request_id);
// (status_atom) -> replica_status. Sends replica_chunk / replica_final to `router`.
caf::actor spawn_batcher(caf::actor_system& system, batcher_options options, caf::actor shard,
                         caf::actor router);

}  // namespace dsrt::actors
