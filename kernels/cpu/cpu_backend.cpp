// The CPU backend: the reference implementation of kernels/backend.h. Hot inner loops come
// from the ISA table (isa.h) and elementwise.h; this file does threading and blocking.
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "kernels/assert.h"
#include "kernels/backend.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/thread_pool.h"

namespace dsrt::kernels {
namespace {

// Below this many multiply-adds a matmul runs on the calling thread: waking workers would
// cost more than it saves.
constexpr std::int64_t parallel_macs_min = 1 << 15;
// Rows per unit of work when a matmul is split across threads (a multiple of the 4-row tile).
constexpr std::int64_t matmul_rows_grain = 16;

// The CPUs this process may run on (its affinity mask, which containers and taskset
// narrow), not every core of the machine.
int default_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : int(n);
}

// Scratch that grows to the largest request and is reused (no allocation per step once warm).
template <class T>
T* scratch(std::vector<T>& v, std::size_t count) {
  if (v.size() < count) v.resize(count);
  return v.data();
}

class cpu_backend final : public backend {
 public:
  explicit cpu_backend(const cpu_backend_options& options)
      : isa_(cpu::isa_by_name(options.isa.empty() ? cpu_best_isa() : options.isa)),
        pool_(std::min(cpu_threads_max, options.threads > 0 ? options.threads : default_threads())) {
    caps_.name = "cpu";
    caps_.detail = isa_.name;
    caps_.threads = pool_.size();
    caps_.host_visible_memory = true;
    caps_.weights_zero_copy = true;
    caps_.weight_dtypes = {dtype::f32, dtype::f16, dtype::bf16};
  }

  const backend_caps& caps() const override { return caps_; }

  void* alloc(std::size_t bytes) override {
    if (bytes > (std::size_t(1) << 48)) return nullptr;  // no machine has it; avoids overflow
    const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64;
    return std::aligned_alloc(64, rounded);
  }
  void free(void* ptr) override { std::free(ptr); }
  void copy_to_device(void* dst, const void* src, std::size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void copy_device(void* dst, const void* src, std::size_t bytes) override {
    std::memmove(dst, src, bytes);
  }
  weight_ref upload_weight(const weight_ref& host) override { return host; }
  void synchronize() override {}

  void embed(const weight_ref& table, std::span<const std::int32_t> ids, float* out) override {
    const std::int64_t dim = table.cols;
    for (std::size_t t = 0; t < ids.size(); ++t) {
      DSRT_ASSERT(ids[t] >= 0 && ids[t] < table.rows, "token id {} outside [0, {})", ids[t],
                  table.rows);
      for (std::int64_t i = 0; i < dim; ++i)
        out[t * dim + i] = load_as_f32(table.data, table.type, ids[t] * dim + i);
    }
  }

  void matmul(const float* x, std::int64_t n, const weight_ref& w, const weight_ref& bias,
              float* y) override {
    const matmul_part part{w, bias, y};
    matmul_group(x, n, {&part, 1});
  }

  void matmul_group(const float* x, std::int64_t n, std::span<const matmul_part> parts) override {
    if (n <= 0 || parts.empty()) return;
    const std::int64_t cols = parts[0].w.cols;
    std::int64_t total_rows = 0;
    bool any_bf16 = false;
    for (const auto& p : parts) {
      DSRT_ASSERT(p.w.cols == cols, "grouped matmul parts differ in width: {} vs {}", p.w.cols, cols);
      total_rows += p.w.rows;
      any_bf16 = any_bf16 || p.w.type == dtype::bf16;
    }
    const std::uint16_t* xb = nullptr;
    if (isa_.bf16_activations && any_bf16) {
      std::uint16_t* buf = scratch(xb_, std::size_t(n * cols));
      cpu::to_bf16(x, n * cols, buf);
      xb = buf;
    }
    // Rows [begin, end) of the parts laid end to end.
    auto rows = [&](std::int64_t begin, std::int64_t end) {
      std::int64_t offset = 0;
      for (const auto& p : parts) {
        const std::int64_t b = std::max(begin, offset) - offset;
        const std::int64_t e = std::min(end, offset + p.w.rows) - offset;
        offset += p.w.rows;
        if (b >= e) continue;
        isa_.matmul_rows(x, p.w.type == dtype::bf16 ? xb : nullptr, n, p.w, b, e, p.y);
        if (p.bias.data == nullptr) continue;
        for (std::int64_t t = 0; t < n; ++t)
          for (std::int64_t r = b; r < e; ++r)
            p.y[t * p.w.rows + r] += load_as_f32(p.bias.data, p.bias.type, r);
      }
    };
    if (n * total_rows * cols < parallel_macs_min) {
      rows(0, total_rows);
    } else {
      pool_.parallel_for(total_rows, matmul_rows_grain, rows);
    }
  }

  void rms_norm(const float* x, std::int64_t n, const weight_ref& gamma, float eps,
                float* y) override {
    const std::int64_t dim = gamma.cols;
    const float* gamma_f32 = nullptr;
    const std::uint16_t* gamma_bf16 = nullptr;
    if (gamma.type == dtype::bf16) {
      gamma_bf16 = static_cast<const std::uint16_t*>(gamma.data);
    } else if (gamma.type == dtype::f32) {
      gamma_f32 = static_cast<const float*>(gamma.data);
    } else {
      float* g = scratch(gamma_f32_, std::size_t(dim));
      for (std::int64_t i = 0; i < dim; ++i) g[i] = load_as_f32(gamma.data, gamma.type, i);
      gamma_f32 = g;
    }
    for (std::int64_t t = 0; t < n; ++t) {
      const float mean = cpu::sum_of_squares(x + t * dim, dim) / float(dim);
      const float scale = 1.0f / std::sqrt(mean + eps);
      cpu::scale_by_gamma(x + t * dim, scale, gamma_f32, gamma_bf16, dim, y + t * dim);
    }
  }

  void add(float* x, const float* y, std::int64_t count) override {
    cpu::add_inplace(x, y, count);
  }

  void swiglu(const float* gate, const float* up, std::int64_t count, float* out) override {
    if (count < parallel_macs_min) return cpu::silu_mul(gate, up, count, out);
    pool_.parallel_for(count, 1024, [&](std::int64_t b, std::int64_t e) {
      cpu::silu_mul(gate + b, up + b, e - b, out + b);
    });
  }

  void rope(float* x, std::int64_t n, int heads, int head_dim,
            std::span<const std::int32_t> positions, const rope_table& table) override {
    const int half = head_dim / 2;
    DSRT_ASSERT(std::int64_t(table.inv_freq.size()) == half, "inv_freq {} head_dim {}",
                table.inv_freq.size(), head_dim);
    DSRT_ASSERT(std::int64_t(positions.size()) == n, "positions {} rows {}", positions.size(), n);
    float* cs = scratch(rope_cos_sin_, std::size_t(2 * half));
    for (std::int64_t t = 0; t < n; ++t) {
      for (int i = 0; i < half; ++i) {
        const float angle = float(positions[t]) * table.inv_freq[i];
        cs[i] = std::cos(angle) * table.cos_sin_scale;
        cs[half + i] = std::sin(angle) * table.cos_sin_scale;
      }
      for (int h = 0; h < heads; ++h) {
        float* v = x + (t * heads + h) * head_dim;
        for (int i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * cs[i] - b * cs[half + i];
          v[i + half] = b * cs[i] + a * cs[half + i];
        }
      }
    }
  }

  void kv_write(const kv_layer& cache, std::span<const attention_sequence> seqs,
                const float* keys, const float* values) override {
    const std::int64_t width = std::int64_t(cache.kv_heads) * cache.head_dim;
    for (const auto& s : seqs) {
      for (std::int64_t i = 0; i < s.rows; ++i) {
        const std::int64_t pos = s.first_position + i;
        const std::int64_t slot = slot_offset(cache, s, pos) * width;
        cpu::to_bf16(keys + (s.row_begin + i) * width, width, cache.keys + slot);
        cpu::to_bf16(values + (s.row_begin + i) * width, width, cache.values + slot);
      }
    }
  }

  void paged_attention(const float* q, int heads, const kv_layer& cache,
                       std::span<const attention_sequence> seqs, float scale,
                       float* out) override {
    const int hd = cache.head_dim;
    const int group = heads / cache.kv_heads;
    const std::int64_t kv_width = std::int64_t(cache.kv_heads) * hd;
    const std::int64_t units = std::int64_t(seqs.size()) * cache.kv_heads;
    const std::int64_t bt = cache.block_tokens;
    auto work = [&](std::int64_t begin, std::int64_t end) {
      thread_local std::vector<float> scores_buffer;
      thread_local std::vector<float> inverse_sum_buffer;
      float* inverse_sum = scratch(inverse_sum_buffer, std::size_t(group));
      for (std::int64_t u = begin; u < end; ++u) {
        const auto& s = seqs[u / cache.kv_heads];
        const int g = int(u % cache.kv_heads);
        // One row of scores per query head of the group, each long enough for the context.
        const std::int64_t stride = s.first_position + s.rows;
        float* scores = scratch(scores_buffer, std::size_t(group * stride));
        for (std::int64_t i = 0; i < s.rows; ++i) {
          const std::int64_t row = s.row_begin + i;
          const std::int64_t context = s.first_position + i + 1;
          const float* qg = q + (row * heads + g * group) * hd;
          // Walk the context block by block: each block's slots are contiguous.
          for (std::int64_t p0 = 0; p0 < context; p0 += bt) {
            const std::int64_t count = std::min(bt, context - p0);
            const std::uint16_t* k = cache.keys + slot_offset(cache, s, p0) * kv_width + g * hd;
            isa_.attention_scores(qg, group, k, kv_width, count, hd, scale, scores + p0, stride);
          }
          for (int h = 0; h < group; ++h) {
            float* sh = scores + h * stride;
            const float max = cpu::max_of(sh, context);
            inverse_sum[h] = 1.0f / cpu::exp_shifted_sum(sh, context, max);
          }
          float* og = out + (row * heads + g * group) * hd;
          std::fill(og, og + group * hd, 0.f);
          for (std::int64_t p0 = 0; p0 < context; p0 += bt) {
            const std::int64_t count = std::min(bt, context - p0);
            const std::uint16_t* v = cache.values + slot_offset(cache, s, p0) * kv_width + g * hd;
            isa_.attention_values(og, group, scores + p0, stride, v, kv_width, count, hd);
          }
          for (int h = 0; h < group; ++h) cpu::scale_inplace(og + h * hd, inverse_sum[h], hd);
        }
      }
    };
    pool_.parallel_for(units, 1, work);
  }

 private:
  // Index of the cache slot (block * block_tokens + offset) holding position pos.
  static std::int64_t slot_offset(const kv_layer& cache, const attention_sequence& s,
                                  std::int64_t pos) {
    const std::int64_t block_index = pos / cache.block_tokens;
    DSRT_ASSERT(block_index < s.blocks, "position {} needs block {} of {}", pos, block_index,
                s.blocks);
    return std::int64_t(s.block_table[block_index]) * cache.block_tokens +
           pos % cache.block_tokens;
  }

  backend_caps caps_;
  const cpu::isa_kernels& isa_;
  cpu::thread_pool pool_;
  std::vector<std::uint16_t> xb_;
  std::vector<float> gamma_f32_;
  std::vector<float> rope_cos_sin_;
};

}  // namespace

std::unique_ptr<backend> make_cpu_backend(const cpu_backend_options& options) {
  return std::make_unique<cpu_backend>(options);
}

}  // namespace dsrt::kernels
