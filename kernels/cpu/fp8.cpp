// FP8 (e4m3fn) rows to bf16: a portable loop and AVX2 / AVX-512 paths chosen per call, all
// bit-identical to the scalar formula of fp8.h.
#include "kernels/cpu/fp8.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/assert.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/multi_isa.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace dsrt::kernels::cpu {
namespace {

// One block's run of columns, all with the same scale: f8_e4m3_to_f32 and f32_to_bf16 of
// dtype.h written without branches (selects by masks) so that the loop vectorises.
DSRT_MULTI_ISA
void run_portable(const std::uint8_t* in, float scale, std::int64_t count, std::uint16_t* out) {
  for (std::int64_t c = 0; c < count; ++c) {
    const std::uint32_t b = in[c];
    const std::uint32_t magnitude = b & 0x7fu;
    const std::uint32_t normal = (magnitude << 20) + (120u << 23);
    const float subnormal = float(std::int32_t(magnitude)) * 0x1p-9f;
    std::uint32_t subnormal_bits;
    std::memcpy(&subnormal_bits, &subnormal, sizeof subnormal_bits);
    const std::uint32_t is_normal = 0u - std::uint32_t(magnitude >= 0x08u);
    const std::uint32_t is_nan = 0u - std::uint32_t(magnitude == 0x7fu);
    std::uint32_t value_bits = (normal & is_normal) | (subnormal_bits & ~is_normal);
    value_bits = (0x7fc00000u & is_nan) | (value_bits & ~is_nan);
    value_bits |= (b & 0x80u) << 24;
    float value;
    std::memcpy(&value, &value_bits, sizeof value);

    const float product = value * scale;
    std::uint32_t bits;
    std::memcpy(&bits, &product, sizeof bits);
    const std::uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    const std::uint32_t product_nan = 0u - std::uint32_t((bits & 0x7fffffffu) > 0x7f800000u);
    out[c] = std::uint16_t((((bits >> 16) | 0x40u) & product_nan) | (rounded & ~product_nan));
  }
}

void row_portable(const std::uint8_t* in, const float* scales, std::int64_t cols,
                  std::int64_t block_cols, std::uint16_t* out) {
  for (std::int64_t c0 = 0; c0 < cols; c0 += block_cols)
    run_portable(in + c0, scales[c0 / block_cols], std::min(block_cols, cols - c0), out + c0);
}

#if defined(__x86_64__)
// The vector paths compute value * 2^-8 (from vcvtph2ps) times scale * 2^8. Both factors
// are exact and their product is the same real number as value * scale, so it rounds to the
// same f32 -- as long as scale * 2^8 neither overflows nor is NaN (NaN * NaN would pick one
// of the two NaNs by operand order). vcvtne2ps2bf16 also treats denormal inputs as zero, so
// its path needs every nonzero product to be normal: |value| >= 2^-9, |scale| >= 2^-117
// (applied to all paths, for one rule). Real checkpoints' scales are far inside; other
// blocks take the portable loop.
inline bool scale_is_ordinary(float scale) {
  const float a = std::fabs(scale);
  return a == 0.f || std::isinf(a) || (a >= 0x1p-117f && a < 0x1p119f);
}

// One sequential stream per row is too little for the hardware prefetcher to keep up with
// (measured on a Zen 4 core: 9 GB/s without, 17 GB/s with), so each block asks for
// the bytes this far ahead (the next rows of a tile follow in memory).
constexpr std::int64_t prefetch_bytes_ahead = 4096;

inline void prefetch_block(const std::uint8_t* in, std::int64_t begin, std::int64_t end) {
  for (std::int64_t c = begin; c < end; c += 64)
    _mm_prefetch(reinterpret_cast<const char*>(in + c + prefetch_bytes_ahead), _MM_HINT_T0);
}

#define DSRT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define DSRT_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c")))
#define DSRT_TARGET_AVX512BF16 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c")))

// The f16 bit patterns of e4m3 bytes times 2^-8: a byte sign-extended to 16 bits and shifted
// left by 7 has its sign in bits 14-15 and exponent|mantissa in bits 7-13; clearing bit 14
// leaves exactly that f16, whose exponent bias 15 is the e4m3 bias 7 plus 8, subnormals
// included. The NaNs (b & 0x7f == 0x7f; rare, hence the branches) become the f16 quiet NaN
// 0x7e00 with their sign, which widens to f8_e4m3_to_f32's 0x7fc00000.
constexpr std::int16_t f16_of_shifted_byte = std::int16_t(0xbf80);

// --- AVX2 (+F16C): 16 columns per step --------------------------------------------------

DSRT_TARGET_AVX2 inline __m256i f8_to_f16(__m128i bytes) {
  const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(bytes), 7),
                                     _mm256_set1_epi16(f16_of_shifted_byte));
  const __m128i nan = _mm_cmpeq_epi8(_mm_or_si128(bytes, _mm_set1_epi8(char(0x80))),
                                     _mm_set1_epi8(char(0xff)));
  if (_mm_testz_si128(nan, nan)) [[likely]] return h;
  const __m256i sign = _mm256_and_si256(h, _mm256_set1_epi16(std::int16_t(0x8000)));
  const __m256i quiet_nan = _mm256_or_si256(sign, _mm256_set1_epi16(0x7e00));
  return _mm256_blendv_epi8(h, quiet_nan, _mm256_cvtepi8_epi16(nan));
}

// f32_to_bf16 of 8 floats into the low halves of 32-bit lanes. No NaN case: the only NaNs
// here are f8_e4m3_to_f32's and the default NaN of 0 * inf, whose low 16 bits are zero and
// whose bit 22 is set, so adding the rounding bias keeps them as f32_to_bf16 does.
DSRT_TARGET_AVX2 inline __m256i round_to_bf16(__m256 p) {
  const __m256i bits = _mm256_castps_si256(p);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i biased = _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), lsb);
  return _mm256_srli_epi32(biased, 16);
}

DSRT_TARGET_AVX2 void row_avx2(const std::uint8_t* in, const float* scales, std::int64_t cols,
                               std::int64_t block_cols, std::uint16_t* out) {
  for (std::int64_t c0 = 0; c0 < cols; c0 += block_cols) {
    const std::int64_t end = std::min(cols, c0 + block_cols);
    const float scale = scales[c0 / block_cols];
    std::int64_t c = c0;
    if (scale_is_ordinary(scale)) {
      prefetch_block(in, c0, end);
      const __m256 s = _mm256_set1_ps(scale * 256.0f);
      for (; c + 16 <= end; c += 16) {
        const __m256i h = f8_to_f16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + c)));
        const __m256 a = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), s);
        const __m256 b = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), s);
        // packus interleaves a and b per 128-bit lane; the permute restores column order.
        const __m256i packed = _mm256_packus_epi32(round_to_bf16(a), round_to_bf16(b));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c),
                            _mm256_permute4x64_epi64(packed, 0xd8));
      }
    }
    run_portable(in + c, scale, end - c, out + c);  // the tail (or the whole block)
  }
}

// --- AVX-512: 32 columns per step -------------------------------------------------------

DSRT_TARGET_AVX512 inline __m512i f8_to_f16(__m256i bytes) {
  const __m512i h = _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(bytes), 7),
                                     _mm512_set1_epi16(f16_of_shifted_byte));
  const __mmask32 nan = _mm256_cmpeq_epi8_mask(
      _mm256_or_si256(bytes, _mm256_set1_epi8(char(0x80))), _mm256_set1_epi8(char(0xff)));
  if (nan == 0) [[likely]] return h;
  // 0xea: (h & 0x8000) | 0x7e00.
  const __m512i quiet_nan = _mm512_ternarylogic_epi32(h, _mm512_set1_epi16(std::int16_t(0x8000)),
                                                      _mm512_set1_epi16(0x7e00), 0xea);
  return _mm512_mask_mov_epi16(h, nan, quiet_nan);
}

// As round_to_bf16 above, the result in the high halves of the 32-bit lanes.
DSRT_TARGET_AVX512 inline __m512i round_to_bf16_high(__m512 p) {
  const __m512i bits = _mm512_castps_si512(p);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  return _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7fff)), lsb);
}

// Columns [c, c + 32) of a block (the first `count` of them when count < 32) scaled by s
// (scale * 2^8), as 16 floats each for columns 0-15 (a) and 16-31 (b).
DSRT_TARGET_AVX512 inline void widen_scaled(const std::uint8_t* in, std::int64_t count, __m512 s,
                                            __m512& a, __m512& b) {
  const __m256i bytes =
      count >= 32 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in))
                  : _mm256_maskz_loadu_epi8(__mmask32((std::uint64_t(1) << count) - 1), in);
  const __m512i h = f8_to_f16(bytes);
  a = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), s);
  b = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), s);
}

DSRT_TARGET_AVX512 inline void store_bf16(std::uint16_t* out, std::int64_t count, __m512i v) {
  if (count >= 32) {
    _mm512_storeu_si512(out, v);
  } else {
    _mm512_mask_storeu_epi16(out, __mmask32((std::uint64_t(1) << count) - 1), v);
  }
}

// The two AVX-512 rows differ only in the rounding to bf16 (which needs its own target).
DSRT_TARGET_AVX512 void row_avx512(const std::uint8_t* in, const float* scales, std::int64_t cols,
                                   std::int64_t block_cols, std::uint16_t* out) {
  // The odd 16-bit words of two vectors: the bf16 halves of a, then those of b.
  const __m512i odd_words = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39,
                                             37, 35, 33, 31, 29, 27, 25, 23, 21, 19, 17, 15, 13,
                                             11, 9, 7, 5, 3, 1);
  for (std::int64_t c0 = 0; c0 < cols; c0 += block_cols) {
    const std::int64_t end = std::min(cols, c0 + block_cols);
    const float scale = scales[c0 / block_cols];
    if (!scale_is_ordinary(scale)) {
      run_portable(in + c0, scale, end - c0, out + c0);
      continue;
    }
    prefetch_block(in, c0, end);
    const __m512 s = _mm512_set1_ps(scale * 256.0f);
    for (std::int64_t c = c0; c < end; c += 32) {
      __m512 a, b;
      widen_scaled(in + c, end - c, s, a, b);
      const __m512i high_a = round_to_bf16_high(a), high_b = round_to_bf16_high(b);
      store_bf16(out + c, end - c, _mm512_permutex2var_epi16(high_a, odd_words, high_b));
    }
  }
}

DSRT_TARGET_AVX512BF16 void row_avx512bf16(const std::uint8_t* in, const float* scales,
                                           std::int64_t cols, std::int64_t block_cols,
                                           std::uint16_t* out) {
  for (std::int64_t c0 = 0; c0 < cols; c0 += block_cols) {
    const std::int64_t end = std::min(cols, c0 + block_cols);
    const float scale = scales[c0 / block_cols];
    if (!scale_is_ordinary(scale)) {
      run_portable(in + c0, scale, end - c0, out + c0);
      continue;
    }
    prefetch_block(in, c0, end);
    const __m512 s = _mm512_set1_ps(scale * 256.0f);
    for (std::int64_t c = c0; c < end; c += 32) {
      __m512 a, b;
      widen_scaled(in + c, end - c, s, a, b);
      store_bf16(out + c, end - c, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a)));
    }
  }
}
#endif

}  // namespace

bool fp8_dot_available() {
#if defined(__x86_64__)
  return isa_supported("avx512bf16") && __builtin_cpu_supports("avx512vbmi");
#else
  return false;
#endif
}

bool fp8_dot_fits(const weight_ref& w) {
  return w.type == dtype::f8_e4m3 && w.scales != nullptr && w.block_rows > 0 && w.block_cols > 0;
}

fp8_path fp8_path_for_isa(std::string_view isa) {
  if (isa == "avx512bf16") return fp8_path::avx512bf16;
  if (isa == "avx512") return fp8_path::avx512;
  if (isa == "avx2") return fp8_path::avx2;
  return fp8_path::portable;
}

void dequantize_f8_e4m3_rows(const weight_ref& w, std::int64_t row_begin, std::int64_t row_end,
                             std::uint16_t* out, fp8_path path) {
  DSRT_ASSERT(w.type == dtype::f8_e4m3 && w.scales != nullptr, "weight of type {}, scales {}",
              dtype_name(w.type), static_cast<const void*>(w.scales));
  DSRT_ASSERT(w.block_rows > 0 && w.block_cols > 0, "blocks {}x{}", w.block_rows, w.block_cols);
  DSRT_ASSERT(0 <= row_begin && row_begin <= row_end && row_end <= w.rows, "rows [{}, {}) of {}",
              row_begin, row_end, w.rows);
  const auto* data = static_cast<const std::uint8_t*>(w.data);
  const std::int64_t cols = w.cols;
  for (std::int64_t r = row_begin; r < row_end; ++r) {
    const std::uint8_t* in = data + r * cols;
    const float* scales = w.scales + (w.scale_row0 + r) / w.block_rows * w.scale_cols;
    std::uint16_t* row_out = out + (r - row_begin) * cols;
    switch (path) {
#if defined(__x86_64__)
      case fp8_path::avx512bf16: row_avx512bf16(in, scales, cols, w.block_cols, row_out); break;
      case fp8_path::avx512: row_avx512(in, scales, cols, w.block_cols, row_out); break;
      case fp8_path::avx2: row_avx2(in, scales, cols, w.block_cols, row_out); break;
#endif
      default: row_portable(in, scales, cols, w.block_cols, row_out); break;
    }
  }
}

}  // namespace dsrt::kernels::cpu
