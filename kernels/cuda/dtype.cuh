#pragma once
// Element conversions on the device, bit for bit those of kernels/dtype.h: bf16 rounds to
// nearest even and keeps NaN a NaN, as f32_to_bf16 does on the host.
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/dtype.h"

namespace dsrt::kernels::cuda {

__device__ __forceinline__ float bf16_bits_to_f32(std::uint16_t h) {
  return __uint_as_float(std::uint32_t(h) << 16);
}

__device__ __forceinline__ std::uint16_t f32_to_bf16_bits(float f) {
  std::uint32_t bits = __float_as_uint(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return std::uint16_t(bits >> 16);
}

__device__ __forceinline__ float f16_bits_to_f32(std::uint16_t h) {
  return __half2float(__ushort_as_half(h));
}

__device__ __forceinline__ std::uint16_t f32_to_f16_bits(float f) {
  return __half_as_ushort(__float2half_rn(f));
}

// e4m3fn as kernels/dtype.h's f8_e4m3_to_f32: exact; 0x7f / 0xff are NaN.
__device__ __forceinline__ float f8_e4m3_bits_to_f32(std::uint8_t b) {
  const std::uint32_t sign = std::uint32_t(b & 0x80u) << 24;
  const std::uint32_t magnitude = b & 0x7fu;
  if (magnitude == 0x7fu) return __uint_as_float(sign | 0x7fc00000u);
  if (magnitude >= 0x08u) return __uint_as_float(sign | ((magnitude << 20) + (120u << 23)));
  return __uint_as_float(__float_as_uint(float(magnitude) * 0x1p-9f) | sign);  // subnormal
}

// Element i of a buffer of type T (f32, f16 or bf16) as f32.
template <dtype T>
__device__ __forceinline__ float load_f32(const void* data, std::int64_t i) {
  if constexpr (T == dtype::f32) {
    return static_cast<const float*>(data)[i];
  } else if constexpr (T == dtype::f16) {
    return f16_bits_to_f32(static_cast<const std::uint16_t*>(data)[i]);
  } else {
    static_assert(T == dtype::bf16, "f8_e4m3 is not a CUDA backend dtype yet");
    return bf16_bits_to_f32(static_cast<const std::uint16_t*>(data)[i]);
  }
}

// Runs f.template operator()<T>() for the runtime dtype t (f32, f16 or bf16).
template <class F>
void dispatch_dtype(dtype t, F&& f) {
  switch (t) {
    case dtype::f32: f.template operator()<dtype::f32>(); return;
    case dtype::f16: f.template operator()<dtype::f16>(); return;
    case dtype::bf16: f.template operator()<dtype::bf16>(); return;
    case dtype::f8_e4m3: break;
  }
  DSRT_CU_ASSERT(false, "the CUDA backend has no " + std::string(dtype_name(t)) + " path");
}

// Blocks for a grid-stride loop over count elements.
inline unsigned grid_for(std::int64_t count, int threads) {
  const std::int64_t blocks = (count + threads - 1) / threads;
  return unsigned(blocks < 1 ? 1 : blocks > 65535 * 16 ? 65535 * 16 : blocks);
}

}  // namespace dsrt::kernels::cuda
