// The actor world's shard under CAF's test coordinator: a step answers after the device
// profile's step time, and a device runs one step at a time, as actors::shard_actor's
// executor lease makes a real one: a replica restarted while its killed shard's step is
// still on the device starts its first step when that one ends.
#include <gtest/gtest.h>

#include <caf/all.hpp>

#include <memory>
#include <vector>

#include "actors/messages.h"
#include "sim/timed_shard.h"

namespace dsrt::sim {
namespace {

using namespace std::chrono_literals;

struct answer {
  std::uint64_t step = 0;
  caf::actor_clock::time_point at;
};

// Asks `shard` for a step and records when the answer came.
caf::behavior asker(caf::event_based_actor* self, std::shared_ptr<std::vector<answer>> log) {
  return {
      [=](const caf::actor& shard, const actors::step_request& r) {
        self->request(shard, caf::infinite, r).then(
            [=](const actors::step_result& out) { log->push_back({out.step, self->clock().now()}); },
            [](caf::error&) {});   // a killed shard's step has no answer
      },
  };
}

TEST(TimedShard, ARestartedShardsFirstStepStartsWhenTheKilledShardsStepEnds) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("logger.console", caf::atom("none"));
  caf::actor_system sys{cfg};
  auto& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  sched.clock().current_time += std::chrono::hours(1);
  const device_profile one_ms{"fixed-1ms", 1000, 0, 0};   // every step takes 1 ms
  auto exec = std::make_shared<serving::null_executor>(32000, 3, 64, 16, 2048);
  auto faults = std::make_shared<actors::shard_faults>();
  auto device = std::make_shared<device_state>();
  auto plan = std::make_shared<const batching::step_plan>();
  auto log = std::make_shared<std::vector<answer>>();
  auto client = sys.spawn(asker, log);
  const auto t0 = sched.clock().now();

  auto old_shard = spawn_timed_shard(sys, exec, faults, one_ms, device);
  caf::anon_send(client, old_shard, actors::step_request{1, plan});
  sched.run();
  caf::anon_send_exit(old_shard, caf::exit_reason::kill);   // killed while its step runs
  sched.run();
  auto new_shard = spawn_timed_shard(sys, exec, faults, one_ms, device);
  caf::anon_send(client, new_shard, actors::step_request{2, plan});
  sched.run();
  sched.advance_time(1ms);
  sched.run();
  EXPECT_TRUE(log->empty()) << "the new shard's step ran beside the killed shard's on one device";
  sched.advance_time(1ms);
  sched.run();
  ASSERT_EQ(log->size(), 1u);
  EXPECT_EQ((*log)[0].step, 2u);
  EXPECT_EQ((*log)[0].at - t0, 2ms);
  // The device is free again: a later step takes its own time only.
  sched.advance_time(5ms);
  sched.run();
  caf::anon_send(client, new_shard, actors::step_request{3, plan});
  sched.run();
  sched.advance_time(1ms);
  sched.run();
  ASSERT_EQ(log->size(), 2u);
  EXPECT_EQ((*log)[1].at - t0, 8ms);
  caf::anon_send_exit(new_shard, caf::exit_reason::kill);
  caf::anon_send_exit(client, caf::exit_reason::kill);
  sched.run();
}

}  // namespace
}  // namespace dsrt::sim
