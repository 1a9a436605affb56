// Frame header and segment-table checks, and the Cap'n Proto reader behind a decoded
// frame (frame.h). Every length a peer sends is checked here before Cap'n Proto sees it.
#include "transport/frame.h"

#include <kj/exception.h>

#include <cstring>
#include <limits>

#include "transport/crc32c.h"

namespace dsrt::transport {
namespace {

// The protocol is little-endian whatever the host is.
std::uint32_t load_u32(const std::byte* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
         std::uint32_t(p[3]) << 24;
}
std::uint16_t load_u16(const std::byte* p) { return std::uint16_t(std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8); }
void store_u32(std::byte* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = std::byte(v >> (8 * i));
}
void store_u16(std::byte* p, std::uint16_t v) {
  p[0] = std::byte(v);
  p[1] = std::byte(v >> 8);
}

// What the checksum covers: the header after the magic, up to the checksum, then the payload.
std::uint32_t checksum_of(std::span<const std::byte> frame) {
  return crc32c(frame.subspan(frame_header_bytes), crc32c(frame.subspan(4, 8)));
}

}  // namespace

void seal_frame(std::span<std::byte> frame) {
  DSRT_ASSERT(frame.size() >= frame_header_bytes, "frame of {} bytes", frame.size());
  store_u32(frame.data() + 12, checksum_of(frame));
}

// frame_type_name's answer for a type outside the protocol, compared by address.
constexpr const char* unknown_type_name = "unknown";

bool is_known(frame_type type) { return frame_type_name(type) != unknown_type_name; }

const char* frame_type_name(frame_type type) {
  switch (type) {
    case frame_type::hello: return "hello";
    case frame_type::auth_proof: return "auth_proof";
    case frame_type::heartbeat: return "heartbeat";
    case frame_type::goodbye: return "goodbye";
    case frame_type::control: return "control";
    case frame_type::tensor: return "tensor";
    case frame_type::data_endpoint: return "data_endpoint";
    case frame_type::data_frames: return "data_frames";
    case frame_type::generate: return "generate";
    case frame_type::cancel: return "cancel";
    case frame_type::token_chunk: return "token_chunk";
    case frame_type::final: return "final";
    case frame_type::replica_request: return "replica_request";
    case frame_type::replica_cancel: return "replica_cancel";
    case frame_type::replica_chunks: return "replica_chunks";
    case frame_type::replica_final: return "replica_final";
    case frame_type::replica_up: return "replica_up";
    case frame_type::replica_down: return "replica_down";
    case frame_type::replica_status: return "replica_status";
  }
  return unknown_type_name;
}

frame_bytes encode_frame(frame_type type, capnp::MessageBuilder& message) {
  // The flat-array form written by hand (Cap'n Proto's writeMessage through an
  // ArrayOutputStream costs a third of a small frame's encoding): u32 (segments - 1),
  // u32 words per segment, padded to a word, then the segments.
  const auto segments = message.getSegmentsForOutput();
  DSRT_ASSERT(segments.size() > 0, "a message without a root");
  const std::size_t table_bytes = (segments.size() + 2) / 2 * sizeof(capnp::word);
  std::size_t payload = table_bytes;
  for (const auto& segment : segments) payload += segment.size() * sizeof(capnp::word);
  // A message this large is a bug in the sender: nothing we build comes near it.
  DSRT_ASSERT(payload <= std::numeric_limits<std::uint32_t>::max(), "payload={}", payload);
  frame_bytes out(frame_header_bytes + payload);
  std::byte* p = out.data();
  store_u32(p, frame_magic);
  store_u16(p + 4, frame_protocol_version);
  store_u16(p + 6, std::uint16_t(type));
  store_u32(p + 8, std::uint32_t(payload));
  p += frame_header_bytes;
  store_u32(p, std::uint32_t(segments.size() - 1));
  for (std::size_t i = 0; i < segments.size(); ++i) store_u32(p + 4 + 4 * i, std::uint32_t(segments[i].size()));
  p += table_bytes;   // the padding word, if any, is zero already
  for (const auto& segment : segments) {
    std::memcpy(p, segment.begin(), segment.size() * sizeof(capnp::word));
    p += segment.size() * sizeof(capnp::word);
  }
  seal_frame(out);
  return out;
}

result<frame_header> decode_header(std::span<const std::byte> bytes, const frame_limits& limits) {
  if (bytes.size() < frame_header_bytes)
    return make_error(error_code::corrupt_data, "frame header truncated: {} of {} bytes",
                      bytes.size(), frame_header_bytes);
  const std::uint32_t magic = load_u32(bytes.data());
  if (magic != frame_magic)
    return make_error(error_code::corrupt_data, "not a dsrt frame: magic {:#010x}, expected {:#010x}",
                      magic, frame_magic);
  const std::uint16_t version = load_u16(bytes.data() + 4);
  if (version != frame_protocol_version)
    return make_error(error_code::corrupt_data, "frame protocol version {}, this build speaks {}",
                      version, frame_protocol_version);
  const auto type = frame_type(load_u16(bytes.data() + 6));
  if (!is_known(type))
    return make_error(error_code::corrupt_data, "unknown frame type {}", unsigned(type));
  const std::uint32_t payload_bytes = load_u32(bytes.data() + 8);
  if (payload_bytes % 8 != 0)
    return make_error(error_code::corrupt_data, "{} frame payload of {} bytes is not a multiple of 8",
                      frame_type_name(type), payload_bytes);
  if (payload_bytes > limits.message_bytes_max)
    return make_error(error_code::corrupt_data, "{} frame payload of {} bytes exceeds message_bytes_max {}",
                      frame_type_name(type), payload_bytes, limits.message_bytes_max);
  return frame_header{type, payload_bytes};
}

// `owner`: the vector `bytes` views, to be taken over, or null (copy the payload).
result<decoded_frame> decode_frame(std::span<const std::byte> bytes, frame_bytes* owner, const frame_limits& limits);

result<decoded_frame> decode_frame(std::span<const std::byte> bytes, const frame_limits& limits) {
  return decode_frame(bytes, nullptr, limits);
}

result<decoded_frame> decode_frame(frame_bytes&& frame, const frame_limits& limits) {
  frame_bytes owned = std::move(frame);
  frame.clear();
  return decode_frame(owned, &owned, limits);
}

result<decoded_frame> decode_frame(std::span<const std::byte> bytes, frame_bytes* owner, const frame_limits& limits) {
  auto header = decode_header(bytes, limits);
  if (!header.ok()) return header.err();
  const char* name = frame_type_name(header->type);
  const std::size_t payload_bytes = header->payload_bytes;
  if (bytes.size() != frame_header_bytes + payload_bytes)
    return make_error(error_code::corrupt_data, "{} frame is {} bytes, its header says {} + {}", name,
                      bytes.size(), frame_header_bytes, payload_bytes);
  const std::uint32_t sent = load_u32(bytes.data() + 12), computed = checksum_of(bytes);
  if (sent != computed)
    return make_error(error_code::corrupt_data, "{} frame's checksum is {:#010x}, its bytes give {:#010x}: damaged in transit",
                      name, sent, computed);
  if (payload_bytes < 8)
    return make_error(error_code::corrupt_data, "{} frame has no segment table", name);

  // The segment table: u32 (segments - 1), u32 words per segment, padded to a word. Checked
  // here so Cap'n Proto never sees a table that points outside the payload.
  const std::byte* payload = bytes.data() + frame_header_bytes;
  const std::uint64_t payload_words = payload_bytes / 8;
  const std::uint64_t segments = std::uint64_t(load_u32(payload)) + 1;
  if (segments > limits.segments_max)
    return make_error(error_code::corrupt_data, "{} frame claims {} segments, at most {}", name, segments,
                      limits.segments_max);
  const std::uint64_t table_words = (segments + 2) / 2;   // (4 + 4 * segments) bytes, rounded up
  if (table_words > payload_words)
    return make_error(error_code::corrupt_data, "{} frame's segment table ({} words) exceeds its payload ({} words)",
                      name, table_words, payload_words);
  std::uint64_t segment_words = 0;   // at most 512 x (2^32 - 1): no overflow
  for (std::uint64_t i = 0; i < segments; ++i) segment_words += load_u32(payload + 4 + 4 * i);
  if (segment_words != payload_words - table_words)
    return make_error(error_code::corrupt_data, "{} frame's segments hold {} words, its payload has {} after the table",
                      name, segment_words, payload_words - table_words);

  decoded_frame frame;
  frame.type_ = header->type;
  frame.bytes_ = payload_bytes;
  // Cap'n Proto reads words in place: the frame's own when they are word-aligned (moving a
  // vector keeps its buffer where it is), else a copy.
  const capnp::word* words = nullptr;
  if (owner && reinterpret_cast<std::uintptr_t>(payload) % alignof(capnp::word) == 0) {
    frame.frame_ = std::move(*owner);
    words = reinterpret_cast<const capnp::word*>(frame.frame_.data() + frame_header_bytes);
  } else {
    frame.words_.reset(new capnp::word[payload_words]);
    std::memcpy(static_cast<void*>(frame.words_.get()), payload, payload_bytes);
    words = frame.words_.get();
  }
  capnp::ReaderOptions options;
  options.traversalLimitInWords = limits.traversal_words_max;
  options.nestingLimit = limits.nesting_depth_max;
  try {
    frame.reader_ = std::make_unique<capnp::FlatArrayMessageReader>(
        kj::ArrayPtr<const capnp::word>(words, payload_words), options);
  } catch (const kj::Exception& e) {
    return make_error(error_code::corrupt_data, "{} frame's message is malformed: {}", name,
                      e.getDescription().cStr());
  }
  return frame;
}

}  // namespace dsrt::transport
