#pragma once
#include <string>

namespace dsrt::apps {

struct machine_info {
  std::string cpu_model;
  int cores = 0;
  std::string gpu;   // "" when none is used
};

machine_info describe_machine();
// Peak resident set size of this process in bytes.
long peak_rss_bytes();

}  // namespace dsrt::apps
