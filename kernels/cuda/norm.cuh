#pragma once
// RMSNorm: y[t, :] = x[t, :] / rms(x[t, :]) * gamma, one block per row.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace dsrt::kernels::cuda {

// x and y may alias. gamma: dim values of gamma_type (device).
void launch_rms_norm(const float* x, std::int64_t rows, std::int64_t dim, const void* gamma,
                     dtype gamma_type, float eps, float* y, cudaStream_t stream);

}  // namespace dsrt::kernels::cuda
