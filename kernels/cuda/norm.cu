#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/norm.cuh"
#include "kernels/cuda/reduce.cuh"

namespace dsrt::kernels::cuda {
namespace {

constexpr int threads = 256;

template <dtype T>
__global__ void rms_norm_kernel(const float* x, std::int64_t dim, const void* gamma, float eps,
                                float* y) {
  __shared__ float partial[32];
  const float* xr = x + blockIdx.x * dim;
  float* yr = y + blockIdx.x * dim;
  float sum = 0.0f;
  for (std::int64_t i = threadIdx.x; i < dim; i += blockDim.x) sum += xr[i] * xr[i];
  sum = block_sum(sum, partial);
  // As the CPU reference: x * (1 / sqrt(mean + eps)) * gamma, in that order.
  const float scale = 1.0f / sqrtf(sum / float(dim) + eps);
  for (std::int64_t i = threadIdx.x; i < dim; i += blockDim.x)
    yr[i] = xr[i] * scale * load_f32<T>(gamma, i);
}

}  // namespace

void launch_rms_norm(const float* x, std::int64_t rows, std::int64_t dim, const void* gamma,
                     dtype gamma_type, float eps, float* y, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  DSRT_CU_ASSERT(rows <= 0x7fffffff, std::to_string(rows) + " rows in one rms_norm");
  dispatch_dtype(gamma_type, [&]<dtype T>() {
    rms_norm_kernel<T><<<unsigned(rows), threads, 0, stream>>>(x, dim, gamma, eps, y);
  });
  DSRT_CUDA_CHECK_LAUNCH();
}

}  // namespace dsrt::kernels::cuda
