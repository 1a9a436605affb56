// The fp8 dot path (kernels/cpu/fp8.h): every byte widened exactly in every column position,
// its formula on odd shapes through the backend, batch invariance, and which weights it
// takes. Skipped, visibly, on CPUs without AVX-512 BF16 and VBMI.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/fp8.h"
#include "kernels/dtype.h"
#include "tests/kernels/fp8_test_weights.h"
#include "tests/kernels/kernel_test_util.h"

namespace dsrt::kernels {
namespace {

using test_util::make_fp8_weights;
using test_util::random_floats;

class Fp8Dot : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu::fp8_dot_available())
      GTEST_SKIP() << "fp8 dot path: this CPU lacks AVX-512 BF16 or VBMI";
    backend_ = make_cpu_backend({.threads = 2, .isa = "avx512bf16", .fp8_dot = true});
  }
  std::unique_ptr<backend> backend_;
};

TEST_F(Fp8Dot, EveryByteWidensExactly) {
  // Row r holds every byte once, rotated by 61 r (NaNs replaced by zero: one NaN weight
  // makes its whole row NaN, checked below); token t is 1 at column t and 0 elsewhere, so
  // y[t, r] is the weight at (r, t) times its block's scale (powers of two: exact). Each
  // byte value thus meets 4 column positions of a chunk; the lookup's order over all 64
  // positions is pinned by the formula test below. This runs the buffered path; the direct
  // one (1-3 tokens) is held to it bit for bit further down.
  const std::int64_t rows = 4, cols = 256, n = cols;
  std::vector<std::uint8_t> bytes(std::size_t(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const auto b = std::uint8_t((c + 61 * r) % 256);
      bytes[std::size_t(r * cols + c)] = (b & 0x7f) == 0x7f ? 0 : b;
    }
  const std::vector<float> scales = {0.5f, 4.0f};  // one row of 128 x 128 blocks
  const weight_ref w{bytes.data(), dtype::f8_e4m3, rows, cols, scales.data(), 2, 0, 128, 128};
  std::vector<float> x(std::size_t(n * cols), 0.f);
  for (std::int64_t t = 0; t < n; ++t) x[std::size_t(t * cols + t)] = 1.f;
  std::vector<float> y(std::size_t(n * rows), NAN);
  cpu::matmul_f8_rows_dot(x.data(), n, w, 0, rows, y.data());
  for (std::int64_t t = 0; t < n; ++t)
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::uint8_t b = bytes[std::size_t(r * cols + t)];
      ASSERT_EQ(y[std::size_t(t * rows + r)], f8_e4m3_to_f32(b) * scales[std::size_t(t / 128)])
          << "byte " << int(b) << " at column " << t << " row " << r;
    }

  bytes[5] = 0xff;  // -NaN in row 0
  cpu::matmul_f8_rows_dot(x.data(), 1, w, 0, rows, y.data());
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_FALSE(std::isnan(y[1]));
}

TEST_F(Fp8Dot, MatchesItsFormulaOnOddShapes) {
  // Through the backend (rows split over both threads), against
  //   sum_c bf16(x[t, c] * scale(r, c)) * e4m3(w[r, c])
  // in doubles. Its f32 accumulation stays within 1e-5 of the sum of magnitudes; the bf16
  // tiles, which round each weight * scale and each x instead, are off by ~1e-3 here.
  const std::int64_t shapes[][2] = {{1, 1}, {7, 64}, {45, 131}, {130, 300}, {257, 200}, {33, 1000}};
  const int blocks[][2] = {{128, 128}, {32, 64}, {5, 192}, {32, 16}, {5, 7}};
  for (const auto& shape : shapes)
    for (const auto& block : blocks) {
      const std::int64_t rows = shape[0], cols = shape[1];
      auto w = make_fp8_weights(rows, cols, block[0], block[1], std::uint32_t(rows * 17 + cols));
      ASSERT_TRUE(cpu::fp8_dot_fits(w.ref));
      const std::int64_t scale_cols = w.ref.scale_cols;
      for (std::int64_t n : {1, 3, 17}) {
        const auto x = random_floats(std::size_t(n * cols), std::uint32_t(n + cols));
        std::vector<float> y(std::size_t(n * rows), NAN);
        backend_->matmul(x.data(), n, w.ref, {}, y.data());
        for (std::int64_t t = 0; t < n; ++t)
          for (std::int64_t r = 0; r < rows; ++r) {
            double sum = 0, magnitude = 0;
            for (std::int64_t c = 0; c < cols; ++c) {
              const float scale = w.scales[std::size_t(r / block[0] * scale_cols + c / block[1])];
              const double xs = bf16_to_f32(f32_to_bf16(x[std::size_t(t * cols + c)] * scale));
              const std::uint8_t b = w.bytes[std::size_t(r * cols + c)];
              sum += xs * f8_e4m3_to_f32(b);
              magnitude += std::abs(xs * f8_e4m3_to_f32(b));
            }
            ASSERT_NEAR(y[std::size_t(t * rows + r)], sum, 1e-5 * magnitude + 1e-30)
                << rows << "x" << cols << " blocks " << block[0] << "x" << block[1] << " n=" << n
                << " token " << t << " row " << r;
          }
      }
    }
}

TEST_F(Fp8Dot, OutputsDependNeitherOnTheBatchNorOnTheRowsAround) {
  // Tokens alone, in twos and in threes (the direct path) equal the same tokens in a batch
  // of 70 (the buffered path, two blocks of scaled tokens), bit for bit, for widths with and
  // without a partial 64-column chunk at the end; rows of a view that starts at an odd row
  // (other tiles, another thread split) equal the rows of the whole weight.
  const std::int64_t rows = 301, n = 70;
  for (std::int64_t cols : {384, 200, 45}) {
    auto w = make_fp8_weights(rows, cols, 128, 128, std::uint32_t(77 + cols));
    const auto x = random_floats(std::size_t(n * cols), std::uint32_t(78 + cols));
    std::vector<float> batch(std::size_t(n * rows));
    backend_->matmul(x.data(), n, w.ref, {}, batch.data());
    for (std::int64_t g : {1, 2, 3}) {
      for (std::int64_t t0 = 0; t0 + g <= n; t0 += g) {
        std::vector<float> few(static_cast<std::size_t>(g * rows));
        backend_->matmul(x.data() + t0 * cols, g, w.ref, {}, few.data());
        for (std::int64_t i = 0; i < g * rows; ++i)
          ASSERT_EQ(few[std::size_t(i)], batch[std::size_t(t0 * rows + i)])
              << "cols " << cols << " tokens in " << g << "s: token " << t0 + i / rows << " row " << i % rows;
      }
    }
    const std::int64_t begin = 3, end = 250;
    std::vector<float> part(std::size_t(n * (end - begin)));
    backend_->matmul(x.data(), n, rows_view(w.ref, begin, end), {}, part.data());
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t r = begin; r < end; ++r)
        ASSERT_EQ(part[std::size_t(t * (end - begin) + r - begin)], batch[std::size_t(t * rows + r)])
            << "cols " << cols << " token " << t << " row " << r;
  }
}

TEST(Fp8DotFits, TakesFp8WeightsWithScales) {
  const float scale = 1.f;
  std::uint8_t byte = 0;
  auto fp8 = [&](int block_cols) {
    return weight_ref{&byte, dtype::f8_e4m3, 1, 1, &scale, 1, 0, 128, block_cols};
  };
  EXPECT_TRUE(cpu::fp8_dot_fits(fp8(128)));
  EXPECT_TRUE(cpu::fp8_dot_fits(fp8(7)));
  EXPECT_FALSE(cpu::fp8_dot_fits(fp8(0)));
  weight_ref no_scales = fp8(128);
  no_scales.scales = nullptr;
  EXPECT_FALSE(cpu::fp8_dot_fits(no_scales));
  weight_ref bf16 = fp8(128);
  bf16.type = dtype::bf16;
  EXPECT_FALSE(cpu::fp8_dot_fits(bf16));
}

}  // namespace
}  // namespace dsrt::kernels
