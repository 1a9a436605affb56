#pragma once
// What dsbench transport starts around its measurement: waiting for its peer process to
// listen, ucx_perftest beside it, and idle peers that only load the peer's connection count.
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "apps/common/node_process.h"
#include "runtime/error.h"
#include "transport/ucx_transport.h"

namespace dsrt::apps {

// The peer prints "ready" once it listens (its stdout is `log`). Errors (unavailable): it
// ended first, or `wait` passed.
status wait_until_ready(node_process& peer, const std::filesystem::path& log, std::chrono::seconds wait);

// Runs one ucx_perftest test (a server child on `port`, logging into `dir`, and the client)
// and returns its "Final:" line's fields: iterations, latency p50 / average / overall (us),
// bandwidth average / overall (MB/s), ...
result<std::vector<double>> perftest(const std::vector<std::string>& args, int port, const std::filesystem::path& dir);

// --idle-peers: a transport of their own in this process, connections to the peer on
// 127.0.0.1 that prove the secret and then only exchange heartbeats, so the peer's progress
// loop has that many more connections while the round trips run.
class idle_peers final : public transport::transport_handler {
 public:
  void on_peer_up(transport::peer_id, const transport::hello_wire&) override {}
  void on_frame(transport::peer_id, transport::decoded_frame) override {}
  void on_tensor(transport::peer_id, transport::tensor_header_wire, transport::tensor_buffer) override {}
  void on_peer_down(transport::peer_id, const error&) override {}

  // Returns once all `count` are up; unavailable when a batch is not up within `wait`.
  status connect(const transport::cluster_secret& secret, int port, int count, std::chrono::seconds wait);
  // Closes them while the peer still answers (a dead peer's goodbyes wait out close_flush_wait).
  void stop() { transport_.reset(); }

 private:
  std::unique_ptr<transport::ucx_transport> transport_;
};

}  // namespace dsrt::apps
