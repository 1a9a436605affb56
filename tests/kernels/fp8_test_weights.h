#pragma once
// Block-scaled fp8 test weights for the fp8 tests: random e4m3 bytes (no NaNs), random
// power-of-two-ish scales, the same weights converted to bf16 offline, and their exact
// values from the e4m3 definition.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "kernels/dtype.h"

namespace dsrt::kernels::test_util {

// The e4m3fn value of a byte from its definition; NaN for 0x7f / 0xff.
inline double e4m3_formula(std::uint8_t b) {
  const double sign = (b & 0x80) ? -1.0 : 1.0;
  const int e = (b >> 3) & 0xf;
  const int m = b & 0x7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  if (e == 0) return sign * std::ldexp(1.0, -6) * (m / 8.0);
  return sign * std::ldexp(1.0, e - 7) * (1.0 + m / 8.0);
}

// Block-scaled fp8 weights and the same weights converted to bf16 offline.
struct fp8_weights {
  std::vector<std::uint8_t> bytes;
  std::vector<float> scales;
  std::vector<std::uint16_t> bf16;
  std::vector<double> exact;  // e4m3 value * scale
  weight_ref ref;
  weight_ref bf16_ref;
};

inline fp8_weights make_fp8_weights(std::int64_t rows, std::int64_t cols, int block_rows,
                             int block_cols, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> log_scale(-12.f, -4.f);
  fp8_weights w;
  const std::int64_t scale_rows = (rows + block_rows - 1) / block_rows;
  const std::int64_t scale_cols = (cols + block_cols - 1) / block_cols;
  w.scales.resize(std::size_t(scale_rows * scale_cols));
  for (auto& s : w.scales) s = std::exp2(log_scale(gen));
  w.bytes.resize(std::size_t(rows * cols));
  w.bf16.resize(w.bytes.size());
  w.exact.resize(w.bytes.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      std::uint8_t b;
      do b = std::uint8_t(byte(gen)); while ((b & 0x7f) == 0x7f);  // no NaNs
      const float scale = w.scales[std::size_t(r / block_rows * scale_cols + c / block_cols)];
      const std::size_t i = std::size_t(r * cols + c);
      w.bytes[i] = b;
      w.bf16[i] = f32_to_bf16(f8_e4m3_to_f32(b) * scale);
      w.exact[i] = e4m3_formula(b) * scale;
    }
  }
  w.ref = weight_ref{w.bytes.data(), dtype::f8_e4m3, rows, cols, w.scales.data(), scale_cols, 0,
                     block_rows, block_cols};
  w.bf16_ref = weight_ref{w.bf16.data(), dtype::bf16, rows, cols};
  return w;
}

}  // namespace dsrt::kernels::test_util
