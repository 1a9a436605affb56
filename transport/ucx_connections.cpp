#include "transport/ucx_transport_impl.h"

#include <algorithm>
#include <vector>   // std::erase_if

namespace dsrt::transport {

void ucx_transport::impl::make_room_for_a_handshake() {
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

void ucx_transport::impl::on_conn_request(ucp_conn_request_h request, void* arg) {
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
  self->direct_changed_ = true;
  ucp_ep_params_t ep{};
  ep.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLER |
                  UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  ep.conn_request = request;
  ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ep.err_handler.cb = &impl::on_ep_error;
  ep.err_handler.arg = self;
  if (auto s = ucp_ep_create(self->worker_, &ep, &conn.ep); s != UCS_OK) {
    conn.ep = nullptr;
    self->kill(conn, make_error(error_code::unavailable, "cannot accept a connection: {}", status_text(s)));
    return;
  }
  self->start_session(conn, auth_direction::acceptor);
}

void ucx_transport::impl::on_ep_error(void* arg, ucp_ep_h ep, ucs_status_t status) {
  auto* self = static_cast<impl*>(arg);
  auto it = self->by_ep_.find(ep);
  if (it == self->by_ep_.end()) return;
  auto c = self->conns_.find(it->second);
  if (c == self->conns_.end() || c->second.dead || c->second.lost) return;
  c->second.lost = make_error(error_code::unavailable, "connection lost: {}", status_text(status));
  self->attend(c->second);
}

void ucx_transport::impl::kill(connection& conn, error why) {
  if (conn.dead) return;
  conn.dead = true;
  if (!conn.closing_until) conn.why = std::move(why);
  end(conn);
}

void ucx_transport::impl::begin_close(connection& conn, error why) {
  if (!open_for_sends(conn)) return;
  conn.why = std::move(why);
  conn.closing_until = std::chrono::steady_clock::now() + close_flush_wait;
  end(conn);
}

void ucx_transport::impl::end(connection& conn) {
  if (std::exchange(conn.ending, true)) return;
  ending_.push_back(conn.id);
}

void ucx_transport::impl::reap(clock_time now) {
  ending_batch_.swap(ending_);
  for (const peer_id id : ending_batch_) {
    auto it = conns_.find(id);
    if (it == conns_.end()) continue;
    auto& conn = it->second;
    if (conn.closing_until && (conn.sends_in_flight == 0 || conn.lost || now >= *conn.closing_until))
      conn.dead = true;
    if (!conn.dead) {   // closing: sends still out
      ending_.push_back(id);
      continue;
    }
    if (conn.session) conn.session->on_closed();
    for (auto* queue : {&conn.inbox, &conn.held})   // rendezvous data never fetched
      for (auto& item : *queue)
        if (item->rndv_desc) ucp_am_data_release(item->rndv_worker, std::exchange(item->rndv_desc, nullptr));
    // Waited for at shutdown: closes of connections this side closed whose sends all
    // finished (the flush is then quick); not those of lost peers or of closes that ran
    // out of time with sends still out (a peer not reading).
    const bool awaited = conn.closing_until && !conn.lost && conn.sends_in_flight == 0;
    if (conn.ep) {
      by_ep_.erase(conn.ep);
      close_endpoint(worker_, std::exchange(conn.ep, nullptr), awaited);
    }
    // Never forced: a forced close may raise transport errors on a live peer, which an
    // endpoint without failure handling must not risk (UCX also reports a peer's normal
    // close as an error, so "lost" cannot be told from "closed"). Against a dead peer the
    // flush may never finish; its sends then hold their buffers until the process ends.
    if (conn.data_ep) close_endpoint(conn.data->worker, std::exchange(conn.data_ep, nullptr), awaited);
    stats_.data_sends_waiting = stats_.data_sends_waiting - conn.direct_waiting.size();   // never posted: they go
    conn.direct_waiting.clear();
    if (conn.data) {
      --conn.data->live_connections;
      if (conn.direct_sends_in_flight > 0) {   // a peer not reading, or dead with its FIFO full
        conn.data->stuck[conn.id] = {conn.peer_process, conn.direct_sends_in_flight};
        stats_.sends_stuck += conn.direct_sends_in_flight;
      }
      retire_check_ = true;
    }
    if (conn.own_token != 0) by_token_.erase(conn.own_token);
    // A peer that connected here and ended before proving the secret was refused, however
    // it ended (our check, its own close, a reset that overtook its proof).
    if (!conn.reported_up && !conn.connector) ++stats_.peers_rejected;
    if (conn.reported_up || conn.connector)
      handler_.on_peer_down(conn.id, conn.why.value_or(make_error(error_code::unavailable, "connection closed")));
    live_direct_sends_ -= conn.direct_sends_in_flight;   // a dead peer's may never finish: not waited for
    conns_.erase(it);
    direct_changed_ = true;
  }
  ending_batch_.clear();
}

void ucx_transport::impl::close_endpoint(ucp_worker_h worker, ucp_ep_h ep, bool awaited) {
  ucp_request_param_t rp{};
  auto req = ucp_ep_close_nbx(ep, &rp);
  if (req != nullptr && !UCS_PTR_IS_ERR(req)) closing_.push_back({worker, req, awaited});
}

void ucx_transport::impl::finish_closes() {
  if (closing_.empty()) return;
  const auto erased = std::erase_if(closing_, [](const pending_close& close) {
    if (ucp_request_check_status(close.request) == UCS_INPROGRESS) return false;
    ucp_request_free(close.request);
    return true;
  });
  if (erased > 0) retire_check_ = true;
  stats_.closes_pending = closing_.size();
}

bool ucx_transport::impl::awaiting_closes() const {
  return std::any_of(closing_.begin(), closing_.end(), [](const pending_close& c) { return c.awaited; });
}

void ucx_transport::impl::shutdown() {
  // No new connections: a peer that reconnects at once (a worker, a client) would otherwise
  // get a connection that keeps the wait below going to its end.
  if (listener_) ucp_listener_destroy(std::exchange(listener_, nullptr));
  // What was asked before the transport went is carried out first: frames queued by other
  // threads (a draining head's last finals) go ahead of the goodbyes.
  run_commands();
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
  while ((!conns_.empty() || awaiting_closes()) && std::chrono::steady_clock::now() < give_up) {
    ucp_worker_progress(worker_);
    progress_data_workers();
    post_waiting_sends();
    reap(std::chrono::steady_clock::now());
    finish_closes();
  }
  for (auto& [id, conn] : conns_) kill(conn, why);   // not reached: reap ends each by close_flush_wait
  reap(std::chrono::steady_clock::now());
  // Closes still unfinished (a peer that never answers the flush) are given up: released,
  // so the worker's destruction below frees them (UCX asserts on a request never released).
  for (const pending_close& c : closing_) {
    ucp_request_cancel(c.worker, c.request);
    ucp_request_free(c.request);
  }
  closing_.clear();
  // Drop rendezvous descriptors never fetched.
  for (auto& a : arrivals_)
    if (a.rndv_desc) ucp_am_data_release(a.worker, a.rndv_desc);
  arrivals_.clear();
  handler_.after_callbacks();   // reap's on_peer_down callbacks
}

}  // namespace dsrt::transport
