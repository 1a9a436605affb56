// The CPU backend: the reference implementation of kernels/backend.h. Hot inner loops come
// from the ISA table (isa.h) and elementwise.h; this file does threading and blocking.
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>
#include <vector>

#include "kernels/assert.h"
#include "kernels/backend.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/fp8.h"
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

// DSRT_CPU_FP8: "tiles" or "dot" (the default when unset).
bool fp8_dot_from_environment() {
  const char* env = std::getenv("DSRT_CPU_FP8");
  if (env == nullptr || std::string_view(env) == "dot") return true;
  if (std::string_view(env) == "tiles") return false;
  std::fprintf(stderr, "dsrt: DSRT_CPU_FP8=%s is neither 'dot' nor 'tiles'; using the dot path\n", env);
  return true;
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
    fp8_path_ = cpu::fp8_path_for_isa(isa_.name);
    fp8_dot_ = (options.fp8_dot ? *options.fp8_dot : fp8_dot_from_environment()) &&
               fp8_path_ == cpu::fp8_path::avx512bf16 && cpu::fp8_dot_available();
    caps_.name = "cpu";
    caps_.detail = isa_.name;
    caps_.threads = pool_.size();
    caps_.host_visible_memory = true;
    caps_.weights_zero_copy = true;
    caps_.weight_dtypes = {dtype::f32, dtype::f16, dtype::bf16, dtype::f8_e4m3};
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
    for (const auto& p : parts)
      DSRT_ASSERT(p.w.cols == cols, "grouped matmul parts differ in width: {} vs {}", p.w.cols, cols);
    tasks_.clear();
    for (const auto& p : parts) tasks_.push_back({x, n, p.w, p.bias, p.y});
    run_tasks(tasks_);
  }

  void matmul_batch(std::span<const matmul_task> tasks) override {
    tasks_.clear();
    for (const auto& t : tasks)
      if (t.n > 0) tasks_.push_back({t.x, t.n, t.w, {}, t.y});
    run_tasks(tasks_);
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

  void rope(float* x, std::int64_t n, int heads, int head_dim, std::int64_t head_stride,
            std::span<const std::int32_t> positions, const rope_table& table) override {
    const int half = head_dim / 2;
    DSRT_ASSERT(std::int64_t(table.inv_freq.size()) == half, "inv_freq {} head_dim {}",
                table.inv_freq.size(), head_dim);
    DSRT_ASSERT(std::int64_t(positions.size()) == n, "positions {} rows {}", positions.size(), n);
    DSRT_ASSERT(head_stride >= head_dim, "head stride {} < head_dim {}", head_stride, head_dim);
    float* cs = scratch(rope_cos_sin_, std::size_t(2 * half));
    // Dimension i pairs with i + half (rotate half) or the pair (2i, 2i + 1) (interleaved).
    const int first_step = table.interleaved ? 2 : 1;
    const int partner = table.interleaved ? 1 : half;
    for (std::int64_t t = 0; t < n; ++t) {
      for (int i = 0; i < half; ++i) {
        const float angle = float(positions[t]) * table.inv_freq[i];
        cs[i] = std::cos(angle) * table.cos_sin_scale;
        cs[half + i] = std::sin(angle) * table.cos_sin_scale;
      }
      for (int h = 0; h < heads; ++h) {
        float* v = x + (t * heads + h) * head_stride;
        for (int i = 0; i < half; ++i) {
          float* first = v + i * first_step;
          const float a = first[0], b = first[partner];
          first[0] = a * cs[i] - b * cs[half + i];
          first[partner] = b * cs[i] + a * cs[half + i];
        }
      }
    }
  }

  void matmul_heads(const float* x, std::int64_t n, int heads, std::int64_t x_head_stride,
                    const weight_ref& w, float* y, std::int64_t y_head_stride) override {
    DSRT_ASSERT(heads > 0 && w.rows % heads == 0, "{} rows for {} heads", w.rows, heads);
    const std::int64_t out = w.rows / heads;
    DSRT_ASSERT(x_head_stride >= w.cols && y_head_stride >= out, "strides {} {} for {}x{}",
                x_head_stride, y_head_stride, out, w.cols);
    if (n <= 0) return;
    // One unit per head: gather the head's inputs into a contiguous block (as bf16 too when
    // the path wants it), multiply by the head's rows, scatter the outputs.
    auto work = [&](std::int64_t begin, std::int64_t end) {
      thread_local std::vector<float> xs_buffer, ys_buffer;
      thread_local std::vector<std::uint16_t> xb_buffer;
      float* xs = scratch(xs_buffer, std::size_t(n * w.cols));
      float* ys = scratch(ys_buffer, std::size_t(n * out));
      for (std::int64_t h = begin; h < end; ++h) {
        for (std::int64_t t = 0; t < n; ++t)
          std::memcpy(xs + t * w.cols, x + (t * heads + h) * x_head_stride,
                      std::size_t(w.cols) * sizeof(float));
        task head{xs, n, rows_view(w, h * out, (h + 1) * out), {}, ys};
        if (isa_.bf16_activations && reads_bf16_activations(w)) {
          std::uint16_t* xb = scratch(xb_buffer, std::size_t(n * w.cols));
          cpu::to_bf16(xs, n * w.cols, xb);
          head.xb = xb;
        }
        if (w.type == dtype::f8_e4m3) {
          f8_rows(head, 0, out);
        } else {
          isa_.matmul_rows(xs, w.type == dtype::bf16 ? head.xb : nullptr, n, head.w, 0, out, ys);
        }
        for (std::int64_t t = 0; t < n; ++t)
          std::memcpy(y + (t * heads + h) * y_head_stride, ys + t * out,
                      std::size_t(out) * sizeof(float));
      }
    };
    if (n * w.rows * w.cols < parallel_macs_min) {
      work(0, heads);
    } else {
      pool_.parallel_for(heads, 1, work);
    }
  }

  void gather_rows(const float* src, std::int64_t dim, std::span<const std::int32_t> rows,
                   float* dst) override {
    for (std::size_t i = 0; i < rows.size(); ++i)
      std::memcpy(dst + std::int64_t(i) * dim, src + std::int64_t(rows[i]) * dim,
                  std::size_t(dim) * sizeof(float));
  }

  void scatter_add_rows(float* dst, std::int64_t dim, std::span<const std::int32_t> rows,
                        std::span<const float> weights, const float* src) override {
    DSRT_ASSERT(rows.size() == weights.size(), "{} rows, {} weights", rows.size(), weights.size());
    for (std::size_t i = 0; i < rows.size(); ++i)
      cpu::add_scaled(dst + std::int64_t(rows[i]) * dim, src + std::int64_t(i) * dim, weights[i],
                      dim);
  }

  void argmax_rows(const float* x, std::int64_t rows, std::int64_t cols,
                   std::int32_t* ids) override {
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* row = x + r * cols;
      float best = -INFINITY;
      std::int64_t at = -1;
      for (std::int64_t i = 0; i < cols; ++i)
        if (row[i] > best || (row[i] == best && at < 0)) {
          best = row[i];
          at = i;
        }
      ids[r] = std::int32_t(at < 0 ? 0 : at);
    }
  }

  void kv_write(const kv_layer& cache, std::span<const attention_sequence> seqs,
                const float* keys, const float* values) override {
    const std::int64_t width = std::int64_t(cache.kv_heads) * cache.head_dim;
    for (const auto& s : seqs) {
      for (std::int64_t i = 0; i < s.rows; ++i) {
        const std::int64_t pos = s.first_position + i;
        const std::int64_t slot = slot_offset(cache.block_tokens, s, pos) * width;
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
            const std::uint16_t* k = cache.keys + slot_offset(cache.block_tokens, s, p0) * kv_width + g * hd;
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
            const std::uint16_t* v = cache.values + slot_offset(cache.block_tokens, s, p0) * kv_width + g * hd;
            isa_.attention_values(og, group, scores + p0, stride, v, kv_width, count, hd);
          }
          for (int h = 0; h < group; ++h) cpu::scale_inplace(og + h * hd, inverse_sum[h], hd);
        }
      }
    };
    pool_.parallel_for(units, 1, work);
  }

  void latent_kv_write(const latent_kv_layer& cache, std::span<const attention_sequence> seqs,
                       const float* latent, const float* rope_keys) override {
    const std::int64_t width = std::int64_t(cache.latent_dim) + cache.rope_dim;
    for (const auto& s : seqs) {
      for (std::int64_t i = 0; i < s.rows; ++i) {
        std::uint16_t* entry =
            cache.entries + slot_offset(cache.block_tokens, s, s.first_position + i) * width;
        const std::int64_t row = s.row_begin + i;
        cpu::to_bf16(latent + row * cache.latent_dim, cache.latent_dim, entry);
        cpu::to_bf16(rope_keys + row * cache.rope_dim, cache.rope_dim, entry + cache.latent_dim);
      }
    }
  }

  // Every head attends to the same cache rows (one shared latent), so the work of one row is
  // MQA with keys [latent | rope_key] of latent_dim + rope_dim values and values = the latent
  // part of the same rows: each cache row is loaded once for all heads.
  void latent_attention(const float* q_latent, const float* q_rope, std::int64_t q_rope_head_stride,
                        int heads, const latent_kv_layer& cache,
                        std::span<const attention_sequence> seqs, float scale,
                        float* out) override {
    const std::int64_t latent = cache.latent_dim;
    const std::int64_t width = latent + cache.rope_dim;
    const std::int64_t bt = cache.block_tokens;
    // Units of work: (sequence, query row) pairs, so a long prefill spreads over threads.
    std::int64_t total_rows = 0;
    for (const auto& s : seqs) total_rows += s.rows;
    auto work = [&](std::int64_t begin, std::int64_t end) {
      thread_local std::vector<float> q_buffer, scores_buffer, inverse_sum_buffer;
      float* q = scratch(q_buffer, std::size_t(heads * width));
      float* inverse_sum = scratch(inverse_sum_buffer, std::size_t(heads));
      std::size_t seq_index = 0;
      std::int64_t seq_row_end = seqs.empty() ? 0 : seqs[0].rows;
      for (std::int64_t u = begin; u < end; ++u) {
        while (u >= seq_row_end) seq_row_end += seqs[++seq_index].rows;
        const auto& s = seqs[seq_index];
        const std::int64_t i = u - (seq_row_end - s.rows);
        const std::int64_t row = s.row_begin + i;
        const std::int64_t context = s.first_position + i + 1;
        const std::int64_t stride = context;
        float* scores = scratch(scores_buffer, std::size_t(heads * stride));
        for (int h = 0; h < heads; ++h) {
          std::memcpy(q + h * width, q_latent + (row * heads + h) * latent,
                      std::size_t(latent) * sizeof(float));
          std::memcpy(q + h * width + latent, q_rope + (row * heads + h) * q_rope_head_stride,
                      std::size_t(cache.rope_dim) * sizeof(float));
        }
        for (std::int64_t p0 = 0; p0 < context; p0 += bt) {
          const std::int64_t count = std::min(bt, context - p0);
          const std::uint16_t* k = cache.entries + slot_offset(cache.block_tokens, s, p0) * width;
          isa_.attention_scores(q, heads, k, width, count, width, scale, scores + p0, stride);
        }
        for (int h = 0; h < heads; ++h) {
          float* sh = scores + h * stride;
          const float max = cpu::max_of(sh, context);
          inverse_sum[h] = 1.0f / cpu::exp_shifted_sum(sh, context, max);
        }
        float* o = out + row * heads * latent;
        std::fill(o, o + heads * latent, 0.f);
        for (std::int64_t p0 = 0; p0 < context; p0 += bt) {
          const std::int64_t count = std::min(bt, context - p0);
          const std::uint16_t* v = cache.entries + slot_offset(cache.block_tokens, s, p0) * width;
          isa_.attention_values(o, heads, scores + p0, stride, v, width, count, latent);
        }
        for (int h = 0; h < heads; ++h) cpu::scale_inplace(o + h * latent, inverse_sum[h], latent);
      }
    };
    pool_.parallel_for(total_rows, 1, work);
  }

 private:
  struct task {
    const float* x;
    std::int64_t n;
    weight_ref w;
    weight_ref bias;
    float* y;
    const std::uint16_t* xb = nullptr;   // x in bf16, when the path wants it
  };

  // Runs every task's rows as one parallel loop over the tasks' rows laid end to end; inputs
  // that several tasks share are converted to bf16 once.
  void run_tasks(std::vector<task>& tasks) {
    if (tasks.empty()) return;
    std::int64_t total_rows = 0, macs = 0, xb_elements = 0;
    for (const auto& t : tasks) {
      total_rows += t.w.rows;
      macs += t.n * t.w.rows * t.w.cols;
      xb_elements += t.n * t.w.cols;
    }
    if (isa_.bf16_activations) {
      std::uint16_t* buf = scratch(xb_, std::size_t(xb_elements));
      for (std::size_t i = 0; i < tasks.size(); ++i) {
        auto& t = tasks[i];
        if (!reads_bf16_activations(t.w)) continue;
        if (i > 0 && tasks[i - 1].x == t.x && tasks[i - 1].xb && tasks[i - 1].n == t.n &&
            tasks[i - 1].w.cols == t.w.cols) {
          t.xb = tasks[i - 1].xb;
          continue;
        }
        cpu::to_bf16(t.x, t.n * t.w.cols, buf);
        t.xb = buf;
        buf += t.n * t.w.cols;
      }
    }
    auto rows = [&](std::int64_t begin, std::int64_t end) {
      std::int64_t offset = 0;
      for (const auto& t : tasks) {
        const std::int64_t b = std::max(begin, offset) - offset;
        const std::int64_t e = std::min(end, offset + t.w.rows) - offset;
        offset += t.w.rows;
        if (b >= e) continue;
        if (t.w.type == dtype::f8_e4m3) {
          f8_rows(t, b, e);
        } else {
          isa_.matmul_rows(t.x, t.w.type == dtype::bf16 ? t.xb : nullptr, t.n, t.w, b, e, t.y);
        }
        if (t.bias.data == nullptr) continue;
        for (std::int64_t i = 0; i < t.n; ++i)
          for (std::int64_t r = b; r < e; ++r)
            t.y[i * t.w.rows + r] += load_as_f32(t.bias.data, t.bias.type, r);
      }
    };
    if (macs < parallel_macs_min) {
      rows(0, total_rows);
    } else {
      pool_.parallel_for(total_rows, matmul_rows_grain, rows);
    }
  }

  // f8_e4m3 rows [b, e) of a task: through the dot path when it is on and takes the weight,
  // otherwise through bf16 tiles: each tile is dequantised as an offline conversion to bf16
  // would do it and multiplied by the bf16 kernel, so the results are those of the converted
  // weights. Tiles are small enough to stay in cache between the two; the output goes
  // through a [n, tile] buffer since the tile is a weight of its own.
  void f8_rows(const task& t, std::int64_t b, std::int64_t e) const {
    if (dot_path(t.w)) return cpu::matmul_f8_rows_dot(t.x, t.n, t.w, b, e, t.y);
    constexpr std::int64_t tile_rows = 16;
    const std::int64_t cols = t.w.cols;
    thread_local std::vector<std::uint16_t> tile_buffer;
    thread_local std::vector<float> y_buffer;
    // 64-byte aligned: the dequantisation runs at half speed when its stores split lines.
    const std::size_t tile_bytes = std::size_t(tile_rows * cols) * sizeof(std::uint16_t);
    void* tile_memory = scratch(tile_buffer, std::size_t(tile_rows * cols + 32));
    std::size_t space = tile_bytes + 64;
    auto* tile = static_cast<std::uint16_t*>(std::align(64, tile_bytes, tile_memory, space));
    float* y = scratch(y_buffer, std::size_t(t.n * tile_rows));
    for (std::int64_t r0 = b; r0 < e; r0 += tile_rows) {
      const std::int64_t count = std::min(tile_rows, e - r0);
      cpu::dequantize_f8_e4m3_rows(t.w, r0, r0 + count, tile, fp8_path_);
      const weight_ref tile_ref{tile, dtype::bf16, count, cols};
      isa_.matmul_rows(t.x, t.xb, t.n, tile_ref, 0, count, y);
      for (std::int64_t i = 0; i < t.n; ++i)
        std::memcpy(t.y + i * t.w.rows + r0, y + i * count, std::size_t(count) * sizeof(float));
    }
  }

  bool dot_path(const weight_ref& w) const { return fp8_dot_ && cpu::fp8_dot_fits(w); }
  // Whether a matmul on w wants x in bf16 (xb), where the ISA uses bf16 activations: bf16
  // weights and fp8 through tiles do; the dot path scales and rounds x itself.
  bool reads_bf16_activations(const weight_ref& w) const {
    return w.type == dtype::bf16 || (w.type == dtype::f8_e4m3 && !dot_path(w));
  }

  // Index of the cache slot (block * block_tokens + offset) holding position pos.
  static std::int64_t slot_offset(std::int64_t block_tokens, const attention_sequence& s,
                                  std::int64_t pos) {
    const std::int64_t block_index = pos / block_tokens;
    DSRT_ASSERT(block_index < s.blocks, "position {} needs block {} of {}", pos, block_index,
                s.blocks);
    return std::int64_t(s.block_table[block_index]) * block_tokens + pos % block_tokens;
  }

  backend_caps caps_;
  const cpu::isa_kernels& isa_;
  cpu::thread_pool pool_;
  std::vector<std::uint16_t> xb_;
  std::vector<float> gamma_f32_;
  std::vector<float> rope_cos_sin_;
  std::vector<task> tasks_;
  cpu::fp8_path fp8_path_;
  bool fp8_dot_ = false;  // fp8 weights that fit go through cpu::matmul_f8_rows_dot
};

}  // namespace

std::unique_ptr<backend> make_cpu_backend(const cpu_backend_options& options) {
  return std::make_unique<cpu_backend>(options);
}

}  // namespace dsrt::kernels
