#pragma once
// The two kinds of cluster node process, as objects (dsnode runs one; tests may run several
// in one process, each with its own actor system and transport):
//
//   head_node    the router, the response cache and the head link; listens for workers and
//                clients. Apps on the head may use dsrt::client on it directly.
//   worker_node  the node supervisor with its replicas (batcher + shard pairs) and the
//                worker link; connects to the head.
//
// Ownership: each owns its actor system, transport and bridge. Destruction stops the actors
// first, then the transport.
// Thread safety: every method may be called from any thread.
#include <caf/all.hpp>

#include <atomic>
#include <memory>

#include "actors/head_link.h"
#include "actors/router.h"
#include "actors/router_access.h"
#include "actors/supervisor.h"
#include "actors/transport_metrics.h"
#include "actors/worker_link.h"
#include "transport/ucx_transport.h"

namespace dsrt::actors {

struct head_node_options {
  transport::transport_config transport;   // listen_host / listen_port: where workers and clients connect
  bridge_limits bridge;                     // per peer, between the transport and the link
  router_options router;
  std::int32_t replicas = 1;               // in the whole cluster (the router's replica count)
  std::int32_t priority_classes = 3;       // as the workers' batchers are configured
  std::int32_t scheduler_threads = 2;
  milliseconds ask_timeout_ms{10000};
  std::uint64_t incarnation = 0;           // 0: one is made from the clock and the pid
};

class head_node : public router_access {
 public:
  // Errors: invalid_argument (bad options); unavailable (the transport cannot start).
  static result<std::unique_ptr<head_node>> start(head_node_options options,
                                                  const transport::cluster_secret& secret,
                                                  std::shared_ptr<const tokenizer::tokenizer> tokenizer);
  ~head_node() override;

  std::uint16_t port() const { return transport_->port(); }
  caf::actor_system& system() override { return *system_; }
  const caf::actor& router() const override { return router_; }
  const std::shared_ptr<const tokenizer::tokenizer>& tokenizer() const override { return tokenizer_; }
  // Ids of apps on the head count from 1; remote clients' requests reach the router with
  // the top bit set (head_link), so the two never collide.
  std::uint64_t next_request_id() override { return ++request_ids_; }

  result<router_counters> router_status();
  result<head_link_stats> link_status();
  // Waits until the router knows every replica. Errors: unavailable on timeout.
  status wait_ready(milliseconds timeout);
  // Stops admitting: new requests get UNAVAILABLE, accepted ones finish.
  void drain();
  // Accepted requests whose final has not gone to its client yet: the router's, then the
  // remote clients' the link has not sent (-1 when the router or the link does not answer).
  // At 0 the node can go: the transport sends what it was given before its goodbyes.
  std::int64_t in_flight();
  // The node's metrics in Prometheus text: the router's series and the transport's.
  std::string metrics_text() { return metrics_->text(*transport_); }

 private:
  head_node() = default;
  head_node_options options_;
  std::unique_ptr<node_metrics> metrics_;   // made in start(), before the actors
  std::shared_ptr<const tokenizer::tokenizer> tokenizer_;
  std::unique_ptr<caf::actor_system_config> config_;
  std::unique_ptr<caf::actor_system> system_;
  transport_bridge bridge_;
  std::unique_ptr<transport::ucx_transport> transport_;
  caf::actor router_, cache_, link_;
  std::atomic<std::uint64_t> request_ids_{0};
};

struct worker_node_options {
  transport::transport_config transport;   // listen = false: a worker connects to the head
  bridge_limits bridge;                     // per peer, between the transport and the link
  worker_link_options link;                // the head's address, this node's replica range
  supervisor_options supervisor;           // executors: one per replica of this node
  std::int32_t node_id = 1;
  std::int32_t scheduler_threads = 2;
  milliseconds ask_timeout_ms{10000};
  std::uint64_t incarnation = 0;           // 0: one is made from the clock and the pid
};

class worker_node {
 public:
  // Errors: invalid_argument (bad options, executors not one per replica); unavailable.
  static result<std::unique_ptr<worker_node>> start(worker_node_options options,
                                                    const transport::cluster_secret& secret);
  ~worker_node();

  result<worker_link_stats> link_status();
  result<supervisor_counters> supervisor_status();
  // Waits until connected to the head. Errors: unavailable on timeout.
  status wait_connected(milliseconds timeout);
  void kill_shard(std::int32_t local_replica);
  shard_faults& faults(std::int32_t local_replica) { return *faults_.at(std::size_t(local_replica)); }
  // The node's metrics in Prometheus text: its supervisor's and batchers' series and the
  // transport's.
  std::string metrics_text() { return metrics_->text(*transport_); }

 private:
  worker_node() = default;
  worker_node_options options_;
  std::unique_ptr<node_metrics> metrics_;   // made in start(), before the actors
  std::unique_ptr<caf::actor_system_config> config_;
  std::unique_ptr<caf::actor_system> system_;
  transport_bridge bridge_;
  std::unique_ptr<transport::ucx_transport> transport_;
  std::vector<std::shared_ptr<shard_faults>> faults_;
  caf::actor link_, supervisor_;
};

// A process's incarnation: different on every start (the clock in microseconds, xor the pid).
std::uint64_t make_incarnation();

}  // namespace dsrt::actors
