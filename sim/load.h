#pragma once
// The simulated load: Poisson arrivals at qps (burst_qps inside the burst window) for
// duration_ms, prompt and output lengths uniform in their ranges (or, for
// repeat_prompt_fraction of them, a recent request's prompt and max_tokens again), 4
// priorities, 8 tenants, a deadline per request — all from the seed. Requests are greedy;
// their sampling seed carries the prompt's prompt_key (sim/checker.h), which the simulated
// replicas read as the model's input (the checker derives the key from the prompt itself). Drawn one arrival at a time, so a long run
// holds only the requests in flight.
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "runtime/random.h"
#include "runtime/serving/messages.h"
#include "sim/simulation.h"

namespace dsrt::sim {

struct arrival {
  clock_time at;
  serving::generate_request request;   // ids 1, 2, 3, ...; deadline set
  // prompt_key(request.prompt), for the checker: its own copy, so that a request whose
  // sampling seed (which carries the key to the replicas) got altered on the way is caught.
  std::uint64_t prompt_key = 0;
};

class load_generator {
 public:
  explicit load_generator(const sim_config& config);
  // The next arrival, or nullopt once arrivals reach duration_ms.
  std::optional<arrival> next();

 private:
  std::int64_t uniform(std::int64_t lo, std::int64_t hi);
  void random_tokens(std::span<std::int32_t> out);

  const sim_config& c_;
  xoshiro256 rng_;
  double t_ = 0;
  struct recent { std::vector<std::int32_t> prompt; std::int32_t max_tokens; };
  std::vector<recent> recent_;   // the last recent_max fresh requests, a ring
  std::size_t recent_next_ = 0;
  static constexpr std::size_t recent_max = 256;
  std::uint64_t id_ = 0;
  bool done_ = false;
};

}  // namespace dsrt::sim
