#include "apps/dsbench/machine_info.h"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <thread>

namespace dsrt::apps {

machine_info describe_machine() {
  machine_info m;
  m.cores = int(std::thread::hardware_concurrency());
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) m.cpu_model = line.substr(std::min(line.size(), colon + 2));
      break;
    }
  }
  return m;
}

long peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss * 1024L;
}

}  // namespace dsrt::apps
