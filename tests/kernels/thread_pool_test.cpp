#include "kernels/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
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

}  // namespace
}  // namespace dsrt::kernels::cpu
