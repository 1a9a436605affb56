#pragma once
// A flat hash multimap from 64-bit keys to non-negative 32-bit values (node or entry
// slots): open addressing with linear probing in one array, backward-shift deletion (no
// tombstones), the capacity a power of two at most half full. It replaces
// std::unordered_multimap in prefix_index and response_cache, whose per-entry heap nodes
// and bucket chains cost a cache miss or two and an allocation per insert on hot paths
// (the batcher's step, the router's every completed request).
//
// Keys must already be well mixed (the slot is the key's low bits): prefix_index's and
// response_cache's are splitmix64-finished hashes. Several values may share a key; values must be >= 0.
// Thread safety: none.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/assert.h"

namespace dsrt::cache {

class key_slots {
 public:
  void insert(std::uint64_t key, std::int32_t value) {
    DSRT_ASSERT(value >= 0, "value {}", value);
    if ((size_ + 1) * 2 > slots_.size()) grow();
    place(key, value);
    ++size_;
  }

  // Removes the entry (key, value); false when there is none.
  bool erase(std::uint64_t key, std::int32_t value) {
    if (slots_.empty()) return false;
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = key & mask;
    for (; slots_[i].value != empty; i = (i + 1) & mask)
      if (slots_[i].key == key && slots_[i].value == value) break;
    if (slots_[i].value == empty) return false;
    // Backward shift: pull later entries of the run into the hole unless their home slot
    // lies cyclically in (hole, their slot].
    for (std::size_t j = (i + 1) & mask; slots_[j].value != empty; j = (j + 1) & mask) {
      const std::size_t home = slots_[j].key & mask;
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (stays) continue;
      slots_[i] = slots_[j];
      i = j;
    }
    slots_[i].value = empty;
    --size_;
    return true;
  }

  // The first value stored under `key` for which pred(value) holds; -1 when none.
  template <class Pred>
  std::int32_t find_if(std::uint64_t key, Pred&& pred) const {
    if (slots_.empty()) return -1;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = key & mask; slots_[i].value != empty; i = (i + 1) & mask)
      if (slots_[i].key == key && pred(slots_[i].value)) return slots_[i].value;
    return -1;
  }

  void clear() {
    slots_.clear();
    size_ = 0;
  }
  std::size_t size() const { return size_; }

 private:
  static constexpr std::int32_t empty = -1;
  struct slot {
    std::uint64_t key = 0;
    std::int32_t value = empty;
  };

  void place(std::uint64_t key, std::int32_t value) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = key & mask;
    while (slots_[i].value != empty) i = (i + 1) & mask;
    slots_[i] = slot{key, value};
  }

  void grow() {
    std::vector<slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 16 : old.size() * 2, slot{});
    for (const slot& s : old)
      if (s.value != empty) place(s.key, s.value);
  }

  std::vector<slot> slots_;
  std::size_t size_ = 0;
};

}  // namespace dsrt::cache
