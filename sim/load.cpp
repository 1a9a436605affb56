#include "sim/load.h"

#include <cmath>
#include <string>

#include "sim/checker.h"

namespace dsrt::sim {

using namespace std::chrono;

load_generator::load_generator(const sim_config& config) : c_(config), rng_(config.seed) {}

std::int64_t load_generator::uniform(std::int64_t lo, std::int64_t hi) {
  return lo + std::int64_t(rng_.next() % std::uint64_t(hi - lo + 1));
}

void load_generator::random_tokens(std::span<std::int32_t> out) {
  // Token ids uniform in [3, 32000), two from each 64-bit draw: a 32-bit half times the
  // range, high word (Lemire's multiply-shift; off uniform by under 1e-5). Hundreds of
  // tokens per request, all drawn on the router's side of the simulation.
  constexpr std::uint64_t lowest = 3, range = 31997;
  const auto pick = [](std::uint64_t half) { return std::int32_t(lowest + ((half & 0xffffffffu) * range >> 32)); };
  std::size_t i = 0;
  for (; i + 1 < out.size(); i += 2) {
    const std::uint64_t r = rng_.next();
    out[i] = pick(r);
    out[i + 1] = pick(r >> 32);
  }
  if (i < out.size()) out[i] = pick(rng_.next());
}

std::optional<arrival> load_generator::next() {
  if (done_ || c_.qps <= 0) return std::nullopt;
  const double end = duration<double>(c_.duration_ms).count();
  const double burst_from = duration<double>(c_.burst_at_ms).count();
  const double burst_to = burst_from + duration<double>(c_.burst_ms).count();
  // A Poisson process whose rate is burst_qps inside the burst window.
  const double rate = c_.burst_qps > 0 && t_ >= burst_from && t_ < burst_to ? c_.burst_qps : c_.qps;
  t_ += -std::log(1.0 - rng_.uniform()) / rate;
  if (t_ >= end) {
    done_ = true;
    return std::nullopt;
  }
  arrival a;
  auto& r = a.request;
  r.request_id = ++id_;
  // A repeat is drawn only when repeats are on, so runs without them draw as they did.
  if (c_.repeat_prompt_fraction > 0 && !recent_.empty() && rng_.uniform() < c_.repeat_prompt_fraction) {
    const auto& again = recent_[std::size_t(rng_.next() % recent_.size())];
    r.prompt = again.prompt;
    r.max_tokens = again.max_tokens;
  } else {
    r.prompt.resize(std::size_t(uniform(c_.prompt_tokens_min, c_.prompt_tokens_max)));
    random_tokens(r.prompt);
    r.max_tokens = std::int32_t(uniform(c_.max_tokens_min, c_.max_tokens_max));
    if (c_.repeat_prompt_fraction > 0) {
      if (recent_.size() < recent_max) recent_.push_back({r.prompt, r.max_tokens});
      else recent_[recent_next_] = {r.prompt, r.max_tokens};
      recent_next_ = (recent_next_ + 1) % recent_max;
    }
  }
  a.prompt_key = prompt_key(r.prompt);
  r.sampling.seed = a.prompt_key;
  r.priority = int(rng_.next() % 4);
  r.tenant = "tenant-" + std::to_string(rng_.next() % 8);
  a.at = clock_time{} + duration_cast<clock_time::duration>(duration<double>(t_));
  r.deadline = a.at + c_.deadline_ms;
  return a;
}

}  // namespace dsrt::sim
