// Run-time choice of the CPU path.
#include <cstdlib>
#include <string>

#include "kernels/assert.h"
#include "kernels/cpu/isa.h"

namespace dsrt::kernels {

namespace cpu {

bool isa_supported(const std::string& name) {
  if (name == "scalar") return true;
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq");
  if (name == "avx2") return avx2;
  if (name == "avx512") return avx512;
  if (name == "avx512bf16") return avx512 && __builtin_cpu_supports("avx512bf16");
#endif
  return false;
}

const isa_kernels& isa_by_name(const std::string& name) {
  DSRT_ASSERT(isa_supported(name), "CPU path {} is not supported here", name);
  if (name == "avx512bf16") return avx512bf16_kernels();
  if (name == "avx512") return avx512_kernels();
  if (name == "avx2") return avx2_kernels();
  return scalar_kernels();
}

}  // namespace cpu

bool cpu_isa_supported(const std::string& isa) { return cpu::isa_supported(isa); }

std::string cpu_best_isa() {
  if (const char* env = std::getenv("DSRT_CPU_ISA"); env && cpu::isa_supported(env)) return env;
  for (const char* name : {"avx512bf16", "avx512", "avx2"})
    if (cpu::isa_supported(name)) return name;
  return "scalar";
}

}  // namespace dsrt::kernels
