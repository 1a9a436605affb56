#include "apps/common/slurm_env.h"

#include <charconv>
#include <cstdlib>

namespace dsrt::apps {
namespace {

bool parse_int(std::string_view s, long& out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size() && out >= 0;
}

// Splits at commas that are not inside brackets.
result<std::vector<std::string>> split_top(const std::string& s) {
  std::vector<std::string> parts;
  std::string cur;
  int depth = 0;
  for (char c : s) {
    if (c == '[') ++depth;
    if (c == ']' && --depth < 0) return make_error(error_code::invalid_argument, "unbalanced ']' in '{}'", s);
    if (c == ',' && depth == 0) {
      parts.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (depth != 0) return make_error(error_code::invalid_argument, "unbalanced '[' in '{}'", s);
  parts.push_back(std::move(cur));
  return parts;
}

}  // namespace

result<std::vector<std::string>> expand_hostlist(const std::string& list) {
  auto parts = split_top(list);
  if (!parts) return parts.err();
  std::vector<std::string> hosts;
  for (const auto& part : *parts) {
    if (part.empty()) return make_error(error_code::invalid_argument, "empty host in '{}'", list);
    const auto open = part.find('[');
    if (open == std::string::npos) {
      hosts.push_back(part);
      continue;
    }
    const auto close = part.find(']', open);
    if (close != part.size() - 1 || part.find('[', open + 1) != std::string::npos)
      return make_error(error_code::invalid_argument, "host '{}': one [ranges] at the end is supported", part);
    const std::string prefix = part.substr(0, open);
    std::string ranges = part.substr(open + 1, close - open - 1);
    std::size_t at = 0;
    while (at <= ranges.size()) {
      auto comma = ranges.find(',', at);
      if (comma == std::string::npos) comma = ranges.size();
      const std::string range = ranges.substr(at, comma - at);
      const auto dash = range.find('-');
      const std::string lo_s = range.substr(0, dash), hi_s = dash == std::string::npos ? lo_s : range.substr(dash + 1);
      long lo = 0, hi = 0;
      if (!parse_int(lo_s, lo) || !parse_int(hi_s, hi) || hi < lo)
        return make_error(error_code::invalid_argument, "host '{}': bad range '{}'", part, range);
      if (hosts.size() + std::size_t(hi - lo + 1) > slurm_hosts_max)
        return make_error(error_code::invalid_argument, "'{}' names more than {} hosts", list, slurm_hosts_max);
      for (long n = lo; n <= hi; ++n) {
        std::string num = std::to_string(n);
        if (num.size() < lo_s.size()) num.insert(0, lo_s.size() - num.size(), '0');
        hosts.push_back(prefix + num);
      }
      at = comma + 1;
    }
  }
  return hosts;
}

result<std::vector<int>> expand_tasks_per_node(const std::string& spec) {
  std::vector<int> out;
  std::size_t at = 0;
  while (at <= spec.size()) {
    auto comma = spec.find(',', at);
    if (comma == std::string::npos) comma = spec.size();
    const std::string item = spec.substr(at, comma - at);
    const auto paren = item.find("(x");
    long count = 0, repeat = 1;
    const bool ok = paren == std::string::npos
                        ? parse_int(item, count)
                        : item.back() == ')' && parse_int(item.substr(0, paren), count) &&
                              parse_int(item.substr(paren + 2, item.size() - paren - 3), repeat);
    if (!ok || count < 1 || repeat < 1 || out.size() + std::size_t(repeat) > slurm_hosts_max)
      return make_error(error_code::invalid_argument, "SLURM_TASKS_PER_NODE '{}': bad item '{}'", spec, item);
    out.insert(out.end(), std::size_t(repeat), int(count));
    at = comma + 1;
  }
  return out;
}

result<std::vector<std::string>> slurm_task_hosts(const std::map<std::string, std::string>& env) {
  auto get = [&](const char* name) -> result<std::string> {
    auto it = env.find(name);
    if (it == env.end() || it->second.empty())
      return make_error(error_code::invalid_argument, "{} is not set: run dsrun --slurm inside an allocation "
                        "(salloc, sbatch)", name);
    return it->second;
  };
  auto list = get("SLURM_JOB_NODELIST");
  if (!list) return list.err();
  auto per = get("SLURM_TASKS_PER_NODE");
  if (!per) return per.err();
  auto ntasks_s = get("SLURM_NTASKS");
  if (!ntasks_s) return ntasks_s.err();
  long ntasks = 0;
  if (!parse_int(*ntasks_s, ntasks) || ntasks < 1)
    return make_error(error_code::invalid_argument, "SLURM_NTASKS '{}' is not a positive number", *ntasks_s);
  auto hosts = expand_hostlist(*list);
  if (!hosts) return hosts.err();
  auto counts = expand_tasks_per_node(*per);
  if (!counts) return counts.err();
  if (counts->size() != hosts->size())
    return make_error(error_code::invalid_argument, "SLURM_TASKS_PER_NODE names {} hosts, SLURM_JOB_NODELIST {}",
                      counts->size(), hosts->size());
  std::vector<std::string> tasks;
  for (std::size_t h = 0; h < hosts->size(); ++h)
    for (int t = 0; t < (*counts)[h]; ++t) tasks.push_back((*hosts)[h]);
  if (long(tasks.size()) != ntasks)
    return make_error(error_code::invalid_argument, "SLURM_TASKS_PER_NODE gives {} tasks, SLURM_NTASKS {}",
                      tasks.size(), ntasks);
  return tasks;
}

result<std::map<std::string, int>> slurm_cpus_per_host(const std::map<std::string, std::string>& env) {
  const auto list = env.find("SLURM_JOB_NODELIST");
  const auto cpus = env.find("SLURM_JOB_CPUS_PER_NODE");
  if (list == env.end() || cpus == env.end())
    return make_error(error_code::invalid_argument, "{} is not set",
                      list == env.end() ? "SLURM_JOB_NODELIST" : "SLURM_JOB_CPUS_PER_NODE");
  auto hosts = expand_hostlist(list->second);
  if (!hosts) return hosts.err();
  auto counts = expand_tasks_per_node(cpus->second);
  if (!counts) return make_error(error_code::invalid_argument, "SLURM_JOB_CPUS_PER_NODE: {}", counts.err().message);
  if (counts->size() != hosts->size())
    return make_error(error_code::invalid_argument, "SLURM_JOB_CPUS_PER_NODE names {} hosts, SLURM_JOB_NODELIST {}",
                      counts->size(), hosts->size());
  std::map<std::string, int> out;
  for (std::size_t h = 0; h < hosts->size(); ++h) out[(*hosts)[h]] = (*counts)[h];
  return out;
}

std::map<std::string, std::string> slurm_environment() {
  std::map<std::string, std::string> env;
  for (const char* name : {"SLURM_JOB_NODELIST", "SLURM_TASKS_PER_NODE", "SLURM_NTASKS", "SLURM_JOB_CPUS_PER_NODE"})
    if (const char* v = std::getenv(name)) env[name] = v;
  return env;
}

}  // namespace dsrt::apps
