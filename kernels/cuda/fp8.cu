#include <algorithm>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/fp8.cuh"

namespace dsrt::kernels::cuda {
namespace {

constexpr int threads = 256;

// Rows over grid.y (striding past 65535), columns over grid.x: one division per row, not
// one per element.
__global__ void dequantize_kernel(fp8_weight w, std::uint16_t* out) {
  for (std::int64_t r = blockIdx.y; r < w.rows; r += gridDim.y) {
    const float* scales = w.scales + (w.scale_row0 + r) / w.block_rows * w.scale_cols;
    const std::uint8_t* in = w.data + r * w.cols;
    std::uint16_t* row_out = out + r * w.cols;
    for (std::int64_t c = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; c < w.cols;
         c += std::int64_t(gridDim.x) * blockDim.x)
      row_out[c] = f32_to_bf16_bits(f8_e4m3_bits_to_f32(in[c]) * scales[c / w.block_cols]);
  }
}

}  // namespace

void launch_dequantize_fp8(fp8_weight w, std::uint16_t* out, cudaStream_t stream) {
  if (w.rows <= 0 || w.cols <= 0) return;
  DSRT_CU_ASSERT(w.scales != nullptr && w.block_rows > 0 && w.block_cols > 0,
                 "fp8 weight without block scales");
  const dim3 grid(unsigned(std::min<std::int64_t>((w.cols + threads - 1) / threads, 64)),
                  unsigned(std::min<std::int64_t>(w.rows, 65535)));
  dequantize_kernel<<<grid, threads, 0, stream>>>(w, out);
  DSRT_CUDA_CHECK_LAUNCH();
}

}  // namespace dsrt::kernels::cuda
