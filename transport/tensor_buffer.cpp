#include "transport/tensor_buffer.h"

#include <sys/mman.h>

#include <deque>
#include <iterator>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace dsrt::transport {
namespace {

// Freed mappings, oldest first. Keeping one past the limit unmaps the oldest, so a pool
// filled by one tensor size gives way to the sizes in use now.
struct mapping_pool {
  std::mutex mu;
  std::deque<std::pair<std::size_t, void*>> free;   // (mapped bytes, address)
  std::size_t bytes = 0;

  void* take(std::size_t mapped) {
    std::lock_guard lock(mu);
    for (auto it = free.rbegin(); it != free.rend(); ++it) {   // the newest first: warmest
      if (it->first != mapped) continue;
      void* p = it->second;
      free.erase(std::next(it).base());
      bytes -= mapped;
      return p;
    }
    return nullptr;
  }
  // Keeps p unless it alone exceeds the limit (or memory for the list runs out): then the
  // caller unmaps it.
  bool keep(void* p, std::size_t mapped) noexcept {
    if (mapped > tensor_buffer::pooled_bytes_max) return false;
    std::lock_guard lock(mu);
    while (bytes + mapped > tensor_buffer::pooled_bytes_max) {
      ::munmap(free.front().second, free.front().first);
      bytes -= free.front().first;
      free.pop_front();
    }
    try {
      free.emplace_back(mapped, p);
    } catch (const std::bad_alloc&) {
      return false;
    }
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
