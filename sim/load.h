#pragma once
// The simulated load: Poisson arrivals at qps (burst_qps inside the burst window) for
// duration_ms, prompt and output lengths uniform in their ranges, 4 priorities, 8 tenants,
// a deadline per request — all from the seed. Drawn one arrival at a time, so a long run
// holds only the requests in flight.
#include <cstdint>
#include <optional>

#include "runtime/random.h"
#include "runtime/serving/messages.h"
#include "sim/simulation.h"

namespace dsrt::sim {

struct arrival {
  clock_time at;
  serving::generate_request request;   // ids 1, 2, 3, ...; deadline set
};

class load_generator {
 public:
  explicit load_generator(const sim_config& config);
  // The next arrival, or nullopt once arrivals reach duration_ms.
  std::optional<arrival> next();

 private:
  std::int64_t uniform(std::int64_t lo, std::int64_t hi);

  const sim_config& c_;
  xoshiro256 rng_;
  double t_ = 0;
  std::uint64_t id_ = 0;
  bool done_ = false;
};

}  // namespace dsrt::sim
