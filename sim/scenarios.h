#pragma once
// The named scenarios of dssim: a cluster, a device profile, a load and a fault schedule.
#include <cstdint>
#include <string>
#include <vector>

#include "sim/simulation.h"

namespace dsrt::sim {

struct scenario {
  std::string name;
  std::string description;
  int gpus_per_replica = 1;    // a tensor-parallel replica spans this many GPUs
};

const std::vector<scenario>& scenarios();

// The configuration of a scenario (REQUIRES: a name from scenarios()). `gpus` and `qps`
// override its size when positive; admission limits follow the cluster's size.
sim_config scenario_config(const std::string& name, std::uint64_t seed, int gpus = 0, double qps = 0);

}  // namespace dsrt::sim
