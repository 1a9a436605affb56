#pragma once
// Shared by the random-input test (wire_hostile_test.cpp) and the fuzz targets
// (tests/fuzz/): one valid frame of every type, and a driver that runs every decode_*()
// of transport/wire.h over a decoded frame, whatever its type.
#include <string>
#include <vector>

#include "transport/wire.h"

namespace dsrt::transport::testing {

// One or two valid frames of every frame_type (the fuzzers' seeds, the mutation tests'
// starting points).
inline std::vector<frame_bytes> sample_frames(const clock_anchor& now) {
  serving::generate_request generate{1, {1, 2, 3}, {0.5f, 4, 0.9f, 0.1f, 7}, 16, {"stop"}, 1, "tenant",
                                     now.steady + milliseconds(1000)};
  serving::replica_request replica;
  replica.request_id = replica.sequence.id = 2;
  replica.sequence.tokens = {1, 2, 3};
  replica.sequence.prompt_tokens = 2;
  replica.sequence.deadline = generate.deadline;
  replica.stop_token_ids = {0};
  replica.replica = 1;
  serving::final_message completed;
  completed.tokens = {4, 5};
  completed.text = "ok";
  serving::final_message failed;
  failed.failure = error{error_code::overloaded, "busy"};
  failed.retry_after_ms = 100;
  serving::replica_chunks chunks;
  chunks.chunks = {{1, 0, 0, {1, 2}}, {2, 0, 1, {3}}};
  return {encode(generate, now),
          encode(serving::token_chunk{1, 0, {4, 5}, "hi"}),
          encode(completed),
          encode(failed),
          encode_cancel(frame_type::cancel, 3),
          encode_cancel(frame_type::replica_cancel, 3),
          encode(replica, now),
          encode(chunks),
          encode(serving::replica_final{1, 0, 0, std::nullopt, serving::finish_reason::stop}),
          encode(serving::replica_final{1, 0, 0, error{error_code::internal, "x"}, {}}),
          encode(replica_up_wire{1, "addr"}),
          encode(replica_down_wire{1, false, "crash"}),
          encode(replica_status_wire{1, 2, true, 3, 4, 5, 6, 0, 7, 8, 9}),
          encode(hello_wire{}),
          encode_auth_proof(mac{}),
          encode(heartbeat_wire{1, 2}),
          encode_control(control_op::drain),
          encode_control(control_op::shutdown),
          encode_goodbye("bye"),
          encode(data_endpoint_wire{{std::byte{1}, std::byte{2}}, "host/boot"}),
          encode_data_frames(),
          encode(tensor_header_wire{7, 24, 1, {2, 3}})};
}

// Runs every decoder; returns the first outcome that is neither a value nor a typed error
// (invalid_argument or corrupt_data), or an empty string when all were allowed.
inline std::string decode_every(decoded_frame& frame, const clock_anchor& now) {
  std::string bad;
  auto check = [&](const char* name, const auto& r) {
    if (r.ok() || !bad.empty()) return;
    const error_code c = r.err().code;
    if (c != error_code::invalid_argument && c != error_code::corrupt_data)
      bad = std::string(name) + ": " + r.err().to_string();
  };
  check("generate_request", decode_generate_request(frame, now));
  check("token_chunk", decode_token_chunk(frame));
  check("final", decode_final(frame));
  check("cancel", decode_cancel(frame));
  check("replica_request", decode_replica_request(frame, now));
  check("replica_chunks", decode_replica_chunks(frame));
  check("replica_final", decode_replica_final(frame));
  check("replica_up", decode_replica_up(frame));
  check("replica_down", decode_replica_down(frame));
  check("replica_status", decode_replica_status(frame));
  check("hello", decode_hello(frame));
  check("auth_proof", decode_auth_proof(frame));
  check("heartbeat", decode_heartbeat(frame));
  check("control", decode_control(frame));
  check("goodbye", decode_goodbye(frame));
  check("data_endpoint", decode_data_endpoint(frame));
  check("tensor_header", decode_tensor_header(frame));
  return bad;
}

}  // namespace dsrt::transport::testing
