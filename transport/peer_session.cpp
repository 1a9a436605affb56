#include "transport/peer_session.h"

#include <algorithm>

namespace dsrt::transport {

status validate(const session_config& c) {
  if (c.heartbeat_interval_ms.count() <= 0 || c.handshake_timeout_ms.count() <= 0)
    return make_error(error_code::invalid_argument,
                      "heartbeat_interval_ms and handshake_timeout_ms must be positive");
  if (c.peer_silence_max.count() <= 0)
    return make_error(error_code::invalid_argument, "peer_silence_max must be positive");
  if (c.heartbeat_interval_ms > milliseconds(heartbeat_interval_ms_max))
    return make_error(error_code::invalid_argument, "heartbeat_interval_ms ({}) must be at most {} (its Hello field's limit)",
                      c.heartbeat_interval_ms.count(), heartbeat_interval_ms_max);
  if (c.heartbeat_timeout_ms <= c.heartbeat_interval_ms)
    return make_error(error_code::invalid_argument,
                      "heartbeat_timeout_ms ({}) must exceed heartbeat_interval_ms ({})",
                      c.heartbeat_timeout_ms.count(), c.heartbeat_interval_ms.count());
  return ok_t{};
}

peer_session::peer_session(const session_config& config, const cluster_secret& secret,
                           node_identity self, auth_direction direction, const nonce& own_nonce,
                           clock_time now)
    : config_(config),
      secret_(secret),
      self_(self),
      direction_(direction),
      own_nonce_(own_nonce),
      opened_at_(now),
      last_heard_(now),
      last_sent_heartbeat_(now) {}

frame_bytes peer_session::hello() const {
  hello_wire h;
  h.protocol_version = frame_protocol_version;
  h.role = self_.role;
  h.node_id = self_.node_id;
  h.incarnation = self_.incarnation;
  h.nonce = own_nonce_;
  h.heartbeat_interval_ms = std::uint32_t(config_.heartbeat_interval_ms.count());
  return encode(h);
}

peer_session::actions peer_session::fail(error e) {
  state_ = state::closed;
  actions a;
  a.send.push_back(encode_goodbye(e.message));
  a.close = std::move(e);
  return a;
}

peer_session::actions peer_session::on_frame(std::span<const std::byte> bytes, clock_time now) {
  if (state_ == state::closed) return {};
  return on_decoded(decode_frame(bytes, config_.limits), now);
}

peer_session::actions peer_session::on_frame(frame_bytes&& bytes, clock_time now) {
  if (state_ == state::closed) return {};
  return on_decoded(decode_frame(std::move(bytes), config_.limits), now);
}

peer_session::actions peer_session::on_decoded(result<decoded_frame> frame, clock_time now) {
  last_heard_ = now;
  if (!frame) return fail(frame.err());
  const auto type = frame->type();
  switch (state_) {
    case state::awaiting_hello: {
      if (type != frame_type::hello)
        return fail(make_error(error_code::unauthenticated, "expected hello, got {}", frame_type_name(type)));
      auto h = decode_hello(*frame);
      if (!h) return fail(h.err());
      if (h->protocol_version != frame_protocol_version)
        return fail(make_error(error_code::unsupported, "peer speaks protocol {}, this node {}",
                               h->protocol_version, frame_protocol_version));
      peer_hello_ = *h;
      // A peer that heartbeats so rarely that this side's timeout would not hold two of its
      // intervals is allowed two (a client's 3 s would otherwise drop a head that heartbeats
      // every 5 s), at most peer_silence_max; never less than this side's own timeout.
      silence_limit_ = std::max(config_.heartbeat_timeout_ms,
                                std::min(2 * milliseconds(h->heartbeat_interval_ms), config_.peer_silence_max));
      state_ = state::awaiting_proof;
      proof_sent_ = true;
      actions a;
      a.send.push_back(encode_auth_proof(make_proof(secret_, direction_, peer_hello_.nonce, own_nonce_)));
      return a;
    }
    case state::awaiting_proof: {
      if (type != frame_type::auth_proof)
        return fail(make_error(error_code::unauthenticated, "expected auth_proof, got {}", frame_type_name(type)));
      auto proof = decode_auth_proof(*frame);
      if (!proof) return fail(proof.err());
      const auto peer_direction =
          direction_ == auth_direction::connector ? auth_direction::acceptor : auth_direction::connector;
      if (!check_proof(secret_, peer_direction, own_nonce_, peer_hello_.nonce, *proof))
        return fail(make_error(error_code::unauthenticated,
                               "peer (node {}) failed the cluster-secret challenge", peer_hello_.node_id));
      state_ = state::up;
      last_sent_heartbeat_ = now;
      actions a;
      a.became_up = true;
      return a;
    }
    case state::up: {
      if (type == frame_type::heartbeat) {
        auto hb = decode_heartbeat(*frame);
        if (!hb) return fail(hb.err());
        if (hb->incarnation != peer_hello_.incarnation)
          return fail(make_error(error_code::corrupt_data, "heartbeat of incarnation {} on a connection of {}",
                                 hb->incarnation, peer_hello_.incarnation));
        return {};
      }
      if (type == frame_type::hello || type == frame_type::auth_proof)
        return fail(make_error(error_code::corrupt_data, "{} after the handshake", frame_type_name(type)));
      if (type == frame_type::goodbye) {
        auto g = decode_goodbye(*frame);
        state_ = state::closed;
        actions a;
        a.close = make_error(error_code::unavailable, "peer closed: {}", g ? *g : std::string("(unreadable reason)"));
        return a;
      }
      actions a;
      a.deliver.emplace(std::move(*frame));
      return a;
    }
    case state::closed:
      break;
  }
  return {};
}

peer_session::actions peer_session::on_tick(clock_time now) {
  if (state_ == state::closed) return {};
  if (state_ != state::up) {
    if (now - opened_at_ >= config_.handshake_timeout_ms)
      return fail(make_error(error_code::unauthenticated, "no authenticated hello within {} ms",
                             config_.handshake_timeout_ms.count()));
    return {};
  }
  if (now - last_heard_ >= silence_limit_)
    return fail(make_error(error_code::unavailable, "peer (node {}) silent for {} ms", peer_hello_.node_id,
                           std::chrono::duration_cast<milliseconds>(now - last_heard_).count()));
  actions a;
  if (now - last_sent_heartbeat_ >= config_.heartbeat_interval_ms) {
    last_sent_heartbeat_ = now;
    a.send.push_back(encode(heartbeat_wire{self_.incarnation, ++heartbeats_sent_}));
  }
  return a;
}

clock_time peer_session::next_deadline() const {
  if (state_ == state::closed) return clock_time::max();
  if (state_ != state::up) return opened_at_ + config_.handshake_timeout_ms;
  return std::min(last_heard_ + silence_limit_, last_sent_heartbeat_ + config_.heartbeat_interval_ms);
}

}  // namespace dsrt::transport
