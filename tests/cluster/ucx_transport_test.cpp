// ucx_transport on loopback, two or three transports in one process: authentication,
// ordered delivery both ways, a large frame by rendezvous, tensors over the data endpoint and
// without one (and tensors that wait for the peer's late DataEndpoint), frames keeping their
// order across the switch to the data endpoint, an unexpected DataFrames, a wrong secret, a
// peer sending garbage (closed; the others keep being served), a closed peer reported down,
// frames sent on the progress thread keeping their order with queued ones, busy polling
// (it ends, and it still serves the connections' worker), an idle thread that sleeps, and
// the config's checks.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "tests/cluster/transport_recorder.h"
#include "transport/auth.h"
#include "transport/ucx_transport.h"
#include "transport/wire.h"

namespace dsrt::transport {
namespace {

using test::recorder;
using test::secret_of;
using test::wait_until_true;

std::unique_ptr<ucx_transport> start(recorder& r, const cluster_secret& s, node_role role, std::int32_t node,
                                     bool listen, bool data_endpoints = true,
                                     std::chrono::microseconds busy_poll = {}) {
  transport_config c;
  c.listen = listen;
  c.data_endpoints = data_endpoints;
  c.busy_poll_us = busy_poll;
  c.session.heartbeat_interval_ms = milliseconds(100);
  // Polling threads share this machine's cores with everything else: more slack.
  c.session.heartbeat_timeout_ms = milliseconds(busy_poll.count() > 0 ? 5000 : 2000);
  auto t = ucx_transport::start(c, s, {role, node, 1000u + std::uint64_t(node)}, r);
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.err().to_string());
  return t.ok() ? std::move(*t) : nullptr;
}

// A listening head (node 0) as start() makes one, with `set` applied to its config.
std::unique_ptr<ucx_transport> start_head(recorder& r, const cluster_secret& s,
                                          const std::function<void(transport_config&)>& set) {
  transport_config c;
  c.session.heartbeat_interval_ms = milliseconds(100);
  set(c);
  auto t = ucx_transport::start(c, s, {node_role::head, 0, 1000u}, r);
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.err().to_string());
  return t.ok() ? std::move(*t) : nullptr;
}

// A listening head and a worker connected to it (members in this order: the transports go
// before their recorders). up() returns once the worker sees the head up.
struct connected_pair {
  recorder head_r, worker_r;
  std::unique_ptr<ucx_transport> head, worker;
  peer_id to_head = 0;

  bool up(const cluster_secret& s, bool data_endpoints = true, std::chrono::microseconds busy_poll = {}) {
    head = start(head_r, s, node_role::head, 0, true, data_endpoints, busy_poll);
    worker = start(worker_r, s, node_role::worker, 1, false, data_endpoints, busy_poll);
    if (!head || !worker) return false;
    to_head = worker->connect("127.0.0.1", head->port());
    return worker_r.wait([&](recorder& r) { return r.up_.count(to_head) > 0; });
  }
};

TEST(UcxTransport, PeersAuthenticateAndFramesArriveInOrderBothWays) {
  recorder head_r, worker_r;
  auto head = start(head_r, secret_of(1), node_role::head, 0, true);
  auto worker = start(worker_r, secret_of(1), node_role::worker, 4, false);
  ASSERT_TRUE(head && worker);
  ASSERT_NE(head->port(), 0);
  const auto to_head = worker->connect("127.0.0.1", head->port());
  ASSERT_TRUE(worker_r.wait([&](recorder& r) { return r.up_.count(to_head) > 0; }));
  ASSERT_TRUE(head_r.wait([](recorder& r) { return r.up_.size() == 1; }));
  const peer_id to_worker = head_r.up_.begin()->first;
  EXPECT_EQ(head_r.up_[to_worker].node_id, 4);
  EXPECT_EQ(head_r.up_[to_worker].role, node_role::worker);
  EXPECT_EQ(worker_r.up_[to_head].role, node_role::head);

  constexpr int frames = 2000;
  for (int i = 0; i < frames; ++i) {
    ASSERT_TRUE(worker->send(to_head, encode_cancel(frame_type::cancel, std::uint64_t(i))).ok());
    ASSERT_TRUE(head->send(to_worker, encode_cancel(frame_type::cancel, std::uint64_t(i) * 3)).ok());
  }
  ASSERT_TRUE(head_r.wait([&](recorder& r) { return r.ids_[to_worker].size() == frames; }));
  ASSERT_TRUE(worker_r.wait([&](recorder& r) { return r.ids_[to_head].size() == frames; }));
  for (int i = 0; i < frames; ++i) {
    EXPECT_EQ(head_r.ids_[to_worker][std::size_t(i)], i);
    EXPECT_EQ(worker_r.ids_[to_head][std::size_t(i)], 3 * i);
  }
  EXPECT_EQ(head_r.downs(), 0u);
}

// Frames sent just before the transport is destroyed still go, in order and ahead of its
// goodbye: a draining head's last finals leave as it stops.
TEST(UcxTransport, FramesSentJustBeforeTheTransportGoesArriveAheadOfItsGoodbye) {
  connected_pair p;
  ASSERT_TRUE(p.up(secret_of(12)));
  constexpr int frames = 1000;
  for (int i = 0; i < frames; ++i)
    ASSERT_TRUE(p.worker->send(p.to_head, encode_cancel(frame_type::cancel, std::uint64_t(i))).ok());
  p.worker.reset();   // at once: frames still wait in its command queue
  ASSERT_TRUE(p.head_r.wait([](recorder& r) { return !r.down_.empty(); }));
  std::lock_guard lock(p.head_r.mu_);
  EXPECT_NE(p.head_r.down_.begin()->second.to_string().find("shutting down"), std::string::npos)
      << p.head_r.down_.begin()->second.to_string();
  ASSERT_EQ(p.head_r.ids_.size(), 1u);
  const auto& ids = p.head_r.ids_.begin()->second;
  ASSERT_EQ(ids.size(), std::size_t(frames));
  for (int i = 0; i < frames; ++i) EXPECT_EQ(ids[std::size_t(i)], i);
}

TEST(UcxTransport, ALargeFrameArrivesWhole) {
  connected_pair p;
  ASSERT_TRUE(p.up(secret_of(2)));
  // 8 MiB of tokens in one frame: far past UCX's eager threshold, so it goes by rendezvous.
  serving::replica_chunks big;
  std::mt19937 rng(5);
  serving::replica_chunk c;
  c.request_id = 9;
  for (int i = 0; i < (2 << 20); ++i) c.tokens.push_back(std::int32_t(rng() % 100000));
  big.chunks.push_back(c);
  ASSERT_TRUE(p.worker->send(p.to_head, encode(big)).ok());
  ASSERT_TRUE(p.worker->send(p.to_head, encode_cancel(frame_type::cancel, 1)).ok());   // after it, in order
  ASSERT_TRUE(p.head_r.wait([](recorder& r) { return !r.ids_.empty(); }));
  std::lock_guard lock(p.head_r.mu_);
  EXPECT_EQ(p.head_r.other_.begin()->second, 1);
  EXPECT_TRUE(p.head_r.down_.empty());
}

// A small tensor (eager), a 32 MiB one (rendezvous) and frames between them, sent at once
// after the connection comes up (before or after the peer's DataEndpoint: the first ones
// wait for it). Tensors arrive whole and in their order; frames in theirs.
void expect_tensors_arrive(bool receiver_offers_data_endpoint) {
  recorder head_r, worker_r;
  transport_config head_config;
  head_config.data_endpoints = receiver_offers_data_endpoint;
  auto t = ucx_transport::start(head_config, secret_of(8), {node_role::head, 0, 1}, head_r);
  ASSERT_TRUE(t.ok());
  auto head = std::move(*t);
  auto worker = start(worker_r, secret_of(8), node_role::worker, 1, false);
  ASSERT_TRUE(head && worker);
  const auto to_head = worker->connect("127.0.0.1", head->port());
  ASSERT_TRUE(worker_r.wait([&](recorder& r) { return r.up_.count(to_head) > 0; }));
  auto small = std::make_shared<std::vector<std::byte>>(100, std::byte{7});
  auto big = std::make_shared<std::vector<std::byte>>(32u << 20);
  for (std::size_t i = 0; i < big->size(); ++i) (*big)[i] = std::byte(i * 31 % 251);
  ASSERT_TRUE(worker->send_tensor(to_head, {1, 0, 2, {10, 10}}, small, *small).ok());
  ASSERT_TRUE(worker->send(to_head, encode_cancel(frame_type::cancel, 1)).ok());
  ASSERT_TRUE(worker->send_tensor(to_head, {2, 0, 1, {8, 1 << 22}}, big, *big).ok());
  ASSERT_TRUE(worker->send(to_head, encode_cancel(frame_type::cancel, 2)).ok());
  ASSERT_TRUE(head_r.wait([](recorder& r) {
    std::size_t ids = 0, tensors = 0;
    for (auto& [p, v] : r.ids_) ids += v.size();
    for (auto& [p, v] : r.tensors_) tensors += v.size();
    return ids == 2 && tensors == 2;
  }));
  std::lock_guard lock(head_r.mu_);
  ASSERT_EQ(head_r.tensors_.size(), 1u);
  const auto& got = head_r.tensors_.begin()->second;
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].first.tag, 1u);
  EXPECT_EQ(got[0].first.shape, (std::vector<std::int64_t>{10, 10}));
  EXPECT_EQ(got[0].second, *small);
  EXPECT_EQ(got[1].first.tag, 2u);
  EXPECT_EQ(got[1].first.bytes, big->size());
  EXPECT_TRUE(got[1].second == *big);
  EXPECT_EQ(head_r.ids_.begin()->second, (std::vector<std::int64_t>{1, 2}));
  EXPECT_TRUE(head_r.down_.empty());
  // The head offered its worker address (or not); the worker, on the same host, used it.
  EXPECT_EQ(worker->stats().data_endpoints, receiver_offers_data_endpoint ? 1u : 0u);
  EXPECT_EQ(worker->stats().tensors_direct, receiver_offers_data_endpoint ? 2u : 0u);
  EXPECT_EQ(head->stats().frames_dropped, 0u);
}

TEST(UcxTransport, TensorsArriveWholeAndInOrderOverTheDataEndpoint) { expect_tensors_arrive(true); }

TEST(UcxTransport, WithoutADataEndpointTensorsStayOnTheConnection) { expect_tensors_arrive(false); }

// A receiver whose DataEndpoint is late: the head's handler holds its progress thread in
// on_peer_up (the offer goes right after it) until the worker has queued its tensors, so
// they wait in the connection for the offer, then take the data endpoint, whole and in order.
class gated_recorder : public recorder {
 public:
  void on_peer_up(peer_id peer, const hello_wire& hello) override {
    recorder::on_peer_up(peer, hello);
    std::unique_lock lock(gate_mu_);
    gate_cv_.wait_for(lock, std::chrono::seconds(20), [&] { return open_; });
  }
  void open() {
    std::lock_guard lock(gate_mu_);
    open_ = true;
    gate_cv_.notify_all();
  }

 private:
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool open_ = false;
};

// A head whose DataEndpoint is held back (gated_recorder) and a worker connected to it.
// up() returns once the worker sees the head up; whatever fails after, the head's progress
// thread is let go before the transports stop (the destructor's body runs first).
struct gated_pair {
  gated_recorder head_r;
  recorder worker_r;
  std::unique_ptr<ucx_transport> head, worker;
  peer_id to_head = 0;

  ~gated_pair() { head_r.open(); }
  bool up(const cluster_secret& s) {
    head = start(head_r, s, node_role::head, 0, true);
    worker = start(worker_r, s, node_role::worker, 1, false);
    if (!head || !worker) return false;
    to_head = worker->connect("127.0.0.1", head->port());
    return worker_r.wait([&](recorder& r) { return r.up_.count(to_head) > 0; });
  }
};

TEST(UcxTransport, TensorsSentBeforeThePeersDataEndpointWaitForItThenTakeIt) {
  gated_pair p;
  ASSERT_TRUE(p.up(secret_of(11)));
  auto& [head_r, worker_r, head, worker, to_head] = p;
  auto a = std::make_shared<std::vector<std::byte>>(1000, std::byte{1});
  auto b = std::make_shared<std::vector<std::byte>>(std::size_t(3) << 20, std::byte{2});
  ASSERT_TRUE(worker->send_tensor(to_head, {1, 0, 0, {1000}}, a, *a).ok());
  ASSERT_TRUE(worker->send_tensor(to_head, {2, 0, 0, {3 << 20}}, b, *b).ok());
  const bool waited = wait_until_true([&] { return worker->stats().tensors_waited == 2; });
  head_r.open();
  ASSERT_TRUE(waited) << "the tensors did not wait: the head's DataEndpoint came first";
  ASSERT_TRUE(head_r.wait([](recorder& r) {
    std::size_t n = 0;
    for (auto& [p, v] : r.tensors_) n += v.size();
    return n == 2;
  }));
  std::lock_guard lock(head_r.mu_);
  const auto& got = head_r.tensors_.begin()->second;
  EXPECT_EQ(got[0].first.tag, 1u);
  EXPECT_EQ(got[0].second, *a);
  EXPECT_EQ(got[1].first.tag, 2u);
  EXPECT_TRUE(got[1].second == *b);
  EXPECT_EQ(worker->stats().tensors_direct, 2u);
  EXPECT_TRUE(head_r.down_.empty());
}

// Frames sent while a connection switches to the data endpoint keep their order: the worker
// sends a stream of 4 KiB frames (every 400th a 200-KB one, fetched by rendezvous) from the
// moment it is up while the head's DataEndpoint is held back (gated_pair), so the first ones
// take the connection (TCP) and pile up there, and the rest take the data endpoint (shared
// memory), which would overtake the pile but for the DataFrames frame the receiver waits
// for. The head sees every frame once, in order; the head's own frames to the worker likewise.
TEST(UcxTransport, FramesKeepTheirOrderAcrossTheSwitchToTheDataEndpoint) {
  gated_pair p;
  ASSERT_TRUE(p.up(secret_of(12)));
  auto& [head_r, worker_r, head, worker, to_head] = p;
  // Fewer than peer_sends_in_flight_max: the head does not read while it is held.
  constexpr int frames = 4000, before_open = 1500;
  const auto anchor = clock_anchor::now();
  serving::generate_request g, big;
  g.prompt.assign(1000, 7);
  big.prompt.assign(50000, 7);   // ~200 KB: rendezvous, on either endpoint
  std::atomic<bool> send_failed{false};
  std::thread sender([&] {
    for (int i = 0; i < frames; ++i) {
      if (i == before_open) head_r.open();
      auto& f = i % 400 == 399 ? big : g;   // among them, now and then, a large one
      f.request_id = std::uint64_t(i);
      // Far fewer than send_queue_frames_max: no send is refused.
      if (!worker->send(to_head, encode(f, anchor)).ok()) {
        send_failed = true;
        return;
      }
    }
  });
  sender.join();
  ASSERT_FALSE(send_failed);
  ASSERT_TRUE(head_r.wait([&](recorder& r) { return !r.generates_.empty() && r.generates_.begin()->second.size() >= frames; }));
  ASSERT_TRUE(head_r.wait([](recorder& r) { return r.up_.size() == 1; }));
  const peer_id to_worker = head_r.up_.begin()->first;
  for (int i = 0; i < 2000; ++i) ASSERT_TRUE(head->send(to_worker, encode_cancel(frame_type::cancel, std::uint64_t(i))).ok());
  ASSERT_TRUE(worker_r.wait([&](recorder& r) { return r.ids_[to_head].size() >= 2000; }));
  {
    std::lock_guard lock(head_r.mu_);
    const auto& got = head_r.generates_.at(to_worker);
    ASSERT_EQ(got.size(), std::size_t(frames));
    for (int i = 0; i < frames; ++i) ASSERT_EQ(got[std::size_t(i)], i) << "frame " << i << " out of order";
  }
  {
    std::lock_guard lock(worker_r.mu_);
    const auto& got = worker_r.ids_.at(to_head);
    for (int i = 0; i < 2000; ++i) ASSERT_EQ(got[std::size_t(i)], i);
  }
  // Some frames took the connection and the rest the data endpoint.
  EXPECT_GE(worker->stats().frames_direct, 1u);
  EXPECT_LT(worker->stats().frames_direct, std::uint64_t(frames));
  EXPECT_EQ(head->stats().frames_direct, 2000u);
  EXPECT_EQ(head_r.downs(), 0u);
  EXPECT_EQ(worker_r.downs(), 0u);
}

// DataFrames is the transport's own, sent once to a side that offered a data endpoint: one
// more, or one to a side that offered none, closes the connection (CORRUPT_DATA) and is
// never handed to the application.
TEST(UcxTransport, AnUnexpectedDataFramesClosesTheConnection) {
  struct case_t {
    bool head_offers, worker_offers;
    const char* what;
  };
  for (const auto& [head_offers, worker_offers, what] :
       {case_t{true, true, "a second DataFrames"}, case_t{false, true, "DataFrames to a side with no data endpoint"},
        case_t{true, false, "DataFrames from a side that offered none (the head took its offer back)"}}) {
    SCOPED_TRACE(what);
    recorder head_r, worker_r;
    transport_config hc;
    hc.data_endpoints = head_offers;
    auto head_t = ucx_transport::start(hc, secret_of(13), {node_role::head, 0, 1}, head_r);
    auto worker = start(worker_r, secret_of(13), node_role::worker, 1, false, worker_offers);
    ASSERT_TRUE(head_t.ok() && worker);
    auto& head = *head_t;
    const auto to_head = worker->connect("127.0.0.1", head->port());
    ASSERT_TRUE(worker_r.wait([&](recorder& r) { return r.up_.count(to_head) > 0; }));
    if (head_offers && worker_offers) {   // the worker's own DataFrames goes first
      ASSERT_TRUE(wait_until_true([&] { return worker->stats().data_endpoints == 1; }));
    }
    ASSERT_TRUE(worker->send(to_head, encode_data_frames()).ok());
    ASSERT_TRUE(head_r.wait([](recorder& r) { return !r.down_.empty(); }));
    std::lock_guard lock(head_r.mu_);
    EXPECT_EQ(head_r.down_.begin()->second.code, error_code::corrupt_data) << head_r.down_.begin()->second.to_string();
    EXPECT_TRUE(head_r.other_.empty());
  }
}

// The transport sends its own DataEndpoint once up; one more from the peer (sent here as a
// plain frame) is a protocol violation that closes the connection.
TEST(UcxTransport, ASecondDataEndpointClosesTheConnection) {
  connected_pair p;
  ASSERT_TRUE(p.up(secret_of(10)));
  ASSERT_TRUE(p.worker->send(p.to_head, encode(data_endpoint_wire{{}, "elsewhere"})).ok());
  ASSERT_TRUE(p.head_r.wait([](recorder& r) { return !r.down_.empty(); }));
  std::lock_guard lock(p.head_r.mu_);
  EXPECT_EQ(p.head_r.down_.begin()->second.code, error_code::corrupt_data) << p.head_r.down_.begin()->second.to_string();
  EXPECT_TRUE(p.head_r.other_.empty());   // never handed to the application
}

TEST(UcxTransport, ATensorOverTheReceiversLimitClosesTheConnection) {
  recorder head_r, worker_r;
  transport_config tight;
  tight.tensor_bytes_max = 1u << 20;
  auto t = ucx_transport::start(tight, secret_of(9), {node_role::head, 0, 1}, head_r);
  ASSERT_TRUE(t.ok());
  auto head = std::move(*t);
  auto worker = start(worker_r, secret_of(9), node_role::worker, 1, false);
  const auto to_head = worker->connect("127.0.0.1", head->port());
  ASSERT_TRUE(worker_r.wait([&](recorder& r) { return r.up_.count(to_head) > 0; }));
  auto big = std::make_shared<std::vector<std::byte>>(4u << 20);
  ASSERT_TRUE(worker->send_tensor(to_head, {1, 0, 0, {}}, big, *big).ok());   // the sender's limit is 4 GiB
  ASSERT_TRUE(worker_r.wait([&](recorder& r) { return r.down_.count(to_head) > 0; }));
  std::lock_guard lock(head_r.mu_);
  EXPECT_TRUE(head_r.tensors_.empty());
  // And the sender's own limit refuses before queueing.
  EXPECT_EQ(head->send_tensor(1, {}, big, *big).err().code, error_code::invalid_argument);
}

TEST(TensorBuffer, SmallAndHugePageBuffersHoldTheirBytesAndMove) {
  for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(1000), tensor_buffer::huge_page_bytes - 1,
                        tensor_buffer::huge_page_bytes, std::size_t(5) << 20}) {
    tensor_buffer b(n);
    ASSERT_EQ(b.size(), n);
    for (std::size_t i = 0; i < n; ++i) b.data()[i] = std::byte(i % 253);
    tensor_buffer moved(std::move(b));
    EXPECT_EQ(b.size(), 0u);
    EXPECT_EQ(b.data(), nullptr);
    ASSERT_EQ(moved.size(), n);
    for (std::size_t i = 0; i < n; i += 4093) ASSERT_EQ(moved.data()[i], std::byte(i % 253)) << n;
    tensor_buffer assigned;
    assigned = std::move(moved);
    EXPECT_EQ(assigned.size(), n);
  }
}

TEST(TensorBuffer, AFreedMappingServesTheNextBufferOfItsSizeUpToThePoolLimit) {
  const std::size_t size = (7u << 20) + 3;
  std::byte* first = nullptr;
  {
    tensor_buffer a(size);
    first = a.data();
    a.data()[size - 1] = std::byte{42};
  }
  EXPECT_GE(tensor_buffer::pooled_bytes(), std::size_t(8) << 20);
  {
    tensor_buffer b(size - 1000);   // the same mapped size: the same memory, not zeroed again
    EXPECT_EQ(b.data(), first);
    tensor_buffer other(size + (4u << 20));   // another mapped size: another mapping
    EXPECT_NE(other.data(), first);
  }
  // More than pooled_bytes_max freed: the pool keeps at most that much, the newest.
  std::vector<std::byte*> addresses;
  {
    std::vector<tensor_buffer> many;
    const std::size_t each = 64u << 20;
    for (std::size_t i = 0; i <= tensor_buffer::pooled_bytes_max / each; ++i) {
      many.emplace_back(each + 1);
      addresses.push_back(many.back().data());
    }
  }
  EXPECT_LE(tensor_buffer::pooled_bytes(), tensor_buffer::pooled_bytes_max);
  const std::size_t mapped = 66u << 20;   // each + 1 bytes in whole huge pages
  EXPECT_GE(tensor_buffer::pooled_bytes(), tensor_buffer::pooled_bytes_max - mapped);
  tensor_buffer again((64u << 20) + 1);   // the last one freed is the first handed out
  EXPECT_EQ(again.data(), addresses.back());
}

TEST(UcxTransport, AWrongSecretNeverComesUpAndDeliversNothing) {
  recorder head_r, intruder_r;
  auto head = start(head_r, secret_of(3), node_role::head, 0, true);
  auto intruder = start(intruder_r, secret_of(4), node_role::worker, 1, false);
  ASSERT_TRUE(head && intruder);
  const auto p = intruder->connect("127.0.0.1", head->port());
  ASSERT_TRUE(intruder_r.wait([&](recorder& r) { return r.down_.count(p) > 0; }));
  EXPECT_EQ(intruder_r.up_.count(p), 0u);
  // Frames sent anyway go nowhere.
  (void)intruder->send(p, encode_cancel(frame_type::cancel, 1));
  EXPECT_TRUE(head_r.wait([](recorder&) { return true; }));
  // The head counts the rejection once it has seen the bad proof.
  EXPECT_TRUE(wait_until_true([&] { return head->stats().peers_rejected >= 1; }));
  std::lock_guard lock(head_r.mu_);
  EXPECT_TRUE(head_r.up_.empty());
  EXPECT_TRUE(head_r.ids_.empty());
}

TEST(UcxTransport, AGarbageSendingPeerIsCutOffAndOthersKeepBeingServed) {
  recorder head_r, good_r, bad_r;
  auto head = start(head_r, secret_of(5), node_role::head, 0, true);
  auto good = start(good_r, secret_of(5), node_role::worker, 1, false);
  auto bad = start(bad_r, secret_of(5), node_role::worker, 2, false);
  ASSERT_TRUE(head && good && bad);
  const auto g = good->connect("127.0.0.1", head->port());
  const auto b = bad->connect("127.0.0.1", head->port());
  ASSERT_TRUE(good_r.wait([&](recorder& r) { return r.up_.count(g) > 0; }));
  ASSERT_TRUE(bad_r.wait([&](recorder& r) { return r.up_.count(b) > 0; }));
  // Random bytes, then a truncated real frame: the head closes the bad peer.
  std::mt19937 rng(11);
  frame_bytes junk(200);
  for (auto& x : junk) x = std::byte(rng());
  ASSERT_TRUE(bad->send(b, junk).ok());
  auto cut = encode_cancel(frame_type::cancel, 3);
  cut.resize(cut.size() / 2);
  (void)bad->send(b, cut);
  ASSERT_TRUE(bad_r.wait([&](recorder& r) { return r.down_.count(b) > 0; }));
  // The good peer is still served.
  ASSERT_TRUE(good->send(g, encode_cancel(frame_type::cancel, 42)).ok());
  ASSERT_TRUE(head_r.wait([](recorder& r) {
    for (auto& [peer, ids] : r.ids_)
      if (!ids.empty() && ids.back() == 42) return true;
    return false;
  }));
  std::lock_guard lock(head_r.mu_);
  for (auto& [peer, ids] : head_r.ids_)
    for (auto id : ids) EXPECT_EQ(id, 42) << "nothing of the bad peer was delivered";
  EXPECT_EQ(head_r.down_.size(), 1u);
}

TEST(UcxTransport, AClosedOrVanishedPeerIsReportedDown) {
  recorder head_r, worker_r;
  auto head = start(head_r, secret_of(6), node_role::head, 0, true);
  auto worker = start(worker_r, secret_of(6), node_role::worker, 1, false);
  ASSERT_TRUE(head && worker);
  const auto p = worker->connect("127.0.0.1", head->port());
  ASSERT_TRUE(head_r.wait([](recorder& r) { return r.up_.size() == 1; }));
  worker.reset();   // the process goes away
  ASSERT_TRUE(head_r.wait([](recorder& r) { return r.down_.size() == 1; }));
  (void)p;
}

// What a side sends before it closes a connection arrives, and so does its reason: frames
// (small ones, then one large enough for rendezvous, over the data endpoint) and the goodbye
// come before the disconnect, whichever endpoint each takes. Twenty rounds, since the
// disconnect racing them is a matter of timing.
TEST(UcxTransport, FramesAndTheGoodbyeSentBeforeACloseArrive) {
  for (int round = 0; round < 20; ++round) {
    const bool data_endpoints = round % 2 == 0;
    SCOPED_TRACE("round " + std::to_string(round) + (data_endpoints ? "" : ", no data endpoints"));
    connected_pair p;
    ASSERT_TRUE(p.up(secret_of(14), data_endpoints));
    ASSERT_TRUE(wait_until_true([&] { return p.worker->stats().data_endpoints == (data_endpoints ? 1u : 0u); }));
    constexpr int small = 50;
    for (int i = 0; i < small; ++i) ASSERT_TRUE(p.worker->send(p.to_head, encode_cancel(frame_type::cancel, std::uint64_t(i))).ok());
    serving::generate_request big;
    big.request_id = 77;
    big.prompt.assign(200000, 5);   // ~800 KB: rendezvous
    ASSERT_TRUE(p.worker->send(p.to_head, encode(big, clock_anchor::now())).ok());
    p.worker->close(p.to_head, "done for the day");
    ASSERT_TRUE(p.head_r.wait([](recorder& r) { return !r.down_.empty(); }));
    std::lock_guard lock(p.head_r.mu_);
    const auto why = p.head_r.down_.begin()->second.to_string();
    EXPECT_NE(why.find("done for the day"), std::string::npos) << why;
    const peer_id from = p.head_r.down_.begin()->first;
    EXPECT_EQ(p.head_r.ids_[from].size(), std::size_t(small));
    ASSERT_EQ(p.head_r.generates_[from].size(), 1u);
    EXPECT_EQ(p.head_r.generates_[from][0], 77);
    if (::testing::Test::HasFailure()) break;
  }
}

// Every connection that ends closes its endpoint; the close's request is freed when the
// close finishes, not kept until the process ends.
TEST(UcxTransport, EndpointClosesFinishAndAreFreedWhileTheProcessRuns) {
  recorder head_r;
  auto head = start(head_r, secret_of(8), node_role::head, 0, true);
  ASSERT_TRUE(head);
  constexpr int peers = 20;
  for (int i = 0; i < peers; ++i) {
    recorder worker_r;
    auto worker = start(worker_r, secret_of(8), node_role::worker, 1 + i, false);
    ASSERT_TRUE(worker);
    const auto p = worker->connect("127.0.0.1", head->port());
    ASSERT_TRUE(worker_r.wait([&](recorder& r) { return r.up_.count(p) > 0; }));
    ASSERT_TRUE(head_r.wait([&](recorder& r) { return r.up_.size() == std::size_t(i + 1); }));
  }   // each worker's transport goes away: the head closes its side
  ASSERT_TRUE(head_r.wait([&](recorder& r) { return r.down_.size() == peers; }));
  EXPECT_TRUE(wait_until_true([&] { return head->stats().closes_pending == 0; }))
      << head->stats().closes_pending << " endpoint closes still held";
}

// data_endpoints_max bounds the data endpoints a process holds at once (UCX keeps each
// until its data worker goes, and these all stay connected): peers past it are served over
// the connection, both ways.
TEST(UcxTransport, PeersPastDataEndpointsMaxAreServedOverTheConnection) {
  recorder head_r;
  auto head = start_head(head_r, secret_of(9), [](transport_config& c) { c.data_endpoints_max = 2; });
  ASSERT_TRUE(head);
  // All stay connected (a worker whose connections are gone would be destroyed, its
  // endpoints no longer held). Members in this order: transports go before their recorders.
  std::vector<std::unique_ptr<recorder>> recorders;
  std::vector<std::unique_ptr<ucx_transport>> workers;
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE("worker " + std::to_string(i));
    recorder& worker_r = *recorders.emplace_back(std::make_unique<recorder>());
    auto& worker = workers.emplace_back(start(worker_r, secret_of(9), node_role::worker, 1 + i, false));
    ASSERT_TRUE(worker);
    const auto to_head = worker->connect("127.0.0.1", head->port());
    ASSERT_TRUE(worker_r.wait([&](recorder& r) { return r.up_.count(to_head) > 0; }));
    ASSERT_TRUE(head_r.wait([&](recorder& r) { return r.up_.size() == std::size_t(i + 1); }));
    const peer_id to_worker = std::prev(head_r.up_.end())->first;
    // Each side has decided once a frame of the other's has arrived: it came behind the
    // other's offer (or its empty one) on the connection.
    ASSERT_TRUE(worker->send(to_head, encode_cancel(frame_type::cancel, 7)).ok());
    ASSERT_TRUE(head->send(to_worker, encode_cancel(frame_type::cancel, 8)).ok());
    ASSERT_TRUE(head_r.wait([&](recorder& r) { return r.ids_[to_worker] == std::vector<std::int64_t>{7}; }));
    ASSERT_TRUE(worker_r.wait([&](recorder& r) { return r.ids_[to_head] == std::vector<std::int64_t>{8}; }));
    const bool direct = i < 2;
    EXPECT_EQ(head->stats().data_endpoints, std::uint64_t(std::min(i + 1, 2)));
    EXPECT_EQ(worker->stats().data_endpoints, direct ? 1u : 0u);
    // And the next frame takes the data endpoint, or the connection.
    const auto direct_before = worker->stats().frames_direct;
    ASSERT_TRUE(worker->send(to_head, encode_cancel(frame_type::cancel, 9)).ok());
    ASSERT_TRUE(head_r.wait([&](recorder& r) { return r.ids_[to_worker].size() == 2; }));
    EXPECT_EQ(head_r.ids_[to_worker].back(), 9);
    EXPECT_EQ(worker->stats().frames_direct - direct_before, direct ? 1u : 0u);
  }
  EXPECT_EQ(head_r.downs(), 0u);
  workers.clear();
}

// Clients coming and going: the data workers whose connections are all gone are destroyed
// with the endpoints UCX kept in them, so every new client still gets a data endpoint (with
// data_endpoints_max 4 and 2 per worker, the 4th would not without that). A node that
// stays keeps its worker, which no client shares, and its data endpoint, throughout.
TEST(UcxTransport, DataWorkersOfGoneConnectionsAreDestroyedAndEveryPeerGetsADataEndpoint) {
  recorder head_r;
  auto head = start_head(head_r, secret_of(9), [](transport_config& c) { c.data_endpoints_per_worker = 2; c.data_endpoints_max = 4; });
  ASSERT_TRUE(head);
  // Connects `worker` (node `node`), exchanges frames both ways and a tensor large enough to
  // be fetched (rendezvous); returns the head's peer id for it.
  const auto exchange = [&](ucx_transport& worker, recorder& worker_r, std::int32_t node) -> peer_id {
    const auto to_head = worker.connect("127.0.0.1", head->port());
    EXPECT_TRUE(worker_r.wait([&](recorder& r) { return r.up_.count(to_head) > 0; }));
    peer_id to_worker = 0;
    EXPECT_TRUE(head_r.wait([&](recorder& r) {
      for (const auto& [p, hello] : r.up_)
        if (hello.node_id == node && r.down_.count(p) == 0) to_worker = p;
      return to_worker != 0;
    }));
    EXPECT_TRUE(worker.send(to_head, encode_cancel(frame_type::cancel, 7)).ok());
    EXPECT_TRUE(head->send(to_worker, encode_cancel(frame_type::cancel, 8)).ok());
    EXPECT_TRUE(head_r.wait([&](recorder& r) { return r.ids_[to_worker].size() == 1; }));
    EXPECT_TRUE(worker_r.wait([&](recorder& r) { return r.ids_[to_head].size() == 1; }));
    const auto direct_before = worker.stats().frames_direct;
    auto big = std::make_shared<std::vector<std::byte>>(1u << 20, std::byte{5});
    EXPECT_TRUE(worker.send_tensor(to_head, {1, 0, 0, {1 << 20}}, big, *big).ok());
    EXPECT_TRUE(worker.send(to_head, encode_cancel(frame_type::cancel, 9)).ok());
    EXPECT_TRUE(head_r.wait([&](recorder& r) { return r.ids_[to_worker].size() == 2 && r.tensors_[to_worker].size() == 1; }));
    EXPECT_EQ(worker.stats().frames_direct - direct_before, 1u) << "node " << node << " got no data endpoint";
    EXPECT_EQ(worker.stats().tensors_direct, 1u);
    return to_worker;
  };
  recorder stays_r;
  auto stays = start(stays_r, secret_of(9), node_role::worker, 1, false);
  ASSERT_TRUE(stays);
  const peer_id stays_id = exchange(*stays, stays_r, 1);
  for (int i = 0; i < 9; ++i) {
    const std::int32_t node = 2 + i;
    SCOPED_TRACE("node " + std::to_string(node));
    recorder worker_r;
    auto worker = start(worker_r, secret_of(9), node_role::client, node, false);
    ASSERT_TRUE(worker);
    exchange(*worker, worker_r, node);
    worker.reset();
    ASSERT_TRUE(head_r.wait([&](recorder& r) { return r.down_.size() == std::size_t(i + 1); }));
  }
  EXPECT_EQ(head->stats().data_endpoints, 10u);
  // The stayer (a node) has the nodes' worker; each client's worker went with it.
  ASSERT_TRUE(wait_until_true([&] { return head->stats().data_workers == 1; })) << head->stats().data_workers;
  EXPECT_EQ(head->stats().data_workers_destroyed, 9u);
  // The stayer still talks over its data endpoint, both ways.
  const auto direct_before = head->stats().frames_direct;
  ASSERT_TRUE(head->send(stays_id, encode_cancel(frame_type::cancel, 10)).ok());
  ASSERT_TRUE(stays_r.wait([&](recorder& r) { return r.ids_.begin()->second.size() == 2; }));
  EXPECT_EQ(head->stats().frames_direct - direct_before, 1u);
  EXPECT_EQ(head_r.downs(), 9u);
}

// A process that does not listen (a client) keeps the data worker of a lost connection a
// while (data_worker_linger: the head's frames still waiting for its FIFO arrive there,
// ClusterProcesses.AHeadKeepsNoSendsForAClientThatWasPausedAndRunsAgain), takes no new
// connection into it -- reconnecting at once gets another, over which frames go as before --
// and then destroys it: a client that reconnects again and again keeps none of them.
TEST(UcxTransport, AClientsLostConnectionsLeaveNoDataWorkerAndReconnectionsGetNewOnes) {
  recorder head_r, client_r;
  auto head = start(head_r, secret_of(9), node_role::head, 0, true);
  auto client = start(client_r, secret_of(9), node_role::client, 3, false);
  ASSERT_TRUE(head && client);
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const auto to_head = client->connect("127.0.0.1", head->port());
    ASSERT_TRUE(client_r.wait([&](recorder& r) { return r.up_.count(to_head) > 0; }));
    ASSERT_TRUE(wait_until_true([&] { return client->stats().data_endpoints == std::uint64_t(round + 1); }));
    const auto direct_before = client->stats().frames_direct;
    ASSERT_TRUE(client->send(to_head, encode_cancel(frame_type::cancel, std::uint64_t(round))).ok());
    ASSERT_TRUE(head_r.wait([&](recorder& r) {
      std::size_t n = 0;
      for (const auto& [p, ids] : r.ids_) n += ids.size();
      return n == std::size_t(round + 1);
    }));
    EXPECT_EQ(client->stats().frames_direct - direct_before, 1u) << "no data endpoint";
    peer_id from_client = 0;
    ASSERT_TRUE(head_r.wait([&](recorder& r) {
      for (const auto& [p, hello] : r.up_)
        if (r.down_.count(p) == 0) from_client = p;
      return from_client != 0;
    }));
    head->close(from_client, "test: the head lets the client go");
    ASSERT_TRUE(client_r.wait([&](recorder& r) { return r.down_.count(to_head) > 0; }));
  }
  // Each lost connection's worker went after its while; none is left.
  EXPECT_TRUE(wait_until_true([&] { return client->stats().data_workers_destroyed == 3; }))
      << client->stats().data_workers_destroyed;
  EXPECT_EQ(client->stats().data_workers, 0u);
}

// A peer that opens no data endpoint (on another host; here one with data endpoints off)
// gives its place in a data worker back: with one connection per worker, the next client
// gets that worker instead of a new one.
TEST(UcxTransport, APeerThatOpensNoDataEndpointTakesNoPlaceInADataWorker) {
  recorder head_r;
  auto head = start_head(head_r, secret_of(9), [](transport_config& c) { c.data_endpoints_per_worker = 1; });
  ASSERT_TRUE(head);
  recorder far_r, near_r;
  auto far = start(far_r, secret_of(9), node_role::client, 1, false, /*data_endpoints=*/false);
  auto near = start(near_r, secret_of(9), node_role::client, 2, false);
  ASSERT_TRUE(far && near);
  const auto far_head = far->connect("127.0.0.1", head->port());
  ASSERT_TRUE(far_r.wait([&](recorder& r) { return r.up_.count(far_head) > 0; }));
  // Its DataEndpoint (an empty one) came before this frame.
  ASSERT_TRUE(far->send(far_head, encode_cancel(frame_type::cancel, 1)).ok());
  ASSERT_TRUE(head_r.wait([&](recorder& r) { return r.ids_.size() == 1; }));
  const auto near_head = near->connect("127.0.0.1", head->port());
  ASSERT_TRUE(near_r.wait([&](recorder& r) { return r.up_.count(near_head) > 0; }));
  ASSERT_TRUE(wait_until_true([&] { return near->stats().data_endpoints == 1; }));
  ASSERT_TRUE(near->send(near_head, encode_cancel(frame_type::cancel, 2)).ok());
  ASSERT_TRUE(head_r.wait([&](recorder& r) { return r.ids_.size() == 2; }));
  EXPECT_EQ(near->stats().frames_direct, 1u);
  EXPECT_EQ(far->stats().frames_direct, 0u);
  // The nodes' worker and one for clients (the near one's), not one for each client.
  EXPECT_EQ(head->stats().data_workers, 2u);
  EXPECT_EQ(head->stats().data_endpoints, 1u);
}

// Busy polling ends when traffic does, heartbeats or not: with a 1-s window and heartbeats
// every 100 ms, both progress threads sleep again once a second has passed without frames.
TEST(UcxTransport, BusyPollingStopsWhenOnlyHeartbeatsFlow) {
  connected_pair p;
  ASSERT_TRUE(p.up(secret_of(15), true, std::chrono::seconds(1)));
  ASSERT_TRUE(p.worker->send(p.to_head, encode_cancel(frame_type::cancel, 1)).ok());
  ASSERT_TRUE(p.head_r.wait([](recorder& r) { return !r.ids_.empty(); }));
  // Each thread's window restarted with that frame; from now on only heartbeats flow (one
  // every 100 ms each way), and once the window has run out each thread sleeps again.
  const auto head_sleeps = p.head->stats().sleeps, worker_sleeps = p.worker->stats().sleeps;
  EXPECT_TRUE(wait_until_true([&] { return p.head->stats().sleeps > head_sleeps; }));
  EXPECT_TRUE(wait_until_true([&] { return p.worker->stats().sleeps > worker_sleeps; }));
  EXPECT_EQ(p.head_r.downs(), 0u);
}

// A recorder whose after_callbacks runs `after` (on the progress thread).
struct acting_recorder : recorder {
  std::function<void()> after;
  void after_callbacks() override {
    if (after) after();
  }
};

// A frame sent on the progress thread goes out at once, unless frames queued by another
// thread before it still wait: then it goes after them. Here the progress thread, inside
// after_callbacks, waits while the test's thread queues frames, then sends more itself: the
// peer gets them all in order (without the wait for the queue they would overtake it).
TEST(UcxTransport, FramesSentOnTheProgressThreadGoAfterThoseQueuedBefore) {
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    constexpr int each = 200;
    // Set before the transport starts; the progress thread reads only these atomics.
    std::atomic<ucx_transport*> sender{nullptr};
    std::atomic<peer_id> to{0};
    std::atomic<bool> armed{false}, inside{false}, queued{false};
    recorder head_r;
    acting_recorder worker_r;
    worker_r.after = [&] {
      if (!armed.exchange(false)) return;
      inside = true;
      for (int i = 0; i < 10000 && !queued; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      for (int i = each; i < 2 * each; ++i) (void)sender.load()->send(to, encode_cancel(frame_type::cancel, std::uint64_t(i)));
    };
    auto head = start(head_r, secret_of(17), node_role::head, 0, true);
    auto worker = start(worker_r, secret_of(17), node_role::worker, 1, false);
    ASSERT_TRUE(head && worker);
    const auto to_head = worker->connect("127.0.0.1", head->port());
    ASSERT_TRUE(worker_r.wait([&](recorder& r) { return r.up_.count(to_head) > 0; }));
    sender = worker.get();
    to = to_head;
    armed = true;
    ASSERT_TRUE(wait_until_true([&] { return inside.load(); }));   // a turn's after_callbacks at the latest
    for (int i = 0; i < each; ++i) EXPECT_TRUE(worker->send(to_head, encode_cancel(frame_type::cancel, std::uint64_t(i))).ok());
    queued = true;
    ASSERT_TRUE(head_r.wait([](recorder& r) { return !r.ids_.empty() && r.ids_.begin()->second.size() == 2 * each; }));
    worker.reset();   // before the atomics go
    std::lock_guard lock(head_r.mu_);
    const auto& ids = head_r.ids_.begin()->second;
    for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], std::int64_t(i));
  }
}

// While a busy-polling side's only connection takes its data endpoint both ways, its progress
// thread polls the connections' worker only now and then (ucx_transport.cpp, run()): that
// worker must still take a new peer's handshake, and the peer's going is reported, with
// frames flowing the whole time so the window never runs out. (The peer says goodbye; a
// peer that vanishes without one is found by heartbeats, which tick whatever is polled.)
TEST(UcxTransport, ABusyPollingSideStillServesNewAndLeavingPeers) {
  recorder late_r;
  connected_pair p;
  ASSERT_TRUE(p.up(secret_of(16), true, std::chrono::seconds(1)));
  auto& [head_r, worker_r, head, worker, to_head] = p;
  ASSERT_TRUE(wait_until_true([&] { return head->stats().data_endpoints == 1 && worker->stats().data_endpoints == 1; }));

  // A frame every 100 us, for as long as the test runs (at most 200,000: 20 s).
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::thread pump([&] {
    for (int i = 0; i < 200000 && !stop; ++i) {
      if (!worker->send(to_head, encode_cancel(frame_type::cancel, std::uint64_t(i))).ok()) break;
      sent = i + 1;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  // No ASSERT until the pump is joined.
  EXPECT_TRUE(head_r.wait([](recorder& r) { return !r.ids_.empty() && r.ids_.begin()->second.size() > 1000; }));
  if (auto late = start(late_r, secret_of(16), node_role::worker, 2, false)) {
    const auto to_head_late = late->connect("127.0.0.1", head->port());
    EXPECT_TRUE(late_r.wait([&](recorder& r) { return r.up_.count(to_head_late) > 0; }));
    EXPECT_TRUE(head_r.wait([](recorder& r) { return r.up_.size() == 2; }));
  }   // the late peer's transport stops
  EXPECT_TRUE(head_r.wait([](recorder& r) { return r.down_.size() == 1; }));
  stop = true;
  pump.join();
  ASSERT_TRUE(head_r.wait([&](recorder& r) { return r.ids_.begin()->second.size() == std::size_t(sent.load()); }));
  std::lock_guard lock(head_r.mu_);
  const auto& ids = head_r.ids_.begin()->second;
  for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], std::int64_t(i));
  EXPECT_EQ(head_r.down_.count(head_r.ids_.begin()->first), 0u) << "the pumping worker was reported down";
}

// An idle progress thread sleeps until its next tick (20 ms) or a message: a second without
// traffic is some 50 sleeps per transport, not thousands of zero-length polls (a wait that
// rounded down to 0 ms spun through the last millisecond before each tick).
TEST(UcxTransport, AnIdleProgressThreadSleepsUntilItsNextTick) {
  connected_pair p;
  ASSERT_TRUE(p.up(secret_of(18)));
  ASSERT_TRUE(wait_until_true([&] { return p.head->stats().data_endpoints == 1 && p.worker->stats().data_endpoints == 1; }));
  const auto before = p.head->stats().sleeps + p.worker->stats().sleeps;
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const auto slept = p.head->stats().sleeps + p.worker->stats().sleeps - before;
  EXPECT_GT(slept, 0u);
  EXPECT_LT(slept, 400u) << "two idle transports slept " << slept << " times in a second (ticks every 20 ms)";
}

TEST(UcxTransport, ConfigValidationNamesTheField) {
  transport_config c;
  EXPECT_TRUE(validate(c).ok());
  c.busy_poll_us = std::chrono::microseconds(1000000);   // the most
  EXPECT_TRUE(validate(c).ok());
  for (auto bad : {std::chrono::microseconds(-1), std::chrono::microseconds(1000001)}) {
    c.busy_poll_us = bad;
    const auto s = validate(c);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.err().code, error_code::invalid_argument);
    EXPECT_NE(s.err().message.find("busy_poll_us"), std::string::npos) << s.err().message;
  }
  c = {};
  c.tick_interval_ms = milliseconds(0);
  EXPECT_FALSE(validate(c).ok());
  c = {};
  c.data_sends_posted_max = c.peer_sends_in_flight_max;   // the most
  EXPECT_TRUE(validate(c).ok());
  for (std::size_t bad : {std::size_t(0), c.peer_sends_in_flight_max + 1}) {
    c.data_sends_posted_max = bad;
    const auto s = validate(c);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.err().message.find("data_sends_posted_max"), std::string::npos) << s.err().message;
  }
}

// A head may listen on a name (dsnode head --listen localhost:PORT) as well as an IPv4
// address; a name with no IPv4 address is refused, naming it.
TEST(UcxTransport, AHeadListensOnAHostNameOrRefusesOneThatDoesNotResolve) {
  recorder head_r, worker_r;
  auto head = start_head(head_r, secret_of(2), [](transport_config& c) { c.listen_host = "localhost"; });
  auto worker = start(worker_r, secret_of(2), node_role::worker, 1, false);
  ASSERT_TRUE(head && worker);
  const auto to_head = worker->connect("127.0.0.1", head->port());
  ASSERT_TRUE(worker_r.wait([&](recorder& r) { return r.up_.count(to_head) > 0; }));

  recorder r;
  transport_config c;
  c.listen_host = "no-such-host.invalid";
  auto refused = ucx_transport::start(c, secret_of(2), {node_role::head, 0, 1000u}, r);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.err().code, error_code::invalid_argument);
  EXPECT_NE(refused.err().message.find("no-such-host.invalid"), std::string::npos) << refused.err().message;
}

// A head that heartbeats every second and a client whose timeout is 400 ms: the client
// allows the head two of its seconds, so an idle connection stays up; it used to drop the
// head after 400 ms of silence and reconnect forever.
TEST(UcxTransport, AClientKeepsAHeadThatHeartbeatsLessOftenThanItself) {
  recorder head_r, client_r;
  auto head = start_head(head_r, secret_of(3), [](transport_config& c) {
    c.session.heartbeat_interval_ms = milliseconds(1000);
    c.session.heartbeat_timeout_ms = milliseconds(5000);
  });
  transport_config c;
  c.listen = false;
  c.session.heartbeat_interval_ms = milliseconds(100);
  c.session.heartbeat_timeout_ms = milliseconds(400);
  auto client = ucx_transport::start(c, secret_of(3), {node_role::client, -1, 5u}, client_r);
  ASSERT_TRUE(head && client.ok());
  const auto to_head = (*client)->connect("127.0.0.1", head->port());
  ASSERT_TRUE(client_r.wait([&](recorder& r) { return r.up_.count(to_head) > 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));   // idle: the head's heartbeats only
  EXPECT_EQ(client_r.downs(), 0u);
  EXPECT_EQ(head_r.downs(), 0u);
  ASSERT_TRUE((*client)->send(to_head, encode_cancel(frame_type::cancel, 9)).ok());
  ASSERT_TRUE(head_r.wait([](recorder& r) { return r.ids_.size() == 1 && r.ids_.begin()->second.size() == 1; }));
}

TEST(UcxTransport, ConnectingToNothingIsReportedDown) {
  recorder r;
  auto client = start(r, secret_of(7), node_role::client, -1, false);
  ASSERT_TRUE(client);
  const auto p = client->connect("127.0.0.1", 1);   // nothing listens on port 1
  ASSERT_TRUE(r.wait([&](recorder& x) { return x.down_.count(p) > 0; }));
  EXPECT_EQ(r.up_.count(p), 0u);
}

}  // namespace
}  // namespace dsrt::transport
