#pragma once
// Element types of tensors and the scalar conversions between them.
// bf16 and f16 are stored as raw uint16_t bit patterns, f8_e4m3 as raw uint8_t (the
// "e4m3fn" format of DeepSeek-V3's FP8 weights: no infinities, max 448).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace dsrt {

enum class dtype : std::uint8_t { f32, f16, bf16, f8_e4m3 };

constexpr std::size_t dtype_size(dtype t) {
  return t == dtype::f32 ? 4 : t == dtype::f8_e4m3 ? 1 : 2;
}

constexpr std::string_view dtype_name(dtype t) {
  switch (t) {
    case dtype::f32: return "f32";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
    case dtype::f8_e4m3: return "f8_e4m3";
  }
  return "?";
}

// Names as safetensors writes them ("F32", "F16", "BF16", "F8_E4M3"); nullopt for any other.
std::optional<dtype> dtype_from_safetensors(std::string_view name);
std::string_view dtype_to_safetensors(dtype t);

inline float bf16_to_f32(std::uint16_t h) {
  std::uint32_t bits = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline std::uint16_t f32_to_bf16(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return std::uint16_t(bits >> 16);
}

float f16_to_f32(std::uint16_t h);
std::uint16_t f32_to_f16(float f);

// e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; subnormals 2^-6 * m/8; no
// infinities; 0x7f and 0xff are the only NaNs. Exact (every e4m3 value is an f32); a NaN
// becomes the quiet NaN 0x7fc00000 with the byte's sign.
inline float f8_e4m3_to_f32(std::uint8_t b) {
  const std::uint32_t sign = std::uint32_t(b & 0x80u) << 24;
  const std::uint32_t magnitude = b & 0x7fu;
  std::uint32_t bits;
  if (magnitude == 0x7fu) {
    bits = sign | 0x7fc00000u;
  } else if (magnitude >= 0x08u) {  // normal: the f32 exponent is e - 7 + 127
    bits = sign | ((magnitude << 20) + (120u << 23));
  } else {  // zero or subnormal: m units of 2^-9
    const float f = float(magnitude) * 0x1p-9f;
    std::memcpy(&bits, &f, sizeof bits);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even. Finite values beyond +-448 (the largest e4m3fn) saturate to +-448;
// NaN and the infinities (which e4m3fn lacks) become NaN (0x7f) with their sign.
std::uint8_t f32_to_f8_e4m3(float f);

// Reads element i of a buffer of type t as f32.
inline float load_as_f32(const void* data, dtype t, std::size_t i) {
  switch (t) {
    case dtype::f32: return static_cast<const float*>(data)[i];
    case dtype::f16: return f16_to_f32(static_cast<const std::uint16_t*>(data)[i]);
    case dtype::bf16: return bf16_to_f32(static_cast<const std::uint16_t*>(data)[i]);
    // Unscaled: the block scales of an f8_e4m3 weight are the caller's to apply.
    case dtype::f8_e4m3: return f8_e4m3_to_f32(static_cast<const std::uint8_t*>(data)[i]);
  }
  return 0.f;
}

}  // namespace dsrt
