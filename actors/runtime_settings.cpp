#include "actors/runtime_settings.h"

#include <chrono>
#include <cstdint>
#include <utility>

#include <fmt/format.h>

#include "runtime/batching/batch_scheduler.h"
#include "runtime/policy/admission.h"
#include "runtime/policy/circuit_breaker.h"
#include "runtime/policy/restart_budget.h"

namespace dsrt::actors {
namespace {

using std::chrono::milliseconds;

// Upper bounds shared by several settings. None is a real capacity: they only keep a typo
// (an extra digit or three) from reaching the runtime, and keep sums far from overflow.
constexpr milliseconds second_ms{1000};
constexpr milliseconds ten_minutes_ms{600 * 1000};
constexpr milliseconds hour_ms{3600 * 1000};
constexpr milliseconds day_ms{24 * 3600 * 1000};
constexpr std::int64_t step_tokens_limit = engine::step_tokens_max_limit;  // 1 Mi tokens
constexpr std::int64_t queued_tokens_limit = std::int64_t(1) << 40;
constexpr std::int64_t memory_bytes_limit = std::int64_t(1) << 40;  // 1 TiB
constexpr std::int64_t queued_requests_limit = std::int64_t(1) << 24;
constexpr int sequences_limit = 1 << 16;
constexpr int waiting_sequences_limit = 1 << 20;

void bind_runtime(config::settings& s, runtime_options& o) {
  s.add("runtime.replicas", &o.replicas, "count",
        "Model replicas on this node, each with its own batcher, shard and KV cache: more "
        "throughput, more memory.",
        1, runtime_replicas_max);
  s.add("runtime.scheduler_threads", &o.scheduler_threads, "count",
        "CAF worker threads for the router, batchers and supervisor; shards run on threads of "
        "their own, so a few are enough.",
        1, 256);
  s.add("runtime.ask_timeout_ms", &o.ask_timeout_ms,
        "How long start-up and the blocking status queries wait for the actors before failing.",
        milliseconds(1), ten_minutes_ms);
}

void bind_model(config::settings& s, engine::model_options& m) {
  s.add("model.kv_block_tokens", &m.kv_block_tokens, "tokens",
        "Tokens per KV cache block, the unit of KV allocation and prefix sharing: smaller "
        "wastes less memory, larger means shorter block tables.",
        1, engine::kv_block_tokens_max);
  s.add("model.kv_cache_bytes_max", &m.kv_cache_bytes_max, "bytes",
        "KV cache memory of one replica over all layers; it fixes how many tokens the "
        "replica can hold at once.",
        std::int64_t(1) << 20, memory_bytes_limit);
  s.add("model.step_tokens_max", &m.step_tokens_max, "tokens",
        "Tokens one forward pass may carry; sizes the activation scratch, which is allocated "
        "up front.",
        1, step_tokens_limit);
}

void bind_batcher(config::settings& s, batching::scheduler_config& c) {
  s.add("batcher.step_tokens_max", &c.step_tokens_max, "tokens",
        "Token budget of one batch step (clamped to model.step_tokens_max): larger steps give "
        "more throughput and slower steps.",
        1, step_tokens_limit);
  s.add("batcher.sequences_max", &c.sequences_max, "sequences",
        "Sequences running at once on a replica; at most batcher.step_tokens_max, since each "
        "needs a token of every step.",
        1, sequences_limit);
  s.add("batcher.prefill_chunk_tokens", &c.prefill_chunk_tokens, "tokens",
        "Prompt tokens of one sequence per step (chunked prefill), so a long prompt does not "
        "stall the decodes beside it.",
        1, step_tokens_limit);
  s.add("batcher.waiting_sequences_max", &c.waiting_sequences_max, "sequences",
        "Sequences queued at a replica for a place in the batch; past it the replica refuses a "
        "submission (OVERLOADED), which the router counts as that replica's failure and tries another.",
        1, waiting_sequences_limit);
  s.add("batcher.priority_classes", &c.priority_classes, "count",
        "Request priority classes, 0 (highest) to priority_classes - 1; a request's priority "
        "past the last (the router takes 0..255) runs in the last.", 1, 256);
  s.add("batcher.aging_ms", &c.aging_ms,
        "Waiting this long raises a request one priority class, so low priorities are not "
        "starved.",
        milliseconds(1), hour_ms);
  s.add("batcher.batch_wait_ms", &c.batch_wait_ms,
        "With nothing running, wait up to this long for batch_fill_sequences requests before "
        "a step: fuller batches for a little latency; 0 never waits.",
        milliseconds(0), second_ms);
  s.add("batcher.batch_fill_sequences", &c.batch_fill_sequences, "sequences",
        "Waiting sequences that end the light-load wait (batch_wait_ms) early.", 1,
        sequences_limit);
  s.add("batcher.prefix_cached_blocks_max", &c.prefix_cached_blocks_max, "blocks",
        "KV blocks the prefix index may keep for reuse after their sequences finish; 0 keeps "
        "none.",
        0, 1 << 30);
  s.add("batcher.prefix_cache", &c.prefix_cache,
        "Reuse the KV of a prompt prefix already computed; off, every prompt is computed in "
        "full.");
  s.add("batcher.stream_interval_tokens", &c.stream_interval_tokens, "tokens",
        "Tokens per streamed chunk after a request's first, which goes at once: 1 streams "
        "every token; more means fewer, larger messages for a burstier stream.",
        1, batching::stream_interval_tokens_max);
}

void bind_admission(config::settings& s, policy::admission_config& c) {
  s.add("admission.queue_requests_max", &c.queue_requests_max, "requests",
        "Requests accepted and not finished, all tenants; past it new ones get OVERLOADED with "
        "a retry-after hint.",
        1, queued_requests_limit);
  s.add("admission.queue_tokens_max", &c.queue_tokens_max, "tokens",
        "Prompt + max_tokens of the requests accepted and not finished, all tenants: bounds "
        "the work queued.",
        1, queued_tokens_limit);
  s.add("admission.tenant_queue_requests_max", &c.tenant_queue_requests_max, "requests",
        "As queue_requests_max for one tenant, so one tenant cannot fill the queue; at most "
        "queue_requests_max.",
        1, queued_requests_limit);
  s.add("admission.tenant_queue_tokens_max", &c.tenant_queue_tokens_max, "tokens",
        "As queue_tokens_max for one tenant; at most queue_tokens_max.", 1, queued_tokens_limit);
  s.add("admission.tenants_max", &c.tenants_max, "count",
        "Tenants with a request queued at once; bounds the per-tenant bookkeeping.", 1,
        std::int64_t(1) << 20);
  s.add("admission.retry_after_min_ms", &c.retry_after_min_ms,
        "Lowest retry-after hint sent with OVERLOADED, and the hint before any drain rate is "
        "measured.",
        milliseconds(0), hour_ms);
  s.add("admission.retry_after_max_ms", &c.retry_after_max_ms,
        "Highest retry-after hint sent with OVERLOADED; at least retry_after_min_ms.",
        milliseconds(0), hour_ms);
  s.add("admission.drain_sample_ms", &c.drain_sample_ms,
        "Busy time one drain-rate sample spans at least (the hint is tokens to drain / drain "
        "rate).",
        milliseconds(1), ten_minutes_ms);
  s.add("admission.drain_halflife_ms", &c.drain_halflife_ms,
        "Busy time after which a drain-rate sample weighs half: shorter follows load changes "
        "sooner, longer is steadier.",
        milliseconds(1), hour_ms);
}

void bind_breaker(config::settings& s, policy::breaker_config& c) {
  s.add("breaker.window_requests_min", &c.window_requests_min, "requests",
        "Requests in the window before the error ratio can open a replica's breaker, so a few "
        "early failures do not.",
        1, 1 << 20);
  s.add("breaker.window_ms", &c.window_ms,
        "Rolling window the error ratio is measured over; a whole multiple of window_buckets.",
        milliseconds(1), hour_ms);
  s.add("breaker.window_buckets", &c.window_buckets, "count",
        "Buckets of the rolling window: more buckets age old outcomes out more smoothly.", 1,
        policy::breaker_window_buckets_max);
  s.add("breaker.error_ratio_open", &c.error_ratio_open, "ratio",
        "Errors / requests in the window at which the breaker opens and the replica gets no "
        "traffic.",
        0.01, 1.0);
  s.add("breaker.open_ms", &c.open_ms,
        "How long an open breaker keeps traffic off a replica before letting probes through.",
        milliseconds(1), hour_ms);
  s.add("breaker.half_open_probes_max", &c.half_open_probes_max, "requests",
        "Probe requests let through to a half-open replica; all must succeed (stream their "
        "first tokens) to close the breaker.",
        1, 1000);
}

void bind_routing(config::settings& s, router_options& r) {
  s.add("routing.affinity_prefix_tokens", &r.policy.choice.affinity_prefix_tokens, "tokens",
        "Prompt tokens that pick a request's home replica, so requests sharing a prefix find "
        "its KV cached; 0: no affinity.",
        0, step_tokens_limit);
  s.add("routing.affinity_load_slack_tokens", &r.policy.choice.affinity_load_slack_tokens, "tokens",
        "Outstanding tokens the home replica may carry beyond the least loaded one: prefix "
        "reuse against load balance.",
        0, queued_tokens_limit);
  s.add("routing.request_attempts_max", &r.policy.request_attempts_max, "count",
        "Replicas one request may try (retries before the first token, resumptions after); "
        "bounds what one failing request costs.",
        1, 16);
  s.add("routing.unavailable_retry_after_ms", &r.policy.unavailable_retry_after_ms,
        "Retry-after hint sent with UNAVAILABLE when no replica can serve.", milliseconds(0),
        hour_ms);
  s.add("routing.probe_verdict_ms", &r.policy.probe_verdict_ms,
        "A half-open probe with no verdict (no tokens) this long after it went out counts as "
        "failed (the request goes on); 0: no limit.",
        milliseconds(0), hour_ms);
  s.add("routing.replica_wait_ms", &r.policy.replica_wait_ms,
        "A request that finds no replica up (a worker restarting or reconnecting) waits this "
        "long for one before it falls back; 0: falls back at once.",
        milliseconds(0), hour_ms);
  s.add("routing.cache_lookup_timeout_ms", &r.cache_lookup_timeout_ms,
        "A fallback lookup in the response cache that takes longer counts as a miss.",
        milliseconds(1), hour_ms);
  s.add("routing.stop_strings_max", &r.policy.stop_strings_max, "count",
        "Stop strings one request may give; each is matched against the text of every token. "
        "A cluster's clients send at most 16 (the wire's limit).",
        0, 1024);
  s.add("routing.stop_string_bytes_max", &r.policy.stop_string_bytes_max, "bytes",
        "Bytes of one stop string; bounds the text held back while a match may be under way. "
        "A cluster's clients send at most 256 (the wire's limit).",
        1, 1 << 16);
}

void bind_response_cache(config::settings& s, cache::response_cache_config& c) {
  s.add("response_cache.entries_max", &c.entries_max, "count",
        "Responses kept to answer an identical request when no replica can serve; 0 turns the "
        "cache off.",
        0, std::int64_t(1) << 24);
  s.add("response_cache.bytes_max", &c.bytes_max, "bytes",
        "Memory the response cache may use (tokens, text and a per-entry overhead); least "
        "recently used entries go first.",
        0, memory_bytes_limit);
}

void bind_supervisor(config::settings& s, supervisor_options& o) {
  s.add("supervisor.restarts_max", &o.restarts.restarts_max, "count",
        "Restarts of one replica within restart_period_ms; past it the replica is reported "
        "down instead of crash-looping. 0: never restart.",
        0, policy::restart_restarts_max_limit);
  s.add("supervisor.restart_period_ms", &o.restarts.period_ms,
        "Window over which restarts_max is counted.", milliseconds(1), day_ms);
  s.add("supervisor.watchdog_interval_ms", &o.watchdog_interval_ms,
        "How often the supervisor asks each batcher for its progress (also how long it waits "
        "for the answer).",
        milliseconds(1), ten_minutes_ms);
  s.add("supervisor.watchdog_stall_ms", &o.watchdog_stall_ms,
        "A replica with work whose steps have not advanced for this long is restarted: "
        "catches a hung device, not only a dead actor.",
        milliseconds(1), hour_ms);
}

// The checks that relate fields to each other, which per-setting bounds cannot express.
// Prefixed with the section so the user knows which keys to look at.
status validate_bound(const runtime_options& o) {
  const auto in_section = [](const char* section, const status& s) -> status {
    if (s.ok()) return s;
    return error{s.err().code, fmt::format("{}: {}", section, s.err().message)};
  };
  DSRT_TRY(in_section("batcher", batching::validate(o.supervisor.scheduler)));
  DSRT_TRY(in_section("admission", policy::validate(o.router.policy.admission)));
  DSRT_TRY(in_section("breaker", policy::validate(o.router.policy.breaker)));
  DSRT_TRY(in_section("supervisor", policy::validate(o.supervisor.restarts)));
  return ok_status();
}

}  // namespace

void bind_runtime_settings(config::settings& s, actors::runtime_options& o,
                           engine::model_options& m) {
  bind_runtime(s, o);
  bind_model(s, m);
  bind_batcher(s, o.supervisor.scheduler);
  bind_admission(s, o.router.policy.admission);
  bind_breaker(s, o.router.policy.breaker);
  bind_routing(s, o.router);
  bind_response_cache(s, o.router.response_cache);
  bind_supervisor(s, o.supervisor);
}

status load_runtime_settings(const std::filesystem::path* file,
                             std::span<const std::string> overrides, actors::runtime_options& o,
                             engine::model_options& m) {
  // Work on copies so that a failure part-way (a bad override after a good file) leaves the
  // caller's structs as they were.
  runtime_options options = o;
  engine::model_options model = m;
  {
    config::settings s;
    bind_runtime_settings(s, options, model);
    if (file != nullptr) DSRT_TRY(s.load_file(*file));
    for (const std::string& assignment : overrides) DSRT_TRY(s.set(assignment));
  }
  DSRT_TRY(validate_bound(options));
  o = std::move(options);
  m = model;
  return ok_status();
}

}  // namespace dsrt::actors
