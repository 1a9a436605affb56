#pragma once
// The instruction-set-specific inner loops of the CPU backend. Each ISA file fills one
// table; cpu_backend picks one at construction (cpu_features) and does everything else
// (threading, blocking over tokens, the ops that are not hot) in portable code.
//
// Every path computes each output element with the same reduction order whatever the
// batch size or the position of the token in the batch, so results are batch-invariant.
#include <cstdint>
#include <string>

#include "kernels/backend.h"

namespace dsrt::kernels::cpu {

struct isa_kernels {
  const char* name;
  // matmul_rows wants bf16 activations (xb) when the weights are bf16.
  bool bf16_activations;
  // y[t, r] = sum_k x[t, k] * w[r, k] for t in [0, n), r in [row_begin, row_end).
  // y has w.rows columns. xb is x converted to bf16 (only when bf16_activations and
  // w.type == bf16; nullptr otherwise).
  void (*matmul_rows)(const float* x, const std::uint16_t* xb, std::int64_t n,
                      const weight_ref& w, std::int64_t row_begin, std::int64_t row_end,
                      float* y);
  // Attention of the `heads` query heads that share one KV head (GQA) over a run of cache
  // slots (bf16 keys / values, `stride` elements apart), so each key and value row is
  // loaded once for the whole group. q and out hold the heads one after another
  // (head_dim apart); scores and p hold one row per head, `scores_stride` apart.
  // scores[h * scores_stride + j] = scale * sum_d q[h * head_dim + d] * keys[j * stride + d]
  void (*attention_scores)(const float* q, int heads, const std::uint16_t* keys,
                           std::int64_t stride, std::int64_t count, std::int64_t head_dim,
                           float scale, float* scores, std::int64_t scores_stride);
  // out[h * head_dim + d] += sum_j p[h * scores_stride + j] * values[j * stride + d]
  void (*attention_values)(float* out, int heads, const float* p, std::int64_t scores_stride,
                           const std::uint16_t* values, std::int64_t stride, std::int64_t count,
                           std::int64_t head_dim);
};

const isa_kernels& scalar_kernels();
const isa_kernels& avx2_kernels();
const isa_kernels& avx512_kernels();
const isa_kernels& avx512bf16_kernels();

// Whether this CPU can run the named path ("scalar", "avx2", "avx512", "avx512bf16").
bool isa_supported(const std::string& name);
// The table for a supported name. REQUIRES: isa_supported(name).
const isa_kernels& isa_by_name(const std::string& name);

}  // namespace dsrt::kernels::cpu
