#pragma once
// admission: the router's admission control. A request is accepted only while every named
// limit on the accepted-but-unfinished requests still holds after adding it; otherwise it is
// answered OVERLOADED with a hint of when a retry may fit.
//
// Contract: a plain object, not thread-safe, owns no clock; every call is handed `now`. A
// `now` earlier than one already seen is taken as the latest one seen. REQUIRES: every ticket
// admit() hands out is released exactly once, whatever the request's outcome.
//
// What is counted: per request, `tokens` = prompt tokens + max_tokens, the most it can hold
// in KV memory. Limits are checked in this order and the first one hit is reported:
// tenant_queue_requests_max, tenant_queue_tokens_max, queue_requests_max, queue_tokens_max,
// tenants_max (for a tenant not yet tracked). A tenant is tracked while it has a request
// queued and forgotten when its last one is released, so tenants_max bounds the map.
//
// Retry-after: tokens to drain / drain rate, clamped to [retry_after_min_ms,
// retry_after_max_ms]. Tokens to drain: for a token limit, the excess over it; for a request
// limit, one average queued request's tokens. A tenant's backlog is assumed to drain at its
// share of the rate (its queued tokens / all queued tokens), so tenant excesses are scaled
// up by the inverse of that share. Drain rate: tokens released per second of busy time (time
// with a request queued, so idle time does not lower it), sampled over at least
// drain_sample_ms and smoothed by an exponentially weighted moving average whose weight
// halves every drain_halflife_ms of older busy time. While requests are queued and none is
// released, the sample in progress counts too, so a stalled backend's hint grows towards
// retry_after_max_ms. With no sample yet the hint is retry_after_min_ms.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "runtime/clock.h"
#include "runtime/error.h"

namespace dsrt::policy {

struct admission_config {
  std::int64_t queue_requests_max = 1024;           // accepted, not finished; all tenants
  std::int64_t queue_tokens_max = 1 << 20;          // their prompt + max_tokens; all tenants
  std::int64_t tenant_queue_requests_max = 256;     // per tenant; <= queue_requests_max
  std::int64_t tenant_queue_tokens_max = 1 << 18;   // per tenant; <= queue_tokens_max
  std::int64_t tenants_max = 4096;                  // tenants with a request queued, at once
  milliseconds retry_after_min_ms{50};
  milliseconds retry_after_max_ms{10000};
  milliseconds drain_sample_ms{100};     // busy time one drain-rate sample spans at least
  milliseconds drain_halflife_ms{2000};  // busy time after which a sample weighs half as much
};

// Tenant names are stored while tracked; longer ones are invalid_argument.
inline constexpr std::size_t admission_tenant_bytes_max = 256;

// invalid_argument naming the field when a *_max is below 1, a tenant limit exceeds its
// all-tenants limit (it could never bind), retry_after_min_ms < 0, retry_after_max_ms <
// retry_after_min_ms, or drain_sample_ms / drain_halflife_ms <= 0.
status validate(const admission_config& config);

// Proof of admission; hand it back to release().
struct admission_ticket {
  std::string tenant;
  std::int64_t tokens;  // prompt + max_tokens
};

// admit()'s answer. `ticket` holds the ticket, or the error: overloaded (a retry may fit
// after retry_after_ms) or invalid_argument (it never fits, or the input is bad; do not
// retry; retry_after_ms is 0).
struct admission_decision {
  result<admission_ticket> ticket;
  milliseconds retry_after_ms{0};
};

struct tenant_usage {
  std::int64_t requests = 0;
  std::int64_t tokens = 0;
};

// Invariants:
// - queued_requests_ / queued_tokens_ are the sums over tenants_, and every limit of the
//   config holds for them and for each tenant.
// - tenants_ holds only tenants with requests >= 1 (and so tokens >= 1), at most tenants_max.
// - busy_since_ is meaningful while queued_requests_ > 0; sample_tokens_ and sample_busy_
//   cover the busy time since the last folded sample, and sample_busy_ < drain_sample_ms.
// - now_ never decreases.
class admission {
 public:
  // REQUIRES: validate(config).ok().
  explicit admission(const admission_config& config);

  // Accepts a request of `tokens` (prompt + max_tokens) from `tenant` when every limit still
  // holds after adding it. Else overloaded, naming the limit hit and its value, with the
  // retry-after hint; invalid_argument when tokens <= 0, tokens alone exceed
  // tenant_queue_tokens_max or queue_tokens_max, or the tenant name is empty or longer than
  // admission_tenant_bytes_max.
  admission_decision admit(clock_time now, std::string_view tenant, std::int64_t tokens);

  // The request finished, whatever the outcome: its share is released and its tokens count
  // towards the drain rate (reserved tokens, since the limits count reserved tokens too).
  void release(clock_time now, const admission_ticket& ticket);

  // The hint for a rejected request that must wait for `tokens_to_drain` queued tokens (all
  // tenants) to finish, as described at the top of this file.
  milliseconds retry_after(clock_time now, double tokens_to_drain) const;

  // Smoothed tokens released per busy second at `now`; nullopt before the first sample.
  std::optional<double> drain_tokens_per_second(clock_time now) const;

  std::int64_t queued_requests() const { return queued_requests_; }
  std::int64_t queued_tokens() const { return queued_tokens_; }
  std::int64_t tenants_tracked() const { return std::int64_t(tenants_.size()); }
  // Zeros for a tenant with nothing queued.
  tenant_usage tenant(std::string_view name) const;

 private:
  admission_decision reject(clock_time now, double tokens_to_drain, error e) const;
  // The rate after folding a sample of `tokens` over `busy` into the average.
  std::optional<double> folded_rate(std::int64_t tokens, clock_time::duration busy) const;

  admission_config config_;
  std::map<std::string, tenant_usage, std::less<>> tenants_;
  std::int64_t queued_requests_ = 0;
  std::int64_t queued_tokens_ = 0;

  clock_time now_;
  clock_time busy_since_;
  std::int64_t sample_tokens_ = 0;
  clock_time::duration sample_busy_{0};
  std::optional<double> drain_rate_;  // tokens per busy second
};

}  // namespace dsrt::policy
