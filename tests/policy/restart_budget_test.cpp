#include "runtime/policy/restart_budget.h"

#include <gtest/gtest.h>

#include <string>

namespace dsrt::policy {
namespace {

using std::chrono::hours;
using std::chrono::seconds;

const clock_time t0 = clock_time{} + seconds(1000);

TEST(RestartBudget, ThreeRestartsThenTheFourthWithinThePeriodEscalates) {
  restart_budget budget{restart_config{}};
  for (int i = 0; i < 3; ++i) {
    const clock_time now = t0 + seconds(i);
    EXPECT_EQ(budget.on_failure(now), restart_decision::restart) << " at step " << i;
    EXPECT_EQ(budget.restarts_in_period(now), i + 1) << " at step " << i;
  }
  EXPECT_EQ(budget.on_failure(t0 + milliseconds(9999)), restart_decision::escalate);
  EXPECT_TRUE(budget.escalated());
}

TEST(RestartBudget, FailuresSpacedBeyondThePeriodRestartForever) {
  restart_budget budget{restart_config{}};
  for (int i = 0; i < 100; ++i) {
    const clock_time now = t0 + milliseconds(10001) * i;
    EXPECT_EQ(budget.on_failure(now), restart_decision::restart) << " at step " << i;
    EXPECT_EQ(budget.restarts_in_period(now), 1) << " at step " << i;
  }
}

TEST(RestartBudget, BurstsOfRestartsMaxPerPeriodRestartForever) {
  restart_budget budget{restart_config{}};
  for (int i = 0; i < 100; ++i) {
    // Three failures 1 ms apart, then quiet until the first has left the period.
    const clock_time burst = t0 + milliseconds(10000) * i;
    for (int k = 0; k < 3; ++k) {
      EXPECT_EQ(budget.on_failure(burst + milliseconds(k)), restart_decision::restart)
          << " at step " << i << "." << k;
    }
  }
}

TEST(RestartBudget, ARestartExactlyPeriodMsAgoNoLongerCounts) {
  restart_budget budget{restart_config{}};
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(budget.on_failure(t0 + seconds(i)), restart_decision::restart) << " at step " << i;
  }
  EXPECT_EQ(budget.restarts_in_period(t0 + milliseconds(9999)), 3);
  EXPECT_EQ(budget.restarts_in_period(t0 + milliseconds(10000)), 2);
  EXPECT_EQ(budget.on_failure(t0 + milliseconds(10000)), restart_decision::restart);
  EXPECT_EQ(budget.restarts_in_period(t0 + milliseconds(10000)), 3);

  // One restart per period, a crash exactly every period: restarted every time.
  restart_budget one{restart_config{1, milliseconds(10000)}};
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(one.on_failure(t0 + milliseconds(10000) * i), restart_decision::restart)
        << " at step " << i;
  }
  EXPECT_EQ(one.on_failure(t0 + milliseconds(10000) * 99 + milliseconds(9999)),
            restart_decision::escalate);
}

TEST(RestartBudget, EscalateIsStickyUntilReset) {
  restart_budget budget{restart_config{}};
  for (int i = 0; i < 4; ++i) (void)budget.on_failure(t0);
  ASSERT_TRUE(budget.escalated());
  // Long after the period the supervisor has still given up.
  for (int i = 1; i <= 10; ++i) {
    EXPECT_EQ(budget.on_failure(t0 + hours(i)), restart_decision::escalate) << " at step " << i;
  }
  budget.reset();
  EXPECT_FALSE(budget.escalated());
  EXPECT_EQ(budget.restarts_in_period(t0 + hours(11)), 0);
  EXPECT_EQ(budget.on_failure(t0 + hours(11)), restart_decision::restart);
}

TEST(RestartBudget, ZeroRestartsMaxEscalatesTheFirstFailure) {
  restart_budget budget{restart_config{0, milliseconds(10000)}};
  EXPECT_EQ(budget.on_failure(t0), restart_decision::escalate);
}

TEST(RestartBudget, TimeNeverRunsBackwards) {
  restart_budget budget{restart_config{}};
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(budget.on_failure(t0 + seconds(20)), restart_decision::restart) << " at step " << i;
  }
  // An earlier `now` is taken as t0 + 20 s: the three restarts still count.
  EXPECT_EQ(budget.restarts_in_period(t0), 3);
  EXPECT_EQ(budget.on_failure(t0), restart_decision::escalate);
}

TEST(RestartBudget, ValidateRejectsBadConfigsNamingTheField) {
  EXPECT_TRUE(validate(restart_config{}).ok());
  EXPECT_TRUE(validate(restart_config{0, milliseconds(1)}).ok());
  const restart_config bad[] = {{-1, milliseconds(10000)},
                                {restart_restarts_max_limit + 1, milliseconds(10000)},
                                {3, milliseconds(0)}};
  const std::string fields[] = {"restarts_max", "restarts_max", "period_ms"};
  for (int i = 0; i < 3; ++i) {
    const status valid = validate(bad[i]);
    ASSERT_FALSE(valid.ok()) << " at step " << i;
    EXPECT_EQ(valid.err().code, error_code::invalid_argument) << " at step " << i;
    EXPECT_NE(valid.err().message.find(fields[i]), std::string::npos)
        << valid.err().message << " at step " << i;
  }
}

}  // namespace
}  // namespace dsrt::policy
