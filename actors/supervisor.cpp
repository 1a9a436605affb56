#include "actors/supervisor.h"

namespace dsrt::actors {

struct replica_group {
  caf::actor shard, batcher;
  std::unique_ptr<policy::restart_budget> budget;
  std::int32_t restarts = 0;
  bool permanently_down = false;
  std::uint64_t last_steps = 0;
  clock_time last_progress{};
  replica_status last_status;
};

struct supervisor_state {
  supervisor_options options;
  caf::actor router;
  std::vector<replica_group> groups;
  static inline const char* name = "dsrt.supervisor";
};

namespace {

using self_ptr = caf::stateful_actor<supervisor_state>*;

void spawn_replica(self_ptr self, int i) {
  auto& st = self->state;
  auto& g = st.groups[std::size_t(i)];
  const auto& exec = st.options.executors[std::size_t(i)];
  const auto& faults = st.options.faults[std::size_t(i)];
  g.shard = st.options.spawn_shard ? st.options.spawn_shard(self->system(), exec, faults)
                                   : self->system().spawn<caf::detached>(shard_actor, exec, faults, exec->claim());
  batcher_options bo;
  bo.replica = st.options.replica_base + i;
  bo.scheduler = st.options.scheduler;
  bo.scheduler.step_tokens_max = std::min(bo.scheduler.step_tokens_max, exec->step_tokens_max());
  bo.scheduler.sequences_max = int(std::min<std::int64_t>(bo.scheduler.sequences_max, bo.scheduler.step_tokens_max));
  bo.kv_blocks = exec->kv_blocks();
  bo.kv_block_tokens = exec->kv_block_tokens();
  bo.metrics = st.options.metrics;
  g.batcher = spawn_batcher(self->system(), bo, g.shard, st.router);
  self->monitor(g.batcher);
  g.last_steps = 0;
  g.last_progress = self->clock().now();
  self->send(st.router, replica_up{st.options.replica_base + i, g.batcher});
}

void on_down(self_ptr self, int i, const caf::error& reason) {
  auto& st = self->state;
  auto& g = st.groups[std::size_t(i)];
  g.batcher = nullptr;
  if (g.shard) self->send_exit(g.shard, caf::exit_reason::kill);   // one-for-all
  g.shard = nullptr;
  const auto decision = g.budget->on_failure(self->clock().now());
  const bool permanent = decision == policy::restart_decision::escalate;
  self->send(st.router, replica_down{st.options.replica_base + i, permanent, to_string(reason)});
  if (permanent) {
    g.permanently_down = true;
    return;
  }
  ++g.restarts;
  st.options.metrics->counter("dsrt_replica_restarts_total", "replica restarts by the supervisor",
                             {{"replica", std::to_string(st.options.replica_base + i)}}).inc();
  spawn_replica(self, i);
}

caf::behavior supervisor_actor(caf::stateful_actor<supervisor_state>* self,
                               supervisor_options options, caf::actor router) {
  auto& st = self->state;
  if (!options.metrics) options.metrics = std::make_shared<metrics::registry>();
  st.options = std::move(options);
  st.router = std::move(router);
  st.groups.resize(std::size_t(st.options.replicas));
  for (auto& g : st.groups) g.budget = std::make_unique<policy::restart_budget>(st.options.restarts);
  for (int i = 0; i < st.options.replicas; ++i) spawn_replica(self, i);
  self->set_down_handler([self](caf::down_msg& down) {
    auto& st = self->state;
    for (std::size_t i = 0; i < st.groups.size(); ++i)
      if (st.groups[i].batcher && st.groups[i].batcher.address() == down.source) on_down(self, int(i), down.reason);
  });
  self->delayed_send(self, st.options.watchdog_interval_ms, watch_atom::value);
  return {
      [self](watch_atom) {
        auto& st = self->state;
        for (std::size_t i = 0; i < st.groups.size(); ++i) {
          auto batcher = st.groups[i].batcher;
          if (!batcher) continue;
          self->request(batcher, st.options.watchdog_interval_ms, status_atom::value)
              .then(
                  [self, i, batcher](replica_status& s) {
                    auto& g = self->state.groups[i];
                    if (g.batcher != batcher) return;   // restarted meanwhile
                    const auto now = self->clock().now();
                    g.last_status = s;
                    if (s.steps != g.last_steps || !s.has_work) {
                      g.last_steps = s.steps;
                      g.last_progress = now;
                    } else if (now - g.last_progress >= self->state.options.watchdog_stall_ms) {
                      self->send_exit(batcher, caf::exit_reason::kill);   // stalled: restart it
                    }
                  },
                  [](caf::error&) {
                    // No answer within the interval: the next round's stall check decides.
                  });
        }
        self->delayed_send(self, st.options.watchdog_interval_ms, watch_atom::value);
      },
      [self](kill_atom, std::int32_t replica) {
        auto& st = self->state;
        if (replica >= 0 && replica < int(st.groups.size()) && st.groups[std::size_t(replica)].shard)
          self->send_exit(st.groups[std::size_t(replica)].shard, caf::exit_reason::kill);
      },
      [self](status_atom) {
        auto& st = self->state;
        supervisor_counters c;
        for (const auto& g : st.groups) {
          c.restarts.push_back(g.restarts);
          c.permanently_down.push_back(g.permanently_down);
          c.last_status.push_back(g.last_status);
          c.batchers.push_back(g.batcher);
        }
        return c;
      },
  };
}

}  // namespace

caf::actor spawn_supervisor(caf::actor_system& system, supervisor_options options, caf::actor router) {
  return system.spawn(supervisor_actor, std::move(options), std::move(router));
}

}  // namespace dsrt::actors
