#pragma once
// Shrinking a failing run: the smallest set of its faults (found greedily) with which the
// same seed still breaks an invariant, so a replay shows the cause and little else. Like
// delta debugging: drop halves, then quarters, ... then single faults, keeping every drop
// after which the run still fails. Arrivals do not depend on the faults, so each try sees
// the same load.
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sim/simulation.h"

namespace dsrt::sim {

struct shrink_result {
  std::vector<std::size_t> kept;   // indices into draw_faults(config)
  std::string violation;           // the first violation of the shrunk run
  int runs = 0;                    // simulations it took
};

// nullopt when `config` (with its faults_kept, if any) breaks no invariant. At most
// runs_max simulations, each `run(config with faults_kept)`.
std::optional<shrink_result> shrink_faults(const sim_config& config,
                                           const std::function<sim_report(const sim_config&)>& run,
                                           int runs_max = 200);
// The same with run_simulation(config, bugs).
std::optional<shrink_result> shrink_faults(const sim_config& config, const planted_bugs& bugs = {},
                                           int runs_max = 200);

}  // namespace dsrt::sim
