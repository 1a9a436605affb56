#pragma once
// Element types of tensors and the scalar conversions between them.
// bf16 and f16 are stored as raw uint16_t bit patterns.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace dsrt {

enum class dtype : std::uint8_t { f32, f16, bf16 };

constexpr std::size_t dtype_size(dtype t) { return t == dtype::f32 ? 4 : 2; }

constexpr std::string_view dtype_name(dtype t) {
  switch (t) {
    case dtype::f32: return "f32";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
  }
  return "?";
}

// Names as safetensors writes them ("F32", "F16", "BF16"); nullopt for any other.
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

// Reads element i of a buffer of type t as f32.
inline float load_as_f32(const void* data, dtype t, std::size_t i) {
  switch (t) {
    case dtype::f32: return static_cast<const float*>(data)[i];
    case dtype::f16: return f16_to_f32(static_cast<const std::uint16_t*>(data)[i]);
    case dtype::bf16: return bf16_to_f32(static_cast<const std::uint16_t*>(data)[i]);
  }
  return 0.f;
}

}  // namespace dsrt
