// The fp8 dot path (fp8.h): AVX-512 BF16 + VBMI, compiled with those flags (CMakeLists.txt)
// and called only where fp8_dot_available().
//
// Rows go in groups of group_rows that stay inside one row of scale blocks; the activations
// are multiplied by that row of blocks' scales (and rounded to bf16) once per row of blocks.
// A group's bytes are widened to their exact bf16 (a few instructions per 64 bytes) into a
// buffer that stays in L2, and the bf16 tiles of avx512_tiles.h (vdpbf16ps) multiply it by
// every token; for 1-3 tokens, where the buffer would not be repaid, tile_direct widens in
// registers and runs the same vdpbf16ps steps. The weight is read from memory once, with no
// rounding of weight * scale, and every output is computed the same way whatever the batch.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "kernels/assert.h"
#include "kernels/cpu/avx512_tiles.h"
#include "kernels/cpu/fp8.h"
#include "kernels/dtype.h"

namespace dsrt::kernels::cpu {
namespace {

constexpr std::int64_t chunk = 64;        // columns (bytes) widened at a time
constexpr std::int64_t group_rows = 16;   // rows widened together, then multiplied by every token
constexpr std::int64_t direct_tokens_max = 3;   // fewer tokens: no buffer (tile_direct)
constexpr std::int64_t scaled_tokens_max = 64;  // tokens scaled (and multiplied) at a time
constexpr std::int64_t prefetch_bytes_ahead = 4096;

// Every e4m3 value is exactly a bf16. A chunk of 64 bytes becomes two vectors of 32 bf16
// with two 128-entry byte lookups (vpermi2b, which ignores the index's bit 7, the sign):
// the high and the low bytes of the bf16 of each magnitude; the sign is or-ed into the high
// byte, and unpacking low with high bytes gives the words. Unpacking works within 128-bit
// lanes, so the bytes are first put in the order that makes the words come out in column
// order (`order`).
struct widening_tables {
  __m512i order;
  __m512i high0, high1, low0, low1;
};

widening_tables make_tables() {
  alignas(64) std::array<std::uint8_t, 128> high{}, low{};
  for (int m = 0; m < 128; ++m) {
    const std::uint16_t b = f32_to_bf16(f8_e4m3_to_f32(std::uint8_t(m)));
    high[std::size_t(m)] = std::uint8_t(b >> 8);
    low[std::size_t(m)] = std::uint8_t(b & 0xff);
  }
  // Byte j of 128-bit lane L (0..3): unpacklo takes j < 8 into words 8L + j (columns
  // 0..31 in the first vector), unpackhi takes j >= 8 into columns 32 + 8L + (j - 8).
  alignas(64) std::array<std::uint8_t, 64> order{};
  for (int lane = 0; lane < 4; ++lane)
    for (int j = 0; j < 16; ++j)
      order[std::size_t(16 * lane + j)] =
          std::uint8_t(j < 8 ? 8 * lane + j : 32 + 8 * lane + (j - 8));
  widening_tables t;
  t.order = _mm512_load_si512(order.data());
  t.high0 = _mm512_load_si512(high.data());
  t.high1 = _mm512_load_si512(high.data() + 64);
  t.low0 = _mm512_load_si512(low.data());
  t.low1 = _mm512_load_si512(low.data() + 64);
  return t;
}

const widening_tables& tables() {
  static const widening_tables t = make_tables();
  return t;
}

// Columns [0, 32) and [32, 64) of a chunk of e4m3 bytes as exact bf16.
inline void widen(const widening_tables& t, __m512i bytes, __m512i& first, __m512i& second) {
  const __m512i ordered = _mm512_permutexvar_epi8(t.order, bytes);
  const __m512i low = _mm512_permutex2var_epi8(t.low0, ordered, t.low1);
  __m512i high = _mm512_permutex2var_epi8(t.high0, ordered, t.high1);
  // 0xf8: high | (ordered & 0x80).
  high = _mm512_ternarylogic_epi32(high, ordered, _mm512_set1_epi8(char(0x80)), 0xf8);
  first = _mm512_unpacklo_epi8(low, high);
  second = _mm512_unpackhi_epi8(low, high);
}

inline __mmask64 tail64(std::int64_t remaining) {
  return remaining >= 64 ? ~__mmask64(0) : (__mmask64(1) << remaining) - 1;
}

// Rows [r0, r1) of w (e4m3 bytes) as exact bf16 into out (row-major, w.cols wide).
void widen_rows(const widening_tables& t, const weight_ref& w, std::int64_t r0, std::int64_t r1,
                std::uint16_t* out) {
  const std::int64_t k = w.cols;
  const auto* bytes = static_cast<const std::uint8_t*>(w.data);
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::uint8_t* in = bytes + r * k;
    std::uint16_t* row_out = out + (r - r0) * k;
    for (std::int64_t i = 0; i < k; i += chunk) {
      // The rows of a group follow each other in memory: one stream, fetched this far ahead.
      _mm_prefetch(reinterpret_cast<const char*>(in + i + prefetch_bytes_ahead), _MM_HINT_T0);
      __m512i first, second;
      if (k - i >= chunk) {
        widen(t, _mm512_loadu_si512(in + i), first, second);
        _mm512_storeu_si512(row_out + i, first);
        _mm512_storeu_si512(row_out + i + 32, second);
      } else {
        const __mmask64 m = tail64(k - i);
        widen(t, _mm512_maskz_loadu_epi8(m, in + i), first, second);
        _mm512_mask_storeu_epi16(row_out + i, __mmask32(m), first);
        _mm512_mask_storeu_epi16(row_out + i + 32, __mmask32(m >> 32), second);
      }
    }
  }
}

// x [n, k] times the scales of one row of scale blocks, rounded to bf16.
void scale_activations(const float* x, std::int64_t n, std::int64_t k, const float* block_scales,
                       std::int64_t block_cols, std::uint16_t* out) {
  for (std::int64_t c0 = 0; c0 < k; c0 += block_cols) {
    const std::int64_t c1 = std::min(k, c0 + block_cols);
    const __m512 s = _mm512_set1_ps(block_scales[c0 / block_cols]);
    for (std::int64_t t = 0; t < n; ++t) {
      const float* in = x + t * k;
      std::uint16_t* o = out + t * k;
      for (std::int64_t c = c0; c < c1; c += 16) {
        const __mmask16 m = c1 - c >= 16 ? __mmask16(0xffff) : __mmask16((1u << (c1 - c)) - 1);
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, in + c), s);
        _mm256_mask_storeu_epi16(o + c, m, (__m256i)_mm512_cvtneps_pbh(v));
      }
    }
  }
}

// Rows [r, r + R) x C tokens straight from the e4m3 bytes, for batches too small to repay
// the buffer. Each output sees exactly the vdpbf16ps steps of avx512::tile_dp on the
// widened rows (32 columns at a time in column order, the tail masked, the same 16-lane
// reduction), so it equals what the buffered path gives, bit for bit.
template <int R, int C>
void tile_direct(const widening_tables& t, const std::uint16_t* xs, const weight_ref& w,
                 std::int64_t r, float* y, std::int64_t ldy) {
  const std::int64_t k = w.cols;
  const auto* bytes = static_cast<const std::uint8_t*>(w.data) + r * k;
  __m512 acc[R][C];
  for (auto& row : acc)
    for (auto& a : row) a = _mm512_setzero_ps();
  for (std::int64_t i = 0; i < k; i += chunk) {
    const bool whole = k - i >= chunk, two_steps = k - i > 32;
    const __mmask64 m = tail64(k - i);
    const auto m0 = __mmask32(m), m1 = __mmask32(m >> 32);
    __m512i x0[C], x1[C];
    for (int c = 0; c < C; ++c) {
      const std::uint16_t* x = xs + c * k + i;
      x0[c] = whole ? _mm512_loadu_si512(x) : _mm512_maskz_loadu_epi16(m0, x);
      x1[c] = whole ? _mm512_loadu_si512(x + 32) : _mm512_maskz_loadu_epi16(m1, x + 32);
    }
    for (int j = 0; j < R; ++j) {
      const std::uint8_t* row = bytes + j * k + i;
      _mm_prefetch(reinterpret_cast<const char*>(row + avx512::prefetch_rows_ahead * k), _MM_HINT_T0);
      __m512i first, second;
      widen(t, whole ? _mm512_loadu_si512(row) : _mm512_maskz_loadu_epi8(m, row), first, second);
      for (int c = 0; c < C; ++c) {
        acc[j][c] = _mm512_dpbf16_ps(acc[j][c], (__m512bh)first, (__m512bh)x0[c]);
        if (two_steps) acc[j][c] = _mm512_dpbf16_ps(acc[j][c], (__m512bh)second, (__m512bh)x1[c]);
      }
    }
  }
  for (int c = 0; c < C; ++c) {
    if constexpr (R % 4 == 0) {
      for (int q = 0; q < R; q += 4)
        _mm_storeu_ps(y + c * ldy + r + q, avx512::reduce4(acc[q][c], acc[q + 1][c], acc[q + 2][c], acc[q + 3][c]));
    } else {
      y[c * ldy + r] = avx512::reduce1(acc[0][c]);
    }
  }
}

template <int R, int C>
void rows_direct(const widening_tables& t, const std::uint16_t* xs, const weight_ref& w,
                 std::int64_t r0, std::int64_t r1, float* y) {
  std::int64_t r = r0;
  for (; r + R <= r1; r += R) tile_direct<R, C>(t, xs, w, r, y, w.rows);
  for (; r < r1; ++r) tile_direct<1, C>(t, xs, w, r, y, w.rows);
}

template <class T>
T* grow(std::vector<T>& v, std::size_t count) {
  if (v.size() < count) v.resize(count);
  return v.data();
}

}  // namespace

void matmul_f8_rows_dot(const float* x, std::int64_t n, const weight_ref& w,
                        std::int64_t row_begin, std::int64_t row_end, float* y) {
  DSRT_ASSERT(fp8_dot_fits(w), "weight {}x{} of type {}, blocks {}x{}", w.rows, w.cols,
              dtype_name(w.type), w.block_rows, w.block_cols);
  DSRT_ASSERT(0 <= row_begin && row_begin <= row_end && row_end <= w.rows, "rows [{}, {}) of {}",
              row_begin, row_end, w.rows);
  const widening_tables& t = tables();
  const std::int64_t k = w.cols;
  // Tokens go in blocks of scaled_tokens_max, which bounds the scaled copy each thread keeps.
  thread_local std::vector<std::uint16_t> widened, scaled;
  thread_local std::vector<float> y_group;
  const std::int64_t tokens = std::min(n, scaled_tokens_max);
  // 64-byte aligned: stores that split cache lines run at half speed (as in f8_rows).
  std::uint16_t* wb = grow(widened, std::size_t(group_rows * k + 32));
  wb += (64 - reinterpret_cast<std::uintptr_t>(wb) % 64) % 64 / sizeof(std::uint16_t);
  std::uint16_t* xs = grow(scaled, std::size_t(tokens * k));
  float* yg = grow(y_group, std::size_t(tokens * group_rows));
  for (std::int64_t t0 = 0; t0 < n; t0 += scaled_tokens_max) {
    const std::int64_t nb = std::min(scaled_tokens_max, n - t0);
    const float* xb = x + t0 * k;
    float* yb = y + t0 * w.rows;
    std::int64_t scaled_for = -1;   // the row of scale blocks xs holds
    for (std::int64_t g0 = row_begin; g0 < row_end;) {
      // A group stays inside one row of scale blocks, so one xs serves all its rows.
      const std::int64_t block_row = (w.scale_row0 + g0) / w.block_rows;
      const std::int64_t next_block_row = (block_row + 1) * w.block_rows - w.scale_row0;
      const std::int64_t g1 = std::min({row_end, g0 + group_rows, next_block_row});
      if (block_row != scaled_for) {
        scale_activations(xb, nb, k, w.scales + block_row * w.scale_cols, w.block_cols, xs);
        scaled_for = block_row;
      }
      static_assert(direct_tokens_max == 3);
      switch (nb) {
        case 1: rows_direct<8, 1>(t, xs, w, g0, g1, yb); break;
        case 2: rows_direct<4, 2>(t, xs, w, g0, g1, yb); break;
        case 3: rows_direct<4, 3>(t, xs, w, g0, g1, yb); break;
        default: {
          widen_rows(t, w, g0, g1, wb);
          const weight_ref group{wb, dtype::bf16, g1 - g0, k};
          avx512::matmul_rows<true>(nullptr, xs, nb, group, 0, g1 - g0, yg);
          for (std::int64_t i = 0; i < nb; ++i)
            std::copy(yg + i * (g1 - g0), yg + (i + 1) * (g1 - g0), yb + i * w.rows + g0);
        }
      }
      g0 = g1;
    }
  }
}

}  // namespace dsrt::kernels::cpu
