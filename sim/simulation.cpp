#include "sim/simulation.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "runtime/cache/response_cache.h"
#include "runtime/random.h"
#include "sim/event_queue.h"

namespace dsrt::sim {
namespace {

using namespace std::chrono;

struct replica {
  std::unique_ptr<batching::batch_scheduler> scheduler;
  bool up = true;
  std::uint64_t incarnation = 0;     // messages of an older incarnation are dropped
  bool busy = false, wake_armed = false, failing = false;
  double slow = 1;
  // The link to the router (both directions).
  bool clogged = false;
  std::vector<std::function<void()>> held;   // messages waiting for the link to unclog
  // The router's view of this replica, from heartbeats.
  clock_time last_heard{};
  std::uint64_t known_incarnation = 0;
  bool router_thinks_up = true;
  struct seq { std::uint32_t attempt; std::int64_t max_new; };
  std::map<std::uint64_t, seq> sequences;
};

struct client_view {
  clock_time arrival{}, first_chunk{}, final_at{};
  std::uint32_t next_sequence = 0;
  std::int64_t tokens = 0;
  int finals = 0;
  serving::final_message final;
};

class simulation {
 public:
  simulation(const sim_config& c, const planted_bugs& bugs)
      : c_(c), bugs_(bugs), load_rng_(c.seed), fault_rng_(c.seed ^ 0x5eedfa17ull),
        responses_(cache::response_cache_config{}), router_(router_config(c), nullptr) {
    replicas_.resize(std::size_t(c.replicas));
    for (auto& r : replicas_) r.scheduler = make_scheduler();
    for (int i = 0; i < c.replicas; ++i) router_.on_replica_up(q_.now(), i);
  }

  sim_report run() {
    schedule_arrivals();
    schedule_faults();
    q_.at(clock_time{}, [this] { heartbeat_tick(); });
    const auto until = q_.now() + c_.duration_ms + c_.deadline_ms * 4 + minutes(10);
    report_.events = q_.run(until, c_.events_max);
    if (!q_.empty()) violation("the run did not drain (events_max or the time bound reached)");
    check_end();
    report_.trace_hash = hash_;
    report_.simulated_s = duration<double>(q_.now().time_since_epoch()).count();
    report_.retries = router_.counters().retries;
    report_.resumptions = router_.counters().resumptions;
    return std::move(report_);
  }

 private:
  static serving::router_config router_config(const sim_config& c) {
    auto r = c.router;
    r.replicas = c.replicas;
    r.vocab_size = 32000;
    r.context_tokens_max = 1 << 20;
    r.priority_classes = c.scheduler.priority_classes;
    return r;
  }
  std::unique_ptr<batching::batch_scheduler> make_scheduler() const {
    return std::make_unique<batching::batch_scheduler>(c_.scheduler, c_.kv_blocks, c_.kv_block_tokens);
  }
  void trace(std::uint64_t kind, std::uint64_t a, std::uint64_t b = 0) {
    for (std::uint64_t v : {std::uint64_t(q_.now().time_since_epoch().count()), kind, a, b}) {
      hash_ ^= v;
      hash_ *= 1099511628211ull;
    }
  }
  void violation(std::string what) {
    if (report_.violations.size() < 100) report_.violations.push_back(std::move(what));
  }
  std::int64_t uniform(xoshiro256& rng, std::int64_t lo, std::int64_t hi) {
    return lo + std::int64_t(rng.next() % std::uint64_t(hi - lo + 1));
  }

  // --- load -------------------------------------------------------------------------------
  void schedule_arrivals() {
    double t = 0;
    const double end = duration<double>(c_.duration_ms).count();
    const double burst_from = duration<double>(c_.burst_at_ms).count();
    const double burst_to = burst_from + duration<double>(c_.burst_ms).count();
    std::uint64_t id = 0;
    while (c_.qps > 0) {
      // A Poisson process whose rate is burst_qps inside the burst window.
      const double rate = c_.burst_qps > 0 && t >= burst_from && t < burst_to ? c_.burst_qps : c_.qps;
      t += -std::log(1.0 - load_rng_.uniform()) / rate;
      if (t >= end) break;
      serving::generate_request r;
      r.request_id = ++id;
      r.prompt.resize(std::size_t(uniform(load_rng_, c_.prompt_tokens_min, c_.prompt_tokens_max)));
      for (auto& tok : r.prompt) tok = std::int32_t(uniform(load_rng_, 3, 31999));
      r.max_tokens = std::int32_t(uniform(load_rng_, c_.max_tokens_min, c_.max_tokens_max));
      r.priority = int(load_rng_.next() % 4);
      r.tenant = "tenant-" + std::to_string(load_rng_.next() % 8);
      const auto at = clock_time{} + duration_cast<clock_time::duration>(duration<double>(t));
      r.deadline = at + c_.deadline_ms;
      q_.at(at, [this, r = std::move(r)]() mutable {
        trace(1, r.request_id);
        auto& v = clients_[r.request_id];
        v.arrival = q_.now();
        ++report_.requests;
        router_.on_generate(q_.now(), std::move(r));
        router_act();
        if (std::int64_t(router_.routes()) > c_.router.admission.queue_requests_max)
          violation(fmt::format("the router holds {} requests, queue_requests_max is {}", router_.routes(),
                                c_.router.admission.queue_requests_max));
      });
    }
  }

  // --- faults -----------------------------------------------------------------------------
  clock_time fault_time() {
    return clock_time{} + milliseconds(uniform(fault_rng_, 0, std::max<std::int64_t>(c_.duration_ms.count() - 1, 0)));
  }
  void schedule_faults() {
    const int per_node = std::max(1, c_.replicas_per_node);
    const int nodes = (c_.replicas + per_node - 1) / per_node;
    for (int k = 0; k < c_.kills; ++k) {
      const int node = int(fault_rng_.next() % std::uint64_t(nodes));
      q_.at(fault_time(), [this, node, per_node] {
        for (int i = node * per_node; i < std::min(c_.replicas, (node + 1) * per_node); ++i) kill(i);
      });
    }
    for (int k = 0; k < c_.failing_windows; ++k) {
      const int i = int(fault_rng_.next() % std::uint64_t(c_.replicas));
      const auto t = fault_time();
      q_.at(t, [this, i] { trace(20, std::uint64_t(i)); replicas_[std::size_t(i)].failing = true; });
      q_.at(t + c_.fault_window_ms, [this, i] { trace(21, std::uint64_t(i)); replicas_[std::size_t(i)].failing = false; });
    }
    for (int k = 0; k < c_.swizzles; ++k) {
      auto t = fault_time();
      std::vector<int> subset;
      for (int i = 0; i < c_.replicas; ++i)
        if (fault_rng_.next() % 2) subset.push_back(i);
      for (int i : subset) {
        q_.at(t, [this, i] { clog(i, true); });
        t += c_.swizzle_step_ms;
      }
      t += c_.swizzle_hold_ms;
      for (std::size_t k2 = subset.size(); k2 > 1; --k2)   // a seeded shuffle: unclog order
        std::swap(subset[k2 - 1], subset[std::size_t(fault_rng_.next() % k2)]);
      for (int i : subset) {
        q_.at(t, [this, i] { clog(i, false); });
        t += c_.swizzle_step_ms;
      }
    }
    for (int k = 0; k < c_.slow_windows; ++k) {
      const int i = int(fault_rng_.next() % std::uint64_t(c_.replicas));
      const auto t = fault_time();
      q_.at(t, [this, i] { trace(22, std::uint64_t(i)); replicas_[std::size_t(i)].slow = c_.slow_factor; });
      q_.at(t + c_.fault_window_ms, [this, i] { trace(23, std::uint64_t(i)); replicas_[std::size_t(i)].slow = 1; });
    }
  }
  void kill(int i) {
    auto& r = replicas_[std::size_t(i)];
    if (!r.up) return;
    trace(24, std::uint64_t(i));
    ++report_.kills;
    check_replica_blocks(i, /*after_clear=*/true);
    r.up = false;
    ++r.incarnation;
    r.busy = r.wake_armed = false;
    r.sequences.clear();
    // The router notices by the missing heartbeats (or by the new incarnation's first one).
    q_.after(c_.restart_ms, [this, i] {
      trace(26, std::uint64_t(i));
      auto& r = replicas_[std::size_t(i)];
      r.scheduler = make_scheduler();
      r.up = true;
      pump(i);
    });
  }

  // --- links and heartbeats -----------------------------------------------------------------
  void send_link(int i, std::function<void()> fn) {
    auto& r = replicas_[std::size_t(i)];
    if (r.clogged) {
      r.held.push_back(std::move(fn));
      return;
    }
    q_.after(c_.link_latency_us, std::move(fn));
  }
  void clog(int i, bool on) {
    auto& r = replicas_[std::size_t(i)];
    trace(30, std::uint64_t(i), on);
    r.clogged = on;
    if (on) return;
    for (auto& fn : r.held) q_.after(c_.link_latency_us, std::move(fn));
    r.held.clear();
  }
  bool arrivals_done() const { return q_.now() >= clock_time{} + c_.duration_ms; }
  void heartbeat_tick() {
    for (int i = 0; i < c_.replicas; ++i) {
      auto& r = replicas_[std::size_t(i)];
      if (r.up) send_link(i, [this, i, inc = r.incarnation] { heard(i, inc); });
      // The router side: silence longer than detection_ms is a replica down.
      if (r.router_thinks_up && q_.now() - r.last_heard > c_.detection_ms) {
        trace(25, std::uint64_t(i));
        r.router_thinks_up = false;
        router_.on_replica_down(q_.now(), i);
        router_act();
      }
    }
    if (router_.routes() > 0 || !arrivals_done()) q_.after(c_.heartbeat_interval_ms, [this] { heartbeat_tick(); });
  }
  void heard(int i, std::uint64_t incarnation) {
    auto& r = replicas_[std::size_t(i)];
    r.last_heard = q_.now();
    if (incarnation < r.known_incarnation) return;   // a late heartbeat of a dead incarnation
    if (incarnation > r.known_incarnation && r.router_thinks_up) {
      // It restarted before its silence was noticed: what it held is lost.
      router_.on_replica_down(q_.now(), i);
      r.router_thinks_up = false;
    }
    r.known_incarnation = incarnation;
    if (!r.router_thinks_up) {
      trace(27, std::uint64_t(i), incarnation);
      r.router_thinks_up = true;
      router_.on_replica_up(q_.now(), i);
    }
    router_act();
  }

  // --- router -> replicas and clients -------------------------------------------------------
  void router_act() {
    // What goes to clients travels in one event per call, in order (one event per chunk
    // would make the client side most of a large run's events).
    std::vector<serving::router_action> to_clients;
    for (auto& action : router_.take_actions()) {
      if (auto* a = std::get_if<serving::send_request>(&action)) {
        // Addressed to the incarnation the router knows; a newer one never saw the request.
        const auto inc = replicas_[std::size_t(a->replica)].known_incarnation;
        send_link(a->replica, [this, i = a->replica, inc, rr = std::move(a->request)]() mutable {
          replica_receive(i, inc, std::move(rr));
        });
      } else if (auto* a = std::get_if<serving::cancel_on_replica>(&action)) {
        send_link(a->replica, [this, i = a->replica, id = a->request_id] {
          auto& r = replicas_[std::size_t(i)];
          trace(3, id, std::uint64_t(i));
          if (!r.up) return;
          r.scheduler->cancel(id);
          pump(i);
        });
      } else if (std::holds_alternative<serving::send_chunk>(action) ||
                 std::holds_alternative<serving::send_final>(action)) {
        to_clients.push_back(std::move(action));
      } else if (auto* a = std::get_if<serving::store_response>(&action)) {
        responses_.insert(std::move(a->key), std::move(a->response), ++tick_);
      } else if (auto* a = std::get_if<serving::lookup_response>(&action)) {
        q_.after(c_.link_latency_us * 2, [this, id = a->request_id, key = std::move(a->key)] {
          trace(4, id);
          router_.on_cached(q_.now(), id, responses_.find(key, ++tick_));
          router_act();
        });
      }
    }
    if (to_clients.empty()) return;
    q_.after(c_.link_latency_us, [this, batch = std::move(to_clients)] {
      for (const auto& action : batch) {
        if (const auto* c = std::get_if<serving::send_chunk>(&action)) client_chunk(c->chunk);
        if (const auto* f = std::get_if<serving::send_final>(&action)) client_final(f->final);
      }
    });
  }

  // --- replicas -----------------------------------------------------------------------------
  void to_router(int i, std::function<void()> fn) {
    const auto inc = replicas_[std::size_t(i)].incarnation;
    send_link(i, [this, i, inc, fn = std::move(fn)] {
      // From an incarnation the router no longer (or does not yet) accept: dropped.
      if (replicas_[std::size_t(i)].known_incarnation != inc) return;
      fn();
      router_act();
    });
  }
  void replica_receive(int i, std::uint64_t inc, serving::replica_request rr) {
    auto& r = replicas_[std::size_t(i)];
    trace(5, rr.request_id, std::uint64_t(i));
    if (!r.up || r.incarnation != inc) return;   // lost with the replica
    const auto id = rr.request_id;
    const auto attempt = rr.attempt;
    const auto max_new = rr.sequence.max_new_tokens;
    // A newer attempt of a request this replica still runs (the router gave up on it, say
    // across a clogged link): the old one is dropped; the router ignores its messages anyway.
    if (auto old = r.sequences.find(id); old != r.sequences.end() && old->second.attempt < attempt) {
      r.scheduler->fail(id);
      r.sequences.erase(old);
    }
    if (auto s = r.scheduler->submit(q_.now(), std::move(rr.sequence)); !s) {
      to_router(i, [this, i, id, attempt, e = s.err()] {
        router_.on_final(q_.now(), {id, attempt, i, e, serving::finish_reason::length});
      });
      return;
    }
    r.sequences[id] = {attempt, max_new};
    pump(i);
  }
  void replica_final(int i, std::uint64_t id, std::optional<error> failure, serving::finish_reason reason) {
    auto& r = replicas_[std::size_t(i)];
    auto it = r.sequences.find(id);
    if (it == r.sequences.end()) return;
    const auto attempt = it->second.attempt;
    r.sequences.erase(it);
    to_router(i, [this, i, id, attempt, failure, reason] {
      router_.on_final(q_.now(), {id, attempt, i, failure, reason});
    });
  }
  void pump(int i) {
    auto& r = replicas_[std::size_t(i)];
    if (!r.up || r.busy) return;
    auto plan = std::make_shared<batching::step_plan>(r.scheduler->schedule(q_.now()));
    for (const auto& s : plan->stopped)
      replica_final(i, s.id,
                    make_error(s.cause == batching::stop_cause::cancelled ? error_code::cancelled
                                                                          : error_code::deadline_exceeded,
                               "stopped"),
                    serving::finish_reason::length);
    if (plan->empty()) {
      if (plan->wake_at && !r.wake_armed) {
        r.wake_armed = true;
        q_.at(*plan->wake_at, [this, i, inc = r.incarnation] {
          auto& r = replicas_[std::size_t(i)];
          if (r.incarnation != inc) return;
          r.wake_armed = false;
          pump(i);
        });
      }
      return;
    }
    r.busy = true;
    std::int64_t context = 0;
    for (const auto& p : plan->sequences) context += (p.first_position + std::int64_t(p.tokens.size())) * std::int64_t(p.tokens.size());
    const auto step = duration_cast<clock_time::duration>(c_.device.step_time(plan->tokens, context) * r.slow);
    q_.after(step, [this, i, plan, inc = r.incarnation] { step_done(i, inc, *plan); });
  }
  void step_done(int i, std::uint64_t inc, const batching::step_plan& plan) {
    auto& r = replicas_[std::size_t(i)];
    if (r.incarnation != inc) return;   // the replica died during the step
    trace(6, std::uint64_t(i), plan.sequences.size());
    r.busy = false;
    if (r.failing) {
      for (const auto& p : plan.sequences) {
        if (!r.scheduler->is_current(p)) continue;
        r.scheduler->fail(p.id);
        replica_final(i, p.id, make_error(error_code::internal, "step failed"), serving::finish_reason::length);
      }
      pump(i);
      return;
    }
    std::vector<std::int32_t> sampled;
    for (const auto& p : plan.sequences)
      if (p.sample) sampled.push_back(std::int32_t(3 + (p.id * 7919 + std::uint64_t(p.draw_index) * 104729) % 31990));
    r.scheduler->complete(plan, sampled);
    std::vector<serving::replica_chunk> chunks;
    std::vector<std::uint64_t> done;
    std::size_t next = 0;
    for (const auto& p : plan.sequences) {
      if (!p.sample) continue;
      const auto token = sampled[next++];
      auto it = r.sequences.find(p.id);
      if (it == r.sequences.end() || !r.scheduler->is_current(p)) continue;
      chunks.push_back({p.id, it->second.attempt, i, {token}});
      if (r.scheduler->generated(p.id) >= it->second.max_new) {
        r.scheduler->finish(p.id);
        done.push_back(p.id);
      }
    }
    to_router(i, [this, chunks = std::move(chunks)] {
      for (const auto& c : chunks) router_.on_chunk(q_.now(), c);
    });
    for (auto id : done) replica_final(i, id, std::nullopt, serving::finish_reason::length);
    pump(i);
  }

  // --- the client side and the checker ------------------------------------------------------
  void client_chunk(const serving::token_chunk& chunk) {
    trace(7, chunk.request_id, chunk.sequence);
    auto& v = clients_[chunk.request_id];
    const int copies = bugs_.duplicate_a_chunk && chunk.request_id == 1 && chunk.sequence == 0 ? 2 : 1;
    for (int k = 0; k < copies; ++k) {
      if (v.finals > 0) violation(fmt::format("request {}: chunk {} after its final", chunk.request_id, chunk.sequence));
      if (chunk.sequence != v.next_sequence)
        violation(fmt::format("request {}: chunk {} where {} was due (repeated or missing)", chunk.request_id,
                              chunk.sequence, v.next_sequence));
      v.next_sequence = chunk.sequence + 1;
      if (v.tokens == 0 && !chunk.tokens.empty()) v.first_chunk = q_.now();
      v.tokens += std::int64_t(chunk.tokens.size());
    }
  }
  void client_final(const serving::final_message& f) {
    trace(8, f.request_id, f.failure ? std::uint64_t(f.failure->code) + 1 : 0);
    if (bugs_.drop_a_final && !dropped_ && !f.failure) {
      dropped_ = true;
      return;
    }
    auto& v = clients_[f.request_id];
    if (++v.finals > 1) violation(fmt::format("request {}: {} finals", f.request_id, v.finals));
    if (f.chunks_sent != v.next_sequence)
      violation(fmt::format("request {}: final says {} chunks, {} arrived", f.request_id, f.chunks_sent, v.next_sequence));
    v.final = f;
    v.final_at = q_.now();
  }
  void check_replica_blocks(int i, bool after_clear) {
    auto& s = *replicas_[std::size_t(i)].scheduler;
    if (after_clear) s.clear();
    if (s.leaked_blocks() != 0) violation(fmt::format("replica {}: {} KV blocks leaked", i, s.leaked_blocks()));
    if (s.free_blocks() + s.prefix_cached_blocks() != s.total_blocks())
      violation(fmt::format("replica {}: {} of {} blocks held at quiescence", i,
                            s.total_blocks() - s.free_blocks() - s.prefix_cached_blocks(), s.total_blocks()));
  }
  void check_end() {
    for (auto& [id, v] : clients_) {
      if (v.finals == 0) {
        violation(fmt::format("request {}: no final", id));
        continue;
      }
      if (v.final.failure) {
        ++report_.errors_by_code[std::string(error_code_name(v.final.failure->code))];
        continue;
      }
      ++report_.completed;
      report_.tokens += v.tokens;
      if (v.final_at - v.arrival <= c_.deadline_ms) ++report_.completed_in_deadline;
      if (v.tokens > 0) report_.ttft_ms.push_back(duration<double, std::milli>(v.first_chunk - v.arrival).count());
      if (v.tokens > 1)
        report_.tpot_ms.push_back(duration<double, std::milli>(v.final_at - v.first_chunk).count() / double(v.tokens - 1));
    }
    for (int i = 0; i < c_.replicas; ++i)
      if (replicas_[std::size_t(i)].up) {
        auto& s = *replicas_[std::size_t(i)].scheduler;
        if (s.running() + s.waiting() > 0) violation(fmt::format("replica {}: work left at the end", i));
        check_replica_blocks(i, false);
      }
    if (router_.routes() != 0) violation(fmt::format("the router holds {} routes at the end", router_.routes()));
    for (int i = 0; i < c_.replicas; ++i)
      for (const auto& t : router_.breaker(i).transitions()) {
        using policy::breaker_state;
        const bool legal = (t.from == breaker_state::closed && t.to == breaker_state::open) ||
                           (t.from == breaker_state::open && t.to == breaker_state::half_open) ||
                           (t.from == breaker_state::half_open && t.to != breaker_state::half_open);
        if (!legal) violation(fmt::format("replica {}: illegal breaker transition", i));
        report_.breaker_opens += t.to == breaker_state::open;
      }
  }

  sim_config c_;
  planted_bugs bugs_;
  event_queue q_;
  xoshiro256 load_rng_, fault_rng_;
  cache::response_cache responses_;
  std::uint64_t tick_ = 0;
  serving::request_router router_;
  std::vector<replica> replicas_;
  std::map<std::uint64_t, client_view> clients_;
  sim_report report_;
  std::uint64_t hash_ = 1469598103934665603ull;
  bool dropped_ = false;
};

}  // namespace

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
  return c;
}

sim_report run_simulation(const sim_config& config, const planted_bugs& bugs) {
  return simulation(config, bugs).run();
}

}  // namespace dsrt::sim
