#pragma once
// One connection's protocol, without any I/O: the authentication handshake, the gate that
// keeps every other frame away until the peer has proved the cluster secret, heartbeats
// and the liveness deadline. ucx_transport (ucx_transport.h) feeds it the bytes of each
// frame it receives and the time, sends the frames it returns and closes the connection
// when it says so; tests drive it directly with a virtual clock.
//
//   awaiting_hello ──Hello──► awaiting_proof ──valid AuthProof──► up ──► closed
//        (any other frame, a bad proof, a timeout, a malformed frame: closed)
//
// Liveness: every frame from the peer counts. Once up, a heartbeat goes out every
// heartbeat_interval_ms; a peer silent for heartbeat_timeout_ms (dead, or paused — a
// stopped process keeps its sockets open) is closed with UNAVAILABLE. Each Hello says its
// side's interval: a peer whose interval is more than half the timeout is allowed two of
// its intervals instead, at most peer_silence_max (silence_limit()).
#include <algorithm>
#include <optional>
#include <span>
#include <vector>

#include "runtime/clock.h"
#include "transport/auth.h"
#include "transport/frame.h"
#include "transport/wire.h"

namespace dsrt::transport {

struct session_config {
  milliseconds heartbeat_interval_ms{500};
  milliseconds heartbeat_timeout_ms{3000};   // silence that makes a peer down
  milliseconds handshake_timeout_ms{5000};   // connection to a proven peer
  // The longest a peer's own heartbeat interval may stretch heartbeat_timeout_ms for it (two
  // of its intervals): a peer that says it heartbeats hourly is still judged within this.
  milliseconds peer_silence_max{120000};
  frame_limits limits;
};
// invalid_argument when an interval is not positive or the timeout is not above the interval.
status validate(const session_config& config);

// Who this process is, as its Hello says.
struct node_identity {
  node_role role = node_role::client;
  std::int32_t node_id = -1;
  std::uint64_t incarnation = 0;
};

class peer_session {
 public:
  enum class state { awaiting_hello, awaiting_proof, up, closed };

  // What one call asks the caller to do, in this order: send `send`, hand `deliver` to the
  // application, report the peer up if `became_up`, close with `close` if set.
  struct actions {
    std::vector<frame_bytes> send;
    std::optional<decoded_frame> deliver;
    bool became_up = false;
    std::optional<error> close;
  };

  // `own_nonce` must be fresh (make_nonce()) for every connection.
  peer_session(const session_config& config, const cluster_secret& secret, node_identity self,
               auth_direction direction, const nonce& own_nonce, clock_time now);

  // The Hello to send as soon as the connection exists.
  frame_bytes hello() const;
  // One frame received from the peer: copied, or taken over (decoded where it lies).
  actions on_frame(std::span<const std::byte> bytes, clock_time now);
  actions on_frame(frame_bytes&& bytes, clock_time now);
  // Bytes from the peer arrived (a frame that waits behind a large tensor still being
  // fetched, say): the peer is alive, whenever the frame itself is handled.
  void heard(clock_time now) {
    if (state_ != state::closed && now > last_heard_) last_heard_ = now;
  }
  // This process could not run for `stall` (stopped, swapped out, its progress thread held
  // up) until `now`: nothing from the peer could be heard meanwhile, so the liveness and
  // handshake deadlines move by as much, never past `now` (a peer heard this turn, or a
  // connection opened this turn, gets one timeout from now, not from after the stall).
  void excuse_stall(milliseconds stall, clock_time now) {
    opened_at_ = std::min(opened_at_ + stall, std::max(opened_at_, now));
    last_heard_ = std::min(last_heard_ + stall, std::max(last_heard_, now));
  }
  // Called periodically: heartbeats and the handshake and liveness deadlines.
  actions on_tick(clock_time now);
  // The connection failed underneath (transport error, peer closed it).
  void on_closed() { state_ = state::closed; }

  state current() const { return state_; }
  bool is_up() const { return state_ == state::up; }
  // The peer's Hello (valid once past awaiting_hello).
  const hello_wire& peer() const { return peer_hello_; }
  // This side's nonce and role in the handshake.
  const nonce& own_nonce() const { return own_nonce_; }
  auth_direction direction() const { return direction_; }
  // When the next on_tick() has something to do.
  clock_time next_deadline() const;
  // How long the peer may be silent: heartbeat_timeout_ms, or two of the peer's heartbeat
  // intervals (as its Hello says) where that is longer, at most peer_silence_max.
  milliseconds silence_limit() const { return silence_limit_; }

 private:
  actions on_decoded(result<decoded_frame> frame, clock_time now);
  actions fail(error e);

  session_config config_;
  cluster_secret secret_;
  node_identity self_;
  auth_direction direction_;
  nonce own_nonce_;
  hello_wire peer_hello_{};
  state state_ = state::awaiting_hello;
  bool proof_sent_ = false;
  clock_time opened_at_, last_heard_, last_sent_heartbeat_;
  std::uint64_t heartbeats_sent_ = 0;
  milliseconds silence_limit_ = config_.heartbeat_timeout_ms;
};

}  // namespace dsrt::transport
