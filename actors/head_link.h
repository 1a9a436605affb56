#pragma once
// The head node's link actor: the router's view of the rest of the cluster. For every
// worker replica that comes up it spawns a batcher proxy — an actor that takes the
// batcher's messages (replica_request, cancel) and sends them as frames — and hands it to
// the router as that replica's batcher, so the router cannot tell a remote replica from a
// local one. Frames from workers (chunks, finals, replica up/down) become the router's
// usual messages. Remote clients' requests get head-unique ids (two clients may both use
// id 1), go to the router with this actor as the client, and their chunks and final go back
// under the client's own id.
//
// A worker connection that ends takes its replicas down (the router retries or resumes
// their requests elsewhere); a client connection that ends cancels its requests. A worker
// that comes back with a new incarnation replaces the old connection, whose frames are
// dropped from then on. A peer that sends a frame its role must not send is disconnected.
#include <caf/all.hpp>

#include "actors/messages.h"
#include "actors/transport_bridge.h"
#include "runtime/metrics/registry.h"

namespace dsrt::actors {

struct head_link_stats {
  std::int32_t workers = 0, clients = 0;
  std::int64_t remote_requests = 0;     // requests from remote clients, all time
  std::int64_t open_requests = 0;       // remote requests whose final has not gone to the client
  std::int64_t dropped_frames = 0;      // stale, unknown or for a down replica
  std::int64_t rejected_peers = 0;      // disconnected: a frame outside their role, a tensor, or
                                        // a frame for them that could not be queued
};

// Handles: peer_up_msg, frame_msg, tensor_msg (closes the peer), peer_down_msg (from the
// bridge); token_chunk and
// final_message (from the router, for remote clients); (status_atom) -> head_link_stats.
// `metrics`: where dsrt_worker_nodes_connected and dsrt_clients_connected go (null: a
// private registry).
caf::actor spawn_head_link(caf::actor_system& system, transport::ucx_transport& transport, caf::actor router,
                           std::shared_ptr<metrics::registry> metrics = nullptr);

}  // namespace dsrt::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::head_link_stats)
