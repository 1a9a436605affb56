#pragma once
// The simulator with the real actors: the router, response-cache, supervisor and batcher
// actors of actors/ run under CAF's deterministic test coordinator (one thread, virtual
// time), fed the same seeded load as run_simulation and checked by the same invariant
// checker. Only the device is simulated: each shard is a timed_shard (sim/timed_shard.h)
// that runs serving::null_executor and answers after the device profile's step time, in
// virtual time. Same seed and build, same trace hash.
//
// Faults: kill_node (the supervisor's kill path: the shard dies, its batcher with it, and
// the supervisor restarts both within its restart budget), fail_steps, slow_device and
// oom_step; BUGGIFY too (the actors run on the simulating thread). The other kinds need
// links and heartbeats between processes, which one actor system does not have: a
// configuration asking for them is refused.
//
// Checked here: one final per request, stream order, a completed request's token count,
// deadlines both ways, no work left and no leaked KV block at the end (from the batchers'
// own status), recovery. Not here (the policy world checks them, event by event): token
// values (null_executor's are not the simulated model's), queue limits and breaker
// transitions, which the actors do not expose per event.
#include "sim/simulation.h"

namespace dsrt::sim {

// invalid_argument naming a fault the actor world cannot run.
status validate_actor_world(const sim_config& config);

// REQUIRES: validate_actor_world(config) succeeded.
sim_report run_actor_world(const sim_config& config);

}  // namespace dsrt::sim
