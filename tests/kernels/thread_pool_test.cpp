#include "kernels/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

namespace dsrt::kernels::cpu {
namespace {

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  thread_pool pool(3);
  for (std::int64_t count : {0, 1, 5, 16, 17, 1000}) {
    for (std::int64_t grain : {1, 4, 16}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(count));
      pool.parallel_for(count, grain, [&](std::int64_t b, std::int64_t e) {
        EXPECT_TRUE(b % grain == 0) << "range start " << b << " not aligned to " << grain;
        for (std::int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (std::int64_t i = 0; i < count; ++i)
        ASSERT_EQ(hits[i].load(), 1) << "count " << count << " grain " << grain << " index " << i;
    }
  }
}

TEST(ThreadPool, RunsEveryWorkerManyTimes) {
  thread_pool pool(2);
  std::atomic<int> calls{0};
  for (int round = 0; round < 2000; ++round)
    pool.run([&](int worker, int workers) {
      EXPECT_EQ(workers, 2);
      EXPECT_TRUE(worker == 0 || worker == 1);
      calls.fetch_add(1);
    });
  EXPECT_EQ(calls.load(), 4000);
}

TEST(ThreadPool, AnExceptionOnAnyWorkerReachesTheCallerAndThePoolStaysUsable) {
  thread_pool pool(2);
  for (int thrower : {0, 1}) {
    std::atomic<int> finished{0};
    EXPECT_THROW(pool.run([&](int worker, int) {
      if (worker == thrower) throw std::runtime_error("worker failed");
      finished.fetch_add(1);
    }),
                 std::runtime_error)
        << "thrower " << thrower;
    EXPECT_EQ(finished.load(), 1) << "the other worker ran to completion, thrower " << thrower;
  }
  std::atomic<int> calls{0};
  pool.run([&](int, int) { calls.fetch_add(1); });
  EXPECT_EQ(calls.load(), 2);
}

}  // namespace
}  // namespace dsrt::kernels::cpu
