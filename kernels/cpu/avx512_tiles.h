#pragma once
// AVX-512 matmul tiles shared by isa_avx512.cpp and isa_avx512bf16.cpp, which compile this
// header with their own -m flags. Tiles are 4 weight rows x up to 4 tokens: 16 zmm
// accumulators, 4 weight and up to 4 activation registers per step.
//
// Two inner products:
//  - fma: weights (f32/f16/bf16) widened to f32 and fused-multiply-added with f32
//    activations, 16 columns per step;
//  - dp (UseDp, bf16 weights only): vdpbf16ps on bf16 weights and bf16 activations,
//    32 columns per step, f32 accumulation. Twice the arithmetic per instruction and half
//    the register traffic, at the cost of rounding activations to bf16.
// Column tails use masked loads, so every element sees the same reduction order.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/isa.h"

// Internal linkage: each including file compiles these with its own target flags, and the
// linker must never mix the two builds of one function.
namespace dsrt::kernels::cpu::avx512 {
namespace {

inline __m512 load16(const void* base, dtype type, std::int64_t i, __mmask16 m) {
  switch (type) {
    case dtype::f32: return _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + i);
    case dtype::f16:
      return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const std::uint16_t*>(base) + i));
    case dtype::bf16:
      return _mm512_castsi512_ps(_mm512_slli_epi32(
          _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, static_cast<const std::uint16_t*>(base) + i)),
          16));
    case dtype::f8_e4m3: break;  // never reaches the kernels: matmul_group dequantises tiles
  }
  return _mm512_setzero_ps();
}

// {sum(a), sum(b), sum(c), sum(d)}.
inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

inline float reduce1(__m512 a) {
  const __m512 z = _mm512_setzero_ps();
  return _mm_cvtss_f32(reduce4(a, z, z, z));
}

// Weight rows of a tile are only k elements long: too short for the hardware prefetcher to
// get ahead of four interleaved streams. Each step prefetches the same columns of the rows
// prefetch_rows_ahead further on, which the following tiles will read.
constexpr std::int64_t prefetch_rows_ahead = 16;

inline void prefetch_rows(const void* base, dtype type, std::int64_t r, std::int64_t k, std::int64_t i, int rows) {
  const auto* bytes = static_cast<const char*>(base);
  const std::int64_t size = std::int64_t(dtype_size(type));
  for (int j = 0; j < rows; ++j)
    _mm_prefetch(bytes + ((r + prefetch_rows_ahead + j) * k + i) * size, _MM_HINT_T0);
}

inline __mmask16 tail16(std::int64_t remaining) {
  return remaining >= 16 ? __mmask16(0xffff) : __mmask16((1u << remaining) - 1);
}

// R rows (a multiple of 4, or 1) x C tokens with the f32 FMA inner product.
// prefetch: fetch the weight rows ahead (the first token tile of each row tile does it).
template <int R, int C>
void tile_fma(const float* x, std::int64_t k, const weight_ref& w, std::int64_t r, float* y,
              std::int64_t ldy, bool prefetch) {
  __m512 acc[R][C];
  for (auto& row : acc)
    for (auto& a : row) a = _mm512_setzero_ps();
  for (std::int64_t i = 0; i < k; i += 16) {
    const __mmask16 m = tail16(k - i);
    if (prefetch) prefetch_rows(w.data, w.type, r, k, i, R);
    __m512 wv[R];
    for (int j = 0; j < R; ++j) wv[j] = load16(w.data, w.type, (r + j) * k + i, m);
    for (int c = 0; c < C; ++c) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + c * k + i);
      for (int j = 0; j < R; ++j) acc[j][c] = _mm512_fmadd_ps(wv[j], xv, acc[j][c]);
    }
  }
  for (int c = 0; c < C; ++c) {
    if constexpr (R % 4 == 0) {
      for (int q = 0; q < R; q += 4)
        _mm_storeu_ps(y + c * ldy + r + q, reduce4(acc[q][c], acc[q + 1][c], acc[q + 2][c], acc[q + 3][c]));
    } else {
      y[c * ldy + r] = reduce1(acc[0][c]);
    }
  }
}

#if defined(__AVX512BF16__)
inline __mmask32 tail32(std::int64_t remaining) {
  return remaining >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << remaining) - 1);
}

// R rows x C tokens with vdpbf16ps. xb: bf16 activations [C, k]; w: bf16.
template <int R, int C>
void tile_dp(const std::uint16_t* xb, std::int64_t k, const weight_ref& w, std::int64_t r,
             float* y, std::int64_t ldy, bool prefetch) {
  const auto* wb = static_cast<const std::uint16_t*>(w.data);
  __m512 acc[R][C];
  for (auto& row : acc)
    for (auto& a : row) a = _mm512_setzero_ps();
  // Full 32-column steps with plain loads (masked 512-bit loads cost more on some cores),
  // then one masked step for the tail.
  auto step = [&](std::int64_t i, __mmask32 m, bool full) {
    if (prefetch) prefetch_rows(w.data, w.type, r, k, i, R);
    __m512i wv[R];
    for (int j = 0; j < R; ++j)
      wv[j] = full ? _mm512_loadu_si512(wb + (r + j) * k + i) : _mm512_maskz_loadu_epi16(m, wb + (r + j) * k + i);
    for (int c = 0; c < C; ++c) {
      const __m512i xv = full ? _mm512_loadu_si512(xb + c * k + i) : _mm512_maskz_loadu_epi16(m, xb + c * k + i);
      for (int j = 0; j < R; ++j)
        acc[j][c] = _mm512_dpbf16_ps(acc[j][c], (__m512bh)wv[j], (__m512bh)xv);
    }
  };
  std::int64_t i = 0;
  for (; i + 32 <= k; i += 32) step(i, 0, true);
  if (i < k) step(i, tail32(k - i), false);
  for (int c = 0; c < C; ++c) {
    if constexpr (R % 4 == 0) {
      for (int q = 0; q < R; q += 4)
        _mm_storeu_ps(y + c * ldy + r + q, reduce4(acc[q][c], acc[q + 1][c], acc[q + 2][c], acc[q + 3][c]));
    } else {
      y[c * ldy + r] = reduce1(acc[0][c]);
    }
  }
}
#endif

constexpr std::int64_t token_block = 64;  // tokens whose activations stay in L2 together

// Dispatches tiles over rows [row_begin, row_end) and all n tokens, blocked by tokens.
template <bool UseDp>
void matmul_rows(const float* x, const std::uint16_t* xb, std::int64_t n, const weight_ref& w,
                 std::int64_t row_begin, std::int64_t row_end, float* y) {
  const std::int64_t k = w.cols;
  const std::int64_t ldy = w.rows;
  const bool dp = UseDp && w.type == dtype::bf16 && xb != nullptr;
  std::int64_t t0 = 0;
  auto run = [&]<int R, int C>(std::int64_t r, std::int64_t t) {
    const bool prefetch = t == t0;
#if defined(__AVX512BF16__)
    if (dp) return tile_dp<R, C>(xb + t * k, k, w, r, y + t * ldy, ldy, prefetch);
#endif
    tile_fma<R, C>(x + t * k, k, w, r, y + t * ldy, ldy, prefetch);
  };
  for (t0 = 0; t0 < n; t0 += token_block) {
    const std::int64_t t1 = std::min(n, t0 + token_block);
    auto rows = [&]<int R>(std::int64_t r) {
      std::int64_t t = t0;
      for (; t + 4 <= t1; t += 4) run.template operator()<R, 4>(r, t);
      switch (t1 - t) {
        case 3: run.template operator()<R, 3>(r, t); break;
        case 2: run.template operator()<R, 2>(r, t); break;
        case 1: run.template operator()<R, 1>(r, t); break;
        default: break;
      }
    };
    std::int64_t r = row_begin;
    // A lone token: 8-row tiles keep more weight loads in flight (registers allow it only
    // for one token). The reduction of each output is the same as in 4-row tiles.
    if (t1 - t0 == 1)
      for (; r + 8 <= row_end; r += 8) run.template operator()<8, 1>(r, t0);
    for (; r + 4 <= row_end; r += 4) rows.template operator()<4>(r);
    for (; r < row_end; ++r) rows.template operator()<1>(r);
  }
  (void)dp;
}

// H (1..4) query heads of one GQA group against `count` keys: each key chunk is widened
// once and used by every head; four keys of a head share one 4-way horizontal reduction.
template <int H>
inline void scores_heads(const float* q, const std::uint16_t* keys, std::int64_t stride,
                         std::int64_t count, std::int64_t head_dim, float scale, float* scores,
                         std::int64_t scores_stride) {
  std::int64_t j = 0;
  for (; j + 4 <= count; j += 4) {
    __m512 acc[4][H];
    for (auto& row : acc)
      for (auto& a : row) a = _mm512_setzero_ps();
    for (std::int64_t d = 0; d < head_dim; d += 16) {
      const __mmask16 m = tail16(head_dim - d);
      __m512 kv[4];
      for (int r = 0; r < 4; ++r) kv[r] = load16(keys, dtype::bf16, (j + r) * stride + d, m);
      for (int h = 0; h < H; ++h) {
        const __m512 qv = _mm512_maskz_loadu_ps(m, q + h * head_dim + d);
        for (int r = 0; r < 4; ++r) acc[r][h] = _mm512_fmadd_ps(qv, kv[r], acc[r][h]);
      }
    }
    for (int h = 0; h < H; ++h)
      _mm_storeu_ps(scores + h * scores_stride + j,
                    _mm_mul_ps(reduce4(acc[0][h], acc[1][h], acc[2][h], acc[3][h]), _mm_set1_ps(scale)));
  }
  for (; j < count; ++j) {
    __m512 acc[H];
    for (auto& a : acc) a = _mm512_setzero_ps();
    for (std::int64_t d = 0; d < head_dim; d += 16) {
      const __mmask16 m = tail16(head_dim - d);
      const __m512 kv = load16(keys, dtype::bf16, j * stride + d, m);
      for (int h = 0; h < H; ++h)
        acc[h] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + h * head_dim + d), kv, acc[h]);
    }
    for (int h = 0; h < H; ++h) scores[h * scores_stride + j] = reduce1(acc[h]) * scale;
  }
}

// H (1..4) heads: per 16-column chunk each value row is widened once and accumulated into
// every head, the accumulators staying in registers.
template <int H>
inline void values_heads(float* out, const float* p, std::int64_t scores_stride,
                         const std::uint16_t* values, std::int64_t stride, std::int64_t count,
                         std::int64_t head_dim) {
  for (std::int64_t d = 0; d < head_dim; d += 16) {
    const __mmask16 m = tail16(head_dim - d);
    __m512 acc[H];
    for (int h = 0; h < H; ++h) acc[h] = _mm512_maskz_loadu_ps(m, out + h * head_dim + d);
    for (std::int64_t j = 0; j < count; ++j) {
      const __m512 v = load16(values, dtype::bf16, j * stride + d, m);
      for (int h = 0; h < H; ++h)
        acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(p[h * scores_stride + j]), v, acc[h]);
    }
    for (int h = 0; h < H; ++h) _mm512_mask_storeu_ps(out + h * head_dim + d, m, acc[h]);
  }
}

inline void attention_scores(const float* q, int heads, const std::uint16_t* keys,
                             std::int64_t stride, std::int64_t count, std::int64_t head_dim,
                             float scale, float* scores, std::int64_t scores_stride) {
  for (int h0 = 0; h0 < heads; h0 += 4) {
    const float* qh = q + h0 * head_dim;
    float* sh = scores + h0 * scores_stride;
    switch (std::min(4, heads - h0)) {
      case 4: scores_heads<4>(qh, keys, stride, count, head_dim, scale, sh, scores_stride); break;
      case 3: scores_heads<3>(qh, keys, stride, count, head_dim, scale, sh, scores_stride); break;
      case 2: scores_heads<2>(qh, keys, stride, count, head_dim, scale, sh, scores_stride); break;
      default: scores_heads<1>(qh, keys, stride, count, head_dim, scale, sh, scores_stride); break;
    }
  }
}

#if defined(__AVX512BF16__)
// Scores with vdpbf16ps: the keys are bf16 in the cache already, so rounding q to bf16
// (once per call) removes every widening instruction and halves the multiply count.
template <int H>
inline void scores_heads_dp(const std::uint16_t* qb, const std::uint16_t* keys, std::int64_t stride,
                            std::int64_t count, std::int64_t head_dim, float scale, float* scores,
                            std::int64_t scores_stride) {
  std::int64_t j = 0;
  for (; j + 4 <= count; j += 4) {
    __m512 acc[4][H];
    for (auto& row : acc)
      for (auto& a : row) a = _mm512_setzero_ps();
    for (std::int64_t d = 0; d < head_dim; d += 32) {
      const __mmask32 m = tail32(head_dim - d);
      __m512i kv[4];
      for (int r = 0; r < 4; ++r) kv[r] = _mm512_maskz_loadu_epi16(m, keys + (j + r) * stride + d);
      for (int h = 0; h < H; ++h) {
        const __m512i qv = _mm512_maskz_loadu_epi16(m, qb + h * head_dim + d);
        for (int r = 0; r < 4; ++r) acc[r][h] = _mm512_dpbf16_ps(acc[r][h], (__m512bh)qv, (__m512bh)kv[r]);
      }
    }
    for (int h = 0; h < H; ++h)
      _mm_storeu_ps(scores + h * scores_stride + j,
                    _mm_mul_ps(reduce4(acc[0][h], acc[1][h], acc[2][h], acc[3][h]), _mm_set1_ps(scale)));
  }
  for (; j < count; ++j) {
    __m512 acc[H];
    for (auto& a : acc) a = _mm512_setzero_ps();
    for (std::int64_t d = 0; d < head_dim; d += 32) {
      const __mmask32 m = tail32(head_dim - d);
      const __m512i kv = _mm512_maskz_loadu_epi16(m, keys + j * stride + d);
      for (int h = 0; h < H; ++h)
        acc[h] = _mm512_dpbf16_ps(acc[h], (__m512bh)_mm512_maskz_loadu_epi16(m, qb + h * head_dim + d),
                                  (__m512bh)kv);
    }
    for (int h = 0; h < H; ++h) scores[h * scores_stride + j] = reduce1(acc[h]) * scale;
  }
}

inline void attention_scores_dp(const float* q, int heads, const std::uint16_t* keys,
                                std::int64_t stride, std::int64_t count, std::int64_t head_dim,
                                float scale, float* scores, std::int64_t scores_stride) {
  thread_local std::vector<std::uint16_t> q_bf16;
  const std::size_t elements = std::size_t(heads) * std::size_t(head_dim);
  if (q_bf16.size() < elements) q_bf16.resize(elements);
  for (std::size_t i = 0; i < elements; ++i) q_bf16[i] = f32_to_bf16(q[i]);
  for (int h0 = 0; h0 < heads; h0 += 4) {
    const std::uint16_t* qh = q_bf16.data() + std::size_t(h0) * std::size_t(head_dim);
    float* sh = scores + h0 * scores_stride;
    switch (std::min(4, heads - h0)) {
      case 4: scores_heads_dp<4>(qh, keys, stride, count, head_dim, scale, sh, scores_stride); break;
      case 3: scores_heads_dp<3>(qh, keys, stride, count, head_dim, scale, sh, scores_stride); break;
      case 2: scores_heads_dp<2>(qh, keys, stride, count, head_dim, scale, sh, scores_stride); break;
      default: scores_heads_dp<1>(qh, keys, stride, count, head_dim, scale, sh, scores_stride); break;
    }
  }
}
#endif

inline void attention_values(float* out, int heads, const float* p, std::int64_t scores_stride,
                             const std::uint16_t* values, std::int64_t stride, std::int64_t count,
                             std::int64_t head_dim) {
  for (int h0 = 0; h0 < heads; h0 += 4) {
    float* oh = out + h0 * head_dim;
    const float* ph = p + h0 * scores_stride;
    switch (std::min(4, heads - h0)) {
      case 4: values_heads<4>(oh, ph, scores_stride, values, stride, count, head_dim); break;
      case 3: values_heads<3>(oh, ph, scores_stride, values, stride, count, head_dim); break;
      case 2: values_heads<2>(oh, ph, scores_stride, values, stride, count, head_dim); break;
      default: values_heads<1>(oh, ph, scores_stride, values, stride, count, head_dim); break;
    }
  }
}

}  // namespace
}  // namespace dsrt::kernels::cpu::avx512
