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
  // Linear in the vocabulary: the scaled logits and their maximum, the candidates top-k and
  // min-p leave (selected, not sorted), their weights exp(v - max); only top-p sorts, and
  // only as many of the best as its mass needs. (A full sort of a 128k vocabulary cost
  // 12 ms per token.)
  const std::size_t vocab = logits.size();
  auto& v = values_;
  v.resize(vocab);
  float max = -INFINITY;
  for (std::size_t i = 0; i < vocab; ++i) {
    // NaN ranks with -inf (never chosen).
    v[i] = std::isnan(logits[i]) ? -INFINITY : logits[i] / params_.temperature;
    max = std::max(max, v[i]);
  }
  if (max == -INFINITY) return 0;  // no finite logit: nothing to weigh, the first id
  auto& c = candidates_;
  c.clear();
  // Highest value first; equal values by id, so the order is fully determined.
  auto higher = [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  if (params_.top_k > 0 && std::size_t(params_.top_k) < vocab) {
    // The k best in one pass: a heap of the k best so far, the worst of them on top.
    const std::size_t k = std::size_t(params_.top_k);
    for (std::size_t i = 0; i < k; ++i) c.emplace_back(v[i], std::int32_t(i));
    std::make_heap(c.begin(), c.end(), higher);
    for (std::size_t i = k; i < vocab; ++i) {
      const std::pair<float, std::int32_t> e{v[i], std::int32_t(i)};
      if (!higher(e, c.front())) continue;
      std::pop_heap(c.begin(), c.end(), higher);
      c.back() = e;
      std::push_heap(c.begin(), c.end(), higher);
    }
    std::erase_if(c, [](const auto& e) { return e.first == -INFINITY; });
  } else {
    for (std::size_t i = 0; i < vocab; ++i)
      if (v[i] > -INFINITY) c.emplace_back(v[i], std::int32_t(i));
  }
  double total = 0;
  for (auto& [value, id] : c) total += (value = std::exp(value - max));
  // min-p: relative to the top probability (exp(0) = 1 after the shift), which stays.
  if (params_.min_p > 0.0f) {
    std::erase_if(c, [&](const auto& e) { return e.first < params_.min_p; });
    total = 0;
    for (const auto& e : c) total += e.first;
  }
  if (params_.top_p < 1.0f) {
    // The smallest set of the most probable with mass >= top_p: sort the best 64, then 4x
    // as many, ... until their mass reaches it (each sort keeps the prefix already walked).
    double mass = 0;
    std::size_t n = 0, sorted = 0;
    bool reached = false;
    while (!reached && n < c.size()) {
      const std::size_t want = std::min(c.size(), std::max<std::size_t>(64, sorted * 4));
      std::partial_sort(c.begin() + std::ptrdiff_t(sorted), c.begin() + std::ptrdiff_t(want), c.end(), higher);
      sorted = want;
      for (; n < sorted && !reached; ++n) {
        mass += c[n].first / total;
        reached = mass >= params_.top_p;
      }
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
