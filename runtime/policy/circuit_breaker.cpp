#include "runtime/policy/circuit_breaker.h"

#include <algorithm>
#include <limits>

#include "runtime/buggify.h"

namespace dsrt::policy {
namespace {

// Floor division: clock times before the clock's epoch must land in the bucket below, not
// share bucket 0 with the times after it.
std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

std::int64_t floor_mod(std::int64_t a, std::int64_t b) { return a - floor_div(a, b) * b; }

bool legal(breaker_state from, breaker_state to) {
  using s = breaker_state;
  return (from == s::closed && to == s::open) || (from == s::open && to == s::half_open) ||
         (from == s::half_open && to == s::closed) || (from == s::half_open && to == s::open);
}

}  // namespace

status validate(const breaker_config& config) {
  if (config.window_requests_min < 1)
    return make_error(error_code::invalid_argument,
                      "breaker_config.window_requests_min must be at least 1, got {}",
                      config.window_requests_min);
  if (config.window_ms.count() <= 0)
    return make_error(error_code::invalid_argument,
                      "breaker_config.window_ms must be positive, got {}",
                      config.window_ms.count());
  if (config.window_buckets < 1 || config.window_buckets > breaker_window_buckets_max)
    return make_error(error_code::invalid_argument,
                      "breaker_config.window_buckets must be in [1, {}], got {}",
                      breaker_window_buckets_max, config.window_buckets);
  if (config.window_ms.count() % config.window_buckets != 0)
    return make_error(error_code::invalid_argument,
                      "breaker_config.window_ms ({}) must be a whole multiple of "
                      "window_buckets ({})",
                      config.window_ms.count(), config.window_buckets);
  // Written so that NaN fails too.
  if (!(config.error_ratio_open > 0.0 && config.error_ratio_open <= 1.0))
    return make_error(error_code::invalid_argument,
                      "breaker_config.error_ratio_open must be in (0, 1], got {}",
                      config.error_ratio_open);
  if (config.open_ms.count() <= 0)
    return make_error(error_code::invalid_argument,
                      "breaker_config.open_ms must be positive, got {}", config.open_ms.count());
  if (config.half_open_probes_max < 1)
    return make_error(error_code::invalid_argument,
                      "breaker_config.half_open_probes_max must be at least 1, got {}",
                      config.half_open_probes_max);
  return ok_status();
}

std::string_view breaker_state_name(breaker_state state) {
  switch (state) {
    case breaker_state::closed: return "closed";
    case breaker_state::open: return "open";
    case breaker_state::half_open: return "half_open";
  }
  return "unknown";
}

circuit_breaker::circuit_breaker(const breaker_config& config)
    : now_(clock_time::min()), config_(config) {
  const status valid = validate(config);
  DSRT_ASSERT(valid.ok(), "{}", valid.err().message);
  buckets_.resize(std::size_t(config.window_buckets));
  clear_window();
}

std::optional<breaker_ticket> circuit_breaker::try_acquire(clock_time now) {
  switch (state(now)) {
    case breaker_state::closed: return breaker_ticket{epoch_, false};
    case breaker_state::open: return std::nullopt;
    case breaker_state::half_open:
      // Counting probes issued, not outstanding ones, bounds a half-open period to
      // half_open_probes_max requests however fast the probes come back.
      if (probes_issued_ >= config_.half_open_probes_max) return std::nullopt;
      ++probes_issued_;
      return breaker_ticket{epoch_, true};
  }
  return std::nullopt;
}

void circuit_breaker::record(clock_time now, const breaker_ticket& ticket, bool success) {
  // Simulation only: a spurious failure, so breakers open and probe more often.
  if (success && DSRT_BUGGIFY("breaker.spurious_failure")) success = false;
  DSRT_ASSERT(ticket.epoch <= epoch_, "ticket from the future: epoch={} breaker epoch={}",
              ticket.epoch, epoch_);
  now = advance(now);
  // Also covers every record() while open: no ticket is issued in an open epoch.
  if (ticket.epoch != epoch_) return;
  DSRT_ASSERT(ticket.probe == (state_ == breaker_state::half_open),
              "ticket probe={} in state {}", ticket.probe, breaker_state_name(state_));

  if (state_ == breaker_state::half_open) {
    DSRT_ASSERT(probes_succeeded_ < probes_issued_, "succeeded={} issued={}",
                probes_succeeded_, probes_issued_);
    if (!success) {
      transition(now, breaker_state::open);
    } else if (++probes_succeeded_ == config_.half_open_probes_max) {
      transition(now, breaker_state::closed);
    }
    return;
  }

  // closed
  const std::int64_t index = bucket_index(now);
  // The slot's previous occupant is window_buckets widths old, out of the window: reuse it.
  bucket& b = buckets_[std::size_t(floor_mod(index, config_.window_buckets))];
  if (b.index != index) b = bucket{index, 0, 0};
  ++b.requests;
  if (success) return;
  ++b.errors;
  const std::int64_t requests = window_sum(now, &bucket::requests);
  const std::int64_t errors = window_sum(now, &bucket::errors);
  if (requests >= config_.window_requests_min &&
      double(errors) >= config_.error_ratio_open * double(requests)) {
    transition(now, breaker_state::open);
  }
}

breaker_state circuit_breaker::state(clock_time now) {
  now = advance(now);
  if (state_ == breaker_state::open && now - opened_at_ >= config_.open_ms) {
    transition(now, breaker_state::half_open);
  }
  return state_;
}

std::int64_t circuit_breaker::window_requests(clock_time now) const {
  return window_sum(now, &bucket::requests);
}

std::int64_t circuit_breaker::window_errors(clock_time now) const {
  return window_sum(now, &bucket::errors);
}

std::int64_t circuit_breaker::window_sum(clock_time now, std::int64_t bucket::*field) const {
  const std::int64_t newest = bucket_index(std::max(now, now_));
  std::int64_t sum = 0;
  for (const bucket& b : buckets_)
    if (b.index > newest - config_.window_buckets && b.index <= newest) sum += b.*field;
  return sum;
}

clock_time circuit_breaker::advance(clock_time now) {
  now_ = std::max(now_, now);
  return now_;
}

std::int64_t circuit_breaker::bucket_index(clock_time now) const {
  const auto since_epoch = std::chrono::floor<milliseconds>(now.time_since_epoch()).count();
  return floor_div(since_epoch, config_.window_ms.count() / config_.window_buckets);
}

void circuit_breaker::transition(clock_time now, breaker_state to) {
  DSRT_ASSERT(legal(state_, to), "illegal breaker transition {} -> {}",
              breaker_state_name(state_), breaker_state_name(to));
  if (transitions_.size() == transitions_kept_max) transitions_.pop_front();
  transitions_.push_back(breaker_transition{now, state_, to});
  state_ = to;
  ++epoch_;
  probes_issued_ = 0;
  probes_succeeded_ = 0;
  if (to == breaker_state::open) opened_at_ = now;
  if (to == breaker_state::closed) clear_window();
}

void circuit_breaker::clear_window() {
  // No clock time maps to this index, so a cleared slot is never inside a window.
  for (bucket& b : buckets_) b = bucket{std::numeric_limits<std::int64_t>::min(), 0, 0};
}

}  // namespace dsrt::policy
