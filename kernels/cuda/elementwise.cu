#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/elementwise.cuh"

namespace dsrt::kernels::cuda {
namespace {

constexpr int threads = 256;

template <dtype T>
__global__ void convert_kernel(const float* x, std::int64_t count, std::uint16_t* out) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * blockDim.x)
    out[i] = T == dtype::bf16 ? f32_to_bf16_bits(x[i]) : f32_to_f16_bits(x[i]);
}

__global__ void add_kernel(float* x, const float* y, std::int64_t count) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

__global__ void swiglu_kernel(const float* gate, const float* up, std::int64_t count, float* out) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

template <dtype T>
__global__ void add_bias_kernel(float* y, std::int64_t rows, std::int64_t cols,
                                std::int64_t y_stride, const void* bias) {
  const std::int64_t count = rows * cols;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / cols, c = i % cols;
    y[r * y_stride + c] += load_f32<T>(bias, c);
  }
}

}  // namespace

void launch_convert_from_f32(const float* x, std::int64_t count, dtype type, void* out,
                             cudaStream_t stream) {
  if (count <= 0) return;
  auto* o = static_cast<std::uint16_t*>(out);
  if (type == dtype::bf16) {
    convert_kernel<dtype::bf16><<<grid_for(count, threads), threads, 0, stream>>>(x, count, o);
  } else {
    DSRT_CU_ASSERT(type == dtype::f16,
                   "no conversion from f32 to " + std::string(dtype_name(type)));
    convert_kernel<dtype::f16><<<grid_for(count, threads), threads, 0, stream>>>(x, count, o);
  }
  DSRT_CUDA_CHECK_LAUNCH();
}

void launch_add(float* x, const float* y, std::int64_t count, cudaStream_t stream) {
  if (count <= 0) return;
  add_kernel<<<grid_for(count, threads), threads, 0, stream>>>(x, y, count);
  DSRT_CUDA_CHECK_LAUNCH();
}

void launch_swiglu(const float* gate, const float* up, std::int64_t count, float* out,
                   cudaStream_t stream) {
  if (count <= 0) return;
  swiglu_kernel<<<grid_for(count, threads), threads, 0, stream>>>(gate, up, count, out);
  DSRT_CUDA_CHECK_LAUNCH();
}

void launch_add_bias(float* y, std::int64_t rows, std::int64_t cols, std::int64_t y_stride,
                     const void* bias, dtype bias_type, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  dispatch_dtype(bias_type, [&]<dtype T>() {
    add_bias_kernel<T><<<grid_for(rows * cols, threads), threads, 0, stream>>>(y, rows, cols,
                                                                              y_stride, bias);
  });
  DSRT_CUDA_CHECK_LAUNCH();
}

}  // namespace dsrt::kernels::cuda
