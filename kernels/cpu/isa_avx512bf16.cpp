// AVX-512 with the BF16 extension: bf16 weights use vdpbf16ps on bf16 activations, and
// attention scores use it on bf16 queries against the bf16 keys of the cache.
#include "kernels/cpu/avx512_tiles.h"

namespace dsrt::kernels::cpu {

const isa_kernels& avx512bf16_kernels() {
  static const isa_kernels table{"avx512bf16", true, avx512::matmul_rows<true>,
                                 avx512::attention_scores_dp,
                                 avx512::attention_values};
  return table;
}

}  // namespace dsrt::kernels::cpu
