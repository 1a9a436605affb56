#pragma once
// circuit_breaker: whether requests may go to one replica, from the outcomes of the requests
// sent to it (Hystrix's breaker; its defaults). The router keeps one per replica and asks
// try_acquire before sending; the replica's actor reports each outcome with record().
//
// Contract: a plain object, not thread-safe, owns no clock. Every call is handed `now`. A
// `now` earlier than one already seen is taken as the latest one seen: the breaker's time
// never runs backwards, so a caller's clock skew cannot reopen an old bucket or shorten
// open_ms. REQUIRES: every half-open probe from try_acquire is handed to record() exactly
// once, a timed-out or cancelled one as a failure — a probe that is never recorded keeps
// the breaker half-open, letting nothing through. A closed-state ticket is recorded at most
// once: the router drops the tickets of requests cancelled or past their deadline (both the
// client's choice; a hung replica is the supervisor's watchdog's and heartbeats' to find).
//
// Rolling window: window_buckets buckets of window_ms / window_buckets each, aligned to
// multiples of the bucket width on the clock. The window at `now` is the bucket of `now` and
// the window_buckets - 1 before it, so an outcome counts for between window_ms - width and
// window_ms after it happened (Hystrix's rolling counter does the same).
#include <cstdint>
#include <deque>
#include <optional>
#include <string_view>
#include <vector>

#include "runtime/clock.h"
#include "runtime/error.h"

namespace dsrt::policy {

struct breaker_config {
  int window_requests_min = 20;   // requests in the window before the error ratio can open it
  milliseconds window_ms{10000};  // rolling window...
  int window_buckets = 10;        // ...of this many buckets; window_ms must divide evenly
  double error_ratio_open = 0.5;  // opens when errors / requests in the window reach this
  milliseconds open_ms{5000};     // open -> half-open after this long
  int half_open_probes_max = 3;   // requests let through while half-open (bounded)
};

// Bounds on the configuration itself: buckets are allocated up front, one per slot.
inline constexpr int breaker_window_buckets_max = 1000;

// invalid_argument naming the field when: window_requests_min < 1; window_ms <= 0;
// window_buckets outside [1, breaker_window_buckets_max]; window_ms not a whole multiple of
// window_buckets (bucket edges would drift otherwise); error_ratio_open outside (0, 1] or NaN;
// open_ms <= 0; half_open_probes_max < 1.
status validate(const breaker_config& config);

enum class breaker_state { closed, open, half_open };
std::string_view breaker_state_name(breaker_state state);

struct breaker_transition {
  clock_time at;
  breaker_state from;
  breaker_state to;
};

// Handed out by try_acquire, handed back to record. `epoch` is the breaker's epoch when the
// request was let through; `probe` is true when it was let through while half-open.
struct breaker_ticket {
  std::uint64_t epoch;
  bool probe;
};

// Invariants:
// - Only closed->open, open->half_open, half_open->closed and half_open->open happen, and
//   epoch_ is incremented on each, so a ticket's epoch names the state period it came from.
// - half-open: probes_succeeded_ <= probes_issued_ <= half_open_probes_max.
// - closed: the buckets hold only outcomes recorded in this closed period (cleared on close).
// - transitions_ holds at most transitions_kept_max entries, oldest first.
// - now_ never decreases.
class alignas(64) circuit_breaker {
 public:
  static constexpr std::size_t transitions_kept_max = 1024;

  // REQUIRES: validate(config).ok().
  explicit circuit_breaker(const breaker_config& config);

  // May a request go to this replica now? closed: yes. open: no until open_ms has passed
  // since it opened, then it turns half-open. half-open: yes while fewer than
  // half_open_probes_max probes have been let through in this half-open period.
  std::optional<breaker_ticket> try_acquire(clock_time now);

  // Outcome of a request let through with `ticket`. A ticket from an earlier epoch is
  // ignored, so late results of requests sent before the breaker opened do not count as
  // probes nor land in a fresh window. closed: counts in the window and opens when the error
  // ratio is reached. half-open: a failed probe reopens (open_ms starts again); when all
  // half_open_probes_max probes have succeeded it closes with an empty window.
  void record(clock_time now, const breaker_ticket& ticket, bool success);

  // Observes time passing (open -> half-open) without a request.
  breaker_state state(clock_time now);
  // As of the last call.
  breaker_state state() const { return state_; }
  std::uint64_t epoch() const { return epoch_; }

  // Every transition so far, oldest first; the last transitions_kept_max only.
  const std::deque<breaker_transition>& transitions() const { return transitions_; }

  // Rolling window figures for metrics: requests and errors counted in the window at `now`.
  std::int64_t window_requests(clock_time now) const;
  std::int64_t window_errors(clock_time now) const;

 private:
  struct bucket {
    std::int64_t index;  // which bucket-width slice of the clock this is
    std::int64_t requests;
    std::int64_t errors;
  };

  clock_time advance(clock_time now);
  std::int64_t bucket_index(clock_time now) const;
  std::int64_t window_sum(clock_time now, std::int64_t bucket::*field) const;
  void transition(clock_time now, breaker_state to);
  void clear_window();

  // What state(now) reads first: the router asks every replica's breaker per request, so
  // these share the object's first cache line.
  breaker_state state_ = breaker_state::closed;
  clock_time now_;             // the latest `now` seen
  clock_time opened_at_{};     // when it last opened; meaningful while open
  breaker_config config_;
  std::uint64_t epoch_ = 0;
  int probes_issued_ = 0;      // in this half-open period
  int probes_succeeded_ = 0;   // in this half-open period
  std::vector<bucket> buckets_;  // window_buckets slots, a ring keyed by index % size
  std::deque<breaker_transition> transitions_;
};

}  // namespace dsrt::policy
