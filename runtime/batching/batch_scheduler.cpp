#include "runtime/batching/batch_scheduler.h"

#include <algorithm>
#include <atomic>
#include <limits>

#include "kernels/assert.h"
#include "runtime/buggify.h"

namespace dsrt::batching {
namespace {

// Numbers the schedulers of a process, so a shard can tell whose plans it follows.
std::uint64_t next_scheduler_id() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

// What every step reads and writes comes first, in three cache lines (complete() needs
// only the first): a replica's sequences are cold again by the time its next step completes, so
// each line touched per sequence per step costs a miss. Of the request, only what the
// scheduler reads after submit() is kept.
struct alignas(64) batch_scheduler::sequence {
  std::uint64_t arrival_order = 0;
  std::int64_t computed = 0;          // tokens with KV in the cache
  std::vector<std::int32_t> tokens;   // the request's tokens, then every sampled token
  std::int64_t request_tokens = 0;    // how many of `tokens` came with the request
  std::uint64_t planned_in = 0;       // the schedule() call that planned or preempted it last
  int priority = 0;                   // the request's class, before aging
  bool running = false;
  bool cancelled = false;
  clock_time arrival;
  std::optional<clock_time> deadline;
  engine::sequence_blocks blocks;     // covers `computed` (+ the slice planned, until complete())
  std::int32_t shard_blocks = 0;      // leading entries of blocks.table the shard holds as ours
  std::int64_t draw_base = 0;         // the request's: generated tokens before `tokens` ended
  std::uint64_t id = 0;
  engine::sampling_params sampling;
  std::int64_t generated() const { return std::int64_t(tokens.size()) - request_tokens; }
};

status validate(const scheduler_config& c) {
  auto bad = [](std::string_view field, auto value) {
    return make_error(error_code::invalid_argument, "scheduler: {} = {} is out of range", field, value);
  };
  if (c.step_tokens_max < 1) return bad("step_tokens_max", c.step_tokens_max);
  if (c.sequences_max < 1 || c.sequences_max > c.step_tokens_max)
    return bad("sequences_max (1 .. step_tokens_max)", c.sequences_max);
  if (c.prefill_chunk_tokens < 1) return bad("prefill_chunk_tokens", c.prefill_chunk_tokens);
  if (c.waiting_sequences_max < 1) return bad("waiting_sequences_max", c.waiting_sequences_max);
  if (c.priority_classes < 1 || c.priority_classes > 256) return bad("priority_classes", c.priority_classes);
  if (c.aging_ms.count() < 1) return bad("aging_ms", c.aging_ms.count());
  if (c.batch_wait_ms.count() < 0) return bad("batch_wait_ms", c.batch_wait_ms.count());
  if (c.batch_fill_sequences < 1) return bad("batch_fill_sequences", c.batch_fill_sequences);
  if (c.stream_interval_tokens < 1 || c.stream_interval_tokens > stream_interval_tokens_max)
    return bad("stream_interval_tokens", c.stream_interval_tokens);
  if (std::int64_t(c.sequences_max) * c.stream_interval_tokens > step_stream_tokens_max)
    return make_error(error_code::invalid_argument,
                      "scheduler: sequences_max ({}) x stream_interval_tokens ({}) exceeds {} tokens per step's "
                      "chunks",
                      c.sequences_max, c.stream_interval_tokens, step_stream_tokens_max);
  if (c.prefix_cached_blocks_max < 0) return bad("prefix_cached_blocks_max", c.prefix_cached_blocks_max);
  return ok_status();
}

batch_scheduler::batch_scheduler(const scheduler_config& config, std::int32_t kv_blocks,
                                 int kv_block_tokens)
    : config_(config), blocks_(kv_blocks, kv_block_tokens), id_(next_scheduler_id()) {
  DSRT_ASSERT(validate(config).ok(), "{}", validate(config).err().message);
  if (config_.prefix_cache)
    prefix_ = std::make_unique<cache::prefix_index>(
        blocks_, cache::prefix_index_config{config_.prefix_cached_blocks_max});
}

batch_scheduler::~batch_scheduler() {
  clear();
  prefix_.reset();   // returns the index's references before blocks_ goes
}

status batch_scheduler::submit(clock_time now, sequence_request request) {
  if (request.tokens.empty())
    return make_error(error_code::invalid_argument, "sequence {}: no tokens", request.id);
  if (request.max_new_tokens < 1)
    return make_error(error_code::invalid_argument, "sequence {}: max_new_tokens {} is below 1",
                      request.id, request.max_new_tokens);
  if (sequences_.contains(request.id))
    return make_error(error_code::invalid_argument, "sequence {} is already queued", request.id);
  if (request.priority < 0 || request.priority >= config_.priority_classes)
    return make_error(error_code::invalid_argument, "sequence {}: priority {} outside 0 .. {}",
                      request.id, request.priority, config_.priority_classes - 1);
  // Saturated: a max_new_tokens near 2^63 must not wrap the sum negative and pass.
  const std::int64_t prompt = std::int64_t(request.tokens.size());
  const std::int64_t total = request.max_new_tokens > std::numeric_limits<std::int64_t>::max() - prompt
                                 ? std::numeric_limits<std::int64_t>::max()
                                 : prompt + request.max_new_tokens;
  const std::int64_t need = total / blocks_.block_tokens() + (total % blocks_.block_tokens() != 0);
  if (need > blocks_.blocks_total())   // the request's size, not this replica's state
    return make_error(error_code::invalid_argument,
                      "sequence {}: {} tokens need {} KV blocks, the replica has {}", request.id,
                      total, need, blocks_.blocks_total());
  if (int(waiting_.size()) >= config_.waiting_sequences_max)
    return make_error(error_code::overloaded, "batcher: waiting_sequences_max ({}) reached",
                      config_.waiting_sequences_max);
  if (DSRT_BUGGIFY("scheduler.refuse_submit"))   // as if the queue were full
    return make_error(error_code::overloaded, "batcher: refused (buggify)");
  auto s = std::make_unique<sequence>();
  s->tokens = std::move(request.tokens);
  s->request_tokens = std::int64_t(s->tokens.size());
  s->priority = request.priority;
  s->deadline = request.deadline;
  if (request.deadline && (!deadline_bound_ || *request.deadline < *deadline_bound_))
    deadline_bound_ = request.deadline;
  s->draw_base = request.draw_base;
  s->id = request.id;
  s->sampling = request.sampling;
  s->arrival = now;
  s->arrival_order = arrivals_++;
  const auto id = s->id;
  waiting_.push_back(&sequences_.insert(id, std::move(s)));
  return ok_status();
}

void batch_scheduler::cancel(std::uint64_t id) {
  if (sequence* s = sequences_.find(id); s && !s->cancelled) {
    s->cancelled = true;
    ++cancelled_;
  }
}

std::int64_t batch_scheduler::generated(std::uint64_t id) const {
  const sequence* s = sequences_.find(id);
  DSRT_ASSERT(s, "unknown sequence {}", id);
  return s->generated();
}

std::span<const std::int32_t> batch_scheduler::block_table(std::uint64_t id) const {
  const sequence* s = sequences_.find(id);
  return s ? std::span<const std::int32_t>(s->blocks.table) : std::span<const std::int32_t>();
}

int batch_scheduler::effective_priority(const sequence& s, clock_time now) const {
  // Aging: every aging_ms waited lifts a request one class, so low priority never starves.
  const auto waited = std::max(now - s.arrival, clock_time::duration::zero());
  const auto lifts = waited / config_.aging_ms;
  return int(std::max<std::int64_t>(std::int64_t(s.priority) - std::int64_t(lifts),
                                    -config_.priority_classes));
}

bool batch_scheduler::runs_before(const sequence& a, const sequence& b) {
  return a.priority != b.priority ? a.priority < b.priority : a.arrival_order < b.arrival_order;
}

void batch_scheduler::sort_by_precedence(clock_time now, const std::vector<sequence*>& list) {
  // The key once per sequence, not per comparison, packed into one integer: the class
  // (with aging), then arrival. arrival_order is unique, so the order is total and
  // std::sort is as deterministic as a stable sort.
  // Sized first and written through plain pointers: push_back stored each vector's end
  // back to memory per element (the compiler cannot tell it from the elements).
  ranked_.resize(list.size());
  ranked* out = ranked_.data();
  for (sequence* s : list) *out++ = {rank_key(effective_priority(*s, now), s->arrival_order), s};
  std::sort(ranked_.begin(), ranked_.end(), [](const ranked& a, const ranked& b) { return a.key < b.key; });
  order_.resize(ranked_.size());
  sequence** ordered = order_.data();
  for (const ranked& r : ranked_) *ordered++ = r.s;
}

void batch_scheduler::order_running() {
  // Running sequences by their request's class: aging is for admission, and a running
  // sequence that aged must not outrank a newer one of its class or a higher one. Decodes
  // go before prefill chunks only within a class, so a lower class's decodes never take
  // blocks or budget ahead of a higher class. A stable pass over by_arrival_ into two
  // buckets per class gives that order in linear time (a sort per step was 4-5 % of a
  // large simulation); submit() keeps priorities within [0, priority_classes).
  const auto bucket = [](const sequence& s) {
    return 2 * std::size_t(s.priority) + (std::int64_t(s.tokens.size()) - s.computed != 1);
  };
  bucket_start_.assign(2 * std::size_t(config_.priority_classes) + 1, 0);
  for (const sequence* s : by_arrival_) ++bucket_start_[bucket(*s) + 1];
  for (std::size_t b = 1; b < bucket_start_.size(); ++b) bucket_start_[b] += bucket_start_[b - 1];
  order_.resize(by_arrival_.size());
  for (sequence* s : by_arrival_) order_[bucket_start_[bucket(*s)]++] = s;
}

void batch_scheduler::unlist_running(sequence* s) {
  std::erase(running_, s);
  const auto at = std::lower_bound(by_arrival_.begin(), by_arrival_.end(), s->arrival_order,
                                   [](const sequence* a, std::uint64_t order) { return a->arrival_order < order; });
  if (at != by_arrival_.end() && *at == s) by_arrival_.erase(at);
}

std::uint64_t batch_scheduler::rank_key(int priority, std::uint64_t arrival_order) {
  // Priorities lie in [-priority_classes, priority_classes) with at most 256 classes (aging
  // lifts below 0): 9 bits once shifted; the arrival counter keeps 54.
  DSRT_ASSERT(priority >= -256 && priority < 256 && arrival_order < (std::uint64_t(1) << 54),
              "priority {} arrival {}", priority, arrival_order);
  return std::uint64_t(priority + 256) << 54 | arrival_order;
}

void batch_scheduler::release(sequence& s) {
  blocks_.release(s.blocks);
  s.computed = 0;
  if (s.shard_blocks > 0) released_.push_back(s.id);   // the shard drops its table
  s.shard_blocks = 0;
}

void batch_scheduler::drop_stopped(clock_time now, step_plan& plan) {
  // Nothing cancelled and no deadline reached: no walk over every sequence this step.
  if (cancelled_ == 0 && (!deadline_bound_ || *deadline_bound_ > now)) return;
  cancelled_ = 0;
  deadline_bound_.reset();
  const auto stops = [&](const sequence* s) { return s->cancelled || (s->deadline && *s->deadline <= now); };
  auto stop = [&](std::vector<sequence*>& list) {
    std::erase_if(list, [&](sequence* s) {
      if (!stops(s)) {
        if (s->deadline && (!deadline_bound_ || *s->deadline < *deadline_bound_)) deadline_bound_ = s->deadline;
        return false;
      }
      plan.stopped.push_back({s->id, s->cancelled ? stop_cause::cancelled : stop_cause::deadline_exceeded});
      release(*s);
      return true;
    });
  };
  stop(running_);
  if (by_arrival_.size() != running_.size()) std::erase_if(by_arrival_, stops);
  stop(waiting_);
  for (const auto& st : plan.stopped) sequences_.erase(st.id);
}

bool batch_scheduler::reserve_or_evict(sequence& s, std::int64_t tokens,
                                       std::vector<engine::block_copy>& copies) {
  const std::size_t copies_before = copies.size();
  const auto held = std::int32_t(s.blocks.table.size());
  bool reserved = blocks_.reserve(s.blocks, tokens, copies);
  if (!reserved && prefix_) {
    const std::int32_t short_by = blocks_.blocks_needed(s.blocks, tokens) - blocks_.free_blocks();
    prefix_->evict(short_by);
    reserved = blocks_.reserve(s.blocks, tokens, copies);
  }
  // A copy-on-write replaced the last block the table had: the shard's copy of it is stale.
  if (copies.size() > copies_before) s.shard_blocks = std::min(s.shard_blocks, held - 1);
  return reserved;
}

bool batch_scheduler::preempt_one(const sequence* keep, step_plan& plan) {
  // The victim: the running sequence of lowest class, then latest arrival (runs_before),
  // not yet in this step's plan and below `keep`: a sequence never makes room for itself at
  // a higher one's expense.
  sequence* victim = nullptr;
  for (sequence* s : running_)
    if (s != keep && s->planned_in != schedule_calls_ && (!keep || runs_before(*keep, *s)) &&
        (!victim || runs_before(*victim, *s)))
      victim = s;
  if (!victim) return false;
  // Its full blocks go to the prefix index first: if nobody needs them before it runs
  // again, the recompute finds them there.
  if (prefix_) prefix_->insert(std::span(victim->tokens).first(std::size_t(victim->computed)),
                               victim->blocks.table, ++tick_);
  release(*victim);
  victim->running = false;
  unlist_running(victim);
  waiting_.push_back(victim);
  victim->planned_in = schedule_calls_;   // not re-admitted in the same call
  plan.preempted.push_back(victim->id);
  ++counters_.preemptions;
  return true;
}

void batch_scheduler::recycle(step_plan&& plan) {
  // Kept whole: the next plan rewrites these entries in place, reusing their buffers.
  for (auto& p : spare_plan_)
    if (spare_.size() < spare_sequences_max) spare_.push_back(std::move(p));
  spare_plan_ = std::move(plan.sequences);
}

void batch_scheduler::plan_slice(sequence& s, std::int64_t tokens, step_plan& plan) {
  // The entry planned_ of a recycled plan, else a spare one, else a new one; assign()
  // below keeps the buffers' capacity.
  if (planned_ == plan.sequences.size()) {
    if (spare_.empty()) {
      plan.sequences.emplace_back();
    } else {
      plan.sequences.push_back(std::move(spare_.back()));
      spare_.pop_back();
    }
  }
  latest_plan_.push_back(&s);
  planned_sequence& p = plan.sequences[planned_++];
  p.id = s.id;
  p.serial = s.arrival_order;
  p.tokens.assign(s.tokens.begin() + s.computed, s.tokens.begin() + s.computed + tokens);
  p.first_position = s.computed;
  const auto& table = s.blocks.table;
  p.table_kept = std::min(s.shard_blocks, std::int32_t(table.size()));
  p.new_blocks.assign(table.begin() + p.table_kept, table.end());
  s.shard_blocks = std::int32_t(table.size());
  p.sample = s.computed + tokens == std::int64_t(s.tokens.size());
  p.draw_index = s.draw_base + s.generated();
  p.sampling = s.sampling;
  plan.tokens += tokens;
  s.planned_in = schedule_calls_;
}

step_plan batch_scheduler::schedule(clock_time now) {
  step_plan plan;
  plan.scheduler = id_;
  plan.call = ++schedule_calls_;
  latest_plan_.clear();
  latest_call_ = plan.call;
  drop_stopped(now, plan);
  if (running_.empty()) {
    if (waiting_.empty()) return plan;
    // Light load: give a batch a moment to fill before the first step.
    const auto oldest = std::min_element(waiting_.begin(), waiting_.end(), [](auto* a, auto* b) {
      return a->arrival < b->arrival;
    });
    const clock_time start = (*oldest)->arrival + config_.batch_wait_ms;
    if (int(waiting_.size()) < config_.batch_fill_sequences && now < start) {
      plan.wake_at = start;
      return plan;
    }
  }
  // Simulation only: a preemption by recompute and a small token budget (short prefill
  // chunks, decodes left for the next step), both legal whatever the load.
  if (!running_.empty() && DSRT_BUGGIFY("scheduler.preempt")) preempt_one(nullptr, plan);
  // The recycled plan's entries are rewritten in place from here (plan_slice); what this
  // plan does not use goes back to the spares at the end.
  plan.sequences = std::move(spare_plan_);
  spare_plan_.clear();
  // They and their token buffers are cold (other replicas ran since): start the loads
  // together rather than miss on each in plan_slice.
  for (const auto& p : plan.sequences) __builtin_prefetch(p.tokens.data(), 1);
  planned_ = 0;
  std::int64_t budget = config_.step_tokens_max;
  if (DSRT_BUGGIFY("scheduler.small_step")) budget = std::min<std::int64_t>(budget, 1 + counters_.steps % 16);
  // 1. Running sequences by their request's priority class, decodes before prefill chunks
  //    within a class, then by arrival.
  order_running();
  for (sequence* s : order_) {
    if (budget == 0) break;
    if (!s->running) continue;   // preempted earlier in this loop
    const std::int64_t want = std::min({std::int64_t(s->tokens.size()) - s->computed,
                                        config_.prefill_chunk_tokens, budget});
    bool reserved = reserve_or_evict(*s, want, plan.copies);
    while (!reserved && preempt_one(s, plan)) reserved = reserve_or_evict(*s, want, plan.copies);
    if (!reserved) {
      // Nothing below it left to preempt (the rest is planned or ranks higher): this one
      // waits its turn — preempt_one now finds it, the lowest of what is unplanned.
      preempt_one(nullptr, plan);
      continue;
    }
    plan_slice(*s, want, plan);
    budget -= want;
  }

  // 2. Admissions by precedence while the cap, the budget and the free blocks allow.
  //    Running sequences are never preempted to admit a new one.
  sort_by_precedence(now, waiting_);
  waiting_.assign(order_.begin(), order_.end());
  std::size_t admitted = 0;
  for (sequence* s : waiting_) {
    if (budget == 0 || int(running_.size()) >= config_.sequences_max) break;
    if (s->planned_in == schedule_calls_) break;   // preempted in this very call
    if (prefix_ && s->computed == 0) {
      s->blocks = prefix_->match(s->tokens, ++tick_);
      s->computed = s->blocks.tokens;
      // A hit of the request's tokens, counted at its first admission only: a preempted
      // sequence getting its own blocks back is no hit (the rate would pass 1).
      if (s->planned_in == 0) plan.prefix_hit_tokens += s->computed;
    }
    const std::int64_t want = std::min({std::int64_t(s->tokens.size()) - s->computed,
                                        config_.prefill_chunk_tokens, budget});
    if (!reserve_or_evict(*s, want, plan.copies)) {
      if (s->planned_in == 0) plan.prefix_hit_tokens -= s->computed;
      release(*s);
      break;   // keep the order: nothing behind it jumps ahead
    }
    s->running = true;
    running_.push_back(s);
    by_arrival_.insert(std::upper_bound(by_arrival_.begin(), by_arrival_.end(), s->arrival_order,
                                        [](std::uint64_t order, const sequence* a) { return order < a->arrival_order; }),
                       s);
    plan_slice(*s, want, plan);
    budget -= want;
    ++admitted;
  }
  waiting_.erase(waiting_.begin(), waiting_.begin() + std::ptrdiff_t(admitted));
  for (std::size_t i = planned_; i < plan.sequences.size(); ++i)
    if (spare_.size() < spare_sequences_max) spare_.push_back(std::move(plan.sequences[i]));
  plan.sequences.resize(planned_);
  counters_.prefix_hit_tokens += plan.prefix_hit_tokens;
  if (!plan.empty()) {
    ++counters_.steps;
    // Only a plan with sequences reaches the shard: the table news wait for one.
    plan.released = std::move(released_);
    released_.clear();
    plan.tables_reset = std::exchange(tables_reset_, false);
  }
  // Everything that ran was preempted (blocks ran out): nothing else will wake the caller,
  // and the preempted sequences may be admitted by the next call.
  if (plan.empty() && !plan.preempted.empty() && !waiting_.empty()) plan.wake_at = now;
  return plan;
}

void batch_scheduler::complete(const step_plan& plan, std::span<const std::int32_t> sampled) {
  // The sequences are cold by now (other replicas' steps ran since): load them all at once
  // (the sequences, then where their next token goes) rather than one miss after another.
  // All of each sequence: the schedule() that follows reads the rest (its block table, arrival, sampling).
  static_assert(sizeof(sequence) <= 3 * 64);
  std::span<sequence* const> completing = latest_plan_;
  if (!is_latest(plan)) {   // an older plan, or one made elsewhere: by id
    completing_.clear();
    for (const auto& p : plan.sequences) sequences_.prefetch(p.id);
    for (const auto& p : plan.sequences) completing_.push_back(sequences_.find(p.id));
    completing = completing_;
  }
  for (sequence* s : completing) {
    if (s)
      for (int line = 0; line < 3; ++line) __builtin_prefetch(reinterpret_cast<const char*>(s) + 64 * line);
  }
  for (const sequence* s : completing)
    if (s) __builtin_prefetch(s->tokens.data() + s->tokens.size(), 1);
  std::size_t next = 0;
  for (std::size_t k = 0; k < plan.sequences.size(); ++k) {
    const auto& p = plan.sequences[k];
    sequence* found = completing[k];
    if (!found || found->arrival_order != p.serial) {   // not current (is_current)
      next += p.sample;   // its sample is dropped with it
      continue;
    }
    sequence& s = *found;
    DSRT_ASSERT(s.running && s.computed == p.first_position,
                "sequence {} changed since it was planned (computed {} vs {})", p.id, s.computed,
                p.first_position);
    s.computed += std::int64_t(p.tokens.size());
    counters_.computed_tokens += std::int64_t(p.tokens.size());
    if (!p.sample) continue;
    DSRT_ASSERT(next < sampled.size(), "{} samples for a plan with more", sampled.size());
    s.tokens.push_back(sampled[next++]);
  }
  DSRT_ASSERT(next == sampled.size(), "{} samples for a plan with {}", sampled.size(), next);
}

bool batch_scheduler::is_current(const step_plan& plan, std::size_t entry) const {
  if (!is_latest(plan)) return is_current(plan.sequences[entry]);
  const sequence* s = latest_plan_[entry];   // null once fail() or finish() removed it
  return s && s->arrival_order == plan.sequences[entry].serial;
}

bool batch_scheduler::is_latest(const step_plan& plan) const {
  return plan.scheduler == id_ && plan.call == latest_call_ && plan.sequences.size() == latest_plan_.size();
}

bool batch_scheduler::is_current(const planned_sequence& p) const {
  const sequence* s = sequences_.find(p.id);
  return s && s->arrival_order == p.serial;
}

void batch_scheduler::finish(std::uint64_t id) {
  sequence* found = sequences_.find(id);
  if (!found) return;
  sequence& s = *found;
  // The sequence ends here: the index may take its token buffer rather than copy it.
  if (prefix_ && s.computed > 0)
    prefix_->insert(std::span(s.tokens).first(std::size_t(s.computed)), s.blocks.table, ++tick_, s.tokens);
  fail(id);
}

void batch_scheduler::fail(std::uint64_t id) {
  sequence* s = sequences_.find(id);
  if (!s) return;
  std::replace(latest_plan_.begin(), latest_plan_.end(), s, static_cast<sequence*>(nullptr));
  release(*s);
  if (s->running) unlist_running(s);
  std::erase(waiting_, s);
  sequences_.erase(id);
}

std::vector<std::uint64_t> batch_scheduler::clear() {
  std::vector<std::uint64_t> ids;
  sequences_.for_each([&](std::uint64_t id, sequence& s) {
    release(s);
    ids.push_back(id);
  });
  std::sort(ids.begin(), ids.end());
  running_.clear();
  by_arrival_.clear();
  waiting_.clear();
  sequences_.clear();
  latest_plan_.clear();
  released_.clear();
  tables_reset_ = true;   // the shard drops every table with the next plan
  return ids;
}

std::int32_t batch_scheduler::prefix_cached_blocks() const {
  return prefix_ ? prefix_->cached_blocks() : 0;
}

std::int32_t batch_scheduler::leaked_blocks() const {
  std::int64_t held = 0;
  sequences_.for_each([&](std::uint64_t, const sequence& s) { held += std::int64_t(s.blocks.table.size()); });
  // Blocks the index holds may also be in sequences' tables (shared prefixes): count the
  // referenced blocks against the references we can account for.
  std::int64_t refs = 0;
  for (std::int32_t b = 0; b < blocks_.blocks_total(); ++b) {
    refs += blocks_.refcount(b);
  }
  const std::int64_t accounted = held + prefix_cached_blocks();
  return std::int32_t(std::max<std::int64_t>(refs - accounted, 0));
}

void batch_scheduler::check_invariants() const {
  DSRT_ASSERT(running_.size() + waiting_.size() == sequences_.size(),
              "running {} + waiting {} != sequences {}", running_.size(), waiting_.size(),
              sequences_.size());
  DSRT_ASSERT(int(running_.size()) <= config_.sequences_max, "running {} > sequences_max {}",
              running_.size(), config_.sequences_max);
  DSRT_ASSERT(std::int64_t(sequences_.size()) <= std::int64_t(config_.sequences_max) + config_.waiting_sequences_max,
              "{} sequences held, sequences_max + waiting_sequences_max is {}", sequences_.size(),
              std::int64_t(config_.sequences_max) + config_.waiting_sequences_max);
  for (const sequence* s : waiting_)
    DSRT_ASSERT(!s->running && s->blocks.table.empty() && s->computed == 0,
                "waiting sequence {} holds {} blocks", s->id, s->blocks.table.size());
  auto sorted = running_;
  std::sort(sorted.begin(), sorted.end(), [](const sequence* a, const sequence* b) { return a->arrival_order < b->arrival_order; });
  DSRT_ASSERT(sorted == by_arrival_, "by_arrival_ holds {} sequences, not the {} running in arrival order",
              by_arrival_.size(), running_.size());
  for (const sequence* s : running_) {
    DSRT_ASSERT(s->running && s->blocks.tokens == s->computed,
                "running sequence {}: blocks cover {} tokens, computed {}", s->id,
                s->blocks.tokens, s->computed);
    DSRT_ASSERT(s->computed < std::int64_t(s->tokens.size()),
                "running sequence {} has nothing left to compute", s->id);
  }
  DSRT_ASSERT(leaked_blocks() == 0, "{} KV blocks leaked", leaked_blocks());
  for (const sequence* planned : latest_plan_) {
    if (!planned) continue;
    bool held = false;
    sequences_.for_each([&](std::uint64_t, const sequence& s) { held |= &s == planned; });
    DSRT_ASSERT(held, "the latest plan points at a sequence the scheduler no longer holds");
  }
}

}  // namespace dsrt::batching
