#pragma once
// Writes new tokens' f32 rows into a paged bf16 cache (keys, values, MLA latents).
#include <cuda_runtime.h>

#include <cstdint>

namespace dsrt::kernels::cuda {

// For i < count: cache[slots[i] * slot_stride + offset + c] = bf16(src[rows[i] * width + c])
// for c < width (rows, slots: device; the slots already checked against the block tables).
void launch_cache_write(const float* src, std::int64_t width, const std::int32_t* rows,
                        const std::int64_t* slots,
                        std::int64_t count, std::uint16_t* cache, std::int64_t slot_stride,
                        std::int64_t offset, cudaStream_t stream);

}  // namespace dsrt::kernels::cuda
