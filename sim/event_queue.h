#pragma once
// The simulator's virtual clock and event queue: events run in time order; ties by where
// they came from (the queue's own events carry its origin, a message its sender's), then in
// the order their origin scheduled or sent them. A run is a pure function of its seed, and
// of when the messages of a parallel run reach the queue not at all. Nothing here reads a
// real clock.
//
// The heap orders small keys (time, order, slot); the callbacks stay put in a slot array
// and are moved out once, when they run, so a large run does not move or copy closures
// (and what they captured) through every heap sift.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/clock.h"

namespace dsrt::sim {

class event_queue {
 public:
  explicit event_queue(std::uint32_t origin = 0) : origin_(origin) {}
  clock_time now() const { return now_; }
  // Runs `fn` at `at` (not before now()).
  void at(clock_time at, std::function<void()> fn) { at_from(at, origin_, next_++, std::move(fn)); }
  // The same for a message: `origin` and `order` are its sender's and its place in what the
  // sender sent (origin < 2^16, order < 2^48).
  void at_from(clock_time at, std::uint32_t origin, std::uint64_t order, std::function<void()> fn) {
    std::uint32_t slot;
    if (free_.empty()) {
      slot = std::uint32_t(slots_.size());
      slots_.push_back(std::move(fn));
    } else {
      slot = free_.back();
      free_.pop_back();
      slots_[slot] = std::move(fn);
    }
    heap_.push_back({std::max(at, now_), std::uint64_t(origin) << order_bits | order, slot});
    std::push_heap(heap_.begin(), heap_.end(), later);
  }
  void after(clock_time::duration delay, std::function<void()> fn) { at(now_ + delay, std::move(fn)); }
  // Runs events until the queue is empty, `until` is reached or events_max ran; returns
  // the number run.
  std::uint64_t run(clock_time until, std::uint64_t events_max) {
    return run_before(clock_time::max(), until, events_max);
  }
  // The same, for events before `end` only (a window of a parallel simulation).
  std::uint64_t run_before(clock_time end, clock_time until, std::uint64_t events_max) {
    std::uint64_t ran = 0;
    while (!heap_.empty() && heap_.front().at < end && heap_.front().at <= until && ran < events_max) {
      std::pop_heap(heap_.begin(), heap_.end(), later);
      const key k = heap_.back();
      heap_.pop_back();
      now_ = k.at;
      auto fn = std::move(slots_[k.slot]);
      slots_[k.slot] = nullptr;
      free_.push_back(k.slot);
      fn();
      ++ran;
    }
    return ran;
  }
  bool empty() const { return heap_.empty(); }
  // When the next event runs. REQUIRES: !empty().
  clock_time next_at() const { return heap_.front().at; }

 private:
  static constexpr int order_bits = 48;
  struct key {
    clock_time at;
    std::uint64_t rank;   // origin << order_bits | order
    std::uint32_t slot;
  };
  // The heap's comparison: a max-heap of "later", so the front is the earliest.
  static bool later(const key& a, const key& b) { return a.at != b.at ? a.at > b.at : a.rank > b.rank; }

  std::uint32_t origin_;
  clock_time now_{};
  std::uint64_t next_ = 0;
  std::vector<key> heap_;
  std::vector<std::function<void()>> slots_;
  std::vector<std::uint32_t> free_;
};

}  // namespace dsrt::sim
