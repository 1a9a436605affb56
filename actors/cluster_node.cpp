#include "actors/cluster_node.h"

#include <unistd.h>

#include <chrono>

#include "actors/blocking_ask.h"
#include "actors/cache.h"
#include "actors/system_config.h"

namespace dsrt::actors {

std::uint64_t make_incarnation() {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
  return std::uint64_t(us) ^ (std::uint64_t(::getpid()) << 44);
}

// ---- head_node ----

result<std::unique_ptr<head_node>> head_node::start(head_node_options options,
                                                    const transport::cluster_secret& secret,
                                                    std::shared_ptr<const tokenizer::tokenizer> tokenizer) {
  if (options.replicas < 1) return make_error(error_code::invalid_argument, "a cluster needs at least one replica");
  DSRT_TRY(policy::validate(options.router.policy.admission));
  DSRT_TRY(policy::validate(options.router.policy.breaker));
  DSRT_TRY(transport::validate(options.transport));
  std::unique_ptr<head_node> node(new head_node());
  node->tokenizer_ = std::move(tokenizer);
  node->config_ = make_system_config(options.scheduler_threads);
  node->system_ = std::make_unique<caf::actor_system>(*node->config_);
  options.router.policy.replicas = options.replicas;
  options.router.policy.priority_classes = options.priority_classes;
  if (options.incarnation == 0) options.incarnation = make_incarnation();
  node->metrics_ = std::make_unique<node_metrics>(0);
  options.router.metrics = node->metrics_->registry();
  node->options_ = options;
  auto t = transport::ucx_transport::start(
      options.transport, secret, {transport::node_role::head, 0, options.incarnation}, node->bridge_);
  if (!t) {
    node->bridge_.set_target(caf::actor{});
    return t.err();
  }
  node->transport_ = std::move(*t);
  node->cache_ = spawn_cache(*node->system_, options.router.response_cache);
  node->router_ = spawn_router(*node->system_, options.router, node->tokenizer_, node->cache_);
  node->link_ = spawn_head_link(*node->system_, *node->transport_, node->router_, node->metrics_->registry());
  node->bridge_.set_target(node->link_, closer(*node->transport_), options.bridge);
  return node;
}

head_node::~head_node() {
  if (!system_) return;
  if (link_) {
    caf::anon_send_exit(link_, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(router_, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(cache_, caf::exit_reason::user_shutdown);
  }
  link_ = router_ = cache_ = nullptr;
  system_->await_all_actors_done();
  transport_.reset();   // its callbacks now find no actor; then the system goes
  system_.reset();
}

result<router_counters> head_node::router_status() {
  return blocking_ask<router_counters>(*system_, router_, options_.ask_timeout_ms, status_atom::value);
}

result<head_link_stats> head_node::link_status() {
  return blocking_ask<head_link_stats>(*system_, link_, options_.ask_timeout_ms, status_atom::value);
}

status head_node::wait_ready(milliseconds timeout) {
  return wait_until(timeout, "every replica up", [&] {
    auto st = router_status();
    return st && st->replicas_up == options_.replicas;
  });
}

void head_node::drain() { caf::anon_send(router_, drain_atom::value); }

std::int64_t head_node::in_flight() {
  auto st = router_status();
  if (!st) return -1;
  if (const auto routed = st->accepted - st->completed - st->failed; routed > 0) return routed;
  // The router is done, but its last finals may still wait in the link's mailbox. Asked
  // after the router answered, the link has handled whatever the router sent it before that
  // answer: what it still counts has not been handed to the transport.
  auto link = link_status();
  return link ? link->open_requests : -1;
}

// ---- worker_node ----

result<std::unique_ptr<worker_node>> worker_node::start(worker_node_options options,
                                                        const transport::cluster_secret& secret) {
  const auto replicas = options.link.replicas;
  if (replicas < 1 || std::size_t(replicas) != options.supervisor.executors.size())
    return make_error(error_code::invalid_argument, "{} replicas need as many executors, got {}", replicas,
                      options.supervisor.executors.size());
  DSRT_TRY(policy::validate(options.supervisor.restarts));
  DSRT_TRY(batching::validate(options.supervisor.scheduler));
  options.transport.listen = false;
  DSRT_TRY(transport::validate(options.transport));
  std::unique_ptr<worker_node> node(new worker_node());
  node->config_ = make_system_config(options.scheduler_threads);
  node->system_ = std::make_unique<caf::actor_system>(*node->config_);
  if (options.incarnation == 0) options.incarnation = make_incarnation();
  auto t = transport::ucx_transport::start(
      options.transport, secret, {transport::node_role::worker, options.node_id, options.incarnation}, node->bridge_);
  if (!t) {
    node->bridge_.set_target(caf::actor{});
    return t.err();
  }
  node->transport_ = std::move(*t);
  node->metrics_ = std::make_unique<node_metrics>(options.node_id);
  options.link.metrics = node->metrics_->registry();
  node->link_ = spawn_worker_link(*node->system_, *node->transport_, options.link);
  node->bridge_.set_target(node->link_, closer(*node->transport_), options.bridge);
  for (int i = 0; i < replicas; ++i) node->faults_.push_back(std::make_shared<shard_faults>());
  options.supervisor.replicas = replicas;
  options.supervisor.replica_base = options.link.replica_base;
  options.supervisor.faults = node->faults_;
  options.supervisor.metrics = node->metrics_->registry();
  node->supervisor_ = spawn_supervisor(*node->system_, options.supervisor, node->link_);
  node->options_ = std::move(options);
  return node;
}

worker_node::~worker_node() {
  if (!system_) return;
  if (supervisor_) {
    auto st = blocking_ask<supervisor_counters>(*system_, supervisor_, options_.ask_timeout_ms, status_atom::value);
    caf::anon_send_exit(supervisor_, caf::exit_reason::user_shutdown);
    if (st)
      for (auto& b : st->batchers)
        if (b) caf::anon_send_exit(b, caf::exit_reason::user_shutdown);
  }
  if (link_) caf::anon_send_exit(link_, caf::exit_reason::user_shutdown);
  supervisor_ = link_ = nullptr;
  system_->await_all_actors_done();
  transport_.reset();
  system_.reset();
}

result<worker_link_stats> worker_node::link_status() {
  return blocking_ask<worker_link_stats>(*system_, link_, options_.ask_timeout_ms, status_atom::value);
}

result<supervisor_counters> worker_node::supervisor_status() {
  return blocking_ask<supervisor_counters>(*system_, supervisor_, options_.ask_timeout_ms, status_atom::value);
}

status worker_node::wait_connected(milliseconds timeout) {
  return wait_until(timeout, "connecting to the head", [&] {
    auto st = link_status();
    return st && st->connected;
  });
}

void worker_node::kill_shard(std::int32_t local_replica) {
  caf::anon_send(supervisor_, kill_atom::value, local_replica);
}

}  // namespace dsrt::actors
