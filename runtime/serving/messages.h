#pragma once
// The messages of a request's life — what a client sends, the stream it gets back, and one
// attempt on one replica — as native structs. They belong to the runtime layer because the
// routing policy (request_router.h) reads and writes them; the actors pass them as they
// are inside a process, and transport/ converts them to the wire structs named beside each
// one (tests/foundation/schema_correspondence_test.cpp keeps the two one to one).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/batching/batch_scheduler.h"
#include "runtime/clock.h"
#include "runtime/engine/sampler.h"
#include "runtime/error.h"

namespace dsrt::serving {

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
  std::int32_t replica = 0;              // the router's choice (a worker may hold several)
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

}  // namespace dsrt::serving
