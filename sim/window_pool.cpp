#include "sim/window_pool.h"

#include <chrono>

#include "kernels/assert.h"

namespace dsrt::sim {
namespace {

// How long a thread at the barrier spins before it yields its core. Longer than most
// windows (tens of microseconds of work): a yield is a system call, and a thread inside one
// sees the window end late. 64 spins before (2-3 us) made the scale run spend a quarter of
// its CPU time in the kernel (sched_yield) with no gain in wall time.
constexpr auto spin_before_yield = std::chrono::microseconds(50);
constexpr int spins_per_clock_read = 64;

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

void window_pool::barrier::arrive_and_wait() {
  const std::uint64_t phase = phase_.load(std::memory_order_acquire);
  if (waiting_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    waiting_.store(parties_, std::memory_order_relaxed);
    phase_.fetch_add(1, std::memory_order_release);   // publishes the reset and the window's work
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  bool spinning = true;
  for (int spins = 0; phase_.load(std::memory_order_acquire) == phase;) {
    if (!spinning) {
      std::this_thread::yield();
      continue;
    }
    cpu_relax();
    if (++spins % spins_per_clock_read == 0) spinning = std::chrono::steady_clock::now() - start < spin_before_yield;
  }
}

window_pool::window_pool(int threads) : barrier_(threads) {
  DSRT_ASSERT(threads >= 1, "threads={}", threads);
  for (int t = 1; t < threads; ++t) {
    workers_.emplace_back([this] {
      for (;;) {
        barrier_.arrive_and_wait();   // a window starts (or the pool parks or stops)
        const command next = command_;
        if (next == command::stop) return;
        if (next == command::run) take_tasks();
        barrier_.arrive_and_wait();   // the window is done (or every worker has read the command)
        if (next == command::park) parked_.wait(true, std::memory_order_acquire);
      }
    });
  }
}

window_pool::~window_pool() {
  if (workers_.empty()) return;
  park(false);
  command_ = command::stop;
  barrier_.arrive_and_wait();
  for (auto& w : workers_) w.join();
}

void window_pool::run(std::size_t tasks, const std::function<void(std::size_t)>& task) noexcept {
  if (workers_.empty() || parked()) {
    for (std::size_t k = 0; k < tasks; ++k) task(k);
    return;
  }
  command_ = command::run;
  tasks_ = tasks;
  task_ = &task;
  next_.store(0, std::memory_order_relaxed);
  barrier_.arrive_and_wait();
  take_tasks();
  barrier_.arrive_and_wait();
}

void window_pool::park(bool parked) {
  if (workers_.empty() || parked == this->parked()) return;
  if (!parked) {
    parked_.store(false, std::memory_order_release);
    parked_.notify_all();   // they come back to the start barrier; the next run() waits for them there
    return;
  }
  parked_.store(true, std::memory_order_relaxed);
  command_ = command::park;
  barrier_.arrive_and_wait();
  barrier_.arrive_and_wait();   // every worker has read the command: the next run() may write another
}

void window_pool::take_tasks() {
  for (std::size_t k = next_.fetch_add(1, std::memory_order_relaxed); k < tasks_;
       k = next_.fetch_add(1, std::memory_order_relaxed))
    (*task_)(k);
}

}  // namespace dsrt::sim
