#include "transport/ucx_transport_impl.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "transport/hop_trace.h"

namespace dsrt::transport {

ucs_status_t ucx_transport::impl::on_am(void* arg, const void*, size_t, void* data, size_t length,
                          const ucp_am_recv_param_t* param) {
  hop_trace::mark(hop_trace::stage::arrived);
  auto* self = static_cast<impl*>(arg);
  return self->arrive(self->worker_, nullptr, 0, data, length, param,
                      self->config_.session.limits.message_bytes_max + frame_header_bytes);
}

ucs_status_t ucx_transport::impl::on_tensor_am(void* arg, const void* header, size_t header_length, void* data, size_t length,
                                 const ucp_am_recv_param_t* param) {
  auto* self = static_cast<impl*>(arg);
  return self->arrive(self->worker_, header, header_length, data, length, param, self->config_.tensor_bytes_max);
}

ucs_status_t ucx_transport::impl::on_direct_tensor_am(void* arg, const void* header, size_t header_length, void* data,
                                        size_t length, const ucp_am_recv_param_t* param) {
  auto* d = static_cast<data_worker*>(arg);
  impl* self = d->self;
  const peer_id peer = header_length > token_bytes ? self->peer_of_token(header, *d) : 0;
  if (peer == 0) {
    d->dropped_since_check = true;
    return UCS_OK;
  }
  return self->arrive(d->worker, static_cast<const std::byte*>(header) + token_bytes,
                      header_length - token_bytes, data, length, param, self->config_.tensor_bytes_max, peer);
}

ucs_status_t ucx_transport::impl::on_direct_frame_am(void* arg, const void* header, size_t header_length, void* data,
                                       size_t length, const ucp_am_recv_param_t* param) {
  hop_trace::mark(hop_trace::stage::arrived);
  auto* d = static_cast<data_worker*>(arg);
  impl* self = d->self;
  const peer_id peer = header_length == token_bytes ? self->peer_of_token(header, *d) : 0;
  if (peer == 0) {
    d->dropped_since_check = true;
    return UCS_OK;
  }
  return self->arrive(d->worker, nullptr, 0, data, length, param,
                      self->config_.session.limits.message_bytes_max + frame_header_bytes, peer);
}

peer_id ucx_transport::impl::peer_of_token(const void* header, const data_worker& d) {
  std::uint64_t token = 0;
  std::memcpy(&token, header, token_bytes);
  const auto it = token == 0 ? by_token_.end() : by_token_.find(token);
  if (it != by_token_.end() && it->second.second == &d) return it->second.first;
  ++stats_.frames_dropped;
  return 0;
}

ucs_status_t ucx_transport::impl::arrive(ucp_worker_h worker, const void* header, size_t header_length, void* data, size_t length,
                    const ucp_am_recv_param_t* param, std::uint64_t length_max, peer_id peer) {
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
  hop_trace::mark(hop_trace::stage::queued);
  return UCS_OK;
}

void ucx_transport::impl::handle_arrivals(clock_time now) {
  if (!arrivals_.empty()) hop_trace::mark(hop_trace::stage::handling);
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
      if (!early) attend(*conn);
      // Arrival is life, though the frame may wait behind a tensor still being fetched:
      // a multi-second transfer must not get its live peer closed as silent.
      conn->session->heard(now);
    }
  }
  arrivals_batch_.clear();
  if (std::exchange(direct_changed_, false)) {
    all_direct_ = !conns_.empty();
    for (const auto& [id, conn] : conns_) all_direct_ = all_direct_ && conn.data_ep && conn.peer_switched;
  }
  attention_batch_.swap(attention_);
  for (const peer_id id : attention_batch_) {
    auto found = conns_.find(id);
    if (found == conns_.end()) continue;
    connection& conn = found->second;
    conn.attended = false;
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
      hop_trace::mark(hop_trace::stage::decoding);
      if (item->tensor)
        apply(conn, conn.session->on_frame(item->tensor_header, now), &item->tensor_data);
      else
        apply(conn, conn.session->on_frame(std::move(item->bytes), now));
    }
    // A lost connection's last frames may be in this turn's arrivals or, over the data
    // endpoint, the next turn's: it is closed after that.
    if (conn.lost && !conn.dead && ++conn.lost_turns > 1) kill(conn, std::move(*conn.lost));
    // Still waiting: a frame behind a fetch not finished, or a loss to close next turn. A
    // dead or closing connection's inbox is never handled.
    if (!conn.dead && !conn.closing_until && (!conn.inbox.empty() || conn.lost)) attend(conn);
  }
  attention_batch_.clear();
}

void ucx_transport::impl::attend(connection& conn) {
  if (std::exchange(conn.attended, true)) return;
  attention_.push_back(conn.id);
}

void ucx_transport::impl::fetch(connection& conn, const std::shared_ptr<inbound>& shared) {
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
  // Alive until the data is in; a data worker's fetches keep it from being destroyed.
  struct fetch_state {
    std::shared_ptr<inbound> item;
    data_worker* data;
  };
  auto* f = new fetch_state{shared, item.rndv_worker == worker_ ? nullptr : data_worker_of(item.rndv_worker)};
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  rp.user_data = f;
  rp.cb.recv_am = [](void* request, ucs_status_t status, size_t, void* user) {
    auto* f = static_cast<fetch_state*>(user);
    if (f->data && --f->data->fetches == 0) f->data->self->retire_check_ = true;
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
  } else if (f->data) {
    ++f->data->fetches;
  }
}

void ucx_transport::impl::apply(connection& conn, peer_session::actions a, tensor_buffer* tensor_data) {
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
      direct_changed_ = true;
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
      hop_trace::mark(hop_trace::stage::delivering);
      handler_.on_frame(conn.id, std::move(*a.deliver));
      hop_trace::mark(hop_trace::stage::delivered);
      delivered_ = true;
    }
  }
  if (a.close) {
    spdlog::warn("transport: closing connection {} (node {}): {}", conn.id,
                 conn.session ? conn.session->peer().node_id : -1, a.close->to_string());
    kill(conn, std::move(*a.close));
  }
}

void ucx_transport::impl::tick(clock_time now) {
  // The thread ticks every tick_interval_ms, asleep or not; a gap longer than two
  // heartbeat intervals means this process did not run (SIGSTOP, a stalled VM, swapping).
  // The peers' frames of that time wait unread, so their silence is this side's: excused,
  // not judged. Only the gap past one heartbeat interval is excused: a thread whose every
  // tick comes late (held up, not stopped) still counts an interval of silence a tick, so a
  // dead peer is found within a few timeouts, not never.
  const auto gap = now - last_tick_;
  last_tick_ = now;
  if (gap > 2 * config_.session.heartbeat_interval_ms) {
    const auto stall = std::chrono::duration_cast<milliseconds>(gap - config_.session.heartbeat_interval_ms);
    ++stats_.stalls;
    last_stall_ = now;
    if (now - last_stall_warning_ >= stall_warning_interval) {
      last_stall_warning_ = now;
      spdlog::warn("transport: this process did not run for {} ms; its peers' silence meanwhile is excused "
                   "({} stalls so far)", stall.count(), std::uint64_t(stats_.stalls));
    }
    for (auto& [id, conn] : conns_)
      if (!conn.dead && conn.session) conn.session->excuse_stall(stall, now);
    // A lingering data worker's while counts the time this process ran: stopped again
    // before the head's frames had drained into it, it still gets them on its return.
    for (auto& d : data_workers_)
      if (d->linger_until) *d->linger_until += std::chrono::duration_cast<clock_time::duration>(stall);
  }
  for (auto& [id, conn] : conns_)
    if (!conn.dead && conn.session) apply(conn, conn.session->on_tick(now));
  // A data worker held only by sends to peers that were alive when their connections went
  // is looked at again now and then: once those peers have ended it can go.
  if (data_workers_stuck_ && now >= next_stuck_check_) {
    retire_check_ = true;
    next_stuck_check_ = now + stuck_peer_check_interval;
  }
}

}  // namespace dsrt::transport
