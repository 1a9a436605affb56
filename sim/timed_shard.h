#pragma once
// A shard for the simulator's actor world: it runs its executor like actors::shard_actor,
// then answers after the step time of a device profile (times `slow`), as a delayed
// message on the actor clock — virtual time under CAF's test coordinator. It honours
// shard_faults::fail_steps, and `fail_next` fails one step (out of device memory). Like
// actors::shard_actor's executor lease, a device runs one step at a time: a restarted
// replica's first step starts when its killed predecessor's step would have ended.
#include <caf/all.hpp>

#include <memory>

#include "actors/shard.h"
#include "runtime/serving/step_executor.h"
#include "sim/device_profile.h"

namespace dsrt::sim {

// What the simulation changes on a running device.
struct device_state {
  double slow = 1;         // step time multiplier
  bool fail_next = false;  // the next step fails (then clears)
  caf::actor_clock::time_point busy_until{};   // the end of the latest step on the device
};

caf::actor spawn_timed_shard(caf::actor_system& system, std::shared_ptr<serving::step_executor> executor,
                             std::shared_ptr<actors::shard_faults> faults, device_profile profile,
                             std::shared_ptr<device_state> device);

}  // namespace dsrt::sim
