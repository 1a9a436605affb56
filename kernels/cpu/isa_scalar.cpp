// The plain scalar reference: obviously correct, used by tests as the yardstick for the
// vector paths and selectable with DSRT_CPU_ISA=scalar.
#include "kernels/cpu/isa.h"

namespace dsrt::kernels::cpu {
namespace {

void matmul_rows(const float* x, const std::uint16_t*, std::int64_t n, const weight_ref& w,
                 std::int64_t row_begin, std::int64_t row_end, float* y) {
  const std::int64_t k = w.cols;
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t r = row_begin; r < row_end; ++r) {
      float sum = 0.f;
      for (std::int64_t i = 0; i < k; ++i) sum += x[t * k + i] * load_as_f32(w.data, w.type, r * k + i);
      y[t * w.rows + r] = sum;
    }
  }
}

void attention_scores(const float* q, int heads, const std::uint16_t* keys, std::int64_t stride,
                      std::int64_t count, std::int64_t head_dim, float scale, float* scores,
                      std::int64_t scores_stride) {
  for (int h = 0; h < heads; ++h)
    for (std::int64_t j = 0; j < count; ++j) {
      float sum = 0.f;
      for (std::int64_t d = 0; d < head_dim; ++d)
        sum += q[h * head_dim + d] * bf16_to_f32(keys[j * stride + d]);
      scores[h * scores_stride + j] = sum * scale;
    }
}

void attention_values(float* out, int heads, const float* p, std::int64_t scores_stride,
                      const std::uint16_t* values, std::int64_t stride, std::int64_t count,
                      std::int64_t head_dim) {
  for (int h = 0; h < heads; ++h)
    for (std::int64_t j = 0; j < count; ++j)
      for (std::int64_t d = 0; d < head_dim; ++d)
        out[h * head_dim + d] += p[h * scores_stride + j] * bf16_to_f32(values[j * stride + d]);
}

}  // namespace

const isa_kernels& scalar_kernels() {
  static const isa_kernels table{"scalar", false, matmul_rows, attention_scores,
                                 attention_values};
  return table;
}

}  // namespace dsrt::kernels::cpu
