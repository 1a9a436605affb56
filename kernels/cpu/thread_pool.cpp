#include "kernels/cpu/thread_pool.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "kernels/assert.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define DSRT_CPU_RELAX() _mm_pause()
#else
#define DSRT_CPU_RELAX() ((void)0)
#endif

namespace dsrt::kernels::cpu {
namespace {

void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr,
          nullptr, 0);
}

void futex_wake_all(std::atomic<std::uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr,
          nullptr, 0);
}

}  // namespace

thread_pool::thread_pool(int threads) : threads_(std::max(1, threads)) {
  workers_.reserve(threads_ - 1);
  try {
    for (int w = 1; w < threads_; ++w) workers_.emplace_back([this, w] { worker_loop(w); });
  } catch (...) {
    stop_workers();  // join the threads already started before the error leaves
    throw;
  }
}

thread_pool::~thread_pool() { stop_workers(); }

void thread_pool::stop_workers() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(generation_);
  for (auto& t : workers_) t.join();
}

void thread_pool::worker_loop(int worker) {
  std::uint32_t seen = 0;
  for (;;) {
    std::uint32_t current = generation_.load(std::memory_order_acquire);
    for (int spin = 0; current == seen && spin < spin_iterations_max; ++spin) {
      DSRT_CPU_RELAX();
      current = generation_.load(std::memory_order_acquire);
    }
    if (current == seen) {
      // seq_cst pairs with run(): either it sees sleepers_ > 0 and wakes us, or we see the
      // new generation here and the futex returns at once.
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      if (generation_.load(std::memory_order_seq_cst) == seen) futex_wait(generation_, seen);
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      continue;
    }
    seen = current;
    if (stop_.load(std::memory_order_acquire)) return;
    try {
      (*job_)(worker, threads_);
    } catch (...) {
      const std::lock_guard lock(error_mutex_);
      if (!worker_error_) worker_error_ = std::current_exception();
    }
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void thread_pool::run(const std::function<void(int, int)>& fn) {
  if (threads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  pending_.store(threads_ - 1, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake_all(generation_);
  std::exception_ptr error;
  try {
    fn(0, threads_);
  } catch (...) {
    error = std::current_exception();
  }
  // Workers still read job_ until pending_ reaches 0: never leave before that. After a
  // while of spinning, yield, in case a worker waits for this core.
  for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < spin_iterations_max) {
      DSRT_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
  job_ = nullptr;
  {
    const std::lock_guard lock(error_mutex_);
    if (!error) error = worker_error_;
    worker_error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

void thread_pool::parallel_for(std::int64_t count, std::int64_t grain,
                               const std::function<void(std::int64_t, std::int64_t)>& fn) {
  DSRT_ASSERT(grain > 0, "grain={}", grain);
  if (count <= 0) return;
  const std::int64_t units = (count + grain - 1) / grain;
  if (threads_ == 1 || units == 1) {
    fn(0, count);
    return;
  }
  run([&](int worker, int workers) {
    const std::int64_t begin_unit = units * worker / workers;
    const std::int64_t end_unit = units * (worker + 1) / workers;
    const std::int64_t begin = begin_unit * grain;
    const std::int64_t end = std::min(count, end_unit * grain);
    if (begin < end) fn(begin, end);
  });
}

}  // namespace dsrt::kernels::cpu
