#include "actors/local_runtime.h"

#include "actors/blocking_ask.h"
#include "actors/cache.h"
#include "actors/system_config.h"


namespace dsrt::actors {
result<std::unique_ptr<local_runtime>> local_runtime::start(
    runtime_options options, std::vector<std::shared_ptr<serving::step_executor>> executors,
    std::shared_ptr<const tokenizer::tokenizer> tokenizer) {
  if (options.replicas < 1 || std::size_t(options.replicas) != executors.size())
    return make_error(error_code::invalid_argument, "{} replicas need as many executors, got {}",
                      options.replicas, executors.size());
  DSRT_TRY(policy::validate(options.router.policy.admission));
  DSRT_TRY(policy::validate(options.router.policy.breaker));
  DSRT_TRY(policy::validate(options.supervisor.restarts));
  DSRT_TRY(batching::validate(options.supervisor.scheduler));
  if (options.router.policy.request_attempts_max < 1)
    return make_error(error_code::invalid_argument, "request_attempts_max must be at least 1");
  std::unique_ptr<local_runtime> rt(new local_runtime());
  rt->options_ = options;
  rt->tokenizer_ = tokenizer;
  rt->config_ = make_system_config(options.scheduler_threads);
  rt->system_ = std::make_unique<caf::actor_system>(*rt->config_);
  options.router.policy.replicas = options.replicas;
  options.router.metrics = rt->metrics_;
  options.supervisor.metrics = rt->metrics_;
  options.router.policy.priority_classes = options.supervisor.scheduler.priority_classes;
  rt->cache_ = spawn_cache(*rt->system_, options.router.response_cache);
  rt->router_ = spawn_router(*rt->system_, options.router, tokenizer, rt->cache_);
  for (int i = 0; i < options.replicas; ++i) rt->faults_.push_back(std::make_shared<shard_faults>());
  options.supervisor.replicas = options.replicas;
  options.supervisor.executors = std::move(executors);
  options.supervisor.faults = rt->faults_;
  rt->supervisor_ = spawn_supervisor(*rt->system_, options.supervisor, rt->router_);
  // Ready means the router knows every replica: a request sent before would find none.
  auto* raw = rt.get();
  DSRT_TRY(wait_until(options.ask_timeout_ms, "every replica up", [raw, &options] {
    auto st = raw->router_status();
    return st && st->replicas_up == options.replicas;
  }));
  return rt;
}

local_runtime::~local_runtime() {
  if (!system_) return;
  // The supervisor goes first (so it restarts nothing), then the replicas it supervised
  // (each batcher's link takes its detached shard along), then the router; clients still
  // waiting see the router go down and get UNAVAILABLE.
  auto st = blocking_ask<supervisor_counters>(*system_, supervisor_, options_.ask_timeout_ms, status_atom::value);
  caf::anon_send_exit(supervisor_, caf::exit_reason::user_shutdown);
  if (st)
    for (auto& b : st->batchers)
      if (b) caf::anon_send_exit(b, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(router_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(cache_, caf::exit_reason::user_shutdown);
  cache_ = nullptr;
  supervisor_ = nullptr;
  router_ = nullptr;
  system_->await_all_actors_done();
  system_.reset();
}

void local_runtime::kill_shard(std::int32_t replica) { caf::anon_send(supervisor_, kill_atom::value, replica); }

void local_runtime::drain() { caf::anon_send(router_, drain_atom::value); }

result<router_counters> local_runtime::router_status() {
  return blocking_ask<router_counters>(*system_, router_, options_.ask_timeout_ms, status_atom::value);
}

result<supervisor_counters> local_runtime::supervisor_status() {
  return blocking_ask<supervisor_counters>(*system_, supervisor_, options_.ask_timeout_ms, status_atom::value);
}

result<std::vector<replica_status>> local_runtime::replica_statuses() {
  auto sup = supervisor_status();
  if (!sup) return sup.err();
  std::vector<replica_status> out;
  for (const auto& b : sup->batchers) {
    if (!b) continue;
    auto s = blocking_ask<replica_status>(*system_, b, options_.ask_timeout_ms, status_atom::value);
    if (s) out.push_back(std::move(*s));
  }
  return out;
}

}  // namespace dsrt::actors
