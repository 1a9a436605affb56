// AVX2 + FMA + F16C path: weights are widened to f32 in registers and multiplied with f32
// activations. Tiles of 4 weight rows x up to 2 tokens (8 accumulators of 16 ymm).
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/isa.h"

namespace dsrt::kernels::cpu {
namespace {

// Loads 8 consecutive weights as f32.
inline __m256 load8(const void* base, dtype type, std::int64_t i) {
  switch (type) {
    case dtype::f32: return _mm256_loadu_ps(static_cast<const float*>(base) + i);
    case dtype::f16:
      return _mm256_cvtph_ps(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const std::uint16_t*>(base) + i)));
    case dtype::bf16: {
      const __m128i raw =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const std::uint16_t*>(base) + i));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
    }
    case dtype::f8_e4m3: break;  // never reaches the kernels: matmul_group dequantises tiles
  }
  return _mm256_setzero_ps();
}

// Horizontal sums of four vectors: {sum(a), sum(b), sum(c), sum(d)}.
inline __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_hadd_ps(a, b);
  const __m256 cd = _mm256_hadd_ps(c, d);
  const __m256 abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// Exactly one lane of reduce4, so a row gets the same bits whether it is reduced alone
// (row tails, thread splits inside a grouped matmul) or in a group of four.
inline float reduce1(__m256 a) {
  const __m256 z = _mm256_setzero_ps();
  return _mm_cvtss_f32(reduce4(a, z, z, z));
}

// Same reason as avx512_tiles.h: tile rows are too short for the hardware prefetcher.
constexpr std::int64_t prefetch_rows_ahead = 8;

// 4 rows x C tokens.
template <int C>
void tile4(const float* x, std::int64_t k, const weight_ref& w, std::int64_t r, float* y,
           std::int64_t ldy) {
  __m256 acc[4][C];
  for (auto& row : acc)
    for (auto& a : row) a = _mm256_setzero_ps();
  const std::int64_t k8 = k & ~std::int64_t(7);
  const auto* bytes = static_cast<const char*>(w.data);
  const std::int64_t size = std::int64_t(dtype_size(w.type));
  for (std::int64_t i = 0; i < k8; i += 8) {
    if constexpr (C == 1)
      if ((i * size) % 64 == 0)
        for (int j = 0; j < 4; ++j)
          _mm_prefetch(bytes + ((r + prefetch_rows_ahead + j) * k + i) * size, _MM_HINT_T0);
    __m256 wv[4];
    for (int j = 0; j < 4; ++j) wv[j] = load8(w.data, w.type, (r + j) * k + i);
    for (int c = 0; c < C; ++c) {
      const __m256 xv = _mm256_loadu_ps(x + c * k + i);
      for (int j = 0; j < 4; ++j) acc[j][c] = _mm256_fmadd_ps(wv[j], xv, acc[j][c]);
    }
  }
  for (int c = 0; c < C; ++c) {
    alignas(16) float out[4];
    _mm_store_ps(out, reduce4(acc[0][c], acc[1][c], acc[2][c], acc[3][c]));
    for (int j = 0; j < 4; ++j) {
      for (std::int64_t i = k8; i < k; ++i) out[j] += x[c * k + i] * load_as_f32(w.data, w.type, (r + j) * k + i);
      y[c * ldy + r + j] = out[j];
    }
  }
}

// 1 row x 1 token (row tails).
void tile1(const float* x, std::int64_t k, const weight_ref& w, std::int64_t r, float* y) {
  __m256 acc = _mm256_setzero_ps();
  const std::int64_t k8 = k & ~std::int64_t(7);
  for (std::int64_t i = 0; i < k8; i += 8)
    acc = _mm256_fmadd_ps(load8(w.data, w.type, r * k + i), _mm256_loadu_ps(x + i), acc);
  float sum = reduce1(acc);
  for (std::int64_t i = k8; i < k; ++i) sum += x[i] * load_as_f32(w.data, w.type, r * k + i);
  *y = sum;
}

constexpr std::int64_t token_block = 64;  // tokens whose activations stay in L2 together

void matmul_rows(const float* x, const std::uint16_t*, std::int64_t n, const weight_ref& w,
                 std::int64_t row_begin, std::int64_t row_end, float* y) {
  const std::int64_t k = w.cols;
  const std::int64_t ldy = w.rows;
  for (std::int64_t t0 = 0; t0 < n; t0 += token_block) {
    const std::int64_t t1 = std::min(n, t0 + token_block);
    std::int64_t r = row_begin;
    for (; r + 4 <= row_end; r += 4) {
      std::int64_t t = t0;
      for (; t + 2 <= t1; t += 2) tile4<2>(x + t * k, k, w, r, y + t * ldy, ldy);
      if (t < t1) tile4<1>(x + t * k, k, w, r, y + t * ldy, ldy);
    }
    for (; r < row_end; ++r)
      for (std::int64_t t = t0; t < t1; ++t) tile1(x + t * k, k, w, r, y + t * ldy + r);
  }
}

// Four keys at a time share one 4-way horizontal reduction.
void attention_scores_one(const float* q, const std::uint16_t* keys, std::int64_t stride,
                      std::int64_t count, std::int64_t head_dim, float scale, float* scores) {
  const std::int64_t d8 = head_dim & ~std::int64_t(7);
  auto tail = [&](std::int64_t j) {
    float sum = 0.f;
    for (std::int64_t d = d8; d < head_dim; ++d) sum += q[d] * bf16_to_f32(keys[j * stride + d]);
    return sum;
  };
  std::int64_t j = 0;
  for (; j + 4 <= count; j += 4) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (std::int64_t d = 0; d < d8; d += 8) {
      const __m256 qv = _mm256_loadu_ps(q + d);
      for (int r = 0; r < 4; ++r)
        acc[r] = _mm256_fmadd_ps(qv, load8(keys, dtype::bf16, (j + r) * stride + d), acc[r]);
    }
    alignas(16) float s4[4];
    _mm_store_ps(s4, reduce4(acc[0], acc[1], acc[2], acc[3]));
    for (int r = 0; r < 4; ++r) scores[j + r] = (s4[r] + tail(j + r)) * scale;
  }
  for (; j < count; ++j) {
    __m256 acc = _mm256_setzero_ps();
    for (std::int64_t d = 0; d < d8; d += 8)
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load8(keys, dtype::bf16, j * stride + d), acc);
    scores[j] = (reduce1(acc) + tail(j)) * scale;
  }
}

void attention_values_one(float* out, const float* p, const std::uint16_t* values,
                      std::int64_t stride, std::int64_t count, std::int64_t head_dim) {
  const std::int64_t d8 = head_dim & ~std::int64_t(7);
  for (std::int64_t d = 0; d < d8; d += 8) {
    __m256 acc = _mm256_loadu_ps(out + d);
    for (std::int64_t j = 0; j < count; ++j)
      acc = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), load8(values, dtype::bf16, j * stride + d), acc);
    _mm256_storeu_ps(out + d, acc);
  }
  for (std::int64_t d = d8; d < head_dim; ++d)
    for (std::int64_t j = 0; j < count; ++j) out[d] += p[j] * bf16_to_f32(values[j * stride + d]);
}

// The fallback path keeps it simple: one head at a time.
void attention_scores(const float* q, int heads, const std::uint16_t* keys, std::int64_t stride,
                      std::int64_t count, std::int64_t head_dim, float scale, float* scores,
                      std::int64_t scores_stride) {
  for (int h = 0; h < heads; ++h)
    attention_scores_one(q + h * head_dim, keys, stride, count, head_dim, scale, scores + h * scores_stride);
}

void attention_values(float* out, int heads, const float* p, std::int64_t scores_stride,
                      const std::uint16_t* values, std::int64_t stride, std::int64_t count,
                      std::int64_t head_dim) {
  for (int h = 0; h < heads; ++h)
    attention_values_one(out + h * head_dim, p + h * scores_stride, values, stride, count, head_dim);
}

}  // namespace

const isa_kernels& avx2_kernels() {
  static const isa_kernels table{"avx2", false, matmul_rows, attention_scores,
                                 attention_values};
  return table;
}

}  // namespace dsrt::kernels::cpu
