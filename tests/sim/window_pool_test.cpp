// The parallel run's thread pool: every task of every window runs exactly once, and a
// window's work is visible to the caller when run() returns, on any number of threads.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "sim/window_pool.h"

namespace dsrt::sim {
namespace {

TEST(WindowPool, EveryTaskOfEveryWindowRunsOnceAndIsSeenByTheCaller) {
  constexpr int windows = 2000;
  for (int threads : {1, 2, 3}) {
    window_pool pool(threads);
    std::vector<std::uint64_t> counts(7, 0);   // plain writes: the barriers must order them
    std::atomic<int> running{0}, overlap{0};
    for (int w = 0; w < windows; ++w) {
      const std::size_t tasks = std::size_t(w % 8) % 7;   // 0 .. 6 tasks, as windows have
      const std::function<void(std::size_t)> task = [&](std::size_t k) {
        if (running.fetch_add(1) >= threads) overlap.fetch_add(1);
        counts[k] += std::uint64_t(w);
        running.fetch_sub(1);
      };
      pool.run(tasks, task);
      EXPECT_EQ(running.load(), 0) << "window " << w << " returned with a task still running";
    }
    std::vector<std::uint64_t> expected(7, 0);
    for (int w = 0; w < windows; ++w)
      for (std::size_t k = 0; k < std::size_t(w % 8) % 7; ++k) expected[k] += std::uint64_t(w);
    EXPECT_EQ(counts, expected) << threads << " threads";
    EXPECT_EQ(overlap.load(), 0) << "more tasks at once than threads";
  }
}

}  // namespace
}  // namespace dsrt::sim
