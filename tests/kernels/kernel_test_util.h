#pragma once
// Shared pieces of the kernel tests: random inputs, weights stored in a dtype together with
// their exact values, and a fixture that runs a test on one CPU ISA path.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"

namespace dsrt::kernels::test_util {

// count uniform values in [-scale, scale], from a fixed seed.
std::vector<float> random_floats(std::size_t count, std::uint32_t seed, float scale = 1.f);

// Weights stored in `type` (f32, f16 or bf16), plus their exact f32 values (after rounding
// to `type`).
struct test_weights {
  std::vector<std::uint8_t> bytes;
  std::vector<float> exact;
  weight_ref ref;
};
test_weights make_weights(dtype type, std::int64_t rows, std::int64_t cols, std::uint32_t seed);

// A test parametrised by CPU path name; paths this CPU lacks are skipped visibly.
class isa_test : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override;
  bool bf16_path() const { return GetParam() == "avx512bf16"; }
  std::unique_ptr<backend> backend_;
};

}  // namespace dsrt::kernels::test_util
