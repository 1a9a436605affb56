#pragma once
// A caching allocator for device memory: freed blocks go back to a free list per size class
// and are handed out again, so once a model has loaded and its scratch buffers have grown to
// their largest, a decode step allocates nothing from the driver (cudaMalloc synchronises the
// device and costs tens of microseconds to milliseconds).
//
// The raw allocator is a parameter, so the bookkeeping is tested with host memory on any
// machine (tests/kernels/device_pool_test.cpp).
//
// Size classes: requests round up to a multiple of 512 bytes up to 1 MiB, and above that to a
// multiple of a quarter of the largest power of two not above them (less than 25 % waste),
// so a buffer that grows step by step reuses its class.
//
// Invariants: reserved_bytes() = in_use_bytes() + cached_bytes() <= bytes_max; every pointer
// handed out and not yet given back is in in_use_ with its class size.
// Thread safety: none (one caller at a time, as the backend).
#include <cstddef>
#include <functional>
#include <map>
#include <unordered_map>
#include <vector>

namespace dsrt::kernels::cuda {

class device_pool {
 public:
  using raw_alloc_fn = std::function<void*(std::size_t)>;   // nullptr when out of memory
  using raw_free_fn = std::function<void(void*)>;

  // bytes_max: the most this pool reserves from the raw allocator (in use plus cached).
  device_pool(raw_alloc_fn raw_alloc, raw_free_fn raw_free, std::size_t bytes_max);
  ~device_pool();
  device_pool(const device_pool&) = delete;
  device_pool& operator=(const device_pool&) = delete;

  // nullptr when bytes_max would be passed or the raw allocator fails even after the cache
  // was given back to it.
  void* alloc(std::size_t bytes);
  // REQUIRES: ptr came from alloc() and was not freed since (nullptr is ignored).
  void free(void* ptr);
  // Gives every cached block back to the raw allocator.
  void release_cached();

  static std::size_t class_size(std::size_t bytes);
  std::size_t in_use_bytes() const { return in_use_bytes_; }
  std::size_t cached_bytes() const { return cached_bytes_; }
  std::size_t reserved_bytes() const { return in_use_bytes_ + cached_bytes_; }
  std::size_t raw_allocations() const { return raw_allocations_; }

 private:
  void* raw(std::size_t size);

  raw_alloc_fn raw_alloc_;
  raw_free_fn raw_free_;
  std::size_t bytes_max_;
  std::map<std::size_t, std::vector<void*>> cached_;      // class size -> free blocks
  std::unordered_map<void*, std::size_t> in_use_;         // pointer -> class size
  std::size_t in_use_bytes_ = 0;
  std::size_t cached_bytes_ = 0;
  std::size_t raw_allocations_ = 0;
};

}  // namespace dsrt::kernels::cuda
