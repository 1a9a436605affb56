// The CUDA backend (backend_impl.h): set-up, memory, the elementwise and attention
// operations, and the factory. Products are in products.cpp.
#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "kernels/cuda/backend_impl.h"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/kv_cache.cuh"
#include "kernels/cuda/norm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/rows.cuh"
#include "kernels/cuda/sampling.cuh"

namespace dsrt::kernels::cuda {

cudaError_t set_device(int device) {
  thread_local int current = -1;
  if (current == device) return cudaSuccess;
  const cudaError_t e = cudaSetDevice(device);
  current = e == cudaSuccess ? device : -1;
  return e;
}

std::string error_text(const char* what, cudaError_t e) {
  (void)cudaGetLastError();
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

bool graphs_from_environment() {
  const char* env = std::getenv("DSRT_CUDA_GRAPHS");
  return env == nullptr || std::string_view(env) != "0";
}

std::string cuda_backend::init() {
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

cuda_backend::~cuda_backend() {
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

void* cuda_backend::alloc(std::size_t bytes) {
  use_device();
  return pool_.alloc(bytes);
}

void cuda_backend::free(void* ptr) {
  use_device();
  weights_.erase(ptr);  // a weight freed by its caller is not freed again at the end
  pool_.free(ptr);
}

void cuda_backend::copy_to_device(void* dst, const void* src, std::size_t bytes) {
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

void cuda_backend::copy_to_host(void* dst, const void* src, std::size_t bytes) {
  use_device();
  // Not recorded: a graph cannot copy to pageable memory, and the caller waits anyway.
  launcher_->flush();
  DSRT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  synchronize();
}

void cuda_backend::copy_device(void* dst, const void* src, std::size_t bytes) {
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

weight_ref cuda_backend::upload_weight(const weight_ref& host) {
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

void cuda_backend::synchronize() {
  use_device();
  launcher_->sync();
  staging_->reset_after_sync();
  gemm_->trim();
}

void cuda_backend::embed(const weight_ref& table, std::span<const std::int32_t> ids, float* out) {
  use_device();
  for (const std::int32_t id : ids)
    DSRT_ASSERT(id >= 0 && id < table.rows, "token id {} outside [0, {})", id, table.rows);
  staging_->begin(staging::round_up(ids.size_bytes()));
  const std::int32_t* device_ids = staging_->add(ids);
  staging_->flush();
  launcher_->launch(&launch_embed, table.data, table.type, table.cols, device_ids,
                    std::int64_t(ids.size()), out);
}

void cuda_backend::rms_norm(const float* x, std::int64_t n, const weight_ref& gamma, float eps,
                float* y) {
  use_device();
  launcher_->launch(&launch_rms_norm, x, n, gamma.cols, gamma.data, gamma.type, eps, y);
}

void cuda_backend::add(float* x, const float* y, std::int64_t count) {
  use_device();
  launcher_->launch(&launch_add, x, y, count);
}

void cuda_backend::swiglu(const float* gate, const float* up, std::int64_t count, float* out) {
  use_device();
  launcher_->launch(&launch_swiglu, gate, up, count, out);
}

void cuda_backend::rope(float* x, std::int64_t n, int heads, int head_dim, std::int64_t head_stride,
            std::span<const std::int32_t> positions, const rope_table& table) {
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

void cuda_backend::gather_rows(const float* src, std::int64_t dim, std::span<const std::int32_t> rows,
                   float* dst) {
  use_device();
  staging_->begin(staging::round_up(rows.size_bytes()));
  const std::int32_t* device_rows = staging_->add(rows);
  staging_->flush();
  launcher_->launch(&launch_gather_rows, src, dim, device_rows, std::int64_t(rows.size()), dst);
}

void cuda_backend::scatter_add_rows(float* dst, std::int64_t dim, std::span<const std::int32_t> rows,
                        std::span<const float> weights, const float* src) {
  use_device();
  DSRT_ASSERT(rows.size() == weights.size(), "{} rows, {} weights", rows.size(), weights.size());
  staging_->begin(staging::round_up(rows.size_bytes()) + staging::round_up(weights.size_bytes()));
  const std::int32_t* device_rows = staging_->add(rows);
  const float* device_weights = staging_->add(weights);
  staging_->flush();
  launcher_->launch(&launch_scatter_add_rows, dst, dim, device_rows, device_weights,
                    std::int64_t(rows.size()), src);
}

void cuda_backend::argmax_rows(const float* x, std::int64_t rows, std::int64_t cols,
                   std::int32_t* ids) {
  use_device();
  if (rows <= 0) return;
  auto* device_ids = static_cast<std::int32_t*>(ids_scratch_.get(std::size_t(rows) * sizeof(std::int32_t)));
  launcher_->launch(&launch_argmax_rows, x, rows, cols, device_ids);
  copy_to_host(ids, device_ids, std::size_t(rows) * sizeof(std::int32_t));
}

void cuda_backend::kv_write(const kv_layer& cache, std::span<const attention_sequence> seqs,
                const float* keys, const float* values) {
  use_device();
  stage_slots(cache.block_tokens, seqs);
  const std::int64_t width = std::int64_t(cache.kv_heads) * cache.head_dim;
  const auto count = std::int64_t(slot_rows_.size());
  launcher_->launch(&launch_cache_write, keys, width, device_rows_, device_slots_, count, cache.keys, width, 0);
  launcher_->launch(&launch_cache_write, values, width, device_rows_, device_slots_, count, cache.values, width, 0);
}

void cuda_backend::paged_attention(const float* q, int heads, const kv_layer& cache,
                       std::span<const attention_sequence> seqs, float scale,
                       float* out) {
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

void cuda_backend::latent_kv_write(const latent_kv_layer& cache, std::span<const attention_sequence> seqs,
                       const float* latent, const float* rope_keys) {
  use_device();
  stage_slots(cache.block_tokens, seqs);
  const std::int64_t width = std::int64_t(cache.latent_dim) + cache.rope_dim;
  const auto count = std::int64_t(slot_rows_.size());
  launcher_->launch(&launch_cache_write, latent, cache.latent_dim, device_rows_, device_slots_, count,
                     cache.entries, width, 0);
  launcher_->launch(&launch_cache_write, rope_keys, cache.rope_dim, device_rows_, device_slots_, count,
                     cache.entries, width, cache.latent_dim);
}

void cuda_backend::latent_attention(const float* q_latent, const float* q_rope, std::int64_t q_rope_head_stride,
                        int heads, const latent_kv_layer& cache,
                        std::span<const attention_sequence> seqs, float scale,
                        float* out) {
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

void cuda_backend::stage_slots(int block_tokens, std::span<const attention_sequence> seqs) {
  build_cache_slots(block_tokens, seqs, slot_rows_, slots_);
  const std::span<const std::int32_t> rows(slot_rows_);
  const std::span<const std::int64_t> slots(slots_);
  const auto staged = staging_->put({std::as_bytes(rows), std::as_bytes(slots)}, slots_staged_);
  device_rows_ = static_cast<const std::int32_t*>(staged[0]);
  device_slots_ = static_cast<const std::int64_t*>(staged[1]);
}

void cuda_backend::stage_attention_rows(int block_tokens, std::span<const attention_sequence> seqs,
                            attention_launch& a) {
  a.context_max = build_attention_rows(block_tokens, seqs, attention_rows_, tables_);
  const std::span<const attention_row> rows(attention_rows_);
  const std::span<const std::int32_t> tables(tables_);
  const auto staged = staging_->put({std::as_bytes(rows), std::as_bytes(tables)}, attention_staged_);
  a.rows = static_cast<const attention_row*>(staged[0]);
  a.block_tables = static_cast<const std::int32_t*>(staged[1]);
  a.row_count = int(attention_rows_.size());
}

void cuda_backend::run_attention(const attention_launch& a) {
  const std::int64_t floats = attention_scratch_floats(a, sms_);
  float* scratch = floats > 0 ? static_cast<float*>(attention_scratch_.get(
                                    std::size_t(floats) * sizeof(float)))
                              : nullptr;
  launcher_->launch(&launch_attention, a, sms_, scratch);
}

}  // namespace dsrt::kernels::cuda

namespace dsrt::kernels {

using cuda::error_text;
using cuda::set_device;

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
  auto backend = std::make_unique<cuda::cuda_backend>(options, props);
  if (std::string failed = backend->init(); !failed.empty()) {
    if (why) *why = "cuda:" + std::to_string(options.device) + ": " + failed;
    return nullptr;
  }
  return backend;
}

}  // namespace dsrt::kernels
