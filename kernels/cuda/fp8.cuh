#pragma once
// Block-scaled fp8 (e4m3) weights, DeepSeek-V3's checkpoint format (kernels/backend.h,
// weight_ref): dequantised to bf16 for products with many rows of x, exactly as the CPU's
// bf16 tiles do it: bf16(f32(e4m3) * block scale), round to nearest even.
#include <cuda_runtime.h>

#include <cstdint>

namespace dsrt::kernels::cuda {

struct fp8_weight {
  const std::uint8_t* data = nullptr;   // [rows, cols] (device)
  std::int64_t rows = 0, cols = 0;
  const float* scales = nullptr;        // (device) see weight_ref
  std::int64_t scale_cols = 0, scale_row0 = 0;
  int block_rows = 128, block_cols = 128;
};

// out[r, c] (bf16, device) for every element of w.
void launch_dequantize_fp8(fp8_weight w, std::uint16_t* out, cudaStream_t stream);

}  // namespace dsrt::kernels::cuda
