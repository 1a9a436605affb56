#include <cmath>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/sampling.cuh"

namespace dsrt::kernels::cuda {
namespace {

constexpr int threads = 512;
constexpr std::int64_t none = 0x7fffffffffffffffll;

// (value, index) a beats (value, index) b: larger value, or the same value at a lower index.
// NaN never beats anything (it compares false), and an index of `none` holds nothing yet.
__device__ __forceinline__ bool beats(float av, std::int64_t ai, float bv, std::int64_t bi) {
  return ai != none && (bi == none || av > bv || (av == bv && ai < bi));
}

__global__ void __launch_bounds__(threads)
    argmax_kernel(const float* x, std::int64_t cols, std::int32_t* ids) {
  __shared__ float best_value[threads];
  __shared__ std::int64_t best_index[threads];
  const float* row = x + std::int64_t(blockIdx.x) * cols;
  float v = -INFINITY;
  std::int64_t at = none;
  for (std::int64_t i = threadIdx.x; i < cols; i += threads) {
    const float value = row[i];
    if (value != value) continue;  // NaN
    if (at == none || value > v) {  // strided in increasing i: ties keep the first
      v = value;
      at = i;
    }
  }
  best_value[threadIdx.x] = v;
  best_index[threadIdx.x] = at;
  __syncthreads();
  for (int half = threads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      const int other = threadIdx.x + half;
      if (beats(best_value[other], best_index[other], best_value[threadIdx.x],
                best_index[threadIdx.x])) {
        best_value[threadIdx.x] = best_value[other];
        best_index[threadIdx.x] = best_index[other];
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) ids[blockIdx.x] = std::int32_t(best_index[0] == none ? 0 : best_index[0]);
}

}  // namespace

void launch_argmax_rows(const float* x, std::int64_t rows, std::int64_t cols, std::int32_t* ids,
                        cudaStream_t stream) {
  if (rows <= 0) return;
  DSRT_CU_ASSERT(rows <= 0x7fffffff && cols <= 0x7fffffff,
                 "argmax over " + std::to_string(rows) + " x " + std::to_string(cols));
  argmax_kernel<<<unsigned(rows), threads, 0, stream>>>(x, cols, ids);
  DSRT_CUDA_CHECK_LAUNCH();
}

}  // namespace dsrt::kernels::cuda
