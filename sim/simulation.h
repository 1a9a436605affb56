#pragma once
// A seeded, deterministic simulation of one router and R replicas (a batcher + a device
// each) under virtual time. It runs the real policies — serving::request_router (admission,
// breakers, replica choice, retry/resumption, fallback), batching::batch_scheduler
// (continuous batching, preemption, prefix reuse) and the batcher's output side
// (serving::token_streams: chunks, stream interval, finals) — and simulates only what is physical:
// device step times (device_profile), link latency, request arrivals and faults. The
// router's side and groups of nodes are simulated processes that meet over links, so a run
// can use several threads (sim_config::threads). Same seed, build and partition
// (replica_processes), same trace hash, on any number of threads.
//
// Faults (sim/faults.h) are drawn from the seed as a list: node kills, pauses longer than
// the heartbeat timeout and clock jumps; replicas whose steps fail, run slow or run out of
// memory; links clogged and unclogged in swizzled order; messages corrupted in transit
// (flipped bytes in the real wire encoding, read back by the real decoder). With `buggify`
// the production code's DSRT_BUGGIFY points fire too. sim/checker.h lists the invariants
// checked; a violation is recorded, not thrown, so the report shows all of them.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "runtime/batching/batch_scheduler.h"
#include "runtime/buggify.h"
#include "runtime/policy/restart_budget.h"
#include "runtime/serving/request_router.h"
#include "sim/device_profile.h"
#include "sim/faults.h"

namespace dsrt::sim {

struct sim_config {
  std::uint64_t seed = 1;
  std::int32_t replicas = 4;
  device_profile device = cpu_bench_125m();
  double qps = 20;                          // Poisson arrivals
  double burst_qps = 0;                     // the rate during the burst window (0: no burst)
  milliseconds burst_at_ms{0}, burst_ms{0};
  std::int32_t replicas_per_node = 1;       // a kill takes a whole node down
  milliseconds duration_ms{60000};          // arrivals stop after this; the run drains
  std::int32_t prompt_tokens_min = 16, prompt_tokens_max = 256;
  std::int32_t max_tokens_min = 8, max_tokens_max = 128;
  milliseconds deadline_ms{30000};          // per request, from its arrival
  // The share of requests that repeat the prompt and max_tokens of one of the last 256
  // (the batchers' prefix index and, on fallback, the router's response cache see hits).
  double repeat_prompt_fraction = 0;
  std::chrono::microseconds link_latency_us{100};   // > 0: the parallel run's lookahead
  std::int32_t kv_blocks = 4096;            // per replica
  int kv_block_tokens = 16;
  serving::router_config router;            // replicas and vocab are set from the above
  batching::scheduler_config scheduler;
  // Faults: the count of each kind, at times drawn from the seed within the duration. A kill,
  // a pause or a clock jump hits one node (replicas_per_node replicas).
  int kills = 1, failing_windows = 1, slow_windows = 1;
  int pauses = 0, ooms = 0, clock_jumps = 0, corruptions = 0;
  milliseconds pause_ms{1500};              // longer than detection_ms: the router gives up on it
  milliseconds clock_jump_ms{3000};         // the size of a jump; the direction is drawn
  milliseconds reconnect_ms{300};           // a link closed for a corrupt frame is back after this
  milliseconds heartbeat_interval_ms{100};  // replicas heartbeat the router over their link
  milliseconds detection_ms{500};           // no heartbeat for this long: the replica is down
  milliseconds restart_ms{2000};            // a killed replica serves again after this
  policy::restart_config restarts;          // the actor world's supervisor restarts by this budget
  // Swizzle-clogging: clog the links of a random subset of replicas one by one, every
  // swizzle_step_ms, hold them for swizzle_hold_ms, then unclog them in a random order.
  // A clogged link holds messages (both ways) and delivers them, in order, when unclogged.
  int swizzles = 0;
  milliseconds swizzle_step_ms{200}, swizzle_hold_ms{2000};
  milliseconds fault_window_ms{5000};       // how long a failing or slow window lasts
  double slow_factor = 4;                   // step time multiplier while slow
  std::uint64_t events_max = 50'000'000;    // a bound on the run (checked per window: it may pass by one window's)
  // The run as processes: the router's side and this many groups of whole nodes (at most
  // one per node, 4096 at most). They fix the trace, together with the seed; `threads` runs
  // them in parallel (a window of one link latency at a time) and changes only the wall time.
  int replica_processes = 4;
  int threads = 1;
  // threads > 1: run on one thread whenever that is measured to be faster (sim/thread_tuner.h),
  // measuring in epochs of this much wall time.
  bool adapt_threads = false;
  std::chrono::microseconds thread_epoch_us{250'000};
  // Replay and shrinking: run only these faults of the drawn schedule (indices into it).
  std::optional<std::vector<std::size_t>> faults_kept;
  bool buggify = false;                     // fire the production code's DSRT_BUGGIFY points
  // By default the points go quiet once the last scheduled fault has ended, so recovery is
  // judged with every fault stopped; true keeps them firing to the end (tests of that rule).
  bool buggify_after_faults = false;
  buggify_config buggify_probabilities;
  // After the last fault ends, every replica must be up in the router's view and no breaker
  // open within this (0: not checked, as for the naive configuration).
  milliseconds recovery_ms{15000};
};

// The router's configuration in a simulated cluster: c.router sized to its replicas and
// the simulated vocabulary, contexts unbounded.
serving::router_config router_config_of(const sim_config& config);

// The faults a configuration draws from its seed (all of them, before faults_kept).
std::vector<fault> draw_faults(const sim_config& config);
// The indices into those `drawn` faults that a run uses: faults_kept (those in range), or all.
std::vector<std::size_t> kept_fault_indices(const sim_config& config, std::size_t drawn);

struct sim_report {
  std::uint64_t trace_hash = 0;
  std::uint64_t events = 0;
  std::int64_t requests = 0, completed = 0, completed_in_deadline = 0, tokens = 0;
  std::map<std::string, std::int64_t> errors_by_code;
  std::vector<double> ttft_ms, tpot_ms;     // per completed request (with a token / two)
  double simulated_s = 0;
  std::int64_t breaker_opens = 0, kills = 0, restarts = 0, retries = 0, resumptions = 0;
  std::int64_t fallbacks = 0, response_cache_hits = 0;   // requests no replica could take / answered by the cache
  std::int64_t corrupt_detected = 0, corrupt_undetected = 0;   // flipped frames the decoder refused / let through
  std::vector<std::string> faults;          // the faults that ran, described
  std::map<std::string, std::int64_t> buggify_fired;
  std::optional<double> recovered_after_ms; // from the last fault's end to every replica up, breakers closed
  // Invariant violations, empty when all held: the router side's (end checks included),
  // then each replica process's, each in the order they were found.
  std::vector<std::string> violations;
  // Wall time of the windows' loop on all the threads and on one, and how often the tuner
  // switched (adapt_threads); without the tuner all of it counts under the threads configured.
  double parallel_wall_s = 0, single_wall_s = 0;
  int thread_switches = 0;
  double availability() const { return requests ? double(completed_in_deadline) / double(requests) : 1.0; }
};

// Test hooks that plant a bug, to show that the checker catches each kind.
struct planted_bugs {
  bool duplicate_a_chunk = false;           // the client side receives one chunk twice
  bool drop_a_final = false;                // one final never reaches its client
  bool chunk_after_final = false;           // one request's last chunk arrives again after its final
  bool wrong_token = false;                 // a resumed request restarts its draws at 0
  bool ignore_deadlines = false;            // requests reach the router without their deadlines
  bool skewed_deadlines = false;            // replicas read deadlines against their own system clock
  bool admit_past_limit = false;            // the router admits 4x queue_requests_max
  bool admit_past_token_limits = false;     // ... 4x queue_tokens_max and the tenants' limits
  bool leak_a_sequence = false;             // one finished sequence is never released
  bool leak_a_block_reference = false;      // replica 0's first step takes a KV block reference it never gives back
  bool lose_a_final_in_the_router = false;  // the router never acts on request 1's final, and request 1 has no deadline
  bool skip_half_open = false;              // a breaker goes from open straight to closed
  bool lose_a_rejoin = false;               // a restarted replica's heartbeats never reach the router
  bool rejoin_then_fall_silent = false;     // only its first heartbeat after the restart does
  bool final_with_an_extra_token = false;   // one completed final holds a token no chunk carried
  bool final_with_a_wrong_token = false;    // one completed final's last token differs from its chunk's
  bool wrong_cached_answer = false;         // the response cache answers with another prompt's tokens
};

sim_report run_simulation(const sim_config& config, const planted_bugs& bugs = {});

// A configuration without dsrt's protections, for comparison: no admission limits, circuit
// breakers that never open, no retry or resumption, fixed batches (a small sequence cap,
// whole-prompt prefill, waiting to fill a batch).
sim_config naive(sim_config c);

}  // namespace dsrt::sim
