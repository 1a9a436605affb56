#pragma once
// y = x . w^T for few rows of x (decode steps): one warp per output column reads its weight
// row once for all rows of x, so the weight streams from HBM at full width. Also the
// fallback for shapes cuBLASLt has no algorithm for (any n, in chunks).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace dsrt::kernels::cuda {

// Rows of x one launch covers; more are done in chunks.
inline constexpr int skinny_rows_max = 8;

struct skinny_gemm {
  const float* x = nullptr;          // [n, k], rows ldx floats apart
  std::int64_t n = 0, k = 0, ldx = 0;
  const void* w = nullptr;           // [m, k] of w_type, rows k elements apart
  dtype w_type = dtype::bf16;
  std::int64_t m = 0;
  float* y = nullptr;                // [n, m], rows ldy floats apart
  std::int64_t ldy = 0;
};

void launch_skinny_gemm(const skinny_gemm& g, cudaStream_t stream);

}  // namespace dsrt::kernels::cuda
