// The CUDA backend's caching allocator, over host memory: its bookkeeping is plain C++ and
// runs on every machine.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>

#include "kernels/cuda/device_pool.h"

namespace dsrt::kernels::cuda {
namespace {

struct counting_allocator {
  std::size_t live = 0, calls = 0, refuse_above = SIZE_MAX;
  std::map<void*, std::size_t> blocks;
  device_pool make(std::size_t bytes_max) {
    return device_pool(
        [this](std::size_t bytes) -> void* {
          ++calls;
          if (live + bytes > refuse_above) return nullptr;
          void* p = std::malloc(bytes);
          live += bytes;
          blocks.emplace(p, bytes);
          return p;
        },
        [this](void* p) {
          auto it = blocks.find(p);
          ASSERT_NE(it, blocks.end()) << "freed twice or never allocated";
          live -= it->second;
          blocks.erase(it);
          std::free(p);
        },
        bytes_max);
  }
};

TEST(DevicePool, ClassesRoundUpWithBoundedWaste) {
  EXPECT_EQ(device_pool::class_size(0), 512u);
  EXPECT_EQ(device_pool::class_size(1), 512u);
  EXPECT_EQ(device_pool::class_size(513), 1024u);
  for (std::size_t bytes : {std::size_t(1) << 20, (std::size_t(1) << 20) + 1, std::size_t(3'000'000),
                            std::size_t(123'456'789)}) {
    const std::size_t size = device_pool::class_size(bytes);
    EXPECT_GE(size, bytes);
    EXPECT_LE(size, bytes + bytes / 4) << bytes;
  }
}

TEST(DevicePool, AFreedBlockIsReusedWithoutTheRawAllocator) {
  counting_allocator raw;
  device_pool pool = raw.make(SIZE_MAX);
  void* a = pool.alloc(5000);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(pool.in_use_bytes(), device_pool::class_size(5000));
  pool.free(a);
  EXPECT_EQ(pool.in_use_bytes(), 0u);
  EXPECT_EQ(pool.cached_bytes(), device_pool::class_size(5000));
  // The decode loop's pattern: the same sizes again and again, no new raw allocation.
  for (int step = 0; step < 100; ++step) {
    void* b = pool.alloc(4900);  // same class
    EXPECT_EQ(b, a);
    pool.free(b);
  }
  EXPECT_EQ(pool.raw_allocations(), 1u);
  EXPECT_EQ(raw.calls, 1u);
}

TEST(DevicePool, TheBudgetIsKeptAndTheCacheGivenBackWhenItBlocks) {
  counting_allocator raw;
  device_pool pool = raw.make(8192);
  void* a = pool.alloc(4096);
  void* b = pool.alloc(4096);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(pool.alloc(1), nullptr);  // over the budget
  EXPECT_EQ(pool.reserved_bytes(), 8192u);
  pool.free(a);
  // A different class: the cached 4096 block is given back to make room.
  void* c = pool.alloc(2048);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(pool.cached_bytes(), 0u);
  EXPECT_LE(pool.reserved_bytes(), 8192u);
  pool.free(b);
  pool.free(c);
}

TEST(DevicePool, ARefusalOfTheRawAllocatorReleasesTheCacheAndRetries) {
  counting_allocator raw;
  raw.refuse_above = 3000;  // the "device" has 3000 bytes
  device_pool pool = raw.make(SIZE_MAX);
  void* a = pool.alloc(2048);
  ASSERT_NE(a, nullptr);
  pool.free(a);
  // 2048 cached + 2560 new > 3000: refused, the cache is given back, the retry succeeds.
  void* b = pool.alloc(2500);
  EXPECT_NE(b, nullptr);
  EXPECT_EQ(pool.cached_bytes(), 0u);
  pool.free(b);
}

TEST(DevicePool, DestructionGivesEverythingBack) {
  counting_allocator raw;
  {
    device_pool pool = raw.make(SIZE_MAX);
    void* a = pool.alloc(100);
    pool.alloc(200000);
    pool.free(a);
  }
  EXPECT_TRUE(raw.blocks.empty());
}

TEST(DevicePoolDeathTest, FreeingAPointerItDidNotHandOutIsAProgrammerError) {
  counting_allocator raw;
  device_pool pool = raw.make(SIZE_MAX);
  int local = 0;
  EXPECT_DEATH(pool.free(&local), "did not hand out");
}

}  // namespace
}  // namespace dsrt::kernels::cuda
