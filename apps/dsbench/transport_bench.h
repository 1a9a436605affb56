#pragma once
#include <CLI/CLI.hpp>

#include <functional>

namespace dsrt::apps {

// dsbench transport: actor-to-actor request/reply round trips and bulk tensor bandwidth
// between this process and a peer process over dsrt's UCX transport, each beside
// ucx_perftest (tag_lat, tag_bw) on the same UCX configuration in the same run.
std::function<int()> add_transport_bench(CLI::App& app);

}  // namespace dsrt::apps
