// The shard actor on real threads: a replica restarted while its old shard is still inside
// a step (the watchdog killed it on a hung or slowed device) shares that shard's executor;
// the new shard's step must wait for the old one instead of running beside it.
#include <gtest/gtest.h>

#include <caf/all.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <thread>

#include "actors/shard.h"
#include "runtime/serving/step_executor.h"

namespace dsrt::actors {
namespace {

using namespace std::chrono_literals;

// The first step blocks until the test opens the gate; every step records how many steps
// were inside run() at once.
struct gated_executor final : serving::step_executor {
  result<std::vector<std::int32_t>> run(const batching::step_plan&) override {
    const int now = ++inside;
    int seen = max_inside.load();
    while (now > seen && !max_inside.compare_exchange_weak(seen, now)) {
    }
    if (runs++ == 0) {
      entered.set_value();
      gate.wait();
    }
    --inside;
    return std::vector<std::int32_t>{};
  }
  std::int32_t kv_blocks() const override { return 64; }
  int kv_block_tokens() const override { return 16; }
  std::int64_t step_tokens_max() const override { return 2048; }

  std::atomic<int> inside{0}, max_inside{0}, runs{0};
  std::promise<void> entered, open;
  std::shared_future<void> gate = open.get_future().share();
};

// Real threads (the shard is detached), one gated executor, an empty plan.
class Shard : public ::testing::Test {
 protected:
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::shared_ptr<gated_executor> exec = std::make_shared<gated_executor>();
  std::shared_ptr<shard_faults> faults = std::make_shared<shard_faults>();
  std::shared_ptr<const batching::step_plan> plan = std::make_shared<const batching::step_plan>();
  caf::scoped_actor self{sys};
};

TEST_F(Shard, ARestartedShardsStepWaitsForItsKilledPredecessorsStep) {
  auto old_shard = sys.spawn<caf::detached>(shard_actor, exec, faults, exec->claim());
  self->send(old_shard, step_request{1, plan});
  exec->entered.get_future().wait();   // the old shard is inside its step...
  self->send_exit(old_shard, caf::exit_reason::kill);   // ...when the supervisor kills it
  auto new_shard = sys.spawn<caf::detached>(shard_actor, exec, faults, exec->claim());
  self->send(new_shard, step_request{2, plan});
  // Room for the new shard's step to reach the executor if nothing holds it back (the
  // assertions below do not depend on this time, only the bug's chance to show does).
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(exec->runs.load(), 1) << "the new shard ran while the old shard's step was still inside the executor";
  exec->open.set_value();

  std::vector<std::uint64_t> answered;
  for (int i = 0; i < 2; ++i)
    self->receive([&](const step_result& r) {
      EXPECT_FALSE(r.failure) << "step " << r.step << ": " << r.failure->message;
      answered.push_back(r.step);
    }, caf::after(std::chrono::seconds(30)) >> [&] { ADD_FAILURE() << "a step never answered"; });
  std::sort(answered.begin(), answered.end());
  EXPECT_EQ(answered, (std::vector<std::uint64_t>{1, 2})) << "the killed shard's step and the new one's both answer";
  EXPECT_EQ(exec->runs.load(), 2);
  EXPECT_EQ(exec->max_inside.load(), 1) << "two shards ran one executor at once";
  self->send_exit(new_shard, caf::exit_reason::kill);
}

// Two restarts while the device hangs: the second shard, replaced while it waited for the
// lease, must not run its dead batcher's plan after the hung step returns; only the newest
// shard's step runs.
TEST_F(Shard, AShardReplacedWhileItWaitedForTheDeviceRunsNothing) {
  auto first = sys.spawn<caf::detached>(shard_actor, exec, faults, exec->claim());
  self->send(first, step_request{1, plan});
  exec->entered.get_future().wait();
  self->send_exit(first, caf::exit_reason::kill);
  auto second = sys.spawn<caf::detached>(shard_actor, exec, faults, exec->claim());
  self->send(second, step_request{2, plan});
  self->send_exit(second, caf::exit_reason::kill);   // the watchdog fires again
  auto third = sys.spawn<caf::detached>(shard_actor, exec, faults, exec->claim());
  self->send(third, step_request{3, plan});
  exec->open.set_value();

  std::map<std::uint64_t, bool> failed;
  for (int i = 0; i < 3; ++i)
    self->receive([&](const step_result& r) { failed[r.step] = r.failure.has_value(); },
                  caf::after(std::chrono::seconds(30)) >> [&] { ADD_FAILURE() << "a step never answered"; });
  EXPECT_EQ(failed, (std::map<std::uint64_t, bool>{{1, false}, {2, true}, {3, false}}))
      << "the replaced shard's step must fail without running";
  EXPECT_EQ(exec->runs.load(), 2) << "steps 1 and 3 only";
  EXPECT_EQ(exec->max_inside.load(), 1);
  self->send_exit(third, caf::exit_reason::kill);
}

}  // namespace
}  // namespace dsrt::actors
