#include <cmath>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/paged_attention.cuh"
#include "kernels/cuda/reduce.cuh"

namespace dsrt::kernels::cuda {
namespace {

constexpr int warps = 4;
constexpr int threads = warps * 32;
// Shared memory a block may use without opting in to more.
constexpr std::size_t shared_bytes_max = 48 * 1024;
// A split covers at least this many positions: below it the merge costs more than the
// parallelism gains.
constexpr int split_tokens_min = 256;

struct split_plan {
  int splits = 1;
  int split_tokens = 0;
};

int heads_per_block(const attention_launch& a);

split_plan plan_splits(const attention_launch& a, int sms) {
  const std::int64_t units = std::int64_t(a.row_count) * (a.heads / heads_per_block(a));
  split_plan p;
  p.split_tokens = a.context_max;
  if (units <= 0 || a.context_max <= split_tokens_min) return p;
  // Enough blocks for two waves on every multiprocessor, no split shorter than the minimum;
  // powers of two, so that split_tokens divides the (power of two) bucket.
  const std::int64_t wanted = (2 * std::int64_t(sms) + units - 1) / units;
  const std::int64_t most = a.context_max / split_tokens_min;
  std::int64_t splits = 1;
  while (splits < wanted && splits < most) splits *= 2;
  p.splits = int(splits);
  p.split_tokens = a.context_max / p.splits;
  return p;
}

// Block (row, head group, split): the block's Heads query heads share one KV head, so each key
// and value row is read once for all of them. Each warp walks every warps-th position of the
// split with an online softmax per head (lane l holds key and value elements l, l + 32, ...),
// then the warps' states merge in shared memory. With one split the block writes the
// normalised outputs; otherwise it writes each head's state (max, sum, unnormalised
// accumulator) for merge_kernel.
template <int KeyPerLane, int ValuePerLane, int Heads>
__global__ void __launch_bounds__(threads)
    attention_kernel(attention_launch a, int splits, int split_tokens, float* scratch) {
  extern __shared__ float shared[];
  const int key_dim = a.q0_dim + a.q1_dim;
  float* q = shared;                                  // [Heads][key_dim], scaled
  float* warp_max = q + Heads * key_dim;              // [warps][Heads]
  float* warp_sum_of = warp_max + warps * Heads;      // [warps][Heads]
  float* warp_acc = warp_sum_of + warps * Heads;      // [warps][Heads][v_dim]

  const attention_row row = a.rows[blockIdx.x];
  const int h0 = blockIdx.y * Heads, split = blockIdx.z;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int i = threadIdx.x; i < Heads * key_dim; i += threads) {
    const int h = h0 + i / key_dim, e = i % key_dim;
    const float value =
        e < a.q0_dim ? a.q0[row.q_row * a.q0_row_stride + h * a.q0_head_stride + e]
                     : a.q1[row.q_row * a.q1_row_stride + h * a.q1_head_stride + (e - a.q0_dim)];
    q[i] = value * a.scale;
  }
  __syncthreads();

  float q_lane[Heads][KeyPerLane];
  float acc[Heads][ValuePerLane];
  float m[Heads], l[Heads];
#pragma unroll
  for (int hh = 0; hh < Heads; ++hh) {
#pragma unroll
    for (int j = 0; j < KeyPerLane; ++j) {
      const int i = lane + 32 * j;
      q_lane[hh][j] = i < key_dim ? q[hh * key_dim + i] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < ValuePerLane; ++j) acc[hh][j] = 0.0f;
    m[hh] = -INFINITY;
    l[hh] = 0.0f;
  }

  // Every head of the block maps to this KV head (Heads divides kv_group).
  const std::int64_t head_offset = std::int64_t(h0 / a.kv_group) * a.kv_head_stride;
  const int begin = split * split_tokens;
  const int end = min(row.context, begin + split_tokens);
  const std::int32_t* table = a.block_tables + row.table_offset;
  const bool values_are_keys = a.values == a.keys && a.v_dim <= key_dim;
  for (int p = begin + warp; p < end; p += warps) {
    const std::int64_t slot =
        std::int64_t(table[p / a.block_tokens]) * a.block_tokens + p % a.block_tokens;
    const std::uint16_t* k = a.keys + slot * a.slot_stride + head_offset;
    float key[KeyPerLane];
#pragma unroll
    for (int j = 0; j < KeyPerLane; ++j) {
      const int i = lane + 32 * j;
      key[j] = i < key_dim ? bf16_bits_to_f32(k[i]) : 0.0f;
    }
    const std::uint16_t* v = a.values + slot * a.slot_stride + head_offset;
    float value[ValuePerLane];
#pragma unroll
    for (int j = 0; j < ValuePerLane; ++j) {
      const int i = lane + 32 * j;
      // MLA: the value is the key's first v_dim elements, already in registers.
      if constexpr (ValuePerLane <= KeyPerLane) {
        if (values_are_keys) {
          value[j] = i < a.v_dim ? key[j] : 0.0f;
          continue;
        }
      }
      value[j] = i < a.v_dim ? bf16_bits_to_f32(v[i]) : 0.0f;
    }
#pragma unroll
    for (int hh = 0; hh < Heads; ++hh) {
      float dot = 0.0f;
#pragma unroll
      for (int j = 0; j < KeyPerLane; ++j) dot += q_lane[hh][j] * key[j];
      dot = warp_sum(dot);
      const float m_new = fmaxf(m[hh], dot);
      const float correction = expf(m[hh] - m_new);   // 0 on the first position (m = -inf)
      const float weight = expf(dot - m_new);
      l[hh] = l[hh] * correction + weight;
#pragma unroll
      for (int j = 0; j < ValuePerLane; ++j) acc[hh][j] = acc[hh][j] * correction + weight * value[j];
      m[hh] = m_new;
    }
  }

#pragma unroll
  for (int hh = 0; hh < Heads; ++hh) {
    if (lane == 0) {
      warp_max[warp * Heads + hh] = m[hh];
      warp_sum_of[warp * Heads + hh] = l[hh];
    }
#pragma unroll
    for (int j = 0; j < ValuePerLane; ++j) {
      const int i = lane + 32 * j;
      if (i < a.v_dim) warp_acc[(warp * Heads + hh) * a.v_dim + i] = acc[hh][j];
    }
  }
  __syncthreads();

  for (int hh = 0; hh < Heads; ++hh) {
    const int h = h0 + hh;
    float block_max = -INFINITY;
    for (int w = 0; w < warps; ++w) block_max = fmaxf(block_max, warp_max[w * Heads + hh]);
    float factor[warps];
    float block_sum_of = 0.0f;
    for (int w = 0; w < warps; ++w) {
      const float mw = warp_max[w * Heads + hh];
      factor[w] = mw == -INFINITY ? 0.0f : expf(mw - block_max);
      block_sum_of += warp_sum_of[w * Heads + hh] * factor[w];
    }
    if (splits == 1) {
      float* o = a.out + row.q_row * a.out_row_stride + std::int64_t(h) * a.v_dim;
      const float inverse = 1.0f / block_sum_of;
      for (int i = threadIdx.x; i < a.v_dim; i += threads) {
        float sum = 0.0f;
        for (int w = 0; w < warps; ++w) sum += warp_acc[(w * Heads + hh) * a.v_dim + i] * factor[w];
        o[i] = sum * inverse;
      }
      continue;
    }
    const std::int64_t unit = std::int64_t(blockIdx.x) * a.heads + h;
    float* state = scratch + (unit * splits + split) * (a.v_dim + 2);
    if (threadIdx.x == 0) {
      state[0] = block_max;
      state[1] = block_sum_of;
    }
    for (int i = threadIdx.x; i < a.v_dim; i += threads) {
      float sum = 0.0f;
      for (int w = 0; w < warps; ++w) sum += warp_acc[(w * Heads + hh) * a.v_dim + i] * factor[w];
      state[2 + i] = sum;
    }
  }
}

// Block (row, head): merges the splits' states into the normalised output.
__global__ void __launch_bounds__(threads)
    merge_kernel(attention_launch a, int splits, const float* scratch) {
  const attention_row row = a.rows[blockIdx.x];
  const int h = blockIdx.y;
  const std::int64_t unit = std::int64_t(blockIdx.x) * a.heads + h;
  const float* states = scratch + unit * splits * (a.v_dim + 2);
  float m = -INFINITY;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, states[s * (a.v_dim + 2)]);
  float l = 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float ms = states[s * (a.v_dim + 2)];
    if (ms != -INFINITY) l += states[s * (a.v_dim + 2) + 1] * expf(ms - m);
  }
  const float inverse = 1.0f / l;
  float* o = a.out + row.q_row * a.out_row_stride + std::int64_t(h) * a.v_dim;
  for (int i = threadIdx.x; i < a.v_dim; i += threads) {
    float sum = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float ms = states[s * (a.v_dim + 2)];
      if (ms != -INFINITY) sum += states[s * (a.v_dim + 2) + 2 + i] * expf(ms - m);
    }
    o[i] = sum * inverse;
  }
}

template <int KeyPerLane, int ValuePerLane, int Heads>
void launch_with(const attention_launch& a, const split_plan& plan, float* scratch,
                 cudaStream_t stream) {
  const std::size_t shared_bytes =
      sizeof(float) * (std::size_t(Heads) * (a.q0_dim + a.q1_dim) + 2 * warps * Heads +
                       std::size_t(warps) * Heads * a.v_dim);
  DSRT_CU_ASSERT(shared_bytes <= shared_bytes_max,
                 "attention needs " + std::to_string(shared_bytes) + " bytes of shared memory");
  const dim3 grid(unsigned(a.row_count), unsigned(a.heads / Heads), unsigned(plan.splits));
  attention_kernel<KeyPerLane, ValuePerLane, Heads>
      <<<grid, threads, shared_bytes, stream>>>(a, plan.splits, plan.split_tokens, scratch);
  DSRT_CUDA_CHECK_LAUNCH();
  if (plan.splits > 1) {
    merge_kernel<<<dim3(unsigned(a.row_count), unsigned(a.heads)), threads, 0, stream>>>(
        a, plan.splits, scratch);
    DSRT_CUDA_CHECK_LAUNCH();
  }
}

// Query heads per block: the most (up to Most) that divide the KV group.
template <int KeyPerLane, int ValuePerLane, int Most>
void launch_grouped(const attention_launch& a, const split_plan& plan, float* scratch,
                    cudaStream_t stream) {
  if constexpr (Most > 1) {
    if (a.kv_group % Most == 0) return launch_with<KeyPerLane, ValuePerLane, Most>(a, plan, scratch, stream);
    return launch_grouped<KeyPerLane, ValuePerLane, Most / 2>(a, plan, scratch, stream);
  } else {
    launch_with<KeyPerLane, ValuePerLane, 1>(a, plan, scratch, stream);
  }
}

// Query heads one block serves: as launch_grouped picks them.
int heads_per_block(const attention_launch& a) {
  const int most = a.q0_dim + a.q1_dim <= 256 && a.v_dim <= 256 ? 8 : 4;
  int h = most;
  while (h > 1 && a.kv_group % h != 0) h /= 2;
  return h;
}

}  // namespace

std::int64_t attention_scratch_floats(const attention_launch& a, int sms) {
  const split_plan plan = plan_splits(a, sms);
  if (plan.splits == 1) return 0;
  return std::int64_t(a.row_count) * a.heads * plan.splits * (a.v_dim + 2);
}

void launch_attention(const attention_launch& a, int sms, float* scratch, cudaStream_t stream) {
  if (a.row_count <= 0 || a.heads <= 0) return;
  const int key_dim = a.q0_dim + a.q1_dim;
  DSRT_CU_ASSERT(key_dim > 0 && key_dim <= attention_key_dim_max && a.v_dim > 0 &&
                  a.v_dim <= attention_value_dim_max && a.heads <= 65535 && a.kv_group > 0,
                 "attention key dim " + std::to_string(key_dim) + " value dim " +
                     std::to_string(a.v_dim) + " heads " + std::to_string(a.heads) + " group " +
                     std::to_string(a.kv_group));
  DSRT_CU_ASSERT(a.context_max == attention_context_bucket(a.context_max),
                 "attention context_max " + std::to_string(a.context_max) + " is not a bucket");
  const split_plan plan = plan_splits(a, sms);
  DSRT_CU_ASSERT(plan.splits == 1 || scratch != nullptr, "split-K attention without scratch");
  DSRT_CU_ASSERT(a.heads % a.kv_group == 0, "heads " + std::to_string(a.heads) + " not a multiple of the KV group " +
                                                 std::to_string(a.kv_group));
  // Registers: Heads x (KeyPerLane + ValuePerLane) floats per lane; MLA's 576/512-wide rows
  // take at most 4 heads a block, GQA's up to 256 take 8.
  if (key_dim <= 128 && a.v_dim <= 128) {
    launch_grouped<4, 4, 8>(a, plan, scratch, stream);
  } else if (key_dim <= 256 && a.v_dim <= 256) {
    launch_grouped<8, 8, 8>(a, plan, scratch, stream);
  } else {
    launch_grouped<18, 16, 4>(a, plan, scratch, stream);
  }
}

}  // namespace dsrt::kernels::cuda
