#include "transport/ucx_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <new>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>

namespace dsrt::transport {
namespace {

constexpr unsigned frame_am_id = 1;    // every frame travels as this active message
constexpr unsigned tensor_am_id = 2;   // a tensor: its header frame as the AM header, its bytes as the data
constexpr unsigned direct_tensor_am_id = 3;   // the same over a data endpoint, the token before the header
constexpr unsigned direct_frame_am_id = 4;    // a frame over a data endpoint: the token as the AM header
constexpr std::size_t token_bytes = sizeof(std::uint64_t);
constexpr std::size_t tensor_header_bytes_max = 4096;   // a TensorHeader frame is ~100 bytes
// A connection this side closes waits for its unfinished sends (a rendezvous frame the peer
// has yet to fetch, the goodbye) before it disconnects, at most this long.
constexpr auto close_flush_wait = std::chrono::seconds(2);
// While every connection's frames take its data endpoint, a busy-polling progress thread
// polls the connections' worker this often (run()): an idle TCP interface's epoll_wait
// costs ~10 turns of polling shared memory.
constexpr auto connection_poll_interval = std::chrono::microseconds(50);

struct send_cmd { peer_id peer; frame_bytes frame; };
struct connect_cmd { peer_id peer; std::string host; std::uint16_t port; };
struct close_cmd { peer_id peer; std::string reason; };
struct tensor_cmd {
  peer_id peer;
  frame_bytes header;
  std::shared_ptr<const void> owner;
  std::span<const std::byte> data;
};
using command = std::variant<send_cmd, connect_cmd, close_cmd, tensor_cmd>;

// A frame as it arrived: eager data is copied at once; rendezvous data is fetched into
// `bytes` after the callback and `ready` is set when it is there.
struct inbound {
  frame_bytes bytes;               // the frame
  tensor_buffer tensor_data;       // a tensor's payload
  frame_bytes tensor_header;       // a tensor's header frame (empty: a plain frame)
  bool tensor = false;
  bool ready = false;
  bool failed = false;
  // Rendezvous data not fetched yet: it arrived before the peer had proved the secret, and
  // is fetched (or refused) when it reaches the front of the inbox, from the worker it
  // arrived on.
  void* rndv_desc = nullptr;
  ucp_worker_h rndv_worker = nullptr;
  std::size_t length = 0;          // the payload's bytes, as the peer announced them
};

// A frame the handshake may need before the peer is up (Hello, AuthProof) is far smaller;
// anything larger, or any tensor, from a peer that has not proved the secret closes it
// without a byte fetched.
constexpr std::size_t handshake_frame_bytes_max = 4096;

struct connection {
  peer_id id = 0;
  ucp_ep_h ep = nullptr;
  bool connector = false;
  bool reported_up = false;
  bool dead = false;               // closed; waiting to be reported and forgotten
  std::optional<error> why;
  // This side closes it (close(), shutdown): nothing more is sent or handed on, and it is
  // closed once its sends have finished, or at this time.
  std::optional<clock_time> closing_until;
  // UCX reported the connection's endpoint failed (a peer's close included). What arrived
  // before is still handled: the connection is closed with this after one more turn.
  std::optional<error> lost;
  int lost_turns = 0;
  // Tensors (ucx_transport.h): the peer's DataEndpoint decides where ours go; until it has
  // arrived they wait here. data_token names this connection in the tensors we send over
  // data_ep, own_token in those sent to us (auth.h data_token; 0: none).
  bool data_decided = false;
  ucp_ep_h data_ep = nullptr;
  std::uint64_t data_token = 0;
  std::uint64_t own_token = 0;
  std::deque<tensor_cmd> pending_tensors;
  // What arrived over our data endpoint waits here until the peer's DataFrames, sent on the
  // connection before them, has been read (ucx_transport.h); then it joins the inbox.
  bool peer_switched = false;
  std::deque<std::shared_ptr<inbound>> held;
  std::unique_ptr<peer_session> session;
  std::deque<std::shared_ptr<inbound>> inbox;   // in arrival order
  std::size_t inbox_bytes = 0;                  // announced payload bytes in inbox and held
  std::size_t sends_in_flight = 0;
};

// An arrival seen inside the active-message callback, handled after progress returns
// (UCX forbids closing endpoints or receiving rendezvous data inside its callbacks).
struct arrival {
  ucp_ep_h ep = nullptr;
  peer_id peer = 0;                // known already: it came over a data endpoint
  std::shared_ptr<inbound> item;
  ucp_worker_h worker = nullptr;   // the one it arrived on (for rndv_desc)
  void* rndv_desc = nullptr;
  std::size_t length = 0;
};

std::string status_text(ucs_status_t s) { return ucs_status_string(s); }

// Which host this process runs on, for the data endpoint: the host name and the kernel's
// boot id (a container with its own name is another host here). Empty when unknown.
std::string host_key() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return {};
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (!std::getline(boot, id) || id.empty()) return {};
  return std::string(name) + "/" + id;
}

}  // namespace

class ucx_transport::impl {
 public:
  impl(const transport_config& config, const cluster_secret& secret, node_identity self,
       transport_handler& handler)
      : config_(config), secret_(secret), self_(self), handler_(handler) {}

  ~impl() {
    if (thread_.joinable()) {
      stop_ = true;
      wake();
      thread_.join();
    }
    if (listener_) ucp_listener_destroy(listener_);
    if (data_worker_) ucp_worker_destroy(data_worker_);
    if (worker_) ucp_worker_destroy(worker_);
    if (context_) ucp_cleanup(context_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  status init() {
    // A listener must bind its port again at once after a restart, while the old
    // connections sit in TIME_WAIT. UCX reads these per component from the environment
    // (not through ucp_config_modify); an operator's own setting wins (no overwrite).
    if (config_.listen) {
      ::setenv("UCX_TCP_CM_REUSEADDR", "y", 0);
      ::setenv("UCX_RDMA_CM_REUSEADDR", "y", 0);
    }
    ucp_config_t* cfg = nullptr;
    if (auto s = ucp_config_read(nullptr, nullptr, &cfg); s != UCS_OK)
      return make_error(error_code::unavailable, "UCX configuration: {}", status_text(s));
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
    const auto s = ucp_init(&params, cfg, &context_);
    ucp_config_release(cfg);
    if (s != UCS_OK) return make_error(error_code::unavailable, "UCX init: {}", status_text(s));
    DSRT_TRY(make_worker(worker_, worker_fd_));
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) return make_error(error_code::unavailable, "eventfd: {}", std::strerror(errno));
    DSRT_TRY(set_handler(worker_, frame_am_id, &impl::on_am));
    DSRT_TRY(set_handler(worker_, tensor_am_id, &impl::on_tensor_am));
    if (config_.data_endpoints) {
      // The data endpoints get a worker of their own: connections keep the TCP interface
      // busy, and a turn that polls only the data worker skips its epoll_wait (run()).
      DSRT_TRY(make_worker(data_worker_, data_worker_fd_));
      DSRT_TRY(set_handler(data_worker_, direct_tensor_am_id, &impl::on_direct_tensor_am));
      DSRT_TRY(set_handler(data_worker_, direct_frame_am_id, &impl::on_direct_frame_am));
      ucp_address_t* address = nullptr;
      std::size_t length = 0;
      if (ucp_worker_get_address(data_worker_, &address, &length) == UCS_OK) {
        if (length <= worker_address_bytes_max) {
          const auto* bytes = reinterpret_cast<const std::byte*>(address);
          worker_address_.assign(bytes, bytes + length);
        }
        ucp_worker_release_address(data_worker_, address);
      }
      host_key_ = host_key();
      if (worker_address_.empty() || host_key_.empty())
        spdlog::warn("transport: no data endpoint (worker address of {} bytes, host key '{}'): tensors stay on connections",
                     length, host_key_);
    }

    if (config_.listen) {
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(config_.listen_port);
      if (::inet_pton(AF_INET, config_.listen_host.c_str(), &addr.sin_addr) != 1)
        return make_error(error_code::invalid_argument, "listen_host '{}' is not an IPv4 address",
                          config_.listen_host);
      ucp_listener_params_t lp{};
      lp.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
      lp.sockaddr.addr = reinterpret_cast<const sockaddr*>(&addr);
      lp.sockaddr.addrlen = sizeof(addr);
      lp.conn_handler.cb = &impl::on_conn_request;
      lp.conn_handler.arg = this;
      if (auto l = ucp_listener_create(worker_, &lp, &listener_); l != UCS_OK)
        return make_error(error_code::unavailable, "cannot listen on {}:{}: {}", config_.listen_host,
                          config_.listen_port, status_text(l));
      ucp_listener_attr_t attr{};
      attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
      if (ucp_listener_query(listener_, &attr) == UCS_OK)
        port_ = ntohs(reinterpret_cast<const sockaddr_in*>(&attr.sockaddr)->sin_port);
    }
    thread_ = std::thread([this] { run(); });
    return ok_t{};
  }

  // A worker only the progress thread touches, and its event fd.
  status make_worker(ucp_worker_h& worker, int& fd) {
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    if (auto w = ucp_worker_create(context_, &wp, &worker); w != UCS_OK) {
      worker = nullptr;
      return make_error(error_code::unavailable, "UCX worker: {}", status_text(w));
    }
    if (auto e = ucp_worker_get_efd(worker, &fd); e != UCS_OK)
      return make_error(error_code::unavailable, "UCX worker event fd: {}", status_text(e));
    return ok_t{};
  }

  status set_handler(ucp_worker_h worker, unsigned am_id, ucp_am_recv_callback_t cb) {
    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    hp.id = am_id;
    hp.cb = cb;
    hp.arg = this;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    if (auto h = ucp_worker_set_am_recv_handler(worker, &hp); h != UCS_OK)
      return make_error(error_code::unavailable, "UCX active-message handler: {}", status_text(h));
    return ok_t{};
  }

  std::uint16_t port() const { return port_; }

  peer_id connect(const std::string& host, std::uint16_t port) {
    const peer_id id = ++next_peer_;
    enqueue(connect_cmd{id, host, port}, /*bounded=*/false);
    return id;
  }

  status send(peer_id peer, frame_bytes frame) {
    // On the progress thread (a handler callback, or an actor it runs) a frame goes out at
    // once unless commands wait: those were queued before it (by whoever ran the sending
    // actor last), and go first.
    if (progress_of == this) {
      bool queued = false;
      {
        std::lock_guard lock(mu_);
        queued = !commands_.empty();
      }
      if (!queued) {
        send_now(send_cmd{peer, std::move(frame)});
        sent_here_ = true;
        return ok_t{};
      }
    }
    if (!enqueue(send_cmd{peer, std::move(frame)}, /*bounded=*/true))
      return make_error(error_code::overloaded, "transport send queue full ({} frames, send_queue_frames_max)",
                        config_.send_queue_frames_max);
    return ok_t{};
  }

  void close(peer_id peer, std::string reason) { enqueue(close_cmd{peer, std::move(reason)}, false); }

  status send_tensor(peer_id peer, tensor_header_wire header, std::shared_ptr<const void> owner,
                     std::span<const std::byte> data) {
    if (data.size() > config_.tensor_bytes_max)
      return make_error(error_code::invalid_argument, "tensor of {} bytes exceeds tensor_bytes_max {}", data.size(),
                        config_.tensor_bytes_max);
    header.bytes = data.size();
    if (!enqueue(tensor_cmd{peer, encode(header), std::move(owner), data}, /*bounded=*/true))
      return make_error(error_code::overloaded, "transport send queue full ({} frames, send_queue_frames_max)",
                        config_.send_queue_frames_max);
    return ok_t{};
  }

  transport_stats stats() const {
    std::lock_guard lock(stats_mu_);
    return published_stats_;
  }

 private:
  // The progress thread takes the command before it sleeps; only a sleeping one is woken
  // (an eventfd write per message otherwise, on the sender's thread).
  bool enqueue(command c, bool bounded) {
    bool asleep = false;
    {
      std::lock_guard lock(mu_);
      if (bounded && commands_.size() >= config_.send_queue_frames_max) return false;
      commands_.push_back(std::move(c));
      asleep = sleeping_;
    }
    if (asleep) wake();
    return true;
  }

  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof(one));
  }

  // ---- the progress thread ----

  void run() {
    progress_of = this;
    auto next_tick = std::chrono::steady_clock::now();
    auto last_busy = next_tick;
    auto last_turn = next_tick, last_connection_poll = next_tick;
    bool poll_connections = true;
    while (!stop_) {
      // Traffic: a send of the application's or a frame handed to it (not heartbeats, which
      // would keep an idle node polling).
      delivered_ = sent_here_ = false;
      const bool sent = run_commands();
      // While every connection's traffic takes its data endpoint, the connections' worker
      // carries only handshakes, heartbeats and failures: polled every
      // connection_poll_interval (going by the last turn's clock) and before sleeping, it
      // spares the data path a TCP epoll_wait on each turn.
      poll_connections = poll_connections || !all_direct_ ||
                         last_turn - last_connection_poll >= connection_poll_interval;
      if (data_worker_)
        while (ucp_worker_progress(data_worker_) != 0) {
        }
      if (poll_connections)
        while (ucp_worker_progress(worker_) != 0) {
        }
      const auto now = std::chrono::steady_clock::now();   // the turn's one clock read
      last_turn = now;
      if (poll_connections) last_connection_poll = now;
      handle_arrivals(now);
      if (now >= next_tick) {
        tick(now);
        next_tick = now + config_.tick_interval_ms;
      }
      reap(now);
      finish_closes();
      handler_.after_callbacks();
      publish_stats();
      const bool busy = sent || delivered_ || sent_here_;
      // Busy polling (busy_poll_us): a turn with traffic restarts the window, and until it
      // runs out the thread polls instead of sleeping, so nothing has to wake it.
      if (busy) last_busy = now;
      if (now - last_busy < config_.busy_poll_us) {
        poll_connections = false;
        continue;
      }
      if (!std::exchange(poll_connections, true)) continue;   // both workers, then sleep
      if (ucp_worker_arm(worker_) == UCS_ERR_BUSY) continue;   // more events already
      if (data_worker_ && ucp_worker_arm(data_worker_) == UCS_ERR_BUSY) continue;
      {
        std::lock_guard lock(mu_);
        if (!commands_.empty()) continue;
        sleeping_ = true;   // from here on enqueue() wakes this thread
      }
      ++stats_.sleeps;
      pollfd fds[3] = {{wake_fd_, POLLIN, 0}, {worker_fd_, POLLIN, 0}, {data_worker_fd_, POLLIN, 0}};
      // Rounded up: a wait rounded down to 0 would spin through the tick's last millisecond.
      const auto wait = std::chrono::ceil<milliseconds>(next_tick - std::chrono::steady_clock::now());
      ::poll(fds, data_worker_ ? 3 : 2, int(std::max<std::int64_t>(0, wait.count())));
      {
        std::lock_guard lock(mu_);
        sleeping_ = false;
      }
      std::uint64_t drained;
      while (::read(wake_fd_, &drained, sizeof(drained)) > 0) {
      }
    }
    shutdown();
  }

  void publish_stats() {
    static_assert(std::has_unique_object_representations_v<transport_stats>);   // memcmp compares values
    if (std::memcmp(&stats_, &last_published_, sizeof stats_) == 0) return;
    last_published_ = stats_;
    std::lock_guard lock(stats_mu_);
    published_stats_ = stats_;
  }

  // Runs the queued commands; false when there were none.
  bool run_commands() {
    {
      std::lock_guard lock(mu_);
      if (commands_.empty()) return false;
      batch_.swap(commands_);
    }
    for (auto& c : batch_) {
      if (auto* s = std::get_if<send_cmd>(&c)) {
        send_now(std::move(*s));
      } else if (auto* t = std::get_if<tensor_cmd>(&c)) {
        auto it = conns_.find(t->peer);
        if (it == conns_.end() || !open_for_sends(it->second) || !it->second.session->is_up()) {
          ++stats_.frames_dropped;
          continue;
        }
        post_tensor(it->second, std::move(*t));
      } else if (auto* k = std::get_if<connect_cmd>(&c)) {
        open(*k);
      } else if (auto* x = std::get_if<close_cmd>(&c)) {
        auto it = conns_.find(x->peer);
        if (it == conns_.end() || !open_for_sends(it->second)) continue;
        post_own(it->second, encode_goodbye(x->reason));   // after this side's frames
        begin_close(it->second, make_error(error_code::cancelled, "closed here: {}", x->reason));
      }
    }
    batch_.clear();
    return true;
  }

  // One of the application's frames, to an up peer; dropped (counted) for any other.
  void send_now(send_cmd s) {
    auto it = conns_.find(s.peer);
    if (it == conns_.end() || !open_for_sends(it->second) || !it->second.session->is_up()) {
      ++stats_.frames_dropped;
      return;
    }
    post_own(it->second, std::move(s.frame));
  }

  void open(const connect_cmd& c) {
    auto& conn = conns_[c.peer];
    conn.id = c.peer;
    conn.connector = true;
    auto fail = [&](error e) {
      conn.dead = true;
      conn.why = std::move(e);
    };
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(c.host.c_str(), nullptr, &hints, &found) != 0 || !found)
      return fail(make_error(error_code::unavailable, "cannot resolve host '{}'", c.host));
    sockaddr_in addr = *reinterpret_cast<const sockaddr_in*>(found->ai_addr);
    ::freeaddrinfo(found);
    addr.sin_port = htons(c.port);
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
    ep.sockaddr.addr = reinterpret_cast<const sockaddr*>(&addr);
    ep.sockaddr.addrlen = sizeof(addr);
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = &impl::on_ep_error;
    ep.err_handler.arg = this;
    if (auto s = ucp_ep_create(worker_, &ep, &conn.ep); s != UCS_OK) {
      conn.ep = nullptr;
      return fail(make_error(error_code::unavailable, "cannot connect to {}:{}: {}", c.host, c.port, status_text(s)));
    }
    start_session(conn, auth_direction::connector);
  }

  void start_session(connection& conn, auth_direction direction) {
    by_ep_[conn.ep] = conn.id;
    auto n = make_nonce();
    if (!n) {
      conn.dead = true;
      conn.why = n.err();
      return;
    }
    conn.session = std::make_unique<peer_session>(config_.session, secret_, self_, direction, *n,
                                                  std::chrono::steady_clock::now());
    post(conn, conn.session->hello());
  }

  // Sends one frame as an active message.
  void post(connection& conn, frame_bytes frame) {
    send_am(conn, conn.ep, frame_am_id, outgoing{{}, std::move(frame), nullptr, {}});
  }

  // Sends one of this side's frames (not the session's own): over the data endpoint, the
  // token as the message's header, once there is one.
  void post_own(connection& conn, frame_bytes frame) {
    if (!conn.data_ep) return post(conn, std::move(frame));
    if (!send_am(conn, conn.data_ep, direct_frame_am_id, outgoing{{}, std::move(frame), nullptr, {}, conn.data_token}))
      return;
    ++stats_.frames_direct;
  }

  // Sends a tensor: its header frame as the message's header, its bytes from the caller's
  // buffer (kept alive by the command's owner) -- over the data endpoint, with the peer's
  // token in front of the header, when there is one.
  void post_tensor(connection& conn, tensor_cmd t) {
    if (!conn.data_decided) {
      if (conn.pending_tensors.size() + conn.sends_in_flight >= config_.peer_sends_in_flight_max)
        return kill(conn, make_error(error_code::unavailable, "{} tensors wait for the peer's data endpoint "
                                     "(peer_sends_in_flight_max)", conn.pending_tensors.size()));
      conn.pending_tensors.push_back(std::move(t));
      ++stats_.tensors_waited;
      return;
    }
    if (!conn.data_ep) {
      send_am(conn, conn.ep, tensor_am_id, outgoing{std::move(t.header), {}, std::move(t.owner), t.data});
      return;
    }
    frame_bytes header(token_bytes + t.header.size());
    std::memcpy(header.data(), &conn.data_token, token_bytes);
    std::copy(t.header.begin(), t.header.end(), header.begin() + token_bytes);
    if (!send_am(conn, conn.data_ep, direct_tensor_am_id, outgoing{std::move(header), {}, std::move(t.owner), t.data}))
      return;
    ++stats_.tensors_direct;
  }

  // Once up: where the peer should send this side its tensors (ucx_transport.h), under the
  // token both sides derive from the handshake (auth.h).
  void offer_data_endpoint(connection& conn) {
    data_endpoint_wire offer;
    const auto& session = *conn.session;
    const std::uint64_t token =
        data_token(secret_, session.direction(), session.own_nonce(), session.peer().nonce);
    // A token of 0 or one another connection holds (2^-64 odds): offer nothing.
    if (!worker_address_.empty() && !host_key_.empty() && token != 0 && by_token_.count(token) == 0) {
      conn.own_token = token;
      by_token_[token] = conn.id;
      offer = {worker_address_, host_key_};
    }
    post(conn, encode(offer));
  }

  // The peer's DataEndpoint: open the data endpoint when the peer shares this host, then send
  // the tensors that waited for it. An error closes the connection.
  std::optional<error> use_data_endpoint(connection& conn, decoded_frame& frame) {
    if (conn.data_decided)
      return make_error(error_code::corrupt_data, "a second data_endpoint frame on one connection");
    auto offer = decode_data_endpoint(frame);
    if (!offer) return offer.err();
    conn.data_decided = true;
    if (data_worker_ && !offer->worker_address.empty() && !host_key_.empty() &&
        offer->host_key == host_key_) {
      // No peer-failure handling: UCX 1.13 would drop shared memory and CMA for it. The
      // connection's endpoint watches the peer, and this one is closed with it.
      ucp_ep_params_t ep{};
      ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
      ep.address = reinterpret_cast<const ucp_address_t*>(offer->worker_address.data());
      if (auto s = ucp_ep_create(data_worker_, &ep, &conn.data_ep); s == UCS_OK) {
        const auto& session = *conn.session;
        const auto peer_direction = session.direction() == auth_direction::connector ? auth_direction::acceptor
                                                                                     : auth_direction::connector;
        conn.data_token = data_token(secret_, peer_direction, session.peer().nonce, session.own_nonce());
        post(conn, encode_data_frames());   // the last of this side's frames on the connection
        ++stats_.data_endpoints;
      } else {
        conn.data_ep = nullptr;
        spdlog::warn("transport: connection {}: no data endpoint ({}); tensors stay on the connection", conn.id,
                     status_text(s));
      }
    }
    auto waiting = std::move(conn.pending_tensors);
    conn.pending_tensors.clear();
    for (auto& t : waiting) post_tensor(conn, std::move(t));
    return std::nullopt;
  }

  // What one active message sends; it lives until UCX has finished with its bytes.
  struct outgoing {
    frame_bytes header;                  // the AM header (tensors)
    frame_bytes payload;                 // the data, when owned here (frames)
    std::shared_ptr<const void> owner;   // the data's owner, when it is the caller's (tensors)
    std::span<const std::byte> external;
    std::optional<std::uint64_t> token;  // the header instead, when it is a data endpoint's token alone
    std::span<const std::byte> data() const { return owner ? external : std::span<const std::byte>(payload); }
    std::span<const std::byte> header_bytes() const {
      if (token) return std::as_bytes(std::span(&*token, 1));
      return header;
    }
  };

  // Whether the message went out (or is on its way); a failure kills the connection.
  bool send_am(connection& conn, ucp_ep_h ep, unsigned am_id, outgoing out) {
    if (!ep || !open_for_sends(conn)) return false;
    if (conn.sends_in_flight >= config_.peer_sends_in_flight_max) {
      kill(conn, make_error(error_code::unavailable, "peer is not reading: {} sends unfinished (peer_sends_in_flight_max)",
                            conn.sends_in_flight));
      return false;
    }
    struct pending { impl* self; peer_id peer; outgoing out; };
    auto* p = new pending{this, conn.id, std::move(out)};
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
    // The receiver learns which endpoint a message came on (a data endpoint's carry a token).
    rp.flags = am_id == direct_tensor_am_id || am_id == direct_frame_am_id ? 0 : UCP_AM_SEND_FLAG_REPLY;
    rp.user_data = p;
    rp.cb.send = [](void* request, ucs_status_t status, void* user) {
      auto* p = static_cast<pending*>(user);
      if (auto it = p->self->conns_.find(p->peer); it != p->self->conns_.end()) {
        --it->second.sends_in_flight;
        // A send that failed (not one cancelled by a close) lost its message: the data
        // endpoint has no error handler to say so, so the connection ends here.
        if (status != UCS_OK && status != UCS_ERR_CANCELED)
          p->self->kill(it->second, make_error(error_code::unavailable, "send failed: {}", status_text(status)));
      }
      delete p;
      ucp_request_free(request);
    };
    const auto header = p->out.header_bytes();
    const auto data = p->out.data();
    auto req = ucp_am_send_nbx(ep, am_id, header.empty() ? nullptr : header.data(), header.size(), data.data(),
                               data.size(), &rp);
    ++stats_.frames_sent;
    stats_.bytes_sent += header.size() + data.size();
    if (req == nullptr) {
      delete p;
    } else if (UCS_PTR_IS_ERR(req)) {
      delete p;
      kill(conn, make_error(error_code::unavailable, "send failed: {}", status_text(UCS_PTR_STATUS(req))));
      return false;
    } else {
      ++conn.sends_in_flight;
    }
    return true;
  }

  // Connections accepted here that have not proved the secret yet are at most
  // handshakes_max: a new one closes the oldest (silent peers cannot hold the listener's
  // connections_max against workers and clients that would prove it).
  void make_room_for_a_handshake() {
    std::size_t unproven = 0;
    connection* oldest = nullptr;
    for (auto& [id, c] : conns_) {
      if (c.dead || c.connector || (c.session && c.session->is_up())) continue;
      ++unproven;
      if (!oldest || id < oldest->id) oldest = &c;
    }
    if (unproven >= config_.handshakes_max && oldest)
      kill(*oldest, make_error(error_code::unauthenticated,
                               "closed for a newer connection: more than handshakes_max ({}) unproven",
                               config_.handshakes_max));
  }

  static void on_conn_request(ucp_conn_request_h request, void* arg) {
    auto* self = static_cast<impl*>(arg);
    std::size_t live = 0;
    for (const auto& [id, c] : self->conns_) live += !c.dead;
    if (live >= self->config_.connections_max) {
      ucp_listener_reject(self->listener_, request);
      ++self->stats_.peers_rejected;
      return;
    }
    self->make_room_for_a_handshake();
    const peer_id id = ++self->next_peer_;
    auto& conn = self->conns_[id];
    conn.id = id;
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLER |
                    UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep.conn_request = request;
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = &impl::on_ep_error;
    ep.err_handler.arg = self;
    if (ucp_ep_create(self->worker_, &ep, &conn.ep) != UCS_OK) {
      conn.ep = nullptr;
      conn.dead = true;
      return;
    }
    self->start_session(conn, auth_direction::acceptor);
  }

  static void on_ep_error(void* arg, ucp_ep_h ep, ucs_status_t status) {
    auto* self = static_cast<impl*>(arg);
    auto it = self->by_ep_.find(ep);
    if (it == self->by_ep_.end()) return;
    auto c = self->conns_.find(it->second);
    if (c == self->conns_.end() || c->second.dead || c->second.lost) return;
    c->second.lost = make_error(error_code::unavailable, "connection lost: {}", status_text(status));
  }

  static ucs_status_t on_am(void* arg, const void*, size_t, void* data, size_t length,
                            const ucp_am_recv_param_t* param) {
    auto* self = static_cast<impl*>(arg);
    return self->arrive(self->worker_, nullptr, 0, data, length, param,
                        self->config_.session.limits.message_bytes_max + frame_header_bytes);
  }

  static ucs_status_t on_tensor_am(void* arg, const void* header, size_t header_length, void* data, size_t length,
                                   const ucp_am_recv_param_t* param) {
    auto* self = static_cast<impl*>(arg);
    return self->arrive(self->worker_, header, header_length, data, length, param, self->config_.tensor_bytes_max);
  }

  // A tensor over a data endpoint: the token names the connection; an unknown one (a
  // connection gone, or never ours) drops it.
  static ucs_status_t on_direct_tensor_am(void* arg, const void* header, size_t header_length, void* data,
                                          size_t length, const ucp_am_recv_param_t* param) {
    auto* self = static_cast<impl*>(arg);
    const peer_id peer = header_length > token_bytes ? self->peer_of_token(header) : 0;
    if (peer == 0) return UCS_OK;
    return self->arrive(self->data_worker_, static_cast<const std::byte*>(header) + token_bytes,
                        header_length - token_bytes, data, length, param, self->config_.tensor_bytes_max, peer);
  }

  // A frame over a data endpoint: the token alone is the header.
  static ucs_status_t on_direct_frame_am(void* arg, const void* header, size_t header_length, void* data,
                                         size_t length, const ucp_am_recv_param_t* param) {
    auto* self = static_cast<impl*>(arg);
    const peer_id peer = header_length == token_bytes ? self->peer_of_token(header) : 0;
    if (peer == 0) return UCS_OK;
    return self->arrive(self->data_worker_, nullptr, 0, data, length, param,
                        self->config_.session.limits.message_bytes_max + frame_header_bytes, peer);
  }

  // The connection a data endpoint's token names; 0 (counted as dropped) for none.
  peer_id peer_of_token(const void* header) {
    std::uint64_t token = 0;
    std::memcpy(&token, header, token_bytes);
    const auto it = token == 0 ? by_token_.end() : by_token_.find(token);
    if (it != by_token_.end()) return it->second;
    ++stats_.frames_dropped;
    return 0;
  }

  // One active message on `worker`: a frame (no header) or a tensor (its header frame +
  // payload), from the endpoint param names or, over a data endpoint, from `peer`. A
  // tensor's header is never empty (a frame's header is at least frame_header_bytes).
  ucs_status_t arrive(ucp_worker_h worker, const void* header, size_t header_length, void* data, size_t length,
                      const ucp_am_recv_param_t* param, std::uint64_t length_max, peer_id peer = 0) {
    if (peer == 0 && !(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP)) return UCS_OK;   // not ours
    arrival a;
    a.ep = peer == 0 ? param->reply_ep : nullptr;
    a.peer = peer;
    a.worker = worker;
    a.length = length;
    a.item = std::make_shared<inbound>();
    if (header) {
      a.item->tensor = true;
      const auto* h = static_cast<const std::byte*>(header);
      if (header_length <= tensor_header_bytes_max) a.item->tensor_header.assign(h, h + header_length);
    }
    if (length > length_max || (header && header_length > tensor_header_bytes_max)) {
      a.item->failed = true;   // too large to even fetch: the session closes the connection
      a.item->ready = true;
    } else if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
      a.rndv_desc = data;
      arrivals_.push_back(std::move(a));
      return UCS_INPROGRESS;
    } else {
      const auto* bytes = static_cast<const std::byte*>(data);
      if (a.item->tensor) {
        a.item->tensor_data = tensor_buffer(length);
        std::copy(bytes, bytes + length, a.item->tensor_data.data());
      } else {
        a.item->bytes.assign(bytes, bytes + length);
      }
      a.item->ready = true;
    }
    arrivals_.push_back(std::move(a));
    return UCS_OK;
  }

  // `now`: when this turn's progress ended, which is when its arrivals count as heard.
  void handle_arrivals(clock_time now) {
    arrivals_batch_.swap(arrivals_);   // both keep their capacity
    for (auto& a : arrivals_batch_) {
      peer_id from = a.peer;
      if (from == 0)
        if (auto it = by_ep_.find(a.ep); it != by_ep_.end()) from = it->second;
      connection* conn = nullptr;
      if (auto c = conns_.find(from); c != conns_.end() && !c->second.dead && !c->second.closing_until)
        conn = &c->second;
      if (conn && conn->inbox_bytes + a.length > config_.inbound_bytes_max) {
        kill(*conn, make_error(error_code::overloaded,
                               "more than inbound_bytes_max ({}) bytes from the peer wait to be handled",
                               config_.inbound_bytes_max));
        conn = nullptr;
      }
      if (a.rndv_desc) {
        if (!conn) {
          ucp_am_data_release(a.worker, a.rndv_desc);
          continue;
        }
        a.item->length = a.length;
        a.item->rndv_desc = a.rndv_desc;
        a.item->rndv_worker = a.worker;
        // Fetched now only from a proven peer: before that it waits, unfetched, for the
        // frames ahead of it (a peer's proof can precede its first frames in one batch).
        if (conn->session->is_up()) fetch(*conn, a.item);
      }
      if (conn) {
        a.item->length = a.length;
        conn->inbox_bytes += a.length;
        const bool early = a.peer != 0 && !conn->peer_switched;   // over the data endpoint, before DataFrames
        (early ? conn->held : conn->inbox).push_back(std::move(a.item));
        // Arrival is life, though the frame may wait behind a tensor still being fetched:
        // a multi-second transfer must not get its live peer closed as silent.
        conn->session->heard(now);
      }
    }
    arrivals_batch_.clear();
    bool all_direct = !conns_.empty();
    for (auto& [id, conn] : conns_) {
      all_direct = all_direct && conn.data_ep && conn.peer_switched;
      while (!conn.dead && !conn.closing_until && !conn.inbox.empty()) {
        inbound& front = *conn.inbox.front();
        // Nothing large from a peer that has not proved the secret (after the frames ahead
        // of it, the peer's proof among them, have been handled).
        const bool large = front.tensor || front.length > handshake_frame_bytes_max;
        if (large && !conn.session->is_up()) {
          kill(conn, make_error(error_code::unauthenticated,
                                "a {} of {} bytes before the peer proved the cluster secret",
                                front.tensor ? "tensor" : "frame", front.length));
          break;
        }
        if (front.rndv_desc) fetch(conn, conn.inbox.front());
        if (conn.dead || !front.ready) break;
        auto item = std::move(conn.inbox.front());
        conn.inbox.pop_front();
        conn.inbox_bytes -= item->length;
        ++stats_.frames_received;
        stats_.bytes_received += item->bytes.size() + item->tensor_data.size();
        if (item->failed) {
          kill(conn, make_error(error_code::corrupt_data, "a message over the size limits or not received "
                                "(message_bytes_max {}, tensor_bytes_max {})",
                                config_.session.limits.message_bytes_max, config_.tensor_bytes_max));
          break;
        }
        if (item->tensor)
          apply(conn, conn.session->on_frame(item->tensor_header, now), &item->tensor_data);
        else
          apply(conn, conn.session->on_frame(item->bytes, now));
      }
      // A lost connection's last frames may be in this turn's arrivals or, over the data
      // endpoint, the next turn's: it is closed after that.
      if (conn.lost && !conn.dead && ++conn.lost_turns > 1) kill(conn, std::move(*conn.lost));
    }
    all_direct_ = all_direct;
  }

  // Starts receiving item's rendezvous data into a buffer of its announced size; `ready`
  // once it is there. A buffer that cannot be had closes the connection (OVERLOADED).
  void fetch(connection& conn, const std::shared_ptr<inbound>& shared) {
    inbound& item = *shared;
    void* desc = std::exchange(item.rndv_desc, nullptr);
    std::byte* into = nullptr;
    try {
      if (item.tensor) {
        item.tensor_data = tensor_buffer(item.length);
        into = item.tensor_data.data();
      } else {
        item.bytes.resize(item.length);
        into = item.bytes.data();
      }
    } catch (const std::bad_alloc&) {
      ucp_am_data_release(item.rndv_worker, desc);
      kill(conn, make_error(error_code::overloaded, "no memory for a message of {} bytes", item.length));
      return;
    }
    struct fetch_state { std::shared_ptr<inbound> item; };   // alive until the data is in
    auto* f = new fetch_state{shared};
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.user_data = f;
    rp.cb.recv_am = [](void* request, ucs_status_t status, size_t, void* user) {
      auto* f = static_cast<fetch_state*>(user);
      f->item->ready = true;
      f->item->failed = status != UCS_OK;
      delete f;
      ucp_request_free(request);
    };
    auto req = ucp_am_recv_data_nbx(item.rndv_worker, desc, into, item.length, &rp);
    if (req == nullptr) {
      item.ready = true;
      delete f;
    } else if (UCS_PTR_IS_ERR(req)) {
      item.ready = item.failed = true;
      delete f;
    }
  }

  // `tensor_data`: the payload when the frame was a tensor's header.
  void apply(connection& conn, peer_session::actions a, tensor_buffer* tensor_data = nullptr) {
    for (auto& f : a.send) post(conn, std::move(f));
    if (a.became_up) {
      conn.reported_up = true;
      ++stats_.peers_up;
      handler_.on_peer_up(conn.id, conn.session->peer());
      offer_data_endpoint(conn);
    }
    if (a.deliver && a.deliver->type() == frame_type::data_endpoint) {
      if (tensor_data) {
        a.close = make_error(error_code::corrupt_data, "data_endpoint frame with tensor data");
      } else if (auto e = use_data_endpoint(conn, *a.deliver)) {
        a.close = std::move(*e);
      }
    } else if (a.deliver && a.deliver->type() == frame_type::data_frames) {
      // Only once, on the connection, to a side that offered a data endpoint. What came over
      // that endpoint meanwhile is next in line (handle_arrivals popped this frame).
      if (tensor_data || conn.own_token == 0 || conn.peer_switched) {
        a.close = make_error(error_code::corrupt_data, "unexpected data_frames frame");
      } else {
        conn.peer_switched = true;
        conn.inbox.insert(conn.inbox.begin(), std::make_move_iterator(conn.held.begin()),
                          std::make_move_iterator(conn.held.end()));
        conn.held.clear();
      }
    } else if (a.deliver) {
      // A tensor header comes only with its payload, and a payload only with its header.
      const bool is_tensor = a.deliver->type() == frame_type::tensor;
      if (is_tensor != (tensor_data != nullptr)) {
        a.close = make_error(error_code::corrupt_data, "{} frame {} tensor data", frame_type_name(a.deliver->type()),
                             tensor_data ? "with" : "without");
      } else if (is_tensor) {
        auto header = decode_tensor_header(*a.deliver);
        if (!header)
          a.close = header.err();
        else if (header->bytes != tensor_data->size())
          a.close = make_error(error_code::corrupt_data, "tensor header says {} bytes, {} arrived", header->bytes,
                               tensor_data->size());
        else {
          handler_.on_tensor(conn.id, std::move(*header), std::move(*tensor_data));
          delivered_ = true;
        }
      } else {
        handler_.on_frame(conn.id, std::move(*a.deliver));
        delivered_ = true;
      }
    }
    if (a.close) {
      spdlog::warn("transport: closing connection {} (node {}): {}", conn.id,
                   conn.session ? conn.session->peer().node_id : -1, a.close->to_string());
      kill(conn, std::move(*a.close));
    }
  }

  void tick(clock_time now) {
    for (auto& [id, conn] : conns_)
      if (!conn.dead && conn.session) apply(conn, conn.session->on_tick(now));
  }

  // Marks a connection closed; reap() closes its endpoint and reports it (with the reason
  // this side closed it for, when it did).
  void kill(connection& conn, error why) {
    if (conn.dead) return;
    conn.dead = true;
    if (!conn.closing_until) conn.why = std::move(why);
  }

  // This side closes the connection: reap() closes it once the sends it has made (its
  // goodbye last) have finished, so a rendezvous frame is fetched before the disconnect.
  void begin_close(connection& conn, error why) {
    if (!open_for_sends(conn)) return;
    conn.why = std::move(why);
    conn.closing_until = std::chrono::steady_clock::now() + close_flush_wait;
  }

  static bool open_for_sends(const connection& conn) { return !conn.dead && !conn.lost && !conn.closing_until; }

  void reap(clock_time now) {
    for (auto it = conns_.begin(); it != conns_.end();) {
      auto& conn = it->second;
      if (conn.closing_until && (conn.sends_in_flight == 0 || conn.lost || now >= *conn.closing_until))
        conn.dead = true;
      if (!conn.dead) {
        ++it;
        continue;
      }
      if (conn.session) conn.session->on_closed();
      for (auto* queue : {&conn.inbox, &conn.held})   // rendezvous data never fetched
        for (auto& item : *queue)
          if (item->rndv_desc) ucp_am_data_release(item->rndv_worker, std::exchange(item->rndv_desc, nullptr));
      if (conn.ep) {
        by_ep_.erase(conn.ep);
        close_endpoint(worker_, std::exchange(conn.ep, nullptr));
      }
      // Never forced: a forced close may raise transport errors on a live peer, which an
      // endpoint without failure handling must not risk (UCX also reports a peer's normal
      // close as an error, so "lost" cannot be told from "closed"). Against a dead peer the
      // flush may never finish; its sends then hold their buffers until the process ends.
      if (conn.data_ep) close_endpoint(data_worker_, std::exchange(conn.data_ep, nullptr));
      if (conn.own_token != 0) by_token_.erase(conn.own_token);
      // A peer that connected here and ended before proving the secret was refused, however
      // it ended (our check, its own close, a reset that overtook its proof).
      if (!conn.reported_up && !conn.connector) ++stats_.peers_rejected;
      if (conn.reported_up || conn.connector)
        handler_.on_peer_down(conn.id, conn.why.value_or(make_error(error_code::unavailable, "connection closed")));
      it = conns_.erase(it);
    }
  }

  // A flushing close, never forced (reap).
  void close_endpoint(ucp_worker_h worker, ucp_ep_h ep) {
    ucp_request_param_t rp{};
    auto req = ucp_ep_close_nbx(ep, &rp);
    if (req != nullptr && !UCS_PTR_IS_ERR(req)) closing_.push_back({worker, req});
  }

  // Frees the requests of endpoint closes that have finished (a close against a dead peer
  // may never finish; it stays counted in closes_pending).
  void finish_closes() {
    if (closing_.empty()) return;
    std::erase_if(closing_, [](const auto& close) {
      if (ucp_request_check_status(close.second) == UCS_INPROGRESS) return false;
      ucp_request_free(close.second);
      return true;
    });
    stats_.closes_pending = closing_.size();
  }

  void shutdown() {
    const auto why = make_error(error_code::cancelled, "transport shutting down");
    for (auto& [id, conn] : conns_) {
      if (open_for_sends(conn)) {
        if (conn.ep) post_own(conn, encode_goodbye("shutting down"));   // after its frames
        begin_close(conn, why);
      } else if (!conn.closing_until) {
        kill(conn, why);   // lost: nothing to wait for
      }
    }
    // Let the sends, then the closes (and their goodbyes) finish, for a bounded time.
    const auto give_up = std::chrono::steady_clock::now() + close_flush_wait + std::chrono::seconds(2);
    reap(std::chrono::steady_clock::now());
    while ((!conns_.empty() || !closing_.empty()) && std::chrono::steady_clock::now() < give_up) {
      ucp_worker_progress(worker_);
      if (data_worker_) ucp_worker_progress(data_worker_);
      reap(std::chrono::steady_clock::now());
      finish_closes();
    }
    for (auto& [id, conn] : conns_) kill(conn, why);   // not reached: reap ends each by close_flush_wait
    reap(std::chrono::steady_clock::now());
    for (auto [worker, req] : closing_) ucp_request_cancel(worker, req);
    closing_.clear();
    // Drop rendezvous descriptors never fetched.
    for (auto& a : arrivals_)
      if (a.rndv_desc) ucp_am_data_release(a.worker, a.rndv_desc);
    arrivals_.clear();
    handler_.after_callbacks();   // reap's on_peer_down callbacks
    publish_stats();
  }

  // The transport whose progress thread this is (null on every other thread).
  static thread_local const impl* progress_of;

  transport_config config_;
  cluster_secret secret_;
  node_identity self_;
  transport_handler& handler_;

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;        // connections, the listener
  ucp_worker_h data_worker_ = nullptr;   // data endpoints (null without data_endpoints)
  ucp_listener_h listener_ = nullptr;
  int worker_fd_ = -1, data_worker_fd_ = -1, wake_fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<peer_id> next_peer_{0};

  std::mutex mu_;
  std::deque<command> commands_;
  bool sleeping_ = false;        // the progress thread sleeps or is about to (under mu_)
  std::deque<command> batch_;   // the commands run_commands took (progress thread only)
  bool delivered_ = false;       // this turn handed the handler a frame or tensor
  bool sent_here_ = false;       // this turn's callbacks sent a frame (send() on this thread)
  bool all_direct_ = false;      // every connection's frames take its data endpoint, both ways
  // The counters: kept by the progress thread in stats_, published once per turn when they
  // changed (one lock a turn instead of a few per message).
  transport_stats stats_;
  transport_stats last_published_;
  mutable std::mutex stats_mu_;
  transport_stats published_stats_;   // under stats_mu_

  // Progress thread only.
  std::unordered_map<peer_id, connection> conns_;
  std::unordered_map<ucp_ep_h, peer_id> by_ep_;
  std::unordered_map<std::uint64_t, peer_id> by_token_;   // own_token of each connection
  std::vector<std::byte> worker_address_;   // offered in DataEndpoint (empty: none)
  std::string host_key_;
  std::vector<arrival> arrivals_;
  std::vector<arrival> arrivals_batch_;   // the arrivals handle_arrivals works through
  std::vector<std::pair<ucp_worker_h, void*>> closing_;   // endpoint closes and their worker
};

thread_local const ucx_transport::impl* ucx_transport::impl::progress_of = nullptr;

status validate(const transport_config& c) {
  DSRT_TRY(validate(c.session));
  if (c.connections_max < 1 || c.send_queue_frames_max < 1 || c.peer_sends_in_flight_max < 1)
    return make_error(error_code::invalid_argument,
                      "connections_max, send_queue_frames_max and peer_sends_in_flight_max must be at least 1");
  if (c.handshakes_max < 1 || c.handshakes_max > c.connections_max)
    return make_error(error_code::invalid_argument, "handshakes_max ({}) must be in [1, connections_max ({})]",
                      c.handshakes_max, c.connections_max);
  if (c.inbound_bytes_max < c.tensor_bytes_max ||
      c.inbound_bytes_max < c.session.limits.message_bytes_max + frame_header_bytes)
    return make_error(error_code::invalid_argument,
                      "inbound_bytes_max ({}) must hold one largest tensor and one largest frame", c.inbound_bytes_max);
  if (c.busy_poll_us.count() < 0 || c.busy_poll_us > std::chrono::seconds(1))
    return make_error(error_code::invalid_argument, "busy_poll_us must be in [0, 1 s]");
  if (c.tick_interval_ms.count() <= 0 || c.tick_interval_ms > c.session.heartbeat_interval_ms)
    return make_error(error_code::invalid_argument, "tick_interval_ms must be in (0, heartbeat_interval_ms]");
  return ok_t{};
}

result<std::unique_ptr<ucx_transport>> ucx_transport::start(const transport_config& config,
                                                            const cluster_secret& secret, node_identity self,
                                                            transport_handler& handler) {
  DSRT_TRY(validate(config));
  auto i = std::make_unique<impl>(config, secret, self, handler);
  DSRT_TRY(i->init());
  return std::unique_ptr<ucx_transport>(new ucx_transport(std::move(i)));
}

ucx_transport::ucx_transport(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
ucx_transport::~ucx_transport() = default;
std::uint16_t ucx_transport::port() const { return impl_->port(); }
peer_id ucx_transport::connect(const std::string& host, std::uint16_t port) { return impl_->connect(host, port); }
status ucx_transport::send(peer_id peer, frame_bytes frame) { return impl_->send(peer, std::move(frame)); }
void ucx_transport::close(peer_id peer, std::string reason) { impl_->close(peer, std::move(reason)); }
status ucx_transport::send_tensor(peer_id peer, tensor_header_wire header, std::shared_ptr<const void> owner,
                                  std::span<const std::byte> data) {
  return impl_->send_tensor(peer, std::move(header), std::move(owner), data);
}
transport_stats ucx_transport::stats() const { return impl_->stats(); }

}  // namespace dsrt::transport
