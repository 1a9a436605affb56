#pragma once
// The serving runtime in one process: a CAF actor system with the router, the node
// supervisor and, under it, one batcher + shard pair per replica. Apps reach it through
// dsrt::client (actors/client.h); dsbench load --inproc and the end-to-end tests drive it.
//
// Ownership: owns the actor system and the executors (the models) handed to start().
// Thread safety: every method may be called from any thread.
#include <caf/all.hpp>

#include <atomic>
#include <memory>
#include <vector>

#include "actors/router.h"
#include "actors/router_access.h"
#include "actors/supervisor.h"
#include "runtime/error.h"

namespace dsrt::actors {

struct runtime_options {
  std::int32_t replicas = 2;
  router_options router;                 // replicas is set from the field above
  supervisor_options supervisor;         // executors and faults are set by start()
  std::int32_t scheduler_threads = 2;    // CAF worker threads (shards run on their own)
  milliseconds ask_timeout_ms{10000};    // for the blocking status queries below
};

class local_runtime : public router_access {
 public:
  // Starts the actors. executors: one per replica (each with its own model and KV memory).
  // Errors: invalid_argument when a policy configuration is invalid or the executor count
  // differs from replicas.
  static result<std::unique_ptr<local_runtime>> start(
      runtime_options options, std::vector<std::shared_ptr<serving::step_executor>> executors,
      std::shared_ptr<const tokenizer::tokenizer> tokenizer);
  ~local_runtime();   // stops every actor and waits for them

  caf::actor_system& system() override { return *system_; }
  const caf::actor& router() const override { return router_; }
  const std::shared_ptr<const tokenizer::tokenizer>& tokenizer() const override { return tokenizer_; }
  std::uint64_t next_request_id() override { return ++request_ids_; }
  std::int32_t replicas() const { return options_.replicas; }

  // Fault injection (tests, dsbench load --fault).
  shard_faults& faults(std::int32_t replica) { return *faults_.at(std::size_t(replica)); }
  void kill_shard(std::int32_t replica);
  // Stops admitting: new requests get UNAVAILABLE, accepted ones finish.
  void drain();

  // Every series the actors export (Prometheus text or JSON).
  const metrics::registry& metrics() const { return *metrics_; }

  result<router_counters> router_status();
  result<supervisor_counters> supervisor_status();
  // Each replica's current status, asked of its batcher now (down replicas are skipped).
  result<std::vector<replica_status>> replica_statuses();

 private:
  local_runtime() = default;

  runtime_options options_;
  std::unique_ptr<caf::actor_system_config> config_;
  std::unique_ptr<caf::actor_system> system_;
  std::vector<std::shared_ptr<shard_faults>> faults_;
  std::shared_ptr<const tokenizer::tokenizer> tokenizer_;
  std::shared_ptr<metrics::registry> metrics_ = std::make_shared<metrics::registry>();
  caf::actor router_, supervisor_, cache_;
  std::atomic<std::uint64_t> request_ids_{0};
};

}  // namespace dsrt::actors
