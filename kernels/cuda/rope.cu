#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/rope.cuh"

namespace dsrt::kernels::cuda {
namespace {

constexpr int threads = 128;

// One block per row; threads walk the (head, pair) grid of the row.
__global__ void rope_kernel(rope_launch r) {
  const int half = r.head_dim / 2;
  const float position = float(r.positions[blockIdx.x]);
  const int first_step = r.interleaved ? 2 : 1;
  const int partner = r.interleaved ? 1 : half;
  for (int u = threadIdx.x; u < r.heads * half; u += blockDim.x) {
    const int h = u / half, i = u % half;
    // sincosf, not __sincosf: positions times frequencies reach 1e5 radians and more, where
    // the fast intrinsic's range reduction loses every digit.
    float s, c;
    sincosf(position * r.inv_freq[i], &s, &c);
    c *= r.cos_sin_scale;
    s *= r.cos_sin_scale;
    float* first = r.x + (std::int64_t(blockIdx.x) * r.heads + h) * r.head_stride + i * first_step;
    const float a = first[0], b = first[partner];
    first[0] = a * c - b * s;
    first[partner] = b * c + a * s;
  }
}

}  // namespace

void launch_rope(const rope_launch& r, cudaStream_t stream) {
  if (r.rows <= 0 || r.heads <= 0) return;
  DSRT_CU_ASSERT(r.rows <= 0x7fffffff, std::to_string(r.rows) + " rows in one rope");
  rope_kernel<<<unsigned(r.rows), threads, 0, stream>>>(r);
  DSRT_CUDA_CHECK_LAUNCH();
}

}  // namespace dsrt::kernels::cuda
