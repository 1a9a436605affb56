#pragma once
// How dsrun lays a cluster out over its nodes' hosts: each worker's replicas and their
// cluster indices, the first GPU of each on its host, and which dsnode flags dsrun gives
// the nodes itself (so --node-arg may not).
#include <string>
#include <string_view>
#include <vector>

#include "runtime/error.h"

namespace dsrt::apps {

struct worker_layout {
  std::string host;
  int replicas = 0;       // this worker's; the first workers take one more when R % W != 0
  int replica_base = 0;   // cluster index of its first replica
  int first_gpu = 0;      // ordinal of its first GPU: workers sharing a host take consecutive ones
  int host_workers = 1;   // workers on its host (itself included): they share its cores
};

// hosts[0] runs the head (it takes no GPU), hosts[1..] one worker each; a host may repeat
// (one machine, or several Slurm tasks on a node). Hosts are told apart by their spelling
// (localhost and 127.0.0.1 are two hosts here), ordinals counted among the GPUs a node sees
// (CUDA_VISIBLE_DEVICES).
// REQUIRES: hosts.size() >= 2, replicas >= hosts.size() - 1.
std::vector<worker_layout> lay_out_workers(const std::vector<std::string>& hosts, int replicas);

// A --node-arg naming a flag dsrun sets on the nodes itself (the node would refuse it given
// twice, and a head-only or worker-only one would stop the other kind of node).
// Errors: invalid_argument naming the argument and the dsrun flag to use instead.
status check_node_arg(std::string_view arg);

}  // namespace dsrt::apps
