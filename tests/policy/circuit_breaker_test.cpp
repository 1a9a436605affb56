#include "runtime/policy/circuit_breaker.h"

#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "runtime/random.h"

namespace dsrt::policy {
namespace {

using std::chrono::seconds;

// Virtual time, aligned to the 1 s bucket width of the default config so bucket edges fall
// on whole seconds after t0.
const clock_time t0 = clock_time{} + seconds(1000);

// Drives a default breaker to open at `at` with 20 failures; returns the breaker.
circuit_breaker opened_at(clock_time at) {
  circuit_breaker breaker{breaker_config{}};
  for (int i = 0; i < 20; ++i) breaker.record(at, *breaker.try_acquire(at), false);
  EXPECT_EQ(breaker.state(), breaker_state::open);
  return breaker;
}

TEST(CircuitBreaker, StaysClosedBelowWindowRequestsMinEvenAtAllErrors) {
  circuit_breaker breaker{breaker_config{}};
  for (int i = 0; i < 19; ++i) {
    const clock_time now = t0 + milliseconds(100 * i);
    auto ticket = breaker.try_acquire(now);
    ASSERT_TRUE(ticket.has_value()) << " at step " << i;
    EXPECT_FALSE(ticket->probe) << " at step " << i;
    breaker.record(now, *ticket, false);
    EXPECT_EQ(breaker.state(), breaker_state::closed) << " at step " << i;
    EXPECT_EQ(breaker.window_errors(now), i + 1) << " at step " << i;
  }
}

TEST(CircuitBreaker, OpensAtExactlyHalfErrorsWithTwentyRequests) {
  circuit_breaker breaker{breaker_config{}};
  // success, failure, success, ...: the 20th outcome makes 10 errors out of 20 requests.
  for (int i = 0; i < 20; ++i) {
    const clock_time now = t0 + milliseconds(10 * i);
    breaker.record(now, *breaker.try_acquire(now), i % 2 == 0);
    const auto expected = i < 19 ? breaker_state::closed : breaker_state::open;
    EXPECT_EQ(breaker.state(), expected) << " at step " << i;
  }
  EXPECT_FALSE(breaker.try_acquire(t0 + seconds(1)).has_value());
}

TEST(CircuitBreaker, StaysClosedJustBelowTheErrorRatio) {
  circuit_breaker breaker{breaker_config{}};
  // 11 successes then 10 failures: 9/20 after the 20th outcome, 10/21 after the 21st.
  for (int i = 0; i < 21; ++i) {
    breaker.record(t0, *breaker.try_acquire(t0), i < 11);
    EXPECT_EQ(breaker.state(), breaker_state::closed) << " at step " << i;
  }
  breaker.record(t0, *breaker.try_acquire(t0), false);  // 11/22
  EXPECT_EQ(breaker.state(), breaker_state::open);
}

TEST(CircuitBreaker, OldBucketsRollOutOfTheWindow) {
  circuit_breaker breaker{breaker_config{}};
  for (int i = 0; i < 19; ++i) breaker.record(t0, *breaker.try_acquire(t0), false);
  // The bucket of t0 stays in the window for 10 buckets of 1 s, then drops out whole.
  for (int i = 0; i <= 11; ++i) {
    const clock_time now = t0 + seconds(i);
    const std::int64_t expected = i < 10 ? 19 : 0;
    EXPECT_EQ(breaker.window_requests(now), expected) << " at step " << i;
    EXPECT_EQ(breaker.window_errors(now), expected) << " at step " << i;
  }
  // 11 s later these two would make 21 requests and 20 errors if the old ones still counted.
  const clock_time later = t0 + seconds(11);
  breaker.record(later, *breaker.try_acquire(later), true);
  breaker.record(later, *breaker.try_acquire(later), false);
  EXPECT_EQ(breaker.state(), breaker_state::closed);
  EXPECT_EQ(breaker.window_requests(later), 2);
  EXPECT_EQ(breaker.window_errors(later), 1);
}

TEST(CircuitBreaker, OpenRejectsUntilOpenMsThenTurnsHalfOpen) {
  circuit_breaker breaker = opened_at(t0);
  for (int i = 0; i < 50; ++i) {
    const clock_time now = t0 + milliseconds(100 * i);
    EXPECT_FALSE(breaker.try_acquire(now).has_value()) << " at step " << i;
    EXPECT_EQ(breaker.state(now), breaker_state::open) << " at step " << i;
  }
  EXPECT_EQ(breaker.state(t0 + milliseconds(4999)), breaker_state::open);
  EXPECT_EQ(breaker.state(t0 + milliseconds(5000)), breaker_state::half_open);
}

TEST(CircuitBreaker, HalfOpenLetsThroughExactlyProbesMax) {
  circuit_breaker breaker = opened_at(t0);
  const clock_time half_open_at = t0 + seconds(5);
  for (int i = 0; i < 3; ++i) {
    auto ticket = breaker.try_acquire(half_open_at);
    ASSERT_TRUE(ticket.has_value()) << " at step " << i;
    EXPECT_TRUE(ticket->probe) << " at step " << i;
  }
  // Later requests are rejected while the three probes are out, however long they take.
  for (int i = 3; i < 10; ++i) {
    EXPECT_FALSE(breaker.try_acquire(half_open_at + seconds(i)).has_value()) << " at step " << i;
    EXPECT_EQ(breaker.state(), breaker_state::half_open) << " at step " << i;
  }
}

TEST(CircuitBreaker, AllProbesSucceedClosesWithAFreshWindow) {
  circuit_breaker breaker = opened_at(t0);
  const clock_time now = t0 + seconds(5);
  std::vector<breaker_ticket> probes;
  for (int i = 0; i < 3; ++i) probes.push_back(*breaker.try_acquire(now));
  for (int i = 0; i < 3; ++i) {
    breaker.record(now, probes[std::size_t(i)], true);
    const auto expected = i < 2 ? breaker_state::half_open : breaker_state::closed;
    EXPECT_EQ(breaker.state(), expected) << " at step " << i;
  }
  // The 20 failures that opened it are 5 s old, inside the window, but no longer count.
  EXPECT_EQ(breaker.window_requests(now), 0);
  auto ticket = breaker.try_acquire(now);
  ASSERT_TRUE(ticket.has_value());
  EXPECT_FALSE(ticket->probe);
  breaker.record(now, *ticket, false);
  EXPECT_EQ(breaker.state(), breaker_state::closed);
}

TEST(CircuitBreaker, OneProbeFailureReopensAndRestartsTheTimer) {
  circuit_breaker breaker = opened_at(t0);
  const clock_time half_open_at = t0 + seconds(5);
  std::vector<breaker_ticket> probes;
  for (int i = 0; i < 3; ++i) probes.push_back(*breaker.try_acquire(half_open_at));
  breaker.record(half_open_at + milliseconds(100), probes[0], true);
  const clock_time reopened_at = half_open_at + milliseconds(200);
  breaker.record(reopened_at, probes[1], false);
  EXPECT_EQ(breaker.state(), breaker_state::open);
  // The third probe's success comes late: it was let through before the reopening.
  breaker.record(reopened_at + milliseconds(1), probes[2], true);
  for (int i = 0; i < 50; ++i) {
    const clock_time now = reopened_at + milliseconds(100 * i);
    EXPECT_EQ(breaker.state(now), breaker_state::open) << " at step " << i;
  }
  EXPECT_EQ(breaker.state(reopened_at + milliseconds(4999)), breaker_state::open);
  EXPECT_EQ(breaker.state(reopened_at + milliseconds(5000)), breaker_state::half_open);
}

TEST(CircuitBreaker, StaleTicketsAreIgnored) {
  circuit_breaker breaker{breaker_config{}};
  std::vector<breaker_ticket> sent;
  for (int i = 0; i < 30; ++i) sent.push_back(*breaker.try_acquire(t0));
  for (int i = 0; i < 20; ++i) breaker.record(t0, sent[std::size_t(i)], false);
  ASSERT_EQ(breaker.state(), breaker_state::open);
  // The other 10 come back while open and while half-open: none is taken for a probe.
  for (int i = 20; i < 25; ++i) {
    breaker.record(t0 + seconds(1), sent[std::size_t(i)], false);
    EXPECT_EQ(breaker.state(), breaker_state::open) << " at step " << i;
  }
  const clock_time half_open_at = t0 + seconds(5);
  ASSERT_EQ(breaker.state(half_open_at), breaker_state::half_open);
  for (int i = 25; i < 30; ++i) {
    breaker.record(half_open_at, sent[std::size_t(i)], i % 2 == 0);
    EXPECT_EQ(breaker.state(), breaker_state::half_open) << " at step " << i;
  }
  // All three probes are still available.
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(breaker.try_acquire(half_open_at).has_value()) << " at step " << i;
}

TEST(CircuitBreaker, TransitionsAreLegalChainedAndBounded) {
  breaker_config config;
  config.window_requests_min = 2;  // short cycles, to pass transitions_kept_max quickly
  circuit_breaker breaker{config};
  xoshiro256 random{42};
  clock_time now = t0;
  std::vector<breaker_ticket> outstanding;
  for (int step = 0; step < 20000; ++step) {
    now += milliseconds(1 + std::int64_t(random.next() % 400));
    if (auto ticket = breaker.try_acquire(now)) outstanding.push_back(*ticket);
    // Outcomes come back out of order, some after the state they were sent in.
    if (!outstanding.empty() && random.uniform() < 0.7) {
      const std::size_t pick = std::size_t(random.next() % outstanding.size());
      breaker.record(now, outstanding[pick], random.uniform() < 0.6);
      outstanding.erase(outstanding.begin() + std::ptrdiff_t(pick));
    }
    // Every ticket is recorded once: the oldest times out as a failure past 32 outstanding.
    if (outstanding.size() > 32) {
      breaker.record(now, outstanding.front(), false);
      outstanding.erase(outstanding.begin());
    }
  }
  const auto& transitions = breaker.transitions();
  ASSERT_EQ(transitions.size(), circuit_breaker::transitions_kept_max);
  for (std::size_t i = 0; i < transitions.size(); ++i) {
    const breaker_transition& t = transitions[i];
    const bool legal = (t.from == breaker_state::closed && t.to == breaker_state::open) ||
                       (t.from == breaker_state::open && t.to == breaker_state::half_open) ||
                       (t.from == breaker_state::half_open && t.to != breaker_state::half_open);
    EXPECT_TRUE(legal) << breaker_state_name(t.from) << " -> " << breaker_state_name(t.to)
                       << " at step " << i;
    if (i == 0) continue;
    EXPECT_EQ(transitions[i - 1].to, t.from) << " at step " << i;
    EXPECT_LE(transitions[i - 1].at, t.at) << " at step " << i;
  }
  EXPECT_EQ(transitions.back().to, breaker.state());
  EXPECT_GT(breaker.epoch(), circuit_breaker::transitions_kept_max);
}

TEST(CircuitBreaker, TimeNeverRunsBackwards) {
  circuit_breaker breaker = opened_at(t0 + seconds(10));
  // An earlier `now` is taken as the latest seen: it neither reopens old buckets nor
  // shortens the open period.
  EXPECT_EQ(breaker.state(t0), breaker_state::open);
  EXPECT_EQ(breaker.state(t0 + seconds(14)), breaker_state::open);
  EXPECT_EQ(breaker.window_requests(t0), 20);
  EXPECT_EQ(breaker.state(t0 + seconds(15)), breaker_state::half_open);
}

TEST(CircuitBreaker, ValidateRejectsBadConfigsNamingTheField) {
  struct bad_case {
    std::string field;
    std::function<void(breaker_config&)> spoil;
  };
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<bad_case> cases = {
      {"window_requests_min", [](breaker_config& c) { c.window_requests_min = 0; }},
      {"window_ms", [](breaker_config& c) { c.window_ms = milliseconds(0); }},
      {"window_buckets", [](breaker_config& c) { c.window_buckets = 0; }},
      {"window_buckets", [](breaker_config& c) { c.window_buckets = 1001; }},
      {"window_ms", [](breaker_config& c) { c.window_buckets = 3; }},  // 10000 / 3
      {"error_ratio_open", [](breaker_config& c) { c.error_ratio_open = 0.0; }},
      {"error_ratio_open", [](breaker_config& c) { c.error_ratio_open = 1.01; }},
      {"error_ratio_open", [](breaker_config& c) { c.error_ratio_open = nan; }},
      {"open_ms", [](breaker_config& c) { c.open_ms = milliseconds(-1); }},
      {"half_open_probes_max", [](breaker_config& c) { c.half_open_probes_max = 0; }},
  };
  EXPECT_TRUE(validate(breaker_config{}).ok());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    breaker_config config;
    cases[i].spoil(config);
    const status valid = validate(config);
    ASSERT_FALSE(valid.ok()) << " at step " << i;
    EXPECT_EQ(valid.err().code, error_code::invalid_argument) << " at step " << i;
    EXPECT_NE(valid.err().message.find(cases[i].field), std::string::npos)
        << valid.err().message << " at step " << i;
  }
  breaker_config edge;
  edge.error_ratio_open = 1.0;
  edge.window_buckets = 1;
  EXPECT_TRUE(validate(edge).ok());
}

TEST(CircuitBreaker, StateNames) {
  EXPECT_EQ(breaker_state_name(breaker_state::closed), "closed");
  EXPECT_EQ(breaker_state_name(breaker_state::open), "open");
  EXPECT_EQ(breaker_state_name(breaker_state::half_open), "half_open");
}

}  // namespace
}  // namespace dsrt::policy
