#include "sim/actor_world.h"

#include <caf/all.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <vector>

#include "actors/cache.h"
#include "actors/messages.h"
#include "actors/router.h"
#include "actors/supervisor.h"
#include "runtime/buggify.h"
#include "runtime/policy/circuit_breaker.h"
#include "sim/checker.h"
#include "sim/load.h"
#include "sim/timed_shard.h"

namespace dsrt::sim {
namespace {

using namespace std::chrono;

// The virtual clock starts here, clear of the clock's epoch (as the coordinator tests do).
constexpr auto clock_base = hours(1);

class actor_world {
 public:
  explicit actor_world(const sim_config& c)
      : c_(c), checker_(limits(c_)), load_(c_), sys_(configure(cfg_)),
        sched_(dynamic_cast<caf::scheduler::test_coordinator&>(sys_.scheduler())) {
    sched_.clock().current_time = clock_time{} + clock_base;
  }
  ~actor_world() {
    // The batchers (and their shards) are the supervisor's: kill them too, and drop every
    // handle this object holds, or the actor system's destructor waits for them forever.
    if (status_)
      for (auto& b : status_->batchers)
        if (b) actors_.push_back(b);
    status_.reset();
    for (auto& a : actors_) caf::anon_send_exit(a, caf::exit_reason::kill);
    sched_.run();
    actors_.clear();
    router_ = supervisor_ = client_ = nullptr;
  }

  sim_report run() {
    // The actors run on this thread, so the production code's BUGGIFY points see the scope.
    std::optional<buggify_scope> buggify;
    if (c_.buggify) buggify.emplace(c_.seed, c_.buggify_probabilities);
    spawn_cluster();
    schedule_faults();
    auto next = load_.next();
    const auto until = base() + c_.duration_ms + c_.deadline_ms * 4 + minutes(10);
    std::size_t fault_at = 0;
    for (;;) {
      report_.events += sched_.run();
      if (!next && finals_ == arrivals_ && fault_at == actions_.size()) break;
      if (now() > until || report_.events > c_.events_max) {
        checker_.violation("the run did not drain (events_max or the time bound reached)");
        break;
      }
      // The earliest of: the next arrival, the next fault action, the next actor timer.
      std::optional<clock_time> timer;
      if (!sched_.clock().schedule().empty()) timer = sched_.clock().schedule().begin()->first;
      const auto arrival_at = next ? std::optional(base() + next->at.time_since_epoch()) : std::nullopt;
      const auto fault_time = fault_at < actions_.size() ? std::optional(actions_[fault_at].at) : std::nullopt;
      std::optional<clock_time> soonest;
      for (auto t : {arrival_at, fault_time, timer})
        if (t && (!soonest || *t < *soonest)) soonest = t;
      if (!soonest) break;   // nothing will ever happen again
      if (timer && *soonest == *timer && *timer > now()) {
        sched_.clock().advance_time(*timer - now());
        continue;
      }
      if (timer && *soonest == *timer) {
        sched_.clock().trigger_timeout();
        continue;
      }
      sched_.clock().current_time = std::max(now(), *soonest);
      if (fault_time && *soonest == *fault_time) {
        actions_[fault_at++].run();
        continue;
      }
      arrive(std::move(next->request), next->prompt_key);
      next = load_.next();
    }
    check_end();
    checker_.finish_into(report_);
    report_.trace_hash = hash_;
    report_.simulated_s = duration<double>(now() - base()).count();
    quiet_.reset();   // before the scope it would restore is gone
    if (buggify) report_.buggify_fired = buggify->fired();
    return std::move(report_);
  }

  // What the client actor receives (on the test's thread).
  void on_chunk(const actors::token_chunk& chunk) {
    trace(7, chunk.request_id, chunk.sequence);
    checker_.on_chunk(now(), chunk);
  }
  void on_final(const actors::final_message& f) {
    trace(8, f.request_id, f.failure ? std::uint64_t(f.failure->code) + 1 : 0);
    checker_.on_final(now(), f);
    ++finals_;
  }
  void on_status(actors::supervisor_counters s) { status_ = std::move(s); }
  void on_router_status(const actors::router_counters& r) {
    if (recovery_check_) {   // recovery_ms after the last fault ended
      recovery_check_ = false;
      const bool open = std::count(r.breaker_states.begin(), r.breaker_states.end(),
                                   int(policy::breaker_state::open)) > 0;
      if (r.replicas_up < c_.replicas || open)
        checker_.violation(fmt::format("not recovered {} ms after the last fault ended: {} of {} replicas up{}",
                                       c_.recovery_ms.count(), r.replicas_up, c_.replicas,
                                       open ? ", a breaker open" : ""));
      return;
    }
    report_.retries = r.retries;
    report_.resumptions = r.resumptions;
    for (auto n : r.breaker_opens) report_.breaker_opens += std::int64_t(n);
  }

 private:
  struct action {
    clock_time at;
    std::function<void()> run;
  };

  static caf::actor_system_config& configure(caf::actor_system_config& cfg) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.file-verbosity", caf::atom("quiet"));
    cfg.set("logger.console", caf::atom("none"));
    return cfg;
  }
  static checker_limits limits(const sim_config& c) {
    // The router actor ends a request at its deadline and the client hears at once.
    auto l = limits_of(c, milliseconds(1));
    l.model_tokens = false;   // null_executor's tokens
    return l;
  }
  clock_time base() const { return clock_time{} + clock_base; }
  clock_time now() { return sched_.clock().now(); }
  void trace(std::uint64_t kind, std::uint64_t a, std::uint64_t b = 0) {
    for (std::uint64_t v : {std::uint64_t((now() - base()).count()), kind, a, b}) {
      hash_ ^= v;
      hash_ *= 1099511628211ull;
    }
  }
  caf::actor keep(caf::actor a) {
    actors_.push_back(a);
    return a;
  }

  void spawn_cluster();
  void schedule_faults();
  void arrive(serving::generate_request r, std::uint64_t key) {
    trace(1, r.request_id);
    r.deadline = *r.deadline + clock_base;
    checker_.on_arrival(now(), r.request_id, *r.deadline, r.max_tokens, key);
    ++arrivals_;
    caf::send_as(client_, router_, std::move(r));
  }
  void check_end() {
    // One more watchdog round, so every batcher's last status is current.
    sched_.clock().advance_time(duration_cast<caf::timespan>(supervisor_options_.watchdog_interval_ms * 2));
    sched_.run();
    caf::send_as(client_, supervisor_, actors::status_atom::value);
    caf::send_as(client_, router_, actors::status_atom::value);
    sched_.run();
    if (!status_) {
      checker_.violation("the supervisor did not answer a status request");
      return;
    }
    for (std::size_t i = 0; i < status_->last_status.size(); ++i) {
      const auto& s = status_->last_status[i];
      checker_.on_replica_end(int(i), s.running, s.waiting, s.leaked_blocks);
    }
    for (auto n : status_->restarts) report_.restarts += n;
  }

  // What the actors' handlers use is declared before the actor system, so it outlives it.
  sim_config c_;
  invariant_checker checker_;
  load_generator load_;
  actors::supervisor_options supervisor_options_;
  std::vector<std::shared_ptr<actors::shard_faults>> faults_;
  std::vector<std::shared_ptr<device_state>> devices_;
  std::vector<action> actions_;
  std::optional<actors::supervisor_counters> status_;
  bool recovery_check_ = false;
  // Set when the last fault ends: no BUGGIFY scope is current from then on (as in the
  // policy world), so recovery is judged with every fault stopped. Reset before the run's
  // scope goes.
  std::optional<buggify_scope::use> quiet_;
  std::int64_t arrivals_ = 0, finals_ = 0;
  sim_report report_;
  std::uint64_t hash_ = 1469598103934665603ull;
  caf::actor_system_config cfg_;
  caf::actor_system sys_;
  caf::scheduler::test_coordinator& sched_;
  caf::actor router_, supervisor_, client_;
  std::vector<caf::actor> actors_;
};

caf::behavior client_actor(caf::event_based_actor*, actor_world* world) {
  return {
      [world](actors::token_chunk& c) { world->on_chunk(c); },
      [world](actors::final_message& f) { world->on_final(f); },
      [world](actors::supervisor_counters& s) { world->on_status(std::move(s)); },
      [world](actors::router_counters& r) { world->on_router_status(r); },
  };
}

void actor_world::spawn_cluster() {
  actors::router_options ro;
  ro.policy = router_config_of(c_);
  ro.policy.stop_token_ids.clear();   // null_executor's tokens then never end a stream early
  router_ = keep(actors::spawn_router(sys_, ro, nullptr, keep(actors::spawn_cache(sys_, ro.response_cache))));
  auto& so = supervisor_options_;
  so.replicas = c_.replicas;
  so.scheduler = c_.scheduler;
  so.restarts = c_.restarts;
  for (int i = 0; i < c_.replicas; ++i) {
    so.executors.push_back(std::make_shared<serving::null_executor>(32000, 3, c_.kv_blocks, c_.kv_block_tokens,
                                                                      c_.scheduler.step_tokens_max));
    faults_.push_back(std::make_shared<actors::shard_faults>());
    devices_.push_back(std::make_shared<device_state>());
  }
  so.faults = faults_;
  // The simulated device: a shard on the test coordinator answering in virtual time.
  so.spawn_shard = [this](caf::actor_system& sys, std::shared_ptr<serving::step_executor> exec,
                          std::shared_ptr<actors::shard_faults> faults) {
    const auto i = std::size_t(std::find(faults_.begin(), faults_.end(), faults) - faults_.begin());
    return spawn_timed_shard(sys, std::move(exec), std::move(faults), c_.device, devices_.at(i));
  };
  supervisor_ = keep(actors::spawn_supervisor(sys_, so, router_));
  client_ = keep(sys_.spawn(client_actor, this));
  report_.events += sched_.run();
}

void actor_world::schedule_faults() {
  const auto all = draw_faults(c_);
  const auto kept = kept_fault_indices(c_, all.size());
  const int per_node = std::max(1, c_.replicas_per_node);
  std::optional<milliseconds> last_end;
  for (std::size_t k : kept) {
    const fault& f = all[k];
    report_.faults.push_back(describe(f));
    const auto end = fault_end(f, c_.swizzle_step_ms, c_.swizzle_hold_ms);
    last_end = std::max(last_end.value_or(end), end);
    const auto at = base() + f.at;
    const auto i = std::size_t(f.target);
    switch (f.kind) {
      case fault_kind::kill_node:
        actions_.push_back({at, [this, f, per_node] {
                              trace(24, std::uint64_t(f.target));
                              for (int r = f.target * per_node; r < std::min(c_.replicas, (f.target + 1) * per_node); ++r) {
                                ++report_.kills;
                                caf::anon_send(supervisor_, actors::kill_atom::value, std::int32_t(r));
                              }
                            }});
        break;
      case fault_kind::fail_steps:
        actions_.push_back({at, [this, i] { trace(20, i); faults_[i]->fail_steps = true; }});
        actions_.push_back({at + f.length, [this, i] { trace(21, i); faults_[i]->fail_steps = false; }});
        break;
      case fault_kind::slow_device:
        actions_.push_back({at, [this, i] { trace(22, i); devices_[i]->slow = c_.slow_factor; }});
        actions_.push_back({at + f.length, [this, i] { trace(23, i); devices_[i]->slow = 1; }});
        break;
      case fault_kind::oom_step:
        actions_.push_back({at, [this, i] { trace(32, i); devices_[i]->fail_next = true; }});
        break;
      default:
        break;   // refused by validate_actor_world
    }
  }
  if (last_end && c_.buggify && !c_.buggify_after_faults)
    actions_.push_back({base() + *last_end, [this] { quiet_.emplace(nullptr); }});
  if (last_end && c_.recovery_ms.count() > 0)
    actions_.push_back({base() + *last_end + c_.recovery_ms, [this] {
                          trace(40, 0);
                          recovery_check_ = true;
                          caf::send_as(client_, router_, actors::status_atom::value);
                        }});
  std::stable_sort(actions_.begin(), actions_.end(), [](const action& a, const action& b) { return a.at < b.at; });
}

}  // namespace

status validate_actor_world(const sim_config& c) {
  if (c.swizzles > 0 || c.pauses > 0 || c.clock_jumps > 0 || c.corruptions > 0)
    return make_error(error_code::invalid_argument,
                      "the actor world runs one actor system: swizzles, pauses, clock jumps and corruptions need "
                      "links between processes (use the policy simulation)");
  return ok_status();
}

sim_report run_actor_world(const sim_config& config) {
  return actor_world(config).run();
}

}  // namespace dsrt::sim
