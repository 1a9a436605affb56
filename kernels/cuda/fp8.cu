#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/fp8.cuh"

namespace dsrt::kernels::cuda {
namespace {

constexpr int threads = 256;

__global__ void dequantize_kernel(fp8_weight w, std::uint16_t* out) {
  const std::int64_t count = w.rows * w.cols;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / w.cols, c = i % w.cols;
    const float scale = w.scales[(w.scale_row0 + r) / w.block_rows * w.scale_cols + c / w.block_cols];
    out[i] = f32_to_bf16_bits(f8_e4m3_bits_to_f32(w.data[i]) * scale);
  }
}

}  // namespace

void launch_dequantize_fp8(fp8_weight w, std::uint16_t* out, cudaStream_t stream) {
  if (w.rows <= 0 || w.cols <= 0) return;
  DSRT_CU_ASSERT(w.scales != nullptr && w.block_rows > 0 && w.block_cols > 0,
                 "fp8 weight without block scales");
  dequantize_kernel<<<grid_for(w.rows * w.cols, threads), threads, 0, stream>>>(w, out);
  DSRT_CUDA_CHECK_LAUNCH();
}

}  // namespace dsrt::kernels::cuda
