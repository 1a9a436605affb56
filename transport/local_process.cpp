#include "transport/local_process.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace dsrt::transport {
namespace {

struct stat_fields {
  char state = 0;
  std::uint64_t start_ticks = 0;
};

// /proc/PID/stat's state (field 3) and start time (field 22); nothing when it cannot be read.
bool read_stat(const std::string& path, stat_fields& out) {
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return false;
  const auto close = line.rfind(')');   // the command name may hold spaces and parentheses
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  rest >> out.state;
  std::string skip;
  for (int field = 4; field < 22 && rest; ++field) rest >> skip;
  rest >> out.start_ticks;
  return bool(rest);
}

}  // namespace

local_process this_process() {
  stat_fields f;
  if (!read_stat("/proc/self/stat", f)) return {};
  return {std::uint32_t(::getpid()), f.start_ticks};
}

bool process_gone(const local_process& p) {
  if (p.pid == 0) return false;
  stat_fields f;
  if (!read_stat("/proc/" + std::to_string(p.pid) + "/stat", f)) return true;
  return f.start_ticks != p.start_ticks || f.state == 'Z' || f.state == 'X';
}

}  // namespace dsrt::transport
