#pragma once
// Host metadata (token ids, positions, block tables) on its way to the GPU: an operation
// copies its arrays into pinned host memory and queues one host-to-device copy for all of
// them, so the caller may reuse its own arrays as soon as the operation returns.
//
//   staging_.begin(bytes_needed);            // room for every add() of this operation
//   const int* ids = staging_.add(host_ids);  // device pointer, valid for kernels queued next
//   staging_.flush();                         // one cudaMemcpyAsync for the operation
//
// or, for arrays that every layer of a step passes again unchanged (positions, cache slots,
// attention rows), put() with a staged_arrays record: equal arrays staged in the same epoch
// are not copied again, their earlier device copies are returned.
//
// The buffer is a ring restarted at offset 0 when an operation does not fit in what is left;
// before reusing it, begin() issues what the launcher holds and waits for the stream, since
// queued copies and kernels may still read the old contents. An operation larger than the whole buffer grows it. Each restart
// (and reset_after_sync) begins a new epoch: device copies from an older one are gone.
// Thread safety: none (one caller at a time, as the backend).
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <vector>

#include "kernels/assert.h"
#include "kernels/cuda/launcher.h"

namespace dsrt::kernels::cuda {

// What put() staged last for one caller: the arrays' bytes and their device copies.
struct staged_arrays {
  std::uint64_t epoch = 0;  // 0: nothing staged yet
  std::vector<std::byte> bytes;
  std::vector<std::size_t> sizes;
  std::vector<const void*> device;
};

class staging {
 public:
  // Copies go through launcher (recorded into step graphs with the kernels that read them).
  explicit staging(launcher& l) : launcher_(l) {}
  ~staging();
  // The first buffer; an error (out of device or pinned memory) leaves the staging unusable.
  cudaError_t reserve(std::size_t bytes);
  staging(const staging&) = delete;
  staging& operator=(const staging&) = delete;

  // Room for `bytes` of add()s (each rounded up to 16 bytes).
  void begin(std::size_t bytes);
  template <class T>
  const T* add(std::span<const T> host) {
    const std::size_t bytes = round_up(host.size_bytes());
    DSRT_ASSERT(offset_ + bytes <= reserved_end_, "staging add of {} bytes past begin()'s room",
                bytes);
    if (!host.empty()) std::memcpy(host_ + offset_, host.data(), host.size_bytes());
    const T* device = reinterpret_cast<const T*>(device_ + offset_);
    offset_ += bytes;
    return device;
  }
  void flush();
  // begin(), add() of each array, flush() in one call; with `last`, arrays equal to those it
  // recorded in this epoch are not staged again (see above). Returns the device copies.
  std::span<const void* const> put(std::initializer_list<std::span<const std::byte>> arrays,
                                   staged_arrays& last);
  // The stream has finished everything queued: the whole buffer is free again.
  void reset_after_sync() {
    offset_ = flushed_ = reserved_end_ = 0;
    ++epoch_;
  }

  static std::size_t round_up(std::size_t bytes) { return (bytes + 15) / 16 * 16; }
  std::size_t capacity() const { return capacity_; }

 private:
  cudaError_t allocate(std::size_t bytes);
  void release();

  launcher& launcher_;
  std::size_t capacity_ = 0;
  char* host_ = nullptr;     // pinned
  char* device_ = nullptr;
  std::size_t offset_ = 0;        // next free byte
  std::size_t flushed_ = 0;       // bytes before this are copied (or queued)
  std::size_t reserved_end_ = 0;  // begin()'s room ends here
  std::uint64_t epoch_ = 1;
};

}  // namespace dsrt::kernels::cuda
