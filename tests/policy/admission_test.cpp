#include "runtime/policy/admission.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

namespace dsrt::policy {
namespace {

using std::chrono::seconds;

const clock_time t0 = clock_time{} + seconds(1000);

// Small limits, so each boundary is a few steps away.
admission_config small_config() {
  admission_config c;
  c.queue_requests_max = 8;
  c.queue_tokens_max = 1000;
  c.tenant_queue_requests_max = 4;
  c.tenant_queue_tokens_max = 400;
  c.tenants_max = 3;
  return c;
}

// Asserts an OVERLOADED rejection whose message starts with the limit's name and value.
void expect_overloaded(const admission_decision& d, const std::string& limit, int step) {
  ASSERT_FALSE(d.ticket.ok()) << limit << " at step " << step;
  EXPECT_EQ(d.ticket.err().code, error_code::overloaded) << " at step " << step;
  EXPECT_EQ(d.ticket.err().message.rfind(limit, 0), 0u)
      << d.ticket.err().message << " at step " << step;
  EXPECT_GE(d.retry_after_ms, milliseconds(50)) << " at step " << step;
  EXPECT_LE(d.retry_after_ms, milliseconds(10000)) << " at step " << step;
}

TEST(Admission, QueueRequestsMaxRejectsTheRequestThatWouldExceedIt) {
  admission policy{small_config()};
  const char* tenants[] = {"a", "a", "a", "a", "b", "b", "b", "b"};
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(policy.admit(t0, tenants[i], 1).ticket.ok()) << " at step " << i;
    EXPECT_EQ(policy.queued_requests(), i + 1) << " at step " << i;
  }
  expect_overloaded(policy.admit(t0, "c", 1), "queue_requests_max (8)", 8);
  EXPECT_EQ(policy.queued_requests(), 8);
  EXPECT_EQ(policy.tenants_tracked(), 2);  // a rejected tenant is not tracked
}

TEST(Admission, QueueTokensMaxRejectsTheRequestThatWouldExceedItAndReleaseMakesRoom) {
  admission policy{small_config()};
  std::vector<admission_ticket> tickets;
  const std::pair<const char*, std::int64_t> steps[] = {
      {"a", 400}, {"b", 400}, {"c", 199}, {"c", 1}};  // exactly 1000
  for (int i = 0; i < 4; ++i) {
    auto d = policy.admit(t0, steps[i].first, steps[i].second);
    ASSERT_TRUE(d.ticket.ok()) << d.ticket.err().message << " at step " << i;
    tickets.push_back(*d.ticket);
  }
  EXPECT_EQ(policy.queued_tokens(), 1000);
  expect_overloaded(policy.admit(t0, "c", 1), "queue_tokens_max (1000)", 4);
  policy.release(t0 + milliseconds(10), tickets[3]);
  EXPECT_EQ(policy.queued_tokens(), 999);
  EXPECT_TRUE(policy.admit(t0 + milliseconds(10), "c", 1).ticket.ok());
}

TEST(Admission, TenantQueueRequestsMaxRejectsOneTenantWhileAnotherIsAdmitted) {
  admission policy{small_config()};
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(policy.admit(t0, "a", 10).ticket.ok()) << " at step " << i;
  }
  expect_overloaded(policy.admit(t0, "a", 10), "tenant_queue_requests_max (4)", 4);
  EXPECT_TRUE(policy.admit(t0, "b", 10).ticket.ok());
  EXPECT_EQ(policy.tenant("a").requests, 4);
  EXPECT_EQ(policy.tenant("b").requests, 1);
}

TEST(Admission, TenantQueueTokensMaxRejectsOneTenantWhileAnotherIsAdmitted) {
  admission policy{small_config()};
  ASSERT_TRUE(policy.admit(t0, "a", 300).ticket.ok());
  auto last = policy.admit(t0, "a", 100);  // exactly 400
  ASSERT_TRUE(last.ticket.ok());
  expect_overloaded(policy.admit(t0, "a", 1), "tenant_queue_tokens_max (400)", 2);
  EXPECT_TRUE(policy.admit(t0, "b", 400).ticket.ok());
  policy.release(t0, *last.ticket);
  EXPECT_EQ(policy.tenant("a").tokens, 300);
  EXPECT_TRUE(policy.admit(t0, "a", 100).ticket.ok());
}

TEST(Admission, TenantsMaxBoundsTheMapAndIdleTenantsAreForgotten) {
  admission policy{small_config()};
  std::vector<admission_ticket> of_b;
  const char* tenants[] = {"a", "b", "c", "b"};
  for (int i = 0; i < 4; ++i) {
    auto d = policy.admit(t0, tenants[i], 10);
    ASSERT_TRUE(d.ticket.ok()) << " at step " << i;
    if (d.ticket->tenant == "b") of_b.push_back(*d.ticket);
  }
  EXPECT_EQ(policy.tenants_tracked(), 3);
  expect_overloaded(policy.admit(t0, "d", 10), "tenants_max (3)", 4);
  EXPECT_TRUE(policy.admit(t0, "a", 10).ticket.ok());  // a tracked tenant is still admitted
  for (std::size_t i = 0; i < of_b.size(); ++i) {
    policy.release(t0, of_b[i]);
    EXPECT_EQ(policy.tenants_tracked(), i + 1 < of_b.size() ? 3 : 2) << " at step " << i;
  }
  EXPECT_EQ(policy.tenant("b").requests, 0);
  EXPECT_TRUE(policy.admit(t0, "d", 10).ticket.ok());
  EXPECT_EQ(policy.tenants_tracked(), 3);
}

TEST(Admission, RequestsThatCanNeverFitAreInvalidArgument) {
  admission policy{small_config()};
  const std::string too_long(admission_tenant_bytes_max + 1, 't');
  const std::pair<std::string, std::int64_t> cases[] = {
      {"a", 401},  // over tenant_queue_tokens_max on its own
      {"a", 0}, {"a", -5}, {"", 10}, {too_long, 10}};
  for (int i = 0; i < 5; ++i) {
    auto d = policy.admit(t0, cases[i].first, cases[i].second);
    ASSERT_FALSE(d.ticket.ok()) << " at step " << i;
    EXPECT_EQ(d.ticket.err().code, error_code::invalid_argument) << " at step " << i;
    EXPECT_EQ(d.retry_after_ms, milliseconds(0)) << " at step " << i;
  }
  EXPECT_EQ(policy.queued_requests(), 0);
  EXPECT_TRUE(policy.admit(t0, "a", 400).ticket.ok());
}

// Limits equal for one tenant and all by default, and a measured drain rate of 1000 tokens per
// second: 20 requests of 1000 tokens, each admitted and released 1 s later.
admission drained_at_1000_tokens_per_second(clock_time& now, std::int64_t tenant_tokens_max = 10000,
                                            std::int64_t tokens_max = 10000) {
  admission_config c;
  c.tenant_queue_tokens_max = tenant_tokens_max;
  c.queue_tokens_max = tokens_max;
  admission policy{c};
  now = t0;
  for (int i = 0; i < 20; ++i) {
    auto d = policy.admit(now, "a", 1000);
    now += seconds(1);
    policy.release(now, *d.ticket);
  }
  EXPECT_DOUBLE_EQ(*policy.drain_tokens_per_second(now), 1000.0);
  return policy;
}

TEST(Admission, RetryAfterIsTheMinimumWithoutDrainHistory) {
  admission policy{small_config()};
  EXPECT_FALSE(policy.drain_tokens_per_second(t0).has_value());
  ASSERT_TRUE(policy.admit(t0, "a", 400).ticket.ok());
  auto d = policy.admit(t0, "a", 1);
  expect_overloaded(d, "tenant_queue_tokens_max", 1);
  EXPECT_EQ(d.retry_after_ms, milliseconds(50));
}

TEST(Admission, RetryAfterGrowsWithTheBacklogAndStaysWithinBounds) {
  clock_time now;
  admission policy = drained_at_1000_tokens_per_second(now);
  // From 5000 queued tokens the backlog grows by 250 a step; a request of 5000 then exceeds
  // the 10000 limit by the backlog - 5000 tokens, which drain in that many milliseconds.
  ASSERT_TRUE(policy.admit(now, "a", 5000).ticket.ok());
  milliseconds previous{0};
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(policy.admit(now, "a", 250).ticket.ok()) << " at step " << i;
    const std::int64_t excess = policy.queued_tokens() - 5000;
    auto d = policy.admit(now, "a", 5000);
    expect_overloaded(d, "tenant_queue_tokens_max (10000)", i);
    EXPECT_EQ(d.retry_after_ms, std::clamp(milliseconds(excess), milliseconds(50),
                                           milliseconds(10000)))
        << " at step " << i;
    EXPECT_GE(d.retry_after_ms, previous) << " at step " << i;
    previous = d.retry_after_ms;
  }
  EXPECT_EQ(previous, milliseconds(5000));
  EXPECT_EQ(policy.retry_after(now, 1e9), milliseconds(10000));
  EXPECT_EQ(policy.retry_after(now, 1), milliseconds(50));
}

TEST(Admission, RetryAfterGrowsWhileNothingIsReleased) {
  clock_time now;
  admission policy = drained_at_1000_tokens_per_second(now);
  ASSERT_TRUE(policy.admit(now, "a", 10000).ticket.ok());
  // A stalled backend: the busy time with nothing released lowers the rate estimate.
  milliseconds previous{0};
  for (int i = 0; i < 30; ++i) {
    auto d = policy.admit(now + seconds(i), "a", 1000);
    expect_overloaded(d, "tenant_queue_tokens_max", i);
    EXPECT_GE(d.retry_after_ms, previous) << " at step " << i;
    previous = d.retry_after_ms;
  }
  EXPECT_EQ(previous, milliseconds(10000));
}

TEST(Admission, TenantHintAssumesItsShareOfTheDrainRate) {
  clock_time now;
  admission policy = drained_at_1000_tokens_per_second(now, 2000, 20000);
  ASSERT_TRUE(policy.admit(now, "a", 2000).ticket.ok());
  const char* others[] = {"b", "c", "d"};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(policy.admit(now, others[i], 2000).ticket.ok()) << " at step " << i;
  }
  // a holds a quarter of the 8000 queued tokens, so its 1000 excess tokens drain in 4 s.
  auto d = policy.admit(now, "a", 1000);
  expect_overloaded(d, "tenant_queue_tokens_max (2000)", 0);
  EXPECT_EQ(d.retry_after_ms, milliseconds(4000));
}

TEST(Admission, ValidateRejectsBadConfigsNamingTheField) {
  EXPECT_TRUE(validate(admission_config{}).ok());
  struct bad_case {
    const char* field;
    void (*spoil)(admission_config&);
  };
  const bad_case cases[] = {
      {"queue_requests_max", [](admission_config& c) { c.queue_requests_max = 0; }},
      {"queue_tokens_max", [](admission_config& c) { c.queue_tokens_max = -1; }},
      {"tenants_max", [](admission_config& c) { c.tenants_max = 0; }},
      {"tenant_queue_requests_max", [](admission_config& c) { c.queue_requests_max = 255; }},
      {"tenant_queue_tokens_max", [](admission_config& c) { c.tenant_queue_tokens_max = 1 << 21; }},
      {"retry_after_min_ms", [](admission_config& c) { c.retry_after_min_ms = milliseconds(-1); }},
      {"retry_after_max_ms", [](admission_config& c) { c.retry_after_max_ms = milliseconds(10); }},
      {"drain_sample_ms", [](admission_config& c) { c.drain_sample_ms = milliseconds(0); }},
      {"drain_halflife_ms", [](admission_config& c) { c.drain_halflife_ms = milliseconds(0); }},
  };
  for (int i = 0; i < int(std::size(cases)); ++i) {
    admission_config config;
    cases[i].spoil(config);
    const status valid = validate(config);
    ASSERT_FALSE(valid.ok()) << " at step " << i;
    EXPECT_EQ(valid.err().code, error_code::invalid_argument) << " at step " << i;
    EXPECT_NE(valid.err().message.find(cases[i].field), std::string::npos)
        << valid.err().message << " at step " << i;
  }
}

}  // namespace
}  // namespace dsrt::policy
