#include "sim/simulation.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>

#include "runtime/cache/response_cache.h"
#include "runtime/random.h"
#include "runtime/serving/token_streams.h"
#include "sim/checker.h"
#include "sim/event_queue.h"
#include "sim/load.h"
#include "sim/thread_tuner.h"
#include "sim/window_pool.h"
#include "transport/frame.h"
#include "transport/wire.h"

namespace dsrt::sim {
namespace {

using namespace std::chrono;

// A replica as its own process sees it (the router's view of it is a router_view).
struct replica {
  std::unique_ptr<batching::batch_scheduler> scheduler;
  bool up = true;
  std::uint64_t incarnation = 0;     // messages of an older incarnation are dropped
  bool busy = false, wake_armed = false, failing = false, oom_next = false;
  bool leak_on_kill = false;         // planted: the first kill does not free its sequences
  bool reference_leaked = false;     // planted leak_a_block_reference: done on this replica
  std::int64_t heartbeats_after_restart = 0;   // for the planted rejoin_then_fall_silent
  double slow = 1;
  batching::step_plan plan;          // the step in flight while busy
  std::unique_ptr<serving::token_streams> streams;   // the batcher's output side
};

// The router's view of a replica, from heartbeats.
struct router_view {
  clock_time last_heard{};
  std::uint64_t known_incarnation = 0;
  bool thinks_up = true;
};

// One end of a replica's connection to the router: what the process at that end sends
// and knows. The ends learn of a close one link latency apart, as over a network.
struct link_end {
  bool clogged = false;
  std::vector<std::function<void()>> held;   // waiting for the link to unclog, in order
  std::uint64_t epoch = 0;                   // closes this end knows of: older messages are lost
  bool closed = false;                       // closed for a corrupt frame; reconnects later
  bool corrupt_next = false;                 // the next encoded message sent from here
  std::uint64_t noise = 0;
};

struct node {
  bool paused = false;
  std::vector<std::function<void()>> deferred;   // what happened to it while paused, in order
  milliseconds clock_offset{0};                  // its system clock minus the true time
};

// A simulated process: the router's side (process 0: arrivals, the router, the response
// cache, clients) or a group of whole nodes (their batchers and devices). A process has its
// own events, trace hash, counters, checker part and BUGGIFY stream, and reaches the others
// only over links, whose latency is the lookahead of the parallel run (run_windows): every
// process runs its events below window start + link latency, on any thread, then what they
// sent each other joins the receivers' queues, where events of one instant run by (origin
// process, the order it scheduled or sent them). So neither the threads nor the windows
// change the trace; the partition does.
struct process {
  explicit process(int index, const checker_limits& limits)
      : index(index), q(std::uint32_t(index)), checker(limits) {}
  struct message {
    int to;
    clock_time at;
    std::uint64_t order;   // in what this process sent
    std::function<void()> fn;
  };
  int index;
  event_queue q;
  std::uint64_t hash = 1469598103934665603ull;
  std::vector<message> outbox;              // to other processes, delivered after the window
  std::uint64_t sent = 0;                   // messages to other processes so far
  std::unique_ptr<buggify_scope> buggify;   // detached: current while this process runs
  invariant_checker checker;                // process 0's is the run's; the others' violations join it at the end
  std::int64_t kills = 0, restarts = 0, corrupt_detected = 0, corrupt_undetected = 0;
  bool corrupted_in_flight = false;         // transit() flipped the frame being sent
  bool heartbeats_stopped = false;          // the router stopped listening: the run drains
  std::uint64_t ran = 0;                    // events in the last window
};

thread_local process* running_process = nullptr;

// Process indices are the event queue's 16-bit origins.
constexpr int replica_processes_max = 4096;

class simulation {
 public:
  simulation(const sim_config& c, const planted_bugs& bugs)
      : c_(c), bugs_(bugs), load_(c_), responses_(cache::response_cache_config{}),
        router_(router_config(c, bugs), nullptr) {
    DSRT_ASSERT(c.link_latency_us.count() > 0, "link latency {} us: the parallel run needs a positive one",
                c.link_latency_us.count());
    replicas_.resize(std::size_t(c.replicas));
    views_.resize(std::size_t(c.replicas));
    router_ends_.resize(std::size_t(c.replicas));
    replica_ends_.resize(std::size_t(c.replicas));
    nodes_.resize(std::size_t((c.replicas + per_node() - 1) / per_node()));
    // Bounded so a process index fits the event queue's origin (16 bits).
    const int groups = std::clamp(c.replica_processes, 1, std::min(replica_processes_max, std::max(1, int(nodes_.size()))));
    for (int k = 0; k <= groups; ++k) {
      procs_.push_back(std::make_unique<process>(k, limits(c)));
      if (c.buggify)
        procs_.back()->buggify = std::make_unique<buggify_scope>(c.seed, c.buggify_probabilities, std::uint64_t(k),
                                                                 buggify_scope::detached_t{});
    }
    for (int n = 0; n < int(nodes_.size()); ++n)
      node_process_.push_back(1 + int(std::int64_t(n) * groups / std::int64_t(nodes_.size())));
    for (int i = 0; i < c.replicas; ++i) {
      replicas_[std::size_t(i)].scheduler = make_scheduler();
      replicas_[std::size_t(i)].streams = std::make_unique<serving::token_streams>(i, c.scheduler.stream_interval_tokens);
    }
    running_process = procs_[0].get();
    for (int i = 0; i < c.replicas; ++i) router_.on_replica_up(now(), i);
  }
  ~simulation() { running_process = nullptr; }

  sim_report run() {
    running_process = procs_[0].get();
    schedule_next_arrival();
    schedule_faults();
    procs_[0]->q.at(clock_time{}, [this] { router_tick(); });
    for (std::size_t k = 1; k < procs_.size(); ++k) procs_[k]->q.at(clock_time{}, [this] { replica_heartbeats(); });
    const auto until = clock_time{} + c_.duration_ms + c_.deadline_ms * 4 + minutes(10);
    report_.events = run_windows(until);
    running_process = procs_[0].get();
    auto& checker = procs_[0]->checker;
    for (const auto& p : procs_)
      if (!p->q.empty()) {
        checker.violation("the run did not drain (events_max or the time bound reached)");
        break;
      }
    check_end();
    std::uint64_t hash = 1469598103934665603ull;
    clock_time last{};
    for (const auto& p : procs_) {
      hash = (hash ^ p->hash) * 1099511628211ull;
      last = std::max(last, p->q.now());
      report_.kills += p->kills;
      report_.restarts += p->restarts;
      report_.corrupt_detected += p->corrupt_detected;
      report_.corrupt_undetected += p->corrupt_undetected;
      if (p->index != 0)
        for (const auto& v : p->checker.violations()) checker.violation(v);
      if (p->buggify)
        for (const auto& [point, n] : p->buggify->fired()) report_.buggify_fired[point] += n;
    }
    checker.finish_into(report_);
    report_.trace_hash = hash;
    report_.simulated_s = duration<double>(last.time_since_epoch()).count();
    report_.retries = router_.counters().retries;
    report_.resumptions = router_.counters().resumptions;
    report_.fallbacks = router_.counters().fallbacks;
    report_.response_cache_hits = router_.counters().response_cache_hits;
    return std::move(report_);
  }

 private:
  static serving::router_config router_config(const sim_config& c, const planted_bugs& bugs) {
    auto r = router_config_of(c);
    if (bugs.admit_past_limit) r.admission.queue_requests_max *= 4;
    if (bugs.admit_past_token_limits) {
      r.admission.queue_tokens_max *= 4;
      r.admission.tenant_queue_requests_max *= 4;
      r.admission.tenant_queue_tokens_max *= 4;
    }
    return r;
  }
  static checker_limits limits(const sim_config& c) {
    // The router ends a request at its deadline; the final then crosses one link.
    return limits_of(c, duration_cast<milliseconds>(c.link_latency_us * 2) + milliseconds(1));
  }
  std::unique_ptr<batching::batch_scheduler> make_scheduler() const {
    return std::make_unique<batching::batch_scheduler>(c_.scheduler, c_.kv_blocks, c_.kv_block_tokens);
  }
  int per_node() const { return std::max(1, c_.replicas_per_node); }
  node& node_of(int i) { return nodes_[std::size_t(i / per_node())]; }

  // --- processes ----------------------------------------------------------------------------
  // The process whose event is running on this thread.
  process& here() const { return *running_process; }
  bool at_router() const { return running_process->index == 0; }
  clock_time now() const { return here().q.now(); }
  int process_of_node(int n) const { return node_process_[std::size_t(n)]; }
  int process_of(int replica) const { return process_of_node(replica / per_node()); }
  // Runs fn in process `to` after `delay`: in this process's queue, or (at least one link
  // latency later, the lookahead) through the outbox.
  void post(int to, clock_time::duration delay, std::function<void()> fn) {
    process& p = here();
    if (to == p.index) {
      p.q.after(delay, std::move(fn));
      return;
    }
    // At least the lookahead: so no message sent in a window is due inside it.
    DSRT_ASSERT(delay >= c_.link_latency_us, "a message between processes {} ns after it was sent",
                delay.count());
    p.outbox.push_back({to, p.q.now() + delay, p.sent++, std::move(fn)});
  }
  // Runs every process's events window by window until none is left (or `until`, or
  // events_max); returns the number run. A window runs every process up to one link
  // latency after the earliest pending event: no message sent in the window can be due
  // before its end. (Windows per process — up to the earliest event of a process that can
  // reach it, directly or through process 0, plus one or two latencies — were tried: they
  // give the same trace, but no faster run on this machine.)
  static constexpr std::uint64_t tuner_windows = 64;   // windows between the tuner's clock reads
  std::uint64_t run_windows(clock_time until) {
    const auto lookahead = duration_cast<clock_time::duration>(c_.link_latency_us);
    const int threads = std::clamp(c_.threads, 1, int(procs_.size()));
    window_pool pool(threads);
    const auto started = steady_clock::now();
    std::optional<thread_tuner> tuner;
    if (c_.adapt_threads && threads > 1) tuner.emplace(thread_tuner::config{.epoch = c_.thread_epoch_us}, ran_, started);
    std::uint64_t windows = 0;
    std::vector<process*> due;
    const std::function<void(std::size_t)> run_one = [&](std::size_t k) {
      process& p = *due[k];
      running_process = &p;
      // This process's scope, or none: never one the calling thread had open. Once the last
      // fault has ended the run is quiet — no BUGGIFY point fires (FoundationDB's simulator
      // turns it off likewise) — so that recovery is judged with every fault stopped.
      const bool quiet = !c_.buggify_after_faults && faults_end_ && window_end_ - lookahead >= *faults_end_;
      const buggify_scope::use use(quiet ? nullptr : p.buggify.get());
      p.ran = p.q.run_before(window_end_, until, c_.events_max - ran_);
      running_process = nullptr;
    };
    const auto next_at = [](const process& p) { return p.q.empty() ? clock_time::max() : p.q.next_at(); };
    while (ran_ < c_.events_max) {
      clock_time first = clock_time::max();
      for (const auto& p : procs_) first = std::min(first, next_at(*p));
      if (first == clock_time::max() || first > until) break;
      window_end_ = first + lookahead;
      due.clear();
      for (const auto& p : procs_)
        if (next_at(*p) < window_end_) due.push_back(p.get());
      // Busiest first, by their last window's events: the threads take processes in this
      // order, so a long one does not start last while the other thread waits for it.
      for (std::size_t k = 1; k < due.size(); ++k)
        for (std::size_t j = k; j > 0 && due[j - 1]->ran < due[j]->ran; --j) std::swap(due[j - 1], due[j]);
      if (due.size() == 1) {
        run_one(0);   // no other thread has work in this window
      } else {
        pool.run(due.size(), run_one);
      }
      for (process* p : due) ran_ += p->ran;
      // The clock once in a while: a window is microseconds of work.
      if (tuner && ++windows % tuner_windows == 0 && tuner->update(ran_, steady_clock::now()))
        pool.park(!tuner->parallel());
      for (const auto& p : procs_) {
        for (auto& m : p->outbox)
          procs_[std::size_t(m.to)]->q.at_from(m.at, std::uint32_t(p->index), m.order, std::move(m.fn));
        p->outbox.clear();
      }
    }
    const auto now = steady_clock::now();
    if (tuner) {
      tuner->update(ran_, now);
      report_.parallel_wall_s = duration<double>(tuner->used().parallel).count();
      report_.single_wall_s = duration<double>(tuner->used().single).count();
      report_.thread_switches = tuner->used().switches;
    } else {
      (threads > 1 ? report_.parallel_wall_s : report_.single_wall_s) = duration<double>(now - started).count();
    }
    return ran_;
  }
  invariant_checker& checker() { return here().checker; }
  void trace(std::uint64_t kind, std::uint64_t a, std::uint64_t b = 0) {
    std::uint64_t& hash = here().hash;
    for (std::uint64_t v : {std::uint64_t(now().time_since_epoch().count()), kind, a, b}) {
      hash ^= v;
      hash *= 1099511628211ull;
    }
  }
  // When a process encodes or decodes a message: steady clocks do not jump (a node's
  // system clock offset matters only to the planted skewed_deadlines bug).
  transport::clock_anchor anchor() const { return {now()}; }

  // --- load -------------------------------------------------------------------------------
  // Arrivals one at a time: each schedules the next.
  void schedule_next_arrival() {
    auto a = load_.next();
    if (!a) return;
    here().q.at(a->at, [this, r = std::move(a->request), key = a->prompt_key]() mutable {
      trace(1, r.request_id);
      checker().on_arrival(now(), r.request_id, *r.deadline, r.max_tokens, key);
      if (bugs_.ignore_deadlines || (bugs_.lose_a_final_in_the_router && r.request_id == 1)) r.deadline.reset();
      const auto id = r.request_id;
      const std::string tenant = r.tenant;
      const std::int64_t weight = std::int64_t(r.prompt.size()) + r.max_tokens;
      const auto accepted = router_.counters().accepted;
      router_.on_generate(now(), std::move(r));
      if (router_.counters().accepted > accepted) checker().on_admitted(id, tenant, weight);
      router_act();
      checker().on_router_routes(router_.routes());
      schedule_next_arrival();
    });
  }

  // --- faults -----------------------------------------------------------------------------
  void schedule_faults() {
    const auto all = draw_faults(c_);
    const auto kept = kept_fault_indices(c_, all.size());
    std::optional<milliseconds> last_end;
    std::optional<fault> first_kill;   // the planted bugs' "first killed replica" is its node's first
    for (std::size_t k : kept) {
      const fault& f = all[k];
      if (f.kind == fault_kind::kill_node && (!first_kill || f.at < first_kill->at)) first_kill = f;
      report_.faults.push_back(describe(f));
      schedule_fault(f);
      auto end = fault_end(f, c_.swizzle_step_ms, c_.swizzle_hold_ms);
      if (f.kind == fault_kind::corrupt_message) end += c_.reconnect_ms;
      last_end = std::max(last_end.value_or(end), end);
    }
    if (first_kill) {
      first_killed_ = first_kill->target * per_node();
      if (bugs_.leak_a_sequence) replicas_[std::size_t(first_killed_)].leak_on_kill = true;
    }
    if (last_end && c_.recovery_ms.count() > 0) {
      faults_end_ = clock_time{} + *last_end;
      procs_[0]->q.at(*faults_end_ + c_.recovery_ms, [this] {
        trace(40, 0);
        // Recovered once is not enough: the service must still be whole now. (A half-open
        // breaker passes: without traffic, after the load has ended, none can close.)
        const auto now_missing = unrecovered();
        if (!report_.recovered_after_ms || !now_missing.empty())
          checker().violation(fmt::format("not recovered {} ms after the last fault ended: {}", c_.recovery_ms.count(),
                                         report_.recovered_after_ms ? now_missing : unrecovered()));
      });
    }
  }
  // Each fault runs in the process it hits: a node's or a replica's, or both ends of a link.
  void schedule_fault(const fault& f) {
    const auto at = clock_time{} + f.at;
    const int target = f.target;
    auto on_replica = [&](clock_time t, std::function<void()> fn) { procs_[std::size_t(process_of(target))]->q.at(t, std::move(fn)); };
    auto on_node = [&](clock_time t, std::function<void()> fn) { procs_[std::size_t(process_of_node(target))]->q.at(t, std::move(fn)); };
    switch (f.kind) {
      case fault_kind::kill_node:
        on_node(at, [this, target, length = f.length] { kill_node(target, length); });
        break;
      case fault_kind::fail_steps:
        on_replica(at, [this, target] { trace(20, std::uint64_t(target)); replicas_[std::size_t(target)].failing = true; });
        on_replica(at + f.length, [this, target] {
          trace(21, std::uint64_t(target));
          replicas_[std::size_t(target)].failing = false;
        });
        break;
      case fault_kind::slow_device:
        on_replica(at, [this, target] { trace(22, std::uint64_t(target)); replicas_[std::size_t(target)].slow = c_.slow_factor; });
        on_replica(at + f.length, [this, target] { trace(23, std::uint64_t(target)); replicas_[std::size_t(target)].slow = 1; });
        break;
      case fault_kind::swizzle: {
        // Both ends of each link clog (and unclog) at the same moment.
        auto both_ends = [&](clock_time t, int i, bool on) {
          procs_[0]->q.at(t, [this, i, on] { clog(i, on); });
          procs_[std::size_t(process_of(i))]->q.at(t, [this, i, on] { clog(i, on); });
        };
        auto t = at;
        for (int i : f.replicas) {
          both_ends(t, i, true);
          t += c_.swizzle_step_ms;
        }
        t += c_.swizzle_hold_ms;
        for (int i : f.unclog_order) {
          both_ends(t, i, false);
          t += c_.swizzle_step_ms;
        }
        break;
      }
      case fault_kind::pause_node:
        on_node(at, [this, target] {
          trace(31, std::uint64_t(target));
          nodes_[std::size_t(target)].paused = true;
        });
        on_node(at + f.length, [this, target] { resume_node(target); });
        break;
      case fault_kind::oom_step:
        on_replica(at, [this, target] { trace(32, std::uint64_t(target)); replicas_[std::size_t(target)].oom_next = true; });
        break;
      case fault_kind::clock_jump:
        on_node(at, [this, target, shift = f.shift] {
          trace(33, std::uint64_t(target), std::uint64_t(shift.count()));
          nodes_[std::size_t(target)].clock_offset += shift;
        });
        break;
      case fault_kind::corrupt_message: {
        // The next encoded message one end sends: requests from the router's end, chunks
        // and finals from the replica's (the noise's top bit picks).
        auto corrupt = [this, target, noise = f.noise] {
          trace(34, std::uint64_t(target));
          auto& e = near_end(target);
          e.corrupt_next = true;
          e.noise = noise;
        };
        if (f.noise >> 63) {
          procs_[0]->q.at(at, corrupt);
        } else {
          on_replica(at, corrupt);
        }
        break;
      }
    }
  }
  void kill_node(int n, milliseconds restart) {
    auto& nd = nodes_[std::size_t(n)];
    nd.paused = false;   // a killed process is not frozen any more; what it deferred is lost
    nd.deferred.clear();
    for (int i = n * per_node(); i < std::min(c_.replicas, (n + 1) * per_node()); ++i) kill(i, restart);
  }
  void kill(int i, milliseconds restart) {
    auto& r = replicas_[std::size_t(i)];
    if (!r.up) return;
    trace(24, std::uint64_t(i));
    ++here().kills;
    // The process is gone: everything it held is freed with it.
    if (!std::exchange(r.leak_on_kill, false)) r.scheduler->clear();
    checker().on_quiescent(i, *r.scheduler, /*expect_idle=*/true);
    r.up = false;
    ++r.incarnation;
    r.busy = r.wake_armed = false;
    r.streams->clear();
    // The router notices by the missing heartbeats (or by the new incarnation's first one).
    here().q.after(restart, [this, i] {
      trace(26, std::uint64_t(i));
      ++here().restarts;
      auto& r = replicas_[std::size_t(i)];
      r.scheduler = make_scheduler();
      r.streams->clear();
      r.up = true;
      pump(i);
    });
  }
  void resume_node(int n) {
    auto& nd = nodes_[std::size_t(n)];
    if (!nd.paused) return;
    trace(35, std::uint64_t(n));
    nd.paused = false;
    auto deferred = std::move(nd.deferred);
    nd.deferred.clear();
    for (auto& fn : deferred) fn();
    for (int i = n * per_node(); i < std::min(c_.replicas, (n + 1) * per_node()); ++i) pump(i);
  }
  // Runs fn on replica i's process now, or when its node resumes.
  void on_node(int i, std::function<void()> fn) {
    auto& nd = node_of(i);
    if (nd.paused) {
      nd.deferred.push_back(std::move(fn));
      return;
    }
    fn();
  }

  // --- links and heartbeats -----------------------------------------------------------------
  // Replica i's link as the running process holds it (the router's end in process 0), and
  // the process at the other end.
  link_end& near_end(int i) { return (at_router() ? router_ends_ : replica_ends_)[std::size_t(i)]; }
  int far_process(int i) const { return at_router() ? process_of(i) : 0; }
  void send_link(int i, std::function<void()> fn) {
    auto& e = near_end(i);
    if (e.closed) return;   // no connection: lost
    auto deliver = [this, i, epoch = e.epoch, fn = std::move(fn)] {
      if (near_end(i).epoch == epoch) fn();   // sent before a close this end knows of: lost
    };
    if (e.clogged) {
      e.held.push_back(std::move(deliver));
      return;
    }
    post(far_process(i), c_.link_latency_us, std::move(deliver));
  }
  void clog(int i, bool on) {
    auto& e = near_end(i);
    trace(30, std::uint64_t(i), on);
    e.clogged = on;
    if (on) return;
    for (auto& fn : e.held) post(far_process(i), c_.link_latency_us, std::move(fn));
    e.held.clear();
  }
  // This end refused a frame: it closes the connection, losing what is in flight to it and
  // what it holds; the other end learns one latency later. Both reconnect reconnect_ms after
  // the close (as a worker does).
  void close_link(int i) {
    const clock_time closed_at = now();
    close_end(i, closed_at);
    post(far_process(i), c_.link_latency_us, [this, i, closed_at] { close_end(i, closed_at); });
  }
  void close_end(int i, clock_time closed_at) {
    auto& e = near_end(i);
    trace(36, std::uint64_t(i));
    ++e.epoch;
    e.held.clear();
    e.closed = true;
    if (at_router() && views_[std::size_t(i)].thinks_up) {
      views_[std::size_t(i)].thinks_up = false;
      router_.on_replica_down(now(), i);
      router_act();
    }
    // Reconnected reconnect_ms after the close, unless a later close is still waiting.
    here().q.at(closed_at + c_.reconnect_ms, [this, i, epoch = e.epoch] {
      if (near_end(i).epoch == epoch) near_end(i).closed = false;
    });
  }
  // The bytes a frame arrives with: flipped where a corrupt_message fault is due on this end.
  transport::frame_bytes transit(int i, transport::frame_bytes bytes) {
    auto& e = near_end(i);
    if (!e.corrupt_next || bytes.empty()) return bytes;
    e.corrupt_next = false;
    std::uint64_t noise = e.noise;
    const int flips = 1 + int(splitmix64(noise) % 3);
    for (int k = 0; k < flips; ++k) {
      const std::size_t at = std::size_t(splitmix64(noise) % bytes.size());
      bytes[at] ^= std::byte(1 + splitmix64(noise) % 255);
    }
    trace(37, std::uint64_t(i), flips);
    here().corrupted_in_flight = true;
    return bytes;
  }
  // Decodes what arrived; a refused frame closes the link. `corrupted` tells the counters
  // whether the decoder saw flipped bytes.
  template <class T, class Decode>
  std::optional<T> receive(int i, const transport::frame_bytes& bytes, bool corrupted, Decode decode) {
    auto frame = transport::decode_frame(bytes, transport::frame_limits{});
    std::optional<T> out;
    if (frame) {
      auto value = decode(frame.value());
      if (value) out = std::move(value).value();
    }
    if (!out) {
      if (!corrupted) checker().violation(fmt::format("replica {}: an intact frame was refused", i));
      ++here().corrupt_detected;
      close_link(i);
      return std::nullopt;
    }
    if (corrupted) ++here().corrupt_undetected;
    return out;
  }
  bool take_corrupted() { return std::exchange(here().corrupted_in_flight, false); }

  bool arrivals_done() const { return now() >= clock_time{} + c_.duration_ms; }
  bool keep_ticking() const {
    return router_.routes() > 0 || !arrivals_done() ||
           (faults_end_ && !report_.recovered_after_ms && now() <= *faults_end_ + c_.recovery_ms);
  }
  // A replica process's heartbeat timer: each of its replicas that runs heartbeats the
  // router, until the router stops listening.
  void replica_heartbeats() {
    if (here().heartbeats_stopped) return;
    for (int i = 0; i < c_.replicas; ++i) {
      if (process_of(i) != here().index) continue;
      auto& r = replicas_[std::size_t(i)];
      if (!r.up || node_of(i).paused) continue;
      const bool restarted = i == first_killed_ && r.incarnation > 0;
      const bool lost = restarted && (bugs_.lose_a_rejoin ||
                                      (bugs_.rejoin_then_fall_silent && ++r.heartbeats_after_restart > 1));
      send_link(i, [this, i, inc = r.incarnation, lost] {
        if (!lost) heard(i, inc);
      });
    }
    here().q.after(c_.heartbeat_interval_ms, [this] { replica_heartbeats(); });
  }
  // The router's timer: silence longer than detection_ms is a replica down; recovery after
  // the faults; when the run is over, the replicas' heartbeats stop.
  void router_tick() {
    for (int i = 0; i < c_.replicas; ++i) {
      auto& v = views_[std::size_t(i)];
      if (v.thinks_up && now() - v.last_heard > c_.detection_ms) {
        trace(25, std::uint64_t(i));
        v.thinks_up = false;
        router_.on_replica_down(now(), i);
        router_act();
      }
    }
    if (faults_end_ && !report_.recovered_after_ms && now() >= *faults_end_ && unrecovered().empty())
      report_.recovered_after_ms = duration<double, std::milli>(now() - *faults_end_).count();
    if (keep_ticking()) {
      here().q.after(c_.heartbeat_interval_ms, [this] { router_tick(); });
      return;
    }
    for (std::size_t k = 1; k < procs_.size(); ++k)
      post(int(k), c_.link_latency_us, [this] { here().heartbeats_stopped = true; });
  }
  // Why the service has not recovered yet ("" when it has).
  std::string unrecovered() {
    for (int i = 0; i < c_.replicas; ++i) {
      if (!router_.replica_up(i)) return fmt::format("replica {} is down in the router's view", i);
      if (router_.breaker(i).state(now()) == policy::breaker_state::open)
        return fmt::format("replica {}'s breaker is open", i);
    }
    return "";
  }
  void heard(int i, std::uint64_t incarnation) {
    auto& v = views_[std::size_t(i)];
    v.last_heard = now();
    if (incarnation < v.known_incarnation) return;   // a late heartbeat of a dead incarnation
    if (incarnation > v.known_incarnation && v.thinks_up) {
      // It restarted before its silence was noticed: what it held is lost.
      router_.on_replica_down(now(), i);
      v.thinks_up = false;
    }
    v.known_incarnation = incarnation;
    if (!v.thinks_up) {
      trace(27, std::uint64_t(i), incarnation);
      v.thinks_up = true;
      router_.on_replica_up(now(), i);
    }
    router_act();
  }

  // --- router -> replicas and clients -------------------------------------------------------
  void router_act() {
    // What goes to clients travels in one event per call, in order (one event per chunk
    // would make the client side most of a large run's events).
    std::vector<serving::router_action> to_clients;
    // A buffer kept between calls (moved out: nothing below re-enters, but it costs nothing).
    auto actions = std::move(action_buffer_);
    router_.take_actions(actions);
    to_clients.reserve(actions.size());   // most actions are chunks and finals: one allocation, no regrowth
    for (auto& action : actions) {
      if (auto* a = std::get_if<serving::send_request>(&action)) {
        // Addressed to the incarnation the router knows; a newer one never saw the request.
        const int i = a->replica;
        const auto inc = views_[std::size_t(i)].known_incarnation;
        if (!near_end(i).corrupt_next) {
          // Intact: the request itself, its deadline as the wire carries it (a corrupted
          // one goes through the codec, which must refuse it).
          const auto deadline_ms = transport::deadline_to_wire(a->request.sequence.deadline, anchor());
          send_link(i, [this, i, inc, rr = std::move(a->request), deadline_ms]() mutable {
            on_node(i, [this, i, inc, rr = std::move(rr), deadline_ms]() mutable {
              rr.sequence.deadline = transport::deadline_from_wire(deadline_ms, anchor());
              accept_request(i, inc, std::move(rr));
            });
          });
          continue;
        }
        auto bytes = transit(i, transport::encode(a->request, anchor()));
        send_link(i, [this, i, inc, bytes = std::move(bytes), corrupted = take_corrupted()] {
          on_node(i, [this, i, inc, bytes, corrupted] { replica_receive(i, inc, bytes, corrupted); });
        });
      } else if (auto* a = std::get_if<serving::cancel_on_replica>(&action)) {
        send_link(a->replica, [this, i = a->replica, id = a->request_id] {
          on_node(i, [this, i, id] {
            auto& r = replicas_[std::size_t(i)];
            trace(3, id, std::uint64_t(i));
            if (!r.up) return;
            r.scheduler->cancel(id);
            pump(i);
          });
        });
      } else if (std::holds_alternative<serving::send_chunk>(action) ||
                 std::holds_alternative<serving::send_final>(action)) {
        if (const auto* f = std::get_if<serving::send_final>(&action)) checker().on_router_final(f->final.request_id);
        to_clients.push_back(std::move(action));
      } else if (auto* a = std::get_if<serving::store_response>(&action)) {
        responses_.insert(std::move(a->key), a->key_hash, std::move(a->response), ++tick_);
      } else if (auto* a = std::get_if<serving::lookup_response>(&action)) {
        here().q.after(c_.link_latency_us * 2, [this, id = a->request_id, key = std::move(a->key)] {
          trace(4, id);
          auto hit = responses_.find(key, ++tick_);
          if (hit && bugs_.wrong_cached_answer && !hit->tokens.empty()) hit->tokens.front() += 1;
          router_.on_cached(now(), id, std::move(hit));
          router_act();
        });
      }
    }
    actions.clear();
    action_buffer_ = std::move(actions);
    arm_deadline_timer();
    if (to_clients.empty()) return;
    here().q.after(c_.link_latency_us, [this, batch = std::move(to_clients)] {
      for (const auto& action : batch) {
        if (const auto* c = std::get_if<serving::send_chunk>(&action)) checker().prefetch(c->chunk.request_id);
        if (const auto* f = std::get_if<serving::send_final>(&action)) checker().prefetch(f->final.request_id);
      }
      for (const auto& action : batch) {
        if (const auto* c = std::get_if<serving::send_chunk>(&action)) client_chunk(c->chunk);
        if (const auto* f = std::get_if<serving::send_final>(&action)) client_final(f->final);
      }
    });
  }

  // The router's one timer, for the earliest deadline of a routed request (as the router
  // actor arms it).
  void arm_deadline_timer() {
    const auto next = router_.next_deadline();
    if (!next || (deadline_timer_ && *deadline_timer_ <= *next)) return;
    deadline_timer_ = next;
    here().q.at(*next, [this, due = *next] {
      if (deadline_timer_ == due) deadline_timer_.reset();
      trace(41, 0);
      router_.on_deadlines(now());
      router_act();
    });
  }

  // --- replicas -----------------------------------------------------------------------------
  // A message from replica i to the router, over the link (through the wire codec when the
  // link is about to corrupt it).
  void to_router(int i, std::function<void()> fn) {
    const auto inc = replicas_[std::size_t(i)].incarnation;
    send_link(i, [this, i, inc, fn = std::move(fn)] {
      // From an incarnation the router no longer (or does not yet) accept: dropped.
      if (views_[std::size_t(i)].known_incarnation != inc) return;
      fn();
      router_act();
    });
  }
  // The chunks through the wire codec (send_output uses it when the link is about to
  // corrupt a message).
  void send_encoded_chunks(int i, serving::replica_chunks chunks) {
    if (chunks.chunks.empty()) return;
    auto bytes = transit(i, transport::encode(chunks));
    to_router(i, [this, i, bytes = std::move(bytes), corrupted = take_corrupted()] {
      auto decoded = receive<serving::replica_chunks>(
          i, bytes, corrupted, [](transport::decoded_frame& f) { return transport::decode_replica_chunks(f); });
      if (decoded) router_.on_chunks(now(), decoded->chunks);
    });
  }
  void send_final(int i, serving::replica_final f) {
    if (!near_end(i).corrupt_next) {
      to_router(i, [this, f] { router_final(f); });
      return;
    }
    auto bytes = transit(i, transport::encode(f));
    to_router(i, [this, i, bytes = std::move(bytes), corrupted = take_corrupted()] {
      auto decoded = receive<serving::replica_final>(
          i, bytes, corrupted, [](transport::decoded_frame& fr) { return transport::decode_replica_final(fr); });
      if (decoded) router_final(*decoded);
    });
  }
  void router_final(const serving::replica_final& f) {
    if (bugs_.lose_a_final_in_the_router && f.request_id == 1) return;   // planted: its route stays
    router_.on_final(now(), f);
  }
  // A request that came through the codec; refused when corrupted (receive() counts it).
  void replica_receive(int i, std::uint64_t inc, const transport::frame_bytes& bytes, bool corrupted) {
    const auto here = anchor();
    auto decoded = receive<serving::replica_request>(i, bytes, corrupted, [&](transport::decoded_frame& f) {
      return transport::decode_replica_request(f, here);
    });
    if (decoded) accept_request(i, inc, std::move(*decoded));
  }
  void accept_request(int i, std::uint64_t inc, serving::replica_request rr) {
    auto& r = replicas_[std::size_t(i)];
    auto& nd = node_of(i);
    // The planted bug reads the deadline against the node's system clock, as the wire did
    // when deadlines travelled as Unix time.
    if (bugs_.skewed_deadlines && rr.sequence.deadline) *rr.sequence.deadline -= nd.clock_offset;
    trace(5, rr.request_id, std::uint64_t(i));
    if (!r.up || r.incarnation != inc) return;   // lost with the replica
    const auto id = rr.request_id;
    const auto attempt = rr.attempt;
    const auto max_new = rr.sequence.max_new_tokens;
    // A newer attempt of a request this replica still runs (the router gave up on it, say
    // across a clogged link): the old one is dropped; the router ignores its messages anyway.
    if (auto old = r.streams->attempt(id); old && *old < attempt) {
      r.scheduler->fail(id);
      r.streams->close(id, std::nullopt);
    }
    if (auto s = r.scheduler->submit(now(), std::move(rr.sequence)); !s) {
      send_final(i, {id, attempt, i, s.err(), serving::finish_reason::length});
      return;
    }
    r.streams->open(id, attempt, max_new, {});
    checker().on_batcher(i, r.scheduler->running(), r.scheduler->waiting());
    pump(i);
  }
  void send_output(int i, serving::stream_output out) {
    if (out.empty()) return;
    if (near_end(i).corrupt_next) {   // message by message through the codec
      send_encoded_chunks(i, std::move(out.chunks));
      for (auto& f : out.finals) send_final(i, std::move(f));
      return;
    }
    // The chunks message, then each final, as the batcher sends them: one event delivers
    // them all, in that order and with the router acting after each (to_router acts after
    // the last), as back-to-back messages on one link would arrive.
    to_router(i, [this, out = std::move(out)] {
      router_.on_chunks(now(), out.chunks.chunks);
      bool delivered = !out.chunks.chunks.empty();   // a message the router has not acted on
      for (const auto& f : out.finals) {
        if (delivered) router_act();
        router_final(f);
        delivered = true;
      }
    });
  }
  void pump(int i) {
    auto& r = replicas_[std::size_t(i)];
    if (!r.up || r.busy || node_of(i).paused) return;
    r.scheduler->recycle(std::move(r.plan));
    r.plan = r.scheduler->schedule(now());
    serving::stream_output stopped;
    for (const auto& s : r.plan.stopped)
      r.streams->stop(s.id,
                      make_error(s.cause == batching::stop_cause::cancelled ? error_code::cancelled
                                                                            : error_code::deadline_exceeded,
                                 "stopped"),
                      stopped);
    send_output(i, std::move(stopped));
    if (r.plan.empty()) {
      if (r.plan.wake_at && !r.wake_armed) {
        r.wake_armed = true;
        here().q.at(*r.plan.wake_at, [this, i, inc = r.incarnation] {
          on_node(i, [this, i, inc] {
            auto& r = replicas_[std::size_t(i)];
            if (r.incarnation != inc) return;
            r.wake_armed = false;
            pump(i);
          });
        });
      }
      return;
    }
    checker().on_batcher(i, r.scheduler->running(), r.scheduler->waiting());
    r.busy = true;
    std::int64_t context = 0;
    for (const auto& p : r.plan.sequences)
      context += (p.first_position + std::int64_t(p.tokens.size())) * std::int64_t(p.tokens.size());
    const auto step = duration_cast<clock_time::duration>(c_.device.step_time(r.plan.tokens, context) * r.slow);
    here().q.after(step, [this, i, inc = r.incarnation] { on_node(i, [this, i, inc] { step_done(i, inc); }); });
  }
  void step_done(int i, std::uint64_t inc) {
    auto& r = replicas_[std::size_t(i)];
    if (r.incarnation != inc) return;   // the replica died during the step
    const auto& plan = r.plan;
    trace(6, std::uint64_t(i), plan.sequences.size());
    r.busy = false;
    if (r.failing || r.oom_next) {
      // The shard reports a failed step (out of device memory included) as INTERNAL.
      const char* why = r.oom_next ? "step failed: out of device memory" : "step failed";
      r.oom_next = false;
      serving::stream_output out;
      r.streams->on_failed_step(*r.scheduler, plan, make_error(error_code::internal, "{}", why), out);
      send_output(i, std::move(out));
      pump(i);
      return;
    }
    std::vector<std::int32_t> sampled;
    for (const auto& p : plan.sequences)
      if (p.sample) {
        // A planted bug draws from the start again after a resumption.
        const auto draw = bugs_.wrong_token && r.scheduler->has_sequence(p.id) ? r.scheduler->generated(p.id) : p.draw_index;
        sampled.push_back(model_token(p.sampling.seed, draw));   // the prompt's key (sim/load.h)
      }
    if (bugs_.leak_a_block_reference && i == 0 && !std::exchange(r.reference_leaked, true)) {
      const auto table = r.scheduler->block_table(plan.sequences.front().id);
      if (!table.empty()) r.scheduler->block_manager_for_testing().add_ref(table.front());
    }
    serving::stream_output out;
    r.streams->on_step(*r.scheduler, plan, sampled, out);
    send_output(i, std::move(out));
    pump(i);
  }

  // --- the client side ----------------------------------------------------------------------
  void client_chunk(const serving::token_chunk& chunk) {
    trace(7, chunk.request_id, chunk.sequence);
    checker().on_chunk(now(), chunk);
    if (bugs_.duplicate_a_chunk && chunk.request_id == 1 && chunk.sequence == 0) checker().on_chunk(now(), chunk);
    if (bugs_.chunk_after_final) last_chunk_[chunk.request_id] = chunk;
  }
  void client_final(const serving::final_message& f) {
    trace(8, f.request_id, f.failure ? std::uint64_t(f.failure->code) + 1 : 0);
    if (bugs_.drop_a_final && !planted_ && !f.failure) {
      planted_ = true;
      return;
    }
    if ((bugs_.final_with_an_extra_token || bugs_.final_with_a_wrong_token) && !planted_ && !f.failure &&
        !f.tokens.empty()) {
      planted_ = true;
      auto bad = f;
      if (bugs_.final_with_an_extra_token) {
        bad.tokens.push_back(bad.tokens.back());
        ++bad.completion_tokens;
      } else {
        bad.tokens.back() += 1;
      }
      return checker().on_final(now(), bad);
    }
    checker().on_final(now(), f);
    if (bugs_.chunk_after_final && !planted_ && last_chunk_.count(f.request_id)) {
      planted_ = true;
      checker().on_chunk(now(), last_chunk_[f.request_id]);
    }
  }
  void check_end() {
    for (int i = 0; i < c_.replicas; ++i)
      if (replicas_[std::size_t(i)].up) checker().on_quiescent(i, *replicas_[std::size_t(i)].scheduler, true);
    if (router_.routes() != 0) checker().violation(fmt::format("the router holds {} routes at the end", router_.routes()));
    for (int i = 0; i < c_.replicas; ++i) {
      using policy::breaker_state;
      auto transitions = router_.breaker(i).transitions();
      if (bugs_.skip_half_open) {
        for (std::size_t k = 0; k + 1 < transitions.size(); ++k)
          if (transitions[k].to == breaker_state::half_open && transitions[k + 1].to == breaker_state::closed) {
            transitions[k].to = breaker_state::closed;   // open -> closed, no probe
            transitions.erase(transitions.begin() + std::ptrdiff_t(k + 1));
            break;
          }
      }
      checker().on_breaker_transitions(i, transitions);
      for (const auto& t : transitions) report_.breaker_opens += t.to == breaker_state::open;
    }
  }

  sim_config c_;
  planted_bugs bugs_;
  std::vector<serving::router_action> action_buffer_;   // router_act()'s, its capacity kept
  // Process 0 (the router's side) alone touches these ...
  load_generator load_;
  cache::response_cache responses_;
  std::uint64_t tick_ = 0;
  serving::request_router router_;
  std::vector<router_view> views_;
  std::vector<link_end> router_ends_;
  std::optional<clock_time> faults_end_;
  std::optional<clock_time> deadline_timer_;
  sim_report report_;
  bool planted_ = false;
  std::map<std::uint64_t, serving::token_chunk> last_chunk_;   // planted chunk_after_final
  // ... and a replica's process these of its replicas and nodes.
  std::vector<replica> replicas_;
  std::vector<link_end> replica_ends_;
  std::vector<node> nodes_;
  // Fixed before the run.
  std::vector<std::unique_ptr<process>> procs_;
  std::vector<int> node_process_;   // by node: its process
  int first_killed_ = -1;           // the first kill's first replica (planted bugs)
  // The run's windows: set between windows, read by the processes during one.
  clock_time window_end_{};
  std::uint64_t ran_ = 0;
};

}  // namespace

std::vector<fault> draw_faults(const sim_config& c) {
  xoshiro256 rng(c.seed ^ 0x5eedfa17ull);
  const auto span = std::max<std::int64_t>(c.duration_ms.count() - 1, 0);
  auto at = [&] { return milliseconds(std::int64_t(rng.next() % std::uint64_t(span + 1))); };
  const int per_node = std::max(1, c.replicas_per_node);
  const int nodes = (c.replicas + per_node - 1) / per_node;
  auto pick = [&](int n) { return std::int32_t(rng.next() % std::uint64_t(n)); };
  std::vector<fault> out;
  // `count` faults of a kind: each a target drawn among `targets`, a time, then `more`.
  auto add = [&](fault_kind kind, int count, int targets, milliseconds length,
                 const std::function<void(fault&)>& more = nullptr) {
    for (int k = 0; k < count; ++k) {
      fault f{kind};
      f.target = pick(targets);
      f.at = at();
      f.length = length;
      if (more) more(f);
      out.push_back(f);
    }
  };
  add(fault_kind::kill_node, c.kills, nodes, c.restart_ms);
  add(fault_kind::fail_steps, c.failing_windows, c.replicas, c.fault_window_ms);
  for (int k = 0; k < c.swizzles; ++k) {
    fault f{fault_kind::swizzle};
    f.at = at();
    for (int i = 0; i < c.replicas; ++i)
      if (rng.next() % 2) f.replicas.push_back(i);
    f.unclog_order = f.replicas;
    for (std::size_t k2 = f.unclog_order.size(); k2 > 1; --k2)   // a seeded shuffle
      std::swap(f.unclog_order[k2 - 1], f.unclog_order[std::size_t(rng.next() % k2)]);
    out.push_back(f);
  }
  add(fault_kind::slow_device, c.slow_windows, c.replicas, c.fault_window_ms);
  add(fault_kind::pause_node, c.pauses, nodes, c.pause_ms);
  add(fault_kind::oom_step, c.ooms, c.replicas, milliseconds(0));
  add(fault_kind::clock_jump, c.clock_jumps, nodes, milliseconds(0),
      [&](fault& f) { f.shift = rng.next() % 2 ? c.clock_jump_ms : -c.clock_jump_ms; });
  add(fault_kind::corrupt_message, c.corruptions, c.replicas, milliseconds(0),
      [&](fault& f) { f.noise = rng.next(); });
  std::stable_sort(out.begin(), out.end(), [](const fault& a, const fault& b) { return a.at < b.at; });
  return out;
}

serving::router_config router_config_of(const sim_config& c) {
  auto r = c.router;
  r.replicas = c.replicas;
  r.vocab_size = 32000;
  r.context_tokens_max = 1 << 20;
  r.priority_classes = c.scheduler.priority_classes;
  return r;
}

std::vector<std::size_t> kept_fault_indices(const sim_config& c, std::size_t drawn) {
  std::vector<std::size_t> kept;
  if (c.faults_kept) {
    for (auto k : *c.faults_kept)
      if (k < drawn) kept.push_back(k);
  } else {
    for (std::size_t k = 0; k < drawn; ++k) kept.push_back(k);
  }
  return kept;
}

sim_config naive(sim_config c) {
  auto& a = c.router.admission;
  a.queue_requests_max = a.tenant_queue_requests_max = std::int64_t(1) << 40;
  a.queue_tokens_max = a.tenant_queue_tokens_max = std::int64_t(1) << 50;
  a.tenants_max = 1 << 20;
  c.router.breaker.window_requests_min = 1 << 30;
  c.router.request_attempts_max = 1;
  c.router.response_cache = false;
  c.scheduler.sequences_max = 16;
  c.scheduler.prefill_chunk_tokens = 1 << 20;
  c.scheduler.step_tokens_max = 1 << 20;
  c.scheduler.waiting_sequences_max = 1 << 30;
  c.scheduler.batch_fill_sequences = 16;
  c.scheduler.batch_wait_ms = milliseconds(50);
  c.recovery_ms = milliseconds(0);   // it promises no recovery
  return c;
}

sim_report run_simulation(const sim_config& config, const planted_bugs& bugs) {
  return simulation(config, bugs).run();
}

}  // namespace dsrt::sim
