#include "actors/batcher.h"

#include <algorithm>
#include <unordered_map>

#include "runtime/serving/token_streams.h"

namespace dsrt::actors {

// When a sequence reached the batcher, until its first step (the queue-time metric).
struct queued_sequence {
  clock_time queued_at{};
};

struct batcher_state {
  batcher_options options;
  std::unique_ptr<batching::batch_scheduler> scheduler;
  std::unique_ptr<serving::token_streams> streams;
  std::unordered_map<std::uint64_t, queued_sequence> queued;   // not yet planned
  caf::actor shard, router;
  std::shared_ptr<batching::step_plan> in_flight;   // the plan the shard is running
  std::uint64_t steps = 0;
  bool timer_armed = false;
  // Metrics of this replica (the registry outlives the actor).
  metrics::histogram* batch_sequences = nullptr;
  metrics::histogram* queue_seconds = nullptr;
  metrics::histogram* step_seconds = nullptr;
  metrics::gauge* kv_used_ratio = nullptr;
  metrics::counter* prompt_tokens = nullptr;
  metrics::counter* prefix_hit_tokens = nullptr;
  static inline const char* name = "dsrt.batcher";
};

namespace {

using self_ptr = caf::stateful_actor<batcher_state>*;

void send(self_ptr self, serving::stream_output& out) {
  auto& st = self->state;
  for (const auto& f : out.finals) st.queued.erase(f.request_id);
  if (!out.chunks.chunks.empty()) self->send(st.router, std::move(out.chunks));
  for (auto& f : out.finals) self->send(st.router, std::move(f));
}

void pump(self_ptr self);

void on_result(self_ptr self, step_result result) {
  auto& st = self->state;
  auto plan = std::move(st.in_flight);
  serving::stream_output out;
  if (result.failure) {
    // The KV this step wrote may be garbage: its sequences fail and the router retries
    // them elsewhere (and counts the error against this replica's breaker).
    st.streams->on_failed_step(*st.scheduler, *plan, *result.failure, out);
  } else {
    ++st.steps;
    st.step_seconds->observe(double(result.duration_us) * 1e-6);
    // The step's chunks go in one message, and before its finals: a final must never
    // overtake its request's last chunk.
    st.streams->on_step(*st.scheduler, *plan, result.sampled, out);
  }
  send(self, out);
  const auto& s = *st.scheduler;
  st.kv_used_ratio->set(1.0 - double(s.free_blocks()) / double(std::max(1, s.total_blocks())));
  // The shard has let go of the plan: its buffers serve the next one.
  if (plan.use_count() == 1) st.scheduler->recycle(std::move(*plan));
  pump(self);
}

void pump(self_ptr self) {
  auto& st = self->state;
  if (st.in_flight) return;
  auto plan = std::make_shared<batching::step_plan>(st.scheduler->schedule(self->clock().now()));
  serving::stream_output stopped_out;
  for (const auto& stopped : plan->stopped) {
    const bool cancelled = stopped.cause == batching::stop_cause::cancelled;
    st.streams->stop(stopped.id,
                     cancelled ? make_error(error_code::cancelled, "request {} was cancelled", stopped.id)
                               : make_error(error_code::deadline_exceeded, "request {} passed its deadline",
                                            stopped.id),
                     stopped_out);
  }
  send(self, stopped_out);
  if (!plan->empty()) {
    const auto now = self->clock().now();
    st.batch_sequences->observe(double(plan->sequences.size()));
    st.prefix_hit_tokens->inc(std::uint64_t(plan->prefix_hit_tokens));
    for (const auto& p : plan->sequences)
      if (auto it = st.queued.find(p.id); it != st.queued.end()) {
        st.queue_seconds->observe(std::chrono::duration<double>(now - it->second.queued_at).count());
        st.queued.erase(it);
      }
    st.in_flight = plan;
    self->request(st.shard, caf::infinite, step_request{st.steps, plan})
        .then([self](step_result& r) { on_result(self, std::move(r)); });
    return;
  }
  if (plan->wake_at && !st.timer_armed) {
    st.timer_armed = true;
    self->delayed_send(self, std::max(*plan->wake_at - self->clock().now(), clock_time::duration::zero()),
                       tick_atom::value);
  }
}

caf::behavior batcher_actor(caf::stateful_actor<batcher_state>* self, batcher_options options,
                            caf::actor shard, caf::actor router) {
  auto& st = self->state;
  if (!options.metrics) options.metrics = std::make_shared<metrics::registry>();
  st.options = options;
  st.scheduler = std::make_unique<batching::batch_scheduler>(options.scheduler, options.kv_blocks,
                                                              options.kv_block_tokens);
  st.streams = std::make_unique<serving::token_streams>(options.replica, options.scheduler.stream_interval_tokens);
  st.shard = std::move(shard);
  st.router = std::move(router);
  self->link_to(st.shard);
  auto& m = *options.metrics;
  const metrics::label_set replica = {{"replica", std::to_string(options.replica)}};
  st.batch_sequences = &m.histogram("dsrt_batch_sequences", "sequences per step",
                                    metrics::exponential_buckets(1, 2, 12), replica);
  st.queue_seconds = &m.histogram("dsrt_queue_seconds", "time from reaching the batcher to the first step",
                                  metrics::latency_buckets_seconds(), replica);
  st.step_seconds = &m.histogram("dsrt_step_seconds", "shard time per step", metrics::latency_buckets_seconds(), replica);
  st.kv_used_ratio = &m.gauge("dsrt_kv_used_ratio", "KV blocks in use (sequences and prefix cache) / all", replica);
  st.prompt_tokens = &m.counter("dsrt_prompt_tokens_total", "prompt tokens of sequences reaching the batcher", replica);
  st.prefix_hit_tokens = &m.counter("dsrt_prefix_hit_tokens_total", "prompt tokens taken from the prefix cache", replica);
  return {
      [self](replica_request& r) {
        auto& st = self->state;
        const auto id = r.request_id;
        // A newer attempt of a request this replica still runs (the router gave up on the
        // old one): the old sequence goes, its messages would be dropped by the router.
        if (auto old = st.streams->attempt(id); old && *old < r.attempt) {
          st.scheduler->fail(id);
          st.streams->close(id, std::nullopt);
          st.queued.erase(id);
        }
        const auto max_new = r.sequence.max_new_tokens;
        st.prompt_tokens->inc(std::uint64_t(r.sequence.tokens.size()));
        if (auto s = st.scheduler->submit(self->clock().now(), std::move(r.sequence)); !s) {
          self->send(st.router, replica_final{id, r.attempt, st.options.replica, s.err(), finish_reason::length});
          return;
        }
        st.streams->open(id, r.attempt, max_new, std::move(r.stop_token_ids));
        st.queued[id] = {self->clock().now()};
        pump(self);
      },
      [self](cancel_atom, std::uint64_t id) {
        auto& st = self->state;
        st.scheduler->cancel(id);
        pump(self);
      },
      [self](tick_atom) {
        self->state.timer_armed = false;
        pump(self);
      },
      [self](status_atom) {
        auto& st = self->state;
        const auto& s = *st.scheduler;
        replica_status r;
        r.replica = st.options.replica;
        r.steps = st.steps;
        r.has_work = s.running() + s.waiting() > 0;
        r.running = s.running();
        r.waiting = s.waiting();
        r.free_blocks = s.free_blocks();
        r.total_blocks = s.total_blocks();
        r.leaked_blocks = s.leaked_blocks();
        r.prefix_hit_tokens = s.counters().prefix_hit_tokens;
        r.computed_tokens = s.counters().computed_tokens;
        r.preemptions = s.counters().preemptions;
        return r;
      },
  };
}

}  // namespace

caf::actor spawn_batcher(caf::actor_system& system, batcher_options options, caf::actor shard,
                         caf::actor router) {
  return system.spawn(batcher_actor, std::move(options), std::move(shard), std::move(router));
}

}  // namespace dsrt::actors
