#pragma once
#include <CLI/CLI.hpp>

#include <functional>

namespace dsrt::apps {

// dsbench load: drives the serving runtime through the embedded client with a closed loop
// of `concurrency` requests in flight, optionally injecting faults, and reports throughput,
// TTFT/TPOT percentiles and the request contract's counters.
std::function<int()> add_load_bench(CLI::App& app);

}  // namespace dsrt::apps
