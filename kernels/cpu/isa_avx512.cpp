// AVX-512 (F, BW, VL, DQ) path without BF16 instructions.
#include "kernels/cpu/avx512_tiles.h"

namespace dsrt::kernels::cpu {

const isa_kernels& avx512_kernels() {
  static const isa_kernels table{"avx512", false, avx512::matmul_rows<false>, avx512::attention_scores,
                                 avx512::attention_values};
  return table;
}

}  // namespace dsrt::kernels::cpu
