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
#include <caf/all.hpp>

#include <future>
#include <memory>

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

class transport_bridge : public transport::transport_handler {
 public:
  transport_bridge() : target_future_(target_.get_future().share()) {}
  void set_target(caf::actor target) { target_.set_value(std::move(target)); }

  void on_peer_up(transport::peer_id peer, const transport::hello_wire& hello) override {
    if (const auto& t = target()) caf::anon_send(t, peer_up_msg{peer, hello});
  }
  void on_frame(transport::peer_id peer, transport::decoded_frame frame) override {
    if (const auto& t = target())
      caf::anon_send(t, frame_msg{peer, std::make_shared<transport::decoded_frame>(std::move(frame))});
  }
  void on_tensor(transport::peer_id peer, transport::tensor_header_wire header, transport::tensor_buffer data) override {
    if (const auto& t = target())
      caf::anon_send(t, tensor_msg{peer, std::move(header), std::make_shared<transport::tensor_buffer>(std::move(data))});
  }
  void on_peer_down(transport::peer_id peer, const error& why) override {
    if (const auto& t = target()) caf::anon_send(t, peer_down_msg{peer, why});
  }

 private:
  const caf::actor& target() { return target_future_.get(); }

  std::promise<caf::actor> target_;
  std::shared_future<caf::actor> target_future_;
};

}  // namespace dsrt::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::peer_up_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::frame_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::peer_down_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::tensor_msg)
