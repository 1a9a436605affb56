#pragma once
// A fixed pool of threads for data-parallel loops. The calling thread takes part as
// worker 0, so a pool of N threads starts N - 1 of its own.
//
// Decode steps dispatch ~100 small loops each, so waking workers must be cheap: idle
// workers spin for spin_iterations_max before they sleep on a futex, and run() makes the
// wake-up system call only when some worker sleeps. (libstdc++ 12's std::atomic::wait on
// 64-bit values backs off into millisecond sleeps: unusable here.)
//
// An exception thrown by fn on any worker is rethrown by run() on the caller, after every
// worker has finished the job (the first one wins if several throw).
// Thread safety: run() is called by one thread at a time. REQUIRES: fn does not call run().
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dsrt::kernels::cpu {

class thread_pool {
 public:
  static constexpr int spin_iterations_max = 20000;

  explicit thread_pool(int threads);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int size() const { return threads_; }

  // Runs fn(worker, workers) on every worker (0 .. size()-1) and returns when all are done.
  void run(const std::function<void(int worker, int workers)>& fn);

  // Splits [0, count) into size() contiguous ranges aligned to `grain` and runs
  // fn(begin, end) on each non-empty one.
  void parallel_for(std::int64_t count, std::int64_t grain,
                    const std::function<void(std::int64_t begin, std::int64_t end)>& fn);

 private:
  void worker_loop(int worker);
  void stop_workers();

  int threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<std::uint32_t> generation_{0};   // futex word: bumped once per job
  std::atomic<int> sleepers_{0};                // workers inside the futex wait
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex error_mutex_;
  std::exception_ptr worker_error_;   // guarded by error_mutex_
};

}  // namespace dsrt::kernels::cpu
