#pragma once
// Every message the serving actors exchange inside one process, in one place (STYLE.md:
// actor protocols written down); the request-level ones are defined in
// runtime/serving/messages.h. Each struct corresponds to a Cap'n Proto definition in
// schemas/ (named beside it): inside a process actors pass these native types; at a process
// boundary transport/ converts them to and from the wire form.
//
//   client ──generate_request──► router ──replica_request──► batcher ──step_plan──► shard
//   client ◄──token_chunk/final── router ◄──replica_chunk/replica_final── batcher ◄──step_result── shard
#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/batching/batch_scheduler.h"
#include "runtime/serving/messages.h"
#include "runtime/clock.h"
#include "runtime/engine/sampler.h"
#include "runtime/error.h"

namespace dsrt::actors {

// The request-level messages live in the runtime layer, where the routing policy uses them.
using serving::finish_reason;
using serving::final_message;
using serving::generate_request;
using serving::replica_chunk;
using serving::replica_chunks;
using serving::replica_final;
using serving::replica_request;
using serving::token_chunk;

// serving.capnp StepRequest / StepResult: one step for the shard and what it sampled
// (the plan's sequences are serving.capnp PlannedSequence, its copies BlockCopy).
struct step_request {
  std::uint64_t step = 0;
  std::shared_ptr<const batching::step_plan> plan;   // shared with the batcher, not copied
};
struct step_result {
  std::uint64_t step = 0;
  std::optional<error> failure;
  std::vector<std::int32_t> sampled;     // one per planned sequence with sample set
  std::int64_t duration_us = 0;          // the forward pass and sampling
};

// serving.capnp ReplicaStatus: a batcher's progress, for the watchdog and metrics.
struct replica_status {
  std::int32_t replica = 0;
  std::uint64_t steps = 0;               // steps completed since the batcher started
  bool has_work = false;                 // sequences waiting or running
  std::int32_t running = 0, waiting = 0;
  std::int32_t free_blocks = 0, total_blocks = 0, leaked_blocks = 0;
  std::int64_t prefix_hit_tokens = 0, computed_tokens = 0, preemptions = 0;
};

// serving.capnp ReplicaUp / ReplicaDown: the supervisor tells the router.
struct replica_up {
  std::int32_t replica = 0;
  caf::actor batcher;
};
struct replica_down {
  std::int32_t replica = 0;
  bool permanent = false;                // the restart budget is spent
  std::string reason;
};

// Atoms (at most 10 characters) for messages without a struct.
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;     // (cancel, request_id)
using tick_atom = caf::atom_constant<caf::atom("tick")>;         // a batcher's timer
using status_atom = caf::atom_constant<caf::atom("status")>;     // -> replica_status
using watch_atom = caf::atom_constant<caf::atom("watch")>;       // the watchdog's timer
using drain_atom = caf::atom_constant<caf::atom("drain")>;       // stop accepting

}  // namespace dsrt::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::serving::generate_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::serving::token_chunk)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::serving::final_message)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::serving::replica_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::serving::replica_chunk)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::serving::replica_chunks)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::serving::replica_final)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::step_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::step_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::replica_status)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::replica_up)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::replica_down)
