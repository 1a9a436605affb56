// The data endpoints' workers (ucx_transport_impl.h, data_worker): made as connections need
// them, polled and armed with the connections' worker, destroyed when nothing uses them.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "transport/ucx_transport_impl.h"

namespace dsrt::transport {

status ucx_transport::impl::add_data_worker() {
  auto d = std::make_unique<data_worker>();
  d->self = this;
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
    if (length <= worker_address_bytes_max) {
      const auto* bytes = reinterpret_cast<const std::byte*>(address);
      d->address.assign(bytes, bytes + length);
    }
    ucp_worker_release_address(d->worker, address);
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

data_worker* ucx_transport::impl::data_worker_for_connection() {
  if (!config_.data_endpoints || host_key_.empty()) return nullptr;
  if (data_endpoints_held_ >= config_.data_endpoints_max) {
    if (!std::exchange(data_endpoints_spent_, true))
      spdlog::warn("transport: {} data endpoints held (data_endpoints_max): new connections keep their traffic on "
                   "TCP until the data workers of gone connections are destroyed",
                   data_endpoints_held_);
    return nullptr;
  }
  data_endpoints_spent_ = false;
  if (data_workers_.empty() || data_workers_.back()->connections >= config_.data_endpoints_per_worker) {
    if (auto s = add_data_worker(); !s) {
      spdlog::warn("transport: no new data worker ({}): the connection keeps its traffic on TCP", s.err().to_string());
      return nullptr;
    }
  }
  data_worker* d = data_workers_.back().get();
  if (d->address.empty()) return nullptr;
  return d;
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
  for (std::size_t i = 0; i < data_workers_.size();) {
    data_worker& d = *data_workers_[i];
    const bool newest_with_room = i + 1 == data_workers_.size() && d.connections < config_.data_endpoints_per_worker;
    if (newest_with_room || d.live_connections > 0 || d.requests > 0 ||
        std::any_of(closing_.begin(), closing_.end(), [&](const pending_close& c) { return c.worker == d.worker; })) {
      ++i;
      continue;
    }
    ucp_worker_destroy(d.worker);
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
