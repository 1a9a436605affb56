// transport_bridge's per-peer bound on what waits in the link's mailbox: a peer past
// peer_messages_max or peer_bytes_max is closed once and nothing more of it is handed on;
// other peers are unaffected; what the link has handled no longer counts.
#include <gtest/gtest.h>

#include "actors/blocking_ask.h"
#include "actors/messages.h"
#include "actors/system_config.h"
#include "actors/transport_bridge.h"
#include "transport/wire.h"

namespace dsrt::actors {
namespace {

using release_atom = caf::atom_constant<caf::atom("release")>;

// A link that holds every frame it gets (so each still counts) until released.
struct holding_state {
  std::vector<frame_msg> held;
  std::map<transport::peer_id, int> frames;
};

caf::behavior holding_link(caf::stateful_actor<holding_state>* self) {
  return {
      [](peer_up_msg&) {},
      [](peer_down_msg&) {},
      [self](frame_msg& m) {
        ++self->state.frames[m.peer];
        self->state.held.push_back(std::move(m));
      },
      [self](release_atom) { self->state.held.clear(); },
      [self](status_atom, transport::peer_id peer) {
        auto it = self->state.frames.find(peer);
        return it == self->state.frames.end() ? 0 : it->second;
      },
  };
}

transport::decoded_frame frame_of(std::uint64_t id) {
  const auto bytes = transport::encode_cancel(transport::frame_type::cancel, id);
  auto f = transport::decode_frame(bytes, {});
  EXPECT_TRUE(f.ok());
  return std::move(*f);
}

struct bridge_fixture : ::testing::Test {
  std::unique_ptr<caf::actor_system_config> config = make_system_config(1);
  caf::actor_system system{*config};
  caf::actor link = system.spawn(holding_link);
  transport_bridge bridge;
  std::mutex mu;
  std::vector<std::pair<transport::peer_id, std::string>> closed;

  void start(bridge_limits limits) {
    bridge.set_target(link, [this](transport::peer_id p, std::string why) {
      std::lock_guard lock(mu);
      closed.emplace_back(p, std::move(why));
    }, limits);
  }
  int frames_of(transport::peer_id peer) {
    auto n = blocking_ask<int>(system, link, milliseconds(10000), status_atom::value, peer);
    EXPECT_TRUE(n.ok());
    return n.ok() ? *n : -1;
  }
  ~bridge_fixture() override { caf::anon_send_exit(link, caf::exit_reason::user_shutdown); }
};

TEST_F(bridge_fixture, APeerPastItsMessageLimitIsClosedOnceAndOthersGoOn) {
  start({.peer_messages_max = 3, .peer_bytes_max = 1u << 20});
  bridge.on_peer_up(1, {});
  bridge.on_peer_up(2, {});
  for (int i = 0; i < 3; ++i) bridge.on_frame(1, frame_of(std::uint64_t(i)));
  bridge.on_frame(1, frame_of(3));   // the fourth waiting: over
  bridge.on_frame(1, frame_of(4));   // after the hole: dropped too, no second close
  for (int i = 0; i < 3; ++i) bridge.on_frame(2, frame_of(std::uint64_t(i)));
  EXPECT_EQ(frames_of(1), 3);
  EXPECT_EQ(frames_of(2), 3);
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(closed.size(), 1u);
    EXPECT_EQ(closed[0].first, 1u);
    EXPECT_NE(closed[0].second.find("OVERLOADED"), std::string::npos) << closed[0].second;
  }
  // Once the link has handled them they no longer count: peer 2 may send three more.
  caf::anon_send(link, release_atom::value);
  ASSERT_EQ(frames_of(2), 3);   // the release is handled before this ask
  for (int i = 3; i < 6; ++i) bridge.on_frame(2, frame_of(std::uint64_t(i)));
  bridge.on_frame(1, frame_of(5));   // still cut off
  EXPECT_EQ(frames_of(2), 6);
  EXPECT_EQ(frames_of(1), 3);
  std::lock_guard lock(mu);
  EXPECT_EQ(closed.size(), 1u);
}

TEST_F(bridge_fixture, APeerPastItsByteLimitIsClosedAndAPeerNotUpIsIgnored) {
  const auto one = frame_of(1).payload_bytes();
  ASSERT_GT(one, 0u);
  start({.peer_messages_max = 100, .peer_bytes_max = 2 * one});
  bridge.on_frame(9, frame_of(1));   // never came up (or already down): dropped
  bridge.on_peer_up(1, {});
  bridge.on_frame(1, frame_of(1));
  bridge.on_frame(1, frame_of(2));
  bridge.on_frame(1, frame_of(3));   // a third frame's bytes pass the limit
  EXPECT_EQ(frames_of(1), 2);
  EXPECT_EQ(frames_of(9), 0);
  std::lock_guard lock(mu);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].first, 1u);
}

}  // namespace
}  // namespace dsrt::actors
