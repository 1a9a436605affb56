#pragma once
// The one backend interface (ARCHITECTURE.md, "Models and kernels"). A backend owns a
// device: memory, and the operations the model graphs need. The CPU backend is the
// reference every other backend is tested against, operation by operation.
//
// Conventions:
//  - Activations are f32, row-major [tokens, features]. Weights are row-major
//    [out_features, in_features] in f32, f16 or bf16, as the checkpoint stores them.
//  - The paged KV cache of one layer is two arrays [blocks][block_tokens][kv_heads][head_dim]
//    of bf16 (keys and values). A sequence's block table maps its position p to block
//    table[p / block_tokens], slot p % block_tokens.
//  - Pointers passed to operations are device pointers from alloc() (on the CPU backend,
//    host memory), except the *host* metadata (positions, block tables, sequence
//    descriptions), which the backend reads on the host.
//  - Thread safety: one caller at a time per backend instance.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace dsrt::kernels {

// What a backend can do; callers ask this instead of checking which backend they hold.
struct backend_caps {
  std::string name;                      // "cpu", "cuda:0"
  std::string detail;                    // e.g. ISA path "avx512bf16", device name
  int threads = 1;                       // worker threads (CPU)
  bool host_visible_memory = true;       // alloc() memory is directly readable on the host
  bool weights_zero_copy = true;         // upload_weights() may return the host pointer itself
  std::vector<dtype> weight_dtypes;      // dtypes accepted by matmul() weights
};

// A weight matrix [rows, cols] (row-major) or vector [cols] (rows == 1).
//
// f8_e4m3 weights carry one f32 scale per block_rows x block_cols block (DeepSeek-V3's
// "weight_scale_inv" tensors, [ceil(tensor rows / block_rows), scale_cols]):
//   w[r, c] = e4m3(data[r, c]) * scales[((scale_row0 + r) / block_rows) * scale_cols
//                                       + c / block_cols]
// scale_row0 is the row of data's first row within the scaled tensor, so a view of some of
// a tensor's rows (rows_view) keeps pointing at the tensor's scales. Unused for other dtypes.
struct weight_ref {
  const void* data = nullptr;
  dtype type = dtype::bf16;
  std::int64_t rows = 1;
  std::int64_t cols = 0;
  const float* scales = nullptr;     // f8_e4m3 only
  std::int64_t scale_cols = 0;       // ceil(cols / block_cols)
  std::int64_t scale_row0 = 0;
  int block_rows = 128;
  int block_cols = 128;
};

// Rows [begin, end) of w as a weight of their own (no copy).
inline weight_ref rows_view(const weight_ref& w, std::int64_t begin, std::int64_t end) {
  weight_ref v = w;
  v.data = static_cast<const char*>(w.data) + begin * w.cols * std::int64_t(dtype_size(w.type));
  v.rows = end - begin;
  v.scale_row0 = w.scale_row0 + begin;
  return v;
}

// The KV cache of one layer.
struct kv_layer {
  std::uint16_t* keys = nullptr;         // bf16 [blocks][block_tokens][kv_heads][head_dim]
  std::uint16_t* values = nullptr;       // same layout
  int block_tokens = 16;
  int kv_heads = 0;
  int head_dim = 0;
};

// One sequence's part of a ragged attention call (host memory).
// Its query rows are q[row_begin, row_begin + rows) at positions
// first_position, first_position + 1, ...; each attends causally to positions
// [0, its own position] in the cache.
struct attention_sequence {
  std::int64_t row_begin = 0;
  std::int64_t rows = 0;
  std::int64_t first_position = 0;
  const std::int32_t* block_table = nullptr;   // host; covers first_position + rows positions
  std::int64_t blocks = 0;
};

// One product of a grouped matmul: y = x . w^T (+ bias).
struct matmul_part {
  weight_ref w;
  weight_ref bias;     // bias.data == nullptr: none
  float* y = nullptr;  // [n, w.rows]
};

// One product of a batch of independent products: y[n, w.rows] = x[n, w.cols] . w^T.
struct matmul_task {
  const float* x = nullptr;
  std::int64_t n = 0;
  weight_ref w;
  float* y = nullptr;
};

// RoPE frequencies for one model: inv_freq[i] for dimension pairs (i, i + head_dim/2)
// ("rotate half", as Llama / Qwen2 in Hugging Face), with the scaling already applied,
// and a factor multiplied into cos and sin (YaRN's attention scaling; 1 otherwise);
// interleaved: the pairs are (2i, 2i + 1) instead (GPT-J style, as DeepSeek's MLA).
struct rope_table {
  std::vector<float> inv_freq;           // head_dim / 2 entries
  float cos_sin_scale = 1.0f;
  bool interleaved = false;
};

// The MLA (multi-head latent attention) cache of one layer: per token only the compressed
// latent (latent_dim values, already normalised) followed by the RoPE key shared by all heads
// (rope_dim values), bf16 [blocks][block_tokens][latent_dim + rope_dim].
struct latent_kv_layer {
  std::uint16_t* entries = nullptr;
  int block_tokens = 16;
  int latent_dim = 0;
  int rope_dim = 0;
};

class backend {
 public:
  virtual ~backend() = default;
  virtual const backend_caps& caps() const = 0;

  // --- memory -------------------------------------------------------------------------
  // Device memory, 64-byte aligned. alloc returns nullptr on exhaustion.
  virtual void* alloc(std::size_t bytes) = 0;
  virtual void free(void* ptr) = 0;
  virtual void copy_to_device(void* dst, const void* src_host, std::size_t bytes) = 0;
  virtual void copy_to_host(void* dst_host, const void* src, std::size_t bytes) = 0;
  virtual void copy_device(void* dst, const void* src, std::size_t bytes) = 0;
  // Makes a host weight (for example a memory-mapped tensor) usable by matmul. With
  // caps().weights_zero_copy it returns the host pointer itself and allocates nothing.
  virtual weight_ref upload_weight(const weight_ref& host) = 0;
  // Blocks until all queued work is done (a no-op on synchronous backends).
  virtual void synchronize() = 0;

  // --- operations ---------------------------------------------------------------------
  // out[t, :] = table[ids[t], :] as f32. ids: host, each in [0, table.rows).
  virtual void embed(const weight_ref& table, std::span<const std::int32_t> ids,
                     float* out) = 0;
  // y[n, w.rows] = x[n, w.cols] . w^T  (+ bias[w.rows] when bias.data != nullptr).
  virtual void matmul(const float* x, std::int64_t n, const weight_ref& w,
                      const weight_ref& bias, float* y) = 0;
  // Several products of the same input in one call (q/k/v, gate/up): one dispatch and one
  // conversion of x instead of one per product. Each output equals what matmul() gives.
  // REQUIRES: every part's w.cols is the same.
  virtual void matmul_group(const float* x, std::int64_t n, std::span<const matmul_part> parts) = 0;
  // Independent products, each with its own input (the routed experts of an MoE layer, each
  // over its own tokens), in one call: one dispatch instead of one per product. Each output
  // equals what matmul() gives. REQUIRES: outputs do not overlap each other or the inputs.
  virtual void matmul_batch(std::span<const matmul_task> tasks) = 0;
  // y[t, :] = x[t, :] / rms(x[t, :]) * gamma   (x and y may alias).
  virtual void rms_norm(const float* x, std::int64_t n, const weight_ref& gamma, float eps,
                        float* y) = 0;
  // x[t, :] += y[t, :] for n * dim elements.
  virtual void add(float* x, const float* y, std::int64_t count) = 0;
  // out[i] = silu(gate[i]) * up[i] for count elements (out may alias gate).
  virtual void swiglu(const float* gate, const float* up, std::int64_t count, float* out) = 0;
  // Rotates the first head_dim values of each head of x in place at the given positions
  // (host). Heads start head_stride floats apart, rows heads * head_stride apart
  // (head_stride == head_dim: x is [n, heads * head_dim]).
  virtual void rope(float* x, std::int64_t n, int heads, int head_dim, std::int64_t head_stride,
                    std::span<const std::int32_t> positions, const rope_table& table) = 0;
  // One product per head: y[t, h, :out] = x[t, h, :w.cols] . w_h^T, where w_h is rows
  // [h * out, (h + 1) * out) of w (out = w.rows / heads). Heads of x start x_head_stride
  // floats apart (rows heads * x_head_stride apart); heads of y likewise y_head_stride.
  // REQUIRES: w.rows % heads == 0, x_head_stride >= w.cols, y_head_stride >= out.
  virtual void matmul_heads(const float* x, std::int64_t n, int heads, std::int64_t x_head_stride,
                            const weight_ref& w, float* y, std::int64_t y_head_stride) = 0;
  // dst[i, :] = src[rows[i], :] for dim-wide rows (rows: host).
  virtual void gather_rows(const float* src, std::int64_t dim, std::span<const std::int32_t> rows,
                           float* dst) = 0;
  // dst[rows[i], :] += weights[i] * src[i, :] in order of i (rows, weights: host).
  virtual void scatter_add_rows(float* dst, std::int64_t dim, std::span<const std::int32_t> rows,
                                std::span<const float> weights, const float* src) = 0;
  // Greedy sampling where the logits are: ids[r] = the lowest index of the largest value of
  // row r of x [rows, cols], NaN ignored (0 when a row is all NaN), as the engine's greedy
  // sampler picks. ids is host memory; the call returns when the ids are there, so on a GPU
  // only the ids cross to the host, not the rows.
  virtual void argmax_rows(const float* x, std::int64_t rows, std::int64_t cols,
                           std::int32_t* ids) = 0;
  // Writes keys / values [n, kv_heads * head_dim] of the sequences' new tokens into the cache
  // at their positions (rows of each sequence as in attention_sequence).
  virtual void kv_write(const kv_layer& cache, std::span<const attention_sequence> seqs,
                        const float* keys, const float* values) = 0;
  // Causal attention over the paged cache for every sequence's rows:
  // out[r, h*head_dim:] = softmax(scale * q_h . K^T) V for head h and its KV head
  // h / (heads / kv_heads). q and out are [rows, heads * head_dim].
  virtual void paged_attention(const float* q, int heads, const kv_layer& cache,
                               std::span<const attention_sequence> seqs, float scale,
                               float* out) = 0;
  // Writes the new tokens' latents [n, latent_dim] and RoPE keys [n, rope_dim] into an MLA
  // cache (rows of each sequence as in attention_sequence).
  virtual void latent_kv_write(const latent_kv_layer& cache,
                               std::span<const attention_sequence> seqs, const float* latent,
                               const float* rope_keys) = 0;
  // MLA in the absorbed form, causal over the latent cache, for every sequence's rows:
  //   s_j = scale * (q_latent[r, h] . latent_j + q_rope[r, h] . rope_key_j)
  //   out[r, h, :] = sum_j softmax(s)_j latent_j
  // q_latent and out are [rows, heads, latent_dim]; the heads of q_rope (rope_dim values
  // each) start q_rope_head_stride floats apart, rows heads * q_rope_head_stride apart.
  virtual void latent_attention(const float* q_latent, const float* q_rope,
                                std::int64_t q_rope_head_stride, int heads,
                                const latent_kv_layer& cache,
                                std::span<const attention_sequence> seqs, float scale,
                                float* out) = 0;
};

// Options for the CPU backend. threads = 0 means all online cores; isa = "" means the best
// the CPU supports ("avx512bf16", "avx512", "avx2", "scalar"; env DSRT_CPU_ISA overrides).
inline constexpr int cpu_threads_max = 1024;

struct cpu_backend_options {
  int threads = 0;                      // at most cpu_threads_max
  std::string isa;
  // f8_e4m3 weights through the dot path where the CPU allows it (kernels/cpu/fp8.h), or
  // (false) through bf16 tiles, whose results are bit for bit those of the weights converted
  // to bf16 offline. Unset: DSRT_CPU_FP8=tiles or =dot in the environment decides (another
  // value is ignored with a warning), and the dot path otherwise.
  std::optional<bool> fp8_dot;
};

// REQUIRES: options.isa is empty or cpu_isa_supported(options.isa) (callers validate
// user input with it first); caps().detail names the ISA in use.
std::unique_ptr<backend> make_cpu_backend(const cpu_backend_options& options = {});
bool cpu_isa_supported(const std::string& isa);
// The best ISA this CPU supports, honouring DSRT_CPU_ISA when it names a supported one.
std::string cpu_best_isa();

}  // namespace dsrt::kernels
