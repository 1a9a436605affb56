#include "transport/tensor_buffer.h"

#include <sys/mman.h>

#include <map>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace dsrt::transport {
namespace {

// Freed mappings by mapped size.
struct mapping_pool {
  std::mutex mu;
  std::map<std::size_t, std::vector<void*>> free;
  std::size_t bytes = 0;

  void* take(std::size_t mapped) {
    std::lock_guard lock(mu);
    auto it = free.find(mapped);
    if (it == free.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    bytes -= mapped;
    return p;
  }
  bool keep(void* p, std::size_t mapped) {
    std::lock_guard lock(mu);
    if (bytes + mapped > tensor_buffer::pooled_bytes_max) return false;
    free[mapped].push_back(p);
    bytes += mapped;
    return true;
  }
};

// Never destroyed: buffers may be freed during static destruction; the OS takes the rest.
mapping_pool& pool() {
  static auto* p = new mapping_pool;
  return *p;
}

}  // namespace

std::size_t tensor_buffer::pooled_bytes() {
  std::lock_guard lock(pool().mu);
  return pool().bytes;
}

tensor_buffer::tensor_buffer(std::size_t bytes) : size_(bytes) {
  if (bytes < huge_page_bytes) {
    data_ = bytes ? static_cast<std::byte*>(::operator new(bytes)) : nullptr;
    return;
  }
  // Whole huge pages; MAP_PRIVATE|MAP_ANONYMOUS memory is zero until written (not touched here).
  mapped_ = (bytes + huge_page_bytes - 1) / huge_page_bytes * huge_page_bytes;
  if (void* reused = pool().take(mapped_)) {
    data_ = static_cast<std::byte*>(reused);
    return;
  }
  void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  ::madvise(p, mapped_, MADV_HUGEPAGE);   // advice only: without THP it still works
  data_ = static_cast<std::byte*>(p);
}

void tensor_buffer::release() {
  if (!data_) return;
  if (mapped_) {
    if (!pool().keep(data_, mapped_)) ::munmap(data_, mapped_);
  } else
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
