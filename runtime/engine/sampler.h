#pragma once
// Token sampling: greedy, temperature, top-k, top-p, min-p, seeded per request so a
// request with a seed gives the same tokens every time, whatever else is in its batch.
// The random draw for the i-th generated token depends only on (seed, i), not on how many
// draws came before in this process: a request preempted and recomputed, or resumed on
// another replica after a crash, samples exactly the tokens it would have sampled.
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/error.h"
#include "runtime/random.h"

namespace dsrt::engine {

// Temperatures below this sample greedily: dividing logits by them would overflow.
inline constexpr float greedy_temperature_below = 1e-5f;

struct sampling_params {
  float temperature = 0.0f;   // 0 (or below greedy_temperature_below) = greedy
  int top_k = 0;              // 0 = off
  float top_p = 1.0f;         // 1 = off; keep the smallest set with this probability mass
  float min_p = 0.0f;         // 0 = off; drop tokens below min_p x the top probability
  std::uint64_t seed = 0;
};

// invalid_argument, naming the field, for values outside: temperature [0, 100],
// top_k >= 0, top_p (0, 1], min_p [0, 1].
status validate(const sampling_params& p);

// Whether params pick the largest logit (lowest id on ties) without drawing: a backend can
// then sample where the logits are (causal_lm::forward_greedy).
inline bool is_greedy(const sampling_params& p) {
  return p.temperature < greedy_temperature_below || p.top_k == 1;
}

using rng = xoshiro256;

// One per request. REQUIRES: validate(params) succeeded.
class sampler {
 public:
  explicit sampler(const sampling_params& params);
  // Picks a token from one row of logits for the generated token number `draw_index`
  // (0 for the first). Greedy ties go to the lowest id.
  std::int32_t sample(std::span<const float> logits, std::uint64_t draw_index);
  // The same for the draw after the previous call's (0 first).
  std::int32_t sample(std::span<const float> logits) { return sample(logits, next_draw_); }

 private:
  sampling_params params_;
  std::uint64_t next_draw_ = 0;
  // Reused between calls (no allocation per token once warm).
  std::vector<float> values_;                                // logits / temperature
  std::vector<std::pair<float, std::int32_t>> candidates_;  // (weight, id)
};

}  // namespace dsrt::engine
