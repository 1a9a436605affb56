// peer_session: the handshake, the gate before it, heartbeats and liveness, driven frame by
// frame under a virtual clock (no sockets).
#include <gtest/gtest.h>

#include "transport/peer_session.h"
#include "transport/wire.h"

namespace dsrt::transport {
namespace {

cluster_secret secret_of(std::uint8_t b) {
  cluster_secret s;
  s.fill(std::byte{b});
  return s;
}

nonce fresh() { return make_nonce().value(); }

struct pair_of_sessions {
  clock_time now{};
  session_config config;
  peer_session connector, acceptor;

  // `acceptors`: the acceptor's config, when it differs from the connector's (`config`).
  pair_of_sessions(const cluster_secret& a, const cluster_secret& b, std::optional<session_config> acceptors = {})
      : connector(config, a, {node_role::worker, 3, 77}, auth_direction::connector, fresh(), now),
        acceptor(acceptors.value_or(config), b, {node_role::head, 0, 99}, auth_direction::acceptor, fresh(), now) {}

  // Delivers `frames` to `to` and everything it answers back to `from`, until quiet.
  // Returns what each side delivered to its application and whether each closed.
  void exchange(std::vector<frame_bytes> to_acceptor, std::vector<frame_bytes> to_connector) {
    while (!to_acceptor.empty() || !to_connector.empty()) {
      std::vector<frame_bytes> next_a, next_c;
      for (auto& f : to_acceptor) record(acceptor.on_frame(f, now), next_c, acceptor_events);
      for (auto& f : to_connector) record(connector.on_frame(f, now), next_a, connector_events);
      to_acceptor = std::move(next_a);
      to_connector = std::move(next_c);
    }
  }
  struct events {
    int up = 0, delivered = 0;
    std::optional<error> closed;
  } acceptor_events, connector_events;

  static void record(peer_session::actions a, std::vector<frame_bytes>& out, events& e) {
    for (auto& f : a.send) out.push_back(std::move(f));
    e.up += a.became_up;
    e.delivered += a.deliver.has_value();
    if (a.close) e.closed = a.close;
  }
  void handshake() { exchange({connector.hello()}, {acceptor.hello()}); }
};

TEST(PeerSession, SameSecretAuthenticatesBothSides) {
  pair_of_sessions p(secret_of(7), secret_of(7));
  p.handshake();
  EXPECT_TRUE(p.connector.is_up());
  EXPECT_TRUE(p.acceptor.is_up());
  EXPECT_EQ(p.acceptor_events.up, 1);
  EXPECT_EQ(p.connector_events.up, 1);
  EXPECT_EQ(p.acceptor.peer().node_id, 3);
  EXPECT_EQ(p.acceptor.peer().incarnation, 77u);
  EXPECT_EQ(p.connector.peer().role, node_role::head);
  // After the handshake, application frames pass.
  p.exchange({encode_cancel(frame_type::cancel, 5)}, {});
  EXPECT_EQ(p.acceptor_events.delivered, 1);
}

TEST(PeerSession, WrongSecretIsRejectedAndNothingIsDelivered) {
  pair_of_sessions p(secret_of(7), secret_of(8));
  p.exchange({p.connector.hello(), encode_cancel(frame_type::cancel, 5)}, {p.acceptor.hello()});
  EXPECT_FALSE(p.acceptor.is_up());
  EXPECT_FALSE(p.connector.is_up());
  ASSERT_TRUE(p.acceptor_events.closed);
  EXPECT_EQ(p.acceptor_events.closed->code, error_code::unauthenticated);
  EXPECT_EQ(p.acceptor_events.delivered, 0);
  EXPECT_EQ(p.acceptor_events.up, 0);
}

TEST(PeerSession, AnApplicationFrameBeforeTheHandshakeClosesTheConnection) {
  pair_of_sessions p(secret_of(7), secret_of(7));
  p.exchange({encode_cancel(frame_type::cancel, 5)}, {});
  ASSERT_TRUE(p.acceptor_events.closed);
  EXPECT_EQ(p.acceptor_events.closed->code, error_code::unauthenticated);
  EXPECT_EQ(p.acceptor_events.delivered, 0);
}

TEST(PeerSession, AProofBeforeTheHelloOrASecondHelloCloses) {
  pair_of_sessions p(secret_of(7), secret_of(7));
  p.exchange({encode_auth_proof(mac{})}, {});
  EXPECT_TRUE(p.acceptor_events.closed);

  pair_of_sessions q(secret_of(7), secret_of(7));
  q.handshake();
  q.exchange({q.connector.hello()}, {});
  ASSERT_TRUE(q.acceptor_events.closed);
  EXPECT_EQ(q.acceptor_events.closed->code, error_code::corrupt_data);
}

TEST(PeerSession, AMalformedFrameClosesWithCorruptData) {
  pair_of_sessions p(secret_of(7), secret_of(7));
  p.handshake();
  frame_bytes junk = encode_cancel(frame_type::cancel, 5);
  junk.resize(junk.size() - 3);
  p.exchange({junk}, {});
  ASSERT_TRUE(p.acceptor_events.closed);
  EXPECT_EQ(p.acceptor_events.closed->code, error_code::corrupt_data);
  EXPECT_EQ(p.acceptor_events.delivered, 0);
}

TEST(PeerSession, HeartbeatsGoOutEveryIntervalAndSilenceMeansDown) {
  pair_of_sessions p(secret_of(7), secret_of(7));
  p.handshake();
  const auto interval = p.config.heartbeat_interval_ms;
  // Both sides tick; heartbeats flow; nobody is down.
  int beats = 0;
  for (int i = 0; i < 20; ++i) {
    p.now += interval;
    auto a = p.connector.on_tick(p.now);
    auto b = p.acceptor.on_tick(p.now);
    beats += int(a.send.size());
    p.exchange(std::move(a.send), std::move(b.send));
    ASSERT_FALSE(a.close || b.close);
  }
  EXPECT_EQ(beats, 20);
  EXPECT_TRUE(p.acceptor.is_up());
  // The connector falls silent (paused): past the timeout the acceptor declares it down.
  p.now += p.config.heartbeat_timeout_ms - milliseconds(1);
  EXPECT_FALSE(p.acceptor.on_tick(p.now).close);
  p.now += milliseconds(1);
  auto down = p.acceptor.on_tick(p.now);
  ASSERT_TRUE(down.close);
  EXPECT_EQ(down.close->code, error_code::unavailable);
  EXPECT_FALSE(p.acceptor.is_up());
}

// A peer that heartbeats so rarely that this side's timeout would not hold two of its
// intervals (a head run with a 5 s interval; its clients keep 500 ms and 3 s) is allowed
// two of them, at most peer_silence_max; the other side keeps its own, longer timeout.
TEST(PeerSession, APeerThatHeartbeatsLessOftenIsAllowedTwoOfItsIntervals) {
  session_config slow;
  slow.heartbeat_interval_ms = milliseconds(5000);
  slow.heartbeat_timeout_ms = milliseconds(20000);
  pair_of_sessions p(secret_of(7), secret_of(7), slow);
  p.handshake();
  ASSERT_TRUE(p.connector.is_up() && p.acceptor.is_up());
  EXPECT_EQ(p.connector.silence_limit(), milliseconds(10000));
  EXPECT_EQ(p.acceptor.silence_limit(), milliseconds(20000));
  // The slow side's heartbeats every 5 s keep the connection up ...
  for (int i = 0; i < 10; ++i) {
    p.now += slow.heartbeat_interval_ms;
    auto c = p.connector.on_tick(p.now);
    auto a = p.acceptor.on_tick(p.now);
    ASSERT_FALSE(c.close || a.close) << "tick " << i;
    ASSERT_EQ(a.send.size(), 1u);
    p.exchange(std::move(c.send), std::move(a.send));
  }
  // ... and once it falls silent it is down after 10 s, not 3.
  p.now += milliseconds(9999);
  EXPECT_FALSE(p.connector.on_tick(p.now).close);
  p.now += milliseconds(1);
  auto down = p.connector.on_tick(p.now);
  ASSERT_TRUE(down.close);
  EXPECT_EQ(down.close->code, error_code::unavailable);

  // A peer that says it heartbeats every 10 minutes is judged within peer_silence_max; one
  // that heartbeats often enough changes nothing.
  session_config rare;
  rare.heartbeat_interval_ms = milliseconds(heartbeat_interval_ms_max);
  rare.heartbeat_timeout_ms = 2 * rare.heartbeat_interval_ms;
  pair_of_sessions q(secret_of(7), secret_of(7), rare);
  q.handshake();
  EXPECT_EQ(q.connector.silence_limit(), q.config.peer_silence_max);
  session_config fast;
  fast.heartbeat_interval_ms = milliseconds(100);
  fast.heartbeat_timeout_ms = milliseconds(1000);
  pair_of_sessions r(secret_of(7), secret_of(7), fast);
  r.handshake();
  EXPECT_EQ(r.connector.silence_limit(), r.config.heartbeat_timeout_ms);
  EXPECT_EQ(r.acceptor.silence_limit(), fast.heartbeat_timeout_ms);   // 2 x 500 ms is not more
}

TEST(PeerSession, BytesThatArrivedCountAsLifeBeforeTheirFrameIsHandled) {
  // The transport reports an arrival (heard) when a frame lands behind a long tensor fetch;
  // the silence deadline runs from there, not from when the frame is finally handled.
  pair_of_sessions p(secret_of(7), secret_of(7));
  p.handshake();
  const auto timeout = p.config.heartbeat_timeout_ms;
  p.now += timeout - milliseconds(1);
  const clock_time arrival = p.now;
  p.acceptor.heard(arrival);
  p.now += timeout - milliseconds(1);   // 2 timeouts after the last handled frame
  EXPECT_FALSE(p.acceptor.on_tick(p.now).close);
  p.acceptor.heard(arrival - milliseconds(500));   // an older arrival changes nothing
  p.now += milliseconds(1);
  auto down = p.acceptor.on_tick(p.now);
  ASSERT_TRUE(down.close);
  EXPECT_EQ(down.close->code, error_code::unavailable);
}

TEST(PeerSession, AStallOfThisSideIsNotCountedAsThePeersSilence) {
  // This process stopped for 10 timeouts (the transport saw the gap between its ticks): the
  // peer's frames of that time wait unread, so its deadline moves by the stall; a peer that
  // stays silent after it is still closed, one timeout later.
  pair_of_sessions p(secret_of(7), secret_of(7));
  p.handshake();
  const auto timeout = p.config.heartbeat_timeout_ms;
  const auto stall = 10 * timeout;
  p.now += milliseconds(100) + stall;
  p.acceptor.excuse_stall(stall, p.now);
  EXPECT_FALSE(p.acceptor.on_tick(p.now).close);
  p.now += timeout - milliseconds(100) - milliseconds(1);
  EXPECT_FALSE(p.acceptor.on_tick(p.now).close);
  p.now += milliseconds(1);
  auto down = p.acceptor.on_tick(p.now);
  ASSERT_TRUE(down.close);
  EXPECT_EQ(down.close->code, error_code::unavailable);
  // A handshake's deadline moves the same way.
  pair_of_sessions q(secret_of(7), secret_of(7));
  ASSERT_FALSE(q.acceptor.on_frame(q.connector.hello(), q.now).close);
  q.now += q.config.handshake_timeout_ms - milliseconds(1) + stall;
  q.acceptor.excuse_stall(stall, q.now);
  EXPECT_FALSE(q.acceptor.on_tick(q.now).close);
  EXPECT_EQ(q.acceptor.current(), peer_session::state::awaiting_proof);
  // Never past `now`: a peer heard as this side resumes (its frames of the stall handled
  // first) gets one timeout from now, not from after another stall.
  pair_of_sessions r(secret_of(7), secret_of(7));
  r.handshake();
  r.now += stall;
  r.acceptor.heard(r.now);
  r.acceptor.excuse_stall(stall, r.now);
  r.now += timeout;
  auto gone = r.acceptor.on_tick(r.now);
  ASSERT_TRUE(gone.close) << "a peer silent for a timeout after the stall is down";
}

TEST(PeerSession, AHandshakeThatNeverFinishesTimesOut) {
  pair_of_sessions p(secret_of(7), secret_of(7));
  auto answer = p.acceptor.on_frame(p.connector.hello(), p.now);   // a hello, then never a proof
  EXPECT_FALSE(answer.close);
  EXPECT_EQ(p.acceptor.current(), peer_session::state::awaiting_proof);
  p.now += p.config.handshake_timeout_ms - milliseconds(1);
  EXPECT_FALSE(p.acceptor.on_tick(p.now).close);
  p.now = clock_time{};
  p.now += p.config.handshake_timeout_ms;
  auto a = p.acceptor.on_tick(p.now);
  ASSERT_TRUE(a.close);
  EXPECT_EQ(a.close->code, error_code::unauthenticated);
}

TEST(PeerSession, AHeartbeatOfAnotherIncarnationCloses) {
  pair_of_sessions p(secret_of(7), secret_of(7));
  p.handshake();
  p.exchange({encode(heartbeat_wire{12345, 1})}, {});
  ASSERT_TRUE(p.acceptor_events.closed);
}

TEST(PeerSession, ConfigValidation) {
  session_config c;
  EXPECT_TRUE(validate(c).ok());
  c.heartbeat_timeout_ms = c.heartbeat_interval_ms;
  EXPECT_FALSE(validate(c).ok());
  c = {};
  c.heartbeat_interval_ms = milliseconds(0);
  EXPECT_FALSE(validate(c).ok());
  c = {};
  c.heartbeat_interval_ms = milliseconds(heartbeat_interval_ms_max + 1);   // more than a Hello can say
  c.heartbeat_timeout_ms = 2 * c.heartbeat_interval_ms;
  EXPECT_FALSE(validate(c).ok());
  c = {};
  c.peer_silence_max = milliseconds(0);
  EXPECT_FALSE(validate(c).ok());
}

}  // namespace
}  // namespace dsrt::transport
