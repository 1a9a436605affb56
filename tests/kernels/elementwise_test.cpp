#include "kernels/cpu/elementwise.h"
#include "kernels/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace dsrt::kernels::cpu {
namespace {

TEST(Elementwise, FastExpIsAccurateOverItsRange) {
  // Results below FLT_MIN (x < -87.3) are subnormal and lose relative precision by nature.
  for (float x = -87.f + 0.3f; x <= 88.f; x += 0.0137f) {
    const double exact = std::exp(double(x));
    ASSERT_NEAR(fast_exp(x) / exact, 1.0, 3e-7) << "x=" << x;
  }
  EXPECT_EQ(fast_exp(-1000.f) < 1e-37f, true);
  EXPECT_EQ(fast_exp(0.f), 1.0f);
}

TEST(Elementwise, SoftmaxPiecesAndBf16Conversion) {
  std::vector<float> x = {1.f, 3.f, -2.f, 0.5f, 3.f};
  const float max = max_of(x.data(), 5);
  EXPECT_EQ(max, 3.f);
  const float sum = exp_shifted_sum(x.data(), 5, max);
  double expected = 0;
  for (float v : {1.f, 3.f, -2.f, 0.5f, 3.f}) expected += std::exp(double(v) - 3.0);
  EXPECT_NEAR(sum, expected, 1e-6);

  std::vector<float> f = {1.0f, 1.0f + 1.0f / 256, -2.5f, NAN, 1e30f};
  std::vector<std::uint16_t> b(f.size());
  to_bf16(f.data(), std::int64_t(f.size()), b.data());
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (std::isnan(f[i])) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(b[i])));
    } else {
      EXPECT_EQ(b[i], f32_to_bf16(f[i])) << i;
    }
  }
}

}  // namespace
}  // namespace dsrt::kernels::cpu
