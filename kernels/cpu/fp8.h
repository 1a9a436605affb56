#pragma once
// FP8 (e4m3fn) weights on the CPU, two ways.
//  - Dequantisation: block-scaled rows turned into bf16 for the bf16 matmul kernels. Every
//    path gives the bits an offline conversion gives,
//      bf16[r, c] = f32_to_bf16(f8_e4m3_to_f32(data[r, c]) * scale(r, c)),
//    so a matmul on such tiles equals the matmul on the weights converted to bf16.
//  - The dot path (AVX-512 BF16 + VBMI): bytes widened to their exact bf16 (every e4m3 value
//    is one) and multiplied with the activations times the block's scale rounded to bf16,
//      y[t, r] = sum_c bf16(x[t, c] * scale(r, c)) * e4m3(w[r, c])   (f32 accumulation),
//    about four times cheaper per byte than the dequantisation, so decode is not compute
//    bound on it. The rounding moves from each weight * scale to each activation * scale
//    (both relative 2^-9), so outputs differ slightly from the converted weights'.
// Both are batch invariant: an output does not depend on the other tokens of the call.
// Thread safety: pure functions of their arguments.
#include <cstdint>
#include <string_view>

#include "kernels/backend.h"

namespace dsrt::kernels::cpu {

// Implementations of the dequantisation. portable is a plain loop compiled for several ISAs
// (multi_isa.h); the others turn 16 (avx2) or 32 bytes at a time into f16 bit patterns and
// widen them with vcvtph2ps, avx512bf16 also rounds to bf16 with vcvtne2ps2bf16.
enum class fp8_path : std::uint8_t { portable, avx2, avx512, avx512bf16 };

// The path that goes with a matmul ISA ("scalar", "avx2", "avx512", "avx512bf16"): the one
// of the same name, portable for "scalar". REQUIRES: isa_supported(isa).
fp8_path fp8_path_for_isa(std::string_view isa);

// Writes rows [row_begin, row_end) of w as bf16 into out (row-major, w.cols wide): out's row
// i is w's row row_begin + i, each element scaled by its block's scale (backend.h).
// REQUIRES: w.type == f8_e4m3; w.scales holds the blocks of rows scale_row0 + row_begin ..
// scale_row0 + row_end - 1; block_rows, block_cols > 0; 0 <= row_begin <= row_end <= w.rows;
// the CPU runs `path` (fp8_path_for_isa of a supported ISA).
void dequantize_f8_e4m3_rows(const weight_ref& w, std::int64_t row_begin, std::int64_t row_end,
                             std::uint16_t* out, fp8_path path);

// Whether this CPU has the dot path's instructions (AVX-512 F/BW/VL/DQ, BF16 and VBMI).
bool fp8_dot_available();

// Whether the dot path takes w: f8_e4m3 with its scales (any block shape).
bool fp8_dot_fits(const weight_ref& w);

// y[t, r] = sum_c bf16(x[t, c] * scale(r, c)) * e4m3(w[r, c]) for t in [0, n), r in
// [row_begin, row_end); y has w.rows columns, x is [n, w.cols]. A scaled activation below
// bf16's normal range (|x * scale| < 2^-126) is flushed to zero, as vdpbf16ps also flushes
// denormal sums.
// REQUIRES: fp8_dot_available(), fp8_dot_fits(w), 0 <= row_begin <= row_end <= w.rows.
void matmul_f8_rows_dot(const float* x, std::int64_t n, const weight_ref& w,
                        std::int64_t row_begin, std::int64_t row_end, float* y);

}  // namespace dsrt::kernels::cpu
