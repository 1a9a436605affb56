// The data endpoints' workers (ucx_transport_impl.h, data_worker): made as connections need
// them, polled and armed with the connections' worker, destroyed when nothing uses them.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "transport/local_process.h"
#include "transport/ucx_transport_impl.h"

namespace dsrt::transport {

status ucx_transport::impl::add_data_worker(bool clients) {
  auto d = std::make_unique<data_worker>();
  d->self = this;
  d->clients = clients;
  // Its event fd wakes on arrivals only: a send to a peer that died with its shared-memory
  // FIFO full never finishes (a data endpoint has no failure handling to fail it), and with
  // send events armed the worker stayed "busy" for good -- a head spun a core at 100 %
  // after a client was killed mid-stream. run() polls on its own while a live connection's
  // data-endpoint sends are unfinished (live_direct_sends_).
  DSRT_TRY(make_worker(d->worker, d->fd, /*receives_only=*/true));
  const auto made = [&]() -> status {
    DSRT_TRY(set_handler(d->worker, direct_tensor_am_id, &impl::on_direct_tensor_am, d.get()));
    DSRT_TRY(set_handler(d->worker, direct_frame_am_id, &impl::on_direct_frame_am, d.get()));
    ucp_address_t* address = nullptr;
    std::size_t length = 0;
    if (auto s = ucp_worker_get_address(d->worker, &address, &length); s != UCS_OK)
      return make_error(error_code::unavailable, "UCX worker address: {}", status_text(s));
    const auto* bytes = reinterpret_cast<const std::byte*>(address);
    if (length <= worker_address_bytes_max) d->address.assign(bytes, bytes + length);
    ucp_worker_release_address(d->worker, address);
    if (d->address.empty())
      return make_error(error_code::unavailable, "UCX worker address of {} bytes, at most {}", length,
                        worker_address_bytes_max);
    return ok_t{};
  }();
  if (!made) {
    ucp_worker_destroy(d->worker);
    return made;
  }
  data_workers_.push_back(std::move(d));
  stats_.data_workers = data_workers_.size();
  poll_fds_stale_ = true;
  return ok_t{};
}

data_worker* ucx_transport::impl::data_worker_for_connection(bool client) {
  if (!config_.data_endpoints || host_key_.empty()) return nullptr;
  if (data_endpoints_held_ >= config_.data_endpoints_max) {
    if (!std::exchange(data_endpoints_spent_, true))
      spdlog::warn("transport: {} data endpoints held (data_endpoints_max): new connections keep their traffic on "
                   "TCP until the data workers of gone connections are destroyed",
                   data_endpoints_held_);
    return nullptr;
  }
  data_endpoints_spent_ = false;
  // The newest of its kind (clients apart from nodes, whose connections last), unless it is
  // full or lingers.
  const auto newest = std::find_if(data_workers_.rbegin(), data_workers_.rend(),
                                   [&](const auto& d) { return d->clients == client; });
  if (newest != data_workers_.rend() && (*newest)->connections < config_.data_endpoints_per_worker &&
      !(*newest)->linger_until)
    return newest->get();
  if (auto s = add_data_worker(client); !s) {
    spdlog::warn("transport: no new data worker ({}): the connection keeps its traffic on TCP", s.err().to_string());
    return nullptr;
  }
  return data_workers_.back().get();
}

void ucx_transport::impl::give_data_worker(connection& conn, data_worker& d) {
  conn.data = &d;
  ++d.connections;
  ++d.live_connections;
}

void ucx_transport::impl::take_back_data_worker(connection& conn) {
  data_worker& d = *std::exchange(conn.data, nullptr);
  --d.live_connections;
  --d.connections;   // its place goes to the next connection
  if (conn.own_token != 0) by_token_.erase(std::exchange(conn.own_token, 0));   // nothing may arrive there
  retire_check_ = true;
  // Anything that came over it came from a peer that offered none: the peer broke the
  // protocol, and what it sent goes now, while the worker it may wait in is still there.
  if (conn.held.empty()) return;
  for (auto& item : conn.held)
    if (item->rndv_desc) ucp_am_data_release(item->rndv_worker, std::exchange(item->rndv_desc, nullptr));
  conn.held.clear();
  kill(conn, make_error(error_code::corrupt_data, "frames over a data endpoint from a peer that offered none"));
}

void ucx_transport::impl::send_finished(data_worker& d, peer_id peer) {
  --d.sends;
  if (auto it = d.stuck.find(peer); it != d.stuck.end()) {
    stats_.sends_stuck = stats_.sends_stuck - 1;
    if (--it->second.sends == 0) d.stuck.erase(it);
  }
  if (d.sends == 0) retire_check_ = true;
}

data_worker* ucx_transport::impl::data_worker_of(ucp_worker_h worker) {
  for (auto& d : data_workers_)
    if (d->worker == worker) return d.get();
  return nullptr;
}

bool ucx_transport::impl::progress_data_workers() {
  bool progressed = false;
  for (auto& d : data_workers_)
    while (ucp_worker_progress(d->worker) != 0) progressed = true;
  return progressed;
}

bool ucx_transport::impl::arm_data_workers() {
  for (auto& d : data_workers_)
    if (ucp_worker_arm(d->worker) == UCS_ERR_BUSY) return false;
  return true;
}

void ucx_transport::impl::retire_data_workers() {
  data_workers_stuck_ = false;
  const auto now = std::chrono::steady_clock::now();
  // Workers whose connections have all gone linger (ucx_transport_impl.h,
  // data_worker_linger) in a process that does not listen, and in a head after a stall of
  // its own: one tick() has found, or one it is about to find (the turn that sees the
  // peers' closes first may come before the tick).
  const bool stalled = (last_stall_ && now - *last_stall_ <= config_.session.heartbeat_timeout_ms) ||
                       now - last_tick_ > 2 * config_.session.heartbeat_interval_ms;
  const bool may_linger = !config_.listen || stalled;
  for (std::size_t i = 0; i < data_workers_.size();) {
    data_worker& d = *data_workers_[i];
    // Lingering, and longer while gone connections' frames still arrive.
    if (may_linger && d.live_connections == 0 && d.connections > 0 && !d.linger_until) {
      d.linger_until = now + data_worker_linger;
      d.dropped_since_check = false;
    }
    if (d.linger_until && now >= *d.linger_until && std::exchange(d.dropped_since_check, false))
      d.linger_until = now + data_worker_linger;
    const bool lingering = d.linger_until && now < *d.linger_until;
    const auto is_its = [&](const pending_close& c) { return c.worker == d.worker; };
    const bool idle = d.sends == 0 && d.fetches == 0 && std::none_of(closing_.begin(), closing_.end(), is_its);
    // Only sends of forgotten connections to peers that have ended are left (their
    // flushing closes never finish either): UCX would hold them, and the worker, for the
    // life of the process. With no live connection every send left is one of `stuck`.
    const bool abandoned =
        !idle && d.live_connections == 0 && d.fetches == 0 && !d.stuck.empty() &&
        std::all_of(d.stuck.begin(), d.stuck.end(), [](const auto& s) { return process_gone(s.second.peer); });
    // The newest of its kind stays while no connection has it yet (the nodes' first, made
    // at the start; one whose only connection was to another host).
    const bool newest = std::none_of(data_workers_.begin() + std::ptrdiff_t(i) + 1, data_workers_.end(),
                                     [&](const auto& later) { return later->clients == d.clients; });
    if ((d.connections == 0 && newest) || d.live_connections > 0 || (!idle && !abandoned) || (lingering && !abandoned)) {
      data_workers_stuck_ = data_workers_stuck_ || !d.stuck.empty() || lingering;
      ++i;
      continue;
    }
    if (abandoned) {
      spdlog::info("transport: destroying a data worker with {} sends to {} ended peers", d.sends, d.stuck.size());
      std::erase_if(closing_, [&](const pending_close& c) {
        if (!is_its(c)) return false;
        ucp_request_cancel(c.worker, c.request);
        ucp_request_free(c.request);
        return true;
      });
      stats_.closes_pending = closing_.size();
    }
    // UCX ends what is left of its requests here (their callbacks find no connection).
    ucp_worker_destroy(d.worker);
    for (const auto& [id, s] : d.stuck) stats_.sends_stuck = stats_.sends_stuck - s.sends;
    data_endpoints_held_ -= d.endpoints;
    ++stats_.data_workers_destroyed;
    data_workers_.erase(data_workers_.begin() + std::ptrdiff_t(i));
    stats_.data_workers = data_workers_.size();
    poll_fds_stale_ = true;
  }
}

std::vector<pollfd>& ucx_transport::impl::poll_fds() {
  if (std::exchange(poll_fds_stale_, false)) {
    poll_fds_.clear();
    poll_fds_.push_back({wake_fd_, POLLIN, 0});
    poll_fds_.push_back({worker_fd_, POLLIN, 0});
    for (auto& d : data_workers_) poll_fds_.push_back({d->fd, POLLIN, 0});
  }
  return poll_fds_;
}

}  // namespace dsrt::transport
