#include "kernels/cuda/staging.h"

#include <algorithm>

#include "kernels/assert.h"
#include "kernels/cuda/cuda_check.h"

namespace dsrt::kernels::cuda {

staging::staging(cudaStream_t stream, std::size_t bytes) : stream_(stream) {
  allocate(round_up(std::max<std::size_t>(bytes, 4096)));
}

staging::~staging() { release(); }

void staging::allocate(std::size_t bytes) {
  DSRT_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host_), bytes, cudaHostAllocDefault));
  DSRT_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&device_), bytes));
  capacity_ = bytes;
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
    DSRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    reset_after_sync();
    if (bytes > capacity_) {
      const std::size_t grown = round_up(std::max(bytes, 2 * capacity_));
      release();
      allocate(grown);
    }
  }
  reserved_end_ = offset_ + bytes;
}

void staging::flush() {
  if (offset_ > flushed_)
    DSRT_CUDA_CHECK(cudaMemcpyAsync(device_ + flushed_, host_ + flushed_, offset_ - flushed_,
                                    cudaMemcpyHostToDevice, stream_));
  flushed_ = offset_;
}

}  // namespace dsrt::kernels::cuda
