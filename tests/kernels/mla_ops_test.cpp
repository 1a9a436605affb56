// The backend operations MLA (DeepSeek's multi-head latent attention) needs, on every CPU path
// this machine has, against plain double-precision math: strided / interleaved RoPE, per-head
// matmuls over strided heads, row gather / scatter-add, and attention over the latent cache.
// Buffers around and between the values an operation may touch are filled with NaN or a
// sentinel, so a read or write outside the contract shows up in the results.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/kernel_test_util.h"

namespace dsrt::kernels {
namespace {

constexpr float nan_f32 = std::numeric_limits<float>::quiet_NaN();
constexpr std::uint16_t nan_bf16 = 0x7fc0;
// Written into places an operation must leave alone; any change of its bits is a failure.
constexpr float untouched = -777.25f;

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

using namespace test_util;

double rounded_bf16(float f) { return double(bf16_to_f32(f32_to_bf16(f))); }

class MlaOps : public isa_test {
 protected:
  // As in backend_ops_test.cpp: relative to sum |x_k w_k|. Only bf16 weights take the bf16
  // activation path on avx512bf16 (rounding x to 8 bits of precision, 2^-8 relative).
  double matmul_tolerance(dtype type) const {
    return bf16_path() && type == dtype::bf16 ? 8e-3 : 2e-6;
  }
};

// ---------------------------------------------------------------------------------------
// rope

TEST_P(MlaOps, RopeRotatesOnlyTheFirstHeadDimOfStridedHeads) {
  // DeepSeek's MLA rotates the last rope_dim values of each q head (interleaved pairs) with a
  // YaRN cos/sin factor; Llama-style heads rotate halves. Both with and without a stride.
  const int heads = 3, head_dim = 10;
  const int half = head_dim / 2;
  const std::int32_t positions[] = {0, 1, 37, 100};
  const std::int64_t n = 4;
  rope_table table;
  for (int i = 0; i < half; ++i) table.inv_freq.push_back(std::pow(10000.0f, -2.0f * i / head_dim));
  table.cos_sin_scale = 0.75f;
  for (bool interleaved : {false, true}) {
    for (std::int64_t head_stride : {std::int64_t(head_dim), std::int64_t(head_dim + 7)}) {
      SCOPED_TRACE("interleaved " + std::to_string(interleaved) + " head_stride " +
                   std::to_string(head_stride));
      table.interleaved = interleaved;
      auto x = random_floats(std::size_t(n * heads * head_stride), 41);
      const auto original = x;
      backend_->rope(x.data(), n, heads, head_dim, head_stride, positions, table);
      for (std::int64_t t = 0; t < n; ++t) {
        for (int h = 0; h < heads; ++h) {
          const float* o = original.data() + (t * heads + h) * head_stride;
          const float* r = x.data() + (t * heads + h) * head_stride;
          for (int i = 0; i < half; ++i) {
            const int a = interleaved ? 2 * i : i;
            const int b = interleaved ? 2 * i + 1 : i + half;
            const double angle = double(positions[t]) * double(table.inv_freq[i]);
            const double c = std::cos(angle) * table.cos_sin_scale;
            const double s = std::sin(angle) * table.cos_sin_scale;
            // The kernel forms the angle in f32: ~4e-6 off at position 100.
            ASSERT_NEAR(r[a], o[a] * c - o[b] * s, 2e-5)
                << "token " << t << " head " << h << " pair " << i;
            ASSERT_NEAR(r[b], o[b] * c + o[a] * s, 2e-5)
                << "token " << t << " head " << h << " pair " << i;
          }
          for (std::int64_t d = head_dim; d < head_stride; ++d)
            ASSERT_TRUE(same_bits(r[d], o[d]))
                << "value " << d << " past head_dim changed: token " << t << " head " << h;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// matmul_heads

TEST_P(MlaOps, MatmulHeadsMatchesDoubleReferenceAndPerHeadMatmul) {
  // out x cols per head: small odd, and large enough that n = 17 splits across threads.
  const std::int64_t shapes[][2] = {{5, 37}, {36, 70}};
  for (dtype type : {dtype::f32, dtype::bf16, dtype::f16}) {
    for (const auto& shape : shapes) {
      for (int heads : {1, 3, 16}) {
        for (std::int64_t n : {1, 3, 17}) {
          const std::int64_t out = shape[0], cols = shape[1];
          // As MLA reads q_nope out of q [n, heads, nope + rope]: x heads wider than w.cols.
          const std::int64_t x_stride = cols + 9, y_stride = out + 3;
          SCOPED_TRACE(std::string(dtype_name(type)) + " out " + std::to_string(out) + " cols " +
                       std::to_string(cols) + " heads " + std::to_string(heads) + " n " +
                       std::to_string(n));
          auto w = make_weights(type, heads * out, cols, std::uint32_t(heads * 100 + cols));
          // The gap of each x head is NaN: reading it would poison the outputs.
          std::vector<float> x(std::size_t(n * heads * x_stride), nan_f32);
          const auto values = random_floats(std::size_t(n * heads * cols), std::uint32_t(n + 7));
          for (std::int64_t t = 0; t < n; ++t)
            for (int h = 0; h < heads; ++h)
              std::copy_n(values.begin() + (t * heads + h) * cols, cols,
                          x.begin() + (t * heads + h) * x_stride);
          std::vector<float> y(std::size_t(n * heads * y_stride), untouched);
          for (std::int64_t t = 0; t < n; ++t)
            for (int h = 0; h < heads; ++h)
              std::fill_n(y.begin() + (t * heads + h) * y_stride, out, nan_f32);
          backend_->matmul_heads(x.data(), n, heads, x_stride, w.ref, y.data(), y_stride);

          for (int h = 0; h < heads; ++h) {
            // The same product through matmul on a contiguous copy of the head: bit-equal.
            std::vector<float> xh(std::size_t(n * cols)), yh(std::size_t(n * out));
            for (std::int64_t t = 0; t < n; ++t)
              std::copy_n(x.begin() + (t * heads + h) * x_stride, cols, xh.begin() + t * cols);
            backend_->matmul(xh.data(), n, rows_view(w.ref, h * out, (h + 1) * out), {}, yh.data());
            for (std::int64_t t = 0; t < n; ++t) {
              const float* yt = y.data() + (t * heads + h) * y_stride;
              for (std::int64_t r = 0; r < out; ++r) {
                double exact = 0, magnitude = 0;
                for (std::int64_t k = 0; k < cols; ++k) {
                  const double p = double(xh[t * cols + k]) * w.exact[(h * out + r) * cols + k];
                  exact += p;
                  magnitude += std::abs(p);
                }
                ASSERT_NEAR(yt[r], exact, matmul_tolerance(type) * magnitude + 1e-6)
                    << "token " << t << " head " << h << " row " << r;
                ASSERT_TRUE(same_bits(yt[r], yh[t * out + r]))
                    << "differs from matmul: token " << t << " head " << h << " row " << r
                    << ": " << yt[r] << " vs " << yh[t * out + r];
              }
              for (std::int64_t r = out; r < y_stride; ++r)
                ASSERT_TRUE(same_bits(yt[r], untouched))
                    << "gap of y written: token " << t << " head " << h << " offset " << r;
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// rows_view

TEST_P(MlaOps, MatmulOfRowsViewEqualsRowsOfFullProduct) {
  // Views starting inside and at the edges of the 4- and 8-row tiles and of the thread split;
  // n = 70 crosses the 64-token block and runs on both threads.
  const std::int64_t rows = 45, cols = 131;
  const std::int64_t views[][2] = {{0, 45}, {3, 17}, {5, 6}, {8, 40}, {44, 45}, {1, 45}};
  for (dtype type : {dtype::bf16, dtype::f16, dtype::f32}) {
    auto w = make_weights(type, rows, cols, 77);
    for (std::int64_t n : {1, 3, 17, 70}) {
      const auto x = random_floats(std::size_t(n * cols), std::uint32_t(78 + n));
      std::vector<float> full(std::size_t(n * rows));
      backend_->matmul(x.data(), n, w.ref, {}, full.data());
      for (const auto& v : views) {
        const std::int64_t begin = v[0], end = v[1], count = end - begin;
        const weight_ref view = rows_view(w.ref, begin, end);
        ASSERT_EQ(view.rows, count);
        ASSERT_EQ(view.cols, cols);
        std::vector<float> part(std::size_t(n * count), nan_f32);
        backend_->matmul(x.data(), n, view, {}, part.data());
        for (std::int64_t t = 0; t < n; ++t)
          for (std::int64_t r = 0; r < count; ++r)
            ASSERT_TRUE(same_bits(part[t * count + r], full[t * rows + begin + r]))
                << dtype_name(type) << " n=" << n << " view [" << begin << ", " << end
                << ") token " << t << " row " << r << ": " << part[t * count + r] << " vs "
                << full[t * rows + begin + r];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// gather_rows / scatter_add_rows

TEST_P(MlaOps, GatherRowsCopiesExactly) {
  const std::int64_t dim = 13, src_rows = 10;
  const auto src = random_floats(std::size_t(src_rows * dim), 51);
  const std::int32_t rows[] = {9, 0, 4, 4, 7};
  const std::int64_t count = 5;
  // One spare row after the destination: it must stay untouched.
  std::vector<float> dst(std::size_t((count + 1) * dim), untouched);
  backend_->gather_rows(src.data(), dim, rows, dst.data());
  for (std::int64_t i = 0; i < count; ++i)
    for (std::int64_t d = 0; d < dim; ++d)
      ASSERT_TRUE(same_bits(dst[i * dim + d], src[rows[i] * dim + d])) << "row " << i << " dim " << d;
  for (std::int64_t d = 0; d < dim; ++d)
    ASSERT_TRUE(same_bits(dst[count * dim + d], untouched)) << "written past the last row, dim " << d;
}

TEST_P(MlaOps, ScatterAddRowsAccumulatesInOrder) {
  // Weights are powers of two, so weight * src is exact in f32 and the result is the same
  // whether the compiler fuses x + w * y into an FMA or not: only the order of the additions
  // decides it, and the reference adds in order of i.
  const std::int64_t dim = 19, dst_rows = 6;
  const std::int32_t rows[] = {2, 5, 2, 0, 2, 5};
  const float weights[] = {0.5f, -2.0f, 1.0f, 0.25f, -1.0f, 4.0f};
  const std::int64_t count = 6;
  auto src = random_floats(std::size_t(count * dim), 52);
  auto dst = random_floats(std::size_t(dst_rows * dim), 53);
  // Dimension 0 of row 2 receives 2^27, 1, -2^27 (with weights 0.5, 1, -1 from 2^28, 1,
  // 2^27) onto 0: in order, 1 is lost against 2^27 and the result is 0; summing the two
  // large terms first would give 1.
  dst[2 * dim] = 0.f;
  src[0 * dim] = 0x1p28f;
  src[2 * dim] = 1.f;
  src[4 * dim] = 0x1p27f;
  const auto before = dst;
  backend_->scatter_add_rows(dst.data(), dim, rows, weights, src.data());

  std::vector<float> expected = before;
  for (std::int64_t i = 0; i < count; ++i)
    for (std::int64_t d = 0; d < dim; ++d) {
      volatile float product = weights[i] * src[i * dim + d];  // exact; kept unfused
      expected[rows[i] * dim + d] = expected[rows[i] * dim + d] + product;
    }
  ASSERT_EQ(expected[2 * dim], 0.f);
  for (std::int64_t r = 0; r < dst_rows; ++r)
    for (std::int64_t d = 0; d < dim; ++d)
      ASSERT_TRUE(same_bits(dst[r * dim + d], expected[r * dim + d]))
          << "row " << r << " dim " << d << ": " << dst[r * dim + d] << " vs "
          << expected[r * dim + d];
  // Rows nobody scatters to keep their bits.
  for (std::int64_t r : {1, 3, 4})
    for (std::int64_t d = 0; d < dim; ++d)
      ASSERT_TRUE(same_bits(dst[r * dim + d], before[r * dim + d])) << "row " << r;
}

// ---------------------------------------------------------------------------------------
// latent_kv_write / latent_attention

struct latent_case {
  int heads;
  int latent_dim;
  int rope_dim;
};

// One sequence's tokens by position (f32, before the cache rounds them to bf16).
struct latent_history {
  std::vector<float> latent;  // [positions, latent_dim]
  std::vector<float> rope;    // [positions, rope_dim]
};

// Double-precision MLA for one query row and head over positions [0, pos]:
// s_j = scale * (q_latent . latent_j + q_rope . rope_j) with the cache's bf16 values (and
// bf16 queries when round_queries), out = softmax(s) . latent. Also returns through
// score_error_bound the largest 2^-8 * scale * sum |q_d k_d| over j: how far rounding the
// queries to bf16 can move a score.
std::vector<double> latent_reference(const latent_case& c, const float* q_latent,
                                     const float* q_rope, const latent_history& seq,
                                     std::int64_t pos, double scale, bool round_queries,
                                     double* score_error_bound) {
  auto query = [&](float f) { return round_queries ? rounded_bf16(f) : double(f); };
  std::vector<double> p(std::size_t(pos + 1));
  double max = -1e300, bound = 0;
  for (std::int64_t j = 0; j <= pos; ++j) {
    double dot = 0, magnitude = 0;
    for (int d = 0; d < c.latent_dim; ++d) {
      const double term = query(q_latent[d]) * rounded_bf16(seq.latent[j * c.latent_dim + d]);
      dot += term;
      magnitude += std::abs(term);
    }
    for (int d = 0; d < c.rope_dim; ++d) {
      const double term = query(q_rope[d]) * rounded_bf16(seq.rope[j * c.rope_dim + d]);
      dot += term;
      magnitude += std::abs(term);
    }
    p[j] = dot * scale;
    max = std::max(max, p[j]);
    bound = std::max(bound, 0x1p-8 * scale * magnitude);
  }
  double sum = 0;
  for (auto& v : p) sum += (v = std::exp(v - max));
  std::vector<double> out(std::size_t(c.latent_dim), 0.0);
  for (std::int64_t j = 0; j <= pos; ++j)
    for (int d = 0; d < c.latent_dim; ++d)
      out[d] += p[j] / sum * rounded_bf16(seq.latent[j * c.latent_dim + d]);
  if (score_error_bound != nullptr) *score_error_bound = bound;
  return out;
}

void check_latent_attention(backend& be, const latent_case& c, bool bf16_queries) {
  // Two sequences with scattered blocks: A prefills 21 rows from position 0; B decodes one row
  // at position 40 (three blocks, the last partly filled) after its first 40 were written.
  const int block_tokens = 16, blocks = 8;
  const std::int64_t width = c.latent_dim + c.rope_dim;
  // Unwritten slots are NaN: attending to one would poison the outputs.
  std::vector<std::uint16_t> entries(std::size_t(blocks * block_tokens * width), nan_bf16);
  const latent_kv_layer cache{entries.data(), block_tokens, c.latent_dim, c.rope_dim};
  const std::int32_t table_a[] = {5, 1};
  const std::int32_t table_b[] = {0, 7, 3};
  const std::int64_t rows_a = 21, position_b = 40, rows = rows_a + 1;

  latent_history seq_a{random_floats(std::size_t(rows_a * c.latent_dim), 61),
                       random_floats(std::size_t(rows_a * c.rope_dim), 62)};
  latent_history seq_b{random_floats(std::size_t((position_b + 1) * c.latent_dim), 63),
                       random_floats(std::size_t((position_b + 1) * c.rope_dim), 64)};

  const attention_sequence history{0, position_b, 0, table_b, 3};
  be.latent_kv_write(cache, {&history, 1}, seq_b.latent.data(), seq_b.rope.data());
  // The step's rows: A's 21, then B's position 40.
  const std::vector<attention_sequence> seqs = {{0, rows_a, 0, table_a, 2},
                                                {rows_a, 1, position_b, table_b, 3}};
  std::vector<float> latent_rows(seq_a.latent), rope_rows(seq_a.rope);
  latent_rows.insert(latent_rows.end(), seq_b.latent.begin() + position_b * c.latent_dim,
                     seq_b.latent.end());
  rope_rows.insert(rope_rows.end(), seq_b.rope.begin() + position_b * c.rope_dim, seq_b.rope.end());
  be.latent_kv_write(cache, seqs, latent_rows.data(), rope_rows.data());

  // The cache holds each token's bf16 [latent | rope] at its block-table slot, nothing else.
  std::vector<bool> written(std::size_t(blocks * block_tokens), false);
  for (int s = 0; s < 2; ++s) {
    const latent_history& seq = s == 0 ? seq_a : seq_b;
    const std::int32_t* table = s == 0 ? table_a : table_b;
    const std::int64_t positions = s == 0 ? rows_a : position_b + 1;
    for (std::int64_t p = 0; p < positions; ++p) {
      const std::int64_t slot = std::int64_t(table[p / block_tokens]) * block_tokens + p % block_tokens;
      written[std::size_t(slot)] = true;
      const std::uint16_t* e = entries.data() + slot * width;
      for (int d = 0; d < c.latent_dim; ++d)
        ASSERT_EQ(e[d], f32_to_bf16(seq.latent[p * c.latent_dim + d]))
            << "seq " << s << " position " << p << " latent " << d;
      for (int d = 0; d < c.rope_dim; ++d)
        ASSERT_EQ(e[c.latent_dim + d], f32_to_bf16(seq.rope[p * c.rope_dim + d]))
            << "seq " << s << " position " << p << " rope " << d;
    }
  }
  for (std::size_t slot = 0; slot < written.size(); ++slot) {
    if (written[slot]) continue;
    for (std::int64_t d = 0; d < width; ++d)
      ASSERT_EQ(entries[slot * width + d], nan_bf16) << "stray write to slot " << slot;
  }

  // q_rope sits inside a q buffer [rows, heads, nope + rope_dim] as MLA lays it out; the
  // nope part is NaN, so reading past a head's rope_dim values shows.
  const std::int64_t nope = 7, q_stride = nope + c.rope_dim;
  const auto q_latent = random_floats(std::size_t(rows * c.heads * c.latent_dim), 65);
  std::vector<float> q(std::size_t(rows * c.heads * q_stride), nan_f32);
  const auto q_rope_values = random_floats(std::size_t(rows * c.heads * c.rope_dim), 66);
  for (std::int64_t r = 0; r < rows * c.heads; ++r)
    std::copy_n(q_rope_values.begin() + r * c.rope_dim, c.rope_dim, q.begin() + r * q_stride + nope);
  const float* q_rope = q.data() + nope;
  std::vector<float> out(std::size_t(rows * c.heads * c.latent_dim), nan_f32);
  const float scale = 1.0f / std::sqrt(float(width));
  be.latent_attention(q_latent.data(), q_rope, q_stride, c.heads, cache, seqs, scale, out.data());

  for (int s = 0; s < 2; ++s) {
    const auto& seq = seqs[std::size_t(s)];
    for (std::int64_t i = 0; i < seq.rows; ++i) {
      const std::int64_t row = seq.row_begin + i, pos = seq.first_position + i;
      for (int h = 0; h < c.heads; ++h) {
        const float* ql = q_latent.data() + (row * c.heads + h) * c.latent_dim;
        const float* qr = q_rope + (row * c.heads + h) * q_stride;
        const float* o = out.data() + (row * c.heads + h) * c.latent_dim;
        double score_error = 0;
        const auto exact = latent_reference(c, ql, qr, s == 0 ? seq_a : seq_b, pos, scale,
                                            false, &score_error);
        // Scores within e of exact change every softmax weight by a factor within
        // exp(+-2e), hence the output by at most (exp(2e) - 1) * max |latent| (<= 1).
        const double tolerance = bf16_queries ? std::expm1(2 * score_error) + 2e-5 : 2e-5;
        std::vector<double> modelled;
        if (bf16_queries)
          modelled = latent_reference(c, ql, qr, s == 0 ? seq_a : seq_b, pos, scale, true, nullptr);
        for (int d = 0; d < c.latent_dim; ++d) {
          ASSERT_NEAR(o[d], exact[d], tolerance)
              << "seq " << s << " row " << i << " head " << h << " dim " << d;
          // The bf16 path must also match the same math with the queries rounded as it
          // documents: anything else (a wrong row, slot or head) is far off that.
          if (bf16_queries) {
            ASSERT_NEAR(o[d], modelled[d], 2e-5)
                << "vs bf16 queries: seq " << s << " row " << i << " head " << h << " dim " << d;
          }
        }
      }
    }
  }
}

TEST_P(MlaOps, LatentAttentionMatchesDoubleReference) {
  // Heads 3 and 16 reach the 3- and 4-head register chunks; latent 20 / rope 6 are vector
  // tails everywhere, 64 / 16 DeepSeek-like proportions.
  for (int heads : {1, 3, 4, 16}) {
    for (auto [latent_dim, rope_dim] : {std::pair{64, 16}, {20, 6}}) {
      SCOPED_TRACE("heads " + std::to_string(heads) + " latent_dim " + std::to_string(latent_dim) +
                   " rope_dim " + std::to_string(rope_dim));
      check_latent_attention(*backend_, {heads, latent_dim, rope_dim}, bf16_path());
      if (HasFatalFailure()) return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(CpuPaths, MlaOps,
                         ::testing::Values("scalar", "avx2", "avx512", "avx512bf16"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace dsrt::kernels
