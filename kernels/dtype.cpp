#include "kernels/dtype.h"

namespace dsrt {

std::optional<dtype> dtype_from_safetensors(std::string_view name) {
  if (name == "F32") return dtype::f32;
  if (name == "F16") return dtype::f16;
  if (name == "BF16") return dtype::bf16;
  if (name == "F8_E4M3") return dtype::f8_e4m3;
  return std::nullopt;
}

std::string_view dtype_to_safetensors(dtype t) {
  switch (t) {
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::f8_e4m3: return "F8_E4M3";
  }
  return "?";
}

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  std::uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exponent = 127 - 15 + 1;
      while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        --exponent;
      }
      mantissa &= 0x3ffu;
      bits = sign | (exponent << 23) | (mantissa << 13);
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

std::uint16_t f32_to_f16(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const std::uint16_t sign = std::uint16_t((bits >> 16) & 0x8000u);
  const std::uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;               // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;              // overflow -> inf
  if (abs < 0x38800000u) {                                    // subnormal or zero
    if (abs < 0x33000000u) return sign;
    const std::uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - int(abs >> 23);                   // 14..24
    std::uint32_t half = mantissa >> shift;
    const std::uint32_t rem = mantissa & ((1u << shift) - 1);
    const std::uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half & 1u))) ++half;
    return sign | std::uint16_t(half);
  }
  std::uint32_t half = ((abs >> 23) - 112) << 10 | ((abs >> 13) & 0x3ffu);
  const std::uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return sign | std::uint16_t(half);
}

std::uint8_t f32_to_f8_e4m3(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const std::uint8_t sign = std::uint8_t((bits >> 24) & 0x80u);
  const std::uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) return sign | 0x7fu;           // NaN, infinity
  if (abs >= 0x43e00000u) return sign | 0x7eu;           // >= 448: saturate
  if (abs <= 0x3a800000u) return sign;                   // <= 2^-10: rounds to zero (ties even)
  if (abs < 0x3c800000u) {                               // below 2^-6: subnormal, units of 2^-9
    const std::uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 141 - int(abs >> 23);              // 21..24
    std::uint32_t q = mantissa >> shift;
    const std::uint32_t rem = mantissa & ((1u << shift) - 1);
    const std::uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;  // 8 is the smallest normal
    return std::uint8_t(sign | q);
  }
  // Normal: exponent and the top 3 mantissa bits, rebiased from 127 to 7; a carry out of the
  // mantissa moves into the exponent.
  std::uint32_t code = (abs >> 20) - (120u << 3);
  const std::uint32_t rem = abs & 0xfffffu;
  if (rem > 0x80000u || (rem == 0x80000u && (code & 1u))) ++code;
  return std::uint8_t(sign | (code > 0x7eu ? 0x7eu : code));  // 0x7f (480) is not a number
}

}  // namespace dsrt
