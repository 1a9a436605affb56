#pragma once
// Elementwise loops of the CPU backend. Each is compiled for several ISAs (GCC
// target_clones) and picked at load time, so the portable build still runs them with
// AVX-512 or AVX2 where the CPU has it. exp() is a branch-free polynomial (relative error
// below 2e-7 over the range that matters) so the loops vectorize.
#include <cstdint>

namespace dsrt::kernels::cpu {

// out[i] = silu(gate[i]) * up[i]; out may alias gate or up.
void silu_mul(const float* gate, const float* up, std::int64_t count, float* out);
// x[i] = exp(x[i] - max); returns the sum. REQUIRES: max >= every x[i].
float exp_shifted_sum(float* x, std::int64_t count, float max);
float max_of(const float* x, std::int64_t count);
float sum_of_squares(const float* x, std::int64_t count);
// y[i] = x[i] * scale * gamma[i] with gamma in f32 (gamma_bf16 == nullptr) or bf16.
void scale_by_gamma(const float* x, float scale, const float* gamma_f32,
                    const std::uint16_t* gamma_bf16, std::int64_t count, float* y);
void add_inplace(float* x, const float* y, std::int64_t count);
void scale_inplace(float* x, float scale, std::int64_t count);
// x[i] += scale * y[i]
void add_scaled(float* x, const float* y, float scale, std::int64_t count);
// Round to nearest even, NaN kept a NaN.
void to_bf16(const float* x, std::int64_t count, std::uint16_t* out);

// Scalar exp with the same polynomial (for tests).
float fast_exp(float x);

}  // namespace dsrt::kernels::cpu
