// FP8 (e4m3fn) weights: the scalar conversions against independent formulas, the
// dequantisation paths against the scalar formula, matmul on block-scaled fp8 weights
// through bf16 tiles on every CPU path against matmul on the same weights converted to bf16
// offline (bit for bit), and the dot path against its formula and the tiles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/fp8_test_weights.h"
#include "tests/kernels/kernel_test_util.h"
#include "kernels/cpu/fp8.h"
#include "kernels/dtype.h"

namespace dsrt::kernels {
namespace {

const char* const cpu_paths[] = {"scalar", "avx2", "avx512", "avx512bf16"};

using test_util::e4m3_formula;

TEST(Fp8Conversion, EveryByteConvertsExactly) {
  for (int i = 0; i < 256; ++i) {
    const auto b = std::uint8_t(i);
    const double expected = e4m3_formula(b);
    const float got = f8_e4m3_to_f32(b);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << "byte " << i;
      EXPECT_EQ(std::signbit(got), (b & 0x80) != 0) << "byte " << i;
      continue;
    }
    EXPECT_EQ(double(got), expected) << "byte " << i;
    EXPECT_EQ(std::signbit(got), (b & 0x80) != 0) << "byte " << i;  // -0 too
    EXPECT_EQ(load_as_f32(&b, dtype::f8_e4m3, 0), got) << "byte " << i;
  }
  EXPECT_EQ(f8_e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(f8_e4m3_to_f32(0x01), 0x1p-9f);   // smallest subnormal
  EXPECT_EQ(f8_e4m3_to_f32(0x08), 0x1p-6f);   // smallest normal
}

TEST(Fp8Conversion, EveryValueRoundTrips) {
  for (int i = 0; i < 256; ++i)
    EXPECT_EQ(f32_to_f8_e4m3(f8_e4m3_to_f32(std::uint8_t(i))), i) << "byte " << i;
}

TEST(Fp8Conversion, RoundsToNearestEven) {
  // Between each pair of neighbours (codes c and c + 1, same sign): the midpoint goes to the
  // even code, anything off the midpoint to the nearer one.
  for (int sign : {0, 0x80}) {
    for (int c = 0; c < 0x7e; ++c) {
      const double lo = e4m3_formula(std::uint8_t(sign | c));
      const double hi = e4m3_formula(std::uint8_t(sign | (c + 1)));
      const float mid = float((lo + hi) / 2);
      ASSERT_EQ(double(mid), (lo + hi) / 2) << "midpoint not exact at code " << c;
      const int even = (c % 2 == 0) ? c : c + 1;
      EXPECT_EQ(f32_to_f8_e4m3(mid), sign | even) << "midpoint above code " << (sign | c);
      EXPECT_EQ(f32_to_f8_e4m3(std::nextafter(mid, float(lo))), sign | c) << "code " << (sign | c);
      EXPECT_EQ(f32_to_f8_e4m3(std::nextafter(mid, float(hi))), sign | (c + 1))
          << "code " << (sign | c);
    }
  }
  // Random values against a search over every finite value (ties to the even code).
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> exponent(-12.f, 9.5f);
  for (int i = 0; i < 20000; ++i) {
    const float f = std::exp2(exponent(gen)) * ((i & 1) ? -1.f : 1.f);
    int best = -1;
    double best_distance = INFINITY;
    for (int c = 0; c <= 0x7e; ++c) {
      const double distance = std::abs(std::abs(double(f)) - e4m3_formula(std::uint8_t(c)));
      if (distance < best_distance || (distance == best_distance && c % 2 == 0)) {
        best = c;
        best_distance = distance;
      }
    }
    const int expected = (f < 0 ? 0x80 : 0) | best;
    ASSERT_EQ(f32_to_f8_e4m3(f), expected) << "f=" << f;
  }
}

TEST(Fp8Conversion, SaturatesZeroesAndKeepsNaN) {
  for (float f : {448.f, 449.f, 463.99f, 464.f, 480.f, 1e6f, 3.4e38f})
    EXPECT_EQ(f32_to_f8_e4m3(f), 0x7e) << f;
  for (float f : {-448.f, -464.f, -1e6f, -3.4e38f}) EXPECT_EQ(f32_to_f8_e4m3(f), 0xfe) << f;
  EXPECT_EQ(f32_to_f8_e4m3(0.f), 0x00);
  EXPECT_EQ(f32_to_f8_e4m3(-0.f), 0x80);
  EXPECT_EQ(f32_to_f8_e4m3(0x1p-10f), 0x00);                          // tie with 2^-9: even
  EXPECT_EQ(f32_to_f8_e4m3(std::nextafter(0x1p-10f, 1.f)), 0x01);
  EXPECT_EQ(f32_to_f8_e4m3(-0x1p-11f), 0x80);
  EXPECT_EQ(f32_to_f8_e4m3(1e-40f), 0x00);                            // f32 subnormal
  EXPECT_EQ(f32_to_f8_e4m3(std::nextafter(0x1p-6f, 0.f)), 0x08);      // up to the first normal
  EXPECT_EQ(f32_to_f8_e4m3(NAN), 0x7f);
  EXPECT_EQ(f32_to_f8_e4m3(-NAN), 0xff);
  EXPECT_EQ(f32_to_f8_e4m3(INFINITY), 0x7f);                          // e4m3fn has no inf
  EXPECT_EQ(f32_to_f8_e4m3(-INFINITY), 0xff);
}

TEST(Fp8Conversion, SafetensorsName) {
  EXPECT_EQ(dtype_from_safetensors("F8_E4M3"), dtype::f8_e4m3);
  EXPECT_EQ(dtype_to_safetensors(dtype::f8_e4m3), "F8_E4M3");
  EXPECT_FALSE(dtype_from_safetensors("F8_E5M2").has_value());
  EXPECT_EQ(dtype_size(dtype::f8_e4m3), 1u);
}

// The dequantisation path of every CPU path this machine runs; the others are named as
// not run, never passed silently.
std::vector<std::pair<std::string, cpu::fp8_path>> supported_fp8_paths() {
  std::vector<std::pair<std::string, cpu::fp8_path>> paths;
  for (const char* isa : cpu_paths) {
    if (cpu_isa_supported(isa)) {
      paths.emplace_back(isa, cpu::fp8_path_for_isa(isa));
    } else {
      std::printf("[  SKIPPED ] fp8 path of %s: not supported on this machine\n", isa);
    }
  }
  return paths;
}

TEST(Fp8Dequantize, EveryPathMatchesTheScalarFormula) {
  // All 256 bytes in each block, under scales from ordinary to the edges the vector paths
  // leave to the portable loop (products that are subnormal or overflow, huge scales).
  const float scales[] = {1.f,      0.00123f,  -0.5f,    3.7e-5f,  0.f,       -0.f,
                          0x1p-117f, 0x1p-120f, 1e-40f,   0x1p118f, 0x1p119f,  3e38f,
                          INFINITY, -INFINITY, 1e-3f,    200.f,    7.5e-3f,   1.f / 3};
  const int block_cols_cases[] = {256, 128, 37, 16, 1};
  const std::int64_t cols = 256 + 77;  // every byte in each row, then some again
  const std::int64_t rows = std::size(scales);
  std::vector<std::uint8_t> bytes(std::size_t(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      bytes[std::size_t(r * cols + c)] = std::uint8_t((c + r * 13) % 256);
  for (int block_cols : block_cols_cases) {
    const std::int64_t scale_cols = (cols + block_cols - 1) / block_cols;
    std::vector<float> block_scales(std::size_t(rows * scale_cols));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < scale_cols; ++j)
        block_scales[std::size_t(r * scale_cols + j)] = scales[(r + j) % rows];
    weight_ref w{bytes.data(), dtype::f8_e4m3, rows, cols, block_scales.data(), scale_cols, 0, 1,
                 block_cols};
    for (const auto& [isa, path] : supported_fp8_paths()) {
      std::vector<std::uint16_t> out(bytes.size(), 0xdead);
      cpu::dequantize_f8_e4m3_rows(w, 0, rows, out.data(), path);
      for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t c = 0; c < cols; ++c) {
          const float scale = block_scales[std::size_t(r * scale_cols + c / block_cols)];
          const std::uint8_t b = bytes[std::size_t(r * cols + c)];
          const std::uint16_t expected = f32_to_bf16(f8_e4m3_to_f32(b) * scale);
          ASSERT_EQ(out[std::size_t(r * cols + c)], expected)
              << isa << " byte " << int(b) << " scale " << scale << " block_cols " << block_cols
              << " column " << c;
        }
      }
    }
  }
}

using test_util::fp8_weights;
using test_util::make_fp8_weights;
using test_util::random_floats;

// backend_ as configured by default (the dot path where it applies), tiles_ with fp8 weights
// always through bf16 tiles.
class Fp8Matmul : public test_util::isa_test {
 protected:
  void SetUp() override {
    isa_test::SetUp();
    if (IsSkipped()) return;
    tiles_ = make_cpu_backend({.threads = 2, .isa = GetParam(), .fp8_dot = false});
  }

  // Through tiles, matmul(x, w) must equal matmul(x, reference) bit for bit.
  void expect_same_as_bf16(const weight_ref& w, const weight_ref& reference, std::int64_t n,
                           const std::string& what) {
    const auto x = random_floats(std::size_t(n * w.cols), std::uint32_t(n * 7 + w.cols));
    std::vector<float> y(std::size_t(n * w.rows), NAN), expected(y.size(), NAN);
    tiles_->matmul(x.data(), n, w, {}, y.data());
    tiles_->matmul(x.data(), n, reference, {}, expected.data());
    for (std::size_t i = 0; i < y.size(); ++i)
      ASSERT_EQ(y[i], expected[i]) << what << " n=" << n << " token " << i / w.rows << " row "
                                   << i % w.rows;
  }

  std::unique_ptr<backend> tiles_;
};

TEST_P(Fp8Matmul, AdvertisesFp8Weights) {
  const auto& types = backend_->caps().weight_dtypes;
  EXPECT_NE(std::find(types.begin(), types.end(), dtype::f8_e4m3), types.end());
}

TEST_P(Fp8Matmul, EqualsBf16OfOfflineDequantisationOnOddShapes) {
  // Rows and columns that are not multiples of the blocks, the 16-row tiles or the vector
  // widths; large enough shapes run on both threads, split inside the weight.
  const std::int64_t shapes[][2] = {{1, 1}, {7, 16}, {45, 131}, {130, 300}, {257, 200}, {33, 1000}};
  const int blocks[][2] = {{128, 128}, {32, 16}, {5, 7}};
  for (const auto& shape : shapes) {
    for (const auto& block : blocks) {
      const std::int64_t rows = shape[0], cols = shape[1];
      auto w = make_fp8_weights(rows, cols, block[0], block[1], std::uint32_t(rows * 131 + cols));
      for (std::int64_t n : {1, 3, 17}) {
        expect_same_as_bf16(w.ref, w.bf16_ref, n,
                            std::to_string(rows) + "x" + std::to_string(cols) + " blocks " +
                                std::to_string(block[0]) + "x" + std::to_string(block[1]));
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_P(Fp8Matmul, RowsViewKeepsTheScalesOfItsRows) {
  // A view starting inside a scale block (scale_row0 != 0), and a view of that view.
  auto w = make_fp8_weights(300, 200, 128, 128, 11);
  for (const auto& [begin, end] : {std::pair<std::int64_t, std::int64_t>{100, 250}, {129, 300},
                                   {0, 5}, {255, 257}}) {
    const weight_ref view = rows_view(w.ref, begin, end);
    ASSERT_EQ(view.scale_row0, begin);
    const weight_ref reference = rows_view(w.bf16_ref, begin, end);
    for (std::int64_t n : {1, 3, 17}) {
      expect_same_as_bf16(view, reference, n, "view [" + std::to_string(begin) + ", " +
                                                  std::to_string(end) + ")");
      if (HasFatalFailure()) return;
    }
  }
  const weight_ref inner = rows_view(rows_view(w.ref, 100, 250), 27, 140);  // rows 127..239
  ASSERT_EQ(inner.scale_row0, 127);
  expect_same_as_bf16(inner, rows_view(w.bf16_ref, 127, 240), 5, "view of a view");
}

TEST_P(Fp8Matmul, GroupedWithOtherTypesEqualsSeparateCalls) {
  // fp8 parts next to an f16 part, with a bias, split across threads inside and between
  // parts. Through tiles (the fp8 parts alone ask for bf16 activations, which they share)
  // each part equals its offline bf16 weight alone; through the default backend (the dot
  // path where the CPU has it) each part equals the same weight alone.
  const std::int64_t cols = 200;
  auto a = make_fp8_weights(301, cols, 128, 128, 31);
  auto b = make_fp8_weights(37, cols, 32, 16, 32);
  std::vector<std::uint16_t> c_bits(std::size_t(130 * cols));
  const auto c_values = random_floats(c_bits.size(), 33);
  for (std::size_t i = 0; i < c_bits.size(); ++i) c_bits[i] = f32_to_f16(c_values[i]);
  const weight_ref c{c_bits.data(), dtype::f16, 130, cols};
  const auto bias_values = random_floats(37, 34);
  const weight_ref bias{bias_values.data(), dtype::f32, 1, 37};
  for (backend* be : {tiles_.get(), backend_.get()}) {
    const bool tiles = be == tiles_.get();
    for (std::int64_t n : {1, 5, 33}) {
      const auto x = random_floats(std::size_t(n * cols), 35);
      std::vector<float> ya(std::size_t(n * 301)), yb(std::size_t(n * 37)), yc(std::size_t(n * 130));
      const matmul_part parts[] = {
          {a.ref, {}, ya.data()}, {b.ref, bias, yb.data()}, {c, {}, yc.data()}};
      be->matmul_group(x.data(), n, parts);
      const weight_ref references[] = {tiles ? a.bf16_ref : a.ref, tiles ? b.bf16_ref : b.ref, c};
      for (int i = 0; i < 3; ++i) {
        std::vector<float> alone(std::size_t(n * parts[i].w.rows));
        be->matmul(x.data(), n, references[i], parts[i].bias, alone.data());
        for (std::size_t j = 0; j < alone.size(); ++j)
          ASSERT_EQ(alone[j], parts[i].y[j]) << (tiles ? "tiles" : "default") << " n=" << n << " part " << i
                                             << " element " << j;
      }
    }
  }
}

TEST_P(Fp8Matmul, MatchesDoubleReference) {
  // Each weight is rounded to bf16 once (relative error 2^-9); the avx512bf16 path also
  // rounds the activations to bf16.
  const double tolerance = GetParam() == "avx512bf16" ? 8e-3 : 4e-3;
  const std::int64_t n = 3, rows = 70, cols = 390;
  auto w = make_fp8_weights(rows, cols, 32, 128, 41);
  const auto x = random_floats(std::size_t(n * cols), 42);
  std::vector<float> y(std::size_t(n * rows));
  backend_->matmul(x.data(), n, w.ref, {}, y.data());
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t r = 0; r < rows; ++r) {
      double exact = 0, magnitude = 0;
      for (std::int64_t k = 0; k < cols; ++k) {
        exact += double(x[t * cols + k]) * w.exact[std::size_t(r * cols + k)];
        magnitude += std::abs(double(x[t * cols + k]) * w.exact[std::size_t(r * cols + k)]);
      }
      ASSERT_NEAR(y[t * rows + r], exact, tolerance * magnitude + 1e-6)
          << "token " << t << " row " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(CpuPaths, Fp8Matmul,
                         ::testing::Values("scalar", "avx2", "avx512", "avx512bf16"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace dsrt::kernels
