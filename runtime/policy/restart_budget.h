#pragma once
// restart_budget: may a supervisor restart a failed child, or has it failed too often and
// must the failure go up to the supervisor's own supervisor? Erlang/OTP's restart intensity
// and period: at most restarts_max restarts in any period_ms.
//
// Contract: a plain object, not thread-safe, owns no clock; every call is handed `now`. A
// `now` earlier than one already seen is taken as the latest one seen.
//
// The period is half-open, (now - period_ms, now]: a restart exactly period_ms ago no longer
// counts. OTP counts it (at whole-second granularity); excluding it here means a child that
// crashes exactly once every period_ms with restarts_max = 1 is restarted every time, which
// is what "one restart per period" reads as.
#include <cstdint>
#include <deque>

#include "runtime/clock.h"
#include "runtime/error.h"

namespace dsrt::policy {

struct restart_config {
  int restarts_max = 3;            // restarts allowed within any period_ms; 0: never restart
  milliseconds period_ms{10000};
};

// Bounds the remembered restart times (one entry per allowed restart).
inline constexpr int restart_restarts_max_limit = 10000;

// invalid_argument naming the field when restarts_max is outside
// [0, restart_restarts_max_limit] or period_ms <= 0.
status validate(const restart_config& config);

enum class restart_decision { restart, escalate };

// One per supervised child or group.
//
// Invariants:
// - restarts_ holds restart times, oldest first, at most restarts_max of them; those that
//   have left the period are dropped at the next failure (restarts_in_period skips them).
// - Once escalated_, on_failure answers escalate until reset(), and restarts_ no longer grows.
// - now_ never decreases.
class restart_budget {
 public:
  // REQUIRES: validate(config).ok().
  explicit restart_budget(const restart_config& config);

  // A child failed at `now`: restart when fewer than restarts_max restarts happened in the
  // period ending at `now` (the restart is then counted), else escalate. After an escalate
  // every later call escalates too — the supervisor has given up — until reset().
  restart_decision on_failure(clock_time now);

  // Restarts counted in the period ending at `now`.
  int restarts_in_period(clock_time now) const;
  bool escalated() const { return escalated_; }

  // Forgets every restart and the escalation: a fresh budget, as after the supervisor itself
  // was restarted.
  void reset();

 private:
  bool in_period(clock_time restart_at, clock_time now) const;

  restart_config config_;
  std::deque<clock_time> restarts_;
  clock_time now_;
  bool escalated_ = false;
};

}  // namespace dsrt::policy
