// AVX-512 with the BF16 extension: bf16 weights use vdpbf16ps on bf16 activations.
#include "kernels/cpu/avx512_tiles.h"

namespace dsrt::kernels::cpu {

const isa_kernels& avx512bf16_kernels() {
  static const isa_kernels table{"avx512bf16", true, avx512::matmul_rows<true>,
                                 avx512::dot_bf16, avx512::axpy_bf16};
  return table;
}

}  // namespace dsrt::kernels::cpu
