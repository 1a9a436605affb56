#include "kernels/cpu/memory_bandwidth.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "kernels/cpu/multi_isa.h"

namespace dsrt::kernels::cpu {
namespace {

// 32 independent partial sums: enough loads in flight to saturate memory, and a loop the
// compiler turns into wide vector loads.
DSRT_MULTI_ISA
__attribute__((noinline)) float read_sum(const float* p, std::size_t count) {
  float acc[32] = {};
  for (std::size_t i = 0; i + 32 <= count; i += 32)
    for (int j = 0; j < 32; ++j) acc[j] += p[i + j];
  float sum = 0;
  for (float a : acc) sum += a;
  return sum;
}

}  // namespace

double measure_read_bandwidth_gbps(const bandwidth_options& options) {
  const int threads = std::max(1, options.threads);
  const std::size_t per_thread = options.buffer_bytes / sizeof(float) / std::size_t(threads) / 32 * 32;
  // 2 MB-aligned and advised for huge pages, as the weights are by default
  // (model::weights_memory::huge_pages): the probe measures the memory, not page walks.
  constexpr std::size_t huge_page = 2u << 20;
  const std::size_t bytes = (per_thread * std::size_t(threads) * sizeof(float) + huge_page - 1) /
                            huge_page * huge_page;
  auto* buffer = static_cast<float*>(std::aligned_alloc(huge_page, bytes));
  if (buffer == nullptr) return 0.0;
  ::madvise(buffer, bytes, MADV_HUGEPAGE);
  std::memset(buffer, 0, per_thread * std::size_t(threads) * sizeof(float));  // fault pages in

  double best = 0.0;
  std::atomic<float> sink{0};
  for (int pass = 0; pass < std::max(1, options.passes); ++pass) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
      workers.emplace_back([&, t] {
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) {
        }
        sink.store(sink.load() + read_sum(buffer + std::size_t(t) * per_thread, per_thread));
      });
    while (ready.load() != threads) {
    }
    const auto start = std::chrono::steady_clock::now();
    go.store(true, std::memory_order_release);
    for (auto& w : workers) w.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, double(per_thread * std::size_t(threads) * sizeof(float)) / seconds / 1e9);
  }
  std::free(buffer);
  return best;
}

}  // namespace dsrt::kernels::cpu
