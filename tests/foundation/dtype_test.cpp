#include "kernels/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace dsrt {
namespace {

TEST(Dtype, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly half-way between two bf16 values: ties go to the even one.
  EXPECT_EQ(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-2.5f)), -2.5f);
}

TEST(Dtype, F16RoundTripsEveryFiniteValue) {
  int checked = 0;
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const std::uint16_t bits = std::uint16_t(h);
    if ((bits & 0x7c00) == 0x7c00) continue;  // inf / NaN
    const float f = f16_to_f32(bits);
    ASSERT_EQ(f32_to_f16(f), bits) << "half bits " << h << " value " << f;
    ++checked;
  }
  EXPECT_EQ(checked, 63488);
}

TEST(Dtype, F16KnownValues) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);                // rounds to infinity
  EXPECT_EQ(f32_to_f16(1e-9f), 0x0000);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25) * 1.5f), 0x0001);
}

TEST(Dtype, SafetensorsNames) {
  EXPECT_EQ(dtype_from_safetensors("BF16"), dtype::bf16);
  EXPECT_EQ(dtype_from_safetensors("F16"), dtype::f16);
  EXPECT_EQ(dtype_from_safetensors("F32"), dtype::f32);
  EXPECT_FALSE(dtype_from_safetensors("I64").has_value());
  EXPECT_EQ(dtype_to_safetensors(dtype::bf16), "BF16");
}

}  // namespace
}  // namespace dsrt
