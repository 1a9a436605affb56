#pragma once
// Rotary position embedding in place, "rotate half" (Llama, Qwen2) or interleaved pairs
// (GPT-J style, DeepSeek's MLA), as kernels/backend.h describes rope().
#include <cuda_runtime.h>

#include <cstdint>

namespace dsrt::kernels::cuda {

struct rope_launch {
  float* x = nullptr;                 // [rows, heads, head_stride] (device)
  std::int64_t rows = 0;
  int heads = 0;
  int head_dim = 0;
  std::int64_t head_stride = 0;
  const std::int32_t* positions = nullptr;  // [rows] (device)
  const float* inv_freq = nullptr;          // [head_dim / 2] (device)
  float cos_sin_scale = 1.0f;
  bool interleaved = false;
};

void launch_rope(const rope_launch& r, cudaStream_t stream);

}  // namespace dsrt::kernels::cuda
