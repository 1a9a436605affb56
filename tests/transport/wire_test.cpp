// transport/wire.h: every message survives encode -> frame bytes -> decode, field by field,
// including empty and optional cases; a frame of another type is refused.
#include "transport/wire.h"

#include <gtest/gtest.h>

#include <cstring>

namespace dsrt::transport {
namespace {

using namespace std::chrono_literals;

decoded_frame open(const frame_bytes& bytes) {
  auto frame = decode_frame(bytes, {});
  DSRT_ASSERT(frame.ok(), "{}", frame.err().to_string());
  return std::move(frame.value());
}

void expect_same(const engine::sampling_params& a, const engine::sampling_params& b) {
  EXPECT_EQ(a.temperature, b.temperature);
  EXPECT_EQ(a.top_k, b.top_k);
  EXPECT_EQ(a.top_p, b.top_p);
  EXPECT_EQ(a.min_p, b.min_p);
  EXPECT_EQ(a.seed, b.seed);
}

void expect_same_deadline(const std::optional<clock_time>& a, const std::optional<clock_time>& b) {
  ASSERT_EQ(a.has_value(), b.has_value());
  if (a) {
    EXPECT_LE(std::chrono::abs(*a - *b), 2ms);
  }
}

void expect_same_failure(const std::optional<error>& a, const std::optional<error>& b) {
  ASSERT_EQ(a.has_value(), b.has_value());
  if (!a) return;
  EXPECT_EQ(a->code, b->code);
  EXPECT_EQ(a->message, b->message);
}

serving::generate_request full_request(const clock_anchor& now) {
  serving::generate_request r;
  r.request_id = 0xFEDCBA9876543210ull;
  r.prompt = {0, 1, 2, 151645, 2147483647};
  r.sampling = {0.7f, 40, 0.95f, 0.05f, 12345};
  r.max_tokens = 2147483647;
  r.stop = {"</s>", "", "\n\nUser:"};
  r.priority = 3;
  r.tenant = "team-a";
  r.deadline = now.steady + 1500ms;
  return r;
}

void expect_same(const serving::generate_request& a, const serving::generate_request& b) {
  EXPECT_EQ(a.request_id, b.request_id);
  EXPECT_EQ(a.prompt, b.prompt);
  expect_same(a.sampling, b.sampling);
  EXPECT_EQ(a.max_tokens, b.max_tokens);
  EXPECT_EQ(a.stop, b.stop);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.tenant, b.tenant);
  expect_same_deadline(a.deadline, b.deadline);
}

TEST(Wire, GenerateRequestRoundTrips) {
  const clock_anchor now = clock_anchor::now();
  const serving::generate_request full = full_request(now);
  auto frame = open(encode(full, now));
  EXPECT_EQ(frame.type(), frame_type::generate);
  auto back = decode_generate_request(frame, now);
  ASSERT_TRUE(back.ok()) << back.err().to_string();
  expect_same(full, back.value());

  const serving::generate_request empty;   // no prompt, no stops, no deadline
  auto frame2 = open(encode(empty, now));
  auto back2 = decode_generate_request(frame2, now);
  ASSERT_TRUE(back2.ok()) << back2.err().to_string();
  expect_same(empty, back2.value());
  EXPECT_FALSE(back2->deadline.has_value());
}

// Messages are built in a first segment sized for their tokens; text the guess leaves out
// spills into more segments, which must read back the same.
TEST(Wire, AMessageLargerThanItsFirstSegmentRoundTripsInSeveralSegments) {
  const clock_anchor now = clock_anchor::now();
  serving::generate_request r = full_request(now);
  r.prompt = {7};
  r.tenant = std::string(256, 't');
  r.stop.assign(16, std::string(256, 's'));
  const frame_bytes bytes = encode(r, now);
  std::uint32_t segments_minus_one = 0;
  std::memcpy(&segments_minus_one, bytes.data() + frame_header_bytes, sizeof segments_minus_one);
  EXPECT_GT(segments_minus_one, 0u) << "the text does not fit the first segment";
  auto frame = open(bytes);
  auto back = decode_generate_request(frame, now);
  ASSERT_TRUE(back.ok()) << back.err().to_string();
  expect_same(r, back.value());
}

TEST(Wire, DeadlinesTravelAsTimeLeftWhateverTheReceiversClock) {
  // The receiver's steady clock has another epoch (another process): the deadline is as far
  // ahead of its "now" as it was of the sender's, never less.
  const clock_anchor sender = clock_anchor::now();
  const clock_anchor receiver{sender.steady + 1000h};
  serving::generate_request r = full_request(sender);
  r.deadline = sender.steady + 1500ms + 300us;
  auto frame = open(encode(r, sender));
  auto back = decode_generate_request(frame, receiver);
  ASSERT_TRUE(back.ok());
  ASSERT_TRUE(back->deadline.has_value());
  EXPECT_GE(*back->deadline - receiver.steady, *r.deadline - sender.steady);      // rounded up...
  EXPECT_LT(*back->deadline - receiver.steady, *r.deadline - sender.steady + 1ms); // ...to the ms

  // A deadline in the past arrives as due now (not "none").
  r.deadline = sender.steady - 10s;
  auto frame2 = open(encode(r, sender));
  auto back2 = decode_generate_request(frame2, receiver);
  ASSERT_TRUE(back2.ok());
  ASSERT_TRUE(back2->deadline.has_value());
  EXPECT_EQ(*back2->deadline, receiver.steady);

  // The far future is read as the limit's distance.
  r.deadline = clock_time::max();
  auto frame3 = open(encode(r, sender));
  auto back3 = decode_generate_request(frame3, sender);
  ASSERT_TRUE(back3.ok());
  ASSERT_TRUE(back3->deadline.has_value());
  EXPECT_LE(std::chrono::abs(*back3->deadline - (sender.steady + wire_limits{}.deadline_distance_max)), 2ms);
}

TEST(Wire, TokenChunkRoundTrips) {
  for (const serving::token_chunk& c :
       {serving::token_chunk{7, 3, {10, 20, 30}, "héllo"}, serving::token_chunk{}}) {
    auto frame = open(encode(c));
    auto back = decode_token_chunk(frame);
    ASSERT_TRUE(back.ok()) << back.err().to_string();
    EXPECT_EQ(back->request_id, c.request_id);
    EXPECT_EQ(back->sequence, c.sequence);
    EXPECT_EQ(back->tokens, c.tokens);
    EXPECT_EQ(back->text, c.text);
  }
}

void expect_final_round_trip(const serving::final_message& f) {
  auto frame = open(encode(f));
  auto back = decode_final(frame);
  ASSERT_TRUE(back.ok()) << back.err().to_string();
  EXPECT_EQ(back->request_id, f.request_id);
  EXPECT_EQ(back->chunks_sent, f.chunks_sent);
  expect_same_failure(back->failure, f.failure);
  EXPECT_EQ(back->retry_after_ms, f.retry_after_ms);
  EXPECT_EQ(back->reason, f.reason);
  EXPECT_EQ(back->prompt_tokens, f.prompt_tokens);
  EXPECT_EQ(back->completion_tokens, f.completion_tokens);
  EXPECT_EQ(back->tokens, f.tokens);
  EXPECT_EQ(back->text, f.text);
}

TEST(Wire, FinalRoundTripsCompletedAndFailed) {
  serving::final_message done;
  done.request_id = 99;
  done.chunks_sent = 4;
  done.reason = serving::finish_reason::stop;
  done.prompt_tokens = 12;
  done.completion_tokens = 3;
  done.tokens = {5, 6, 7};
  done.text = "abc";
  expect_final_round_trip(done);
  done.reason = serving::finish_reason::length;
  expect_final_round_trip(done);
  expect_final_round_trip(serving::final_message{});

  // With a failure only the error and retry hint travel; the rest decodes as defaults.
  for (error_code code : {error_code::invalid_argument, error_code::unauthenticated, error_code::overloaded,
                          error_code::unavailable, error_code::deadline_exceeded, error_code::cancelled,
                          error_code::internal}) {
    serving::final_message failed;
    failed.request_id = 5;
    failed.chunks_sent = 1;
    failed.failure = error{code, "it went wrong"};
    failed.retry_after_ms = 250;
    failed.tokens = {1};
    failed.text = "partial";
    expect_final_round_trip(failed);
  }
}

TEST(Wire, LocalErrorCodesTravelAsInternalWithTheirText) {
  for (error_code code : {error_code::not_found, error_code::corrupt_data, error_code::unsupported}) {
    serving::final_message f;
    f.failure = error{code, "weights missing"};
    auto frame = open(encode(f));
    auto back = decode_final(frame);
    ASSERT_TRUE(back.ok());
    ASSERT_TRUE(back->failure.has_value());
    EXPECT_EQ(back->failure->code, error_code::internal);
    EXPECT_EQ(back->failure->message, "weights missing");
  }
}

TEST(Wire, ErrorTextIsCutToTheLimitAtACharacterBoundary) {
  serving::final_message f;
  f.failure = error{error_code::internal, std::string(4095, 'a') + "é" + "tail"};   // é is 2 bytes
  auto frame = open(encode(f));
  auto back = decode_final(frame);
  ASSERT_TRUE(back.ok()) << back.err().to_string();
  EXPECT_EQ(back->failure->message, std::string(4095, 'a'));
  f.failure->message = std::string(message_text_bytes_max, 'b');   // exactly the limit: kept
  auto frame2 = open(encode(f));
  EXPECT_EQ(decode_final(frame2)->failure->message, f.failure->message);
}

TEST(Wire, CancelRoundTripsForBothTypes) {
  for (frame_type type : {frame_type::cancel, frame_type::replica_cancel}) {
    auto frame = open(encode_cancel(type, 0xABCDEFull));
    EXPECT_EQ(frame.type(), type);
    auto back = decode_cancel(frame);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back.value(), 0xABCDEFull);
  }
}

TEST(Wire, ReplicaRequestRoundTrips) {
  const clock_anchor now = clock_anchor::now();
  serving::replica_request r;
  r.request_id = 77;
  r.attempt = 2;
  r.sequence.id = 77;
  r.sequence.tokens = {1, 2, 3, 4, 5};
  r.sequence.prompt_tokens = 3;
  r.sequence.draw_base = 2;
  r.sequence.max_new_tokens = 100;
  r.sequence.sampling = {1.0f, 0, 1.0f, 0.0f, 9};
  r.sequence.priority = 1;
  r.sequence.deadline = now.steady + 30s;
  r.stop_token_ids = {2, 151643};
  r.replica = 3;
  for (int pass = 0; pass < 2; ++pass) {
    auto frame = open(encode(r, now));
    auto back = decode_replica_request(frame, now);
    ASSERT_TRUE(back.ok()) << back.err().to_string();
    EXPECT_EQ(back->request_id, r.request_id);
    EXPECT_EQ(back->attempt, r.attempt);
    EXPECT_EQ(back->sequence.id, r.sequence.id);
    EXPECT_EQ(back->sequence.tokens, r.sequence.tokens);
    EXPECT_EQ(back->sequence.prompt_tokens, r.sequence.prompt_tokens);
    EXPECT_EQ(back->sequence.draw_base, r.sequence.draw_base);
    EXPECT_EQ(back->sequence.max_new_tokens, r.sequence.max_new_tokens);
    expect_same(back->sequence.sampling, r.sequence.sampling);
    EXPECT_EQ(back->sequence.priority, r.sequence.priority);
    expect_same_deadline(back->sequence.deadline, r.sequence.deadline);
    EXPECT_EQ(back->stop_token_ids, r.stop_token_ids);
    EXPECT_EQ(back->replica, r.replica);
    // Second pass: the minimal request (no deadline, no stop tokens).
    r = serving::replica_request{};
  }
}

TEST(Wire, ReplicaChunksRoundTrip) {
  serving::replica_chunks chunks;
  chunks.chunks = {{1, 0, 3, {10, 11}}, {2, 5, 3, {}}, {3, 1, -1, {0}}};
  for (int pass = 0; pass < 2; ++pass) {
    auto frame = open(encode(chunks));
    auto back = decode_replica_chunks(frame);
    ASSERT_TRUE(back.ok()) << back.err().to_string();
    ASSERT_EQ(back->chunks.size(), chunks.chunks.size());
    for (std::size_t i = 0; i < chunks.chunks.size(); ++i) {
      EXPECT_EQ(back->chunks[i].request_id, chunks.chunks[i].request_id) << i;
      EXPECT_EQ(back->chunks[i].attempt, chunks.chunks[i].attempt) << i;
      EXPECT_EQ(back->chunks[i].replica, chunks.chunks[i].replica) << i;
      EXPECT_EQ(back->chunks[i].tokens, chunks.chunks[i].tokens) << i;
    }
    chunks.chunks.clear();
  }
}

TEST(Wire, ReplicaFinalRoundTrips) {
  serving::replica_final finished{8, 1, 2, std::nullopt, serving::finish_reason::stop};
  serving::replica_final failed{9, 0, 4, error{error_code::unavailable, "shard died"},
                                serving::finish_reason::length};
  for (const auto& f : {finished, failed, serving::replica_final{}}) {
    auto frame = open(encode(f));
    auto back = decode_replica_final(frame);
    ASSERT_TRUE(back.ok()) << back.err().to_string();
    EXPECT_EQ(back->request_id, f.request_id);
    EXPECT_EQ(back->attempt, f.attempt);
    EXPECT_EQ(back->replica, f.replica);
    expect_same_failure(back->failure, f.failure);
    EXPECT_EQ(back->reason, f.reason);
  }
}

TEST(Wire, ReplicaUpDownAndStatusRoundTrip) {
  for (const replica_up_wire& up : {replica_up_wire{3, "ucx://node-2/batcher-3"}, replica_up_wire{}}) {
    auto frame = open(encode(up));
    auto back = decode_replica_up(frame);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back->replica, up.replica);
    EXPECT_EQ(back->batcher, up.batcher);
  }
  for (const replica_down_wire& down : {replica_down_wire{2, true, "restart budget spent"}, replica_down_wire{}}) {
    auto frame = open(encode(down));
    auto back = decode_replica_down(frame);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back->replica, down.replica);
    EXPECT_EQ(back->permanent, down.permanent);
    EXPECT_EQ(back->reason, down.reason);
  }
  replica_status_wire s{1, 1000, true, 5, 6, 7, 8, 0, 9000, 123456789, 3};
  auto frame = open(encode(s));
  auto back = decode_replica_status(frame);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->replica, s.replica);
  EXPECT_EQ(back->steps, s.steps);
  EXPECT_EQ(back->has_work, s.has_work);
  EXPECT_EQ(back->running, s.running);
  EXPECT_EQ(back->waiting, s.waiting);
  EXPECT_EQ(back->free_blocks, s.free_blocks);
  EXPECT_EQ(back->total_blocks, s.total_blocks);
  EXPECT_EQ(back->leaked_blocks, s.leaked_blocks);
  EXPECT_EQ(back->prefix_hit_tokens, s.prefix_hit_tokens);
  EXPECT_EQ(back->computed_tokens, s.computed_tokens);
  EXPECT_EQ(back->preemptions, s.preemptions);
}

TEST(Wire, ConnectionMessagesRoundTrip) {
  for (node_role role : {node_role::head, node_role::worker, node_role::client}) {
    hello_wire h{1, role, role == node_role::client ? -1 : 4, 0x1234567890ull, make_nonce().value(), 750};
    auto frame = open(encode(h));
    auto back = decode_hello(frame);
    ASSERT_TRUE(back.ok()) << back.err().to_string();
    EXPECT_EQ(back->protocol_version, h.protocol_version);
    EXPECT_EQ(back->role, h.role);
    EXPECT_EQ(back->node_id, h.node_id);
    EXPECT_EQ(back->incarnation, h.incarnation);
    EXPECT_EQ(back->nonce, h.nonce);
    EXPECT_EQ(back->heartbeat_interval_ms, 750u);
  }
  // A heartbeat interval past the limit is refused, naming the field.
  hello_wire slow{};
  slow.heartbeat_interval_ms = heartbeat_interval_ms_max + 1;
  auto slow_frame = open(encode(slow));
  auto refused = decode_hello(slow_frame);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.err().code, error_code::invalid_argument);
  EXPECT_NE(refused.err().message.find("heartbeatIntervalMs"), std::string::npos) << refused.err().message;

  mac proof{};
  proof[0] = std::byte{1};
  proof[31] = std::byte{0xFF};
  auto proof_frame = open(encode_auth_proof(proof));
  auto proof_back = decode_auth_proof(proof_frame);
  ASSERT_TRUE(proof_back.ok());
  EXPECT_EQ(proof_back.value(), proof);

  auto hb_frame = open(encode(heartbeat_wire{11, 12}));
  auto hb = decode_heartbeat(hb_frame);
  ASSERT_TRUE(hb.ok());
  EXPECT_EQ(hb->incarnation, 11u);
  EXPECT_EQ(hb->sequence, 12u);

  for (control_op op : {control_op::drain, control_op::shutdown}) {
    auto frame = open(encode_control(op));
    auto back = decode_control(frame);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back.value(), op);
  }

  for (const std::string reason : {"shutting down", ""}) {
    auto frame = open(encode_goodbye(reason));
    auto back = decode_goodbye(frame);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back.value(), reason);
  }
  auto long_bye = open(encode_goodbye(std::string(5000, 'z')));
  EXPECT_EQ(decode_goodbye(long_bye)->size(), message_text_bytes_max);
}

TEST(Wire, DataEndpointRoundTripsAndRefusesOversizedFields) {
  data_endpoint_wire d{std::vector<std::byte>(300, std::byte{0xab}), "node7/3f2a", {4321, 987654321012ull, 4026531836ull, 4026531834ull}};
  auto frame = open(encode(d));
  EXPECT_EQ(frame.type(), frame_type::data_endpoint);
  auto back = decode_data_endpoint(frame);
  ASSERT_TRUE(back.ok()) << back.err().to_string();
  EXPECT_EQ(back->worker_address, d.worker_address);
  EXPECT_EQ(back->host_key, d.host_key);
  EXPECT_EQ(back->process.pid, 4321u);
  EXPECT_EQ(back->process.start_ticks, 987654321012ull);
  EXPECT_EQ(back->process.pid_namespace, 4026531836ull);
  EXPECT_EQ(back->process.time_namespace, 4026531834ull);

  auto none = open(encode(data_endpoint_wire{}));   // no address: tensors stay on the connection
  ASSERT_TRUE(decode_data_endpoint(none).ok());
  EXPECT_TRUE(decode_data_endpoint(none)->worker_address.empty());
  EXPECT_EQ(decode_data_endpoint(none)->process.pid, 0u);   // not known: never taken as ended

  auto big_address = open(encode(data_endpoint_wire{std::vector<std::byte>(worker_address_bytes_max + 1), "h"}));
  EXPECT_EQ(decode_data_endpoint(big_address).err().code, error_code::invalid_argument);
  auto big_host = open(encode(data_endpoint_wire{{}, std::string(host_key_bytes_max + 1, 'h')}));
  EXPECT_EQ(decode_data_endpoint(big_host).err().code, error_code::invalid_argument);
  auto other = open(encode(heartbeat_wire{1, 2}));
  EXPECT_EQ(decode_data_endpoint(other).err().code, error_code::invalid_argument);
}

TEST(Wire, TensorHeaderRoundTripsAndRefusesBadShapes) {
  auto frame = open(encode(tensor_header_wire{42, 4096, 3, {16, 64}}));
  EXPECT_EQ(frame.type(), frame_type::tensor);
  auto back = decode_tensor_header(frame);
  ASSERT_TRUE(back.ok()) << back.err().to_string();
  EXPECT_EQ(back->tag, 42u);
  EXPECT_EQ(back->bytes, 4096u);
  EXPECT_EQ(back->dtype, 3);
  EXPECT_EQ(back->shape, (std::vector<std::int64_t>{16, 64}));
  auto too_many = open(encode(tensor_header_wire{1, 0, 0, std::vector<std::int64_t>(tensor_dims_max + 1, 1)}));
  EXPECT_EQ(decode_tensor_header(too_many).err().code, error_code::invalid_argument);
  auto negative = open(encode(tensor_header_wire{1, 0, 0, {4, -1}}));
  EXPECT_EQ(decode_tensor_header(negative).err().code, error_code::invalid_argument);
}

TEST(Wire, AFrameOfAnotherTypeIsInvalidArgument) {
  auto frame = open(encode(heartbeat_wire{1, 2}));
  const clock_anchor now = clock_anchor::now();
  auto r = decode_generate_request(frame, now);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.err().code, error_code::invalid_argument);
  EXPECT_EQ(r.err().message, "expected a generate frame, got a heartbeat frame");
  EXPECT_EQ(decode_final(frame).err().code, error_code::invalid_argument);
  EXPECT_EQ(decode_cancel(frame).err().code, error_code::invalid_argument);
  EXPECT_EQ(decode_hello(frame).err().code, error_code::invalid_argument);
  auto cancel = open(encode_cancel(frame_type::cancel, 1));
  EXPECT_EQ(decode_heartbeat(cancel).err().code, error_code::invalid_argument);
  EXPECT_EQ(decode_replica_request(cancel, now).err().code, error_code::invalid_argument);
}

}  // namespace
}  // namespace dsrt::transport
