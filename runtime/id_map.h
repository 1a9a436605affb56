#pragma once
// A flat hash map from 64-bit ids (request ids, sequence ids) to objects it owns: open
// addressing with linear probing over one array of (id, pointer) slots, backward-shift
// deletion (no tombstones), at most half full. The router and the batcher look up a
// request's state once per token; std::unordered_map<id, unique_ptr<T>> costs a bucket,
// a node and the object (three cache misses) per lookup, this the slot and the object.
//
// Objects live on the heap and never move: pointers and references stay valid until their
// entry is erased. Iteration order is the slot order (not insertion order): callers that
// need a deterministic order sort what they collect.
// Thread safety: none.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/assert.h"

namespace dsrt {

template <class T>
class id_map {
 public:
  id_map() = default;
  id_map(const id_map&) = delete;
  id_map& operator=(const id_map&) = delete;
  ~id_map() { clear(); }

  // The object stored under `id`, or null.
  T* find(std::uint64_t id) const {
    if (slots_.empty()) return nullptr;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = home(id); slots_[i].value; i = (i + 1) & mask)
      if (slots_[i].id == id) return slots_[i].value;
    return nullptr;
  }
  bool contains(std::uint64_t id) const { return find(id) != nullptr; }
  // Starts loading the slot where a lookup of `id` begins, so that a later find() of it
  // does not wait for memory. For callers about to look up many ids: issuing every
  // prefetch first lets the loads overlap (a cold lookup is a cache miss per level).
  void prefetch(std::uint64_t id) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[home(id)]);
  }

  // Stores `value` under `id`. REQUIRES: !contains(id), value != null.
  T& insert(std::uint64_t id, std::unique_ptr<T> value) {
    DSRT_ASSERT(value && !contains(id), "id {} is already present (or the value is null)", id);
    if ((size_ + 1) * 2 > slots_.size()) grow();
    T* raw = value.release();
    place(id, raw);
    ++size_;
    return *raw;
  }

  // Destroys the object under `id`; false when there is none.
  bool erase(std::uint64_t id) {
    if (slots_.empty()) return false;
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = home(id);
    for (; slots_[i].value; i = (i + 1) & mask)
      if (slots_[i].id == id) break;
    if (!slots_[i].value) return false;
    T* gone = slots_[i].value;
    // Backward shift: pull later entries of the run into the hole unless their home slot
    // lies cyclically in (hole, their slot].
    for (std::size_t j = (i + 1) & mask; slots_[j].value; j = (j + 1) & mask) {
      const std::size_t h = home(slots_[j].id);
      const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
      if (stays) continue;
      slots_[i] = slots_[j];
      i = j;
    }
    slots_[i] = slot{};
    --size_;
    delete gone;   // after the table is whole again, should its destructor look at it
    return true;
  }

  // Calls fn(id, T&) for every entry, in slot order. fn must not insert or erase.
  template <class Fn>
  void for_each(Fn&& fn) const {
    for (const slot& s : slots_)
      if (s.value) fn(s.id, *s.value);
  }

  void clear() {
    for (slot& s : slots_) delete s.value;
    slots_.clear();
    size_ = 0;
  }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  struct slot {
    std::uint64_t id = 0;
    T* value = nullptr;   // owned; null marks an empty slot
  };

  // Fibonacci hashing: the top bits of id * 2^64/phi. Ids are often sequential, and
  // consecutive multiples of the golden ratio spread evenly over the table; one multiply
  // per lookup (splitmix64 took two and a dozen other instructions, per token).
  std::size_t home(std::uint64_t id) const { return std::size_t((id * 0x9e3779b97f4a7c15ull) >> shift_); }
  void place(std::uint64_t id, T* value) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = home(id);
    while (slots_[i].value) i = (i + 1) & mask;
    slots_[i] = slot{id, value};
  }
  void grow() {
    std::vector<slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 16 : old.size() * 2, slot{});
    shift_ = 64 - std::countr_zero(slots_.size());
    for (const slot& s : old)
      if (s.value) place(s.id, s.value);
  }

  std::vector<slot> slots_;
  int shift_ = 64;   // 64 - log2(slots_.size()) once there are slots
  std::size_t size_ = 0;
};

}  // namespace dsrt
