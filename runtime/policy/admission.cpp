#include "runtime/policy/admission.h"

#include <algorithm>
#include <cmath>

namespace dsrt::policy {
namespace {

double seconds_of(clock_time::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

status validate(const admission_config& c) {
  const std::pair<const char*, std::int64_t> maxes[] = {
      {"queue_requests_max", c.queue_requests_max},
      {"queue_tokens_max", c.queue_tokens_max},
      {"tenant_queue_requests_max", c.tenant_queue_requests_max},
      {"tenant_queue_tokens_max", c.tenant_queue_tokens_max},
      {"tenants_max", c.tenants_max}};
  for (const auto& [name, value] : maxes) {
    if (value < 1)
      return make_error(error_code::invalid_argument,
                        "admission_config.{} must be at least 1, got {}", name, value);
  }
  if (c.tenant_queue_requests_max > c.queue_requests_max)
    return make_error(error_code::invalid_argument,
                      "admission_config.tenant_queue_requests_max ({}) exceeds "
                      "queue_requests_max ({})",
                      c.tenant_queue_requests_max, c.queue_requests_max);
  if (c.tenant_queue_tokens_max > c.queue_tokens_max)
    return make_error(error_code::invalid_argument,
                      "admission_config.tenant_queue_tokens_max ({}) exceeds queue_tokens_max ({})",
                      c.tenant_queue_tokens_max, c.queue_tokens_max);
  if (c.retry_after_min_ms.count() < 0)
    return make_error(error_code::invalid_argument,
                      "admission_config.retry_after_min_ms must not be negative, got {}",
                      c.retry_after_min_ms.count());
  if (c.retry_after_max_ms < c.retry_after_min_ms)
    return make_error(error_code::invalid_argument,
                      "admission_config.retry_after_max_ms ({}) is below retry_after_min_ms ({})",
                      c.retry_after_max_ms.count(), c.retry_after_min_ms.count());
  if (c.drain_sample_ms.count() <= 0)
    return make_error(error_code::invalid_argument,
                      "admission_config.drain_sample_ms must be positive, got {}",
                      c.drain_sample_ms.count());
  if (c.drain_halflife_ms.count() <= 0)
    return make_error(error_code::invalid_argument,
                      "admission_config.drain_halflife_ms must be positive, got {}",
                      c.drain_halflife_ms.count());
  return ok_status();
}

admission::admission(const admission_config& config)
    : config_(config), now_(clock_time::min()), busy_since_(clock_time::min()) {
  const status valid = validate(config);
  DSRT_ASSERT(valid.ok(), "{}", valid.err().message);
}

admission_decision admission::admit(clock_time now, std::string_view tenant,
                                    std::int64_t tokens) {
  now_ = std::max(now_, now);
  if (tokens <= 0)
    return {make_error(error_code::invalid_argument, "tokens must be positive, got {}", tokens)};
  if (tenant.empty() || tenant.size() > admission_tenant_bytes_max)
    return {make_error(error_code::invalid_argument,
                       "tenant name must be 1 to {} bytes, got {} bytes",
                       admission_tenant_bytes_max, tenant.size())};
  if (tokens > config_.queue_tokens_max || tokens > config_.tenant_queue_tokens_max)
    return {make_error(error_code::invalid_argument,
                       "request of {} tokens can never be admitted: queue_tokens_max is {}, "
                       "tenant_queue_tokens_max is {}",
                       tokens, config_.queue_tokens_max, config_.tenant_queue_tokens_max)};

  const auto found = tenants_.find(tenant);
  const tenant_usage usage = found == tenants_.end() ? tenant_usage{} : found->second;
  // The tenant's backlog drains at its share of the rate: scale its excess to all tokens.
  const double tenant_scale =
      usage.tokens > 0 ? double(queued_tokens_) / double(usage.tokens) : 1.0;

  // Comparisons are written as `x > max - used` so that no sum can overflow.
  if (usage.requests >= config_.tenant_queue_requests_max) {
    const double drain = double(usage.tokens) / double(usage.requests) * tenant_scale;
    return reject(now_, drain,
                  make_error(error_code::overloaded,
                             "tenant_queue_requests_max ({}) reached: tenant '{}' has {} "
                             "requests queued",
                             config_.tenant_queue_requests_max, tenant, usage.requests));
  }
  if (tokens > config_.tenant_queue_tokens_max - usage.tokens) {
    const double excess = double(usage.tokens + tokens - config_.tenant_queue_tokens_max);
    return reject(now_, excess * tenant_scale,
                  make_error(error_code::overloaded,
                             "tenant_queue_tokens_max ({}) would be exceeded: tenant '{}' has "
                             "{} tokens queued, request adds {}",
                             config_.tenant_queue_tokens_max, tenant, usage.tokens, tokens));
  }
  if (queued_requests_ >= config_.queue_requests_max) {
    const double drain = double(queued_tokens_) / double(queued_requests_);
    return reject(now_, drain,
                  make_error(error_code::overloaded,
                             "queue_requests_max ({}) reached: {} requests queued",
                             config_.queue_requests_max, queued_requests_));
  }
  if (tokens > config_.queue_tokens_max - queued_tokens_) {
    const double excess = double(queued_tokens_ + tokens - config_.queue_tokens_max);
    return reject(now_, excess,
                  make_error(error_code::overloaded,
                             "queue_tokens_max ({}) would be exceeded: {} tokens queued, "
                             "request adds {}",
                             config_.queue_tokens_max, queued_tokens_, tokens));
  }
  if (found == tenants_.end() && tenants_tracked() >= config_.tenants_max) {
    // Some tenant must finish all its requests; take the average tenant's backlog.
    const double drain = double(queued_tokens_) / double(tenants_.size());
    return reject(now_, drain,
                  make_error(error_code::overloaded,
                             "tenants_max ({}) reached: {} tenants have requests queued",
                             config_.tenants_max, tenants_.size()));
  }

  if (queued_requests_ == 0) busy_since_ = now_;  // idle time is not drain time
  tenant_usage& slot = found != tenants_.end() ? found->second : tenants_[std::string(tenant)];
  ++slot.requests;
  slot.tokens += tokens;
  ++queued_requests_;
  queued_tokens_ += tokens;
  return {admission_ticket{std::string(tenant), tokens}};
}

void admission::release(clock_time now, const admission_ticket& ticket) {
  now_ = std::max(now_, now);
  const auto found = tenants_.find(ticket.tenant);
  DSRT_ASSERT(found != tenants_.end(), "release of a ticket for untracked tenant '{}'",
              ticket.tenant);
  tenant_usage& usage = found->second;
  DSRT_ASSERT(ticket.tokens > 0 && usage.requests >= 1 && usage.tokens >= ticket.tokens,
              "tenant '{}' has {} requests / {} tokens queued, ticket releases {} tokens",
              ticket.tenant, usage.requests, usage.tokens, ticket.tokens);
  --usage.requests;
  usage.tokens -= ticket.tokens;
  if (usage.requests == 0) {
    DSRT_ASSERT(usage.tokens == 0, "tenant '{}' has no requests but {} tokens", ticket.tenant,
                usage.tokens);
    tenants_.erase(found);
  }
  --queued_requests_;
  queued_tokens_ -= ticket.tokens;

  sample_tokens_ += ticket.tokens;
  sample_busy_ += now_ - busy_since_;
  busy_since_ = now_;
  if (sample_busy_ >= config_.drain_sample_ms) {
    drain_rate_ = folded_rate(sample_tokens_, sample_busy_);
    sample_tokens_ = 0;
    sample_busy_ = clock_time::duration{0};
  }
}

milliseconds admission::retry_after(clock_time now, double tokens_to_drain) const {
  const std::optional<double> rate = drain_tokens_per_second(now);
  if (!rate || !(tokens_to_drain > 0.0)) return config_.retry_after_min_ms;
  // Nothing released over a long busy stretch: the backend is stalled.
  if (*rate <= 0.0) return config_.retry_after_max_ms;
  const double min_ms = double(config_.retry_after_min_ms.count());
  const double max_ms = double(config_.retry_after_max_ms.count());
  const double hint_ms = std::ceil(tokens_to_drain / *rate * 1000.0);
  return milliseconds(std::int64_t(std::clamp(hint_ms, min_ms, max_ms)));
}

std::optional<double> admission::drain_tokens_per_second(clock_time now) const {
  clock_time::duration busy = sample_busy_;
  if (queued_requests_ > 0) busy += std::max(now, now_) - busy_since_;
  return folded_rate(sample_tokens_, busy);
}

tenant_usage admission::tenant(std::string_view name) const {
  const auto found = tenants_.find(name);
  return found == tenants_.end() ? tenant_usage{} : found->second;
}

admission_decision admission::reject(clock_time now, double tokens_to_drain, error e) const {
  const milliseconds hint = retry_after(now, tokens_to_drain);
  e.message += fmt::format("; retry after {} ms", hint.count());
  return {std::move(e), hint};
}

std::optional<double> admission::folded_rate(std::int64_t tokens,
                                             clock_time::duration busy) const {
  if (busy < config_.drain_sample_ms) return drain_rate_;  // too short to say anything yet
  const double sample = double(tokens) / seconds_of(busy);
  if (!drain_rate_) return sample;
  // A sample spanning more busy time weighs more: irregular samples, one time constant.
  const double halflives = seconds_of(busy) / seconds_of(config_.drain_halflife_ms);
  const double weight = 1.0 - std::exp2(-halflives);
  return *drain_rate_ + weight * (sample - *drain_rate_);
}

}  // namespace dsrt::policy
