#pragma once
// Measures this machine's memory read bandwidth the way PERFORMANCE.md asks: every thread
// reads its own part of a buffer far larger than the last-level cache with vector loads
// and several independent accumulators; the best of several passes counts.
#include <cstddef>

namespace dsrt::kernels::cpu {

struct bandwidth_options {
  int threads = 1;
  std::size_t buffer_bytes = std::size_t(1) << 30;
  int passes = 5;
};

// Gigabytes (1e9 bytes) per second.
double measure_read_bandwidth_gbps(const bandwidth_options& options);

}  // namespace dsrt::kernels::cpu
