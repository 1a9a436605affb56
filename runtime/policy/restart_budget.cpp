#include "runtime/policy/restart_budget.h"

#include <algorithm>

namespace dsrt::policy {

status validate(const restart_config& config) {
  if (config.restarts_max < 0 || config.restarts_max > restart_restarts_max_limit)
    return make_error(error_code::invalid_argument,
                      "restart_config.restarts_max must be in [0, {}], got {}",
                      restart_restarts_max_limit, config.restarts_max);
  if (config.period_ms.count() <= 0)
    return make_error(error_code::invalid_argument,
                      "restart_config.period_ms must be positive, got {}",
                      config.period_ms.count());
  return ok_status();
}

restart_budget::restart_budget(const restart_config& config)
    : config_(config), now_(clock_time::min()) {
  const status valid = validate(config);
  DSRT_ASSERT(valid.ok(), "{}", valid.err().message);
}

restart_decision restart_budget::on_failure(clock_time now) {
  now_ = std::max(now_, now);
  if (escalated_) return restart_decision::escalate;
  while (!restarts_.empty() && !in_period(restarts_.front(), now_)) restarts_.pop_front();
  if (int(restarts_.size()) < config_.restarts_max) {
    restarts_.push_back(now_);
    return restart_decision::restart;
  }
  escalated_ = true;
  return restart_decision::escalate;
}

int restart_budget::restarts_in_period(clock_time now) const {
  now = std::max(now_, now);
  return int(std::count_if(restarts_.begin(), restarts_.end(),
                           [&](clock_time at) { return in_period(at, now); }));
}

void restart_budget::reset() {
  restarts_.clear();
  escalated_ = false;
}

bool restart_budget::in_period(clock_time restart_at, clock_time now) const {
  return now - restart_at < config_.period_ms;
}

}  // namespace dsrt::policy
