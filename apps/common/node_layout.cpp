#include "apps/common/node_layout.h"

#include <array>
#include <map>
#include <utility>

namespace dsrt::apps {

std::vector<worker_layout> lay_out_workers(const std::vector<std::string>& hosts, int replicas) {
  const int workers = int(hosts.size()) - 1;
  std::vector<worker_layout> out;
  std::map<std::string, int> gpus_given, workers_on;   // per host
  for (int w = 0; w < workers; ++w) ++workers_on[hosts[std::size_t(w + 1)]];
  int base = 0;
  for (int w = 0; w < workers; ++w) {
    worker_layout l;
    l.host = hosts[std::size_t(w + 1)];
    l.replicas = replicas / workers + (w < replicas % workers ? 1 : 0);
    l.replica_base = base;
    l.first_gpu = std::exchange(gpus_given[l.host], gpus_given[l.host] + l.replicas);
    l.host_workers = workers_on[l.host];
    base += l.replicas;
    out.push_back(std::move(l));
  }
  return out;
}

status check_node_arg(std::string_view arg) {
  // dsnode's flag, and how a dsrun user sets it.
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 14> set_by_dsrun = {{
      {"--model", "dsrun's --model"},
      {"--secret-file", "the run directory's cluster.secret (--run-dir)"},
      {"--metrics-file", "--metrics-dir: each node gets node-N.prom there"},
      {"--replicas", "dsrun's --replicas, spread over the workers"},
      {"--threads", "dsrun's --threads"},
      {"--device", "dsrun's --device"},
      {"--listen", "dsrun's --port"},
      {"--head", "the head's host and --port"},
      {"--node-id", "the node's place in the cluster"},
      {"--replica-base", "the worker's share of --replicas"},
      {"--ready-file", "the run directory's ready file (--run-dir)"},
      {"--drained-file", "the run directory's drained file (--run-dir)"},
      {"--drain-timeout-ms", "dsrun's --drain-timeout-ms"},
      {"--host-workers", "the workers dsrun places on each host"},
  }};
  for (const auto& [flag, instead] : set_by_dsrun)
    if (arg == flag || (arg.starts_with(flag) && arg.size() > flag.size() && arg[flag.size()] == '='))
      return make_error(error_code::invalid_argument, "--node-arg={}: dsrun sets {} on the nodes itself (from {})",
                        arg, flag, instead);
  return ok_t{};
}

}  // namespace dsrt::apps
