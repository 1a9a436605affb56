#pragma once
// cuBLASLt GEMMs with f32 accumulation and f32 output: y = x . w^T, x and w both f32, f16 or
// bf16, optionally batched with strides (one product per attention head). The matmul
// descriptors and the heuristic's algorithm are cached per shape and pointer alignment, so a
// steady decode loop queries cuBLASLt once per shape.
//
// Thread safety: none (one caller at a time, as the backend).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "kernels/dtype.h"

namespace dsrt::kernels::cuda {

struct gemm_problem {
  dtype type = dtype::bf16;           // of x and w
  const void* w = nullptr;            // [m, k], rows k apart
  std::int64_t m = 0, k = 0;
  const void* x = nullptr;            // [n, k], rows ldx apart
  std::int64_t n = 0, ldx = 0;
  float* y = nullptr;                 // [n, m], rows ldy apart
  std::int64_t ldy = 0;
  int batch = 1;                      // products; product b adds b * *_batch_stride elements
  std::int64_t w_batch_stride = 0, x_batch_stride = 0, y_batch_stride = 0;
};

class lt_gemm {
 public:
  // Takes ownership of handle (cublasLtCreate's, made by the caller so that its failure is
  // the caller's error to report).
  lt_gemm(cublasLtHandle_t handle, void* workspace, std::size_t workspace_bytes);
  ~lt_gemm();
  lt_gemm(const lt_gemm&) = delete;
  lt_gemm& operator=(const lt_gemm&) = delete;

  struct plan;
  // The cached descriptors and algorithm for p's shape, or nullptr when cuBLASLt has none.
  // Valid until trim().
  const plan* prepare(const gemm_problem& p);
  // Queues the product on stream. REQUIRES: pl = prepare(p) (or of a problem of the same
  // shape and alignments), not nullptr.
  void issue(const plan* pl, const gemm_problem& p, cudaStream_t stream) const;
  // Forgets every plan when more than plans_max are cached. Only where no queued or recorded
  // work refers to one (after a flush).
  void trim();

 private:
  struct key {
    dtype type;
    std::int64_t m, n, k, ldx, ldy;
    int batch;
    std::int64_t w_batch_stride, x_batch_stride, y_batch_stride;
    int w_align, x_align, y_align;
    bool operator==(const key&) const = default;
  };
  struct key_hash {
    std::size_t operator()(const key& k) const;
  };
  const plan* plan_for(const key& k);

  void* workspace_;
  std::size_t workspace_bytes_;
  cublasLtHandle_t handle_ = nullptr;
  std::unordered_map<key, std::unique_ptr<plan>, key_hash> plans_;
};

}  // namespace dsrt::kernels::cuda

namespace dsrt::kernels::cuda {
// gemm->issue(plan, p, stream) as a launch function (launcher.h).
inline void launch_lt_matmul(const lt_gemm* gemm, const lt_gemm::plan* plan, gemm_problem p,
                             cudaStream_t stream) {
  gemm->issue(plan, p, stream);
}
}  // namespace dsrt::kernels::cuda
