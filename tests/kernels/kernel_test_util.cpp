#include "tests/kernels/kernel_test_util.h"

#include <cstring>
#include <random>

namespace dsrt::kernels::test_util {

std::vector<float> random_floats(std::size_t count, std::uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(count);
  for (auto& x : v) x = dist(gen);
  return v;
}

test_weights make_weights(dtype type, std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
  test_weights w;
  w.exact = random_floats(std::size_t(rows * cols), seed);
  w.bytes.resize(w.exact.size() * dtype_size(type));
  for (std::size_t i = 0; i < w.exact.size(); ++i) {
    if (type == dtype::f32) {
      std::memcpy(w.bytes.data() + 4 * i, &w.exact[i], 4);
    } else {
      const std::uint16_t h = type == dtype::bf16 ? f32_to_bf16(w.exact[i]) : f32_to_f16(w.exact[i]);
      std::memcpy(w.bytes.data() + 2 * i, &h, 2);
      w.exact[i] = type == dtype::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  w.ref = weight_ref{w.bytes.data(), type, rows, cols};
  return w;
}

void isa_test::SetUp() {
  if (!cpu_isa_supported(GetParam()))
    GTEST_SKIP() << "CPU path " << GetParam() << " is not supported on this machine";
  backend_ = make_cpu_backend({.threads = 2, .isa = GetParam()});
  ASSERT_EQ(backend_->caps().detail, GetParam());
}

}  // namespace dsrt::kernels::test_util
