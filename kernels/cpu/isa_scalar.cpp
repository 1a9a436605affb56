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

float dot_bf16(const float* a, const std::uint16_t* b, std::int64_t count) {
  float sum = 0.f;
  for (std::int64_t i = 0; i < count; ++i) sum += a[i] * bf16_to_f32(b[i]);
  return sum;
}

void axpy_bf16(float* y, float alpha, const std::uint16_t* x, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) y[i] += alpha * bf16_to_f32(x[i]);
}

}  // namespace

const isa_kernels& scalar_kernels() {
  static const isa_kernels table{"scalar", false, matmul_rows, dot_bf16, axpy_bf16};
  return table;
}

}  // namespace dsrt::kernels::cpu
