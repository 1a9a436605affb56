#include "transport/ucx_transport_impl.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "transport/hop_trace.h"

namespace dsrt::transport {
namespace {
// An IPv4 address as text ("10.0.0.3").
std::string address_text(in_addr a) {
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &a, text, sizeof text);
  return text;
}

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

ucx_transport::impl::~impl() {
  if (thread_.joinable()) {
    stop_ = true;
    wake();
    thread_.join();
  }
  if (listener_) ucp_listener_destroy(listener_);
  for (auto& d : data_workers_) ucp_worker_destroy(d->worker);
  if (worker_) ucp_worker_destroy(worker_);
  if (context_) ucp_cleanup(context_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

status ucx_transport::impl::init() {
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
  DSRT_TRY(set_handler(worker_, frame_am_id, &impl::on_am, this));
  DSRT_TRY(set_handler(worker_, tensor_am_id, &impl::on_tensor_am, this));
  if (config_.data_endpoints) {
    host_key_ = host_key();
    self_process_ = this_process();
    // The nodes' first data worker, made now so that a host that cannot have one says so
    // at the start (connections then stay on TCP).
    if (host_key_.empty())
      spdlog::warn("transport: no host key (/proc/sys/kernel/random/boot_id): frames and tensors stay on connections");
    else if (auto s = add_data_worker(/*clients=*/false); !s)
      spdlog::warn("transport: no data worker ({}): frames and tensors stay on connections", s.err().to_string());
  }

  if (config_.listen) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(config_.listen_port);
    if (::inet_pton(AF_INET, config_.listen_host.c_str(), &addr.sin_addr) != 1) {
      // A name (localhost, this host's): its first IPv4 address.
      addrinfo hints{};
      hints.ai_family = AF_INET;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* found = nullptr;
      if (const int rc = ::getaddrinfo(config_.listen_host.c_str(), nullptr, &hints, &found); rc != 0 || !found) {
        // A resolver that could not answer now is not the name's fault.
        const auto why = rc == EAI_SYSTEM ? std::string(std::strerror(errno)) : rc != 0 ? ::gai_strerror(rc) : "no address";
        if (rc == EAI_AGAIN)
          return make_error(error_code::unavailable, "cannot resolve listen_host '{}' now ({})", config_.listen_host, why);
        return make_error(error_code::invalid_argument, "listen_host '{}' is neither an IPv4 address nor a name with one ({})",
                          config_.listen_host, why);
      }
      addr.sin_addr = reinterpret_cast<const sockaddr_in*>(found->ai_addr)->sin_addr;
      ::freeaddrinfo(found);
      // A host's own name may resolve to a loopback address (Debian's 127.0.1.1): say which.
      const bool loopback = (ntohl(addr.sin_addr.s_addr) >> 24) == 127;
      spdlog::log(loopback ? spdlog::level::warn : spdlog::level::info, "transport: listen host '{}' is {}{}",
                  config_.listen_host, address_text(addr.sin_addr),
                  loopback ? ": a loopback address, which other hosts cannot reach" : "");
    }
    ucp_listener_params_t lp{};
    lp.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
    lp.sockaddr.addr = reinterpret_cast<const sockaddr*>(&addr);
    lp.sockaddr.addrlen = sizeof(addr);
    lp.conn_handler.cb = &impl::on_conn_request;
    lp.conn_handler.arg = this;
    if (auto l = ucp_listener_create(worker_, &lp, &listener_); l != UCS_OK)
      return make_error(error_code::unavailable, "cannot listen on {}:{}: {}",
                        address_text(addr.sin_addr) == config_.listen_host
                            ? config_.listen_host
                            : fmt::format("{} ({})", config_.listen_host, address_text(addr.sin_addr)),
                        config_.listen_port, status_text(l));
    ucp_listener_attr_t attr{};
    attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
    if (ucp_listener_query(listener_, &attr) == UCS_OK)
      port_ = ntohs(reinterpret_cast<const sockaddr_in*>(&attr.sockaddr)->sin_port);
  }
  thread_ = std::thread([this] { run(); });
  return ok_t{};
}

status ucx_transport::impl::make_worker(ucp_worker_h& worker, int& fd, bool receives_only) {
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  if (receives_only) {
    wp.field_mask |= UCP_WORKER_PARAM_FIELD_EVENTS;
    wp.events = UCP_WAKEUP_RX;
  }
  if (auto w = ucp_worker_create(context_, &wp, &worker); w != UCS_OK) {
    worker = nullptr;
    return make_error(error_code::unavailable, "UCX worker: {}", status_text(w));
  }
  if (auto e = ucp_worker_get_efd(worker, &fd); e != UCS_OK) {
    ucp_worker_destroy(std::exchange(worker, nullptr));
    return make_error(error_code::unavailable, "UCX worker event fd: {}", status_text(e));
  }
  return ok_t{};
}

status ucx_transport::impl::set_handler(ucp_worker_h worker, unsigned am_id, ucp_am_recv_callback_t cb, void* arg) {
  ucp_am_handler_param_t hp{};
  hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                  UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
  hp.id = am_id;
  hp.cb = cb;
  hp.arg = arg;
  hp.flags = UCP_AM_FLAG_WHOLE_MSG;
  if (auto h = ucp_worker_set_am_recv_handler(worker, &hp); h != UCS_OK)
    return make_error(error_code::unavailable, "UCX active-message handler: {}", status_text(h));
  return ok_t{};
}

peer_id ucx_transport::impl::connect(const std::string& host, std::uint16_t port) {
  const peer_id id = ++next_peer_;
  enqueue(connect_cmd{id, host, port}, /*bounded=*/false);
  return id;
}

status ucx_transport::impl::send(peer_id peer, frame_bytes frame) {
  // On the progress thread (a handler callback, or an actor it runs) a frame goes out at
  // once unless commands wait: those were queued before it (by whoever ran the sending
  // actor last), and go first.
  if (progress_of == this) {
    hop_trace::mark(hop_trace::stage::sending);
    if (!commands_waiting_.load(std::memory_order_acquire)) {
      if (send_now(send_cmd{peer, std::move(frame)})) sent_here_ = true;
      return ok_t{};
    }
  }
  if (!enqueue(send_cmd{peer, std::move(frame)}, /*bounded=*/true))
    return make_error(error_code::overloaded, "transport send queue full ({} frames, send_queue_frames_max)",
                      config_.send_queue_frames_max);
  return ok_t{};
}

status ucx_transport::impl::send_tensor(peer_id peer, tensor_header_wire header, std::shared_ptr<const void> owner,
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

transport_stats ucx_transport::impl::stats() const {
  static_assert(sizeof(transport_stats) == 18 * sizeof(std::uint64_t), "a new counter: add it to counters and here");
  transport_stats s;
  s.frames_sent = stats_.frames_sent;
  s.frames_received = stats_.frames_received;
  s.bytes_sent = stats_.bytes_sent;
  s.bytes_received = stats_.bytes_received;
  s.peers_up = stats_.peers_up;
  s.peers_rejected = stats_.peers_rejected;
  s.frames_dropped = stats_.frames_dropped;
  s.data_endpoints = stats_.data_endpoints;
  s.tensors_direct = stats_.tensors_direct;
  s.frames_direct = stats_.frames_direct;
  s.tensors_waited = stats_.tensors_waited;
  s.closes_pending = stats_.closes_pending;
  s.sleeps = stats_.sleeps;
  s.stalls = stats_.stalls;
  s.data_workers = stats_.data_workers;
  s.data_workers_destroyed = stats_.data_workers_destroyed;
  s.data_sends_waiting = stats_.data_sends_waiting;
  s.sends_stuck = stats_.sends_stuck;
  return s;
}

bool ucx_transport::impl::enqueue(command c, bool bounded) {
  bool asleep = false;
  {
    std::lock_guard lock(mu_);
    if (bounded && commands_.size() >= config_.send_queue_frames_max) return false;
    commands_.push_back(std::move(c));
    commands_waiting_.store(true, std::memory_order_release);
    asleep = sleeping_;
  }
  if (asleep) wake();
  return true;
}

void ucx_transport::impl::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof(one));
}

void ucx_transport::impl::run() {
  progress_of = this;
  // The clock as last read: after every turn that did anything, after every sleep, and
  // every idle_turns_per_clock_read turns of idle polling -- never between a message's
  // arrival and the frames its handlers send.
  auto now = std::chrono::steady_clock::now();
  auto next_tick = now, last_busy = now, last_connection_poll = now;
  last_tick_ = now;
  bool poll_connections = true;
  int idle_turns = 0;
  while (!stop_) {
    // Traffic: a send of the application's or a frame handed to it (not heartbeats, which
    // would keep an idle node polling).
    delivered_ = sent_here_ = false;
    const bool sent = run_commands();
    // While every connection's traffic takes its data endpoint, the connections' worker
    // carries only handshakes, heartbeats and failures: polled every
    // connection_poll_interval and before sleeping, it spares the data path a TCP
    // epoll_wait on each turn.
    poll_connections = poll_connections || !all_direct_ || now - last_connection_poll >= connection_poll_interval;
    bool progressed = false;
    // Data endpoints first: with every connection's traffic on them, the turn's data.
    for (auto& d : data_workers_)
      while (ucp_worker_progress(d->worker) != 0) progressed = true;
    if (poll_connections) {
      while (ucp_worker_progress(worker_) != 0) progressed = true;
      last_connection_poll = now;
    }
    post_waiting_sends();
    handle_arrivals(now);
    if (now >= next_tick) {
      tick(now);
      next_tick = now + config_.tick_interval_ms;
    }
    reap(now);
    finish_closes();
    if (std::exchange(retire_check_, false)) retire_data_workers();
    if (delivered_) hop_trace::mark(hop_trace::stage::callbacks);
    handler_.after_callbacks();
    const bool busy = sent || delivered_ || sent_here_;
    if (busy || progressed || ++idle_turns >= idle_turns_per_clock_read) {
      now = std::chrono::steady_clock::now();
      idle_turns = 0;
    }
    // Busy polling (busy_poll_us): a turn with traffic restarts the window, and until it
    // runs out the thread polls instead of sleeping, so nothing has to wake it.
    if (busy) last_busy = now;
    if (now - last_busy < config_.busy_poll_us) {
      poll_connections = false;
      continue;
    }
    if (!std::exchange(poll_connections, true)) continue;   // both workers, then sleep
    if (sent_here_) continue;   // progress what the callbacks sent before arming
    if (live_direct_sends_ > 0) continue;   // a live peer's data-endpoint sends out: polled (init())
    if (ucp_worker_arm(worker_) == UCS_ERR_BUSY) continue;   // more events already
    if (!arm_data_workers()) continue;
    {
      std::lock_guard lock(mu_);
      if (!commands_.empty()) continue;
      sleeping_ = true;   // from here on enqueue() wakes this thread
    }
    ++stats_.sleeps;
    auto& fds = poll_fds();
    // Rounded up: a wait rounded down to 0 would spin through the tick's last millisecond.
    const auto wait = std::chrono::ceil<milliseconds>(next_tick - std::chrono::steady_clock::now());
    ::poll(fds.data(), fds.size(), int(std::max<std::int64_t>(0, wait.count())));
    {
      std::lock_guard lock(mu_);
      sleeping_ = false;
    }
    std::uint64_t drained;
    while (::read(wake_fd_, &drained, sizeof(drained)) > 0) {
    }
    now = std::chrono::steady_clock::now();
    idle_turns = 0;
  }
  shutdown();
}

bool ucx_transport::impl::run_commands() {
  if (!commands_waiting_.load(std::memory_order_acquire)) return false;   // no lock on an idle turn
  {
    std::lock_guard lock(mu_);
    batch_.swap(commands_);
    commands_waiting_.store(false, std::memory_order_relaxed);
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

bool ucx_transport::impl::send_now(send_cmd s) {
  auto it = conns_.find(s.peer);
  if (it == conns_.end() || !open_for_sends(it->second) || !it->second.session->is_up()) {
    ++stats_.frames_dropped;
    return false;
  }
  post_own(it->second, std::move(s.frame));
  return true;
}

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
  if (c.data_endpoints_per_worker < 1 || c.data_endpoints_per_worker > data_endpoints_per_worker_max)
    return make_error(error_code::invalid_argument, "data_endpoints_per_worker ({}) must be in [1, {}]",
                      c.data_endpoints_per_worker, data_endpoints_per_worker_max);
  if (c.data_sends_posted_max < 1 || c.data_sends_posted_max > c.peer_sends_in_flight_max)
    return make_error(error_code::invalid_argument, "data_sends_posted_max ({}) must be in [1, peer_sends_in_flight_max ({})]",
                      c.data_sends_posted_max, c.peer_sends_in_flight_max);
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
