#pragma once
// `dsbench load --fault SPEC`: faults injected into the in-process runtime at set times.
//   kill-shard:R@T        kill replica R's shard T ms after the load starts
//   fail-steps:R@T[-U]    replica R's steps fail from T ms (until U ms)
//   slow:R:S@T[-U]        replica R's steps take S ms longer from T ms (until U ms)
#include <cstdint>
#include <string>
#include <vector>

#include "actors/local_runtime.h"
#include "runtime/error.h"

namespace dsrt::apps {

struct fault_event {
  std::int64_t at_ms = 0;
  enum class kind { kill_shard, fail_steps_on, fail_steps_off, slow_on, slow_off } what;
  std::int32_t replica = 0;
  std::int64_t slow_ms = 0;
};

// Errors: invalid_argument naming the spec for bad syntax or a replica outside 0..replicas-1.
result<std::vector<fault_event>> parse_faults(const std::vector<std::string>& specs, std::int32_t replicas);

// Applies one event to the runtime.
void apply_fault(actors::local_runtime& runtime, const fault_event& e);

}  // namespace dsrt::apps
