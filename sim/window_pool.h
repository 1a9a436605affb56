#pragma once
// The threads of a parallel simulation: run() calls task(k) for every process k of one
// window, on the caller and threads - 1 workers, and returns when all have returned. A
// window is short (tens of microseconds of work in the scale run, millions of windows), so
// the threads meet at a spinning barrier (yielding after 50 us: the vCPUs may be shared, or
// --threads above the cores) rather than a condition variable.
//
// park(true) sends the workers to sleep in the kernel (a futex, not a spin: a vCPU that
// shares a physical core with the caller's then leaves it all to the caller) and run() calls
// every task on the caller until park(false) (sim/thread_tuner.h decides when).
//
// Which thread runs which process changes nothing a run computes: processes touch only
// their own state within a window (sim/simulation.cpp), and the pool's barriers order each
// window's work before the next window's.
// Thread safety: run() and park() from one thread at a time.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace dsrt::sim {

class window_pool {
 public:
  // REQUIRES: threads >= 1.
  explicit window_pool(int threads);
  ~window_pool();
  window_pool(const window_pool&) = delete;
  window_pool& operator=(const window_pool&) = delete;

  // noexcept: a task that throws ends the process (std::terminate) rather than leaving the
  // workers at a barrier nobody else reaches.
  void run(std::size_t tasks, const std::function<void(std::size_t)>& task) noexcept;
  // true: the workers sleep and run() uses the caller alone; false: they wake for the next run().
  void park(bool parked);
  bool parked() const { return parked_.load(std::memory_order_relaxed); }

 private:
  class barrier {
   public:
    explicit barrier(int parties) : parties_(parties), waiting_(parties) {}
    void arrive_and_wait();

   private:
    const int parties_;
    std::atomic<int> waiting_;
    std::atomic<std::uint64_t> phase_{0};
  };
  void take_tasks();

  // What the workers do after a start barrier; written by the caller before it arrives
  // there, read by every worker before the barrier after it.
  enum class command { run, park, stop };

  std::vector<std::thread> workers_;
  barrier barrier_;
  command command_ = command::run;
  std::atomic<bool> parked_{false};
  std::atomic<std::size_t> next_{0};
  std::size_t tasks_ = 0;                                  // set before the start barrier
  const std::function<void(std::size_t)>* task_ = nullptr;
};

}  // namespace dsrt::sim
