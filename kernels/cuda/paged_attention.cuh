#pragma once
// Causal attention of query rows over a paged bf16 cache, flash-decoding style: each query
// row and head is split into chunks of the context that run as blocks of their own (split-K)
// and a second kernel merges the chunks' softmax states. One kernel serves both cache kinds:
//  - MHA/GQA (paged_attention): keys and values are separate arrays, query head h reads KV
//    head h / kv_group;
//  - MLA in absorbed form (latent_attention): the key of a position is [latent | rope_key]
//    and its value is the latent, all heads share one cache row (kv_group = heads), and the
//    query is the concatenation of two arrays (q_latent, q_rope).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/attention_metadata.h"

namespace dsrt::kernels::cuda {


struct attention_launch {
  // Query head h of row r: q0[r * q0_row_stride + h * q0_head_stride + i] for i < q0_dim,
  // then q1 likewise for q1_dim more values (q1_dim = 0: none).
  const float* q0 = nullptr;
  std::int64_t q0_row_stride = 0, q0_head_stride = 0;
  int q0_dim = 0;
  const float* q1 = nullptr;
  std::int64_t q1_row_stride = 0, q1_head_stride = 0;
  int q1_dim = 0;
  int heads = 0;
  int kv_group = 1;                     // query heads per KV head
  // Position p of KV head g: slot = table[p / block_tokens] * block_tokens + p % block_tokens;
  // its key is keys[slot * slot_stride + g * kv_head_stride + i] for i < q0_dim + q1_dim, its
  // value values[... + i] for i < v_dim.
  const std::uint16_t* keys = nullptr;
  const std::uint16_t* values = nullptr;
  std::int64_t slot_stride = 0, kv_head_stride = 0;
  int v_dim = 0;
  int block_tokens = 16;
  const std::int32_t* block_tables = nullptr;   // device
  const attention_row* rows = nullptr;          // device
  int row_count = 0;
  // At least the largest rows[i].context, and a power of two: the split plan depends on it,
  // so bucketing keeps a growing decode's launches equal step after step (step graphs).
  int context_max = 0;
  float scale = 1.0f;
  // out[r * out_row_stride + h * v_dim + i].
  float* out = nullptr;
  std::int64_t out_row_stride = 0;
};

// Scratch floats the split-K states need for `a` on a device with `sms` multiprocessors
// (0: no split, no scratch).
std::int64_t attention_scratch_floats(const attention_launch& a, int sms);

// REQUIRES: q0_dim + q1_dim <= attention_key_dim_max, v_dim <= attention_value_dim_max;
// scratch has attention_scratch_floats(a, sms) floats (device).
inline constexpr int attention_key_dim_max = 576;    // DeepSeek-V3: latent 512 + rope 64
inline constexpr int attention_value_dim_max = 512;
void launch_attention(const attention_launch& a, int sms, float* scratch, cudaStream_t stream);

}  // namespace dsrt::kernels::cuda
