#pragma once
// An opt-in record of when frames pass the stages of their way through a transport's
// progress thread: the breakdown of a hop in place, where `dsbench transport`'s "hop parts
// alone" can only time each part in a loop of its own (docs/PERFORMANCE.md, "Where a hop's
// time goes"). dsbench transport --hop-trace turns it on; nothing else does.
//
// Off (always, unless start() was called), a stage costs one relaxed load and a branch.
// On, one thread writes: the first to mark after start() (the progress thread of the
// process's one transport); marks from any other thread are ignored. A mark is a stage and a
// time stamp in a buffer of `capacity` marks; once full, later marks are dropped. The stamp
// is the CPU's cycle counter where there is one (x86: rdtsc), converted to nanoseconds with
// its rate against steady_clock between start() and summary(); steady_clock elsewhere.
//
// Thread safety: start() and summary() from one controlling thread; mark() from any.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dsrt::transport::hop_trace {

// Where a frame is. The order is the path of a frame in and the reply out.
enum class stage : std::uint8_t {
  arrived,      // the active-message callback runs (UCX found the frame)
  queued,       // the callback has recorded the arrival
  handling,     // the turn starts on its arrivals
  decoding,     // the frame goes to its connection's session (header, checksum, reader)
  delivering,   // the session's verdict applied: the handler gets the frame next
  delivered,    // the handler returned (the bridge: the frame is in the link's mailbox)
  callbacks,    // a turn that delivered calls after_callbacks (the link runs there)
  handler,      // the application's code for the frame starts (marked by the application:
                // dsbench transport's pinger and echo), after CAF's dispatch where actors run
  sending,      // send() on the progress thread (a handler or the link replies)
  posting,      // the frame goes to ucp_am_send_nbx
  posted,       // ucp_am_send_nbx returned
};
inline constexpr std::size_t stage_count = 11;
const char* stage_name(stage s);

namespace detail {
extern std::atomic<bool> on;
void record(stage s);
}  // namespace detail

inline void mark(stage s) {
  if (detail::on.load(std::memory_order_relaxed)) detail::record(s);
}

// Starts recording (again: earlier marks are discarded). REQUIRES: capacity > 0, and no
// thread marks while start() runs (stop() does not wait for a mark in progress: restart only
// once the threads that marked are quiet).
void start(std::size_t capacity);
// Stops recording; what was recorded stays for summary().
void stop();

// One step: from a stage straight to the next mark's stage, over every time it was taken.
struct step {
  stage from, to;
  std::size_t count = 0;
  double p50_ns = 0, p90_ns = 0;
};
struct summary_t {
  std::vector<step> steps;     // in path order (by `from`, then `to`)
  std::size_t marks = 0;       // recorded
  std::size_t dropped = 0;     // past capacity, or from a thread other than the writer
};
// The steps taken at least `share` times as often as the most frequent one (the path's
// steps, not the odd turn that began differently). Call after stop().
summary_t summary(double share = 0.01);

}  // namespace dsrt::transport::hop_trace
