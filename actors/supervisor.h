#pragma once
// The supervisor actor (one per node): spawns each replica's shard + batcher pair, monitors
// it, and restarts it within a restart budget (policy::restart_budget): the pair is linked,
// so a failure of either restarts both (one-for-all for a shard group). When the budget is
// spent the replica is reported permanently down (escalation). A watchdog asks every
// batcher for its progress each watchdog_interval_ms and kills a replica whose steps have
// not advanced for watchdog_stall_ms while it has work — a hung device is caught, not only
// a dead actor. The router hears replica_up / replica_down.
#include <caf/all.hpp>

#include <functional>
#include <memory>

#include "actors/batcher.h"
#include "actors/shard.h"
#include "runtime/policy/restart_budget.h"

namespace dsrt::actors {

struct supervisor_options {
  std::int32_t replicas = 1;
  std::int32_t replica_base = 0;   // replica i here is replica replica_base + i of the cluster
  batching::scheduler_config scheduler;
  policy::restart_config restarts;
  milliseconds watchdog_interval_ms{1000};
  milliseconds watchdog_stall_ms{10000};
  // The executor of replica i (its model); shared by the restarts of that replica.
  std::vector<std::shared_ptr<serving::step_executor>> executors;
  std::vector<std::shared_ptr<shard_faults>> faults;   // one per replica
  std::shared_ptr<metrics::registry> metrics;          // set by local_runtime and worker_node; null: a private one
  // Spawns a replica's shard (the seam the simulator uses to put a shard with virtual step
  // times under CAF's test coordinator). Null: shard_actor on a thread of its own.
  std::function<caf::actor(caf::actor_system&, std::shared_ptr<serving::step_executor>, std::shared_ptr<shard_faults>)>
      spawn_shard;
};

struct supervisor_counters {
  std::vector<std::int32_t> restarts;                  // per replica
  std::vector<bool> permanently_down;
  std::vector<replica_status> last_status;             // from the latest watchdog round
  std::vector<caf::actor> batchers;                    // current ones (null while down)
};

// Handles: (status_atom) -> supervisor_counters; (kill_atom, i) kills the shard of this
// node's replica i (local index) (fault injection; the restart path does the rest).
using kill_atom = caf::atom_constant<caf::atom("kill")>;
caf::actor spawn_supervisor(caf::actor_system& system, supervisor_options options, caf::actor router);

}  // namespace dsrt::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(dsrt::actors::supervisor_counters)
