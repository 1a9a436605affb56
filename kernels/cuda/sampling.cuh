#pragma once
// Sampling on the GPU. Greedy for now: the argmax of each row of logits, so a decode step
// sends the host one id per sequence instead of a row of vocab_size floats.
#include <cuda_runtime.h>

#include <cstdint>

namespace dsrt::kernels::cuda {

// ids[r] = the lowest index of the largest value of row r of x [rows, cols], NaN ignored;
// 0 when a row is all NaN (ids: device).
void launch_argmax_rows(const float* x, std::int64_t rows, std::int64_t cols, std::int32_t* ids,
                        cudaStream_t stream);

}  // namespace dsrt::kernels::cuda
