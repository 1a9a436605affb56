#pragma once
// Where the nodes of a cluster go inside a Slurm allocation (dsrun --slurm): node k is task
// k of the allocation, placed as Slurm places tasks by default (block: the first host's
// tasks, then the next host's), read from the environment salloc/sbatch set:
//   SLURM_JOB_NODELIST   hosts, in Slurm's compressed form: "gpu[01-03,07],login2"
//   SLURM_TASKS_PER_NODE tasks per host, compressed: "2(x3),1"
//   SLURM_NTASKS         tasks in all
//   SLURM_JOB_CPUS_PER_NODE  CPUs the job holds on each host, compressed: "16(x2),8"
#include <map>
#include <string>
#include <vector>

#include "runtime/error.h"

namespace dsrt::apps {

inline constexpr std::size_t slurm_hosts_max = 65536;   // a host list that expands further is refused

// "a[1-3,07],b" -> a1 a2 a3 a07 b (zero padding kept from the range's first bound).
// Errors: invalid_argument for unbalanced brackets, a bad range, or more than slurm_hosts_max.
result<std::vector<std::string>> expand_hostlist(const std::string& list);

// "2(x3),1" -> 2 2 2 1. Errors: invalid_argument.
result<std::vector<int>> expand_tasks_per_node(const std::string& spec);

// The host of every task, from the variables above (`env` maps name -> value). Errors:
// invalid_argument naming the variable that is missing or disagrees with the others.
result<std::vector<std::string>> slurm_task_hosts(const std::map<std::string, std::string>& env);

// The CPUs the job holds on each host, from SLURM_JOB_NODELIST and SLURM_JOB_CPUS_PER_NODE.
// A job step sees only the CPUs it asked for (srun -c), so dsrun asks for each worker's
// share of these. Errors: invalid_argument naming the variable missing or disagreeing.
result<std::map<std::string, int>> slurm_cpus_per_host(const std::map<std::string, std::string>& env);

// The variables above from this process's environment (absent ones are left out).
std::map<std::string, std::string> slurm_environment();

}  // namespace dsrt::apps
