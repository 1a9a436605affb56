#pragma once
// For the transport tests: a transport_handler that records every callback of a
// ucx_transport (the ids of cancel and generate frames, a count of other frames) and waits
// on conditions over what it recorded, with a bound; secrets; a bounded wait.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "transport/auth.h"
#include "transport/ucx_transport.h"
#include "transport/wire.h"

namespace dsrt::transport::test {

// A secret of 32 bytes `b`: transports with the same `b` authenticate each other.
inline cluster_secret secret_of(std::uint8_t b) {
  cluster_secret s;
  s.fill(std::byte{b});
  return s;
}

// Polls `done` for up to 20 s.
template <class F>
bool wait_until_true(F done) {
  for (int i = 0; i < 20000 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return done();
}

// Records every callback; waits on conditions with a bound.
class recorder : public transport_handler {
 public:
  void on_peer_up(peer_id peer, const hello_wire& hello) override {
    std::lock_guard lock(mu_);
    up_[peer] = hello;
    cv_.notify_all();
  }
  void on_frame(peer_id peer, decoded_frame frame) override {
    std::lock_guard lock(mu_);
    if (frame.type() == frame_type::cancel) {
      auto id = decode_cancel(frame);
      ids_[peer].push_back(id ? std::int64_t(*id) : -1);
    } else if (frame.type() == frame_type::generate) {
      auto id = decode_generate_request_id(frame);
      generates_[peer].push_back(id ? std::int64_t(*id) : -1);
    } else {
      other_[peer] += 1;
    }
    cv_.notify_all();
  }
  void on_tensor(peer_id peer, tensor_header_wire header, tensor_buffer data) override {
    std::lock_guard lock(mu_);
    tensors_[peer].push_back({std::move(header), std::vector<std::byte>(data.bytes().begin(), data.bytes().end())});
    cv_.notify_all();
  }
  void on_peer_down(peer_id peer, const error& why) override {
    std::lock_guard lock(mu_);
    down_[peer] = why;
    cv_.notify_all();
  }
  // Connections reported down so far (under the lock: a transport may still be reporting).
  std::size_t downs() {
    std::lock_guard lock(mu_);
    return down_.size();
  }
  template <class F>
  bool wait(F done, int seconds = 20) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(seconds), [&] { return done(*this); });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<peer_id, hello_wire> up_;
  std::map<peer_id, std::vector<std::int64_t>> ids_;        // cancel frames' ids
  std::map<peer_id, std::vector<std::int64_t>> generates_;  // generate frames' request ids
  std::map<peer_id, int> other_;
  std::map<peer_id, error> down_;
  std::map<peer_id, std::vector<std::pair<tensor_header_wire, std::vector<std::byte>>>> tensors_;
};

}  // namespace dsrt::transport::test
