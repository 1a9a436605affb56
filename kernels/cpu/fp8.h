#pragma once
// FP8 (e4m3fn) weights on the CPU: block-scaled rows dequantised to bf16 for the bf16 matmul
// kernels. Every path gives the bits an offline conversion gives,
//   bf16[r, c] = f32_to_bf16(f8_e4m3_to_f32(data[r, c]) * scale(r, c)),
// so a matmul on fp8 weights equals the matmul on those weights converted to bf16.
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

}  // namespace dsrt::kernels::cpu
