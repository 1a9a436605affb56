#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/kv_cache.cuh"

namespace dsrt::kernels::cuda {
namespace {

constexpr int threads = 128;

__global__ void cache_write_kernel(const float* src, std::int64_t width, const std::int32_t* rows,
                                   const std::int64_t* slots,
                                   std::uint16_t* cache, std::int64_t slot_stride,
                                   std::int64_t offset) {
  const float* s = src + std::int64_t(rows[blockIdx.x]) * width;
  std::uint16_t* d = cache + slots[blockIdx.x] * slot_stride + offset;
  for (std::int64_t c = threadIdx.x; c < width; c += blockDim.x) d[c] = f32_to_bf16_bits(s[c]);
}

}  // namespace

void launch_cache_write(const float* src, std::int64_t width, const std::int32_t* rows,
                        const std::int64_t* slots,
                        std::int64_t count, std::uint16_t* cache, std::int64_t slot_stride,
                        std::int64_t offset, cudaStream_t stream) {
  if (count <= 0 || width <= 0) return;
  DSRT_CU_ASSERT(count <= 0x7fffffff, std::to_string(count) + " rows in one cache write");
  cache_write_kernel<<<unsigned(count), threads, 0, stream>>>(src, width, rows, slots, cache,
                                                              slot_stride, offset);
  DSRT_CUDA_CHECK_LAUNCH();
}

}  // namespace dsrt::kernels::cuda
