// Every backend operation, on every CPU path this machine has, against plain double-precision
// math (in the style of ggml's test-backend-ops). Sizes are odd on purpose: tails of the
// vector loops and of the row/token tiles must be right.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/kernel_test_util.h"

namespace dsrt::kernels {
namespace {

using namespace test_util;

// The CPU paths to test; the ones this CPU lacks are skipped visibly.
void check_paged_attention(backend& be, int heads, int kv_heads, double tolerance);

class BackendOps : public isa_test {
 protected:
  // bf16 activations (the avx512bf16 path) round x to 8 bits of mantissa before multiplying.
  double matmul_tolerance() const { return bf16_path() ? 8e-3 : 2e-6; }
};

TEST_P(BackendOps, MatmulMatchesDoubleReferenceOnOddShapes) {
  const std::int64_t shapes[][3] = {{1, 1, 1},   {1, 7, 15},   {3, 33, 100}, {5, 129, 257},
                                    {37, 20, 64}, {4, 4, 31},  {70, 9, 48},  {2, 300, 768}};
  for (dtype type : {dtype::f32, dtype::f16, dtype::bf16}) {
    for (const auto& s : shapes) {
      const std::int64_t n = s[0], rows = s[1], cols = s[2];
      auto w = make_weights(type, rows, cols, std::uint32_t(rows * 31 + cols));
      auto bias = make_weights(dtype::f32, 1, rows, 99);
      const auto x = random_floats(std::size_t(n * cols), std::uint32_t(n + cols));
      for (bool with_bias : {false, true}) {
        std::vector<float> y(std::size_t(n * rows), NAN);
        backend_->matmul(x.data(), n, w.ref, with_bias ? bias.ref : weight_ref{}, y.data());
        for (std::int64_t t = 0; t < n; ++t) {
          for (std::int64_t r = 0; r < rows; ++r) {
            double exact = with_bias ? bias.exact[r] : 0.0, magnitude = 0.0;
            for (std::int64_t k = 0; k < cols; ++k) {
              exact += double(x[t * cols + k]) * w.exact[r * cols + k];
              magnitude += std::abs(double(x[t * cols + k]) * w.exact[r * cols + k]);
            }
            ASSERT_NEAR(y[t * rows + r], exact, matmul_tolerance() * magnitude + 1e-6)
                << dtype_name(type) << " n=" << n << " rows=" << rows << " cols=" << cols
                << " at token " << t << " row " << r << " bias=" << with_bias;
          }
        }
      }
    }
  }
}

TEST_P(BackendOps, MatmulIsBatchInvariant) {
  // A token's output row must not depend on which or how many other tokens share the call.
  const std::int64_t rows = 45, cols = 131;
  auto w = make_weights(dtype::bf16, rows, cols, 5);
  const auto x = random_floats(std::size_t(11 * cols), 6);
  std::vector<float> together(std::size_t(11 * rows));
  backend_->matmul(x.data(), 11, w.ref, {}, together.data());
  for (std::int64_t t = 0; t < 11; ++t) {
    std::vector<float> alone(static_cast<std::size_t>(rows));
    backend_->matmul(x.data() + t * cols, 1, w.ref, {}, alone.data());
    for (std::int64_t r = 0; r < rows; ++r)
      ASSERT_EQ(alone[r], together[t * rows + r]) << "token " << t << " row " << r;
  }
}

TEST_P(BackendOps, GroupedMatmulEqualsSeparateCalls) {
  // Parts of odd sizes so the split across threads falls inside parts and between them.
  const std::int64_t cols = 200;
  for (std::int64_t n : {1, 5, 33}) {
    auto a = make_weights(dtype::bf16, 1001, cols, 21);
    auto b = make_weights(dtype::bf16, 37, cols, 22);
    auto c = make_weights(dtype::f16, 130, cols, 23);
    auto bias = make_weights(dtype::f32, 1, 37, 24);
    const auto x = random_floats(std::size_t(n * cols), 25);
    std::vector<float> ya(std::size_t(n * 1001)), yb(std::size_t(n * 37)), yc(std::size_t(n * 130));
    const matmul_part parts[] = {{a.ref, {}, ya.data()}, {b.ref, bias.ref, yb.data()}, {c.ref, {}, yc.data()}};
    backend_->matmul_group(x.data(), n, parts);
    for (const auto& p : parts) {
      std::vector<float> alone(std::size_t(n * p.w.rows));
      backend_->matmul(x.data(), n, p.w, p.bias, alone.data());
      for (std::size_t i = 0; i < alone.size(); ++i)
        ASSERT_EQ(alone[i], p.y[i]) << "n=" << n << " part rows " << p.w.rows << " element " << i;
    }
  }
}

TEST_P(BackendOps, RmsNormSwigluAddEmbed) {
  const std::int64_t n = 3, dim = 77;
  const auto x = random_floats(std::size_t(n * dim), 1);
  auto gamma = make_weights(dtype::bf16, 1, dim, 2);
  std::vector<float> y(x.size());
  backend_->rms_norm(x.data(), n, gamma.ref, 1e-5f, y.data());
  for (std::int64_t t = 0; t < n; ++t) {
    double ss = 0;
    for (std::int64_t i = 0; i < dim; ++i) ss += double(x[t * dim + i]) * x[t * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
    for (std::int64_t i = 0; i < dim; ++i)
      ASSERT_NEAR(y[t * dim + i], x[t * dim + i] * inv * gamma.exact[i], 1e-5) << t << "," << i;
  }

  const auto gate = random_floats(1001, 3, 8.f), up = random_floats(1001, 4);
  std::vector<float> out(1001);
  backend_->swiglu(gate.data(), up.data(), 1001, out.data());
  for (int i = 0; i < 1001; ++i) {
    const double g = gate[i];
    ASSERT_NEAR(out[i], g / (1 + std::exp(-g)) * up[i], 1e-5 * (1 + std::abs(g))) << i;
  }

  std::vector<float> sum = gate;
  backend_->add(sum.data(), up.data(), 1001);
  for (int i = 0; i < 1001; ++i) ASSERT_EQ(sum[i], gate[i] + up[i]);

  auto table = make_weights(dtype::f16, 10, 9, 8);
  const std::int32_t ids[] = {9, 0, 4};
  std::vector<float> emb(27);
  backend_->embed(table.ref, ids, emb.data());
  for (int t = 0; t < 3; ++t)
    for (int i = 0; i < 9; ++i) ASSERT_EQ(emb[t * 9 + i], table.exact[ids[t] * 9 + i]);
}

TEST_P(BackendOps, ArgmaxRowsTakesTheLowestIdOfTheLargestAndSkipsNan) {
  const float nan = NAN, inf = INFINITY;
  const std::vector<std::vector<float>> rows = {
      {1.f, 3.f, 2.f, 3.f},            // tie: the lower id
      {nan, -1.f, nan, -0.5f},         // NaN never wins
      {-inf, -inf, -inf, -inf},        // all -inf: the first
      {nan, nan, nan, nan},            // all NaN: 0
      {nan, -inf, 5.f, inf},           // +inf wins
      {0.f, -0.f, 0.f, -1.f}};         // -0 == 0: the first
  const std::int32_t expected[] = {1, 3, 0, 0, 3, 0};
  std::vector<float> x;
  for (const auto& r : rows) x.insert(x.end(), r.begin(), r.end());
  std::vector<std::int32_t> ids(rows.size(), -1);
  backend_->argmax_rows(x.data(), std::int64_t(rows.size()), 4, ids.data());
  for (std::size_t r = 0; r < rows.size(); ++r) EXPECT_EQ(ids[r], expected[r]) << "row " << r;
  // A long row: the maximum late, a tie of it later.
  std::vector<float> long_row = random_floats(100000, 3);
  long_row[77777] = 5.f;
  long_row[99999] = 5.f;
  std::int32_t id = -1;
  backend_->argmax_rows(long_row.data(), 1, std::int64_t(long_row.size()), &id);
  EXPECT_EQ(id, 77777);
}

TEST_P(BackendOps, RopeRotatesHalves) {
  const int heads = 3, head_dim = 8;
  auto x = random_floats(2 * heads * head_dim, 7);
  const auto original = x;
  rope_table table{{1.0f, 0.1f, 0.01f, 0.001f}, 1.0f};
  const std::int32_t positions[] = {0, 37};
  backend_->rope(x.data(), 2, heads, head_dim, head_dim, positions, table);
  for (int t = 0; t < 2; ++t)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < head_dim / 2; ++i) {
        const double angle = double(positions[t]) * table.inv_freq[i];
        const float* o = original.data() + (t * heads + h) * head_dim;
        const float* r = x.data() + (t * heads + h) * head_dim;
        EXPECT_NEAR(r[i], o[i] * std::cos(angle) - o[i + 4] * std::sin(angle), 1e-4);
        EXPECT_NEAR(r[i + 4], o[i + 4] * std::cos(angle) + o[i] * std::sin(angle), 1e-4);
      }
}

TEST_P(BackendOps, PagedAttentionMatchesContiguousReference) {
  // GQA groups of 3 (the usual), 9 (past the 4- and 8-head register chunks) and 1 (MHA).
  for (auto [heads, kv_heads] : {std::pair{6, 2}, {9, 1}, {4, 4}}) {
    SCOPED_TRACE("heads " + std::to_string(heads) + " kv_heads " + std::to_string(kv_heads));
    // avx512bf16 rounds queries to bf16 for the scores (keys are bf16 already): bf16 keeps 8
    // significant bits, so each query element moves by up to 2^-8 relative and each score by
    // up to 2^-8 x |q||k| x scale (~1.5 x 0.22 here), ~1.3e-3, carried into outputs of
    // values bounded by 1. Rounding errors of random signs stay far below that in practice.
    check_paged_attention(*backend_, heads, kv_heads, GetParam() == "avx512bf16" ? 2e-3 : 2e-5);
  }
}

void check_paged_attention(backend& be, const int heads, const int kv_heads, const double tolerance) {
  // Two sequences with scattered blocks: one prefilling 21 tokens from position 0, one
  // decoding 1 token at position 40 (its earlier keys are written first).
  const int head_dim = 20, block_tokens = 16, blocks = 8;
  const std::int64_t width = kv_heads * head_dim;
  std::vector<std::uint16_t> keys(std::size_t(blocks * block_tokens * width));
  std::vector<std::uint16_t> values(keys.size());
  kv_layer cache{keys.data(), values.data(), block_tokens, kv_heads, head_dim};
  const std::int32_t table_a[] = {5, 1};
  const std::int32_t table_b[] = {0, 7, 3};

  const auto k_b = random_floats(std::size_t(41 * width), 11), v_b = random_floats(k_b.size(), 12);
  attention_sequence history{0, 40, 0, table_b, 3};
  be.kv_write(cache, {&history, 1}, k_b.data(), v_b.data());

  const auto k_new = random_floats(std::size_t(22 * width), 13);
  const auto v_new = random_floats(k_new.size(), 14);
  std::vector<attention_sequence> seqs = {{0, 21, 0, table_a, 2}, {21, 1, 40, table_b, 3}};
  // Row 21 holds the decode token's key / value for position 40.
  std::vector<float> k_rows(k_new), v_rows(v_new);
  std::copy(k_b.begin() + 40 * width, k_b.begin() + 41 * width, k_rows.begin() + 21 * width);
  std::copy(v_b.begin() + 40 * width, v_b.begin() + 41 * width, v_rows.begin() + 21 * width);
  be.kv_write(cache, seqs, k_rows.data(), v_rows.data());

  const auto q = random_floats(std::size_t(22 * heads * head_dim), 15);
  std::vector<float> out(q.size());
  const float scale = 1.0f / std::sqrt(float(head_dim));
  be.paged_attention(q.data(), heads, cache, seqs, scale, out.data());

  auto rounded = [](float f) { return double(bf16_to_f32(f32_to_bf16(f))); };
  for (int s = 0; s < 2; ++s) {
    const auto& seq = seqs[s];
    const std::vector<float>& ks = s == 0 ? k_rows : k_b;
    const std::vector<float>& vs = s == 0 ? v_rows : v_b;
    for (std::int64_t i = 0; i < seq.rows; ++i) {
      const std::int64_t row = seq.row_begin + i, pos = seq.first_position + i;
      for (int h = 0; h < heads; ++h) {
        const int g = h / (heads / kv_heads);
        std::vector<double> p(std::size_t(pos + 1));
        double max = -1e300, sum = 0;
        for (std::int64_t j = 0; j <= pos; ++j) {
          double dot = 0;
          for (int d = 0; d < head_dim; ++d)
            dot += q[(row * heads + h) * head_dim + d] * rounded(ks[j * width + g * head_dim + d]);
          p[j] = dot * scale;
          max = std::max(max, p[j]);
        }
        for (auto& v : p) sum += (v = std::exp(v - max));
        for (int d = 0; d < head_dim; ++d) {
          double expected = 0;
          for (std::int64_t j = 0; j <= pos; ++j)
            expected += p[j] / sum * rounded(vs[j * width + g * head_dim + d]);
          ASSERT_NEAR(out[(row * heads + h) * head_dim + d], expected, tolerance)
              << "seq " << s << " row " << i << " head " << h << " dim " << d;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(CpuPaths, BackendOps,
                         ::testing::Values("scalar", "avx2", "avx512", "avx512bf16"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace dsrt::kernels
