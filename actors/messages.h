#pragma once
// Every message the serving actors exchange inside one process, in one place (STYLE.md:
// actor protocols written down). Each struct corresponds to a Cap'n Proto definition in
// schemas/ (named beside it): inside a process actors pass these native types; at a process
// boundary transport/ converts them to and from the wire form.
//
//   client ──generate_request──► router ──replica_request──► batcher ──step_plan──► shard
//   client ◄──token_chunk/final── router ◄──replica_chunk/replica_final── batcher ◄──step_result── shard
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/batching/batch_scheduler.h"
#include "runtime/clock.h"
#include "runtime/engine/sampler.h"
#include "runtime/error.h"

namespace dsrt::actors {

enum class finish_reason { stop, length };

// request.capnp GenerateRequest: what a client asks for. The prompt is already tokens
// (the client tokenizes text or chat messages before sending).
struct generate_request {
  std::uint64_t request_id = 0;
  std::vector<std::int32_t> prompt;
  engine::sampling_params sampling;
  std::int32_t max_tokens = 256;
  std::vector<std::string> stop;         // stop strings
  int priority = 0;                      // 0 = highest class
  std::string tenant;
  std::optional<clock_time> deadline;
};

// request.capnp TokenChunk: the next piece of a stream; sequence 0, 1, 2, ... per request.
struct token_chunk {
  std::uint64_t request_id = 0;
  std::uint32_t sequence = 0;
  std::vector<std::int32_t> tokens;
  std::string text;
};

// request.capnp Final: exactly one per accepted request, after its last chunk.
struct final_message {
  std::uint64_t request_id = 0;
  std::uint32_t chunks_sent = 0;
  std::optional<error> failure;          // set: the request failed with this error
  std::uint32_t retry_after_ms = 0;      // for overloaded / unavailable
  finish_reason reason = finish_reason::length;
  std::uint32_t prompt_tokens = 0;
  std::uint32_t completion_tokens = 0;
  std::vector<std::int32_t> tokens;      // every generated token
  std::string text;                      // the whole text
};

// serving.capnp ReplicaRequest: one attempt of a request on one replica. On resumption
// `tokens` holds prompt + the tokens already streamed and draw_base how many those are
// (the sequence is serving.capnp SequenceRequest).
struct replica_request {
  std::uint64_t request_id = 0;
  std::uint32_t attempt = 0;             // chunks of an older attempt are dropped
  batching::sequence_request sequence;   // id = request_id
  std::vector<std::int32_t> stop_token_ids;
};

// serving.capnp ReplicaChunk: tokens a replica generated for an attempt.
struct replica_chunk {
  std::uint64_t request_id = 0;
  std::uint32_t attempt = 0;
  std::int32_t replica = 0;
  std::vector<std::int32_t> tokens;
};

// serving.capnp ReplicaChunks: every chunk of one step, in one message (a step at batch 256
// would otherwise be 256 messages).
struct replica_chunks {
  std::vector<replica_chunk> chunks;
};

// serving.capnp ReplicaFinal: an attempt ended on its replica.
struct replica_final {
  std::uint64_t request_id = 0;
  std::uint32_t attempt = 0;
  std::int32_t replica = 0;
  std::optional<error> failure;
  finish_reason reason = finish_reason::length;
};

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

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::generate_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::token_chunk)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::final_message)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::replica_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::replica_chunk)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::replica_chunks)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::replica_final)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::step_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::step_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::replica_status)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::replica_up)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::replica_down)
