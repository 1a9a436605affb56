#pragma once
// The CUDA backend's class, private to kernels/cuda/: kernels/backend.h on one GPU. One
// stream per backend; every operation is queued on it and returns at once, except
// copy_to_host and synchronize, which wait. Host metadata goes through `staging`, device
// memory through `device_pool`, launches through `launcher` (step graphs), products through
// cuBLASLt (lt_gemm) or, for few rows, the skinny kernel. The definitions are in
// cuda_backend.cpp (memory, elementwise, attention, the factory) and products.cpp (matmul
// and its relatives).
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "kernels/assert.h"
#include "kernels/backend.h"
#include "kernels/cuda/attention_metadata.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_pool.h"
#include "kernels/cuda/launcher.h"
#include "kernels/cuda/lt_gemm.h"
#include "kernels/cuda/paged_attention.cuh"
#include "kernels/cuda/skinny_gemm.cuh"
#include "kernels/cuda/staging.h"
#include "kernels/cuda_backend.h"

namespace dsrt::kernels::cuda {

// Host-to-device copies up to this size go through the pinned staging ring (asynchronous);
// larger ones (weights at load) wait for the copy.
constexpr std::size_t staged_copy_bytes_max = std::size_t(1) << 20;

// Products with at most this many rows of x go through the skinny kernel (the weights are
// read once at full bandwidth; cuBLASLt's tiles would waste most of their rows).
constexpr std::int64_t skinny_rows_limit = 8;

// CUDA's current device is per host thread, and an actor may run on any scheduler thread, so
// every entry point sets it. All of the backend's settings go through here, so the thread's
// last one is known without asking the driver.
cudaError_t set_device(int device);
// The failed call's error, cleared (cudaPeekAtLastError, which the launch checks use, would
// otherwise report it again at the next launch on this thread).
std::string error_text(const char* what, cudaError_t e);
// DSRT_CUDA_GRAPHS=0 turns step graphs off (to tell a graph problem from a kernel one).
bool graphs_from_environment();

// A device buffer that grows to the largest request and is reused.
class device_scratch {
 public:
  explicit device_scratch(device_pool& pool) : pool_(pool) {}
  ~device_scratch() { pool_.free(ptr_); }
  void* get(std::size_t bytes) {
    if (bytes <= bytes_) return ptr_;
    pool_.free(ptr_);  // later work on the one stream runs after the work that used it
    ptr_ = pool_.alloc(bytes);
    DSRT_ASSERT(ptr_ != nullptr, "device memory exhausted growing a scratch buffer to {} bytes",
                bytes);
    bytes_ = bytes;
    return ptr_;
  }

 private:
  device_pool& pool_;
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

class cuda_backend final : public backend {
 public:
  // Acquires nothing that can fail: init() does, and the factory reports its error.
  cuda_backend(const cuda_backend_options& options, const cudaDeviceProp& props)
      : device_(options.device),
        staging_bytes_(options.staging_bytes),
        graphs_(options.graphs && graphs_from_environment()),
        pool_([](std::size_t bytes) {
                void* p = nullptr;
                if (cudaMalloc(&p, bytes) != cudaSuccess) {
                  (void)cudaGetLastError();  // clear the out-of-memory error (it is not sticky)
                  return static_cast<void*>(nullptr);
                }
                return p;
              },
              // cudaFree waits for the device, but not for launches still being recorded.
              [this](void* p) {
                if (launcher_) launcher_->flush();
                const cudaError_t e = cudaFree(p);
                if (tearing_down_) {
                  (void)cudaGetLastError();  // after a device fault, still let go of the rest
                } else {
                  DSRT_CUDA_CHECK(e);  // fails only on a device fault: report it here
                }
              },
              props.totalGlobalMem),
        x_converted_(pool_),
        attention_scratch_(pool_),
        copy_scratch_(pool_),
        ids_scratch_(pool_),
        dequantized_(pool_) {
    sms_ = props.multiProcessorCount;
    caps_.name = "cuda:" + std::to_string(device_);
    caps_.detail = std::string(props.name) + " sm_" + std::to_string(props.major) +
                   std::to_string(props.minor) + (graphs_ ? ", step graphs" : ", no graphs");
    caps_.threads = 1;
    caps_.host_visible_memory = false;
    caps_.weights_zero_copy = false;
    // f16 is accepted and kept as f32 on the device (upload_weight); f8_e4m3 with block
    // scales goes through the skinny kernel as it is, or dequantised to bf16 for cuBLASLt.
    caps_.weight_dtypes = {dtype::f32, dtype::f16, dtype::bf16, dtype::f8_e4m3};
  }

  // The stream, the GEMM workspace, the staging buffers and cuBLASLt; "" or what failed.
  std::string init();

  ~cuda_backend() override;

  const backend_caps& caps() const override { return caps_; }

  // --- memory ---------------------------------------------------------------------------
  void* alloc(std::size_t bytes) override;
  void free(void* ptr) override;
  void copy_to_device(void* dst, const void* src, std::size_t bytes) override;
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override;
  void copy_device(void* dst, const void* src, std::size_t bytes) override;
  // f16 weights are stored as f32: the CPU multiplies them with f32 activations, and
  // rounding activations to f16 for a tensor-core product would turn |x| > 65504 into inf.
  weight_ref upload_weight(const weight_ref& host) override;
  void synchronize() override;

  // --- operations -----------------------------------------------------------------------
  void embed(const weight_ref& table, std::span<const std::int32_t> ids, float* out) override;
  void matmul(const float* x, std::int64_t n, const weight_ref& w, const weight_ref& bias,
              float* y) override;
  void matmul_group(const float* x, std::int64_t n, std::span<const matmul_part> parts) override;
  void matmul_batch(std::span<const matmul_task> tasks) override;
  void rms_norm(const float* x, std::int64_t n, const weight_ref& gamma, float eps,
                float* y) override;
  void add(float* x, const float* y, std::int64_t count) override;
  void swiglu(const float* gate, const float* up, std::int64_t count, float* out) override;
  void rope(float* x, std::int64_t n, int heads, int head_dim, std::int64_t head_stride,
            std::span<const std::int32_t> positions, const rope_table& table) override;
  void matmul_heads(const float* x, std::int64_t n, int heads, std::int64_t x_head_stride,
                    const weight_ref& w, float* y, std::int64_t y_head_stride) override;
  void gather_rows(const float* src, std::int64_t dim, std::span<const std::int32_t> rows,
                   float* dst) override;
  void scatter_add_rows(float* dst, std::int64_t dim, std::span<const std::int32_t> rows,
                        std::span<const float> weights, const float* src) override;
  void argmax_rows(const float* x, std::int64_t rows, std::int64_t cols,
                   std::int32_t* ids) override;
  void kv_write(const kv_layer& cache, std::span<const attention_sequence> seqs,
                const float* keys, const float* values) override;
  void paged_attention(const float* q, int heads, const kv_layer& cache,
                       std::span<const attention_sequence> seqs, float scale,
                       float* out) override;
  void latent_kv_write(const latent_kv_layer& cache, std::span<const attention_sequence> seqs,
                       const float* latent, const float* rope_keys) override;
  void latent_attention(const float* q_latent, const float* q_rope, std::int64_t q_rope_head_stride,
                        int heads, const latent_kv_layer& cache,
                        std::span<const attention_sequence> seqs, float scale,
                        float* out) override;

 private:
  void use_device() const { DSRT_CUDA_CHECK(set_device(device_)); }

  // x [n, count / n] as `type` (f16 or bf16) in device scratch, converted once per group.
  const void* converted(const float* x, std::int64_t count, dtype type);

  // y [n, ldy] = x [n, cols] . w^T.
  void product(const float* x, std::int64_t n, std::int64_t cols, const weight_ref& w, float* y,
               std::int64_t ldy);

  // w's product for the skinny kernel: all of w's rows into y (its block scales when fp8).
  static skinny_part part_of(const weight_ref& w, float* y, std::int64_t ldy);

  // w as cuBLASLt takes it: itself, or (fp8) where its bf16 dequantisation goes in scratch,
  // which dequantize() then fills as the CPU's bf16 tiles do (one buffer: each product's
  // dequantisation runs after the last product that read it, in stream order).
  weight_ref gemm_weight(const weight_ref& w);
  // Fills gemm_weight(w)'s buffer when w is fp8 (only once a product will read it).
  void dequantize(const weight_ref& w, const weight_ref& into);

  // The rows each sequence writes and their cache slots, staged as device_rows_/device_slots_.
  void stage_slots(int block_tokens, std::span<const attention_sequence> seqs);

  // Every query row of the sequences and their block tables (attention_metadata.h), staged.
  void stage_attention_rows(int block_tokens, std::span<const attention_sequence> seqs,
                            attention_launch& a);

  void run_attention(const attention_launch& a);

  struct conversion {
    const float* x = nullptr;
    std::int64_t count = 0;
    dtype type = dtype::f32;
    const void* ptr = nullptr;
  };

  int device_;
  std::size_t staging_bytes_;
  bool graphs_;
  bool tearing_down_ = false;
  int sms_ = 1;
  backend_caps caps_;
  cudaStream_t stream_ = nullptr;
  // Declared before pool_: the pool's raw free flushes it, also while the pool is destroyed.
  std::unique_ptr<launcher> launcher_;
  device_pool pool_;
  device_scratch x_converted_;
  device_scratch attention_scratch_;
  device_scratch copy_scratch_;
  device_scratch ids_scratch_;
  device_scratch dequantized_;   // an fp8 weight as bf16, for one product at a time
  conversion converted_;
  void* workspace_ = nullptr;
  std::unique_ptr<staging> staging_;    // copies through launcher_
  std::unique_ptr<lt_gemm> gemm_;
  std::unordered_set<void*> weights_;  // uploaded weights, freed with the backend
  std::vector<float> widened_;         // an f16 weight as f32, during its upload
  // Host metadata scratch, reused (no allocation per step once warm).
  std::vector<std::int32_t> slot_rows_;
  std::vector<std::int64_t> slots_;
  const std::int32_t* device_rows_ = nullptr;
  const std::int64_t* device_slots_ = nullptr;
  std::vector<attention_row> attention_rows_;
  std::vector<std::int32_t> tables_;
  // What the last rope, cache write and attention staged: the next layer of the same step
  // passes the same arrays and reuses the device copies.
  staged_arrays rope_staged_, slots_staged_, attention_staged_;
};

}  // namespace dsrt::kernels::cuda
