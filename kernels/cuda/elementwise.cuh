#pragma once
// Elementwise kernels: conversions for GEMM inputs, residual add, SwiGLU, bias.
// Every launcher queues work on `stream` and returns at once.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace dsrt::kernels::cuda {

// out[i] = x[i] as bf16 or f16 (type), count elements.
void launch_convert_from_f32(const float* x, std::int64_t count, dtype type, void* out,
                             cudaStream_t stream);
// x[i] += y[i].
void launch_add(float* x, const float* y, std::int64_t count, cudaStream_t stream);
// out[i] = silu(gate[i]) * up[i] (out may alias gate).
void launch_swiglu(const float* gate, const float* up, std::int64_t count, float* out,
                   cudaStream_t stream);
// y[t, c] += bias[c] for t < rows, c < cols (y's rows are y_stride floats apart).
void launch_add_bias(float* y, std::int64_t rows, std::int64_t cols, std::int64_t y_stride,
                     const void* bias, dtype bias_type, cudaStream_t stream);

}  // namespace dsrt::kernels::cuda
