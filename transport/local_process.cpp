#include "transport/local_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <sstream>
#include <string>

namespace dsrt::transport {
namespace {

struct stat_fields {
  char state = 0;
  std::uint64_t start_ticks = 0;
};

enum class read_result { ok, no_such_process, unknown };

// /proc/PID/stat's state (field 3) and start time (field 22).
read_result read_stat(const std::string& path, stat_fields& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT || errno == ESRCH ? read_result::no_such_process : read_result::unknown;
  std::array<char, 1024> buf{};
  const auto n = ::read(fd, buf.data(), buf.size() - 1);
  const int read_errno = errno;
  ::close(fd);
  if (n <= 0) return n < 0 && read_errno == ESRCH ? read_result::no_such_process : read_result::unknown;
  const std::string line(buf.data(), std::size_t(n));
  const auto close = line.rfind(')');   // the command name may hold spaces and parentheses
  if (close == std::string::npos) return read_result::unknown;
  std::istringstream rest(line.substr(close + 1));
  rest >> out.state;
  std::string skip;
  for (int field = 4; field < 22 && rest; ++field) rest >> skip;
  rest >> out.start_ticks;
  return rest ? read_result::ok : read_result::unknown;
}

std::uint64_t namespace_inode(const char* path) {
  struct stat st {};
  return ::stat(path, &st) == 0 ? std::uint64_t(st.st_ino) : 0;
}

// This process's pid namespace, if /proc shows it (a /proc mounted from another pid
// namespace, after unshare without a remount, names other processes: not known then).
std::uint64_t own_pid_namespace() {
  static const std::uint64_t ns = [] {
    std::array<char, 32> self{};
    const auto n = ::readlink("/proc/self", self.data(), self.size() - 1);
    if (n <= 0 || std::string(self.data(), std::size_t(n)) != std::to_string(::getpid())) return std::uint64_t(0);
    return namespace_inode("/proc/self/ns/pid");
  }();
  return ns;
}

std::uint64_t own_time_namespace() {
  static const std::uint64_t ns = namespace_inode("/proc/self/ns/time");
  return ns;
}

}  // namespace

local_process this_process() {
  stat_fields f;
  if (read_stat("/proc/self/stat", f) != read_result::ok) return {};
  return {std::uint32_t(::getpid()), f.start_ticks, own_pid_namespace(), own_time_namespace()};
}

bool process_gone(const local_process& p) {
  if (p.pid == 0 || p.pid_namespace == 0 || p.pid_namespace != own_pid_namespace() ||
      p.time_namespace != own_time_namespace())
    return false;
  stat_fields f;
  switch (read_stat("/proc/" + std::to_string(p.pid) + "/stat", f)) {
    case read_result::no_such_process:   // or hidden (hidepid): the kernel says which
      return ::kill(pid_t(p.pid), 0) != 0 && errno == ESRCH;
    case read_result::unknown: return false;
    case read_result::ok: break;
  }
  // A zombie's memory is gone (a leader that ended only its own thread shows it too, but
  // dsrt's processes end whole).
  return f.start_ticks != p.start_ticks || f.state == 'Z' || f.state == 'X';
}

}  // namespace dsrt::transport
