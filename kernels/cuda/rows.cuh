#pragma once
// Row moves: embedding lookup, gathering rows, and the ordered scatter-add that combines an
// MoE layer's expert outputs.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace dsrt::kernels::cuda {

// out[t, :] = table[ids[t], :] as f32 (ids: device, already checked against the table).
void launch_embed(const void* table, dtype type, std::int64_t dim, const std::int32_t* ids,
                  std::int64_t count, float* out, cudaStream_t stream);
// dst[i, :] = src[rows[i], :] (rows: device).
void launch_gather_rows(const float* src, std::int64_t dim, const std::int32_t* rows,
                        std::int64_t count, float* dst, cudaStream_t stream);
// dst[rows[i], :] += weights[i] * src[i, :] for i = 0, 1, ... in that order, so that a row
// named twice gets its terms in the same order as on the CPU (rows, weights: device).
void launch_scatter_add_rows(float* dst, std::int64_t dim, const std::int32_t* rows,
                             const float* weights, std::int64_t count, const float* src,
                             cudaStream_t stream);

}  // namespace dsrt::kernels::cuda
