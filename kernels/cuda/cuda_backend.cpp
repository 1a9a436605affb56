// The CUDA backend: kernels/backend.h on one GPU. One stream per backend; every operation is
// queued on it and returns at once, except copy_to_host and synchronize, which wait. Host
// metadata goes through `staging`, device memory through `device_pool`, products through
// cuBLASLt (lt_gemm) or, for few rows, the skinny kernel.
#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "kernels/assert.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_pool.h"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/fp8.cuh"
#include "kernels/cuda/kv_cache.cuh"
#include "kernels/cuda/launcher.h"
#include "kernels/cuda/lt_gemm.h"
#include "kernels/cuda/norm.cuh"
#include "kernels/cuda/paged_attention.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/rows.cuh"
#include "kernels/cuda/sampling.cuh"
#include "kernels/cuda/skinny_gemm.cuh"
#include "kernels/cuda/staging.h"
#include "kernels/cuda_backend.h"

namespace dsrt::kernels {
namespace {

using namespace cuda;

// Host-to-device copies up to this size go through the pinned staging ring (asynchronous);
// larger ones (weights at load) wait for the copy.
constexpr std::size_t staged_copy_bytes_max = std::size_t(1) << 20;

// Products with at most this many rows of x go through the skinny kernel (the weights are
// read once at full bandwidth; cuBLASLt's tiles would waste most of their rows).
constexpr std::int64_t skinny_rows_limit = 8;

// CUDA's current device is per host thread, and an actor may run on any scheduler thread, so
// every entry point sets it. All of this file's settings go through here, so the thread's
// last one is known without asking the driver.
cudaError_t set_device(int device) {
  thread_local int current = -1;
  if (current == device) return cudaSuccess;
  const cudaError_t e = cudaSetDevice(device);
  current = e == cudaSuccess ? device : -1;
  return e;
}

// The failed call's error, cleared (cudaPeekAtLastError, which the launch checks use, would
// otherwise report it again at the next launch on this thread).
std::string error_text(const char* what, cudaError_t e) {
  (void)cudaGetLastError();
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

// DSRT_CUDA_GRAPHS=0 turns step graphs off (to tell a graph problem from a kernel one).
bool graphs_from_environment() {
  const char* env = std::getenv("DSRT_CUDA_GRAPHS");
  return env == nullptr || std::string_view(env) != "0";
}

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
  std::string init() {
    if (const cudaError_t e = set_device(device_); e != cudaSuccess) return error_text("cudaSetDevice", e);
    if (const cudaError_t e = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking); e != cudaSuccess)
      return error_text("cudaStreamCreateWithFlags", e);
    workspace_ = pool_.alloc(cuda_gemm_workspace_bytes);
    if (workspace_ == nullptr) return "no device memory for the GEMM workspace";
    launcher_ = std::make_unique<launcher>(stream_, graphs_);
    staging_ = std::make_unique<staging>(*launcher_);
    if (const cudaError_t e = staging_->reserve(staging_bytes_); e != cudaSuccess)
      return error_text("the pinned staging buffer", e);
    cublasLtHandle_t handle = nullptr;
    if (const cublasStatus_t st = cublasLtCreate(&handle); st != CUBLAS_STATUS_SUCCESS)
      return std::string("cublasLtCreate: ") + cublasLtGetStatusName(st);
    gemm_ = std::make_unique<lt_gemm>(handle, workspace_, cuda_gemm_workspace_bytes);
    return {};
  }

  ~cuda_backend() override {
    tearing_down_ = true;
    (void)set_device(device_);
    if (launcher_) launcher_->flush();
    if (stream_) cudaStreamSynchronize(stream_);
    gemm_.reset();
    staging_.reset();
    launcher_.reset();  // destroys the graphs
    for (void* p : weights_) pool_.free(p);
    pool_.free(workspace_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  const backend_caps& caps() const override { return caps_; }

  // --- memory ---------------------------------------------------------------------------
  void* alloc(std::size_t bytes) override {
    use_device();
    return pool_.alloc(bytes);
  }
  void free(void* ptr) override {
    use_device();
    weights_.erase(ptr);  // a weight freed by its caller is not freed again at the end
    pool_.free(ptr);
  }
  void copy_to_device(void* dst, const void* src, std::size_t bytes) override {
    use_device();
    if (bytes == 0) return;
    if (bytes <= staged_copy_bytes_max) {
      // Through the pinned ring: queued, and the caller may reuse src at once.
      staging_->begin(staging::round_up(bytes));
      const void* staged = staging_->add(std::span(static_cast<const std::byte*>(src), bytes));
      staging_->flush();
      launcher_->copy(dst, staged, bytes, cudaMemcpyDeviceToDevice);
    } else {
      // Large copies (weights, at load) wait: whether an asynchronous copy from pageable
      // memory has read src when it returns is not promised everywhere (HMM, ATS systems).
      launcher_->flush();
      DSRT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
      launcher_->sync();
    }
  }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override {
    use_device();
    // Not recorded: a graph cannot copy to pageable memory, and the caller waits anyway.
    launcher_->flush();
    DSRT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    synchronize();
  }
  void copy_device(void* dst, const void* src, std::size_t bytes) override {
    use_device();
    const auto d = reinterpret_cast<std::uintptr_t>(dst), s = reinterpret_cast<std::uintptr_t>(src);
    if (bytes == 0 || d == s) return;
    if (d + bytes <= s || s + bytes <= d) {
      launcher_->copy(dst, src, bytes, cudaMemcpyDeviceToDevice);
      return;
    }
    // Overlapping ranges (memmove on the CPU): through a scratch copy.
    void* tmp = copy_scratch_.get(bytes);
    launcher_->copy(tmp, src, bytes, cudaMemcpyDeviceToDevice);
    launcher_->copy(dst, tmp, bytes, cudaMemcpyDeviceToDevice);
  }
  // f16 weights are stored as f32: the CPU multiplies them with f32 activations, and
  // rounding activations to f16 for a tensor-core product would turn |x| > 65504 into inf.
  weight_ref upload_weight(const weight_ref& host) override {
    use_device();
    // An f8_e4m3 weight's bytes travel as they are; its scales are a weight of their own (f32),
    // which the caller uploads and points the device weight_ref at (causal_lm::upload).
    const std::int64_t count = host.rows * host.cols;
    weight_ref ref = host;
    const void* bytes_from = host.data;
    if (host.type == dtype::f16) {
      widened_.resize(std::size_t(count));
      for (std::int64_t i = 0; i < count; ++i)
        widened_[std::size_t(i)] = f16_to_f32(static_cast<const std::uint16_t*>(host.data)[i]);
      bytes_from = widened_.data();
      ref.type = dtype::f32;
    }
    const std::size_t bytes = std::size_t(count) * dtype_size(ref.type);
    void* device = pool_.alloc(bytes);
    DSRT_ASSERT(device != nullptr, "device memory exhausted uploading a {}x{} weight", host.rows,
                host.cols);
    weights_.insert(device);
    launcher_->flush();
    DSRT_CUDA_CHECK(cudaMemcpyAsync(device, bytes_from, bytes, cudaMemcpyHostToDevice, stream_));
    launcher_->sync();
    if (host.type == dtype::f16) std::vector<float>().swap(widened_);
    ref.data = device;
    // Never a host pointer in a device weight: the caller attaches the device copy of an fp8
    // weight's scales (causal_lm::upload); until then the kernels' checks refuse it.
    ref.scales = nullptr;
    return ref;
  }
  void synchronize() override {
    use_device();
    launcher_->sync();
    staging_->reset_after_sync();
    gemm_->trim();
  }

  // --- operations -----------------------------------------------------------------------
  void embed(const weight_ref& table, std::span<const std::int32_t> ids, float* out) override {
    use_device();
    for (const std::int32_t id : ids)
      DSRT_ASSERT(id >= 0 && id < table.rows, "token id {} outside [0, {})", id, table.rows);
    staging_->begin(staging::round_up(ids.size_bytes()));
    const std::int32_t* device_ids = staging_->add(ids);
    staging_->flush();
    launcher_->launch(&launch_embed, table.data, table.type, table.cols, device_ids,
                      std::int64_t(ids.size()), out);
  }

  void matmul(const float* x, std::int64_t n, const weight_ref& w, const weight_ref& bias,
              float* y) override {
    const matmul_part part{w, bias, y};
    matmul_group(x, n, {&part, 1});
  }

  void matmul_group(const float* x, std::int64_t n, std::span<const matmul_part> parts) override {
    use_device();
    if (n <= 0 || parts.empty()) return;
    const std::int64_t cols = parts[0].w.cols;
    for (const auto& p : parts) {
      DSRT_ASSERT(p.w.cols == cols, "grouped matmul parts differ in width: {} vs {}", p.w.cols, cols);
    }
    if (n <= skinny_rows_limit) {
      // Parts of one dtype share launches, skinny_parts_max at a time.
      for (std::size_t i = 0; i < parts.size();) {
        skinny_gemm g{x, n, cols, cols, parts[i].w.type, 0, {}};
        while (i < parts.size() && g.parts < skinny_parts_max && parts[i].w.type == g.w_type) {
          g.part[g.parts++] = part_of(parts[i].w, parts[i].y, parts[i].w.rows);
          ++i;
        }
        launcher_->launch(&launch_skinny_gemm, g);
      }
    } else {
      converted_ = {};  // x is converted at most once per dtype for the whole group
      for (const auto& p : parts) product(x, n, cols, p.w, p.y, p.w.rows);
    }
    for (const auto& p : parts)
      if (p.bias.data != nullptr)
        launcher_->launch(&launch_add_bias, p.y, n, p.w.rows, p.w.rows, p.bias.data, p.bias.type);
  }

  void matmul_batch(std::span<const matmul_task> tasks) override {
    use_device();
    // Tasks on the same x (a shared expert's gate and up) share its conversion: outputs
    // never overlap inputs (the interface's REQUIRES), so x cannot change within the call.
    converted_ = {};
    for (const auto& t : tasks)
      if (t.n > 0) product(t.x, t.n, t.w.cols, t.w, t.y, t.w.rows);
  }

  void rms_norm(const float* x, std::int64_t n, const weight_ref& gamma, float eps,
                float* y) override {
    use_device();
    launcher_->launch(&launch_rms_norm, x, n, gamma.cols, gamma.data, gamma.type, eps, y);
  }

  void add(float* x, const float* y, std::int64_t count) override {
    use_device();
    launcher_->launch(&launch_add, x, y, count);
  }

  void swiglu(const float* gate, const float* up, std::int64_t count, float* out) override {
    use_device();
    launcher_->launch(&launch_swiglu, gate, up, count, out);
  }

  void rope(float* x, std::int64_t n, int heads, int head_dim, std::int64_t head_stride,
            std::span<const std::int32_t> positions, const rope_table& table) override {
    use_device();
    DSRT_ASSERT(std::int64_t(table.inv_freq.size()) == head_dim / 2, "inv_freq {} head_dim {}",
                table.inv_freq.size(), head_dim);
    DSRT_ASSERT(std::int64_t(positions.size()) == n, "positions {} rows {}", positions.size(), n);
    DSRT_ASSERT(head_stride >= head_dim, "head stride {} < head_dim {}", head_stride, head_dim);
    const std::span<const float> inv_freq(table.inv_freq);
    const auto staged = staging_->put({std::as_bytes(positions), std::as_bytes(inv_freq)}, rope_staged_);
    rope_launch r;
    r.positions = static_cast<const std::int32_t*>(staged[0]);
    r.inv_freq = static_cast<const float*>(staged[1]);
    r.x = x;
    r.rows = n;
    r.heads = heads;
    r.head_dim = head_dim;
    r.head_stride = head_stride;
    r.cos_sin_scale = table.cos_sin_scale;
    r.interleaved = table.interleaved;
    launcher_->launch(&launch_rope, r);
  }

  void matmul_heads(const float* x, std::int64_t n, int heads, std::int64_t x_head_stride,
                    const weight_ref& w, float* y, std::int64_t y_head_stride) override {
    use_device();
    DSRT_ASSERT(heads > 0 && w.rows % heads == 0, "{} rows for {} heads", w.rows, heads);
    const std::int64_t out = w.rows / heads;
    DSRT_ASSERT(x_head_stride >= w.cols && y_head_stride >= out, "strides {} {} for {}x{}",
                x_head_stride, y_head_stride, out, w.cols);
    DSRT_ASSERT(heads <= 65535, "{} heads", heads);
    if (n <= 0) return;
    const std::int64_t ldx = heads * x_head_stride, ldy = heads * y_head_stride;
    converted_ = {};
    if (n > skinny_rows_limit) {
      const weight_ref wd = gemm_weight(w);
      // One batched product over the heads. x is converted up to its last element used (the
      // gaps between heads included), not past it: x may be a view inside a larger buffer.
      const std::int64_t used = (n - 1) * ldx + (heads - 1) * x_head_stride + w.cols;
      const void* xc = wd.type == dtype::f32 ? static_cast<const void*>(x) : converted(x, used, wd.type);
      gemm_problem g{wd.type, wd.data, out, w.cols, xc, n, ldx, y, ldy, heads,
                     out * w.cols, x_head_stride, y_head_stride};
      if (const auto* plan = gemm_->prepare(g)) {
        dequantize(w, wd);
        launcher_->launch(&launch_lt_matmul, gemm_.get(), plan, g);
        return;
      }
    }
    // Few rows (or no algorithm): the skinny kernel, one launch for every head.
    skinny_gemm g{x, n, w.cols, ldx, w.type, 1, {}};
    g.part[0] = part_of(w, y, ldy);
    g.part[0].m = out;
    g.batch = heads;
    g.w_batch_stride = out * w.cols;
    g.x_batch_stride = x_head_stride;
    g.y_batch_stride = y_head_stride;
    launcher_->launch(&launch_skinny_gemm, g);
  }

  void gather_rows(const float* src, std::int64_t dim, std::span<const std::int32_t> rows,
                   float* dst) override {
    use_device();
    staging_->begin(staging::round_up(rows.size_bytes()));
    const std::int32_t* device_rows = staging_->add(rows);
    staging_->flush();
    launcher_->launch(&launch_gather_rows, src, dim, device_rows, std::int64_t(rows.size()), dst);
  }

  void scatter_add_rows(float* dst, std::int64_t dim, std::span<const std::int32_t> rows,
                        std::span<const float> weights, const float* src) override {
    use_device();
    DSRT_ASSERT(rows.size() == weights.size(), "{} rows, {} weights", rows.size(), weights.size());
    staging_->begin(staging::round_up(rows.size_bytes()) + staging::round_up(weights.size_bytes()));
    const std::int32_t* device_rows = staging_->add(rows);
    const float* device_weights = staging_->add(weights);
    staging_->flush();
    launcher_->launch(&launch_scatter_add_rows, dst, dim, device_rows, device_weights,
                      std::int64_t(rows.size()), src);
  }

  void argmax_rows(const float* x, std::int64_t rows, std::int64_t cols,
                   std::int32_t* ids) override {
    use_device();
    if (rows <= 0) return;
    auto* device_ids = static_cast<std::int32_t*>(ids_scratch_.get(std::size_t(rows) * sizeof(std::int32_t)));
    launcher_->launch(&launch_argmax_rows, x, rows, cols, device_ids);
    copy_to_host(ids, device_ids, std::size_t(rows) * sizeof(std::int32_t));
  }

  void kv_write(const kv_layer& cache, std::span<const attention_sequence> seqs,
                const float* keys, const float* values) override {
    use_device();
    stage_slots(cache.block_tokens, seqs);
    const std::int64_t width = std::int64_t(cache.kv_heads) * cache.head_dim;
    const auto count = std::int64_t(slot_rows_.size());
    launcher_->launch(&launch_cache_write, keys, width, device_rows_, device_slots_, count, cache.keys, width, 0);
    launcher_->launch(&launch_cache_write, values, width, device_rows_, device_slots_, count, cache.values, width, 0);
  }

  void paged_attention(const float* q, int heads, const kv_layer& cache,
                       std::span<const attention_sequence> seqs, float scale,
                       float* out) override {
    use_device();
    DSRT_ASSERT(cache.kv_heads > 0 && heads % cache.kv_heads == 0, "{} heads over {} KV heads",
                heads, cache.kv_heads);
    attention_launch a;
    stage_attention_rows(cache.block_tokens, seqs, a);
    const std::int64_t hd = cache.head_dim;
    a.q0 = q;
    a.q0_row_stride = heads * hd;
    a.q0_head_stride = hd;
    a.q0_dim = cache.head_dim;
    a.heads = heads;
    a.kv_group = heads / cache.kv_heads;
    a.keys = cache.keys;
    a.values = cache.values;
    a.slot_stride = std::int64_t(cache.kv_heads) * hd;
    a.kv_head_stride = hd;
    a.v_dim = cache.head_dim;
    a.block_tokens = cache.block_tokens;
    a.scale = scale;
    a.out = out;
    a.out_row_stride = heads * hd;
    run_attention(a);
  }

  void latent_kv_write(const latent_kv_layer& cache, std::span<const attention_sequence> seqs,
                       const float* latent, const float* rope_keys) override {
    use_device();
    stage_slots(cache.block_tokens, seqs);
    const std::int64_t width = std::int64_t(cache.latent_dim) + cache.rope_dim;
    const auto count = std::int64_t(slot_rows_.size());
    launcher_->launch(&launch_cache_write, latent, cache.latent_dim, device_rows_, device_slots_, count,
                       cache.entries, width, 0);
    launcher_->launch(&launch_cache_write, rope_keys, cache.rope_dim, device_rows_, device_slots_, count,
                       cache.entries, width, cache.latent_dim);
  }

  void latent_attention(const float* q_latent, const float* q_rope, std::int64_t q_rope_head_stride,
                        int heads, const latent_kv_layer& cache,
                        std::span<const attention_sequence> seqs, float scale,
                        float* out) override {
    use_device();
    attention_launch a;
    stage_attention_rows(cache.block_tokens, seqs, a);
    a.q0 = q_latent;
    a.q0_row_stride = std::int64_t(heads) * cache.latent_dim;
    a.q0_head_stride = cache.latent_dim;
    a.q0_dim = cache.latent_dim;
    a.q1 = q_rope;
    a.q1_row_stride = heads * q_rope_head_stride;
    a.q1_head_stride = q_rope_head_stride;
    a.q1_dim = cache.rope_dim;
    a.heads = heads;
    a.kv_group = heads;  // one shared latent for every head
    a.keys = cache.entries;
    a.values = cache.entries;
    a.slot_stride = std::int64_t(cache.latent_dim) + cache.rope_dim;
    a.kv_head_stride = 0;
    a.v_dim = cache.latent_dim;
    a.block_tokens = cache.block_tokens;
    a.scale = scale;
    a.out = out;
    a.out_row_stride = std::int64_t(heads) * cache.latent_dim;
    run_attention(a);
  }

 private:
  void use_device() const { DSRT_CUDA_CHECK(set_device(device_)); }

  // x [n, count / n] as `type` (f16 or bf16) in device scratch, converted once per group.
  const void* converted(const float* x, std::int64_t count, dtype type) {
    if (converted_.x == x && converted_.count == count && converted_.type == type)
      return converted_.ptr;
    void* buffer = x_converted_.get(std::size_t(count) * dtype_size(type));
    launcher_->launch(&launch_convert_from_f32, x, count, type, buffer);
    converted_ = {x, count, type, buffer};
    return buffer;
  }

  // y [n, ldy] = x [n, cols] . w^T.
  void product(const float* x, std::int64_t n, std::int64_t cols, const weight_ref& w, float* y,
               std::int64_t ldy) {
    if (n > skinny_rows_limit) {
      const weight_ref wd = gemm_weight(w);
      const void* xc = wd.type == dtype::f32 ? static_cast<const void*>(x)
                                             : converted(x, n * cols, wd.type);
      const gemm_problem g{wd.type, wd.data, w.rows, cols, xc, n, cols, y, ldy};
      if (const auto* plan = gemm_->prepare(g)) {
        dequantize(w, wd);
        launcher_->launch(&launch_lt_matmul, gemm_.get(), plan, g);
        return;
      }
    }
    skinny_gemm g{x, n, cols, cols, w.type, 1, {}};
    g.part[0] = part_of(w, y, ldy);
    launcher_->launch(&launch_skinny_gemm, g);
  }

  // w's product for the skinny kernel: all of w's rows into y (its block scales when fp8).
  static skinny_part part_of(const weight_ref& w, float* y, std::int64_t ldy) {
    skinny_part p{w.data, 0, w.rows, y, ldy};
    p.scales = w.scales;
    p.scale_cols = w.scale_cols;
    p.scale_row0 = w.scale_row0;
    p.block_rows = w.block_rows;
    p.block_cols = w.block_cols;
    return p;
  }

  // w as cuBLASLt takes it: itself, or (fp8) where its bf16 dequantisation goes in scratch,
  // which dequantize() then fills as the CPU's bf16 tiles do (one buffer: each product's
  // dequantisation runs after the last product that read it, in stream order).
  weight_ref gemm_weight(const weight_ref& w) {
    if (w.type != dtype::f8_e4m3) return w;
    weight_ref b = w;
    b.data = dequantized_.get(std::size_t(w.rows * w.cols) * sizeof(std::uint16_t));
    b.type = dtype::bf16;
    b.scales = nullptr;
    return b;
  }
  // Fills gemm_weight(w)'s buffer when w is fp8 (only once a product will read it).
  void dequantize(const weight_ref& w, const weight_ref& into) {
    if (w.type != dtype::f8_e4m3) return;
    DSRT_ASSERT(w.scales != nullptr, "an f8_e4m3 weight without its block scales");
    const fp8_weight f{static_cast<const std::uint8_t*>(w.data), w.rows, w.cols, w.scales,
                       w.scale_cols, w.scale_row0, w.block_rows, w.block_cols};
    launcher_->launch(&launch_dequantize_fp8, f, static_cast<std::uint16_t*>(const_cast<void*>(into.data)));
  }

  // The rows each sequence writes and their cache slots, staged as device_rows_/device_slots_.
  void stage_slots(int block_tokens, std::span<const attention_sequence> seqs) {
    build_cache_slots(block_tokens, seqs, slot_rows_, slots_);
    const std::span<const std::int32_t> rows(slot_rows_);
    const std::span<const std::int64_t> slots(slots_);
    const auto staged = staging_->put({std::as_bytes(rows), std::as_bytes(slots)}, slots_staged_);
    device_rows_ = static_cast<const std::int32_t*>(staged[0]);
    device_slots_ = static_cast<const std::int64_t*>(staged[1]);
  }

  // Every query row of the sequences and their block tables (attention_metadata.h), staged.
  void stage_attention_rows(int block_tokens, std::span<const attention_sequence> seqs,
                            attention_launch& a) {
    a.context_max = build_attention_rows(block_tokens, seqs, attention_rows_, tables_);
    const std::span<const attention_row> rows(attention_rows_);
    const std::span<const std::int32_t> tables(tables_);
    const auto staged = staging_->put({std::as_bytes(rows), std::as_bytes(tables)}, attention_staged_);
    a.rows = static_cast<const attention_row*>(staged[0]);
    a.block_tables = static_cast<const std::int32_t*>(staged[1]);
    a.row_count = int(attention_rows_.size());
  }

  void run_attention(const attention_launch& a) {
    const std::int64_t floats = attention_scratch_floats(a, sms_);
    float* scratch = floats > 0 ? static_cast<float*>(attention_scratch_.get(
                                      std::size_t(floats) * sizeof(float)))
                                : nullptr;
    launcher_->launch(&launch_attention, a, sms_, scratch);
  }

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


}  // namespace

bool cuda_compiled() { return true; }

int cuda_device_count(std::string* why) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (why) *why = error_text("cudaGetDeviceCount", e);
    return -1;
  }
  return count;
}

std::unique_ptr<backend> make_cuda_backend(const cuda_backend_options& options, std::string* why) {
  std::string reason;
  const int count = cuda_device_count(&reason);
  if (count < 0 || options.device < 0 || options.device >= count) {
    if (why)
      *why = count < 0 ? reason
                       : "cuda:" + std::to_string(options.device) + ": this machine has " +
                             std::to_string(count) + " CUDA device(s)";
    return nullptr;
  }
  cudaDeviceProp props{};
  cudaError_t e = set_device(options.device);
  if (e == cudaSuccess) e = cudaFree(nullptr);  // creates the context now, not mid-step
  if (e == cudaSuccess) e = cudaGetDeviceProperties(&props, options.device);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (why) *why = error_text(("cuda:" + std::to_string(options.device)).c_str(), e);
    return nullptr;
  }
  auto backend = std::make_unique<cuda_backend>(options, props);
  if (std::string failed = backend->init(); !failed.empty()) {
    if (why) *why = "cuda:" + std::to_string(options.device) + ": " + failed;
    return nullptr;
  }
  return backend;
}

}  // namespace dsrt::kernels
