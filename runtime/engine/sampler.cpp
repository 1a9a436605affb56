#include "runtime/engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace dsrt::engine {

status validate(const sampling_params& p) {
  if (!(p.temperature >= 0.0f && p.temperature <= 100.0f))
    return make_error(error_code::invalid_argument, "temperature {} is outside [0, 100]", p.temperature);
  if (p.top_k < 0) return make_error(error_code::invalid_argument, "top_k {} is negative", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    return make_error(error_code::invalid_argument, "top_p {} is outside (0, 1]", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
    return make_error(error_code::invalid_argument, "min_p {} is outside [0, 1]", p.min_p);
  return ok_status();
}

sampler::sampler(const sampling_params& params) : params_(params) {}

std::int32_t sampler::sample(std::span<const float> logits, std::uint64_t draw_index) {
  DSRT_ASSERT(!logits.empty());
  next_draw_ = draw_index + 1;
  if (is_greedy(params_)) {
    // Greedy: the max over 16 independent lanes (so it vectorizes), then the first id that
    // holds it (lowest id on ties).
    constexpr int lanes = 16;
    float lane_max[lanes];
    std::fill(lane_max, lane_max + lanes, -INFINITY);
    std::size_t i = 0;
    for (; i + lanes <= logits.size(); i += lanes)
      for (int j = 0; j < lanes; ++j) lane_max[j] = std::max(lane_max[j], logits[i + j]);
    for (; i < logits.size(); ++i) lane_max[0] = std::max(lane_max[0], logits[i]);
    const float max = *std::max_element(lane_max, lane_max + lanes);
    const auto first = std::find(logits.begin(), logits.end(), max);
    if (first != logits.end()) return std::int32_t(first - logits.begin());
    // Only NaN logits get here (NaN compares unequal to everything).
    return std::int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  auto& c = candidates_;
  c.clear();
  for (std::size_t i = 0; i < logits.size(); ++i)
    // NaN would make the ordering below invalid: it ranks with -inf (never chosen).
    c.emplace_back(std::isnan(logits[i]) ? -INFINITY : logits[i] / params_.temperature, std::int32_t(i));
  // Highest logit first; equal logits by id so the order is fully determined.
  auto higher = [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  std::size_t keep = c.size();
  if (params_.top_k > 0 && std::size_t(params_.top_k) < keep) {
    keep = std::size_t(params_.top_k);
    std::partial_sort(c.begin(), c.begin() + std::ptrdiff_t(keep), c.end(), higher);
    c.resize(keep);
  } else {
    std::sort(c.begin(), c.end(), higher);
  }
  const float max = c.front().first;
  double total = 0;
  for (auto& [value, id] : c) total += (value = std::exp(value - max));
  // min-p: relative to the top probability (exp(0) = 1 after the shift).
  if (params_.min_p > 0.0f) {
    std::size_t n = 0;
    while (n < c.size() && c[n].first >= params_.min_p) ++n;
    c.resize(std::max<std::size_t>(n, 1));
    total = 0;
    for (const auto& e : c) total += e.first;
  }
  if (params_.top_p < 1.0f) {
    double mass = 0;
    std::size_t n = 0;
    while (n < c.size()) {
      mass += c[n].first / total;
      ++n;
      if (mass >= params_.top_p) break;
    }
    c.resize(n);
    total = 0;
    for (const auto& e : c) total += e.first;
  }
  // A generator per draw keyed by (seed, draw_index): splitmix64 spreads neighbouring
  // indices apart before xoshiro256 seeds from them.
  std::uint64_t key = params_.seed ^ (draw_index * 0xd1b54a32d192ed03ull);
  rng draw(splitmix64(key));
  const double target = draw.uniform() * total;
  double acc = 0;
  for (const auto& [p, id] : c) {
    acc += p;
    if (target < acc) return id;
  }
  return c.back().second;
}

}  // namespace dsrt::engine
