#pragma once
// The shard actor: owns one device's executor and runs the step plans its batcher sends,
// one at a time, replying with the sampled tokens and the step's duration. It blocks while
// a step runs, so it is spawned detached (its own thread) and never stalls CAF's workers.
// It holds the executor's lease() for each step: a replica restarted while its old shard is
// still inside a step (a hung or slowed device) runs its first step after that one returns,
// never beside it on the same device; a shard replaced while it waited (a second restart)
// runs nothing once it gets the lease (step_executor::claim).
//
// Fault points (compiled in, off unless a test or `dsbench load --fault` turns them on):
// fail_steps makes every step fail, slow_step_ms adds that much time to each step.
#include <caf/all.hpp>

#include <atomic>
#include <memory>

#include "actors/messages.h"
#include "runtime/serving/step_executor.h"

namespace dsrt::actors {

struct shard_faults {
  std::atomic<bool> fail_steps{false};
  std::atomic<std::int64_t> slow_step_ms{0};
};

// Handles: step_request -> step_result.
// `claim`: executor->claim(), taken by whoever spawns the shard, in spawn order (a detached
// actor builds its behavior later, on its own thread).
caf::behavior shard_actor(caf::event_based_actor* self, std::shared_ptr<serving::step_executor> executor,
                          std::shared_ptr<shard_faults> faults, std::uint64_t claim);

}  // namespace dsrt::actors
