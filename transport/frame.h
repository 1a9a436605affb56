#pragma once
// Framing of Cap'n Proto messages on a connection (ARCHITECTURE.md, "Messages and
// transport"). A frame is a 16-byte header and one Cap'n Proto message in its flat-array
// form (segment table + segments):
//
//   offset 0  u32  magic "DSRT" (0x54525344 little-endian)
//   offset 4  u16  protocol version (frame_protocol_version)
//   offset 6  u16  frame_type
//   offset 8  u32  payload bytes (a multiple of 8, at most frame_limits.message_bytes_max)
//   offset 12 u32  CRC-32C of bytes 4..12 and the payload (transport/crc32c.h)
//   offset 16      payload
//
// decode_frame() checks everything a hostile peer controls — magic, version, type, length,
// checksum, the segment table — and opens the message with traversal and nesting limits, so
// a malformed frame is a typed error (corrupt_data), never a crash or an unbounded read.
// The checksum turns bytes damaged in transit into a refused frame (the simulator's
// corrupt_message fault found that without it a flipped byte in a token id was delivered as
// a wrong token); it is no defence against a hostile peer, which authentication is.
// Cap'n Proto checks pointers lazily: whoever reads fields of a decoded frame must catch
// kj::Exception too (transport/wire.h does).
#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "runtime/error.h"

namespace dsrt::transport {

inline constexpr std::uint32_t frame_magic = 0x54525344;   // "DSRT"
// 2: the header carries a checksum; 3: DataEndpoint after the handshake; 4: frames over the
// data endpoint after DataFrames.
inline constexpr std::uint16_t frame_protocol_version = 4;
inline constexpr std::size_t frame_header_bytes = 16;

// What a frame's payload is. Values are part of the protocol: never renumber.
enum class frame_type : std::uint16_t {
  hello = 1,            // cluster.capnp Hello
  auth_proof = 2,       // cluster.capnp AuthProof
  heartbeat = 3,        // cluster.capnp Heartbeat
  goodbye = 4,          // cluster.capnp Goodbye
  control = 5,          // cluster.capnp Control
  tensor = 6,           // cluster.capnp TensorHeader, with the tensor's bytes beside it
  data_endpoint = 7,    // cluster.capnp DataEndpoint
  data_frames = 8,      // cluster.capnp DataFrames
  generate = 16,        // request.capnp GenerateRequest   client -> head
  cancel = 17,          // cluster.capnp Cancel            client -> head
  token_chunk = 18,     // request.capnp TokenChunk        head -> client
  final = 19,           // request.capnp Final             head -> client
  replica_request = 32, // serving.capnp ReplicaRequest    head -> worker
  replica_cancel = 33,  // cluster.capnp Cancel            head -> worker
  replica_chunks = 34,  // serving.capnp ReplicaChunks     worker -> head
  replica_final = 35,   // serving.capnp ReplicaFinal      worker -> head
  replica_up = 36,      // serving.capnp ReplicaUp         worker -> head
  replica_down = 37,    // serving.capnp ReplicaDown       worker -> head
  replica_status = 38,  // serving.capnp ReplicaStatus     worker -> head
};
bool is_known(frame_type type);
const char* frame_type_name(frame_type type);   // "hello", ...; "unknown" otherwise

struct frame_limits {
  std::size_t message_bytes_max = 64u << 20;       // payload bytes of one frame
  std::uint64_t traversal_words_max = 16u << 20;   // Cap'n Proto words read per message
  int nesting_depth_max = 32;                      // Cap'n Proto pointer nesting
  std::uint32_t segments_max = 512;                // segments per message
};

// A frame's bytes, header included, ready to send.
using frame_bytes = std::vector<std::byte>;

// Serialises `message` under a header of `type`.
frame_bytes encode_frame(frame_type type, capnp::MessageBuilder& message);
// Writes the checksum of a frame built or altered by hand (tests and fuzzers use it to
// reach the checks behind the checksum). REQUIRES: frame.size() >= frame_header_bytes.
void seal_frame(std::span<std::byte> frame);

// What a frame's header says. Errors (corrupt_data): fewer than frame_header_bytes bytes,
// wrong magic or version, unknown type, a payload length that is not a multiple of 8 or
// exceeds limits.message_bytes_max.
struct frame_header {
  frame_type type;
  std::uint32_t payload_bytes;
};
result<frame_header> decode_header(std::span<const std::byte> bytes, const frame_limits& limits);

// A decoded frame: owns the payload's words (the received frame itself, or an aligned copy)
// and a reader over them.
class decoded_frame {
 public:
  frame_type type() const { return type_; }
  std::size_t payload_bytes() const { return bytes_; }
  // The message root. May throw kj::Exception on malformed pointers (see above).
  template <class Root>
  typename Root::Reader root() { return reader_->getRoot<Root>(); }

 private:
  friend result<decoded_frame> decode_frame(std::span<const std::byte>, frame_bytes*, const frame_limits&);
  frame_type type_{};
  std::size_t bytes_ = 0;
  frame_bytes frame_;                        // the whole frame, when read in place
  std::unique_ptr<capnp::word[]> words_;     // a copy of the payload otherwise
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
};

// Decodes one whole frame (header + exactly payload_bytes more). Errors (corrupt_data):
// everything decode_header() rejects, a length that disagrees with the bytes given, a
// segment table that is malformed, has more than limits.segments_max segments or does not
// fit the payload.
result<decoded_frame> decode_frame(std::span<const std::byte> bytes, const frame_limits& limits);
// The same, taking the frame over: its payload is read where it lies (no copy) when
// word-aligned, as a frame_bytes' always is. `frame` is left empty either way.
result<decoded_frame> decode_frame(frame_bytes&& frame, const frame_limits& limits);

}  // namespace dsrt::transport
