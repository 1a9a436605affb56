#pragma once
// A process on this host, named so that a peer on the same host (the same host key:
// ucx_transport.h, "Data endpoints") can tell when it has gone: its pid with its start time
// (since boot, /proc/PID/stat field 22), which a later process reusing the pid will not
// have, and its pid and time namespaces: in another pid namespace the pid names another
// process, in another time namespace the start time reads differently.
#include <cstdint>

namespace dsrt::transport {

struct local_process {
  std::uint32_t pid = 0;             // 0: not known
  std::uint64_t start_ticks = 0;     // clock ticks after boot
  std::uint64_t pid_namespace = 0;   // the inode of /proc/PID/ns/pid (0: not known)
  std::uint64_t time_namespace = 0;  // the inode of /proc/PID/ns/time (0: none or not known)
};

// This process (pid 0 where /proc cannot be read).
local_process this_process();

// Whether `p` has ended: no such pid, another process under it, or a zombie (its memory is
// gone). False whenever that is not certain: an unknown process, one of another pid or time
// namespace, one /proc cannot be read for (or hides: hidepid), one that runs or is stopped.
bool process_gone(const local_process& p);

}  // namespace dsrt::transport
