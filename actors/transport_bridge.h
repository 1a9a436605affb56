#pragma once
// Where the transport meets the actors: transport_bridge receives ucx_transport's callbacks
// on its progress thread and turns each into a message for one actor (the node's link
// actor: head_link, worker_link or remote_runtime's client link), so the actors see a peer's
// coming and going and its frames as ordinary messages in arrival order.
//
// The link actor needs the transport to send, and the transport needs the bridge: create
// the bridge, start the transport with it, spawn the link actor with the transport, then
// set_target() — with a null actor if starting failed. Callbacks that come before
// set_target() wait for it; with a null target they are dropped.
//
// The link runs on the transport's progress thread while it keeps up (progress_unit.h):
// an arriving frame is handled without a thread hand-off.
//
// Thread safety: the callbacks run on the transport's progress thread, one at a time;
// messages are released on the link's thread (the per-peer counts are atomic).
#include <caf/all.hpp>

#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <unordered_map>

#include <fmt/format.h>

#include "actors/progress_unit.h"
#include "transport/ucx_transport.h"

namespace dsrt::actors {

// A peer proved the secret (transport_handler::on_peer_up).
struct peer_up_msg {
  transport::peer_id peer = 0;
  transport::hello_wire hello;
};
// A frame from an up peer; shared because CAF messages are copyable.
struct frame_msg {
  transport::peer_id peer = 0;
  std::shared_ptr<transport::decoded_frame> frame;
};
// A bulk tensor from an up peer (shared: CAF messages are copyable).
struct tensor_msg {
  transport::peer_id peer = 0;
  transport::tensor_header_wire header;
  std::shared_ptr<transport::tensor_buffer> data;
};
// A connection ended (or a connect() failed).
struct peer_down_msg {
  transport::peer_id peer = 0;
  error why;
};

// What one peer may have handed to the link actor and not yet handled: the transport's
// inbound_bytes_max stops counting when a frame leaves it, and the link's mailbox has no
// bound of its own. A peer past either limit is closed (OVERLOADED) and what it sends
// after is dropped (a stream with a hole is worse than none).
struct bridge_limits {
  std::size_t peer_messages_max = 1u << 16;
  std::uint64_t peer_bytes_max = 1ull << 30;
  // Messages the link handles per turn on the transport's progress thread before it moves to
  // a scheduler thread (progress_unit.h); 0: always on the scheduler.
  std::size_t link_messages_per_turn = 64;
};

class transport_bridge : public transport::transport_handler {
 public:
  using close_function = std::function<void(transport::peer_id, std::string)>;
  transport_bridge() : target_future_(target_promise_.get_future().share()) {}
  // `close` cuts off a peer past `limits` (ucx_transport::close); both are set with the
  // target, before any callback reads them.
  void set_target(caf::actor target, close_function close = {}, bridge_limits limits = {}) {
    close_ = std::move(close);
    limits_ = limits;
    unit_.set_link(target, limits.link_messages_per_turn);
    target_promise_.set_value(std::move(target));
  }

  void on_peer_up(transport::peer_id peer, const transport::hello_wire& hello) override {
    queued_[peer] = std::make_shared<peer_queue>();
    if (const auto& t = target()) deliver(t, peer_up_msg{peer, hello});
  }
  void on_frame(transport::peer_id peer, transport::decoded_frame frame) override {
    const auto& t = target();
    if (!t) return;
    const auto bytes = frame.payload_bytes();
    auto q = admit(peer, bytes);
    if (!q) return;
    deliver(t, frame_msg{peer, counted(std::move(frame), std::move(q), bytes)});
  }
  void on_tensor(transport::peer_id peer, transport::tensor_header_wire header, transport::tensor_buffer data) override {
    const auto& t = target();
    if (!t) return;
    const auto bytes = data.size();
    auto q = admit(peer, bytes);
    if (!q) return;
    deliver(t, tensor_msg{peer, std::move(header), counted(std::move(data), std::move(q), bytes)});
  }
  void on_peer_down(transport::peer_id peer, const error& why) override {
    queued_.erase(peer);
    if (const auto& t = target()) deliver(t, peer_down_msg{peer, why});
  }
  void after_callbacks() override { unit_.run_pending(); }

 private:
  // One peer's messages on their way through the link's mailbox (counted down as the link
  // drops each message, on the link's thread).
  struct peer_queue {
    std::atomic<std::size_t> messages{0};
    std::atomic<std::uint64_t> bytes{0};
    bool cut = false;   // closed for its limits: nothing more is handed on (progress thread)
    void handed_off(std::uint64_t n) {
      messages.fetch_sub(1, std::memory_order_relaxed);
      bytes.fetch_sub(n, std::memory_order_relaxed);
    }
  };
  // The peer's queue with this message counted, or null: the peer is not up, or is past
  // its limits (closed now, once).
  std::shared_ptr<peer_queue> admit(transport::peer_id peer, std::uint64_t bytes) {
    const auto it = queued_.find(peer);
    if (it == queued_.end() || it->second->cut) return nullptr;
    const std::shared_ptr<peer_queue>& q = it->second;
    if (q->messages.load(std::memory_order_relaxed) >= limits_.peer_messages_max ||
        q->bytes.load(std::memory_order_relaxed) + bytes > limits_.peer_bytes_max) {
      q->cut = true;
      if (close_)
        close_(peer, fmt::format("OVERLOADED: {} messages ({} bytes) wait for this node's link "
                                 "(peer_messages_max {}, peer_bytes_max {})",
                                 q->messages.load(), q->bytes.load(), limits_.peer_messages_max,
                                 limits_.peer_bytes_max));
      return nullptr;
    }
    q->messages.fetch_add(1, std::memory_order_relaxed);
    q->bytes.fetch_add(bytes, std::memory_order_relaxed);
    return q;
  }
  // `value` shared, counted down from `q` when the last holder lets go: one allocation.
  template <class T>
  static std::shared_ptr<T> counted(T value, std::shared_ptr<peer_queue> q, std::uint64_t bytes) {
    struct holder {
      holder(T&& v, std::shared_ptr<peer_queue> queue, std::uint64_t n) : value(std::move(v)), q(std::move(queue)), bytes(n) {}
      holder(const holder&) = delete;
      holder& operator=(const holder&) = delete;
      ~holder() { q->handed_off(bytes); }
      T value;
      std::shared_ptr<peer_queue> q;
      std::uint64_t bytes;
    };
    auto h = std::make_shared<holder>(std::move(value), std::move(q), bytes);
    return std::shared_ptr<T>(h, &h->value);
  }
  // The target once set_target() gave it (waited for once; the future's get() is not free).
  const caf::actor& target() {
    if (!target_) target_ = &target_future_.get();
    return *target_;
  }
  // As anon_send, with the progress thread's unit as the context: an idle link runs there.
  template <class Message>
  void deliver(const caf::actor& t, Message&& m) {
    t->enqueue(caf::make_mailbox_element(nullptr, caf::make_message_id(), {}, std::forward<Message>(m)),
               unit_.context());
  }

  bridge_limits limits_;
  close_function close_;
  std::unordered_map<transport::peer_id, std::shared_ptr<peer_queue>> queued_;   // progress thread only
  std::promise<caf::actor> target_promise_;
  std::shared_future<caf::actor> target_future_;
  const caf::actor* target_ = nullptr;   // the future's value, once read (progress thread only)
  progress_unit unit_;   // set with the target, before any callback reads it
};

// set_target's close function for a bridge whose peers live in `transport`.
inline transport_bridge::close_function closer(transport::ucx_transport& transport) {
  return [t = &transport](transport::peer_id peer, std::string why) { t->close(peer, std::move(why)); };
}

}  // namespace dsrt::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::peer_up_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::frame_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::peer_down_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::tensor_msg)
