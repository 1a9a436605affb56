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
  lt_gemm(cublasLtHandle_t handle, cudaStream_t stream, void* workspace, std::size_t workspace_bytes);
  ~lt_gemm();
  lt_gemm(const lt_gemm&) = delete;
  lt_gemm& operator=(const lt_gemm&) = delete;

  // Queues the product; false (nothing queued) when cuBLASLt has no algorithm for it.
  bool run(const gemm_problem& p);

 private:
  struct plan;
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

  cudaStream_t stream_;
  void* workspace_;
  std::size_t workspace_bytes_;
  cublasLtHandle_t handle_ = nullptr;
  std::unordered_map<key, std::unique_ptr<plan>, key_hash> plans_;
};

}  // namespace dsrt::kernels::cuda
