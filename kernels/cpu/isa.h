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
  // sum_i a[i] * b[i], b in bf16.
  float (*dot_bf16)(const float* a, const std::uint16_t* b, std::int64_t count);
  // y[i] += alpha * x[i], x in bf16.
  void (*axpy_bf16)(float* y, float alpha, const std::uint16_t* x, std::int64_t count);
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
