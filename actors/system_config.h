#pragma once
// The CAF configuration every dsrt actor system uses (local_runtime, the cluster nodes, the
// remote client).
#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <memory>

namespace dsrt::actors {

// How an idle CAF worker waits for work (work stealing): a short spin, then a few polls
// 50 us apart, then timed sleeps on its own condition variable, stealing from the others
// after each. Kept short so idle workers take little from the cores the model runs on
// (PERFORMANCE.md, "Serving runtime in one process": with CAF's default polling the load
// reached 0.6 of the engine's throughput). Work sharing -- every idle worker blocked on one shared
// condition variable -- hung whole nodes: glibc 2.36 (Debian 12) can lose that variable's
// wake-ups and leave a signalling thread blocked in pthread_cond_signal for good
// (sourceware bug 25847; seen as a worker whose shard thread and both scheduler threads
// waited on each other, its requests never finished). A timed wait on a variable with one
// waiter ends however a wake-up goes.
inline constexpr std::size_t scheduler_spin_polls = 10;
inline constexpr std::size_t scheduler_moderate_polls = 4;
inline constexpr std::chrono::microseconds scheduler_moderate_sleep{50};
// A job handed to a busy worker waits until that worker is free or an idle one, waking from
// this sleep, steals it (roughly this long at most with two workers).
inline constexpr std::chrono::milliseconds scheduler_idle_sleep{2};

inline std::unique_ptr<caf::actor_system_config> make_system_config(int scheduler_threads) {
  auto config = std::make_unique<caf::actor_system_config>();
  config->set("scheduler.max-threads", std::size_t(std::max(1, scheduler_threads)));
  config->set("scheduler.policy", caf::atom("stealing"));
  config->set("work-stealing.aggressive-poll-attempts", scheduler_spin_polls);
  config->set("work-stealing.moderate-poll-attempts", scheduler_moderate_polls);
  config->set("work-stealing.moderate-sleep-duration", caf::timespan{scheduler_moderate_sleep});
  config->set("work-stealing.relaxed-sleep-duration", caf::timespan{scheduler_idle_sleep});
  config->set("work-stealing.relaxed-steal-interval", std::size_t(1));
  config->set("logger.console", caf::atom("none"));
  return config;
}

}  // namespace dsrt::actors
