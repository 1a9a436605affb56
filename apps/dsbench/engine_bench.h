#pragma once
#include <CLI/CLI.hpp>

#include <functional>

namespace dsrt::apps {

// dsbench engine: offline prefill and decode speed of one model on this machine, with the
// decode roofline from a memory bandwidth measured right before each decode run.
std::function<int()> add_engine_bench(CLI::App& app);

}  // namespace dsrt::apps
