#pragma once
// y = x . w^T for few rows of x (decode steps): one warp per output column reads its weight
// row once for all rows of x, so the weights stream from HBM at full width. One launch covers
// up to skinny_parts_max products (q/k/v, gate/up, attention heads), their columns end to
// end; each reads x at its own offset. A batch of such products (grid.y) covers the heads of
// matmul_heads in one launch.
// Also the fallback for shapes cuBLASLt has no algorithm for (any n, in chunks of rows).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace dsrt::kernels::cuda {

// Rows of x one launch covers; more are done in chunks.
inline constexpr int skinny_rows_max = 8;
// Products one launch covers; more are done in further launches.
inline constexpr int skinny_parts_max = 4;

struct skinny_part {
  const void* w = nullptr;           // [m, k] of the gemm's w_type, rows k elements apart
  std::int64_t x_offset = 0;         // this product's x starts this many floats into x
  std::int64_t m = 0;
  float* y = nullptr;                // [n, m], rows ldy floats apart
  std::int64_t ldy = 0;
  // f8_e4m3 only: block scales as in weight_ref (row r of w is row scale_row0 + r of the
  // scaled tensor; product b of a batch starts w_batch_stride / k rows further on).
  const float* scales = nullptr;
  std::int64_t scale_cols = 0, scale_row0 = 0;
  int block_rows = 128, block_cols = 128;
};

struct skinny_gemm {
  const float* x = nullptr;          // [n, k], rows ldx floats apart
  std::int64_t n = 0, k = 0, ldx = 0;
  dtype w_type = dtype::bf16;
  int parts = 1;
  skinny_part part[skinny_parts_max];
  // Products repeated `batch` times (one per attention head): product b reads its weight
  // b * w_batch_stride elements, its x b * x_batch_stride floats and writes its y
  // b * y_batch_stride floats further on.
  int batch = 1;
  std::int64_t w_batch_stride = 0, x_batch_stride = 0, y_batch_stride = 0;
};

void launch_skinny_gemm(const skinny_gemm& g, cudaStream_t stream);

}  // namespace dsrt::kernels::cuda
