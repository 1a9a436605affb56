// transport/frame.h: the header, checksum and segment-table checks, truncation at every length, and
// a frame round trip (single and many segments).
#include "transport/frame.h"

#include <gtest/gtest.h>

#include <cstring>

#include <capnp/serialize.h>

#include "schemas/cluster.capnp.h"
#include "transport/crc32c.h"

namespace dsrt::transport {
namespace {

frame_bytes heartbeat_frame(std::uint64_t incarnation, std::uint64_t sequence) {
  capnp::MallocMessageBuilder message;
  auto b = message.initRoot<wire::Heartbeat>();
  b.setIncarnation(incarnation);
  b.setSequence(sequence);
  return encode_frame(frame_type::heartbeat, message);
}

// A Goodbye with a long reason: a frame with pointers and a few hundred bytes.
frame_bytes goodbye_frame() {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Goodbye>().setReason(std::string(300, 'x'));
  return encode_frame(frame_type::goodbye, message);
}

void put_u32(frame_bytes& f, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) f[at + i] = std::byte(v >> (8 * i));
}
void put_u16(frame_bytes& f, std::size_t at, std::uint16_t v) {
  f[at] = std::byte(v);
  f[at + 1] = std::byte(v >> 8);
}

// Decodes `bytes` with a correct checksum written in, as a peer that means to send them
// would, so each check behind the checksum is reached.
void expect_corrupt(frame_bytes f, const frame_limits& limits, const std::string& fragment) {
  if (f.size() >= frame_header_bytes) seal_frame(f);
  auto r = decode_frame(f, limits);
  ASSERT_FALSE(r.ok()) << fragment;
  EXPECT_EQ(r.err().code, error_code::corrupt_data) << r.err().to_string();
  EXPECT_NE(r.err().message.find(fragment), std::string::npos) << r.err().message;
}

TEST(Frame, RoundTripsAndHasTheDocumentedHeader) {
  const frame_bytes f = heartbeat_frame(7, 42);
  ASSERT_GE(f.size(), frame_header_bytes);
  EXPECT_EQ(std::memcmp(f.data(), "DSRT", 4), 0);
  EXPECT_EQ(std::to_integer<int>(f[4]), frame_protocol_version);
  EXPECT_EQ(std::to_integer<int>(f[6]), int(frame_type::heartbeat));
  EXPECT_EQ(f.size() - frame_header_bytes, std::size_t(std::to_integer<int>(f[8]) | std::to_integer<int>(f[9]) << 8));

  auto header = decode_header(f, {});
  ASSERT_TRUE(header.ok()) << header.err().to_string();
  EXPECT_EQ(header->type, frame_type::heartbeat);
  EXPECT_EQ(header->payload_bytes, f.size() - frame_header_bytes);

  auto frame = decode_frame(f, {});
  ASSERT_TRUE(frame.ok()) << frame.err().to_string();
  EXPECT_EQ(frame->type(), frame_type::heartbeat);
  auto root = frame->root<wire::Heartbeat>();
  EXPECT_EQ(root.getIncarnation(), 7u);
  EXPECT_EQ(root.getSequence(), 42u);
}

TEST(Frame, ThePayloadIsCapnProtosFlatArrayForm) {
  // One segment, then an even and an odd number (the table's padding word differs).
  for (unsigned first_words : {1024u, 2u, 1u}) {
    capnp::MallocMessageBuilder message(first_words, capnp::AllocationStrategy::FIXED_SIZE);
    message.initRoot<wire::Goodbye>().setReason("twenty-four bytes of it!");
    const auto segments = message.getSegmentsForOutput().size();
    const frame_bytes f = encode_frame(frame_type::goodbye, message);
    const auto flat = capnp::messageToFlatArray(message);
    const auto expected = flat.asBytes();
    ASSERT_EQ(f.size(), frame_header_bytes + expected.size()) << segments << " segments";
    EXPECT_EQ(std::memcmp(f.data() + frame_header_bytes, expected.begin(), expected.size()), 0)
        << segments << " segments";
  }
}

TEST(Frame, ATakenOverFrameIsReadWhereItLies) {
  frame_bytes f = goodbye_frame();
  const std::byte* at = f.data();
  auto frame = decode_frame(std::move(f), {});
  ASSERT_TRUE(frame.ok()) << frame.err().to_string();
  EXPECT_TRUE(f.empty());
  auto reason = frame->root<wire::Goodbye>().getReason();
  EXPECT_EQ(std::string(reason.cStr()), std::string(300, 'x'));
  // The text lies inside the frame's own buffer: nothing was copied.
  const auto* text = reinterpret_cast<const std::byte*>(reason.begin());
  EXPECT_TRUE(text > at && text < at + frame_header_bytes + frame->payload_bytes());

  // Taking over a corrupt frame is the same typed error as reading a copy.
  frame_bytes bad = goodbye_frame();
  bad[20] ^= std::byte{1};
  auto refused = decode_frame(std::move(bad), {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.err().code, error_code::corrupt_data);
}

TEST(Frame, ManySegmentsRoundTripUnderTheSegmentLimit) {
  // Fixed one-word segments force a multi-segment message.
  capnp::MallocMessageBuilder message(1, capnp::AllocationStrategy::FIXED_SIZE);
  message.initRoot<wire::Goodbye>().setReason("a reason of a few words");
  const frame_bytes f = encode_frame(frame_type::goodbye, message);
  auto frame = decode_frame(f, {});
  ASSERT_TRUE(frame.ok()) << frame.err().to_string();
  EXPECT_EQ(std::string(frame->root<wire::Goodbye>().getReason().cStr()), "a reason of a few words");

  frame_limits one_segment;
  one_segment.segments_max = 1;
  expect_corrupt(f, one_segment, "segments, at most 1");
}

TEST(Frame, NamesEveryKnownTypeAndNoOther) {
  int known = 0;
  for (int t = 0; t < 65536; ++t) {
    const auto type = frame_type(t);
    EXPECT_EQ(is_known(type), std::string(frame_type_name(type)) != "unknown") << t;
    known += is_known(type);
  }
  EXPECT_EQ(known, 19);
  EXPECT_STREQ(frame_type_name(frame_type::replica_status), "replica_status");
}

TEST(Frame, EveryHeaderErrorIsCorruptData) {
  const frame_bytes good = heartbeat_frame(1, 2);
  for (std::size_t n = 0; n < frame_header_bytes; ++n) {
    auto r = decode_header(std::span(good).first(n), {});
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.err().code, error_code::corrupt_data);
  }
  frame_bytes f = good;
  f[0] = std::byte('X');
  expect_corrupt(f, {}, "magic");

  f = good;
  put_u16(f, 4, frame_protocol_version + 1);
  expect_corrupt(f, {}, fmt::format("protocol version {}", frame_protocol_version + 1));

  for (std::uint16_t type : {0, 9, 15, 20, 31, 39, 65535}) {
    f = good;
    put_u16(f, 6, type);
    expect_corrupt(f, {}, "unknown frame type " + std::to_string(type));
  }

  f = good;
  put_u32(f, 8, std::uint32_t(good.size() - frame_header_bytes + 4));
  f.resize(f.size() + 4);
  expect_corrupt(f, {}, "not a multiple of 8");

  frame_limits small;
  small.message_bytes_max = 8;
  expect_corrupt(good, small, "exceeds message_bytes_max 8");

  f = good;   // a huge claimed length is refused from the header alone
  put_u32(f, 8, 0xFFFFFFF8u);
  expect_corrupt(f, {}, "exceeds message_bytes_max");

  f = good;   // the header says less than the bytes hold
  f.push_back(std::byte{0});
  expect_corrupt(f, {}, "its header says");

  f = frame_bytes(good.begin(), good.begin() + frame_header_bytes);
  put_u32(f, 8, 0);
  expect_corrupt(f, {}, "no segment table");

  f = good;   // a byte of the payload changed in transit, the checksum left as it was
  f.back() ^= std::byte{0x10};
  auto damaged = decode_frame(f, {});
  ASSERT_FALSE(damaged.ok());
  EXPECT_EQ(damaged.err().code, error_code::corrupt_data);
  EXPECT_NE(damaged.err().message.find("damaged in transit"), std::string::npos) << damaged.err().message;
}

TEST(Frame, Crc32cMatchesTheStandardCheckValue) {
  const std::string digits = "123456789";
  EXPECT_EQ(crc32c(std::as_bytes(std::span(digits))), 0xe3069283u);
  // Extending in pieces gives the same value.
  const auto bytes = std::as_bytes(std::span(digits));
  EXPECT_EQ(crc32c(bytes.subspan(4), crc32c(bytes.first(4))), 0xe3069283u);
  EXPECT_EQ(crc32c({}), 0u);
}

TEST(Frame, TruncatedAtEveryLengthIsAnError) {
  const frame_bytes good = goodbye_frame();
  for (std::size_t n = 0; n < good.size(); ++n) {
    auto r = decode_frame(std::span(good).first(n), {});
    ASSERT_FALSE(r.ok()) << "truncated to " << n;
    EXPECT_EQ(r.err().code, error_code::corrupt_data) << "truncated to " << n;
  }
  // The header rewritten to agree with the shorter payload: the segment table disagrees.
  for (std::size_t payload = 0; payload + frame_header_bytes < good.size(); payload += 8) {
    frame_bytes f(good.begin(), good.begin() + std::ptrdiff_t(frame_header_bytes + payload));
    put_u32(f, 8, std::uint32_t(payload));
    auto r = decode_frame(f, {});
    ASSERT_FALSE(r.ok()) << "payload " << payload;
    EXPECT_EQ(r.err().code, error_code::corrupt_data) << "payload " << payload;
  }
}

TEST(Frame, MalformedSegmentTablesAreRefusedBeforeCapnProtoSeesThem) {
  const frame_bytes good = heartbeat_frame(3, 4);   // one segment: table is one word
  const std::size_t table = frame_header_bytes;

  frame_bytes f = good;
  put_u32(f, table, 0xFFFFFFFFu);   // 2^32 segments (count - 1 overflows a u32)
  expect_corrupt(f, {}, "claims 4294967296 segments, at most 512");

  f = good;
  put_u32(f, table, 512);   // 513 segments
  expect_corrupt(f, {}, "claims 513 segments");

  f = good;
  put_u32(f, table, 511);   // 512 segments: the table alone is 257 words
  expect_corrupt(f, {}, "segment table (257 words) exceeds its payload");

  f = good;
  put_u32(f, table + 4, 0xFFFFFFFFu);   // one segment of 2^32 - 1 words
  expect_corrupt(f, {}, "segments hold 4294967295 words");

  f = good;   // two segments whose sizes overflow 32 bits together
  put_u32(f, table, 1);
  put_u32(f, table + 4, 0xFFFFFFFFu);
  put_u32(f, table + 8, 0xFFFFFFFFu);
  expect_corrupt(f, {}, "segments hold 8589934590 words");

  f = good;   // trailing words the segment table does not account for
  f.resize(f.size() + 8);
  put_u32(f, 8, std::uint32_t(f.size() - frame_header_bytes));
  expect_corrupt(f, {}, "its payload has");
}

TEST(Frame, ANestingLimitIsEnforcedWhenFieldsAreRead) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Goodbye>().setReason("bye");
  const frame_bytes f = encode_frame(frame_type::goodbye, message);
  frame_limits flat;
  flat.nesting_depth_max = 0;
  auto frame = decode_frame(f, flat);
  ASSERT_TRUE(frame.ok());   // pointers are checked when they are followed
  EXPECT_THROW(frame->root<wire::Goodbye>().getReason(), kj::Exception);
}

}  // namespace
}  // namespace dsrt::transport
