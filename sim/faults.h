#pragma once
// The fault schedule of a simulated run: drawn from the seed as an explicit list, so a run
// can be replayed, printed and shrunk (run again with some faults left out) without
// changing the arrivals or the other faults.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/clock.h"

namespace dsrt::sim {

enum class fault_kind {
  kill_node,        // a node's replicas lose their work; they serve again after restart_ms
  fail_steps,       // a replica's steps fail (INTERNAL) for `length`
  slow_device,      // a replica's steps take slow_factor times longer for `length`
  swizzle,          // clog `replicas` links one by one, hold, unclog in another order
  pause_node,       // a node freezes (no steps, messages or heartbeats) for `length`
  oom_step,         // one step of a replica fails (out of device memory: INTERNAL)
  clock_jump,       // a node's system clock jumps by `shift` (either way)
  corrupt_message,  // the next message on a replica's link has bytes flipped in transit
};
const char* fault_kind_name(fault_kind kind);

struct fault {
  fault_kind kind = fault_kind::kill_node;
  milliseconds at{0};                // from the start of the run
  std::int32_t target = 0;           // node (kill, pause, clock jump) or replica (the others)
  milliseconds length{0};            // windows and pauses; a kill's restart time
  milliseconds shift{0};             // clock_jump
  std::vector<std::int32_t> replicas, unclog_order;   // swizzle
  std::uint64_t noise = 0;           // corrupt_message: which bytes flip
};

// One line: "12.345 s kill_node node 2 (restart after 2000 ms)".
std::string describe(const fault& f);

// When the fault's effect is over (a kill: the restart; a swizzle: the last unclog).
milliseconds fault_end(const fault& f, milliseconds swizzle_step_ms, milliseconds swizzle_hold_ms);

}  // namespace dsrt::sim
