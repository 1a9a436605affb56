#pragma once
// Native <-> wire conversions for every message that crosses a process: each native struct
// (runtime/serving/messages.h, and the transport-level structs below) encodes to one frame
// (frame.h) and decodes back from a decoded_frame. Encode then decode gives back the same
// values, except where a comment says otherwise.
//
// Decoding trusts nothing: Cap'n Proto checks pointers lazily, so every decode_*() catches
// kj::Exception, and it checks every value a hostile peer controls against wire_limits.
// Errors of every decode_*():
//   invalid_argument  the frame is of another type than the function reads; or a value is
//                     out of range (an unknown enum or union member, a token id outside
//                     [0, 2^31), a list or text longer than its limit, ...); the message
//                     names the field.
//   corrupt_data      the message is malformed (a bad pointer, the traversal or nesting
//                     limit of frame_limits exceeded).
// Encoding does not check limits (the sender validated its input; the receiver checks
// again), except that error and reason texts are cut to message_text_bytes_max.
//
// Deadlines travel as 1 + the milliseconds left when the message was sent (rounded up; 0 is
// "no deadline"), like
// gRPC's grpc-timeout: two processes' steady clocks share no epoch, and their system clocks
// may disagree or jump (the simulator's clock_jump fault showed a worker whose system clock
// ran ahead stopping requests before their deadline when deadlines travelled as Unix time).
// The time in transit is added to the deadline, never taken from it. Both sides convert
// against a clock_anchor, which the caller reads (or, in the simulator, makes from virtual
// time).
//
// Thread safety: plain functions over their arguments.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/clock.h"
#include "runtime/error.h"
#include "runtime/serving/messages.h"
#include "transport/auth.h"
#include "transport/frame.h"
#include "transport/local_process.h"

namespace dsrt::transport {

// Error messages and the reasons of Goodbye / ReplicaDown: longer texts are cut (at a UTF-8
// character boundary) when encoded and refused when decoded.
inline constexpr std::size_t message_text_bytes_max = 4096;

// Bounds on what one decoded message may hold (frame_limits bounds the bytes).
struct wire_limits {
  std::size_t tokens_per_message_max = 1u << 20;    // all token lists of a message together
  std::size_t chunks_per_message_max = 65536;       // ReplicaChunks.chunks
  std::size_t stop_strings_max = 16;                // GenerateRequest.stop
  std::size_t stop_string_bytes_max = 256;          // each stop string
  std::size_t tenant_bytes_max = 256;               // GenerateRequest.tenant
  std::size_t address_bytes_max = 1024;             // ReplicaUp.batcher
  std::size_t output_text_bytes_max = 16u << 20;    // TokenChunk.text, Final.text
  // A deadline further away than this is read as this far (one already passed arrives as
  // due now): it is effectively "none", and it keeps a hostile value from overflowing the
  // clock arithmetic.
  milliseconds deadline_distance_max{milliseconds(365LL * 24 * 3600 * 1000)};
};

// A step's chunks are one message: whatever the batcher may put in one must decode.
static_assert(wire_limits{}.tokens_per_message_max >= std::size_t(batching::step_stream_tokens_max));

// The moment a message is encoded or decoded, on the process's steady clock.
struct clock_anchor {
  clock_time steady;
  static clock_anchor now();   // reads the steady clock
};

// What the wire does to a deadline: the sender writes its distance from the sender's clock
// in whole milliseconds, rounded up (0: no deadline, 1: due now); the receiver adds that to
// its own clock, at most limits.deadline_distance_max ahead. (The simulator carries an
// intact request without the codec, its deadline through these two.)
std::uint64_t deadline_to_wire(const std::optional<clock_time>& deadline, const clock_anchor& now);
std::optional<clock_time> deadline_from_wire(std::uint64_t in_ms, const clock_anchor& now,
                                             const wire_limits& limits = {});

// --- client <-> head --------------------------------------------------------------------

// frame_type::generate. The prompt travels as GenerateRequest's `tokens` variant.
frame_bytes encode(const serving::generate_request& request, const clock_anchor& now);
// Also invalid_argument for a text or chat prompt ("send a tokenized prompt") and for
// max_tokens or top_k beyond 2^31 - 1 or a non-finite sampling parameter.
result<serving::generate_request> decode_generate_request(decoded_frame& frame, const clock_anchor& now,
                                                          const wire_limits& limits = {});
// Only the request id of a generate frame: what a refusal of the rest must answer to.
result<std::uint64_t> decode_generate_request_id(decoded_frame& frame);

// frame_type::token_chunk.
frame_bytes encode(const serving::token_chunk& chunk);
result<serving::token_chunk> decode_token_chunk(decoded_frame& frame, const wire_limits& limits = {});

// frame_type::final. When `failure` is set the wire carries the error (codes the wire lacks
// — not_found, corrupt_data, unsupported — become internal, the text kept) and
// retry_after_ms, but not `reason`, prompt_tokens or completion_tokens, which decode as
// their defaults. retry_after_ms travels only with a failure.
frame_bytes encode(const serving::final_message& final);
result<serving::final_message> decode_final(decoded_frame& frame, const wire_limits& limits = {});

// frame_type::cancel or frame_type::replica_cancel (REQUIRES: one of the two).
frame_bytes encode_cancel(frame_type type, std::uint64_t request_id);
// Reads either cancel type; the frame's type says which it was.
result<std::uint64_t> decode_cancel(decoded_frame& frame);

// --- head <-> worker --------------------------------------------------------------------

// frame_type::replica_request. Also invalid_argument when sequence.id differs from
// request_id, prompt_tokens is outside [0, tokens], draw_base or max_new_tokens outside
// [0, 2^31 - 1], or a sampling value is as decode_generate_request() refuses it.
frame_bytes encode(const serving::replica_request& request, const clock_anchor& now);
result<serving::replica_request> decode_replica_request(decoded_frame& frame, const clock_anchor& now,
                                                        const wire_limits& limits = {});

// frame_type::replica_chunks.
frame_bytes encode(const serving::replica_chunks& chunks);
result<serving::replica_chunks> decode_replica_chunks(decoded_frame& frame, const wire_limits& limits = {});

// frame_type::replica_final (the error as for final_message, without a retry hint).
frame_bytes encode(const serving::replica_final& final);
result<serving::replica_final> decode_replica_final(decoded_frame& frame);

// serving.capnp ReplicaUp: actors::replica_up holds a caf::actor, which transport does not
// know; across processes the batcher is named by its address.
struct replica_up_wire {
  std::int32_t replica = 0;
  std::string batcher;   // the batcher's actor address, at most wire_limits.address_bytes_max
};
frame_bytes encode(const replica_up_wire& up);
result<replica_up_wire> decode_replica_up(decoded_frame& frame, const wire_limits& limits = {});

// serving.capnp ReplicaDown (actors::replica_down).
struct replica_down_wire {
  std::int32_t replica = 0;
  bool permanent = false;   // its restart budget is spent
  std::string reason;       // at most message_text_bytes_max
};
frame_bytes encode(const replica_down_wire& down);
result<replica_down_wire> decode_replica_down(decoded_frame& frame);

// serving.capnp ReplicaStatus (actors::replica_status, which lives beside CAF); the
// counters are copied as they are.
struct replica_status_wire {
  std::int32_t replica = 0;
  std::uint64_t steps = 0;
  bool has_work = false;
  std::int32_t running = 0, waiting = 0;
  std::int32_t free_blocks = 0, total_blocks = 0, leaked_blocks = 0;
  std::int64_t prefix_hit_tokens = 0, computed_tokens = 0, preemptions = 0;
};
frame_bytes encode(const replica_status_wire& status);
result<replica_status_wire> decode_replica_status(decoded_frame& frame);

// --- connection (cluster.capnp) ---------------------------------------------------------

// frame_type::tensor: the header of a bulk tensor whose bytes travel beside the frame.
inline constexpr std::size_t tensor_dims_max = 8;
struct tensor_header_wire {
  std::uint64_t tag = 0;
  std::uint64_t bytes = 0;
  std::uint8_t dtype = 0;
  std::vector<std::int64_t> shape;
};
frame_bytes encode(const tensor_header_wire& header);
// Also invalid_argument for more than tensor_dims_max dimensions or a negative one.
result<tensor_header_wire> decode_tensor_header(decoded_frame& frame);

enum class node_role { head, worker, client };

// frame_type::hello: the first frame each side sends.
struct hello_wire {
  std::uint16_t protocol_version = frame_protocol_version;
  node_role role = node_role::client;
  std::int32_t node_id = -1;        // -1 for a client
  std::uint64_t incarnation = 0;    // new each time the process starts
  transport::nonce nonce{};         // fresh for this connection (make_nonce())
  // How often this side sends heartbeats, so the peer can wait long enough for them (0:
  // not said, as by a peer from before the field). At most heartbeat_interval_ms_max.
  std::uint32_t heartbeat_interval_ms = 0;
};
inline constexpr std::uint32_t heartbeat_interval_ms_max = 10 * 60 * 1000;   // 10 minutes
frame_bytes encode(const hello_wire& hello);
// Also invalid_argument for an unknown role, a nonce that is not exactly nonce_bytes or a
// heartbeat interval above heartbeat_interval_ms_max.
result<hello_wire> decode_hello(decoded_frame& frame);

// frame_type::auth_proof. Also invalid_argument for a MAC that is not exactly mac_bytes.
frame_bytes encode_auth_proof(const mac& proof);
result<mac> decode_auth_proof(decoded_frame& frame);

// frame_type::heartbeat.
struct heartbeat_wire {
  std::uint64_t incarnation = 0;
  std::uint64_t sequence = 0;
};
frame_bytes encode(const heartbeat_wire& heartbeat);
result<heartbeat_wire> decode_heartbeat(decoded_frame& frame);

// frame_type::control.
enum class control_op { drain, shutdown };
frame_bytes encode_control(control_op op);
result<control_op> decode_control(decoded_frame& frame);

// frame_type::data_endpoint (cluster.capnp DataEndpoint).
inline constexpr std::size_t worker_address_bytes_max = 8192;
inline constexpr std::size_t host_key_bytes_max = 512;
struct data_endpoint_wire {
  std::vector<std::byte> worker_address;   // empty: keep tensors on the connection
  std::string host_key;
  local_process process;                   // the sender (local_process.h)
};
frame_bytes encode(const data_endpoint_wire& endpoint);
// Also invalid_argument for an address or host key over its limit.
result<data_endpoint_wire> decode_data_endpoint(decoded_frame& frame);

// frame_type::data_frames (cluster.capnp DataFrames, no fields): this side's frames follow
// over the data endpoint.
frame_bytes encode_data_frames();

// frame_type::goodbye: why the sender closes the connection (cut to message_text_bytes_max).
frame_bytes encode_goodbye(std::string_view reason);
result<std::string> decode_goodbye(decoded_frame& frame);

}  // namespace dsrt::transport
