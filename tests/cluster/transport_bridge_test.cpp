// transport_bridge's per-peer bound on what waits in the link's mailbox: a peer past
// peer_messages_max or peer_bytes_max is closed once and nothing more of it is handed on;
// other peers are unaffected; what the link has handled no longer counts. And where the link
// runs: on the thread that made the callbacks (the transport's progress thread) when it
// keeps up, on the scheduler when it has more than a turn's messages or runs inline is off.
// The test thread plays the progress thread: callbacks, then after_callbacks().
#include <gtest/gtest.h>

#include <thread>

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
  bridge.after_callbacks();
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
  bridge.after_callbacks();
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
  bridge.after_callbacks();
  EXPECT_EQ(frames_of(1), 2);
  EXPECT_EQ(frames_of(9), 0);
  std::lock_guard lock(mu);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].first, 1u);
}

// A link that notes, for each frame, the frame's id and the thread it ran on, and passes the
// id on to `next` (another actor: it must not run on the progress thread).
struct seen {
  std::mutex mu;
  std::vector<std::pair<std::uint64_t, std::thread::id>> frames, forwarded;
};

caf::behavior noting_link(caf::event_based_actor* self, std::shared_ptr<seen> log, caf::actor next) {
  return {
      [](peer_up_msg&) {},
      [](peer_down_msg&) {},
      [=](frame_msg& m) {
        const auto id = *transport::decode_cancel(*m.frame);
        {
          std::lock_guard lock(log->mu);
          log->frames.emplace_back(id, std::this_thread::get_id());
        }
        self->send(next, id);
      },
      [](status_atom) { return 0; },
  };
}

caf::behavior noting_next(caf::event_based_actor*, std::shared_ptr<seen> log) {
  return {
      [=](std::uint64_t id) {
        std::lock_guard lock(log->mu);
        log->forwarded.emplace_back(id, std::this_thread::get_id());
      },
      [](status_atom) { return 0; },
  };
}

struct placement_fixture : ::testing::Test {
  std::unique_ptr<caf::actor_system_config> config = make_system_config(2);
  caf::actor_system system{*config};
  std::shared_ptr<seen> log = std::make_shared<seen>();
  caf::actor next = system.spawn(noting_next, log);
  caf::actor link = system.spawn(noting_link, log, next);
  transport_bridge bridge;

  // Waits (at most 10 s) until `a` sleeps on an empty mailbox: a freshly spawned actor is
  // launched on the scheduler, and a frame that finds it still there is handled there too.
  static bool idle(const caf::actor& a) {
    auto* self = dynamic_cast<caf::scheduled_actor*>(caf::actor_cast<caf::abstract_actor*>(a));
    for (int i = 0; i < 10000 && self && !self->mailbox().blocked(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return self && self->mailbox().blocked();
  }

  // Plays the progress thread: `frames` frames from one peer, then after_callbacks; returns
  // that thread's id once the link and `next` have both handled every frame.
  std::thread::id deliver(std::uint64_t frames) {
    EXPECT_TRUE(idle(link));
    std::thread::id progress;
    std::thread t([&] {
      progress = std::this_thread::get_id();
      bridge.on_peer_up(1, {});
      for (std::uint64_t i = 0; i < frames; ++i) bridge.on_frame(1, frame_of(i));
      bridge.after_callbacks();
    });
    t.join();
    // Asked after the frames: answered once the link (and then `next`) got past them.
    EXPECT_TRUE(blocking_ask<int>(system, link, milliseconds(10000), status_atom::value).ok());
    EXPECT_TRUE(blocking_ask<int>(system, next, milliseconds(10000), status_atom::value).ok());
    return progress;
  }
  std::vector<std::uint64_t> ids(const std::vector<std::pair<std::uint64_t, std::thread::id>>& v) {
    std::vector<std::uint64_t> out;
    for (const auto& [id, thread] : v) out.push_back(id);
    return out;
  }
  ~placement_fixture() override {
    caf::anon_send_exit(link, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(next, caf::exit_reason::user_shutdown);
  }
};

TEST_F(placement_fixture, ALinkThatKeepsUpRunsOnTheProgressThreadAndWhatItWakesDoesNot) {
  bridge.set_target(link, {}, {.link_messages_per_turn = 64});
  const auto progress = deliver(3);
  std::lock_guard lock(log->mu);
  ASSERT_EQ(ids(log->frames), (std::vector<std::uint64_t>{0, 1, 2}));
  for (const auto& [id, thread] : log->frames) EXPECT_EQ(thread, progress) << "frame " << id;
  ASSERT_EQ(ids(log->forwarded), (std::vector<std::uint64_t>{0, 1, 2}));
  for (const auto& [id, thread] : log->forwarded) EXPECT_NE(thread, progress) << "frame " << id;
}

TEST_F(placement_fixture, ALinkWithMoreThanATurnsMessagesGoesOnOnTheSchedulerInOrder) {
  bridge.set_target(link, {}, {.link_messages_per_turn = 2});
  const auto progress = deliver(6);
  std::lock_guard lock(log->mu);
  ASSERT_EQ(ids(log->frames), (std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5}));
  // The turn's budget counts the peer-up message too: it and frame 0 ran here.
  EXPECT_EQ(log->frames[0].second, progress);
  for (std::size_t i = 1; i < log->frames.size(); ++i) EXPECT_NE(log->frames[i].second, progress) << "frame " << i;
  EXPECT_EQ(ids(log->forwarded), (std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5}));
}

TEST_F(placement_fixture, NoMessagesPerTurnKeepsTheLinkOnTheScheduler) {
  bridge.set_target(link, {}, {.link_messages_per_turn = 0});
  const auto progress = deliver(3);
  std::lock_guard lock(log->mu);
  ASSERT_EQ(ids(log->frames), (std::vector<std::uint64_t>{0, 1, 2}));
  for (const auto& [id, thread] : log->frames) EXPECT_NE(thread, progress) << "frame " << id;
}

}  // namespace
}  // namespace dsrt::actors
