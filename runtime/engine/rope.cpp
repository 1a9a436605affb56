#include "runtime/engine/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace dsrt::engine {
namespace {

// The dimension index at which the rotation completes num_rotations turns over
// max_positions (YaRN's correction range).
double yarn_correction_dim(double num_rotations, int dim, double base, double max_positions) {
  return dim * std::log(max_positions / (num_rotations * 2 * std::numbers::pi)) /
         (2 * std::log(base));
}

}  // namespace

double yarn_get_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

kernels::rope_table make_rope_table(const model::model_config& config) {
  const int dim = config.head_dim;
  const int half = dim / 2;
  const double base = config.rope_theta;
  const auto& s = config.rope;
  kernels::rope_table table;
  table.interleaved = config.arch == model::architecture::deepseek_v3;
  table.inv_freq.resize(std::size_t(half));
  std::vector<double> inv(static_cast<std::size_t>(half));
  // Computed as transformers does: base ** (arange(0, dim, 2) / dim) in float32.
  for (int i = 0; i < half; ++i)
    inv[i] = 1.0 / double(std::pow(float(base), float(2 * i) / float(dim)));

  switch (s.type) {
    case model::rope_scaling_type::none: break;
    case model::rope_scaling_type::linear:
      for (auto& f : inv) f /= s.factor;
      break;
    case model::rope_scaling_type::llama3: {
      const double old_context = double(s.original_max_position_embeddings);
      const double low_wavelen = old_context / s.low_freq_factor;
      const double high_wavelen = old_context / s.high_freq_factor;
      for (auto& f : inv) {
        const double wavelen = 2 * std::numbers::pi / f;
        if (wavelen > low_wavelen) {
          f /= s.factor;
        } else if (wavelen >= high_wavelen) {
          const double smooth =
              (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
          f = (1 - smooth) * f / s.factor + smooth * f;
        }
      }
      break;
    }
    case model::rope_scaling_type::yarn: {
      const double max_positions = double(s.original_max_position_embeddings > 0
                                              ? s.original_max_position_embeddings
                                              : config.max_position_embeddings);
      double low = std::floor(yarn_correction_dim(s.beta_fast, dim, base, max_positions));
      double high = std::ceil(yarn_correction_dim(s.beta_slow, dim, base, max_positions));
      low = std::max(low, 0.0);
      high = std::min(high, double(dim - 1));
      if (low == high) high += 0.001;
      for (int i = 0; i < half; ++i) {
        const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
        const double extrapolation = 1.0 - ramp;
        inv[i] = inv[i] / s.factor * (1 - extrapolation) + inv[i] * extrapolation;
      }
      table.cos_sin_scale =
          s.mscale != 0.0 && s.mscale_all_dim != 0.0
              ? float(yarn_get_mscale(s.factor, s.mscale) / yarn_get_mscale(s.factor, s.mscale_all_dim))
              : float(yarn_get_mscale(s.factor, 1.0));
      break;
    }
  }
  for (int i = 0; i < half; ++i) table.inv_freq[i] = float(inv[i]);
  return table;
}

}  // namespace dsrt::engine
