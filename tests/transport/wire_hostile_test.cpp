// transport/wire.h against a hostile peer: hand-built messages with out-of-range enums and
// unions, over-long lists and texts, amplified traversals, and 20,000 random or mutated
// frames — every one a typed error, never a crash.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>

#include "schemas/cluster.capnp.h"
#include "schemas/request.capnp.h"
#include "schemas/serving.capnp.h"
#include "tests/transport/wire_samples.h"
#include "transport/wire.h"

namespace dsrt::transport {
namespace {

decoded_frame open(const frame_bytes& bytes, const frame_limits& limits = {}) {
  auto frame = decode_frame(bytes, limits);
  DSRT_ASSERT(frame.ok(), "{}", frame.err().to_string());
  return std::move(frame.value());
}

// Builds a frame of `type` whose root `fill` writes directly, bypassing encode().
template <class Root, class Fill>
decoded_frame hand_built(frame_type type, Fill&& fill, const frame_limits& limits = {}) {
  capnp::MallocMessageBuilder message;
  fill(message.initRoot<Root>());
  return open(encode_frame(type, message), limits);
}

template <class T>
void expect_refused(const result<T>& r, error_code code, const std::string& fragment) {
  ASSERT_FALSE(r.ok()) << "expected an error mentioning '" << fragment << "'";
  EXPECT_EQ(r.err().code, code) << r.err().to_string();
  EXPECT_NE(r.err().message.find(fragment), std::string::npos) << r.err().message;
}

const clock_anchor anchor = clock_anchor::now();

TEST(WireHostile, UnknownEnumValuesAreRefused) {
  auto hello = hand_built<wire::Hello>(frame_type::hello, [](wire::Hello::Builder b) {
    b.setRole(static_cast<wire::Role>(7));
    b.initNonce(nonce_bytes);
  });
  expect_refused(decode_hello(hello), error_code::invalid_argument, "role");

  auto final = hand_built<wire::Final>(frame_type::final, [](wire::Final::Builder b) {
    b.initCompleted().setFinishReason(static_cast<wire::FinishReason>(2));
  });
  expect_refused(decode_final(final), error_code::invalid_argument, "finishReason");

  auto error_final = hand_built<wire::Final>(frame_type::final, [](wire::Final::Builder b) {
    b.initError().setCode(static_cast<wire::ErrorCode>(7));
  });
  expect_refused(decode_final(error_final), error_code::invalid_argument, "error.code");

  auto replica_final = hand_built<wire::ReplicaFinal>(frame_type::replica_final, [](wire::ReplicaFinal::Builder b) {
    b.setFinished(static_cast<wire::FinishReason>(65535));
  });
  expect_refused(decode_replica_final(replica_final), error_code::invalid_argument, "finishReason");
}

TEST(WireHostile, UnknownUnionMembersAreRefused) {
  // Control is one data word whose first 16 bits are the union's discriminant.
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Control>().setShutdown();
  frame_bytes f = encode_frame(frame_type::control, message);
  const std::size_t discriminant = frame_header_bytes + 8 /*table*/ + 8 /*root pointer*/;
  ASSERT_EQ(std::to_integer<int>(f[discriminant]), 1);
  f[discriminant] = std::byte{9};
  seal_frame(f);   // as a peer that means it would send it
  auto frame = open(f);
  expect_refused(decode_control(frame), error_code::invalid_argument, "unknown union member");
}

TEST(WireHostile, TextAndChatPromptsAskForTokens) {
  auto text = hand_built<wire::GenerateRequest>(frame_type::generate, [](wire::GenerateRequest::Builder b) {
    b.getPrompt().setText("hello");
  });
  expect_refused(decode_generate_request(text, anchor), error_code::invalid_argument, "send a tokenized prompt");
  auto chat = hand_built<wire::GenerateRequest>(frame_type::generate, [](wire::GenerateRequest::Builder b) {
    b.getPrompt().initChat(1)[0].setContent("hi");
  });
  expect_refused(decode_generate_request(chat, anchor), error_code::invalid_argument, "send a tokenized prompt");
}

TEST(WireHostile, GenerateRequestValuesOutOfRange) {
  serving::generate_request r;
  r.prompt = {1};
  r.stop.assign(17, "x");
  auto too_many_stops = open(encode(r, anchor));
  expect_refused(decode_generate_request(too_many_stops, anchor), error_code::invalid_argument, "17 stop strings");

  r.stop = {std::string(257, 's')};
  auto long_stop = open(encode(r, anchor));
  expect_refused(decode_generate_request(long_stop, anchor), error_code::invalid_argument, "stop: 257 bytes");

  r.stop = {std::string(256, 's')};   // at the limit: fine
  auto ok_stop = open(encode(r, anchor));
  EXPECT_TRUE(decode_generate_request(ok_stop, anchor).ok());

  r.tenant = std::string(257, 't');
  auto long_tenant = open(encode(r, anchor));
  expect_refused(decode_generate_request(long_tenant, anchor), error_code::invalid_argument, "tenant");

  auto hostile = [](auto fill) {
    return hand_built<wire::GenerateRequest>(frame_type::generate, [&](wire::GenerateRequest::Builder b) {
      b.getPrompt().initTokens(1).set(0, 1);
      fill(b);
    });
  };
  auto big_max = hostile([](auto b) { b.setMaxTokens(0x80000000u); });
  expect_refused(decode_generate_request(big_max, anchor), error_code::invalid_argument, "maxTokens");
  auto big_top_k = hostile([](auto b) { b.initSampling().setTopK(0xFFFFFFFFu); });
  expect_refused(decode_generate_request(big_top_k, anchor), error_code::invalid_argument, "topK");
  auto nan = hostile([](auto b) { b.initSampling().setTemperature(std::nanf("")); });
  expect_refused(decode_generate_request(nan, anchor), error_code::invalid_argument, "non-finite");
  auto inf = hostile([](auto b) { b.initSampling().setTopP(std::numeric_limits<float>::infinity()); });
  expect_refused(decode_generate_request(inf, anchor), error_code::invalid_argument, "non-finite");
  auto big_token = hostile([](auto b) { b.getPrompt().initTokens(2).set(1, 0x80000000u); });
  expect_refused(decode_generate_request(big_token, anchor), error_code::invalid_argument, "token id 2147483648");

  // Any deadline a peer sends is clamped, never overflowing the clock arithmetic.
  for (std::uint64_t in_ms : {std::uint64_t(1), std::numeric_limits<std::uint64_t>::max(),
                              std::uint64_t(std::numeric_limits<std::int64_t>::max())}) {
    auto far = hostile([&](auto b) { b.setDeadlineInMs(in_ms); });
    auto d = decode_generate_request(far, anchor);
    ASSERT_TRUE(d.ok()) << d.err().to_string();
    ASSERT_TRUE(d->deadline.has_value());
    EXPECT_LE(std::chrono::abs(*d->deadline - anchor.steady), wire_limits{}.deadline_distance_max + milliseconds(1));
  }
}

TEST(WireHostile, TokenIdsOutsideInt32AreRefused) {
  auto chunk = open(encode(serving::token_chunk{1, 0, {5, -1}, ""}));   // -1 travels as 2^32 - 1
  expect_refused(decode_token_chunk(chunk), error_code::invalid_argument, "token id 4294967295");
  serving::replica_chunks chunks;
  chunks.chunks = {{1, 0, 0, {3, -5}}};
  auto replica = open(encode(chunks));
  expect_refused(decode_replica_chunks(replica), error_code::invalid_argument, "token id -5");
  serving::final_message final;
  final.tokens = {-2};
  auto f = open(encode(final));
  expect_refused(decode_final(f), error_code::invalid_argument, "token id");
}

TEST(WireHostile, ListsAndTextsOverTheirLimits) {
  wire_limits small;
  small.tokens_per_message_max = 4;
  small.chunks_per_message_max = 2;
  small.output_text_bytes_max = 3;
  small.address_bytes_max = 5;

  auto chunk = open(encode(serving::token_chunk{1, 0, {1, 2, 3, 4, 5}, ""}));
  expect_refused(decode_token_chunk(chunk, small), error_code::invalid_argument, "5 tokens");
  auto text = open(encode(serving::token_chunk{1, 0, {}, "abcd"}));
  expect_refused(decode_token_chunk(text, small), error_code::invalid_argument, "text: 4 bytes, at most 3");

  serving::replica_chunks chunks;   // three lists of two tokens: the budget is per message
  chunks.chunks = {{1, 0, 0, {1, 2}}, {2, 0, 0, {1, 2}}};
  auto two = open(encode(chunks));
  EXPECT_TRUE(decode_replica_chunks(two, small).ok());
  chunks.chunks.push_back({3, 0, 0, {1}});
  auto three = open(encode(chunks));
  expect_refused(decode_replica_chunks(three, small), error_code::invalid_argument, "3 chunks, at most 2");
  small.chunks_per_message_max = 3;
  chunks.chunks.back().tokens = {1, 2};
  auto six_tokens = open(encode(chunks));
  expect_refused(decode_replica_chunks(six_tokens, small), error_code::invalid_argument, "chunks.tokens");

  serving::replica_request request;
  request.sequence.tokens = {1, 2, 3};
  request.stop_token_ids = {1, 2};
  auto over = open(encode(request, anchor));
  expect_refused(decode_replica_request(over, anchor, small), error_code::invalid_argument, "stopTokenIds");

  auto up = open(encode(replica_up_wire{1, "abcdef"}));
  expect_refused(decode_replica_up(up, small), error_code::invalid_argument, "batcher");

  // Texts encode() would cut, written by hand one byte over the limit.
  const std::string over_limit(message_text_bytes_max + 1, 'm');
  auto error_final = hand_built<wire::Final>(frame_type::final, [&](wire::Final::Builder b) {
    b.initError().setMessage(over_limit);
  });
  expect_refused(decode_final(error_final), error_code::invalid_argument, "error.message: 4097 bytes");
  auto bye = hand_built<wire::Goodbye>(frame_type::goodbye, [&](wire::Goodbye::Builder b) { b.setReason(over_limit); });
  expect_refused(decode_goodbye(bye), error_code::invalid_argument, "reason");
  auto down = hand_built<wire::ReplicaDown>(frame_type::replica_down, [&](wire::ReplicaDown::Builder b) {
    b.setReason(over_limit);
  });
  expect_refused(decode_replica_down(down), error_code::invalid_argument, "reason");
}

TEST(WireHostile, NoncesAndMacsOfTheWrongLength) {
  for (unsigned n : {0u, 31u, 33u}) {
    auto hello = hand_built<wire::Hello>(frame_type::hello, [&](wire::Hello::Builder b) { b.initNonce(n); });
    expect_refused(decode_hello(hello), error_code::invalid_argument, "nonce");
    auto proof = hand_built<wire::AuthProof>(frame_type::auth_proof, [&](wire::AuthProof::Builder b) { b.initMac(n); });
    expect_refused(decode_auth_proof(proof), error_code::invalid_argument, "mac");
  }
}

TEST(WireHostile, ReplicaRequestInconsistencies) {
  auto build = [](auto fill) {
    return hand_built<wire::ReplicaRequest>(frame_type::replica_request, [&](wire::ReplicaRequest::Builder b) {
      b.setRequestId(5);
      auto s = b.initSequence();
      s.setId(5);
      s.initTokens(2);
      fill(s);
    });
  };
  auto id = build([](auto s) { s.setId(6); });
  expect_refused(decode_replica_request(id, anchor), error_code::invalid_argument, "differs from requestId");
  auto prompt = build([](auto s) { s.setPromptTokens(3); });
  expect_refused(decode_replica_request(prompt, anchor), error_code::invalid_argument, "3 of 2 tokens");
  auto negative = build([](auto s) { s.setPromptTokens(-1); });
  expect_refused(decode_replica_request(negative, anchor), error_code::invalid_argument, "promptTokens");
  auto draw = build([](auto s) { s.setDrawBase(-1); });
  expect_refused(decode_replica_request(draw, anchor), error_code::invalid_argument, "drawBase");
  auto huge = build([](auto s) { s.setMaxNewTokens(std::numeric_limits<std::int64_t>::max()); });
  expect_refused(decode_replica_request(huge, anchor), error_code::invalid_argument, "maxNewTokens");
}

TEST(WireHostile, NestingLimitAppliesToDecoding) {
  serving::replica_request r;
  const frame_bytes f = encode(r, anchor);
  auto deep = open(f);
  EXPECT_TRUE(decode_replica_request(deep, anchor).ok());
  frame_limits shallow;
  shallow.nesting_depth_max = 2;   // root -> sequence -> sampling needs more
  auto frame = open(f, shallow);
  expect_refused(decode_replica_request(frame, anchor), error_code::corrupt_data, "malformed replica_request frame");
}

// A ReplicaChunks whose `chunks` all point at one shared token list: a small message that
// asks the reader to walk `chunks` x the list's words (an amplification attack).
frame_bytes amplified_chunks(std::uint32_t chunks, std::uint32_t tokens) {
  const std::uint64_t list_words = (tokens + 1) / 2;
  const std::uint64_t shared_at = 3 + 3ull * chunks;   // root ptr, struct, tag, elements
  std::vector<std::uint64_t> words(shared_at + list_words, 0);
  words[0] = 0ull << 2 | std::uint64_t(1) << 48;                       // root: struct, 0 data, 1 ptr
  words[1] = 1 | 0ull << 2 | 7ull << 32 | std::uint64_t(3ull * chunks) << 35;   // composite list
  words[2] = std::uint64_t(chunks) << 2 | 2ull << 32 | 1ull << 48;     // tag: n, 2 data, 1 ptr
  for (std::uint64_t i = 0; i < chunks; ++i) {
    const std::uint64_t at = 3 + 3 * i + 2;   // the element's pointer
    const std::int64_t offset = std::int64_t(shared_at) - std::int64_t(at + 1);
    words[at] = 1 | (std::uint64_t(offset) & 0x3FFFFFFF) << 2 | 4ull << 32 | std::uint64_t(tokens) << 35;
  }
  frame_bytes f(frame_header_bytes + 8 + words.size() * 8);
  const std::uint32_t header[3] = {frame_magic, frame_protocol_version | std::uint32_t(frame_type::replica_chunks) << 16,
                                   std::uint32_t(f.size() - frame_header_bytes)};
  std::memcpy(f.data(), header, sizeof header);   // little-endian host, as the test runs
  const std::uint32_t table[2] = {0, std::uint32_t(words.size())};
  std::memcpy(f.data() + frame_header_bytes, table, sizeof table);
  std::memcpy(f.data() + frame_header_bytes + 8, words.data(), words.size() * 8);
  seal_frame(f);
  return f;
}

TEST(WireHostile, AmplifiedTraversalIsStopped) {
  // 1000 chunks x 40,000 shared tokens: 184 KB that read as 40 million tokens.
  const frame_bytes f = amplified_chunks(1000, 40000);
  ASSERT_LT(f.size(), 200u * 1024);
  auto frame = open(f);
  // The token budget stops it first...
  expect_refused(decode_replica_chunks(frame), error_code::invalid_argument, "chunks.tokens");
  // ...and without it the traversal limit does.
  wire_limits unbounded;
  unbounded.tokens_per_message_max = std::numeric_limits<std::size_t>::max();
  auto frame2 = open(f);
  expect_refused(decode_replica_chunks(frame2, unbounded), error_code::corrupt_data, "malformed replica_chunks frame");
  // The same shape, small, is an ordinary message.
  auto small = open(amplified_chunks(2, 3));
  auto ok = decode_replica_chunks(small);
  ASSERT_TRUE(ok.ok()) << ok.err().to_string();
  EXPECT_EQ(ok->chunks.size(), 2u);
}

TEST(WireHostile, SampleFramesCoverEveryTypeAndDecode) {
  std::set<frame_type> types;
  for (const frame_bytes& f : testing::sample_frames(anchor)) {
    auto frame = open(f);
    types.insert(frame.type());
    EXPECT_EQ(testing::decode_every(frame, anchor), "") << frame_type_name(frame.type());
  }
  EXPECT_EQ(types.size(), 19u);
}

TEST(WireHostile, RandomAndMutatedFramesGiveTypedErrors) {
  std::mt19937_64 random(20240611);   // seeded: a failure replays exactly
  const std::vector<frame_bytes> seeds = testing::sample_frames(anchor);
  int decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    frame_bytes f;
    const int kind = i % 3;
    if (kind == 0) {   // bytes with a valid header and a random payload
      f.resize(frame_header_bytes + 8 * (random() % 32));
      for (auto& b : f) b = std::byte(random());
      const frame_bytes& seed = seeds[random() % seeds.size()];
      std::memcpy(f.data(), seed.data(), 8);
      const std::uint32_t payload = std::uint32_t(f.size() - frame_header_bytes);
      std::memcpy(f.data() + 8, &payload, 4);
      if (f.size() > frame_header_bytes) std::memset(f.data() + frame_header_bytes, 0, 4);   // one segment
      if (f.size() > frame_header_bytes + 8) {
        const std::uint32_t words = payload / 8 - 1;
        std::memcpy(f.data() + frame_header_bytes + 4, &words, 4);
      }
    } else if (kind == 1) {   // a valid frame with a few bytes flipped
      f = seeds[random() % seeds.size()];
      for (int flips = 1 + int(random() % 4); flips > 0; --flips)
        f[frame_header_bytes + random() % (f.size() - frame_header_bytes)] ^= std::byte(1u << (random() % 8));
    } else {   // anything at all
      f.resize(random() % 128);
      for (auto& b : f) b = std::byte(random());
    }
    // With a correct checksum, as a hostile peer would send them (DamagedFramesAreRefused
    // covers frames whose checksum no longer matches).
    if (f.size() >= frame_header_bytes) seal_frame(f);
    auto frame = decode_frame(f, {});
    if (!frame.ok()) {
      ASSERT_EQ(frame.err().code, error_code::corrupt_data) << "frame " << i << ": " << frame.err().to_string();
      continue;
    }
    ++decoded;
    const std::string bad = testing::decode_every(*frame, anchor);
    ASSERT_TRUE(bad.empty()) << "frame " << i << ": " << bad;
  }
  EXPECT_GT(decoded, 5000);   // most mutated and header-valid frames get as far as the readers
}

TEST(WireHostile, DamagedFramesAreRefusedByTheirChecksum) {
  // Bytes flipped in transit anywhere after the magic — header fields, segment table, a
  // token id — are refused; before the checksum a flip inside a value decoded as a wrong
  // value (the simulator's corrupt_message fault delivered a wrong token that way).
  std::mt19937_64 random(20261123);
  const std::vector<frame_bytes> seeds = testing::sample_frames(anchor);
  for (int i = 0; i < 5000; ++i) {
    frame_bytes f = seeds[std::size_t(i) % seeds.size()];
    for (int flips = 1 + int(random() % 3); flips > 0; --flips)
      f[4 + random() % (f.size() - 4)] ^= std::byte(1 + random() % 255);
    if (f == seeds[std::size_t(i) % seeds.size()]) continue;   // two flips undid each other
    auto frame = decode_frame(f, {});
    ASSERT_FALSE(frame.ok()) << "frame " << i << " (" << frame_type_name(frame->type()) << ") decoded after damage";
    EXPECT_EQ(frame.err().code, error_code::corrupt_data);
  }
}

}  // namespace
}  // namespace dsrt::transport
