// The parallel run's thread pool: every task of every window runs exactly once, and a
// window's work is visible to the caller when run() returns, on any number of threads.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
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

TEST(WindowPool, ParkedWorkersLeaveEveryTaskToTheCallerAndComeBackWhenWoken) {
  window_pool pool(3);
  const auto caller = std::this_thread::get_id();
  for (int round = 0; round < 50; ++round) {
    const bool parked = round % 2 == 1;
    pool.park(parked);
    EXPECT_EQ(pool.parked(), parked);
    std::vector<std::uint64_t> counts(6, 0);
    std::atomic<int> elsewhere{0};
    for (int w = 0; w < 20; ++w) {
      const std::function<void(std::size_t)> task = [&](std::size_t k) {
        if (std::this_thread::get_id() != caller) elsewhere.fetch_add(1);
        counts[k] += 1;
      };
      pool.run(counts.size(), task);
    }
    EXPECT_EQ(counts, std::vector<std::uint64_t>(6, 20)) << "round " << round;
    if (parked) {
      EXPECT_EQ(elsewhere.load(), 0) << "a parked worker ran a task";
    }
  }
  pool.park(true);   // the destructor wakes and stops parked workers too
}

}  // namespace
}  // namespace dsrt::sim
