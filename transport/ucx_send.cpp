#include "transport/ucx_transport_impl.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "transport/hop_trace.h"

namespace dsrt::transport {

void ucx_transport::impl::open(const connect_cmd& c) {
  auto& conn = conns_[c.peer];
  conn.id = c.peer;
  conn.connector = true;
  direct_changed_ = true;
  auto fail = [&](error e) { kill(conn, std::move(e)); };
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

void ucx_transport::impl::start_session(connection& conn, auth_direction direction) {
  by_ep_[conn.ep] = conn.id;
  auto n = make_nonce();
  if (!n) {
    kill(conn, n.err());
    return;
  }
  conn.session = std::make_unique<peer_session>(config_.session, secret_, self_, direction, *n,
                                                std::chrono::steady_clock::now());
  post(conn, conn.session->hello());
}

void ucx_transport::impl::post(connection& conn, frame_bytes frame) {
  send_am(conn, conn.ep, frame_am_id, outgoing{{}, std::move(frame), nullptr, {}});
}

void ucx_transport::impl::post_own(connection& conn, frame_bytes frame) {
  if (!conn.data_ep) return post(conn, std::move(frame));
  send_am(conn, conn.data_ep, direct_frame_am_id, outgoing{{}, std::move(frame), nullptr, {}, conn.data_token});
}

void ucx_transport::impl::post_tensor(connection& conn, tensor_cmd t) {
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
  send_am(conn, conn.data_ep, direct_tensor_am_id, outgoing{std::move(header), {}, std::move(t.owner), t.data});
}

void ucx_transport::impl::offer_data_endpoint(connection& conn) {
  data_endpoint_wire offer;
  const auto& session = *conn.session;
  const std::uint64_t token =
      data_token(secret_, session.direction(), session.own_nonce(), session.peer().nonce);
  // A token of 0 or one another connection holds (2^-64 odds): offer nothing.
  if (token != 0 && by_token_.count(token) == 0)
    if (data_worker* d = data_worker_for_connection(session.peer().role == node_role::client)) {
      give_data_worker(conn, *d);   // the peer's endpoint to it, and ours to the peer, live there
      conn.own_token = token;
      by_token_[token] = {conn.id, d};
      offer = {d->address, host_key_, self_process_};
    }
  post(conn, encode(offer));
}

std::optional<error> ucx_transport::impl::use_data_endpoint(connection& conn, decoded_frame& frame) {
  if (conn.data_decided)
    return make_error(error_code::corrupt_data, "a second data_endpoint frame on one connection");
  auto offer = decode_data_endpoint(frame);
  if (!offer) return offer.err();
  conn.data_decided = true;
  // Both sides open data endpoints or neither: a side opens one only to a peer on its host
  // that offered one, and only if it offered one itself (so a peer that offered none never
  // sends to the worker this side offered, and its place there is given back).
  const bool both = conn.data && !offer->worker_address.empty() && !host_key_.empty() && offer->host_key == host_key_;
  if (conn.data && !both) take_back_data_worker(conn);
  if (both) {
    conn.peer_process = offer->process;
    // No peer-failure handling: UCX 1.13 would drop shared memory and CMA for it. The
    // connection's endpoint watches the peer, and this one is closed with it.
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    ep.address = reinterpret_cast<const ucp_address_t*>(offer->worker_address.data());
    direct_changed_ = true;
    if (auto s = ucp_ep_create(conn.data->worker, &ep, &conn.data_ep); s == UCS_OK) {
      const auto& session = *conn.session;
      const auto peer_direction = session.direction() == auth_direction::connector ? auth_direction::acceptor
                                                                                   : auth_direction::connector;
      conn.data_token = data_token(secret_, peer_direction, session.peer().nonce, session.own_nonce());
      ++stats_.data_endpoints;
      ++conn.data->endpoints;
      ++data_endpoints_held_;
      post(conn, encode_data_frames());   // the last of this side's frames on the connection
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

bool ucx_transport::impl::send_am(connection& conn, ucp_ep_h ep, unsigned am_id, outgoing out) {
  if (!ep || !open_for_sends(conn)) return false;
  if (conn.sends_in_flight >= config_.peer_sends_in_flight_max) {
    kill(conn, make_error(error_code::unavailable, "peer is not reading: {} sends unfinished (peer_sends_in_flight_max)",
                          conn.sends_in_flight));
    return false;
  }
  const bool direct = am_id == direct_tensor_am_id || am_id == direct_frame_am_id;
  // Behind those waiting, whatever UCX holds: after each turn's post_waiting_sends a
  // connection with sends waiting has data_sends_posted_max in UCX, but order must not
  // hang on that.
  if (direct && (!conn.direct_waiting.empty() || conn.direct_sends_in_flight >= config_.data_sends_posted_max)) {
    conn.direct_waiting.push_back({am_id, std::move(out)});
    ++conn.sends_in_flight;
    ++stats_.data_sends_waiting;
    return true;
  }
  return post_am(conn, ep, am_id, std::move(out), false);
}

bool ucx_transport::impl::post_am(connection& conn, ucp_ep_h ep, unsigned am_id, outgoing out, bool counted) {
  // The last send's request state when that send completed at once (most do), else new.
  auto p = spare_send_ ? std::move(spare_send_) : std::make_unique<send_state>();
  p->self = this;
  p->peer = conn.id;
  const bool direct = am_id == direct_tensor_am_id || am_id == direct_frame_am_id;
  p->direct = direct;
  p->data = direct ? conn.data : nullptr;
  p->out = std::move(out);
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  // The receiver learns which endpoint a message came on (a data endpoint's carry a token).
  rp.flags = direct ? 0 : UCP_AM_SEND_FLAG_REPLY;
  rp.user_data = p.get();
  rp.cb.send = [](void* request, ucs_status_t status, void* user) {
    auto* p = static_cast<send_state*>(user);
    impl& self = *p->self;
    if (p->data) self.send_finished(*p->data, p->peer);
    if (auto it = self.conns_.find(p->peer); it != self.conns_.end()) {
      connection& conn = it->second;
      --conn.sends_in_flight;
      if (p->direct) {
        --conn.direct_sends_in_flight;
        --self.live_direct_sends_;
        // Posted after the callbacks (post_waiting_sends), not from inside UCX's progress.
        if (!conn.direct_waiting.empty() && !std::exchange(conn.refill_listed, true)) self.refill_.push_back(conn.id);
      }
      // A send that failed (not one cancelled by a close) lost its message: the data
      // endpoint has no error handler to say so, so the connection ends here.
      if (status != UCS_OK && status != UCS_ERR_CANCELED)
        self.kill(conn, make_error(error_code::unavailable, "send failed: {}", status_text(status)));
    }
    delete p;
    ucp_request_free(request);
  };
  const auto header = p->out.header_bytes();
  const auto data = p->out.data();
  // Counted first: a peer that has the message implies the count.
  ++stats_.frames_sent;
  stats_.bytes_sent += header.size() + data.size();
  if (am_id == direct_frame_am_id) ++stats_.frames_direct;
  if (am_id == direct_tensor_am_id) ++stats_.tensors_direct;
  hop_trace::mark(hop_trace::stage::posting);
  auto req = ucp_am_send_nbx(ep, am_id, header.empty() ? nullptr : header.data(), header.size(), data.data(),
                             data.size(), &rp);
  hop_trace::mark(hop_trace::stage::posted);
  if (req != nullptr && !UCS_PTR_IS_ERR(req)) {   // in flight: the callback frees it
    p.release();
    if (!counted) ++conn.sends_in_flight;
    if (direct) {
      ++conn.direct_sends_in_flight;
      ++live_direct_sends_;
      ++conn.data->sends;
    }
    return true;
  }
  if (counted) --conn.sends_in_flight;
  p->out = {};   // the message's bytes go now; the state waits for the next send
  spare_send_ = std::move(p);
  if (req == nullptr) return true;
  kill(conn, make_error(error_code::unavailable, "send failed: {}", status_text(UCS_PTR_STATUS(req))));
  return false;
}

void ucx_transport::impl::post_waiting_sends() {
  if (refill_.empty()) return;
  refill_batch_.swap(refill_);
  for (const peer_id id : refill_batch_) {
    auto found = conns_.find(id);
    if (found == conns_.end()) continue;
    connection& conn = found->second;
    conn.refill_listed = false;
    // A closing connection's too: its close waits for them (reap), its goodbye among them.
    while (!conn.direct_waiting.empty() && conn.direct_sends_in_flight < config_.data_sends_posted_max &&
           !conn.dead && !conn.lost && conn.data_ep) {
      auto next = std::move(conn.direct_waiting.front());
      conn.direct_waiting.pop_front();
      stats_.data_sends_waiting = stats_.data_sends_waiting - 1;
      if (!post_am(conn, conn.data_ep, next.am_id, std::move(next.out), true)) break;
    }
  }
  refill_batch_.clear();
}

}  // namespace dsrt::transport
