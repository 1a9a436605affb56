#pragma once
// The memory a received tensor lands in. Large buffers are mapped with transparent huge
// pages (MADV_HUGEPAGE): on the VMs we measured, faulting in a fresh 64 MiB buffer in 4 KiB
// pages took ~400 ms — longer than the transfer itself — and 2 MiB pages cut the faults
// 512-fold. Even so, the kernel zeroes every fresh page, which cost twice the copy of a
// 64 MiB tensor over shared memory; so a freed mapping is kept and handed to the next
// buffer of the same mapped size. The pool holds at most pooled_bytes_max, process-wide,
// and gives up its oldest mappings first when full: that memory stays resident (counted by
// pooled_bytes()) until reused or pushed out. Small buffers come from the heap.
//
// Ownership: move-only; frees (or pools) its memory. Contents start undefined (the transfer
// fills them; a pooled mapping holds an earlier tensor of this process).
// Thread safety: buffers may be made and freed on any threads (the pool has a mutex).
#include <cstddef>
#include <span>

namespace dsrt::transport {

class tensor_buffer {
 public:
  static constexpr std::size_t huge_page_bytes = 2u << 20;
  static constexpr std::size_t pooled_bytes_max = 1u << 30;   // freed mappings kept for reuse

  // Bytes of freed mappings held for reuse now.
  static std::size_t pooled_bytes();

  tensor_buffer() = default;
  // Errors are not values here: an allocation failure throws std::bad_alloc, as new does.
  explicit tensor_buffer(std::size_t bytes);
  ~tensor_buffer();
  tensor_buffer(tensor_buffer&& other) noexcept;
  tensor_buffer& operator=(tensor_buffer&& other) noexcept;
  tensor_buffer(const tensor_buffer&) = delete;
  tensor_buffer& operator=(const tensor_buffer&) = delete;

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }

 private:
  void release();
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t mapped_ = 0;   // bytes mapped with mmap (0: heap)
};

}  // namespace dsrt::transport
