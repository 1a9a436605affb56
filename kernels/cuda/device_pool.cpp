#include "kernels/cuda/device_pool.h"

#include <bit>

#include "kernels/assert.h"

namespace dsrt::kernels::cuda {
namespace {
constexpr std::size_t small_granule = 512;
constexpr std::size_t small_limit = std::size_t(1) << 20;
// Requests above this are refused outright (no device has 2^48 bytes; avoids overflow).
constexpr std::size_t request_bytes_max = std::size_t(1) << 48;
}  // namespace

device_pool::device_pool(raw_alloc_fn raw_alloc, raw_free_fn raw_free, std::size_t bytes_max)
    : raw_alloc_(std::move(raw_alloc)), raw_free_(std::move(raw_free)), bytes_max_(bytes_max) {}

device_pool::~device_pool() {
  release_cached();
  for (auto& [ptr, size] : in_use_) raw_free_(ptr);
}

std::size_t device_pool::class_size(std::size_t bytes) {
  bytes = bytes == 0 ? 1 : bytes;
  if (bytes <= small_limit) return (bytes + small_granule - 1) / small_granule * small_granule;
  const std::size_t quarter = std::bit_floor(bytes) / 4;
  return (bytes + quarter - 1) / quarter * quarter;
}

void* device_pool::alloc(std::size_t bytes) {
  if (bytes > request_bytes_max) return nullptr;
  const std::size_t size = class_size(bytes);
  void* ptr = nullptr;
  if (auto it = cached_.find(size); it != cached_.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
    cached_bytes_ -= size;
  } else {
    ptr = raw(size);
    if (ptr == nullptr) return nullptr;
  }
  in_use_.emplace(ptr, size);
  in_use_bytes_ += size;
  return ptr;
}

void* device_pool::raw(std::size_t size) {
  // Over the budget, or refused by the driver: give the cache back and try once more.
  auto fits = [&] { return in_use_bytes_ + cached_bytes_ + size <= bytes_max_; };
  void* ptr = fits() ? raw_alloc_(size) : nullptr;
  if (ptr == nullptr && cached_bytes_ > 0) {
    release_cached();
    if (fits()) ptr = raw_alloc_(size);
  }
  if (ptr != nullptr) ++raw_allocations_;
  return ptr;
}

void device_pool::free(void* ptr) {
  if (ptr == nullptr) return;
  auto it = in_use_.find(ptr);
  DSRT_ASSERT(it != in_use_.end(), "freeing {} which this pool did not hand out", ptr);
  const std::size_t size = it->second;
  in_use_.erase(it);
  in_use_bytes_ -= size;
  cached_[size].push_back(ptr);
  cached_bytes_ += size;
}

void device_pool::release_cached() {
  for (auto& [size, blocks] : cached_)
    for (void* ptr : blocks) raw_free_(ptr);
  cached_.clear();
  cached_bytes_ = 0;
}

}  // namespace dsrt::kernels::cuda
