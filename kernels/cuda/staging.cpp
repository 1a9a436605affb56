#include "kernels/cuda/staging.h"

#include <algorithm>

#include "kernels/assert.h"
#include "kernels/cuda/cuda_check.h"

namespace dsrt::kernels::cuda {

cudaError_t staging::reserve(std::size_t bytes) {
  return allocate(round_up(std::max<std::size_t>(bytes, 4096)));
}

staging::~staging() { release(); }

cudaError_t staging::allocate(std::size_t bytes) {
  cudaError_t e = cudaHostAlloc(reinterpret_cast<void**>(&host_), bytes, cudaHostAllocDefault);
  if (e == cudaSuccess) e = cudaMalloc(reinterpret_cast<void**>(&device_), bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    release();
    return e;
  }
  capacity_ = bytes;
  return cudaSuccess;
}

void staging::release() {
  if (host_) cudaFreeHost(host_);
  if (device_) cudaFree(device_);
  host_ = device_ = nullptr;
  capacity_ = 0;
}

void staging::begin(std::size_t bytes) {
  DSRT_ASSERT(offset_ == flushed_, "staging begin() with {} bytes not flushed", offset_ - flushed_);
  if (offset_ + bytes > capacity_) {
    launcher_.sync();
    reset_after_sync();
    if (bytes > capacity_) {
      const std::size_t grown = round_up(std::max(bytes, 2 * capacity_));
      release();
      DSRT_CUDA_CHECK(allocate(grown));  // out of memory mid-step: a fault of the device's
    }
  }
  reserved_end_ = offset_ + bytes;
}

std::span<const void* const> staging::put(std::initializer_list<std::span<const std::byte>> arrays,
                                          staged_arrays& last) {
  bool same = last.epoch == epoch_ && last.sizes.size() == arrays.size();
  std::size_t offset = 0, total = 0, i = 0;
  for (const auto& a : arrays) {
    total += round_up(a.size());
    if (!same) continue;
    same = last.sizes[i] == a.size() &&
           (a.empty() || std::memcmp(last.bytes.data() + offset, a.data(), a.size()) == 0);
    offset += a.size();
    ++i;
  }
  if (same) return last.device;
  begin(total);
  last.bytes.clear();
  last.sizes.clear();
  last.device.clear();
  for (const auto& a : arrays) {
    last.device.push_back(add(a));
    last.sizes.push_back(a.size());
    last.bytes.insert(last.bytes.end(), a.begin(), a.end());
  }
  flush();
  last.epoch = epoch_;  // after begin(), which may have started a new epoch
  return last.device;
}

void staging::flush() {
  // Recorded like a kernel: a step graph replays the copy from the same pinned bytes, which
  // the next step's operations have refilled by then.
  if (offset_ > flushed_)
    launcher_.copy(device_ + flushed_, host_ + flushed_, offset_ - flushed_, cudaMemcpyHostToDevice);
  flushed_ = offset_;
}

}  // namespace dsrt::kernels::cuda
