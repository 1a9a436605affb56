#pragma once
// A worker node's link actor: the head's router as this node's actors see it. The node
// supervisor and the batchers send it what they would send the router (replica_up/down,
// replica_chunks, replica_final) and it sends those to the head as frames; frames from the
// head (replica_request, replica cancel) go to the local batcher of that replica.
//
// It connects to the head at start and again, every reconnect_interval_ms, whenever the
// connection is lost, and on each new connection announces every replica that is up.
// While it has no head, what the batchers send is dropped: the head has given those
// attempts up and retries or resumes them elsewhere. When the head is lost every sequence
// forwarded over that connection is cancelled, and the batchers know sequences by ids of
// this link's, mapped back to the head's on the way out: a restarted head, whose request
// ids start over, never gets an old sequence's tokens or final for a new request.
#include <caf/all.hpp>

#include <memory>
#include <string>

#include "actors/messages.h"
#include "actors/transport_bridge.h"
#include "runtime/metrics/registry.h"

namespace dsrt::actors {

struct worker_link_options {
  std::string head_host = "127.0.0.1";
  std::uint16_t head_port = 0;
  std::int32_t replica_base = 0;       // this node's replicas are replica_base .. + replicas - 1
  std::int32_t replicas = 1;
  milliseconds reconnect_interval_ms{200};
  std::shared_ptr<metrics::registry> metrics;   // dsrt_head_connected (set by worker_node; null: a private one)
};

struct worker_link_stats {
  bool connected = false;
  std::int64_t connects = 0;           // connections made to the head, all time
  std::int64_t dropped = 0;            // messages with no head to go to
  std::int64_t cancelled_on_head_loss = 0;   // sequences stopped because their head went
  std::int64_t stale = 0;              // chunks and finals of sequences no head waits for
  std::int64_t protocol_violations = 0;   // head connections closed for what the head sent
};

// Handles: peer_up_msg, frame_msg, tensor_msg (closes the peer), peer_down_msg (bridge);
// replica_up, replica_down,
// replica_chunks, replica_final (supervisor, batchers); (status_atom) -> worker_link_stats.
caf::actor spawn_worker_link(caf::actor_system& system, transport::ucx_transport& transport,
                             worker_link_options options);

}  // namespace dsrt::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::worker_link_stats)
