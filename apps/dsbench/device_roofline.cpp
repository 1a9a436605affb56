#include "apps/dsbench/device_roofline.h"

#include <algorithm>
#include <chrono>

namespace dsrt::apps {

double measure_device_copy_gbps(kernels::backend& b, std::size_t bytes, int passes) {
  void* src = b.alloc(bytes);
  void* dst = b.alloc(bytes);
  double best_s = 0;
  if (src != nullptr && dst != nullptr) {
    b.copy_device(dst, src, bytes);  // first touch, clocks up
    b.synchronize();
    for (int p = 0; p < passes; ++p) {
      const auto start = std::chrono::steady_clock::now();
      b.copy_device(dst, src, bytes);
      b.synchronize();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      best_s = p == 0 ? s : std::min(best_s, s);
    }
  }
  b.free(dst);
  b.free(src);
  return best_s > 0 ? 2.0 * double(bytes) / best_s / 1e9 : 0.0;
}

double known_bf16_peak_tflops(const std::string& detail) {
  auto has = [&](const char* s) { return detail.find(s) != std::string::npos; };
  if (has("H200")) return 989.0;
  if (has("H100")) return has("PCIe") ? 756.0 : 989.0;
  if (has("H800")) return 989.0;
  if (has("A100")) return 312.0;
  return 0.0;
}

}  // namespace dsrt::apps
