#include "transport/tensor_buffer.h"

#include <sys/mman.h>

#include <new>
#include <utility>

namespace dsrt::transport {

tensor_buffer::tensor_buffer(std::size_t bytes) : size_(bytes) {
  if (bytes < huge_page_bytes) {
    data_ = bytes ? static_cast<std::byte*>(::operator new(bytes)) : nullptr;
    return;
  }
  // Whole huge pages; MAP_PRIVATE|MAP_ANONYMOUS memory is zero until written (not touched here).
  mapped_ = (bytes + huge_page_bytes - 1) / huge_page_bytes * huge_page_bytes;
  void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  ::madvise(p, mapped_, MADV_HUGEPAGE);   // advice only: without THP it still works
  data_ = static_cast<std::byte*>(p);
}

void tensor_buffer::release() {
  if (!data_) return;
  if (mapped_)
    ::munmap(data_, mapped_);
  else
    ::operator delete(data_);
  data_ = nullptr;
  size_ = mapped_ = 0;
}

tensor_buffer::~tensor_buffer() { release(); }

tensor_buffer::tensor_buffer(tensor_buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)) {}

tensor_buffer& tensor_buffer::operator=(tensor_buffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
  }
  return *this;
}

}  // namespace dsrt::transport
