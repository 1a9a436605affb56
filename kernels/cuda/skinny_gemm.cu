#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/skinny_gemm.cuh"

namespace dsrt::kernels::cuda {
namespace {

constexpr int warps = 8;

// sum[r] += w[e] * x[r * ldx + e] for the first n rows of x and E weights.
template <int Rows, int E>
__device__ __forceinline__ void accumulate(float (&sum)[Rows], const float (&w)[E], const float* x,
                                           std::int64_t ldx, std::int64_t n) {
#pragma unroll
  for (int r = 0; r < Rows; ++r) {
    if (r >= n) break;
#pragma unroll
    for (int e = 0; e < E; ++e) sum[r] = fmaf(w[e], x[r * ldx + e], sum[r]);
  }
}

// Calls use(row[v], v) for v = lane, lane + 32, ... < count, four loads in flight at a time:
// with few columns per step (a decode's q/k/v or o_proj) there are too few warps per SM to
// cover HBM latency with one outstanding load each.
template <class Use>
__device__ __forceinline__ void stream_row(const uint4* row, std::int64_t count, int lane, Use&& use) {
  std::int64_t v = lane;
  for (; v + 96 < count; v += 128) {
    const uint4 p0 = row[v], p1 = row[v + 32], p2 = row[v + 64], p3 = row[v + 96];
    use(p0, v);
    use(p1, v + 32);
    use(p2, v + 64);
    use(p3, v + 96);
  }
  for (; v < count; v += 32) use(row[v], v);
}

// Warp (block, warp) computes column c = blockIdx.x * warps + warp of the parts' columns laid
// end to end, for rows [0, n) of x. bf16 weights whose rows are 16-byte aligned are read 8
// elements per lane per load.
template <dtype T, int Rows>
__global__ void __launch_bounds__(warps * 32) skinny_kernel(skinny_gemm g) {
  const int lane = threadIdx.x % 32;
  std::int64_t c = std::int64_t(blockIdx.x) * warps + threadIdx.x / 32;
  int p = 0;
  while (p < g.parts && c >= g.part[p].m) c -= g.part[p++].m;
  if (p == g.parts) return;
  // This block's product of the batch.
  skinny_part part = g.part[p];
  constexpr std::int64_t element_bytes = T == dtype::f32 ? 4 : T == dtype::f8_e4m3 ? 1 : 2;
  part.w = static_cast<const char*>(part.w) + std::int64_t(blockIdx.y) * g.w_batch_stride * element_bytes;
  part.x_offset += std::int64_t(blockIdx.y) * g.x_batch_stride;
  part.y += std::int64_t(blockIdx.y) * g.y_batch_stride;
  float sum[Rows];
#pragma unroll
  for (int r = 0; r < Rows; ++r) sum[r] = 0.0f;
  const std::int64_t row_offset = c * g.k;
  const float* x = g.x + part.x_offset;
  if constexpr (T == dtype::f8_e4m3) {
    // Each weight times its block's scale, in f32 (the scale row is fixed for the column).
    const auto* wrow = static_cast<const std::uint8_t*>(part.w) + row_offset;
    const std::int64_t scaled_row =
        part.scale_row0 + std::int64_t(blockIdx.y) * (g.w_batch_stride / g.k) + c;
    const float* srow = part.scales + scaled_row / part.block_rows * part.scale_cols;
    const bool vector16 = g.k % 16 == 0 && part.block_cols % 16 == 0 &&
                          reinterpret_cast<std::uintptr_t>(wrow) % 16 == 0;
    if (vector16) {
      auto use = [&](const uint4& packed, std::int64_t v) {
        const float scale = srow[v * 16 / part.block_cols];
        const std::uint32_t words[4] = {packed.x, packed.y, packed.z, packed.w};
        float w16[16];
#pragma unroll
        for (int e = 0; e < 16; ++e)
          w16[e] = f8_e4m3_bits_to_f32(std::uint8_t(words[e / 4] >> (8 * (e % 4)))) * scale;
        accumulate(sum, w16, x + v * 16, g.ldx, g.n);
      };
      stream_row(reinterpret_cast<const uint4*>(wrow), g.k / 16, lane, use);
    } else {
      for (std::int64_t i = lane; i < g.k; i += 32) {
        const float w[1] = {f8_e4m3_bits_to_f32(wrow[i]) * srow[i / part.block_cols]};
        accumulate(sum, w, x + i, g.ldx, g.n);
      }
    }
  } else {
    const bool vector = T == dtype::bf16 && g.k % 8 == 0 &&
                        reinterpret_cast<std::uintptr_t>(part.w) % 16 == 0;
    if (vector) {
      auto use = [&](const uint4& packed, std::int64_t v) {
        const std::uint32_t words[4] = {packed.x, packed.y, packed.z, packed.w};
        float w8[8];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          w8[2 * e] = __uint_as_float(words[e] << 16);
          w8[2 * e + 1] = __uint_as_float(words[e] & 0xffff0000u);
        }
        accumulate(sum, w8, x + v * 8, g.ldx, g.n);
      };
      stream_row(reinterpret_cast<const uint4*>(static_cast<const std::uint16_t*>(part.w) + row_offset),
                 g.k / 8, lane, use);
    } else {
      for (std::int64_t i = lane; i < g.k; i += 32) {
        const float w[1] = {load_f32<T>(part.w, row_offset + i)};
        accumulate(sum, w, x + i, g.ldx, g.n);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < Rows; ++r) {
    if (r >= g.n) break;
    const float total = warp_sum(sum[r]);
    if (lane == 0) part.y[r * part.ldy + c] = total;
  }
}

}  // namespace

void launch_skinny_gemm(const skinny_gemm& g, cudaStream_t stream) {
  if (g.n <= 0) return;
  DSRT_CU_ASSERT(g.parts >= 1 && g.parts <= skinny_parts_max,
                 std::to_string(g.parts) + " parts in one skinny GEMM");
  std::int64_t columns = 0;
  for (int p = 0; p < g.parts; ++p) columns += g.part[p].m;
  if (columns <= 0) return;
  const std::int64_t blocks = (columns + warps - 1) / warps;
  DSRT_CU_ASSERT(blocks <= 0x7fffffff && g.batch >= 1 && g.batch <= 65535,
                 std::to_string(columns) + " output columns, batch " + std::to_string(g.batch));
  const dim3 grid(unsigned(blocks), unsigned(g.batch));
  for (std::int64_t r0 = 0; r0 < g.n; r0 += skinny_rows_max) {
    skinny_gemm chunk = g;
    chunk.x = g.x + r0 * g.ldx;
    chunk.n = std::min<std::int64_t>(skinny_rows_max, g.n - r0);
    for (int p = 0; p < g.parts; ++p) chunk.part[p].y = g.part[p].y + r0 * g.part[p].ldy;
    auto run = [&]<dtype T>() {
      if (chunk.n == 1) {
        skinny_kernel<T, 1><<<grid, warps * 32, 0, stream>>>(chunk);
      } else {
        skinny_kernel<T, skinny_rows_max><<<grid, warps * 32, 0, stream>>>(chunk);
      }
    };
    if (g.w_type == dtype::f8_e4m3) {
      for (int p = 0; p < g.parts; ++p)
        DSRT_CU_ASSERT(g.part[p].scales != nullptr && g.part[p].block_rows > 0 && g.part[p].block_cols > 0,
                       "fp8 weight without block scales");
      run.template operator()<dtype::f8_e4m3>();
    } else {
      dispatch_dtype(g.w_type, run);
    }
    DSRT_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace dsrt::kernels::cuda
