// ucx_transport against a peer that speaks raw UCX and no dsrt: it connects to the listener
// and, without a Hello, sends a large message. Nothing of it may be fetched (no buffer of
// the announced size is allocated), the peer is refused, and a real peer is still served.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <ucp/api/ucp.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "transport/ucx_transport.h"
#include "transport/wire.h"

namespace dsrt::transport {
namespace {

using namespace std::chrono_literals;

// The process's peak resident memory (VmHWM), in bytes.
std::size_t peak_resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

class counting_handler : public transport_handler {
 public:
  void on_peer_up(peer_id, const hello_wire&) override { bump(ups); }
  void on_frame(peer_id, decoded_frame) override { bump(frames); }
  void on_tensor(peer_id, tensor_header_wire, tensor_buffer) override { bump(tensors); }
  void on_peer_down(peer_id, const error&) override { bump(downs); }
  bool wait(const int& counter, int at_least) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 20s, [&] { return counter >= at_least; });
  }
  std::mutex mu;
  std::condition_variable cv;
  int ups = 0, frames = 0, tensors = 0, downs = 0;

 private:
  void bump(int& counter) {
    std::lock_guard lock(mu);
    ++counter;
    cv.notify_all();
  }
};

// A UCX client with no dsrt protocol: one worker, one endpoint to 127.0.0.1:port.
class raw_ucx_client {
 public:
  explicit raw_ucx_client(std::uint16_t port) {
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_AM;
    ucp_config_t* config = nullptr;
    if (ucp_config_read(nullptr, nullptr, &config) != UCS_OK) return;
    const auto inited = ucp_init(&params, config, &context_);
    ucp_config_release(config);
    if (inited != UCS_OK) return;
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    if (ucp_worker_create(context_, &wp, &worker_) != UCS_OK) return;
    for (unsigned id : {1u, 2u, 3u}) {   // what the head sends (its Hello) is read and ignored
      ucp_am_handler_param_t hp{};
      hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB;
      hp.id = id;
      hp.cb = [](void*, const void*, size_t, void*, size_t, const ucp_am_recv_param_t*) { return UCS_OK; };
      if (ucp_worker_set_am_recv_handler(worker_, &hp) != UCS_OK) return;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR | UCP_EP_PARAM_FIELD_ERR_HANDLER |
                    UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
    ep.sockaddr.addr = reinterpret_cast<const sockaddr*>(&addr);
    ep.sockaddr.addrlen = sizeof addr;
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = [](void* arg, ucp_ep_h, ucs_status_t) { static_cast<raw_ucx_client*>(arg)->lost_ = true; };
    ep.err_handler.arg = this;
    if (ucp_ep_create(worker_, &ep, &ep_) != UCS_OK) ep_ = nullptr;
  }
  ~raw_ucx_client() {
    if (ep_) {
      ucp_request_param_t rp{};
      rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      rp.flags = UCP_EP_CLOSE_FLAG_FORCE;
      void* req = ucp_ep_close_nbx(ep_, &rp);
      for (int i = 0; i < 100000 && req && !UCS_PTR_IS_ERR(req) && ucp_request_check_status(req) == UCS_INPROGRESS; ++i)
        ucp_worker_progress(worker_);
      if (req && !UCS_PTR_IS_ERR(req)) ucp_request_free(req);
    }
    if (worker_) ucp_worker_destroy(worker_);
    if (context_) ucp_cleanup(context_);
  }
  bool ok() const { return ep_ != nullptr; }
  bool lost() const { return lost_; }

  // Sends active message `id` by rendezvous (the receiver decides whether to fetch it),
  // with a reply endpoint as dsrt peers send, and progresses until it completes, the
  // endpoint fails, or 20 s pass.
  void send_rendezvous(unsigned id, const std::vector<std::byte>& header, const std::vector<std::byte>& data) {
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    rp.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_RNDV;
    void* req = ucp_am_send_nbx(ep_, id, header.empty() ? nullptr : header.data(), header.size(), data.data(),
                                data.size(), &rp);
    if (req == nullptr || UCS_PTR_IS_ERR(req)) return;
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    while (ucp_request_check_status(req) == UCS_INPROGRESS && !lost_ && std::chrono::steady_clock::now() < give_up)
      ucp_worker_progress(worker_);
    if (ucp_request_check_status(req) == UCS_INPROGRESS) ucp_request_cancel(worker_, req);
    ucp_request_free(req);
  }
  // Progresses for `d` (the connection gets established, the peer's messages read).
  void progress(std::chrono::milliseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until) {
      ucp_worker_progress(worker_);
      std::this_thread::sleep_for(1ms);
    }
  }
  // Progresses until the peer closes the endpoint or `limit` passes.
  void wait_lost(std::chrono::seconds limit) {
    const auto give_up = std::chrono::steady_clock::now() + limit;
    while (!lost_ && std::chrono::steady_clock::now() < give_up) {
      ucp_worker_progress(worker_);
      std::this_thread::sleep_for(1ms);
    }
  }

 private:
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  ucp_ep_h ep_ = nullptr;
  bool lost_ = false;
};

cluster_secret secret() {
  cluster_secret s;
  s.fill(std::byte{0x5a});
  return s;
}

std::unique_ptr<ucx_transport> start(counting_handler& h, node_role role, std::int32_t node, bool listen) {
  transport_config c;
  c.listen = listen;
  auto t = ucx_transport::start(c, secret(), {role, node, 77u + std::uint64_t(node)}, h);
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.err().to_string());
  return t.ok() ? std::move(*t) : nullptr;
}

// The two ways a large message can come (ucx_transport_impl.h: frames are active message 1,
// tensors 2 with their header frame as the message header).
void expect_refused_unfetched(unsigned am_id, std::size_t bytes) {
  counting_handler head_h;
  auto head = start(head_h, node_role::head, 0, true);
  ASSERT_TRUE(head);
  std::vector<std::byte> data(bytes, std::byte{0x11});   // touched before the baseline
  const std::vector<std::byte> header = am_id == 2 ? std::vector<std::byte>(64, std::byte{1}) : std::vector<std::byte>{};
  const std::size_t before = peak_resident_bytes();
  {
    raw_ucx_client intruder(head->port());
    ASSERT_TRUE(intruder.ok());
    intruder.send_rendezvous(am_id, header, data);
    intruder.wait_lost(20s);
    EXPECT_TRUE(intruder.lost()) << "the head kept a peer that sent " << bytes << " bytes before any Hello";
  }
  const std::size_t grown = peak_resident_bytes() - before;
  EXPECT_LT(grown, bytes / 4) << "the head took memory for a message of a peer that proved nothing";
  for (int i = 0; i < 20000 && head->stats().peers_rejected == 0; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(head->stats().peers_rejected, 1u);
  EXPECT_EQ(head->stats().bytes_received, 0u);
  // A real peer is served as before.
  counting_handler worker_h;
  auto worker = start(worker_h, node_role::worker, 1, false);
  ASSERT_TRUE(worker);
  const auto to_head = worker->connect("127.0.0.1", head->port());
  ASSERT_TRUE(worker_h.wait(worker_h.ups, 1));
  ASSERT_TRUE(worker->send(to_head, encode_cancel(frame_type::cancel, 7)).ok());
  ASSERT_TRUE(head_h.wait(head_h.frames, 1));
  std::lock_guard lock(head_h.mu);
  EXPECT_EQ(head_h.ups, 1) << "only the real peer came up";
  EXPECT_EQ(head_h.tensors, 0);
}

TEST(UcxHostilePeer, ALargeFrameBeforeAnyHelloIsRefusedUnfetched) {
  expect_refused_unfetched(1, std::size_t(60) << 20);
}

TEST(UcxHostilePeer, ATensorBeforeAnyHelloIsRefusedUnfetched) {
  expect_refused_unfetched(2, std::size_t(1) << 30);
}

// Connections that never say Hello, as many as the listener takes: a real worker still gets
// in, since unproven connections are at most handshakes_max and a new one closes the oldest.
TEST(UcxHostilePeer, SilentConnectionsCannotHoldTheListenerAgainstARealPeer) {
  counting_handler head_h;
  transport_config config;
  config.connections_max = 8;
  config.handshakes_max = 4;
  auto started = ucx_transport::start(config, secret(), {node_role::head, 0, 1}, head_h);
  ASSERT_TRUE(started.ok()) << started.err().to_string();
  auto head = std::move(*started);
  std::vector<std::unique_ptr<raw_ucx_client>> silent;
  for (std::size_t i = 0; i < config.connections_max; ++i) {
    silent.push_back(std::make_unique<raw_ucx_client>(head->port()));
    ASSERT_TRUE(silent.back()->ok());
    silent.back()->progress(30ms);
  }
  counting_handler worker_h;
  auto worker = start(worker_h, node_role::worker, 1, false);
  ASSERT_TRUE(worker);
  worker->connect("127.0.0.1", head->port());
  EXPECT_TRUE(worker_h.wait(worker_h.ups, 1)) << "silent connections kept a real worker out";
  EXPECT_TRUE(head_h.wait(head_h.ups, 1)) << "the head never saw the worker up";
  EXPECT_GE(head->stats().peers_rejected, config.connections_max - config.handshakes_max + 1)
      << "the oldest silent connections were closed for newer ones";
  std::lock_guard lock(head_h.mu);
  EXPECT_EQ(head_h.ups, 1) << "only the real peer came up";
}

}  // namespace
}  // namespace dsrt::transport
