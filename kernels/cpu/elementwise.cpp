#include "kernels/cpu/elementwise.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu/multi_isa.h"

namespace dsrt::kernels::cpu {
namespace {

// exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln2 / 2, exp(r) by a degree-6
// polynomial (Cephes expf coefficients). Inputs below -87.3 give 0, above 88.7 give inf.
inline float exp_poly(float x) {
  x = x < -87.33654f ? -87.33654f : x;
  x = x > 88.72283f ? 88.72283f : x;
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (std::int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// Reductions keep 16 independent partial sums so they vectorize without letting the
// compiler reassociate (which would also break exp_poly's range reduction).
constexpr int lanes = 16;

template <class F>
inline float sum_lanes(std::int64_t count, F&& term) {
  float acc[lanes] = {};
  std::int64_t i = 0;
  for (; i + lanes <= count; i += lanes)
    for (int j = 0; j < lanes; ++j) acc[j] += term(i + j);
  for (int j = 0; i + j < count; ++j) acc[j] += term(i + j);
  for (int width = lanes / 2; width > 0; width /= 2)
    for (int j = 0; j < width; ++j) acc[j] += acc[j + width];
  return acc[0];
}

}  // namespace

float fast_exp(float x) { return exp_poly(x); }

DSRT_MULTI_ISA
void silu_mul(const float* gate, const float* up, std::int64_t count, float* out) {
  for (std::int64_t i = 0; i < count; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + exp_poly(-g)) * up[i];
  }
}

DSRT_MULTI_ISA
float exp_shifted_sum(float* x, std::int64_t count, float max) {
  for (std::int64_t i = 0; i < count; ++i) x[i] = exp_poly(x[i] - max);
  return sum_lanes(count, [x](std::int64_t i) { return x[i]; });
}

DSRT_MULTI_ISA
float max_of(const float* x, std::int64_t count) {
  float m[lanes];
  for (float& v : m) v = -INFINITY;
  std::int64_t i = 0;
  for (; i + lanes <= count; i += lanes)
    for (int j = 0; j < lanes; ++j) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  for (int j = 0; i + j < count; ++j) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  float best = m[0];
  for (int j = 1; j < lanes; ++j) best = m[j] > best ? m[j] : best;
  return best;
}

DSRT_MULTI_ISA
float sum_of_squares(const float* x, std::int64_t count) {
  return sum_lanes(count, [x](std::int64_t i) { return x[i] * x[i]; });
}

DSRT_MULTI_ISA
void scale_by_gamma(const float* x, float scale, const float* gamma_f32,
                    const std::uint16_t* gamma_bf16, std::int64_t count, float* y) {
  if (gamma_bf16 != nullptr) {
    for (std::int64_t i = 0; i < count; ++i) {
      const std::uint32_t bits = std::uint32_t(gamma_bf16[i]) << 16;
      float g;
      std::memcpy(&g, &bits, sizeof g);
      y[i] = x[i] * scale * g;
    }
  } else {
    for (std::int64_t i = 0; i < count; ++i) y[i] = x[i] * scale * gamma_f32[i];
  }
}

DSRT_MULTI_ISA
void add_inplace(float* x, const float* y, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) x[i] += y[i];
}

DSRT_MULTI_ISA
void add_scaled(float* x, const float* y, float scale, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) x[i] += scale * y[i];
}

DSRT_MULTI_ISA
void scale_inplace(float* x, float scale, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) x[i] *= scale;
}

DSRT_MULTI_ISA
void to_bf16(const float* x, std::int64_t count, std::uint16_t* out) {
  for (std::int64_t i = 0; i < count; ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, &x[i], sizeof bits);
    const std::uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
    out[i] = std::uint16_t(nan ? ((bits >> 16) | 0x40u) : rounded);
  }
}

}  // namespace dsrt::kernels::cpu
