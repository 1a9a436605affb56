#pragma once
// A child process of a tool (dsrun's dsnode nodes, dsbench transport's peer and
// ucx_perftest): started with fork + exec (found on PATH), its output appended to a log
// file, and bound to the parent's life (PR_SET_PDEATHSIG: if the parent dies, even by
// SIGKILL, the kernel kills the child — no orphans).
#include <sys/types.h>

#include <string>
#include <vector>

#include "runtime/error.h"

namespace dsrt::apps {

class node_process {
 public:
  node_process(std::string name, std::vector<std::string> argv, std::string log_file)
      : name_(std::move(name)), argv_(std::move(argv)), log_file_(std::move(log_file)) {}
  ~node_process();   // kills a process still running

  // Errors: internal when fork or exec fails (an exec failure shows as an exit with 127).
  status start();
  // True while the process runs; reaps it (and records how it ended) when it has exited.
  bool running();
  void signal(int sig);
  // Sends SIGTERM, waits up to `grace_ms`, then SIGKILL; returns once it is reaped.
  void stop(int grace_ms);

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  const std::string& how_it_ended() const { return ended_; }

 private:
  std::string name_;
  std::vector<std::string> argv_;
  std::string log_file_;
  pid_t pid_ = -1;
  std::string ended_;
};

}  // namespace dsrt::apps
