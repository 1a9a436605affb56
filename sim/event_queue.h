#pragma once
// The simulator's virtual clock and event queue: events run in time order, ties in the
// order they were scheduled, so a run is a pure function of its seed. Nothing here reads
// a real clock.
#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

#include "runtime/clock.h"

namespace dsrt::sim {

class event_queue {
 public:
  clock_time now() const { return now_; }
  // Runs `fn` at `at` (not before now()).
  void at(clock_time at, std::function<void()> fn) {
    queue_.push({std::max(at, now_), next_++, std::move(fn)});
  }
  void after(clock_time::duration delay, std::function<void()> fn) { at(now_ + delay, std::move(fn)); }
  // Runs events until the queue is empty, `until` is reached or events_max ran; returns
  // the number run.
  std::uint64_t run(clock_time until, std::uint64_t events_max) {
    std::uint64_t ran = 0;
    while (!queue_.empty() && queue_.top().at <= until && ran < events_max) {
      auto e = queue_.top();
      queue_.pop();
      now_ = e.at;
      e.fn();
      ++ran;
    }
    return ran;
  }
  bool empty() const { return queue_.empty(); }

 private:
  struct event {
    clock_time at;
    std::uint64_t order;
    std::function<void()> fn;
    bool operator>(const event& o) const { return at != o.at ? at > o.at : order > o.order; }
  };
  clock_time now_{};
  std::uint64_t next_ = 0;
  std::priority_queue<event, std::vector<event>, std::greater<>> queue_;
};

}  // namespace dsrt::sim
