#pragma once
// The CAF configuration every dsrt actor system uses (local_runtime, the cluster nodes, the
// remote client).
#include <caf/all.hpp>

#include <algorithm>
#include <memory>

namespace dsrt::actors {

inline std::unique_ptr<caf::actor_system_config> make_system_config(int scheduler_threads) {
  auto config = std::make_unique<caf::actor_system_config>();
  config->set("scheduler.max-threads", std::size_t(std::max(1, scheduler_threads)));
  // Work sharing: idle workers block on a condition variable. CAF's default, work stealing,
  // polls while idle, and on the cores that also run the model every poll is compute lost.
  config->set("scheduler.policy", caf::atom("sharing"));
  config->set("logger.console", caf::atom("none"));
  return config;
}

}  // namespace dsrt::actors
