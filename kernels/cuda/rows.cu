#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/rows.cuh"

namespace dsrt::kernels::cuda {
namespace {

constexpr int threads = 256;

template <dtype T>
__global__ void embed_kernel(const void* table, std::int64_t dim, const std::int32_t* ids,
                             float* out) {
  const std::int64_t base = std::int64_t(ids[blockIdx.x]) * dim;
  for (std::int64_t i = threadIdx.x; i < dim; i += blockDim.x)
    out[blockIdx.x * dim + i] = load_f32<T>(table, base + i);
}

__global__ void gather_rows_kernel(const float* src, std::int64_t dim, const std::int32_t* rows,
                                   float* dst) {
  const float* s = src + std::int64_t(rows[blockIdx.x]) * dim;
  for (std::int64_t i = threadIdx.x; i < dim; i += blockDim.x) dst[blockIdx.x * dim + i] = s[i];
}

// One thread per column; each walks the terms in order (the order is the contract).
__global__ void scatter_add_rows_kernel(float* dst, std::int64_t dim, const std::int32_t* rows,
                                        const float* weights, std::int64_t count,
                                        const float* src) {
  const std::int64_t c = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (c >= dim) return;
  for (std::int64_t i = 0; i < count; ++i) {
    float* d = dst + std::int64_t(rows[i]) * dim + c;
    *d = fmaf(weights[i], src[i * dim + c], *d);
  }
}

}  // namespace

void launch_embed(const void* table, dtype type, std::int64_t dim, const std::int32_t* ids,
                  std::int64_t count, float* out, cudaStream_t stream) {
  if (count <= 0) return;
  DSRT_CU_ASSERT(count <= 0x7fffffff, std::to_string(count) + " rows in one embed");
  dispatch_dtype(type, [&]<dtype T>() {
    embed_kernel<T><<<unsigned(count), threads, 0, stream>>>(table, dim, ids, out);
  });
  DSRT_CUDA_CHECK_LAUNCH();
}

void launch_gather_rows(const float* src, std::int64_t dim, const std::int32_t* rows,
                        std::int64_t count, float* dst, cudaStream_t stream) {
  if (count <= 0) return;
  DSRT_CU_ASSERT(count <= 0x7fffffff, std::to_string(count) + " rows in one gather");
  gather_rows_kernel<<<unsigned(count), threads, 0, stream>>>(src, dim, rows, dst);
  DSRT_CUDA_CHECK_LAUNCH();
}

void launch_scatter_add_rows(float* dst, std::int64_t dim, const std::int32_t* rows,
                             const float* weights, std::int64_t count, const float* src,
                             cudaStream_t stream) {
  if (count <= 0 || dim <= 0) return;
  const unsigned blocks = unsigned((dim + threads - 1) / threads);
  scatter_add_rows_kernel<<<blocks, threads, 0, stream>>>(dst, dim, rows, weights, count, src);
  DSRT_CUDA_CHECK_LAUNCH();
}

}  // namespace dsrt::kernels::cuda
