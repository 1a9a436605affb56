#pragma once
// The client link: the actor a remote_runtime (actors/remote_runtime.h) gives request
// actors as their router. It sends each request to the head as a frame and hands the
// chunks and the final back, checking the head's stream on the way (remote_runtime.h).
//
// Without a connection to the head (before the first, or after one is lost) a request
// waits for the next connection up to remote_options::head_wait_ms, then ends with
// UNAVAILABLE (DEADLINE_EXCEEDED if its deadline came first; CANCELLED at once if
// cancelled). When a connection is lost, open requests that had no chunk yet wait for the
// next one too and are sent again (at most resends_max times each; not once cancelled or
// past their deadline); those that had output end with UNAVAILABLE, since the app already
// holds part of their stream, cancelled ones with CANCELLED, and those without output past
// their deadline with DEADLINE_EXCEEDED. After the head broke the protocol nothing is sent
// again: the requests that would have been end with UNAVAILABLE.
//
// Ownership: the remote_runtime owns the transport the link sends through and stops the
// link before it.
#include <caf/all.hpp>

#include "actors/remote_runtime.h"

namespace dsrt::actors {

caf::actor spawn_client_link(caf::actor_system& system, transport::ucx_transport* transport,
                             const cluster_address& head, const remote_options& options);

}  // namespace dsrt::actors
