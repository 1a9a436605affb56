#include "sim/faults.h"

#include <fmt/format.h>

namespace dsrt::sim {

const char* fault_kind_name(fault_kind kind) {
  switch (kind) {
    case fault_kind::kill_node: return "kill_node";
    case fault_kind::fail_steps: return "fail_steps";
    case fault_kind::slow_device: return "slow_device";
    case fault_kind::swizzle: return "swizzle";
    case fault_kind::pause_node: return "pause_node";
    case fault_kind::oom_step: return "oom_step";
    case fault_kind::clock_jump: return "clock_jump";
    case fault_kind::corrupt_message: return "corrupt_message";
  }
  return "unknown";
}

std::string describe(const fault& f) {
  const double at_s = double(f.at.count()) / 1000.0;
  switch (f.kind) {
    case fault_kind::kill_node:
      return fmt::format("{:.3f} s kill_node node {} (back after {} ms)", at_s, f.target, f.length.count());
    case fault_kind::pause_node:
      return fmt::format("{:.3f} s pause_node node {} for {} ms", at_s, f.target, f.length.count());
    case fault_kind::clock_jump:
      return fmt::format("{:.3f} s clock_jump node {} by {:+} ms", at_s, f.target, f.shift.count());
    case fault_kind::swizzle:
      return fmt::format("{:.3f} s swizzle {} links", at_s, f.replicas.size());
    case fault_kind::fail_steps:
    case fault_kind::slow_device:
      return fmt::format("{:.3f} s {} replica {} for {} ms", at_s, fault_kind_name(f.kind), f.target,
                         f.length.count());
    case fault_kind::oom_step:
    case fault_kind::corrupt_message:
      return fmt::format("{:.3f} s {} replica {}", at_s, fault_kind_name(f.kind), f.target);
  }
  return "unknown fault";
}

milliseconds fault_end(const fault& f, milliseconds swizzle_step_ms, milliseconds swizzle_hold_ms) {
  if (f.kind == fault_kind::swizzle)
    return f.at + swizzle_step_ms * std::int64_t(2 * f.replicas.size()) + swizzle_hold_ms;
  return f.at + f.length;
}

}  // namespace dsrt::sim
